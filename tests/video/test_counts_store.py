"""The stored per-minute counts read back: time bounds parsed as times (offsets converted to UTC, a
time without one is UTC, anything else refused), long ranges paged instead of silently cut, and the
series behind the plot with the minutes that saw nothing drawn as 0."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from faceatlas.errors import InvalidArgument
from faceatlas.video.analytics import CountSeries
from faceatlas.video.events import Event
from faceatlas.video.plots import camera_counts, minute_series
from faceatlas.video.sinks import DatabaseSink
from faceatlas.video.store import CountRow, MinuteCounts, list_counts, open_events_db, utc_minute


def _store(database: str, minutes: list[str], classes: dict | None = None) -> None:
    sink = DatabaseSink(database)
    for minute in minutes:
        sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": minute, "frame_size": [8, 8],
                                                         "classes": classes or {"car": {"seen": 1}}}))
    sink.close()


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    _store(url, ["2026-12-04T10:00", "2026-12-04T10:01", "2026-12-04T10:02"])
    return url


def _minutes(database: str, **bounds: str) -> list[str]:
    engine = open_events_db(database)
    try:
        return [row.minute[-5:] for row in list_counts(engine, "default", "gate", **bounds).rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize(("since", "expected"), [
    ("2026-12-04T11:01+01:00", ["10:01", "10:02"]),  # 10:01 UTC
    ("2026-12-04T09:01-01:00", ["10:01", "10:02"]),
    ("2026-12-04T10:01Z", ["10:01", "10:02"]),
    ("2026-12-04T10:01:30", ["10:01", "10:02"]),  # no offset: UTC; the minute it falls in counts
    ("2026-12-04 10:01", ["10:01", "10:02"]),  # a space for the T
    ("2026-12-04", ["10:00", "10:01", "10:02"]),  # a date: its midnight
    ("2026-12-05", []),
])
def test_from_is_a_time_with_its_offset(database, since, expected):
    assert _minutes(database, since=since) == expected


def test_to_is_a_time_with_its_offset(database):
    assert _minutes(database, until="2026-12-04T11:02+01:00") == ["10:00", "10:01"]
    assert _minutes(database, since="2026-12-04 10:01", until="2026-12-04T10:02:00.000+00:00") == ["10:01"]


@pytest.mark.parametrize("bad", ["garbage", "", "2026-13-01T10:00", "10:01", "2026-12-04T10:01 UTC", "x\x00"])
def test_a_time_that_is_not_iso_8601_is_refused(database, bad):
    with pytest.raises(InvalidArgument, match="ISO 8601"):
        _minutes(database, since=bad)
    with pytest.raises(InvalidArgument, match="ISO 8601"):
        _minutes(database, until=bad)


@pytest.mark.parametrize("far", ["0001-01-01T00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_utc_cannot_hold_is_out_of_range_in_the_store_and_the_cli(database, far):
    """Valid ISO 8601 whose UTC time is before year 1 or after 9999 was "is not an ISO 8601 time"
    (GET /v1/events and /counts answered it with 422, as `counts --from` did)."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    for bound, name in (("since", "from"), ("until", "to")):
        with pytest.raises(InvalidArgument, match=f"{name} is out of range") as refused:
            _minutes(database, **{bound: far})
        assert "not an ISO 8601" not in str(refused.value)
    result = CliRunner().invoke(app, ["counts", "gate", "--db", database, "--from", far])
    assert result.exit_code == 2 and "from is out of range" in result.output, result.output


def test_no_counts_of_a_class_is_one_line_and_one_exit_status_with_or_without_a_chart(database, tmp_path):
    """`counts gate --class bus` (none stored) printed an empty table, exit 0; with --plot or --heatmap the
    same table, then not_found (exit 2); with rows but no heatmap stored, --plot was written before
    --heatmap failed. Nothing is drawn, no folder made, and the line says what had no counts."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    charts = tmp_path / "charts" / "deeper"
    for extra in ([], ["--plot", str(charts / "p.png")], ["--heatmap", str(charts / "h.png")],
                  ["--plot", str(charts / "p.png"), "--heatmap", str(charts / "h.png")]):
        result = CliRunner().invoke(app, ["counts", "gate", "--db", database, "--class", "bus", *extra])
        assert result.exit_code == 2 and "no counts of camera 'gate' of class bus stored" in result.output, extra
        assert "┃" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    bounded = CliRunner().invoke(app, ["counts", "gate", "--db", database, "--from", "2026-12-05"])
    assert bounded.exit_code == 2 and "no counts of camera 'gate' from 2026-12-05:" in bounded.output, bounded.output
    assert not (tmp_path / "charts").exists()
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    sink = DatabaseSink(url)  # a minute without a heatmap
    sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "classes": {"car": {"seen": 1}}}))
    sink.close()
    result = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--plot", str(charts / "p.png"),
                                      "--heatmap", str(charts / "h.png")])
    assert result.exit_code == 2 and "no occupancy heatmap" in result.output, result.output
    assert not (charts / "p.png").exists()


def test_utc_minute():
    assert utc_minute("2026-12-31T23:59:59.9-00:30") == "2027-01-01T00:29"
    assert utc_minute("2026-12-04T10:00:00+05:30") == "2026-12-04T04:30"


def test_a_long_range_is_paged_not_cut(tmp_path):
    """Every minute of a range longer than the limit is read: the limit counts minutes after the rows of a
    minute are merged (two runs, two classes), and a page that stops early says so and where to go on."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    minutes = [f"2026-12-04T{10 + i // 60:02d}:{i % 60:02d}" for i in range(25)]
    _store(url, minutes, {"car": {"seen": 1}, "person": {"seen": 2}})
    _store(url, minutes[:5], {"car": {"seen": 10}})  # a second run over the first minutes
    engine = open_events_db(url)
    try:
        first = list_counts(engine, "default", "gate", limit=10)
        assert first.truncated and first.next_from == minutes[10]
        assert [r.minute for r in first.rows] == [m for m in minutes[:10] for _ in ("car", "person")]
        assert [r.counts["seen"] for r in first.rows if r.label == "car"] == [11] * 5 + [1] * 5
        rest = list_counts(engine, "default", "gate", since=first.next_from, limit=15)
        assert not rest.truncated and rest.next_from is None
        assert [r.minute for r in rest.rows if r.label == "car"] == minutes[10:]
        newest = list_counts(engine, "default", "gate", since="2026-12-04T10:20", label="car", limit=5)
        assert [r.minute for r in newest.rows] == minutes[20:] and not newest.truncated
        with pytest.raises(InvalidArgument):
            list_counts(engine, "default", "gate", limit=0)
    finally:
        engine.dispose()
    assert [r.minute for r in camera_counts(url, "gate", label="car")] == minutes  # the CLI's use case


def test_the_cli_reads_every_page(tmp_path, monkeypatch):
    """`faceatlas counts` (``camera_counts``) goes on from ``next_from`` until the range is read."""
    from faceatlas.video import plots

    url = f"sqlite:///{tmp_path / 'long.db'}"
    minutes = [f"2026-12-04T10:{i:02d}" for i in range(7)]
    _store(url, minutes)
    pages = []

    def three_minutes(*args, **kwargs):
        pages.append(list_counts(*args, **{**kwargs, "limit": 3}))
        return pages[-1]

    monkeypatch.setattr(plots, "list_counts", three_minutes)
    assert [r.minute for r in camera_counts(url, "gate", since="2026-12-04T10:00Z")] == minutes
    assert [p.truncated for p in pages] == [True, True, False]


def test_the_plotted_series_has_every_minute_of_its_range():
    """A minute with nothing seen has no row; the plot's line must drop to 0 there, not join across."""
    rows = [MinuteCounts("gate", "2026-12-04T23:58", "car", {"seen": 3}),
            MinuteCounts("gate", "2026-12-04T23:58", "person", {"seen": 1, "in:l": 1}),
            MinuteCounts("gate", "2026-12-05T00:02", "car", {"seen": 2})]
    minutes, series = minute_series(rows)
    assert minutes == ["2026-12-04T23:58", "2026-12-04T23:59", "2026-12-05T00:00", "2026-12-05T00:01",
                       "2026-12-05T00:02"]
    assert series == {"car": [3, 0, 0, 0, 2], "person": [1, 0, 0, 0, 0]}
    assert minute_series(rows, "in:l")[1] == {"car": [0] * 5, "person": [1, 0, 0, 0, 0]}
    assert minute_series([]) == ([], {})


@pytest.mark.parametrize("measure", ["bogus", "in", "zone:bay", "zone:bay:min", "in-aisle", "seen:car"])
def test_a_measure_no_row_can_hold_is_refused_not_plotted_flat(database, tmp_path, measure):
    """`faceatlas counts --measure bogus --plot p.png` used to write a chart of zeros (a measure no
    counts row can have reads as "nothing happened"); it is a validation_error (exit 2), no PNG."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video.plots import plot_counts

    rows = camera_counts(database, "gate")
    with pytest.raises(InvalidArgument, match="measure"):
        plot_counts(rows, tmp_path / "p.png", measure=measure)
    result = CliRunner().invoke(app, ["counts", "gate", "--database", database, "--measure", measure,
                                      "--plot", str(tmp_path / "q.png")])
    assert result.exit_code == 2 and "validation_error" in result.output, result.output
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "q.png").exists()
    for good in ("seen", "in:aisle", "out:north bound", "zone:bay:max", "zone:bay:mean"):
        assert plot_counts(rows, tmp_path / "ok.png", measure=good).is_file()


def test_a_class_that_is_no_object_class_is_refused_not_read_as_none_counted(database, tmp_path):
    """`faceatlas counts gate --class cars` (a typo) printed an empty table, read as "no cars"; a
    class the detectors cannot have is a validation_error (exit 2) in the CLI, as in the API."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    with pytest.raises(InvalidArgument, match="unknown class 'cars'"):
        camera_counts(database, "gate", label="cars")
    result = CliRunner().invoke(app, ["counts", "gate", "--database", database, "--class", "cars",
                                      "--plot", str(tmp_path / "q.png")])
    assert result.exit_code == 2 and "validation_error" in result.output, result.output
    assert not (tmp_path / "q.png").exists()
    assert {r.label for r in camera_counts(database, "gate", label="car")} == {"car"}


def test_a_line_no_minute_holds_is_plotted_with_a_warning_naming_what_they_hold(tmp_path):
    """`--measure in:noline` (a misspelt line) drew a flat 0 without a word: rows hold only what
    happened, so the chart is drawn (a real line may have had no crossing) and stderr says which
    measures the minutes do hold."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    url = f"sqlite:///{tmp_path / 'lines.db'}"
    _store(url, ["2026-12-04T10:00", "2026-12-04T10:01"], {"person": {"seen": 2, "in:door": 1}})
    result = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--measure", "in:dor",
                                      "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "'in:dor'" in warnings[0] and "in:door, seen" in warnings[0], result.output
    assert (tmp_path / "p.png").is_file()
    held = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--measure", "in:door",
                                    "--plot", str(tmp_path / "q.png")])
    assert held.exit_code == 0 and "warning" not in held.output, held.output


def test_a_recording_run_twice_replaces_its_minutes_and_zone_measures_never_add_up(tmp_path):
    """The same recording (a camera with start_time) run twice doubled every count (seen 3 → 6); two
    runs within one live minute summed a zone's most and mean (max 2 + 2 = 4, never right)."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    minute = {"seen": 3, "in:aisle": 2, "zone:lot:max": 2, "zone:lot:mean": 0.5}
    for _ in range(2):  # the recording, run again: same minute, same camera
        sink = DatabaseSink(url)
        sink.emit(Event("counts", "carpark", 1, 1.0, data={"minute": "2026-12-04T10:00", "recorded": True,
                                                           "classes": {"car": dict(minute)}}))
        sink.close()
    engine = open_events_db(url)
    assert [r.counts for r in list_counts(engine, "default", "carpark").rows] == [minute]
    sink = DatabaseSink(url)  # a live camera restarted within a minute: two rows of it
    for most, mean in ((2, 0.5), (1, 1.5)):
        sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "classes": {
            "car": {"seen": 1, "zone:lot:max": most, "zone:lot:mean": mean}}}))
    sink.close()
    assert list_counts(engine, "default", "gate").rows[0].counts == {"seen": 2, "zone:lot:max": 2, "zone:lot:mean": 1.0}
    engine.dispose()


def _segment(url: str, start: datetime, seen: int, most: int = 1) -> None:
    """One recording of camera "lobby" (its ``start_time`` is ``start``), seen at 10:00 UTC, written
    by the database sink as `watch` writes it (the counts event of :class:`CountSeries`)."""
    series = CountSeries(start)
    series.advance(0.0)
    series.count("person", "seen", seen)
    series.zone("hall", {"person": most}, ["person"])
    sink = DatabaseSink(url)
    sink.emit(Event("counts", "lobby", 50, 1.7, data=series.flush()))
    sink.close()


def test_two_recordings_of_one_camera_in_one_minute_add_up_and_a_rerun_replaces_its_own(tmp_path):
    """Two segments of one camera in the same minute (one from 10:00:00 with 24 seen, the next from
    10:00:30 with 23) had one row id per minute: the second replaced the first, 10:00 showed 23 and
    the 24 were gone without a word. Each recording's rows are its own and they add up; a segment
    run again still replaces its rows (not doubled), also those written before the fix."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    url = f"sqlite:///{tmp_path / 'seg.db'}"
    first, second = datetime(2026, 12, 4, 10, 0, tzinfo=UTC), datetime(2026, 12, 4, 10, 0, 30, tzinfo=UTC)
    _segment(url, first, 24, most=3)
    _segment(url, second, 23, most=2)
    engine = open_events_db(url)
    try:
        expected = {"seen": 47, "zone:hall:max": 3, "zone:hall:mean": 2.5}
        assert [(r.minute, r.counts) for r in list_counts(engine, "default", "lobby").rows] == \
            [("2026-12-04T10:00", expected)]
        _segment(url, first, 24, most=3)  # the first segment again: replaced, not added
        assert list_counts(engine, "default", "lobby").rows[0].counts == expected
        shown = CliRunner().invoke(app, ["counts", "lobby", "--db", url])
        assert shown.exit_code == 0 and "seen 47" in shown.output, shown.output
        # a row written before recordings were told apart (its id: tenant, camera, minute, class) is
        # the same recording's when it runs again: replaced, not counted twice
        legacy = hashlib.sha256(b"default\0lobby\x002026-12-04T10:01\0person").hexdigest()
        with Session(engine) as session, session.begin():
            session.add(CountRow(id=legacy, tenant="default", camera="lobby", minute="2026-12-04T10:01",
                                 label="person", counts={"seen": 5}))
        _segment(url, datetime(2026, 12, 4, 10, 1, tzinfo=UTC), 5)
        assert list_counts(engine, "default", "lobby", since="2026-12-04T10:01").rows[0].counts["seen"] == 5
    finally:
        engine.dispose()


def test_counts_of_another_kind_of_database_make_no_table_and_a_measure_needs_a_plot(tmp_path, shared):
    """`counts --db gallery.db` created the events tables in the gallery's database (a read wrote to
    it); `--measure` without `--plot` was ignored without a word; a folder as a watch source was
    "not found"."""
    import sqlite3

    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    other = tmp_path / "gallery.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE faces (id INTEGER PRIMARY KEY)")
    result = CliRunner().invoke(app, ["counts", "gate", "--db", f"sqlite:///{other}"])
    assert result.exit_code == 2 and "no counts in this database" in result.output, result.output
    with sqlite3.connect(other) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"faces"}
    url = f"sqlite:///{tmp_path / 'lines.db'}"
    _store(url, ["2026-12-04T10:00"], {"person": {"seen": 2, "in:door": 1}})
    alone = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--measure", "in:door"])
    assert alone.exit_code == 2 and "--measure is what --plot draws" in alone.output, alone.output
    folder = CliRunner().invoke(app, ["watch", str(shared / "data" / "videos")])
    assert folder.exit_code == 2 and "is a folder" in folder.output, folder.output
    photo = CliRunner().invoke(app, ["watch", str(shared / "data" / "face_recognition_examples" / "tests" /
                                             "test_images" / "obama.jpg")])
    assert photo.exit_code == 2 and "is a photo" in photo.output, photo.output  # a 1-frame video, 0 events


def test_the_face_counts_a_camera_without_the_person_detector_stores_are_read_by_their_class(tmp_path):
    """A camera that counts faces (no person detector) stores rows of class "face", shown in the table,
    but `faceatlas counts CAM --class face` was refused: "unknown class 'face'" (COCO names only)."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    url = f"sqlite:///{tmp_path / 'faces.db'}"
    _store(url, ["2026-12-04T10:00"], {"face": {"seen": 3}, "person": {"seen": 1}})
    assert [(r.label, r.counts) for r in camera_counts(url, "gate", label="face")] == [("face", {"seen": 3})]
    result = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--class", "face"])
    assert result.exit_code == 0 and "face" in result.output and "person" not in result.output, result.output


def test_counts_refuses_an_empty_database() -> None:
    """`counts X --db ''` read the working folder: "no events database at /the/cwd"."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    result = CliRunner().invoke(app, ["counts", "door", "--db", ""])
    assert result.exit_code == 2, result.output
    assert "--db is empty" in result.output and "no events database at" not in result.output


def test_a_chart_of_recordings_decades_apart_bins_by_day_in_seconds(tmp_path):
    """A recording with ``start_time: 1970-01-01T00:00:00+00:00`` (an unset camera clock) and one of 2026
    stored for one camera: `counts --plot` built a point per minute between them (29 million), ran for
    minutes and took 6.6 GB. The chart bins by day over such a span, draws the days with rows and the
    empty day either side of each (the line still drops to 0), labels the axis in days and dates."""
    import time

    import matplotlib.pyplot as plt
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video.plots import plot_counts, series_unit

    url = f"sqlite:///{tmp_path / 'decades.db'}"
    _segment(url, datetime(1970, 1, 1, tzinfo=UTC), 4)
    _segment(url, datetime(2026, 12, 4, 10, 0, tzinfo=UTC), 3)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["counts", "lobby", "--db", url, "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0 and (tmp_path / "p.png").is_file(), result.output
    assert time.monotonic() - started < 30
    rows = camera_counts(url, "lobby")
    assert series_unit(rows) == "day"
    days, series = minute_series(rows, "seen", "day")
    assert days == ["1970-01-01T00:00", "1970-01-02T00:00", "2026-12-03T00:00", "2026-12-04T00:00"]
    assert series == {"person": [4, 0, 0, 3]}
    figures: list = []
    real_close = plt.close
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", lambda figure: figures.append(figure) or real_close(figure))
        plot_counts(rows, tmp_path / "q.png")
    axes = figures[0].axes[0]
    assert axes.get_xlabel() == "day (UTC)" and axes.get_ylabel() == "seen per day"
    labels = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
    assert labels and all(len(text) == 10 and text[4] == "-" for text in labels), labels  # dates


def test_a_chart_bins_by_hour_over_weeks_and_shows_dates_past_a_day(tmp_path):
    """A range of weeks is drawn per hour (a zone's max is the hour's largest, its mean the minutes'
    mean); a chart over more than one day labelled its ticks %H:%M alone, which reads as one day."""
    import matplotlib.pyplot as plt

    from faceatlas.video.plots import plot_counts, series_unit

    rows = [MinuteCounts("gate", "2026-12-04T10:00", "car", {"seen": 3, "zone:z:max": 2, "zone:z:mean": 1.0}),
            MinuteCounts("gate", "2026-12-04T10:59", "car", {"seen": 1, "zone:z:max": 4, "zone:z:mean": 2.0}),
            MinuteCounts("gate", "2026-12-20T08:30", "car", {"seen": 2})]
    assert series_unit(rows) == "hour"
    hours, series = minute_series(rows, "seen", "hour")
    assert hours[:2] == ["2026-12-04T10:00", "2026-12-04T11:00"] and hours[-1] == "2026-12-20T08:00"
    assert series["car"][0] == 4 and series["car"][-1] == 2 and sum(series["car"]) == 6
    assert minute_series(rows, "zone:z:max", "hour")[1]["car"][0] == 4
    assert minute_series(rows, "zone:z:mean", "hour")[1]["car"][0] == 1.5
    figures: list = []
    real_close = plt.close
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", lambda figure: figures.append(figure) or real_close(figure))
        plot_counts(rows, tmp_path / "weeks.png")
        plot_counts(rows[:1], tmp_path / "one.png")
    weeks, one = (figure.axes[0] for figure in figures)
    assert weeks.get_xlabel() == "hour (UTC)" and weeks.get_ylabel() == "seen per hour"
    assert all(t.get_text().startswith("2026-12-") for t in weeks.get_xticklabels() if t.get_text())
    assert one.get_xlabel() == "minute (UTC)" and "10:00" in [t.get_text() for t in one.get_xticklabels()]


def test_the_heatmap_colorbar_has_whole_number_ticks(tmp_path):
    """The cells hold whole object-frames; the colorbar read 0.0, 0.5, 1.0, 1.5, 2.0."""
    import matplotlib.pyplot as plt

    from faceatlas.video.plots import plot_heatmap

    grid = [[0] * 32 for _ in range(18)]
    grid[3][4], grid[5][6] = 2, 1
    rows = [MinuteCounts("gate", "2026-12-04T10:00", "car", {"seen": 1}, heatmap=grid, frame_size=[320, 180])]
    figures: list = []
    real_close = plt.close
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", lambda figure: figures.append(figure) or real_close(figure))
        plot_heatmap(rows, tmp_path / "heat.png")
    ticks = figures[0].axes[1].get_yticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks), ticks


def test_counts_takes_the_tenant_in_the_form_cams_yaml_gives_it(tmp_path):
    """A run of cams.yaml ``tenant: svc:acme`` stores its counts under ``acme`` (the service tenant's
    events); `counts --tenant svc:acme` (the form of cams.yaml and `gallery --tenant`) said not_found."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app
    from faceatlas.video import events_tenant

    url = f"sqlite:///{tmp_path / 'acme.db'}"
    sink = DatabaseSink(url, tenant=events_tenant("svc:acme"))
    sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "classes": {"car": {"seen": 2}}}))
    sink.close()
    for tenant in ("svc:acme", "acme"):
        result = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--tenant", tenant])
        assert result.exit_code == 0 and "seen 2" in result.output, (tenant, result.output)
    other = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--tenant", "svc:other"])
    assert other.exit_code == 2 and "no counts of camera 'gate'" in other.output, other.output
    said = " ".join(other.output.split())  # the tenant it read is named: the database holds counts, another's
    assert "of tenant 'other'" in said and "for that tenant; --tenant names another" in said, said
    # 'svc:' alone (refused in cams.yaml) read tenant 'svc:' and said "no counts"; a blank tenant the same
    for tenant, says in (("svc:", "tenant 'svc:' names no service tenant"), (" ", "tenant is 1 to 64 characters")):
        refused = CliRunner().invoke(app, ["counts", "gate", "--db", url, "--tenant", tenant])
        assert refused.exit_code == 2 and says in " ".join(refused.output.split()), refused.output


def test_a_chart_that_cannot_be_written_is_refused_before_the_table(database, tmp_path):
    """`counts gate --plot /proc/p.png` printed the whole table, then failed writing the chart: one
    outcome is one line, before any reading; a chart that can be written leaves no folder behind
    when nothing is drawn."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    for option in ("--plot", "--heatmap"):
        result = CliRunner().invoke(app, ["counts", "gate", "--db", database, option, "/proc/p.png"])
        assert result.exit_code == 2 and f"{option} /proc/p.png cannot be written" in result.output, result.output
        assert "┃" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    missing = CliRunner().invoke(app, ["counts", "nobody", "--db", database, "--plot", str(tmp_path / "a" / "p.png")])
    assert missing.exit_code == 2 and not (tmp_path / "a").exists(), missing.output
