"""Retail fixtures: every database test runs on SQLite and on PostgreSQL (FACEATLAS_TEST_PG_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig

PG_URL_VARIABLE = "FACEATLAS_TEST_PG_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: an SQLite file, or a private schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'retail.db'}"
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
def config() -> StoreConfig:
    return StoreConfig(
        id="test-store",
        cameras=[Camera(id="in", role="entrance"), Camera(id="out", role="exit"),
                 Camera(id="shelf-fruit", role="zone", zone="fruit"), Camera(id="till", role="checkout")],
        products=[Product(sku="apple", name="Apple", price_cents=50),
                  Product(sku="milk", name="Milk", price_cents=120)],
    )


@pytest.fixture
def store(db_url: str, tmp_path: Path, config: StoreConfig, fast_analyzer) -> Iterator[RetailStore]:
    """A store on a fresh database with the scrfd-mbf pack."""
    opened = RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "indexes")
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def lfw(shared: Path) -> Path:
    return shared / "data" / "lfw" / "images"


@pytest.fixture(scope="session")
def member_photos(lfw: Path) -> list[Path]:
    """Three photos of one person: enrolment, entry capture, exit capture."""
    return sorted((lfw / "George_W_Bush").glob("*.jpg"))[:3]


@pytest.fixture(scope="session")
def stranger_photo(lfw: Path) -> Path:
    return sorted((lfw / "Tony_Blair").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def spoof_samples(shared: Path) -> Path:
    return shared / "data" / "antispoof_samples"
