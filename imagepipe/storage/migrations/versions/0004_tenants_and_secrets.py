"""images.tenant (the API key an image belongs to) and store_secrets (the grant key)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=True))
        batch.create_index("ix_images_tenant_created_at", ["tenant", "created_at"])
    op.create_table(
        "store_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade():
    op.drop_table("store_secrets")
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_tenant_created_at")
        batch.drop_column("tenant")
