"""Similarity thresholds per false-accept rate, measured per pack (``faceatlas eval lfw``).

A pack's calibration is the one measured by the FaceAtlas team and shipped with the package,
unless the user selects one of theirs by name (``FACEATLAS_CALIBRATION=NAME``, read from
``$FACEATLAS_CACHE/calibration/<pack>.<NAME>.json``, written by ``faceatlas eval lfw --save-as
NAME``). A calibration only applies to the recogniser it was measured with, and only holds a
threshold for a FAR its data supports: at least :data:`IMPOSTORS_PER_FAR` / FAR impostor pairs.
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
# A threshold at FAR 1e-k is written only from at least 10 x 10^k impostor pairs (10 false
# accepts expected at it): with fewer, the threshold is set by a handful of pairs.
IMPOSTORS_PER_FAR = 10


def supported_far(far: float, impostor_pairs: int) -> bool:
    """Whether ``impostor_pairs`` are enough to set a threshold at ``far``."""
    return impostor_pairs * far >= IMPOSTORS_PER_FAR


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


def user_calibration_path(pack: Pack, name: str, settings: EngineSettings | None = None) -> Path:
    """Where the user calibration ``name`` of ``pack`` is kept."""
    return (settings or EngineSettings()).cache_dir / "calibration" / f"{pack.name}.{name}.json"


def load_calibration(pack: Pack, settings: EngineSettings | None = None) -> Calibration | None:
    """The pack's calibration: the user's named in ``settings.calibration`` when this pack has
    it, else the shipped one; None when there is none for this pack's recogniser."""
    settings = settings or EngineSettings()
    candidates: list[Path] = []
    if settings.calibration:
        candidates.append(user_calibration_path(pack, settings.calibration, settings))
    shipped = resources.files("faceatlas.engine").joinpath("calibrations", f"{pack.name}.json")
    for path in (*candidates, shipped):
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
