"""Evaluation and calibration on the user's own data (``faceatlas eval folder``).

A dataset is a folder of per-person folders (``DATASET/<person>/<photo>``), or a CSV of labelled
pairs (``a,b,same``: two image paths relative to the CSV and 1/0). Every photo's largest face is
embedded once (photos without a face are counted, never guessed). From a folder come every
genuine and every impostor pair (all-vs-all), TAR at FAR 1e-3 .. 1e-6 with the number of trials
behind each (a FAR is stated only when at least :data:`IMPOSTORS_PER_FAR` / FAR impostor pairs
back it), the impostor tail (the open-set thresholds of any gallery size), and open-set
identification (FNIR at FPIR 1e-2 / 1e-3) over the people with two photos or more. A CSV gives
its pairs only (no 1:N). The thresholds become a calibration the user selects by name.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from faceatlas.engine.analyzer import FaceAnalyzer
from faceatlas.engine.calibration import STANDARD_FARS, Calibration, far_key, user_calibration_path
from faceatlas.engine.draw import check_figure_path
from faceatlas.engine.evaluation import (
    FarPoint,
    all_vs_all,
    check_calibration_name,
    check_outputs,
    check_replace,
    far_points,
    impostor_tail,
    json_ready,
    operating_curve,
    roc_points,
    template_impostors,
)
from faceatlas.engine.identification import IdentificationReport, identification_report
from faceatlas.engine.image import IMAGE_SUFFIXES, is_hidden, must_exist, walked_entry
from faceatlas.engine.packs import Pack, Runtime, get_pack
from faceatlas.errors import FileMissing, InvalidImage, InvalidInput
from faceatlas.settings import EngineSettings


@dataclass
class DatasetReport:
    """What :func:`evaluate_dataset` measured."""

    pack: str
    recognizer_id: str
    source: str
    n_images: int
    n_identities: int
    no_face: list[str]
    genuine: np.ndarray
    impostor: np.ndarray
    points: list[FarPoint]
    curve: tuple[np.ndarray, np.ndarray]
    tail: dict[str, float]
    identification: IdentificationReport | None = None
    template_tail: dict[str, float] = field(default_factory=dict)
    auc: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # photo -> why it could not be read

    @property
    def n_genuine(self) -> int:
        return len(self.genuine)

    @property
    def n_impostor(self) -> int:
        return len(self.impostor)

    def calibration(self, source: str = "") -> Calibration:
        """The thresholds of the FARs the impostor pairs support, the tail and the measurements."""
        metrics: dict[str, float] = {"images": self.n_images, "identities": self.n_identities,
                                     "genuine_pairs": self.n_genuine, "impostor_pairs": self.n_impostor,
                                     "no_face": len(self.no_face), "pairs_auc": round(self.auc, 6)}
        for p in self.points:
            if p.resolvable:
                metrics[f"tar_at_far_{far_key(p.far)}"] = round(p.tar, 6)
        if self.identification is not None:
            for q in self.identification.points:
                metrics[f"fnir_at_fpir_{far_key(q.fpir)}"] = round(q.fnir, 6)
        date = _dt.date.today().isoformat()
        return Calibration(pack=self.pack, recognizer_id=self.recognizer_id,
                           thresholds={far_key(p.far): p.threshold for p in self.points if p.resolvable},
                           source=source or f"faceatlas eval folder {self.source}, {date}", metrics=metrics,
                           tail=dict(self.tail), template_tail=dict(self.template_tail))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (a rate nothing measured, such as FPIR without a non-mated
        search, is None: it was NaN, which made ``--json`` no JSON)."""
        return json_ready({"pack": self.pack, "recognizer_id": self.recognizer_id, "source": self.source,
                "images": self.n_images, "identities": self.n_identities, "no_face": self.no_face,
                "unreadable": self.unreadable,
                "genuine_pairs": self.n_genuine, "impostor_pairs": self.n_impostor, "auc": self.auc,
                "far": [vars(p) for p in self.points],
                "identification": self.identification.to_dict() if self.identification else None})


def _images_of(root: Path) -> list[str]:
    people = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    if not people:
        raise InvalidInput(f"{root}: no per-person folders (expected {root}/<person>/<photo>)")
    keys = [f"{person.name}/{photo.name}" for person in people for photo in sorted(person.iterdir())
            if walked_entry(photo)]  # a HEIC, a dangling link, a FIFO: unreadable, named
    if not keys:
        raise InvalidInput(f"{root}: the person folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return keys


def _read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """The pairs of a CSV of labelled pairs: UTF-8 text, a byte-order mark first or not (Excel writes
    one: the first image was read as '\ufeffok/a.jpg' and not found). A file that is not UTF-8 text
    (Latin-1, UTF-16, an image given as the CSV) is :class:`InvalidInput` (it was a
    ``UnicodeDecodeError`` traceback)."""
    pairs = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if not row or row[0].startswith("#") or (number == 1 and row[-1].strip().lower() in {"same", "label"}):
                    continue
                if len(row) != 3 or row[2].strip() not in {"0", "1"}:
                    raise InvalidInput(f"{path}:{number}: expected 'image_a,image_b,same' with same 0 or 1")
                pairs.append((row[0].strip(), row[1].strip(), row[2].strip() == "1"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not a CSV of pairs: it is not UTF-8 text (an image, or text in another "
                           "encoding such as Latin-1 or UTF-16); save it as UTF-8") from None
    except csv.Error as exc:  # a NUL byte: a binary file
        raise InvalidInput(f"{path}: not a CSV of pairs ({exc})") from None
    if not pairs:
        raise InvalidInput(f"{path}: no pairs")
    return pairs


def embed_largest(analyzer: FaceAnalyzer, root: Path, keys: list[str], *, progress: bool = True,
                  chunk: int = 32, unreadable: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The largest face's embedding of each image ``root/key`` and whether one was found; an image
    that cannot be read is not found, and why is put in ``unreadable`` (one truncated photo ended
    the whole evaluation, as one whose file may not be read did: a PermissionError)."""
    vectors = np.zeros((len(keys), analyzer.embedding_size), np.float32)
    found = np.zeros(len(keys), bool)
    with Progress(disable=not progress, transient=True, console=Console(stderr=True)) as bar:  # off stdout
        task = bar.add_task(f"embedding ({analyzer.pack.name})", total=len(keys))
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            images: list[np.ndarray] = []
            rows: list[int] = []
            for offset, key in enumerate(part):
                try:
                    images.append(analyzer.load(root / key))
                    rows.append(start + offset)
                except (InvalidImage, FileMissing) as exc:  # a photo gone since the walk: one photo out
                    if unreadable is not None:
                        unreadable[key] = f"{exc.code}: {exc}"
                except OSError as exc:  # a photo its file's mode forbids reading, an I/O error: one photo out
                    if unreadable is not None:
                        reason = exc.strerror.lower() if exc.strerror else str(exc)
                        unreadable[key] = f"{InvalidImage.code}: {root / key}: cannot be read ({reason})"
            for row, faces in zip(rows, analyzer.analyze_many(images, max_faces=1)):
                if faces and faces[0].embedding is not None:
                    vectors[row] = faces[0].embedding
                    found[row] = True
            bar.advance(task, len(part))
    return vectors, found


def evaluate_dataset(analyzer: FaceAnalyzer, dataset: Path, *, progress: bool = True,
                     gallery_identities: int | None = None) -> DatasetReport:
    """Evaluate ``analyzer`` on a per-person folder or a CSV of labelled pairs (module docstring)."""
    dataset = must_exist(dataset, "folder or file")
    if dataset.is_file():
        return _evaluate_pairs(analyzer, dataset, progress)
    keys = _images_of(dataset)
    unreadable: dict[str, str] = {}
    vectors, found = embed_largest(analyzer, dataset, keys, progress=progress, unreadable=unreadable)
    kept = [k for k, ok in zip(keys, found) if ok]
    names = np.array([k.split("/", 1)[0] for k in kept])
    _, identities = np.unique(names, return_inverse=True)
    genuine, impostor = all_vs_all(vectors[found], identities)
    if not len(genuine) or not len(impostor):
        raise InvalidInput(f"{dataset}: needs two photos of one person and photos of two people "
                           f"(faces found in {len(kept)} of {len(keys)} photos{_left_out(keys, found, unreadable)})")
    scores = np.concatenate([genuine, impostor])
    same = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]
    report = DatasetReport(analyzer.pack.name, analyzer.pack.recognizer_id, str(dataset), len(keys),
                           int(identities.max()) + 1,
                           [k for k, ok in zip(keys, found) if not ok and k not in unreadable], genuine, impostor,
                           far_points(genuine, impostor, STANDARD_FARS), operating_curve(genuine, impostor),
                           impostor_tail(impostor), auc=roc_points(scores, same)[2],
                           template_tail=impostor_tail(template_impostors(vectors[found], identities)),
                           unreadable=unreadable)
    repeated = int((np.bincount(identities) >= 2).sum())
    calibration = report.calibration()
    # 1:N needs a threshold: a set too small to resolve any FAR gets its 1:1 report, each FAR saying
    # how many impostor pairs it needs, instead of "the calibration holds no threshold"
    if repeated and (calibration.tail or calibration.thresholds):
        size = min(repeated, gallery_identities or repeated)
        report.identification = identification_report(vectors[found], identities, calibration, size)
    return report


def _left_out(keys: list[str], found: np.ndarray, unreadable: dict[str, str], shown: int = 3) -> str:
    """The photos of ``keys`` that gave no face, for the error of a dataset left without pairs: each
    unreadable one with why (a text file named .jpg, a folder), then those without a face, by name
    (the error said only "needs same and different pairs", naming none)."""
    parts: list[str] = []
    if unreadable:
        named = "; ".join(why.split(": ", 1)[-1] for why in list(unreadable.values())[:shown])
        more = f"; and {len(unreadable) - shown} more" if len(unreadable) > shown else ""
        parts.append(f"unreadable: {named}{more}")
    faceless = [k for k, ok in zip(keys, found) if not ok and k not in unreadable]
    if faceless:
        more = f" and {len(faceless) - shown} more" if len(faceless) > shown else ""
        parts.append(f"no face in {', '.join(faceless[:shown])}{more}")
    return "".join(f"; {part}" for part in parts)


def _evaluate_pairs(analyzer: FaceAnalyzer, path: Path, progress: bool) -> DatasetReport:
    pairs = _read_pairs(path)
    root = path.parent
    keys = sorted({k for a, b, _ in pairs for k in (a, b)})
    # a name that is there but no image file (a folder, a FIFO, a dangling link) is unreadable, named
    # in the report with why, as a file that does not decode is; only one that is not there ends the run
    missing = [k for k in keys if not os.path.lexists(root / k)]
    if missing:
        raise InvalidInput(f"{path}: {len(missing)} {'image' if len(missing) == 1 else 'images'} not found next "
                           f"to it, e.g. {missing[0]}")
    unreadable: dict[str, str] = {}
    vectors, found = embed_largest(analyzer, root, keys, progress=progress, unreadable=unreadable)
    row = {k: i for i, k in enumerate(keys)}
    usable = [(row[a], row[b], same) for a, b, same in pairs if found[row[a]] and found[row[b]]]
    scores = np.array([float(vectors[i] @ vectors[j]) for i, j, _ in usable], np.float32)
    same_mask = np.array([s for _, _, s in usable], bool)
    genuine, impostor = scores[same_mask], scores[~same_mask]
    if not len(genuine) or not len(impostor):
        found_in = int(found.sum())
        raise InvalidInput(f"{path}: needs same and different pairs with a face in both photos (faces found in "
                           f"{found_in} of {len(keys)} photos{_left_out(keys, found, unreadable)})")
    return DatasetReport(analyzer.pack.name, analyzer.pack.recognizer_id, str(path), len(keys), 0,
                         [k for k in keys if not found[row[k]] and k not in unreadable], genuine, impostor,
                         far_points(genuine, impostor, STANDARD_FARS), operating_curve(genuine, impostor),
                         impostor_tail(impostor), auc=roc_points(scores, same_mask)[2], unreadable=unreadable)


def check_dataset_outputs(dataset: Path, *, plot: Path | None = None, save_as: str | None = None,
                          pack: str | None = None, runtime: Runtime | None = None, flip: bool | None = None,
                          settings: EngineSettings | None = None, replace: bool = False) -> Pack:
    """The pack :func:`evaluate_dataset` is to measure (:func:`get_pack`), once its outputs are
    checked, before its minutes and before the models load: ``plot`` a format matplotlib writes,
    ``save_as`` a valid calibration name (these first, then the pack's name), not one already saved
    unless ``replace`` (:func:`~faceatlas.engine.evaluation.check_replace`); neither in the
    dataset's folder (`--plot ds/person/x.png` wrote the plot over a photo), the pairs CSV or one of
    its photos, each writable (:func:`~faceatlas.engine.evaluation.check_outputs`)."""
    if plot is not None:
        check_figure_path(plot, "--plot")
    if save_as is not None:
        check_calibration_name(save_as)
    chosen = get_pack(pack, settings, runtime=runtime, flip=flip)
    calibration = user_calibration_path(chosen, save_as, settings) if save_as is not None else None
    if save_as is not None:
        check_replace(chosen, save_as, replace, settings)
    dataset = Path(dataset)
    inputs: list[tuple[str, Path]] = []
    folders: list[tuple[str, Path]] = []
    if dataset.is_dir():
        folders.append(("the dataset", dataset))
    elif dataset.is_file():
        keys = sorted({k for a, b, _ in _read_pairs(dataset) for k in (a, b)})
        inputs = [("the dataset's pairs CSV", dataset), *(("a photo of the dataset", dataset.parent / k) for k in keys)]
    check_outputs({"--plot": plot, "--save-as": calibration}, inputs, folders)
    return chosen


def det_curve(report: DatasetReport) -> tuple[np.ndarray, np.ndarray, float]:
    """The DET curve of ``report`` (FMR, FNMR) for a log-log plot, and the floor its FNMR is drawn at:
    the smallest rate its genuine pairs measure (1 / genuine pairs). A FNMR of 0 (no genuine pair
    missed) is drawn there, not as a drop to 1e-5, which read as a measured rate."""
    grid, tar = report.curve
    floor = 1.0 / max(1, report.n_genuine)
    return np.asarray(grid), np.clip(1.0 - np.asarray(tar, np.float64), floor, 1.0), floor


def plot_dataset(report: DatasetReport, path: Path) -> Path:
    """ROC (TAR against FAR) and DET (FNMR against FMR, both log) side by side, with the stated points."""
    path = check_figure_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, tar = report.curve
    fmr, fnmr, floor = det_curve(report)
    fig, (roc, det) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    roc.plot(grid, tar)
    det.plot(fmr, fnmr, label="FNMR")
    det.axhline(floor, color="grey", linestyle=":", linewidth=1,
                label=f"1/{report.n_genuine:,} genuine pairs: the lowest measurable FNMR (0 is drawn here)")
    for p in report.points:
        if p.resolvable:
            roc.scatter([p.far], [p.tar], zorder=3)
            roc.annotate(f"{p.tar:.3f} @ {far_key(p.far)}", (p.far, p.tar), textcoords="offset points",
                         xytext=(4, -12), fontsize=7)
            det.scatter([p.far], [max(floor, 1.0 - p.tar)], zorder=3)
    roc.set(xscale="log", xlabel="false accept rate (FAR)", ylabel="true accept rate (TAR)", ylim=(0, 1.01),
            title=f"ROC ({report.n_genuine:,} genuine / {report.n_impostor:,} impostor pairs)")
    det.set(xscale="log", yscale="log", xlabel="false match rate (FMR)", ylabel="false non-match rate (FNMR)",
            title=f"DET, pack {report.pack}")
    for ax in (roc, det):
        ax.grid(True, which="both", alpha=0.3)
    det.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
