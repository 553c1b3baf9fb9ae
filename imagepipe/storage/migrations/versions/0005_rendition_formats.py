"""renditions per (image, preset, format); placeholders, focal points, frames

Revision ID: 0005
Revises: 0004

``variants`` gets ``format`` in its primary key (a preset may have several
formats), ``rank`` (the format's place in the preset's list, 0 = preferred),
``format_in_key`` (the blob key names the format; false for rows written
before this revision, whose blobs keep their old key), the placeholder,
dominant colour, cover focal point and frame count of each rendition; and
``images`` gets the focal point given at upload.  Existing rows keep
working: they are rank 0, one frame, without placeholder.
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NEW_VARIANT_COLUMNS = (
    ("rank", sa.Integer, {"nullable": False, "server_default": "0"}),
    ("format_in_key", sa.Boolean, {"nullable": False, "server_default": sa.false()}),
    ("placeholder", sa.String(64), {"nullable": True}),
    ("color", sa.String(7), {"nullable": True}),
    ("focus_x", sa.Float, {"nullable": True}),
    ("focus_y", sa.Float, {"nullable": True}),
    ("frames", sa.Integer, {"nullable": False, "server_default": "1"}),
)


def upgrade():
    sqlite = op.get_context().dialect.name == "sqlite"
    # SQLite cannot alter a primary key: batch mode copies the table (with
    # "format" reflected as a key column, as the new key names it).
    with op.batch_alter_table("variants", recreate="always", reflect_args=[
            sa.Column("format", sa.String(16), primary_key=True)] if sqlite else ()) as batch:
        for name, column_type, options in NEW_VARIANT_COLUMNS:
            batch.add_column(sa.Column(name, column_type, **options))
        if not sqlite:
            batch.drop_constraint("variants_pkey", type_="primary")
        batch.create_primary_key("variants_pkey", ["image_id", "preset", "format"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("focus_x", sa.Float, nullable=True))
        batch.add_column(sa.Column("focus_y", sa.Float, nullable=True))


def downgrade():
    with op.batch_alter_table("images") as batch:
        batch.drop_column("focus_y")
        batch.drop_column("focus_x")
    op.execute("DELETE FROM variants WHERE rank > 0")
    with op.batch_alter_table("variants", recreate="always") as batch:
        if op.get_context().dialect.name != "sqlite":
            batch.drop_constraint("variants_pkey", type_="primary")
        batch.create_primary_key("variants_pkey", ["image_id", "preset"])
        for name, _, _ in reversed(NEW_VARIANT_COLUMNS):
            batch.drop_column(name)
