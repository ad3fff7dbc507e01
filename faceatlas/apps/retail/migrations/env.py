"""Alembic environment of the retail tables; run by ``faceatlas.apps.retail.db.migrate``."""

from faceatlas.apps.retail.db import VERSION_TABLE, Base
from faceatlas.db import run_migrations_env

run_migrations_env(Base.metadata, VERSION_TABLE)
