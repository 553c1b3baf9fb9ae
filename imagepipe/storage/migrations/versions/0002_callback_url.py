"""images.callback_url: where to POST the status once the image is finished

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text, nullable=True))


def downgrade():
    with op.batch_alter_table("images") as batch:
        batch.drop_column("callback_url")
