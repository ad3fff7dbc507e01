"""SenseDrive throughput at 720p: frames per second of the whole per-frame pipeline on this machine.

    python bench/drive_throughput.py [--video PATH] [--start 150] [--frames 250]

Frames are decoded into memory first, so "monitor" rows time the monitor alone (Face Mesh, geometry,
signals); the "decode" row is OpenCV's H.264 decode of the same frames, and "end to end" both.
Configurations: Face Mesh fed the full 1280-wide frame, downscaled to 640 (the default), and
downscaled plus cropped to a driver region.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from faceatlas.apps.drive import DriveConfig, DriverMonitor, iter_frames

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "driver_night_cabin.mp4"


def main(
    video: Annotated[Path, typer.Option(help="a 720p driver video")] = DEFAULT_VIDEO,
    start: Annotated[int, typer.Option(help="first frame")] = 150,
    frames: Annotated[int, typer.Option(help="frames to time")] = 250,
) -> None:
    """Time decode and the monitor in a few configurations; print a table."""
    source = iter_frames(video, start, start + frames)
    clip = [next(source)[2]]  # the seek to ``start`` is not timed
    began = time.perf_counter()
    clip += [frame for _, _, frame in source]
    decode_s = (time.perf_counter() - began) / (len(clip) - 1)
    height, width = clip[0].shape[:2]
    configs = {
        "full 1280 px": DriveConfig(process_width=width),
        "640 px (default)": DriveConfig(),
        "640 px, region x 0.2-0.8": DriveConfig(driver_region=(0.2, 0.0, 0.8, 1.0)),
    }
    table = Table(title=f"SenseDrive throughput, {width}x{height}, {len(clip)} frames, {os.cpu_count()} CPUs")
    for column in ("stage", "ms / frame", "frames / s", "faces found"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    table.add_row("decode (OpenCV, H.264)", f"{1000 * decode_s:.1f}", f"{1 / decode_s:.0f}", "")
    for name, config in configs.items():
        monitor = DriverMonitor(config)
        monitor.process(clip[0], 0.0, 0)  # model load and first detection outside the timing
        began = time.perf_counter()
        for index, frame in enumerate(clip[1:], 1):
            monitor.process(frame, index / 25.0, index)
        spent = (time.perf_counter() - began) / (len(clip) - 1)
        monitor.close()
        found = f"{monitor.face_frames}/{monitor.frames}"
        table.add_row(f"monitor, {name}", f"{1000 * spent:.1f}", f"{1 / spent:.0f}", found)
        end_to_end = spent + decode_s
        table.add_row(f"  end to end, {name}", f"{1000 * end_to_end:.1f}", f"{1 / end_to_end:.0f}", "")
    Console().print(table)
    load = os.getloadavg()[0]
    Console().print(f"load average during the run: {load:.1f} on {os.cpu_count()} CPUs (shared machine)")


if __name__ == "__main__":
    typer.run(main)
