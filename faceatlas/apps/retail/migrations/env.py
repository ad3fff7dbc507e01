"""Alembic environment of the retail tables; run from faceatlas.apps.retail.db.migrate."""

from alembic import context

from faceatlas.apps.retail.db import VERSION_TABLE, Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
