"""Charts of the per-minute counts: a PNG of a measure per minute and class, and the occupancy
heatmap over the frame (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import inspect

from faceatlas.db import create_database_engine, require_database
from faceatlas.engine import check_figure_path
from faceatlas.errors import InvalidArgument, NotFound
from faceatlas.video.store import CountRow, MinuteCounts, count_cameras, list_counts


def camera_counts(database: str, camera: str, *, tenant: str = "default", since: str | None = None,
                  until: str | None = None, label: str | None = None) -> list[MinuteCounts]:
    """The use case of `faceatlas counts`: the camera's stored per-minute counts of the whole range
    (:func:`list_counts`, page after page). An SQLite file that does not exist (it is not created)
    or a camera that never stored counts is :class:`NotFound`; a range or class without counts
    of a known camera is no rows."""
    require_database(database, "events database")
    engine = create_database_engine(database)  # a read: no table is made in a database of another kind
    rows: list[MinuteCounts] = []
    try:
        if not inspect(engine).has_table(CountRow.__tablename__):
            raise NotFound("no counts in this database (no `faceatlas watch` stored any: is it the watch's --db?)")
        known = count_cameras(engine, tenant)
        if camera not in known:
            listed = f"cameras with counts: {', '.join(known[:20])}" if known else "no camera stored counts there"
            raise NotFound(f"no counts of camera {camera[:64]!r} in the database ({listed})")
        while True:
            page = list_counts(engine, tenant, camera, since=since, until=until, label=label)
            rows += page.rows
            if page.next_from is None:
                return rows
            since = page.next_from
    finally:
        engine.dispose()


# The measures a `counts` event holds per class (video/traffic.py, video/analytics.py).
MEASURE = re.compile(r"seen|(in|out):.+|zone:.+:(max|mean)")


def check_measure(measure: str) -> str:
    """``measure`` if it is one a ``counts`` row can hold, else :class:`InvalidArgument` (a plot of
    a measure no row can have would be a flat 0 that reads like nothing happened)."""
    if not MEASURE.fullmatch(measure):
        raise InvalidArgument(f"measure {measure[:64]!r}: give seen, in:<line>, out:<line>, zone:<zone>:max "
                              "or zone:<zone>:mean")
    return measure


def measure_note(rows: Sequence[MinuteCounts], measure: str) -> str | None:
    """A warning when no row of ``rows`` holds ``measure``: rows hold only what happened, so a
    misspelt line or zone plots as a flat 0 that reads like "nothing crossed"; None when one does."""
    if not rows or any(measure in row.counts for row in rows):
        return None
    held = sorted({key for row in rows for key in row.counts})
    return (f"no minute of this range holds {measure[:64]!r} (they hold: {', '.join(held[:20]) or 'nothing'}): "
            "a misspelt line or zone, or nothing crossed it then; plotted as 0")


def minute_series(rows: Sequence[MinuteCounts], measure: str = "seen") -> tuple[list[str], dict[str, list[float]]]:
    """Every minute from the first to the last of ``rows`` (``YYYY-MM-DDTHH:MM``), and per class the
    value of ``measure`` in each: 0 in a minute without a row (nothing seen then: no ``counts`` event)."""
    if not rows:
        return [], {}
    first, last = (datetime.fromisoformat(m) for m in (min(r.minute for r in rows), max(r.minute for r in rows)))
    minutes = [(first + timedelta(minutes=i)).isoformat(timespec="minutes")
               for i in range(int((last - first).total_seconds()) // 60 + 1)]
    series: dict[str, list[float]] = {}
    for label in sorted({row.label for row in rows}):
        values = {row.minute: row.counts.get(measure, 0) for row in rows if row.label == label}
        series[label] = [values.get(m, 0) for m in minutes]
    return minutes, series


def plot_counts(rows: Sequence[MinuteCounts], path: Path, *, measure: str = "seen") -> Path:
    """A PNG of ``measure`` (``seen``, ``in:<line>``, ...) per minute, one line per class; a minute
    without counts is drawn as 0 (see :func:`minute_series`)."""
    path = check_figure_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter, MinuteLocator
    from matplotlib.ticker import MaxNLocator

    check_measure(measure)
    if not rows:
        raise NotFound("no counts stored for this camera and time range")
    minutes, series = minute_series(rows, measure)
    times = np.array([datetime.fromisoformat(m) for m in minutes])
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for label, values in series.items():
        axes.plot(times, values, marker="o", label=label)
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
    path = check_figure_path(path)
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
