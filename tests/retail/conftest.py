"""Retail fixtures: every database test runs on SQLite and on PostgreSQL (FACEATLAS_TEST_PG_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig


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
