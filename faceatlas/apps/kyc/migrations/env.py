"""Alembic environment of the verification tables; run by ``faceatlas.apps.kyc.db.migrate``."""

from faceatlas.apps.kyc.db import VERSION_TABLE, Base
from faceatlas.db import run_migrations_env

run_migrations_env(Base.metadata, VERSION_TABLE)
