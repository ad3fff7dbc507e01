"""LFW evaluation: the 10-fold View-2 protocol, ROC, and TAR at fixed FARs from all-vs-all pairs.

The image set is every image that ``pairs.txt`` uses. Each image is embedded once (the most
central face; when the detector finds none, the central box of the photo is embedded with
:meth:`FaceAnalyzer.face_in_box` and counted as a fallback). From the embeddings come

* the standard 10-fold accuracy over the 6,000 pairs (threshold chosen on 9 folds, tested on the 10th),
* the ROC of those pairs,
* exact similarity thresholds at FAR 1e-3 .. 1e-6 from *every* impostor pair of the image set
  (all pairs of images of different people, about 29.6 million) and the TAR over every genuine pair.

The thresholds become the pack's :class:`Calibration` (similarity >= threshold accepts).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.console import Console
from rich.progress import Progress

from faceatlas.engine.analyzer import FaceAnalyzer
from faceatlas.engine.calibration import (
    IMPOSTORS_PER_FAR,
    STANDARD_FARS,
    Calibration,
    check_calibration_name,
    check_calibration_path,
    far_key,
    save_calibration,
    supported_far,
    user_calibration_path,
)
from faceatlas.engine.draw import check_figure_path, same_file
from faceatlas.engine.face import Face
from faceatlas.engine.image import must_exist
from faceatlas.engine.packs import Pack, Runtime, get_pack
from faceatlas.engine.vectors import l2_normalize
from faceatlas.errors import AlreadyExists, InvalidArgument, InvalidInput
from faceatlas.settings import EngineSettings

CENTRAL_BOX = (0.28, 0.28, 0.72, 0.72)  # fractions of width/height: [70, 70, 180, 180] on a 250x250 LFW photo


@dataclass(frozen=True)
class Pair:
    """One line of ``pairs.txt``: two image keys (``Name/Name_0001.jpg``), same person or not, fold."""

    a: str
    b: str
    same: bool
    fold: int


def json_ready(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, numbers, numpy scalars) with every NaN or infinity as None:
    what JSON can hold (``json.dumps`` wrote ``NaN``, which no JSON parser reads, for a rate no
    trial measured), numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def image_key(name: str, number: int) -> str:
    """The relative path of LFW image ``number`` of ``name``."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs(path: Path, limit_folds: int | None = None) -> list[Pair]:
    """Parse a View-2 ``pairs.txt`` (header ``folds n``, then per fold n same + n different lines);
    a file that is not one (unreadable, not text, a bad header or line) is :class:`InvalidInput`."""
    try:
        lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot be read as an LFW pairs.txt ({exc})") from exc
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError) as exc:
        first = " ".join(lines[0])[:80] if lines else "an empty file"
        raise InvalidInput(f"{path}: not an LFW pairs.txt: its first line is 'FOLDS PAIRS_PER_FOLD', "
                           f"not {first!r}") from exc
    if folds < 1 or per_fold < 1:
        raise InvalidInput(f"{path}: the header asks for {folds} folds of {per_fold} pairs")
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise InvalidInput(f"{path}: expected {folds * 2 * per_fold} pair lines, found {len(body)}")
    pairs = []
    for i, cols in enumerate(body):
        fold = i // (2 * per_fold)
        if limit_folds is not None and fold >= limit_folds:
            break
        try:
            if len(cols) == 3:
                pairs.append(Pair(image_key(cols[0], int(cols[1])), image_key(cols[0], int(cols[2])), True, fold))
            elif len(cols) == 4:
                pairs.append(Pair(image_key(cols[0], int(cols[1])), image_key(cols[2], int(cols[3])), False, fold))
            else:
                raise ValueError
        except ValueError:
            raise InvalidInput(f"{path}: bad pair line {i + 2}: {' '.join(cols)[:120]}") from None
    return pairs


# -- embedding ---------------------------------------------------------------------------------
@dataclass
class EmbeddedSet:
    """Embeddings of an image set: one row per key, with identity indices and the fallback mask."""

    keys: list[str]
    embeddings: np.ndarray
    fallback: np.ndarray
    cache_note: str = ""  # an embedding cache that did not match and was rebuilt: why

    @property
    def identities(self) -> np.ndarray:
        names = [k.split("/", 1)[0] for k in self.keys]
        _, ids = np.unique(np.array(names), return_inverse=True)
        return ids

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def central_index(faces: Sequence[Face], shape: tuple[int, ...]) -> int:
    """The face whose box holds the image centre (the largest such), else the one nearest to it."""
    cy, cx = shape[0] / 2.0, shape[1] / 2.0
    holding = [i for i, f in enumerate(faces) if f.bbox[0] <= cx <= f.bbox[2] and f.bbox[1] <= cy <= f.bbox[3]]
    if holding:
        return max(holding, key=lambda i: faces[i].area)
    centres = np.array([[(f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2] for f in faces])
    return int(np.argmin(np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)))


def central_box(shape: tuple[int, ...]) -> list[float]:
    """The central region of an image where LFW centres the face, as ``[x1, y1, x2, y2]``."""
    h, w = shape[:2]
    return [CENTRAL_BOX[0] * w, CENTRAL_BOX[1] * h, CENTRAL_BOX[2] * w, CENTRAL_BOX[3] * h]


def embed_images(analyzer: FaceAnalyzer, root: Path, keys: Sequence[str], *, chunk: int = 64,
                 progress: bool = True) -> EmbeddedSet:
    """Embed the most central face of every image ``root/key`` (detector fallback: the central box)."""
    embeddings = np.zeros((len(keys), analyzer.embedding_size), np.float32)
    fallback = np.zeros(len(keys), bool)
    with Progress(disable=not progress, transient=True, console=Console(stderr=True)) as bar:  # off stdout
        task = bar.add_task(f"embedding LFW ({analyzer.pack.name})", total=len(keys))
        for start in range(0, len(keys), chunk):
            images = [analyzer.load(Path(root) / k) for k in keys[start : start + chunk]]
            found = analyzer.analyze_many(images, embed=False, with_crop=True)
            crops: list[np.ndarray] = []
            rows: list[int] = []
            for offset, (image, faces) in enumerate(zip(images, found)):
                row = start + offset
                crop = faces[central_index(faces, image.shape)].crop if faces else None
                if crop is not None:
                    crops.append(crop)
                    rows.append(row)
                else:
                    embeddings[row] = analyzer.face_in_box(image, central_box(image.shape)).embedding
                    fallback[row] = True
            if crops:
                embeddings[rows] = analyzer.embed_aligned(crops)
            bar.advance(task, len(images))
    return EmbeddedSet(list(keys), embeddings, fallback)


CACHE_FORMAT = 2  # what an embedding cache holds (see :func:`load_or_embed`); 1: without the file stamps


def file_stamps(root: Path, keys: Sequence[str]) -> np.ndarray:
    """Each image's size and modification time (ns) as an ``(n, 2)`` int64 array: what the vectors of
    an embedding cache were made from (a photo replaced, even by one of the same name, differs)."""
    stamps = np.zeros((len(keys), 2), np.int64)
    for row, key in enumerate(keys):
        stat = (Path(root) / key).stat()
        stamps[row] = (stat.st_size, stat.st_mtime_ns)
    return stamps


def _cached(analyzer: FaceAnalyzer, cache: Path, root: Path, keys: Sequence[str],
            stamps: np.ndarray) -> EmbeddedSet | str:
    """The embeddings of ``keys`` from ``cache`` when it was made by this pack (recogniser, runtime,
    flip) from these very files (the images folder, each file's size and mtime); else why not."""
    try:
        with np.load(cache, allow_pickle=False) as data:  # never a pickle: a cache is data, not code
            if "format" not in data.files or int(data["format"]) != CACHE_FORMAT:
                return "made by another faceatlas version or not an embedding cache"
            if (str(data["pack"]), str(data["recognizer_id"])) != (analyzer.pack.name, analyzer.pack.recognizer_id):
                return f"made by pack {data['pack']} ({data['recognizer_id']})"
            if str(data["images"]) != str(Path(root).resolve()):
                return f"made from the images in {data['images']}"
            cached = {k: i for i, k in enumerate(data["keys"].tolist())}
            absent = [k for k in keys if k not in cached]
            if absent:
                return f"{len(absent)} images not in it, e.g. {absent[0]}"
            rows = np.array([cached[k] for k in keys], np.int64)
            changed = np.flatnonzero((data["stamps"][rows] != stamps).any(axis=1))
            if len(changed):
                return f"{len(changed)} images changed since it was made, e.g. {keys[int(changed[0])]}"
            return EmbeddedSet(list(keys), np.asarray(data["embeddings"][rows], np.float32),
                               np.asarray(data["fallback"][rows], bool))
    except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        # a truncated file, a text file, a pickle, an .npy, a cache missing an array
        said = str(exc).split(". ")[0].strip()[:80] or type(exc).__name__
        return f"unreadable: {said}"


def write_cache(cache: Path, embedded: EmbeddedSet, analyzer: FaceAnalyzer, root: Path,
                stamps: np.ndarray) -> Path:
    """Write the embedding cache to exactly ``cache`` (no ``.npz`` added), atomically."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    try:
        with tmp.open("wb") as handle:  # a file object: numpy adds no suffix to it
            np.savez(handle, format=CACHE_FORMAT, keys=np.array(embedded.keys), embeddings=embedded.embeddings,
                     fallback=embedded.fallback, stamps=stamps, images=str(Path(root).resolve()),
                     recognizer_id=analyzer.pack.recognizer_id, pack=analyzer.pack.name)
        tmp.replace(cache)
    finally:  # interrupted, the half-written file goes; renamed, nothing is left
        tmp.unlink(missing_ok=True)
    return cache


def load_or_embed(analyzer: FaceAnalyzer, root: Path, keys: Sequence[str], cache: Path | None = None,
                  progress: bool = True) -> EmbeddedSet:
    """:func:`embed_images`, reusing an ``.npz`` cache only when it holds the vectors of these very
    files by this pack (:func:`_cached`), else embedding them and writing the cache at ``cache``
    (exactly that path). A cache that does not match or cannot be read is rebuilt, never used: the
    set's ``cache_note`` says so (a stale one gave the accuracy of the photos that were there before)."""
    stamps = file_stamps(root, keys) if cache is not None else np.zeros((0, 2), np.int64)
    note = ""
    if cache is not None and Path(cache).exists():
        found = _cached(analyzer, Path(cache), root, keys, stamps)
        if isinstance(found, EmbeddedSet):
            return found
        note = f"embedding cache {cache} does not match ({found}): rebuilt"
    embedded = embed_images(analyzer, root, keys, progress=progress)
    embedded.cache_note = note
    if cache is not None:
        write_cache(Path(cache), embedded, analyzer, root, stamps)
    return embedded


# -- metrics -----------------------------------------------------------------------------------
def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold (accept: score >= threshold) with the highest accuracy, and that accuracy.

    Every cut between two distinct sorted scores is tried; the threshold is the midpoint of the cut.
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    n, negatives = len(s), int((~same).sum())
    accepted = np.arange(n + 1)
    true_accepts = np.concatenate([[0], np.cumsum(y)])
    correct = true_accepts + negatives - (accepted - true_accepts)
    valid = np.ones(n + 1, bool)
    valid[1:n] = s[:-1] > s[1:]
    cut = int(np.argmax(np.where(valid, correct, -1)))
    if cut == 0:
        threshold = float(np.nextafter(s[0], np.inf))
    elif cut == n:
        threshold = float(s[-1])
    else:
        threshold = float((s[cut - 1] + s[cut]) / 2.0)
    return threshold, float(correct[cut]) / n


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold test accuracy and threshold: each fold is scored at the best threshold of the others.

    With a single fold the threshold is chosen on that fold itself (not cross-validated).
    """
    scores, same, folds = np.asarray(scores), np.asarray(same, bool), np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test if (~test).any() else test
        threshold, _ = best_threshold(scores[train], same[train])
        accuracies.append(float(((scores[test] >= threshold) == same[test]).mean()))
        thresholds.append(threshold)
    return np.array(accuracies), np.array(thresholds)


def all_vs_all(embeddings: np.ndarray, identities: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of every genuine and every impostor pair (i < j) of the set, as float32 arrays."""
    emb = np.ascontiguousarray(embeddings, np.float32)
    ids = np.asarray(identities)
    n = len(emb)
    counts = np.bincount(ids)
    n_genuine = int((counts * (counts - 1) // 2).sum())
    genuine = np.empty(n_genuine, np.float32)
    impostor = np.empty(n * (n - 1) // 2 - n_genuine, np.float32)
    g = m = 0
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = emb[start:stop] @ emb[start:].T
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(start, n)[None, :] > rows
        same = ids[start:stop, None] == ids[None, start:]
        gen, imp = sims[upper & same], sims[upper & ~same]
        genuine[g : g + len(gen)] = gen
        impostor[m : m + len(imp)] = imp
        g, m = g + len(gen), m + len(imp)
    return genuine, impostor


def far_thresholds(impostor: np.ndarray, fars: Sequence[float]) -> dict[float, float]:
    """Exact thresholds at each FAR: the lowest threshold at which at most ``floor(far * n)``
    impostor scores are accepted (accept: score >= threshold)."""
    n = len(impostor)
    allowed = {far: int(np.floor(far * n + 1e-9)) for far in fars}
    # the (k)-th and (k+1)-th largest scores, as ascending positions n-k and n-k-1
    kth = sorted({n - k - d for k in allowed.values() for d in (0, 1) if 0 <= n - k - d < n})
    part = np.partition(impostor, kth)
    out = {}
    for far, k in allowed.items():
        above = part[n - k - 1] if k < n else -np.inf  # the (k+1)-th largest: must be rejected
        if k == 0:
            out[far] = float(np.nextafter(np.float32(above), np.float32(np.inf)))
        elif part[n - k] > above:
            out[far] = float(part[n - k])  # the k-th largest, when no tie with the (k+1)-th
        else:
            out[far] = float(np.nextafter(np.float32(above), np.float32(np.inf)))
    return out


def impostor_tail(impostor: np.ndarray, per_decade: int = 5) -> dict[str, float]:
    """Thresholds on a log grid of FARs from 1e-1 down to the lowest the impostor pairs support
    (:func:`supported_far`): the calibration's ``tail``, from which open-set (FPIR) thresholds of any
    gallery size are read."""
    n = len(impostor)
    if n == 0:
        return {}
    grid = [10.0 ** (-1 - i / per_decade) for i in range(0, 12 * per_decade + 1)]
    grid = [far for far in grid if supported_far(far, n)]
    return {f"{far:.3e}": threshold for far, threshold in far_thresholds(impostor, grid).items()} if grid else {}


TEMPLATE_PHOTOS = 2  # photos per subject template of the calibration's template tail


def template_impostors(embeddings: np.ndarray, identities: np.ndarray, photos: int = TEMPLATE_PHOTOS,
                       block: int = 2048) -> np.ndarray:
    """Similarities of every image with the template (normalised mean of its first ``photos``
    images) of every other identity that has that many: the impostor scores of searches that score
    subjects by their mean template."""
    ids = np.asarray(identities)
    vectors = np.ascontiguousarray(embeddings, np.float32)
    rows: dict[int, list[int]] = {}
    for row, identity in enumerate(ids.tolist()):
        rows.setdefault(identity, []).append(row)
    owners = np.array([i for i, r in rows.items() if len(r) >= photos], ids.dtype)
    if not len(owners):
        return np.zeros(0, np.float32)
    templates = l2_normalize(np.stack([vectors[rows[int(i)][:photos]].mean(axis=0) for i in owners]))
    scores = []
    for start in range(0, len(vectors), block):
        sims = vectors[start:start + block] @ templates.T
        scores.append(sims[ids[start:start + block, None] != owners[None, :]])
    return np.concatenate(scores).astype(np.float32)


def roc_points(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """FAR and TAR at every distinct threshold of a scored pair list, and the area under the curve."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last = np.r_[s[:-1] > s[1:], True]
    tar = np.r_[0.0, np.cumsum(y)[last] / max(1, y.sum())]
    far = np.r_[0.0, np.cumsum(~y)[last] / max(1, (~y).sum())]
    return far, tar, float(np.trapezoid(tar, far))


# -- the whole evaluation ----------------------------------------------------------------------
@dataclass
class FarPoint:
    """One calibrated operating point: the threshold, the FAR it really reaches, and the TAR there."""

    far: float
    threshold: float
    achieved_far: float
    tar: float
    resolvable: bool


@dataclass
class LFWReport:
    """Everything measured by :func:`evaluate_lfw`."""

    pack: str
    recognizer_id: str
    folds: int
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    pair_far: np.ndarray
    pair_tar: np.ndarray
    auc: float
    points: list[FarPoint]
    n_pairs: int
    n_images: int
    n_genuine: int
    n_impostor: int
    fallbacks: int
    curve: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    tail: dict[str, float] = field(default_factory=dict)
    template_tail: dict[str, float] = field(default_factory=dict)
    n_template_impostor: int = 0
    cache_note: str = ""  # the embedding cache did not match and was rebuilt: why (the door says it)

    @property
    def accuracy(self) -> float:
        return float(self.fold_accuracies.mean())

    @property
    def accuracy_std(self) -> float:
        return float(self.fold_accuracies.std())

    @property
    def cross_validated(self) -> bool:
        """Whether each fold's accuracy is measured at a threshold chosen on the other folds: not
        with one fold (``--limit-folds 1``), whose threshold is chosen on the very pairs it is then
        measured on (:func:`kfold_accuracy`), an optimistic accuracy."""
        return self.folds > 1

    @property
    def accuracy_note(self) -> str | None:
        """What a reader of the accuracy must know when it is not cross-validated; None when it is."""
        if self.cross_validated:
            return None
        return (f"the accuracy is optimistic: with {self.folds} fold its threshold is chosen on the same "
                "pairs it is measured on (not cross-validated); use 2 folds or more (--limit-folds 2) for "
                "an honest figure")

    def calibration(self, source: str = "") -> Calibration:
        """The pack calibration: a threshold per FAR, with the measurements as metrics."""
        metrics: dict[str, float] = {
            "lfw_accuracy": round(self.accuracy, 6),
            "lfw_accuracy_std": round(self.accuracy_std, 6),
            "lfw_folds": self.folds,
            "lfw_pairs_auc": round(self.auc, 6),
            "pairs": self.n_pairs,
            "images": self.n_images,
            "genuine_pairs": self.n_genuine,
            "impostor_pairs": self.n_impostor,
            "detector_fallbacks": self.fallbacks,
            "template_impostor_pairs": self.n_template_impostor,
        }
        for p in self.points:
            metrics[f"tar_at_far_{far_key(p.far)}"] = round(p.tar, 6)
            metrics[f"achieved_far_{far_key(p.far)}"] = p.achieved_far
        date = _dt.date.today().isoformat()
        return Calibration(
            pack=self.pack,
            recognizer_id=self.recognizer_id,
            thresholds={far_key(p.far): p.threshold for p in self.points if p.resolvable},
            source=source or f"faceatlas eval lfw ({self.folds} folds, all-vs-all over {self.n_images} images), {date}",
            metrics=metrics,
            tail=dict(self.tail),
            template_tail=dict(self.template_tail),
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (a rate nothing measured is None, not NaN)."""
        return json_ready({
            "pack": self.pack,
            "recognizer_id": self.recognizer_id,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fold_accuracies": self.fold_accuracies.tolist(),
            "folds": self.folds,
            "accuracy_cross_validated": self.cross_validated,
            "accuracy_note": self.accuracy_note,
            "auc": self.auc,
            "far": [vars(p) for p in self.points],
            "pairs": self.n_pairs,
            "images": self.n_images,
            "genuine_pairs": self.n_genuine,
            "impostor_pairs": self.n_impostor,
            "detector_fallbacks": self.fallbacks,
        })


class Measured(Protocol):
    """A report that yields a calibration: LFW's or a user dataset's."""

    @property
    def n_impostor(self) -> int: ...

    def calibration(self, source: str = "") -> Calibration: ...


def measuring_analyzer(pack: Pack, settings: EngineSettings | None = None) -> FaceAnalyzer:
    """The analyzer of an evaluation: it measures thresholds, so it loads no user calibration
    (``FACEATLAS_CALIBRATION`` may name the one it is about to write)."""
    settings = (settings or EngineSettings()).model_copy(update={"calibration": None})
    return FaceAnalyzer(pack, settings=settings)


@dataclass(frozen=True)
class SavedCalibration:
    """A user calibration :func:`save_user_calibration` wrote: where, what, and the one of that
    name it replaced (None when there was none)."""

    path: Path
    calibration: Calibration
    replaced: Calibration | None = None

    def note(self) -> str | None:
        """What the save replaced, old against new; None when it replaced nothing."""
        if self.replaced is None:
            return None
        return (f"calibration {self.calibration.name!r} replaced: it was {self.replaced.summary()}; "
                f"it is now {self.calibration.summary()}")


def existing_calibration(pack: Pack, name: str, settings: EngineSettings | None = None) -> Calibration | None:
    """The user calibration ``name`` of ``pack`` already saved, or None. A file there that is no
    calibration (not JSON, other fields) is returned as an empty one: it is there all the same."""
    path = user_calibration_path(pack, name, settings)
    if not os.path.lexists(path):
        return None
    try:
        found = Calibration(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        found = Calibration(pack=pack.name, recognizer_id="", thresholds={}, source=f"{path}: not a calibration")
    found.name = name
    return found


def check_replace(pack: Pack, name: str, replace: bool, settings: EngineSettings | None = None) -> None:
    """Refuse to save the user calibration ``name`` over one of that name unless ``replace``:
    :class:`AlreadyExists` saying what it holds (a second ``--save-as mine`` replaced the first
    without a word, and a smaller set left it without the default FAR)."""
    existing = existing_calibration(pack, name, settings)
    if existing is not None and not replace:
        raise AlreadyExists(
            f"calibration {name!r} of pack {pack.name} exists: {existing.summary()}; give --replace to write "
            "this evaluation's thresholds over it (said then: what it held and what replaced it), or another "
            "--save-as name")


def save_user_calibration(report: Measured, name: str, analyzer: FaceAnalyzer,
                          settings: EngineSettings | None = None, *, replace: bool = False) -> SavedCalibration:
    """Write ``report``'s thresholds as the user calibration ``name`` of the analyzer's pack (used
    once selected with ``FACEATLAS_CALIBRATION=name``). Only the FARs its impostor pairs support
    are written; with none, :class:`InvalidArgument` says how many pairs it had and needed. One
    of that name already saved is replaced only with ``replace`` (:func:`check_replace`); what it
    held is returned with the new one (:meth:`SavedCalibration.note`)."""
    check_calibration_name(name)
    settings = settings or analyzer.settings
    calibration = report.calibration()
    calibration.name = name
    if not calibration.thresholds:
        weakest = max(STANDARD_FARS)
        raise InvalidArgument(
            f"{report.n_impostor:,} impostor pairs support no FAR threshold: FAR {far_key(weakest)} needs at least "
            f"{IMPOSTORS_PER_FAR / weakest:,.0f}; nothing written")
    check_replace(analyzer.pack, name, replace, settings)
    replaced = existing_calibration(analyzer.pack, name, settings)
    path = save_calibration(calibration, user_calibration_path(analyzer.pack, name, settings))
    return SavedCalibration(path, calibration, replaced)


# -- output paths, checked before the work ------------------------------------------------------
def check_output_file(path: Path, what: str) -> Path:
    """``path`` when a file can be written there: not a folder, below a folder (made if missing) in
    which files can be made (tried: ``os.access`` says yes to root under /proc), or a file that opens
    for writing (not changed). Else :class:`InvalidArgument` (a folder) or :class:`InvalidInput`
    naming ``what`` (the option): a plot that could not be written after the evaluation's minutes
    ended the command with one error line, its results unsaid (the calibration written all the same)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"{what} {path} is a folder: give a file")
    existing = next(above for above in path.absolute().parents if os.path.lexists(above))
    if not existing.is_dir():
        raise InvalidInput(f"{what} {path} cannot be written: {existing} is a file, not a folder")
    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY))  # no O_TRUNC: nothing of it changes
        else:
            handle, probe = tempfile.mkstemp(prefix=".faceatlas-", dir=existing)
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise InvalidInput(f"{what} {path} cannot be written ({reason})") from None
    return path


def check_outputs(outputs: dict[str, Path | None], inputs: Sequence[tuple[str, Path]],
                  folders: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse, before anything is read or loaded, outputs (option name: path) that are an input
    (``inputs``: what, path; :func:`~faceatlas.engine.draw.same_file`, links resolved), that would
    be written into an input folder (``folders``: a dataset's photos are every file in it), that are
    one another, or that cannot be written (:func:`check_output_file`): :class:`InvalidArgument`
    or :class:`InvalidInput`. ``eval lfw --output pairs.txt`` wrote the JSON over the pairs file."""
    given = [(what, Path(path)) for what, path in outputs.items() if path is not None]
    for what, path in given:
        placed = Path(os.path.realpath(path.parent)) / path.name  # the folder's links resolved, not the file's
        for described, folder in folders:
            if placed.is_relative_to(os.path.realpath(folder)):
                raise InvalidArgument(f"{what} {path} is in {described} {folder}: it would be written over or "
                                      "among the photos evaluated; give a file outside it")
        if os.path.lexists(path):  # an input is a file that is there
            for described, source in inputs:
                if same_file(path, source):
                    raise InvalidArgument(f"{what} {path} is {described} {source}: writing it would destroy it; "
                                          "give another file")
    for index, (what, path) in enumerate(given):
        for other, other_path in given[index + 1:]:
            if same_file(path, other_path):
                raise InvalidArgument(f"{what} and {other} are one file ({path}): one would be written over the "
                                      "other; give two files")
    for what, path in given:
        check_output_file(path, what)


def lfw_inputs(pairs: Path | None, images: Path | None, settings: EngineSettings | None = None) -> tuple[Path, Path]:
    """The LFW View-2 pairs file and image folder to evaluate: those given, else the shared assets'
    (``FACEATLAS_SHARED/data/lfw/pairs.txt`` and ``.../images``). Every README example of ``eval
    lfw`` without them was refused "Missing option '--pairs'". One given that is not there is
    :class:`FileMissing`, as every command's missing file."""
    if pairs is not None:
        must_exist(pairs, "pairs file")
    if images is not None:
        must_exist(images, "image folder")
    if pairs is not None and images is not None:
        return Path(pairs), Path(images)
    shared = (settings or EngineSettings()).shared
    if shared is None:
        raise InvalidArgument("give --pairs (LFW View-2 pairs.txt) and --images (its image folder), or set "
                              "FACEATLAS_SHARED to a folder holding data/lfw/pairs.txt and data/lfw/images")
    lfw = shared.expanduser() / "data" / "lfw"
    if pairs is None and not (lfw / "pairs.txt").is_file():
        raise InvalidArgument(f"no LFW pairs file at {lfw / 'pairs.txt'} (FACEATLAS_SHARED's): give --pairs")
    if images is None and not (lfw / "images").is_dir():
        raise InvalidArgument(f"no LFW image folder at {lfw / 'images'} (FACEATLAS_SHARED's): give --images")
    return Path(pairs or lfw / "pairs.txt"), Path(images or lfw / "images")


def check_lfw_outputs(pairs_path: Path, images_dir: Path, *, limit_folds: int | None = None,
                      output: Path | None = None, plot: Path | None = None, cache: Path | None = None,
                      save_as: str | None = None, pack: str | None = None, runtime: Runtime | None = None,
                      flip: bool | None = None, settings: EngineSettings | None = None,
                      replace: bool = False) -> Pack:
    """The pack :func:`evaluate_lfw` is to measure (:func:`get_pack`), once its outputs are checked,
    before its minutes and before the models load: ``output`` a ``.json`` file, ``plot`` a format
    matplotlib writes, ``cache`` a file (not a folder), ``save_as`` a valid calibration name (these
    first, then the pack's name), not one already saved unless ``replace`` (:func:`check_replace`);
    none of them the pairs file, an image or in the images folder, each writable (:func:`check_outputs`)."""
    if plot is not None:
        check_figure_path(plot, "--plot")
    if output is not None:
        check_calibration_path(Path(output))
    if cache is not None and Path(cache).is_dir():
        raise InvalidArgument(f"--cache {cache} is a folder: give the cache's file, e.g. {Path(cache) / 'lfw.npz'}")
    if save_as is not None:
        check_calibration_name(save_as)
    chosen = get_pack(pack, settings, runtime=runtime, flip=flip)
    calibration = user_calibration_path(chosen, save_as, settings) if save_as is not None else None
    if save_as is not None:
        check_replace(chosen, save_as, replace, settings)
    keys = sorted({k for p in read_pairs(pairs_path, limit_folds) for k in (p.a, p.b)})
    inputs = [("the pairs file", Path(pairs_path)), *(("the image", Path(images_dir) / k) for k in keys)]
    check_outputs({"--output": output, "--plot": plot, "--cache": cache, "--save-as": calibration}, inputs,
                  [("the images folder", Path(images_dir))])
    return chosen


def far_points(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float]) -> list[FarPoint]:
    """Threshold, achieved FAR and TAR at each FAR; a FAR the impostor pairs cannot support
    (:func:`supported_far`) is marked unresolvable and never written to a calibration."""
    thresholds = far_thresholds(impostor, fars)
    points = []
    for far in fars:
        t = np.float32(thresholds[far])
        points.append(FarPoint(
            far=far,
            threshold=float(t),
            achieved_far=float((impostor >= t).sum() / len(impostor)),
            tar=float((genuine >= t).mean()) if len(genuine) else float("nan"),
            resolvable=supported_far(far, len(impostor)),
        ))
    return points


def operating_curve(genuine: np.ndarray, impostor: np.ndarray, points: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """TAR on a log grid of FARs (down to 1 / number of impostors) from all-vs-all scores."""
    lowest = max(1.0 / len(impostor), 1e-9)
    grid = np.logspace(np.log10(lowest), 0, points)
    thresholds = far_thresholds(impostor, list(grid))
    tar = np.array([(genuine >= np.float32(thresholds[f])).mean() for f in grid])
    return grid, tar


def evaluate_lfw(
    analyzer: FaceAnalyzer,
    pairs_path: Path,
    images_dir: Path,
    *,
    limit_folds: int | None = None,
    fars: Sequence[float] = STANDARD_FARS,
    cache: Path | None = None,
    progress: bool = True,
) -> LFWReport:
    """Run the LFW evaluation of ``analyzer`` (see the module docstring)."""
    pairs = read_pairs(pairs_path, limit_folds)
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    missing = [k for k in keys if not (Path(images_dir) / k).is_file()]
    if missing:
        raise InvalidInput(f"{len(missing)} LFW images missing under {images_dir}, e.g. {missing[0]}")
    embedded = load_or_embed(analyzer, Path(images_dir), keys, cache, progress)
    row = embedded.index()
    a = embedded.embeddings[[row[p.a] for p in pairs]]
    b = embedded.embeddings[[row[p.b] for p in pairs]]
    scores = (a * b).sum(axis=1)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    accuracies, thresholds = kfold_accuracy(scores, same, folds)
    pair_far, pair_tar, auc = roc_points(scores, same)
    genuine, impostor = all_vs_all(embedded.embeddings, embedded.identities)
    template_impostor = template_impostors(embedded.embeddings, embedded.identities)
    return LFWReport(
        pack=analyzer.pack.name,
        recognizer_id=analyzer.pack.recognizer_id,
        folds=len(np.unique(folds)),
        fold_accuracies=accuracies,
        fold_thresholds=thresholds,
        pair_far=pair_far,
        pair_tar=pair_tar,
        auc=auc,
        points=far_points(genuine, impostor, fars),
        n_pairs=len(pairs),
        n_images=len(keys),
        n_genuine=len(genuine),
        n_impostor=len(impostor),
        fallbacks=int(embedded.fallback.sum()),
        curve=operating_curve(genuine, impostor),
        tail=impostor_tail(impostor),
        template_tail=impostor_tail(template_impostor),
        n_template_impostor=len(template_impostor),
        cache_note=embedded.cache_note,
    )


def plot_roc(report: LFWReport, path: Path) -> Path:
    """Write the ROC (log-scale FAR) of the pairs and of all-vs-all, with the calibrated points."""
    path = check_figure_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    keep = report.pair_far > 0
    ax.plot(report.pair_far[keep], report.pair_tar[keep], label=f"{report.n_pairs} LFW pairs (AUC {report.auc:.4f})")
    grid, tar = report.curve
    ax.plot(grid, tar, label=f"all-vs-all ({report.n_impostor:,} impostor pairs)")
    for p in report.points:
        if p.resolvable:
            ax.scatter([p.far], [p.tar], marker="o", zorder=3)
            ax.annotate(f"{p.tar:.3f} @ {far_key(p.far)}\nt={p.threshold:.3f}", (p.far, p.tar),
                        textcoords="offset points", xytext=(5, -22), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(max(1e-7, 0.5 / max(1, report.n_impostor)), 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(f"LFW ROC, pack {report.pack}: accuracy {report.accuracy:.4f} ± {report.accuracy_std:.4f}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
