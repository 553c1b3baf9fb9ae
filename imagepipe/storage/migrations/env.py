"""Alembic environment: run by imagepipe.storage.catalog.migrate on a live connection."""
from alembic import context

from imagepipe.storage.catalog import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
