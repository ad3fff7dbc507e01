"""Charts of the per-minute counts: a PNG of a measure per minute and class, and the occupancy
heatmap over the frame (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from faceatlas.errors import NotFound
from faceatlas.video.store import MinuteCounts, list_counts, open_events_db


def camera_counts(database: str, camera: str, *, tenant: str = "default", since: str | None = None,
                  until: str | None = None, label: str | None = None) -> list[MinuteCounts]:
    """The use case of `faceatlas counts`: the camera's stored per-minute counts (see :func:`list_counts`)."""
    engine = open_events_db(database)
    try:
        return list_counts(engine, tenant, camera, since=since, until=until, label=label)
    finally:
        engine.dispose()


def plot_counts(rows: Sequence[MinuteCounts], path: Path, *, measure: str = "seen") -> Path:
    """A PNG of ``measure`` (``seen``, ``in:<line>``, ...) per minute, one line per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter, MinuteLocator
    from matplotlib.ticker import MaxNLocator

    if not rows:
        raise NotFound("no counts stored for this camera and time range")
    minutes = sorted({row.minute for row in rows})
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for label in sorted({row.label for row in rows}):
        values = {row.minute: row.counts.get(measure, 0) for row in rows if row.label == label}
        axes.plot(np.array([datetime.fromisoformat(m) for m in minutes]), [values.get(m, 0) for m in minutes],
                  marker="o", label=label)
    axes.set_xlabel("minute (UTC)")
    axes.set_ylabel(f"{measure} per minute")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(minutes) <= 30:  # a tick per minute; longer spans keep matplotlib's choice, labelled in minutes
        axes.xaxis.set_major_locator(MinuteLocator())
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    axes.set_ylim(bottom=0)
    axes.set_title(f"{rows[0].camera}: {measure} per minute and class")
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def occupancy(rows: Sequence[MinuteCounts]) -> np.ndarray:
    """The heatmap grids of ``rows`` summed (rows x columns; foot points per cell and analyzed frame)."""
    grids = [np.asarray(row.heatmap) for row in rows if row.heatmap]
    if not grids:
        raise NotFound("no occupancy heatmap stored for this camera and time range")
    return np.sum(grids, axis=0)


def plot_heatmap(rows: Sequence[MinuteCounts], path: Path) -> Path:
    """A PNG of where objects stood (their foot points) over the frame, summed over ``rows``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = occupancy(rows)
    size = next((row.frame_size for row in rows if row.frame_size), None) or [grid.shape[1], grid.shape[0]]
    figure, axes = plt.subplots(figsize=(8, 8 * size[1] / max(1, size[0]) + 0.8), dpi=100)
    shown = axes.imshow(grid, extent=(0, size[0], size[1], 0), cmap="inferno", interpolation="nearest")
    axes.set_xlabel("x (pixels)")
    axes.set_ylabel("y (pixels)")
    classes = ", ".join(sorted({row.label for row in rows}))
    axes.set_title(f"{rows[0].camera}: occupancy ({classes})")
    figure.colorbar(shown, ax=axes, label="object-frames per cell", shrink=0.8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
