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


def test_album_people_rebuilt_for_unique_ids_keep_every_face_s_person(tmp_path) -> None:
    """Migration 0003 of the albums rebuilds ``album_people`` on SQLite (AUTOINCREMENT); dropping the
    old table nulls the faces' ``person_id`` (ON DELETE SET NULL), which it must put back."""
    from pathlib import Path

    from sqlalchemy import text

    from faceatlas.db import upgrade

    engine = create_database_engine(f"sqlite:///{tmp_path / 'albums.db'}")
    try:
        upgrade(engine, Path(albums_db.__file__).parent / "migrations", "0002")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO album_albums (id, owner, name, pack, created_at, revision) "
                                    "VALUES (1, 'me', 'family', 'scrfd-mbf', '2026-12-05', 0)"))
            connection.execute(text("INSERT INTO album_photos (id, album_id, sha256, source, added_at) "
                                    "VALUES (1, 1, 'x', 'a.jpg', '2026-12-05')"))
            connection.execute(text("INSERT INTO album_people (id, album_id, name) VALUES (3, 1, 'Ann'), (7, 1, NULL)"))
            for face, person in ((10, 3), (11, 7), (12, None)):
                connection.execute(text("INSERT INTO album_faces (id, album_id, photo_id, person_id, bbox, quality, "
                                        "yaw, unsorted) VALUES (:f, 1, 1, :p, '[]', 0.9, 0, 0)"),
                                   {"f": face, "p": person})
        albums_db.migrate(engine)
        with engine.begin() as connection:
            faces = dict(connection.execute(text("SELECT id, person_id FROM album_faces ORDER BY id")).all())
            people = connection.execute(text("SELECT id, name FROM album_people ORDER BY id")).all()
            connection.execute(text("DELETE FROM album_people WHERE id = 7"))
            connection.execute(text("INSERT INTO album_people (album_id) VALUES (1)"))
            newest = connection.execute(text("SELECT max(id) FROM album_people")).scalar()
    finally:
        engine.dispose()
    assert faces == {10: 3, 11: 7, 12: None}, "a face lost its person in the rebuild"
    assert [tuple(row) for row in people] == [(3, "Ann"), (7, None)]
    assert newest == 8  # 7 is not given again


def test_processes_starting_together_on_a_fresh_sqlite_file_create_each_table_once(tmp_path) -> None:
    """Six connections (as six server processes starting at once) create the video tables and run
    the service's migrations on one new SQLite file: each waits for the schema lock, none fails
    with "table ... already exists" (4 in 6 did, the check-then-create raced outside a transaction)."""
    import threading

    from faceatlas.db import lock_schema
    from faceatlas.video import VideoBase

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    barrier = threading.Barrier(6)
    failures: list[str] = []

    def start() -> None:
        engine = create_database_engine(url)
        barrier.wait()
        try:
            with engine.begin() as connection:
                lock_schema(connection)
                VideoBase.metadata.create_all(connection)
            service_db.migrate(engine)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(str(exc).splitlines()[0])
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_connections_opening_a_fresh_sqlite_file_together_all_enter_wal(tmp_path) -> None:
    """Six engines connecting at once to a new SQLite file each switch it to WAL: SQLite answers
    that pragma "database is locked" at once, ignoring the busy timeout, while another connection
    converts the file (the migration test above failed so about one run in five; 40 of 300 tries of
    this race did)."""
    import threading

    from sqlalchemy import text

    failures: list[str] = []
    modes: list[str] = []
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"
        barrier = threading.Barrier(6)

        def connect(url: str = url, barrier: threading.Barrier = barrier) -> None:
            engine = create_database_engine(url)
            barrier.wait()
            try:
                with engine.connect() as connection:
                    modes.append(connection.execute(text("PRAGMA journal_mode")).scalar_one())
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(str(exc).splitlines()[0])
            finally:
                engine.dispose()

        threads = [threading.Thread(target=connect) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert modes == ["wal"] * 360


def test_the_ids_of_tenants_deleted_before_revision_0005_are_not_given_again(db_url: str) -> None:
    """Service migration 0005 keeps deleted tenants' ids: those of usage or audit rows that no
    tenant holds (their bill); a tenant deleted earlier was otherwise free to be created anew,
    inheriting its calls against the quota."""
    from datetime import datetime
    from pathlib import Path

    from sqlalchemy import text

    from faceatlas.db import upgrade
    from faceatlas.errors import AlreadyExists
    from faceatlas.service.accounts import Accounts

    engine = create_database_engine(db_url)
    try:
        upgrade(engine, Path(service_db.__file__).parent / "migrations", "0004")
        at = datetime(2026, 3, 1)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO svc_tenants (id, name, created_at) VALUES ('alive', 'Alive', :at)"),
                               {"at": at})
            for tenant in ("alive", "billed"):
                connection.execute(text("INSERT INTO svc_usage (tenant_id, operation, faces, status, latency_ms, at) "
                                        "VALUES (:t, 'detect', 1, 200, 1.0, :at)"), {"t": tenant, "at": at})
            for tenant, action in (("audited", "tenant.delete"), (None, "tenant.create")):
                connection.execute(text("INSERT INTO svc_audit (tenant_id, action, target, details, at) "
                                        "VALUES (:t, :a, 'x', '{}', :at)"), {"t": tenant, "a": action, "at": at})
        service_db.migrate(engine)
        accounts = Accounts(engine)
        for gone in ("billed", "audited"):
            with pytest.raises(AlreadyExists, match="choose another id"):
                accounts.create_tenant(gone)
        assert accounts.create_tenant("fresh").id == "fresh"
        assert [t.id for t in accounts.list_tenants()] == ["alive", "fresh"]
    finally:
        engine.dispose()


def test_a_database_migrated_by_a_newer_faceatlas_is_refused_in_one_line(tmp_path) -> None:
    """A database a newer FaceAtlas migrated (a revision this one does not know): `faceatlas serve`
    printed Alembic's traceback from each process's startup and "Application startup failed", the
    CLI "cannot open the gallery database: Can't locate revision identified by ...". Now one line
    before the port is bound: which tables, which revision, and what to do."""
    import subprocess
    import sys

    from sqlalchemy import text

    from faceatlas.errors import DatabaseUnavailable

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = create_database_engine(url)
    gallery_db.migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0042'"))
    with pytest.raises(DatabaseUnavailable, match=r"gallery tables are at revision 'f00dfeed0042', which this "
                                                  r"FaceAtlas does not know: a newer FaceAtlas migrated"):
        gallery_db.migrate(engine)
    engine.dispose()
    env = {"FACEATLAS_DATABASE_URL": url, "FACEATLAS_INDEX_DIR": str(tmp_path / "indexes"), "PATH": "/usr/bin:/bin"}
    import os

    env["FACEATLAS_MODEL_DIR"] = os.environ.get("FACEATLAS_MODEL_DIR", "")
    done = subprocess.run([sys.executable, "-m", "faceatlas.cli", "serve", "--port", "0", "--pack", "dlib"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Application startup failed" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error (database_unavailable): the gallery tables are at revision 'f00dfeed0042'"), done.stderr


def test_the_service_downgrades_keep_every_tenant_s_keys(db_url: str) -> None:
    """A database is never migrated back by FaceAtlas, but an operator's `alembic downgrade` is
    Alembic's promise: the downgrades of 0007 and 0004 copied ``svc_tenants`` on SQLite (batch mode),
    whose drop cascaded to every API key (foreign keys are on). The columns are dropped in place."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from faceatlas.service.accounts import Accounts

    engine = create_database_engine(db_url)
    try:
        service_db.migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        accounts.create_key("acme", ["read"])
        config = Config()
        config.set_main_option("script_location", str(Path(service_db.__file__).parent / "migrations"))
        for revision in ("0006", "0003"):
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, revision)
            with engine.connect() as connection:
                assert connection.scalar(text("SELECT count(*) FROM svc_api_keys")) == 1, revision
                assert connection.scalar(text("SELECT count(*) FROM svc_tenants")) == 1, revision
        service_db.migrate(engine)  # upgraded again: the key is there
        assert len(Accounts(engine).list_keys("acme")) == 1
    finally:
        engine.dispose()
