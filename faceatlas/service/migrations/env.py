"""Alembic environment of the service tables; run by ``faceatlas.service.db.migrate``."""

from faceatlas.db import run_migrations_env
from faceatlas.service.db import VERSION_TABLE, Base

run_migrations_env(Base.metadata, VERSION_TABLE)
