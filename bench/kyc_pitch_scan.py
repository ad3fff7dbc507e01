"""Is there real footage to measure the ``look_up`` challenge on? Face Mesh head pitch (the KYC
path: ``mesh_samples`` on frames reduced to 640 px) over every frame of the two real clips with a
face, and the largest rise of the pitch above its own previous second on one continuous track
(25 measured frames before it: no cut, no lost face), near-frontal (|yaw| <= 25 deg, as the
frames the match uses) and at any yaw. ``look_up`` needs a rise above ``KycConfig.look_up_pitch``.
Then the actions ``find_actions`` sees on the five genuine segments of ``bench/kyc_accuracy.py``
(against each segment's own neutral: its first 0.5 s).

    FACEATLAS_MODEL_DIR=../shared/models nice -n 10 python bench/kyc_pitch_scan.py --shared ../shared
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kyc.media import clip
from kyc_accuracy import GENUINE, HAMILTON

from faceatlas.apps.kyc import KycConfig
from faceatlas.apps.kyc.motion import find_actions, mesh_samples

CLIPS = {  # name: (path under shared, frames, fps)
    "Hamilton clip": ("data/face_recognition_examples/examples/short_hamilton_clip.mp4", 275, 29.97),
    "driver_night_cabin": ("data/videos/driver_night_cabin.mp4", 1501, 25.0),
}
WINDOW = 25  # frames of the track before a frame: its own neutral pitch (median)
FRONTAL = 25.0


def pitches(path: Path, frames: int, fps: float) -> list[tuple[int, float | None, float | None]]:
    rows: list[tuple[int, float | None, float | None]] = []
    for start in range(0, frames, 250):  # one Face Mesh track per 10 s chunk (memory)
        images = clip(path, start, min(frames, start + 250))
        samples = mesh_samples(images, [(start + i) / fps for i in range(len(images))], KycConfig())
        rows += [(start + i, s.yaw, s.pitch) for i, s in enumerate(samples)]
    return rows


def largest_rises(rows: list[tuple[int, float | None, float | None]]) -> tuple[tuple, tuple]:
    """(rise, frame, yaw) of the largest pitch rise near-frontal and at any yaw."""
    frontal: tuple = (float("nan"), None, None)
    anywhere: tuple = (float("nan"), None, None)
    for i, (frame, yaw, pitch) in enumerate(rows):
        before = rows[max(0, i - WINDOW):i]
        if pitch is None or yaw is None or len(before) < WINDOW or any(p is None or y is None for _, y, p in before):
            continue
        rise = pitch - float(np.median([p for _, _, p in before]))
        if not rise <= anywhere[0]:
            anywhere = (rise, frame, yaw)
        if abs(yaw) <= FRONTAL and all(abs(y) <= FRONTAL for _, y, _ in before) and not rise <= frontal[0]:  # type: ignore[operator]
            frontal = (rise, frame, yaw)
    return frontal, anywhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    threshold = KycConfig().look_up_pitch
    table = Table(title=f"Largest head-pitch rise over the previous second (look_up needs > {threshold:g} deg)")
    for column in ("clip", "frames", "with a face", "near-frontal: rise (frame, yaw)", "any yaw: rise (frame, yaw)"):
        table.add_column(column)
    for name, (path, frames, fps) in CLIPS.items():
        rows = pitches(args.shared / path, frames, fps)
        frontal, anywhere = largest_rises(rows)

        def cell(found: tuple) -> str:
            return "none measured" if found[1] is None else f"{found[0]:.1f} deg ({found[1]}, {found[2]:.0f} deg)"

        table.add_row(name, str(len(rows)), str(sum(p is not None for _, _, p in rows)), cell(frontal), cell(anywhere))
    console = Console()
    console.print(table)
    table = Table(title="Actions seen on the genuine segments of bench/kyc_accuracy.py")
    for column in ("segment", "frames", "performs", "actions seen (start, s)"):
        table.add_column(column)
    for _, name, video, start, stop, crop, challenge, _ in GENUINE:
        frames = clip(args.shared / video, start, stop, crop)
        fps = 29.97 if video == HAMILTON else 25.0
        seen = find_actions(mesh_samples(frames, [i / fps for i in range(len(frames))], KycConfig()), KycConfig())
        actions = ", ".join(f"{e.action} {e.start:.2f}" for e in seen)
        table.add_row(name, f"{start}-{stop}", ", ".join(challenge), actions)
    console.print(table)


if __name__ == "__main__":
    main()
