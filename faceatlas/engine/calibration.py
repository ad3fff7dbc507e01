"""Similarity thresholds per false-accept rate, measured per pack (``faceatlas eval lfw``).

A pack's calibration is the one measured by the FaceAtlas team and shipped with the package,
unless the user selects one of theirs by name (``FACEATLAS_CALIBRATION=NAME``, read from
``$FACEATLAS_CACHE/calibration/<pack>.<NAME>.json``, written by ``faceatlas eval lfw --save-as
NAME``). A calibration only applies to the recogniser it was measured with, and only holds a
threshold for a FAR its data supports: at least :data:`IMPOSTORS_PER_FAR` / FAR impostor pairs.

Open-set identification (1:N, "who, or nobody") is decided at a false positive identification
rate (FPIR): the share of searches by people *not* in the gallery that return anyone. A search
compares the probe with every face of the gallery, so a stranger is accepted when the best of
``n`` impostor scores passes: FPIR = 1 - (1 - FAR)^n, and the threshold at FPIR ``p`` for a
gallery of ``n`` faces is the 1:1 threshold at FAR ``1 - (1 - p)^(1/n)`` (about ``p / n``). Those
FARs go far below a fixed grid, so a calibration keeps the impostor tail (``tail``: thresholds on
a fine FAR grid down to the lowest its data supports); between grid points the threshold is
interpolated in log FAR, and below the lowest it is extrapolated along the last decade's slope,
which over-states the FAR of a tail that falls faster than exponentially (cosine scores' tails do):
the extrapolated threshold errs strict. ``bench/lfw_identification.py`` checks the stated FPIR
against LFW non-mated searches.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.engine.packs import Pack
from faceatlas.errors import FarNotCalibrated, InvalidArgument, InvalidSetting, NotCalibrated
from faceatlas.settings import EngineSettings

log = logging.getLogger(__name__)

STANDARD_FARS = (1e-3, 1e-4, 1e-5, 1e-6)
# The false-accept rate of a decision when the caller names none: compare, verify and search, in
# the engine, the gallery, the CLI, the API and the Python client alike.
DEFAULT_FAR = 1e-4
# The false positive identification rate of a search (1:N) when the caller names no cut: the gallery,
# the CLI, the API, the client and the video and retail matchers alike.
DEFAULT_FPIR = 1e-3
STANDARD_FPIRS = (1e-2, 1e-3)
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
    tail: dict[str, float] = field(default_factory=dict)
    # The same for a probe against subject *templates* (normalised means of 2 photos of one person):
    # searches that score subjects by their mean template (``aggregate="mean"``) read this one.
    template_tail: dict[str, float] = field(default_factory=dict)
    # The user calibration's name (``FACEATLAS_CALIBRATION``), set where it is loaded from its file's
    # name; "" for the shipped one or one not loaded by name. Never written to the JSON.
    name: str = field(default="", compare=False)

    def described(self) -> str:
        """This calibration as errors name it: ``calibration 'mine' of pack P``, or ``pack P``."""
        return f"calibration {self.name!r} of pack {self.pack}" if self.name else f"pack {self.pack}"

    def summary(self) -> str:
        """Its FARs and the pairs behind them, as said when a save would replace it: ``FAR 1e-3, 1e-4
        from 120 genuine / 500,000 impostor pairs (faceatlas eval folder A, 2025-01-02)``."""
        fars = ", ".join(sorted(self.thresholds, key=float)) or "none"
        pairs = [f"{int(self.metrics[k]):,} {k.split('_')[0]}" for k in ("genuine_pairs", "impostor_pairs")
                 if k in self.metrics]
        made = f" from {' / '.join(pairs)} pairs" if pairs else ""
        return f"FAR {fars}{made}" + (f" ({self.source})" if self.source else "")

    def threshold(self, far: float) -> float:
        """The threshold for ``far``: one of the calibrated rates exactly (up to float rounding), else
        :class:`FarNotCalibrated` naming the rate given as given and the calibrated ones. It was
        matched on ``far`` rounded to one significant digit: 9.6e-4 was decided at 1e-3's threshold
        (looser than asked), 1.4e-4 at 1e-4's, and 0.0015 was refused as "not 2e-3". A standard FAR
        (the default among them) that a user calibration's impostor pairs were too few for is refused
        naming the calibration, the FARs it has, the pairs it needed and how to choose (it said "far
        0.0001 is not one of the calibrated rates" to a `compare` given no --far)."""
        for key, value in self.thresholds.items():
            if math.isclose(float(key), far, rel_tol=1e-9):
                return value
        have = ", ".join(sorted(self.thresholds, key=float))
        standard = any(math.isclose(far, rate, rel_tol=1e-9) for rate in STANDARD_FARS)
        if not (standard and self.thresholds):
            raise FarNotCalibrated(f"far {far!r} is not one of the calibrated rates of {self.described()}: "
                                   f"{have or 'none'}")
        default = " (the default)" if math.isclose(far, DEFAULT_FAR, rel_tol=1e-9) else ""
        made = self.metrics.get("impostor_pairs")
        had = f", it was made from {int(made):,}" if made else ""
        loosest = max(self.thresholds, key=float)
        raise FarNotCalibrated(
            f"{self.described()} has thresholds at FAR {have} only: FAR {far_key(far)}{default} needs at least "
            f"{IMPOSTORS_PER_FAR / far:,.0f} impostor pairs{had}; give far {loosest} (--far {loosest}), or select "
            "another calibration with FACEATLAS_CALIBRATION (unset: the shipped one), or make this one again "
            "from more people")

    def far_threshold(self, far: float) -> float:
        """The threshold for any FAR in (0, 1): interpolated on the impostor tail (the standard
        thresholds when the calibration has no tail), extrapolated strict below its lowest FAR and
        held at its highest FAR's threshold above it."""
        if not 0.0 < far < 1.0:
            raise InvalidArgument(f"far is a rate between 0 and 1 (both excluded), not {far}")
        return _read_curve(self._tail_curve, far)

    @cached_property
    def _tail_curve(self) -> Curve:
        if not (self.tail or self.thresholds):
            raise FarNotCalibrated(f"the calibration of pack {self.pack} holds no threshold")
        return _curve(self.tail or self.thresholds)

    @cached_property
    def _template_curve(self) -> Curve:
        return _curve(self.template_tail)

    def fpir_threshold(self, fpir: float, gallery_size: int, *, templates: bool = False) -> float:
        """The threshold at which a search of a gallery of ``gallery_size`` faces returns anyone
        for at most ``fpir`` of the people not in it (see the module docstring). With
        ``templates`` the gallery is ``gallery_size`` subject templates (mean of their faces),
        read on :attr:`template_tail` where the calibration has one (a template of several photos
        sits nearer to strangers' faces than one photo does: LFW, ``scrfd-mbf``, FAR 1e-4: 0.424
        against 0.414), never below the photos' tail (the template tail rests on fewer pairs, so
        its extrapolation to a large gallery's FAR starts higher up), else on the photos' tail."""
        if not 0.0 < fpir < 1.0:
            raise InvalidArgument(f"fpir is a rate between 0 and 1 (both excluded), not {fpir}")
        far = per_comparison_far(fpir, gallery_size)
        if templates and self.template_tail:
            return max(_read_curve(self._template_curve, far), self.far_threshold(far))
        return self.far_threshold(far)

    def lowest_far(self, *, templates: bool = False) -> float:
        """The lowest FAR this calibration's impostor pairs reach; below it thresholds are extrapolated."""
        tail = self.template_tail if templates and self.template_tail else (self.tail or self.thresholds)
        return min(float(k) for k in tail)

    def extrapolates(self, fpir: float, gallery_size: int, *, templates: bool = False) -> bool:
        """Whether :meth:`fpir_threshold` for this gallery size reads below the measured tail (the
        threshold is then extrapolated: strict by design, but the FPIR reached is not measured)."""
        return per_comparison_far(fpir, gallery_size) < self.lowest_far(templates=templates)

    def far_level(self, similarity: float) -> float | None:
        """The strictest calibrated FAR whose threshold ``similarity`` reaches, or None."""
        passed = [float(k) for k, t in self.thresholds.items() if similarity >= t]
        return min(passed) if passed else None


Curve = tuple[np.ndarray, np.ndarray, float]


def _curve(tail: dict[str, float]) -> Curve:
    """log10 FAR (descending) and threshold of each tail point, and the slope extrapolated below
    the lowest: fitted on the points above the last decade (whose thresholds rest on a few dozen
    impostor pairs, label noise among them), never rising as the FAR falls. Parsed once per
    calibration, as searches read it on every call."""
    points = sorted(((float(k), t) for k, t in tail.items()), reverse=True)
    logs = np.log10([f for f, _ in points])
    values = np.array([t for _, t in points])
    fitted = logs >= logs[-1] + 1.0 - 1e-9
    if fitted.sum() < 2:
        fitted[-2:] = True
    slope = float(np.polyfit(logs[fitted], values[fitted], 1)[0]) if len(points) > 1 else 0.0
    return logs, values, min(slope, 0.0)


def _read_curve(curve: Curve, far: float) -> float:
    """The threshold at ``far``: interpolated in log FAR, held above the highest point, extrapolated
    strict below the lowest."""
    logs, values, slope = curve
    x = math.log10(far)
    if x >= logs[0]:
        return float(values[0])
    if x >= logs[-1]:
        return float(np.interp(-x, -logs, values))
    return float(values[-1] + slope * (x - logs[-1]))


@dataclass(frozen=True)
class Cut:
    """Where a decision cuts, first that applies: a raw cosine ``threshold``, a 1:1 ``far``, an
    open-set ``fpir`` (1:N, for the searched gallery's size); none of them: rank without deciding."""

    threshold: float | None = None
    far: float | None = None
    fpir: float | None = None

    def __post_init__(self) -> None:
        # refused where the cut is made: a batch search checked its fpir only after embedding every image
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise InvalidArgument(f"threshold is a cosine similarity, -1 to 1, not {self.threshold}")
        for name in ("far", "fpir"):
            rate = getattr(self, name)
            if rate is not None and not 0.0 < rate < 1.0:  # a rate, not one the calibration lacks
                raise InvalidArgument(f"{name} is a rate between 0 and 1 (both excluded), not {rate}")

    @classmethod
    def given(cls, *, threshold: float | None = None, far: float | None = None, fpir: float | None = None,
              rank_only: bool = False) -> Cut:
        """The cut a door's options ask for, each ``None`` when not given: at most one of ``threshold``,
        ``far`` and ``fpir`` (two would be decided by the first silently); none: the default
        FPIR, or no cut with ``rank_only``, which none of them goes with (a threshold or a far
        overrode it silently, an fpir was refused)."""
        named = [name for name, value in (("threshold", threshold), ("far", far), ("fpir", fpir))
                 if value is not None]
        if len(named) > 1:
            raise InvalidArgument(f"{' and '.join(named)} are alternative cuts: give one of them")
        if rank_only and named:
            raise InvalidArgument(f"rank_only ranks without the {named[0]} cut: give one of them")
        if fpir is None and not (rank_only or named):
            fpir = DEFAULT_FPIR
        return cls(threshold=threshold, far=far, fpir=fpir)

    @classmethod
    def verifying(cls, *, threshold: float | None = None, far: float | None = None) -> Cut:
        """The cut of a 1:1 verification's options, each ``None`` when not given: at most one of
        ``threshold`` and ``far``; neither: the default FAR."""
        if threshold is not None and far is not None:
            raise InvalidArgument("threshold and far are alternative cuts: give one of them")
        return cls(threshold=threshold, far=DEFAULT_FAR if threshold is None and far is None else far)

    def check(self, calibration: Calibration | None) -> Cut:
        """This cut, when ``calibration`` can decide at it: a ``far`` it holds no threshold for is
        :class:`FarNotCalibrated`. Doors call it before any face is analysed: ``far=0.5`` was refused
        only after the models ran, and the faces were billed. Without a calibration the decision
        says so where it is made (a verdict without a match, or :class:`NotCalibrated`)."""
        if calibration is not None and self.threshold is None and self.far is not None:
            calibration.threshold(self.far)
        return self

    @property
    def decides(self) -> bool:
        return self.threshold is not None or self.far is not None or self.fpir is not None

    def similarity(self, calibration: Calibration | None, gallery_size: int = 1, *,
                   templates: bool = False) -> float | None:
        """The similarity a match must reach (None when the cut does not decide); ``templates``:
        the gallery is ``gallery_size`` subject templates (:meth:`Calibration.fpir_threshold`)."""
        if self.threshold is not None:
            return self.threshold
        if not self.decides:
            return None
        if calibration is None:
            raise NotCalibrated(f"no calibration to decide at {self.describe()}; pass a raw threshold")
        if self.far is not None:
            return calibration.threshold(self.far)
        # an fpir of 0 is refused there, not read as the default
        return calibration.fpir_threshold(float(DEFAULT_FPIR if self.fpir is None else self.fpir), gallery_size,
                                          templates=templates)

    def search_options(self) -> dict[str, Any]:
        """This cut as the keyword arguments of ``Gallery.search``."""
        return {"threshold": self.threshold, "far": self.far, "fpir": DEFAULT_FPIR if self.fpir is None else self.fpir,
                "rank_only": not self.decides}

    def stated(self) -> dict[str, float]:
        """The cut that applies, named as the doors answer it (CLI and API alike): ``{"threshold": t}``,
        ``{"far": f}`` or ``{"fpir": p}``; ``{}`` when it ranks without deciding."""
        for name in ("threshold", "far", "fpir"):
            value = getattr(self, name)
            if value is not None:
                return {name: value}
        return {}

    def describe(self) -> str:
        if self.threshold is not None:
            return f"similarity >= {self.threshold:g}"
        if self.far is not None:
            return f"FAR {self.far:g}"
        if self.fpir is not None:
            return f"FPIR {self.fpir:g}"
        return "ranked only"


def per_comparison_far(fpir: float, gallery_size: int) -> float:
    """The 1:1 FAR at which ``gallery_size`` independent comparisons pass one at rate ``fpir``."""
    return float(-np.expm1(np.log1p(-fpir) / max(1, gallery_size)))


def far_key(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


# a user calibration's name, as ``--save-as`` and FACEATLAS_CALIBRATION take it: a plain file name
# part, no folder (no '/' or '\\') and no leading dot ('.', '..' and '.x' were taken: hidden files)
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")
NAME_RULE = "1-64 letters, digits, '_', '.' or '-', not starting with '.' (a plain file name: no '/' or '\\')"


def check_calibration_name(name: str) -> str:
    """``name`` when it can name a user calibration (:data:`NAME_RULE`, as ``FACEATLAS_CALIBRATION``
    takes it); else :class:`InvalidArgument` saying the rule. Doors call it before the evaluation's
    minutes (``--save-as "my cal"`` was refused only after them); ``--save-as ..`` wrote the hidden
    file ``<pack>....json``."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"invalid calibration name {name!r}: use {NAME_RULE}")
    return name


def user_calibration_path(pack: Pack, name: str, settings: EngineSettings | None = None) -> Path:
    """Where the user calibration ``name`` of ``pack`` is kept (a name no calibration may have is
    :class:`InvalidArgument`, :func:`check_calibration_name`)."""
    check_calibration_name(name)
    return (settings or EngineSettings()).cache_dir / "calibration" / f"{pack.calibration_name}.{name}.json"


class Calibrations:
    """The calibration files this process has parsed, each kept while its file is unchanged: keyed
    on (path, st_mtime_ns, st_size, st_ino), so a calibration rewritten on disk (``faceatlas eval ...
    --save-as``, :func:`save_calibration`) is read again at its next use, without a restart. A
    search by embedding read and parsed the JSON (and fitted its tail curve) on every request.
    The inode is in the key because :func:`save_calibration` replaces the file by a new one: two
    saves of the same size within the file system's timestamp tick (a few ms) still differ. One
    per owner (the service's ``app.state.calibrations``), never a module global; safe across
    threads (a race parses a file twice, never half)."""

    def __init__(self) -> None:
        self._parsed: dict[Path, tuple[tuple[int, int, int], Calibration]] = {}

    def read(self, path: Path) -> Calibration:
        """The calibration in the file ``path``, parsed again only when its file changed."""
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        kept = self._parsed.get(path)
        if kept is not None and kept[0] == version:
            return kept[1]
        found = _parse(path)
        self._parsed[path] = (version, found)
        return found


def _parse(path: Path | Traversable) -> Calibration:
    """The one place a calibration file is read (:func:`load_calibration`, through :class:`Calibrations`)."""
    return Calibration(**json.loads(path.read_text()))


def load_calibration(pack: Pack, settings: EngineSettings | None = None,
                     calibrations: Calibrations | None = None) -> Calibration | None:
    """The pack's calibration: the user's named in ``settings.calibration`` when this pack has
    it, else the shipped one; None when there is none for this pack's recogniser. A name no
    calibration has (of any pack) is :class:`InvalidSetting`. ``calibrations``: the files already
    parsed, re-read only when changed (default: read now)."""
    settings = settings or EngineSettings()
    candidates: list[Path] = []
    if settings.calibration:
        chosen = user_calibration_path(pack, settings.calibration, settings)
        if not any(chosen.parent.glob(f"*.{settings.calibration}.json")):  # a typo is not "the shipped one"
            made = sorted(p.name for p in chosen.parent.glob("*.json"))
            raise InvalidSetting(f"FACEATLAS_CALIBRATION={settings.calibration!r}: no calibration of that name in "
                                 f"{chosen.parent} (`faceatlas eval lfw --save-as NAME` makes one; made here: "
                                 f"{', '.join(made[:20]) or 'none'})")
        candidates.append(chosen)
    shipped = resources.files("faceatlas.engine").joinpath("calibrations", f"{pack.calibration_name}.json")
    for path in (*candidates, shipped):
        if path.is_file():
            # the shipped file is a Path but in a zipped install (no mtime there: read each time)
            found = calibrations.read(path) if calibrations is not None and isinstance(path, Path) else _parse(path)
            if found.recognizer_id == pack.recognizer_id:
                found.name = (settings.calibration or "") if path in candidates else ""
                return found
            if path in candidates:
                log.warning("calibration %s was made for other model files (%s), not this pack's %s: "
                            "the shipped calibration is used", path, found.recognizer_id, pack.recognizer_id)
    return None


def check_calibration_path(path: Path) -> Path:
    """``path`` when a calibration JSON can be written there; :class:`InvalidArgument` for ``-``
    (stdout holds the report), a folder, or a name not ending ``.json``. Called before the
    evaluation's minutes (after them, a folder was a traceback and ``-`` a file named ``-``)."""
    if str(path) == "-":
        raise InvalidArgument("the calibration is written to a file, not '-' (stdout): give a path ending .json; "
                              "--json prints the report with its thresholds")
    if path.is_dir():
        raise InvalidArgument(f"{path} is a folder: give the calibration's file, e.g. {path / 'calibration.json'}")
    if path.suffix.lower() != ".json":  # `--output photo.jpg` wrote the JSON over the photo
        raise InvalidArgument(f"--output {path}: the calibration is JSON: give a path ending .json")
    return path


def save_calibration(calibration: Calibration, path: Path) -> Path:
    """Write ``calibration`` as JSON to ``path`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        fields = asdict(calibration)
        fields.pop("name")  # the file's name says it
        tmp.write_text(json.dumps(fields, indent=2, sort_keys=True))
        tmp.replace(path)
    finally:  # interrupted (Ctrl-C, SIGTERM), the half-written file goes; renamed, nothing is left
        tmp.unlink(missing_ok=True)
    return path
