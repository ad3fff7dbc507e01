"""Every layer's Alembic history builds the tables its models declare: columns, types, indexes
and keys, on SQLite and on PostgreSQL (an index or column added to a model without a migration
exists in tests that create tables from the models, and nowhere in a user's upgraded database)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from faceatlas.apps.albums import db as albums_db
from faceatlas.apps.kyc import db as kyc_db
from faceatlas.apps.retail import db as retail_db
from faceatlas.db import create_database_engine
from faceatlas.gallery import models as gallery_db
from faceatlas.service import db as service_db

LAYERS: dict[str, tuple[ModuleType, Callable]] = {
    "gallery": (gallery_db, gallery_db.migrate),
    "service": (service_db, service_db.migrate),
    "retail": (retail_db, retail_db.migrate),
    "albums": (albums_db, albums_db.migrate),
    "kyc": (kyc_db, kyc_db.migrate),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_the_migrations_build_what_the_models_declare(layer: str, db_url: str) -> None:
    module, migrate = LAYERS[layer]
    metadata: MetaData = module.Base.metadata
    engine = create_database_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "compare_type": True,
                # the tables of this layer only: the others (other layers', version tables) are theirs
                "include_name": lambda name, kind, _parent: kind != "table" or name in metadata.tables,
            })
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
