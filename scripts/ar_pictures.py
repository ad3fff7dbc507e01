"""Before/after pictures of each AR effect into docs/ar/*.jpg (shown in docs/ar.md).

    python scripts/ar_pictures.py [--photo PATH] [--out docs/ar]

The photo is the official White House portrait in the shared examples (a US government work, in
the public domain). Each picture is the face region before (left) and after (right) one effect,
640 px wide, JPEG quality 80 (under 100 KB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from faceatlas.apps.ar import EFFECTS, ArSession

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "face_recognition_examples" / "examples" / "obama-720p.jpg"
MAX_BYTES = 100_000


def crop_around(image: np.ndarray, landmarks: np.ndarray, scale: float = 1.8) -> tuple[int, int, int, int]:
    """A square around the face, ``scale`` times the face's width, clipped to the image."""
    centre = landmarks.mean(axis=0)
    side = int(scale * float(np.ptp(landmarks[:, 0])))
    height, width = image.shape[:2]
    x1 = int(np.clip(centre[0] - side / 2, 0, max(width - side, 0)))
    y1 = int(np.clip(centre[1] - side / 2, 0, max(height - side, 0)))
    return x1, y1, min(x1 + side, width), min(y1 + side, height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ar")
    args = parser.parse_args()
    image = cv2.imread(str(args.photo))
    if image is None:
        raise SystemExit(f"cannot read {args.photo}")
    args.out.mkdir(parents=True, exist_ok=True)
    box = None
    for name in [*EFFECTS, "glasses+hat+smooth"]:
        with ArSession(name.split("+")) as session:
            out, faces = session.process(image, 0.0)
        if box is None:
            box = crop_around(image, faces[0].landmarks)
        x1, y1, x2, y2 = box
        pair = np.hstack([image[y1:y2, x1:x2], out[y1:y2, x1:x2]])
        pair = cv2.resize(pair, (640, round(640 * pair.shape[0] / pair.shape[1])), interpolation=cv2.INTER_AREA)
        path = args.out / f"{name.replace('+', '_')}.jpg"
        cv2.imwrite(str(path), pair, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert path.stat().st_size < MAX_BYTES, f"{path} is too large"
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, path.stat().st_size // 1000, "KB")


if __name__ == "__main__":
    main()
