"""Gallery fixtures: every database test runs on SQLite and on PostgreSQL (FACEATLAS_TEST_PG_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceatlas.gallery import Gallery


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
