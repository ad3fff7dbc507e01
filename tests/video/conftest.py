"""Video fixtures: the real clips in ../shared and an in-memory event sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceatlas.video.events import Event


class MemorySink:
    """Collects events in a list (a sink for tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


@pytest.fixture(autouse=True)
def events_database(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """`watch` without `database:` stores its events in the settings' database: the test's own file
    (beside its tmp_path, whose files some tests list), not the default one in the home folder of
    whoever runs the tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('settings') / 'faceatlas.db'}"
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", url)
    return url


@pytest.fixture
def memory() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="session")
def hamilton(examples: Path) -> Path:
    return examples / "examples" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="session")
def pedestrians(shared: Path) -> Path:
    return shared / "data" / "videos" / "people_walking_vtest.avi"


@pytest.fixture(scope="session")
def person_detector(shared: Path):
    from faceatlas.engine.persons import PersonDetector

    return PersonDetector()
