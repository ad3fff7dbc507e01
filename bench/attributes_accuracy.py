"""Gender accuracy and cost per face of the attribute models, on LFW people whose gender we
labelled by hand from their names (``bench/lfw_gender.csv``: 193 women, 196 men).

For each labelled person, up to ``--per-person`` photos; the largest face of each is found with
the pack's detector, then every gender model on hand judges the same box:

- oarriaga mini-Xception (MIT) on one crop, 1.0 / 1.4 / 1.8 x the box (1.2, 1.6 and 2.0 were tried
  too: 1.4 and 1.6 tie at the top); grey, (g - .5) * 2, 64x64;
- FaceAtlas (``engine.attributes``, what ``analyze(attributes=True)`` returns): the same model's
  mean over the 1.4 crop, its mirror image and the 1.6 crop;
- SSR-Net gender IMDB (no licence stated), BGR 0..255, 64x64, crop 1.4;
- FaceRes (no licence stated), RGB 0..255, 224x224, crop 1.0.

Also times FaceAtlas's whole attribute step (gender + emotion + age, batched per image) per face.
Accuracy is per face and balanced (mean of the women's and the men's accuracy).

    FACEATLAS_MODEL_DIR=../shared/models python bench/attributes_accuracy.py --shared ../shared
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.attributes import grey_blob, square_crop
from faceatlas.engine.runtime import create_session

LABELS = Path(__file__).with_name("lfw_gender.csv")


def labelled_photos(images: Path, per_person: int) -> list[tuple[Path, str]]:
    """(photo, 'F'/'M') for up to ``per_person`` photos of each labelled person."""
    rows = [r for r in csv.reader(line for line in LABELS.read_text().splitlines() if not line.startswith("#"))]
    out = []
    for name, gender in rows[1:]:
        out += [(p, gender) for p in sorted((images / name).glob("*.jpg"))[:per_person]]
    return out


def judges(models: Path) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Name -> f(image, box) = probability that the face is male."""
    xception = create_session(models / "attributes" / "oarriaga_gender.onnx", threads=1)
    ssrnet = create_session(models / "attributes" / "ssrnet_gender_imdb.onnx", threads=1)
    faceres = create_session(models / "attributes" / "faceres_age_gender.onnx", threads=1)

    def mini_xception(scale: float) -> Callable[[np.ndarray, np.ndarray], float]:
        def judge(image: np.ndarray, box: np.ndarray) -> float:
            blob = grey_blob(square_crop(image, box, 64, scale)[None])
            female, male = xception.run(None, {xception.get_inputs()[0].name: blob})[0][0]
            return float(male / (female + male))

        return judge

    def ssr(image: np.ndarray, box: np.ndarray) -> float:
        blob = square_crop(image, box, 64, 1.4)[None].astype(np.float32)
        return float(ssrnet.run(None, {ssrnet.get_inputs()[0].name: blob})[0][0][0])

    def res(image: np.ndarray, box: np.ndarray) -> float:
        blob = square_crop(image, box, 224, 1.0)[None, :, :, ::-1].astype(np.float32)
        return float(faceres.run(["gender_pred/Sigmoid:0"], {faceres.get_inputs()[0].name: blob})[0][0][0])

    return {
        "mini-Xception (MIT), crop 1.0": mini_xception(1.0),
        "mini-Xception (MIT), crop 1.4": mini_xception(1.4),
        "mini-Xception (MIT), crop 1.8": mini_xception(1.8),
        "SSR-Net gender IMDB (no licence)": ssr,
        "FaceRes (no licence)": res,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--pack", default="yunet-mbf", help="pack whose detector finds the faces")
    parser.add_argument("--per-person", type=int, default=3)
    args = parser.parse_args()
    photos = labelled_photos(args.shared / "data" / "lfw" / "images", args.per_person)
    analyzer = FaceAnalyzer(args.pack, threads=1, announce_license=False)
    models = judges(args.shared / "models")
    scores: dict[str, list[float]] = {name: [] for name in models}
    spent: dict[str, float] = {name: 0.0 for name in models}
    truth: list[str] = []
    attribute_seconds, missed = 0.0, 0
    engine_name = "FaceAtlas: mini-Xception, 1.4 + mirrored + 1.6"
    scores[engine_name], spent[engine_name] = [], 0.0
    for path, gender in photos:
        image = analyzer.load(path)
        found = analyzer.detector.detect(image).sorted_by_area(1)
        if len(found) == 0:
            missed += 1
            continue
        box = found.boxes[0]
        truth.append(gender)
        for name, judge in models.items():
            start = time.perf_counter()
            scores[name].append(judge(image, box))
            spent[name] += time.perf_counter() - start
        start = time.perf_counter()
        (said,) = analyzer.attribute_models.predict(image, found.boxes)
        attribute_seconds += time.perf_counter() - start
        assert said.gender is not None and said.gender_score is not None
        scores[engine_name].append(said.gender_score if said.gender == "male" else 1 - said.gender_score)
    labels = np.array([g == "M" for g in truth])
    people = len({p.parent.name for p, _ in photos})
    table = Table(title=f"gender on {len(truth)} LFW faces of {people} hand-labelled people "
                        f"({int((~labels).sum())} female / {int(labels.sum())} male faces; "
                        f"{missed} photos without a face; detector of pack {args.pack}; 1 thread)")
    for column in ("model", "accuracy", "balanced", "women", "men", "ms / face (gender only)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, values in scores.items():
        said_male = np.array(values) > 0.5
        women = float((~said_male[~labels]).mean())
        men = float(said_male[labels].mean())
        table.add_row(name, f"{float((said_male == labels).mean()):.3f}", f"{(women + men) / 2:.3f}",
                      f"{women:.3f}", f"{men:.3f}",
                      f"{1000 * spent[name] / len(values):.2f}" if spent[name] else "(below)")
    Console().print(table)
    spec = analyzer.pack.attributes
    what = "gender + emotion + age" if spec and spec.age else "gender + emotion"
    print(f"FaceAtlas attributes of pack {args.pack} ({what}, crop included): "
          f"{1000 * attribute_seconds / len(truth):.2f} ms / face")


if __name__ == "__main__":
    main()
