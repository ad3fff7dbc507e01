"""AR face effects throughput at 720p: frames per second of tracking plus each effect, one face and three.

    python bench/ar_throughput.py [--frames 40]

Frames are built in memory from a 720p photo (obama-720p.jpg of the shared examples), shifted by a
pixel or two each frame so that the tracker follows a moving face; "3 faces" tiles three copies of
the face across the 1280x720 frame. "track" rows time Face Mesh (video mode, 1280 px wide) and the
One Euro filters alone; each effect row is tracking plus that effect. Beside ours, the naive
alternatives: a bilateral filter over the whole frame rather than the face region, and the
background blurred at full resolution rather than at a quarter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from faceatlas.apps.ar import EFFECTS, ArFace, ArSession, Effect

DEFAULT_PHOTO = (Path(__file__).resolve().parents[2] / "shared" / "data" / "face_recognition_examples"
                 / "examples" / "obama-720p.jpg")


class WholeFrameBilateral:
    """The naive smoothing: one bilateral filter over the whole frame."""

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        return cv2.bilateralFilter(frame, 9, 40.0, 7.0)


class FullResolutionBlur:
    """The naive background blur: a 31 px Gaussian at full resolution (no mask)."""

    def apply(self, frame: np.ndarray, faces: Sequence[ArFace]) -> np.ndarray:
        return cv2.GaussianBlur(frame, (31, 31), 0)


def _clips(photo: Path, count: int) -> dict[str, list[np.ndarray]]:
    image = cv2.imread(str(photo))
    one = [np.roll(image, i % 5, axis=1) for i in range(count)]
    face = cv2.resize(image[40:480, 440:880], (426, 426))  # the head and shoulders, a third of the width
    tile = np.zeros_like(image)
    for k in range(3):
        tile[147:573, 1 + 426 * k:427 + 426 * k] = face
    three = [np.roll(tile, i % 5, axis=1) for i in range(count)]
    return {"1 face": one, "3 faces": three}


def _fps(make: Callable[[], list[str | Effect]], frames: list[np.ndarray]) -> tuple[float, int]:
    with ArSession(make()) as session:
        session.process(frames[0], 0.0)  # model load and the first detection are not timed
        began = time.perf_counter()
        faces = 0
        for i, frame in enumerate(frames[1:], 1):
            _, found = session.process(frame, i / 30.0)
            faces = max(faces, len(found))
        return (len(frames) - 1) / (time.perf_counter() - began), faces


def main(
    photo: Annotated[Path, typer.Option(help="a 720p face photo")] = DEFAULT_PHOTO,
    frames: Annotated[int, typer.Option(help="frames per configuration")] = 40,
) -> None:
    """Time tracking alone and with each effect on one face and three; print a table."""
    clips = _clips(photo, frames)
    rows: dict[str, Callable[[], list[str | Effect]]] = {"track (Face Mesh + One Euro)": list}
    rows.update({name: (lambda n=name: [n]) for name in EFFECTS})
    rows["glasses + smooth"] = lambda: ["glasses", "smooth"]
    rows["naive: bilateral on the whole frame"] = lambda: [WholeFrameBilateral()]
    rows["naive: full-resolution blur (no mask)"] = lambda: [FullResolutionBlur()]
    table = Table(title=f"AR throughput at 720p, {frames} frames per cell ({photo.name})")
    table.add_column("configuration")
    for clip in clips:
        table.add_column(f"{clip} fps", justify="right")
        table.add_column(f"{clip} ms", justify="right")
    for label, make in rows.items():
        cells = []
        for clip, images in clips.items():
            fps, faces = _fps(make, images)
            wanted = 1 if clip == "1 face" else 3
            cells += [f"{fps:.1f}" + ("" if faces == wanted else f" ({faces} faces!)"), f"{1000 / fps:.1f}"]
        table.add_row(label, *cells)
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
