"""Gallery fixtures: every database test runs on SQLite and on PostgreSQL (FACEATLAS_TEST_PG_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faceatlas.gallery import Gallery

PG_URL_VARIABLE = "FACEATLAS_TEST_PG_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: an SQLite file, or a private schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gallery.db'}"
        return
    base = os.environ.get(PG_URL_VARIABLE)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_URL_VARIABLE} (run: eval \"$(bash .ci/start-postgres.sh)\")")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "indexes"


@pytest.fixture
def gallery(db_url: str, index_dir: Path) -> Iterator[Gallery]:
    """A gallery of tenant 'test' on a fresh database, indexes persisted under ``index_dir``."""
    opened = Gallery.open(db_url, tenant="test", index_dir=index_dir)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def train_dir(examples: Path) -> Path:
    return examples / "examples" / "knn_examples" / "train"


@pytest.fixture(scope="session")
def test_dir(examples: Path) -> Path:
    return examples / "examples" / "knn_examples" / "test"


@pytest.fixture
def enrolled(gallery: Gallery, train_dir: Path, fast_analyzer) -> Gallery:
    """``gallery`` with collection 'people' (scrfd-mbf, crops kept) holding every train person."""
    gallery.create_collection("people", fast_analyzer, keep_crops=True)
    for person in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        images = sorted(str(p) for p in person.iterdir() if p.is_file())
        report = gallery.enrol_images("people", person.name, images, fast_analyzer)
        assert report.added, f"no face enrolled for {person.name}: {report.rejected}"
    return gallery
