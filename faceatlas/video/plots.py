"""Charts of the per-minute counts: a PNG of a measure per minute and class, and the occupancy
heatmap over the frame (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from faceatlas.db import create_database_engine, require_database
from faceatlas.engine import check_figure_path
from faceatlas.errors import InvalidArgument, NotFound
from faceatlas.video.config import checked_events_tenant, prepare_output_file, remove_made_folders
from faceatlas.video.store import CountRow, MinuteCounts, adopt_space_rows, count_cameras, list_counts


def camera_counts(database: str, camera: str, *, tenant: str = "default", since: str | None = None,
                  until: str | None = None, label: str | None = None) -> list[MinuteCounts]:
    """The use case of `faceatlas counts`: the camera's stored per-minute counts of the whole range
    (:func:`list_counts`, page after page). An SQLite file that does not exist (it is not created)
    or a camera that never stored counts is :class:`NotFound`; a range or class without counts
    of a known camera is no rows. ``tenant`` in either form cams.yaml's ``tenant:`` takes (``svc:acme``
    or ``acme``): its rows are stored under :func:`checked_events_tenant` (``svc:`` alone: InvalidArgument)."""
    tenant = checked_events_tenant(tenant)
    require_database(database, "events database")
    engine = create_database_engine(database)  # a read: no table is made in a database of another kind
    rows: list[MinuteCounts] = []
    try:
        if not inspect(engine).has_table(CountRow.__tablename__):
            raise NotFound("no counts in this database (no `faceatlas watch` stored any: is it the watch's --db?)")
        try:  # an older watch's counts of a service tenant, under its id
            with engine.begin() as connection:
                adopt_space_rows(connection)
        except OperationalError:  # a database this command may only read (a read-only file): as they are
            pass
        known = count_cameras(engine, tenant)
        if camera not in known:
            listed = f"cameras with counts: {', '.join(known[:20])}" if known else "no camera stored counts there"
            raise NotFound(f"no counts of camera {camera[:64]!r} of tenant {tenant[:64]!r} in the database ({listed} "
                           f"for that tenant; --tenant names another)")
        while True:
            page = list_counts(engine, tenant, camera, since=since, until=until, label=label)
            rows += page.rows
            if page.next_from is None:
                return rows
            since = page.next_from
    finally:
        engine.dispose()


def check_chart_path(path: Path, what: str = "--plot") -> Path:
    """``path`` when a chart can be written there: a suffix matplotlib writes
    (:func:`check_figure_path`) and a file that can be made (:func:`prepare_output_file`: not under
    /proc, not in a read-only folder), checked before the counts are read and printed (the table was
    printed, then the chart failed); the folders made to check it are removed again (none is left
    when nothing is drawn)."""
    path = check_figure_path(path)
    made: list[Path] = []
    try:
        prepare_output_file(path, what, made=made)
    finally:
        remove_made_folders(made)
    return path


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


# The bins a chart draws, finest first, and their length in minutes: the finest whose range has at
# most MAX_BINS bins. A recording whose camera clock was unset starts in 1970: with one of 2026 that is
# 29 million minutes, which a point per minute drew for minutes on end in gigabytes.
BINS = (("minute", 1), ("hour", 60), ("day", 1440))
MAX_BINS = 1500


def series_unit(rows: Sequence[MinuteCounts]) -> str:
    """The bin of a chart of ``rows`` (:data:`BINS`): ``minute``, ``hour`` or ``day``, the finest
    with at most :data:`MAX_BINS` bins from the first minute to the last (else ``day``)."""
    if not rows:
        return "minute"
    first, last = (datetime.fromisoformat(m) for m in (min(r.minute for r in rows), max(r.minute for r in rows)))
    span = int((last - first).total_seconds()) // 60
    return next((unit for unit, size in BINS if span // size + 1 <= MAX_BINS), BINS[-1][0])


def _bin_of(minute: str, size: int) -> int:
    """The bin (minutes since 1970 over ``size``) of a ``YYYY-MM-DDTHH:MM`` minute (UTC)."""
    moment = datetime.fromisoformat(minute).replace(tzinfo=UTC)
    return int(moment.timestamp()) // 60 // size


def minute_series(rows: Sequence[MinuteCounts], measure: str = "seen",
                  unit: str = "minute") -> tuple[list[str], dict[str, list[float]]]:
    """The bins of ``unit`` (``minute``, ``hour``, ``day``; each named by its first minute,
    ``YYYY-MM-DDTHH:MM``) and per class the value of ``measure`` in each: summed over a bin's minutes
    (a zone's ``max`` their largest, its ``mean`` their mean); 0 in a bin without a row (nothing seen
    then: no ``counts`` event). Every bin from the first to the last when they are at most
    :data:`MAX_BINS`, else the bins with rows and the empty bin either side of each (a line still drops
    to 0 over a gap) -- never a point per minute of decades."""
    if not rows:
        return [], {}
    size = dict(BINS)[unit]
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        values[row.label][_bin_of(row.minute, size)].append(row.counts.get(measure, 0))
    held = {number for per_bin in values.values() for number in per_bin}
    first, last = min(held), max(held)
    if last - first + 1 <= MAX_BINS:
        bins = list(range(first, last + 1))
    else:
        bins = sorted({near for number in held for near in (number - 1, number, number + 1) if first <= near <= last})
    merge: Callable[[list[float]], float] = (
        max if measure.endswith(":max") else (lambda v: sum(v) / len(v)) if measure.endswith(":mean") else sum)
    series = {label: [merge(per_bin[b]) if b in per_bin else 0 for b in bins]
              for label, per_bin in sorted(values.items())}
    epoch = datetime(1970, 1, 1)
    return [(epoch + timedelta(minutes=b * size)).isoformat(timespec="minutes") for b in bins], series


def plot_counts(rows: Sequence[MinuteCounts], path: Path, *, measure: str = "seen") -> Path:
    """A PNG of ``measure`` (``seen``, ``in:<line>``, ...) per minute, one line per class; over a
    longer range per hour or per day (:func:`series_unit`, the axes say which); a bin without
    counts is drawn as 0 (see :func:`minute_series`)."""
    path = check_figure_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter, MinuteLocator
    from matplotlib.ticker import MaxNLocator

    check_measure(measure)
    if not rows:
        raise NotFound("no counts stored for this camera and time range")
    unit = series_unit(rows)
    minutes, series = minute_series(rows, measure, unit)
    times = np.array([datetime.fromisoformat(m) for m in minutes])
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for label, values in series.items():
        axes.plot(times, values, marker="o", label=label)
    axes.set_xlabel(f"{unit} (UTC)")
    axes.set_ylabel(f"{measure} per {unit}")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if unit == "minute" and len(minutes) <= 30:  # a tick per minute; longer spans keep matplotlib's choice
        axes.xaxis.set_major_locator(MinuteLocator())
    # a range within one day is read in hours and minutes; a longer one needs its dates
    one_day = minutes[0][:10] == minutes[-1][:10]
    shown = "%Y-%m-%d" if unit == "day" else "%H:%M" if one_day else "%Y-%m-%d %H:%M"
    axes.xaxis.set_major_formatter(DateFormatter(shown))
    axes.set_ylim(bottom=0)
    axes.set_title(f"{rows[0].camera}: {measure} per {unit} and class")
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
    from matplotlib.ticker import MaxNLocator

    grid = occupancy(rows)
    size = next((row.frame_size for row in rows if row.frame_size), None) or [grid.shape[1], grid.shape[0]]
    figure, axes = plt.subplots(figsize=(8, 8 * size[1] / max(1, size[0]) + 0.8), dpi=100)
    shown = axes.imshow(grid, extent=(0, size[0], size[1], 0), cmap="inferno", interpolation="nearest")
    axes.set_xlabel("x (pixels)")
    axes.set_ylabel("y (pixels)")
    classes = ", ".join(sorted({row.label for row in rows}))
    axes.set_title(f"{rows[0].camera}: occupancy ({classes})")
    # the cells hold whole object-frames: ticks at whole numbers (1.5 object-frames reads as a fraction of one)
    figure.colorbar(shown, ax=axes, label="object-frames per cell", shrink=0.8, ticks=MaxNLocator(integer=True))
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
