"""Gallery fixtures: every database test runs on SQLite and on PostgreSQL (FACEATLAS_TEST_PG_URL).

The vector backend is FAISS (the gallery's own index files) unless a test asks for both with
``@pytest.mark.parametrize("vector_backend", ["faiss", "milvus"], indirect=True)``: then it runs
once more with its vectors in Milvus Lite (``FACEATLAS_VECTOR_BACKEND=milvus``, set in the
environment as a user does, so child processes inherit it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from faceatlas.gallery import Gallery

pytest.register_assert_rewrite("tests.gallery._steps")  # before the test files import it: its asserts explained


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_erasure.py's CLI door costs a child process (~7 s of CPU, the CLI's imports): its
    delete on PostgreSQL repeats the SQLite twin, its merge the gallery door's (same
    ``merge_subjects`` in a process that loaded no index). Slow: ``pytest -m slow`` runs them,
    with the Milvus-on-PostgreSQL variants."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.path.name == "test_erasure.py" and params.get("door") == "cli" and (
                params.get("db_url") == "postgresql" or item.name.startswith("test_a_merge")):
            item.add_marker(pytest.mark.slow)
        # Milvus on PostgreSQL repeats Milvus on SQLite (the vectors are Milvus's either way): slow,
        # so the default suite stays near ten minutes; CI's slow step (.ci/run) runs it.
        if params.get("vector_backend") == "milvus" and params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "indexes"


@pytest.fixture(scope="session")
def milvus_lite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file per test process (its embedded server starts once); each test keeps to
    collections of its own prefix."""
    return tmp_path_factory.mktemp("milvus-lite") / "vectors.db"


@pytest.fixture
def vector_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``faiss``, or ``milvus`` (Milvus Lite) where a test is parametrised indirectly; the
    ``FACEATLAS_VECTOR_BACKEND`` every gallery of the test opens with."""
    backend = str(getattr(request, "param", "faiss"))
    monkeypatch.setenv("FACEATLAS_VECTOR_BACKEND", backend)
    if backend == "milvus":
        pytest.importorskip("pymilvus")
        monkeypatch.setenv("FACEATLAS_MILVUS_URI", str(request.getfixturevalue("milvus_lite_file")))
        monkeypatch.setenv("FACEATLAS_MILVUS_PREFIX", f"t{uuid.uuid4().hex[:12]}")
    return backend


@pytest.fixture
def milvus_held(vector_backend: str) -> Callable[[Iterable[int]], list[int]]:
    """``milvus_held(face_ids)``: which of ``face_ids`` any Milvus collection of this test holds,
    asked of Milvus with a client of its own (not through the gallery); [] on FAISS."""

    def held(face_ids: Iterable[int]) -> list[int]:
        ids = sorted(int(i) for i in face_ids)
        if vector_backend != "milvus" or not ids:
            return []
        import pymilvus

        client = pymilvus.MilvusClient(os.environ["FACEATLAS_MILVUS_URI"])
        try:
            prefix = os.environ["FACEATLAS_MILVUS_PREFIX"]
            found: set[int] = set()
            for name in client.list_collections():
                if name.startswith(f"{prefix}_") and name != f"{prefix}_revisions":
                    rows = client.query(name, ids=ids, output_fields=["id"], consistency_level="Strong")
                    found.update(int(row["id"]) for row in rows)
            return sorted(found)
        finally:
            client.close()

    return held


@pytest.fixture
def release_milvus_lite(vector_backend: str) -> Callable[[], None]:
    """``release_milvus_lite()`` lets a child process open this process's Milvus Lite file (Lite
    serves one process per file): it stops the Lite server that this test's own pymilvus clients
    (``milvus_held``) started here; a gallery's close stops its own. The next one starts it again."""

    def release() -> None:
        if vector_backend == "milvus":
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(os.environ["FACEATLAS_MILVUS_URI"])

    return release


@pytest.fixture
def gallery(db_url: str, index_dir: Path, vector_backend: str) -> Iterator[Gallery]:
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
