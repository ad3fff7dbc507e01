"""Alembic environment of the album tables; run by ``faceatlas.apps.albums.db.migrate``."""

from faceatlas.apps.albums.db import VERSION_TABLE, Base
from faceatlas.db import run_migrations_env

run_migrations_env(Base.metadata, VERSION_TABLE)
