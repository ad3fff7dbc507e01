"""Similarity thresholds per false-accept rate, measured per pack (``faceatlas eval lfw``).

A pack's calibration is read from ``$FACEATLAS_CACHE/calibration/<pack>.json`` when the user
ran the evaluation, else from the values measured by the FaceAtlas team and shipped with
the package. A calibration only applies to the recogniser it was measured with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from faceatlas.engine.packs import Pack
from faceatlas.errors import FarNotCalibrated
from faceatlas.settings import EngineSettings

STANDARD_FARS = (1e-3, 1e-4, 1e-5, 1e-6)
# The false-accept rate of a decision when the caller names none: compare, verify and search, in
# the engine, the gallery, the CLI, the API and the Python client alike.
DEFAULT_FAR = 1e-4


@dataclass
class Calibration:
    """Thresholds (cosine similarity) at which the false-accept rate is at most each FAR."""

    pack: str
    recognizer_id: str
    thresholds: dict[str, float]
    source: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def threshold(self, far: float) -> float:
        """The threshold for ``far`` (one of the calibrated rates, else :class:`FarNotCalibrated`)."""
        key = far_key(far)
        if key not in self.thresholds:
            have = sorted(self.thresholds, key=float)
            raise FarNotCalibrated(f"far must be one of the calibrated rates {have} of pack {self.pack}, not {key}")
        return self.thresholds[key]

    def far_level(self, similarity: float) -> float | None:
        """The strictest calibrated FAR whose threshold ``similarity`` reaches, or None."""
        passed = [float(k) for k, t in self.thresholds.items() if similarity >= t]
        return min(passed) if passed else None


def far_key(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


def user_calibration_path(pack: Pack, settings: EngineSettings | None = None) -> Path:
    return (settings or EngineSettings()).cache_dir / "calibration" / f"{pack.name}.json"


def load_calibration(pack: Pack, settings: EngineSettings | None = None) -> Calibration | None:
    """The pack's calibration (user-measured first, then shipped), or None when there is none
    for this pack's recogniser."""
    shipped = resources.files("faceatlas.engine").joinpath("calibrations", f"{pack.name}.json")
    for path in (user_calibration_path(pack, settings), shipped):
        if path.is_file():
            found = Calibration(**json.loads(path.read_text()))
            if found.recognizer_id == pack.recognizer_id:
                return found
    return None


def save_calibration(calibration: Calibration, path: Path) -> Path:
    """Write ``calibration`` as JSON to ``path`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(calibration), indent=2, sort_keys=True))
    tmp.replace(path)
    return path
