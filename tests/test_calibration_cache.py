"""The calibrations a process keeps (:class:`Calibrations`): a file parsed once while unchanged,
and parsed again once rewritten, without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceatlas.engine import (
    Calibration,
    Calibrations,
    get_pack,
    load_calibration,
    save_calibration,
    user_calibration_path,
)
from faceatlas.settings import EngineSettings


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the JSON files read (``Path.read_text`` wrapped, still reading)."""
    read_text, seen = Path.read_text, []

    def counted(self: Path, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
        if self.suffix == ".json":
            seen.append(self.name)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    return seen


def test_a_calibration_is_parsed_once_while_its_file_is_unchanged(reads: list[str]) -> None:
    pack, calibrations = get_pack("scrfd-mbf"), Calibrations()
    first = load_calibration(pack, calibrations=calibrations)
    assert first is not None and reads == ["scrfd-mbf.json"]
    assert all(load_calibration(pack, calibrations=calibrations) is first for _ in range(5))
    assert reads == ["scrfd-mbf.json"]
    load_calibration(pack)  # without the kept ones: read now, as before
    assert reads == ["scrfd-mbf.json"] * 2


def test_a_rewritten_user_calibration_is_read_again_without_a_restart(tmp_path: Path, reads: list[str]) -> None:
    settings = EngineSettings(cache_dir=tmp_path, calibration="mine")
    pack, calibrations = get_pack("scrfd-mbf", settings), Calibrations()
    path = user_calibration_path(pack, "mine", settings)

    def save(threshold: float) -> None:  # as `faceatlas eval ... --save-as mine --replace` writes it
        save_calibration(Calibration(pack="scrfd-mbf", recognizer_id=pack.recognizer_id,
                                     thresholds={"1e-3": threshold}), path)

    save(0.34)
    mine = load_calibration(pack, settings, calibrations)
    assert mine is not None and mine.name == "mine" and mine.threshold(1e-3) == 0.34
    assert load_calibration(pack, settings, calibrations) is mine and reads == ["scrfd-mbf.mine.json"]
    save(0.35)  # the same size, at once: within the file system's timestamp tick
    again = load_calibration(pack, settings, calibrations)
    assert again is not None and again.threshold(1e-3) == 0.35 and again.name == "mine"
    assert reads == ["scrfd-mbf.mine.json"] * 2
