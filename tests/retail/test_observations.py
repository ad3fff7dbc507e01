"""Demographics are counted per hour from the attribute models, never per visitor; charts have
labelled axes and integer ticks on counts; `retail run` as a command."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import inspect, select
from typer.testing import CliRunner

from faceatlas.apps.retail import RetailStore, age_band, chart_png, compute_report, count_demographics
from faceatlas.apps.retail.db import DemographicCount

T0 = datetime(2026, 3, 2, 10, 15)


def test_demographics_are_hourly_counts_only(store: RetailStore, lfw: Path) -> None:
    bush = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:2]  # a man in his fifties (ASSETS.md: 55-58)
    serena = sorted((lfw / "Serena_Williams").glob("*.jpg"))[0]  # a woman in her twenties
    for photo, minute in ((bush[0], 0), (bush[1], 20), (serena, 40)):
        assert count_demographics(store, photo, T0.replace(minute=minute))
    day = (T0.replace(hour=0), T0.replace(hour=23))
    report = compute_report(store.sessions, store.config.id, *day, min_count=1)  # every cell shown
    assert report.estimated_gender_mix == {"female": 1, "male": 2}
    assert sum(report.estimated_age_mix.values()) == 3 and report.estimated_age_mix.get("45-59") == 2
    shown = store.report(*day)  # the store's k (5): an hour of three faces shows none of them
    assert shown.estimated_gender_mix == shown.estimated_age_mix == {"suppressed": 3} and shown.estimated_faces == 3
    with store.sessions() as session:
        rows = session.scalars(select(DemographicCount)).all()
        assert {r.hour for r in rows} == {T0.replace(minute=0)}
        columns = {c["name"] for c in inspect(session.get_bind()).get_columns("retail_demographics")}
    assert columns == {"id", "store_id", "hour", "age_band", "gender", "count"}  # nothing names a person
    assert [age_band(a) for a in (None, 12, 18, 44.9, 59, 60)] == ["unknown", "0-17", "18-29", "30-44", "45-59", "60+"]


def test_count_charts_have_labelled_axes_and_integer_ticks(store: RetailStore, lfw: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    count_demographics(store, sorted((lfw / "George_W_Bush").glob("*.jpg"))[0], T0)
    report = store.report(T0.replace(hour=0), T0.replace(hour=23))
    seen = []
    original = plt.Figure.savefig

    def capture(figure, *args, **kwargs):  # read the axes of the figure as it is saved
        axes = figure.axes[0]
        seen.append((axes.get_xlabel(), axes.get_ylabel(), list(axes.get_yticks())))
        return original(figure, *args, **kwargs)

    plt.Figure.savefig = capture  # type: ignore[method-assign]
    try:
        png = chart_png(report, "estimated_gender")
    finally:
        plt.Figure.savefig = original  # type: ignore[method-assign]
    assert png[:4] == b"\x89PNG"
    (x_label, y_label, ticks), = seen
    assert (x_label, y_label) == ("gender", "faces")
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_retail_run_command(shared: Path, tmp_path: Path) -> None:
    from faceatlas.cli.main import app

    config = tmp_path / "store.yaml"
    config.write_text(json.dumps({
        "id": "cli-store", "products": [{"sku": "mug", "name": "Mug", "price_cents": 1250}],
        "cameras": [{"id": "aisle", "role": "zone", "zone": "ceramics", "faces": False, "stride": 2,
                     "source": str(shared / "data" / "videos" / "store-aisle-detection.gif")}],
        "events": str(tmp_path / "events.jsonl")}))
    config = config.rename(tmp_path / "store.json")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(app, ["retail", "run", str(config), "--database", url, "--index-dir",
                                      str(tmp_path / "idx"), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["zone_tracks"] >= 3 and summary["events"]["track_ended"] >= summary["zone_tracks"]
    assert (tmp_path / "events.jsonl").read_text().count("track_ended") == summary["events"]["track_ended"]
    missing = CliRunner().invoke(app, ["retail", "run", str(tmp_path / "nowhere.yaml")])
    assert missing.exit_code == 2


def test_occupancy_counts_the_visits_of_the_store_s_max_visit_hours(db_url: str, tmp_path: Path, config,
                                                                    fast_analyzer) -> None:
    """With privacy.max_visit_hours 48 a visit entered 13 h ago, still open, is inside (it is closed
    as abandoned only after 48 h): occupancy looked 12 h back whatever the setting."""
    from datetime import timedelta

    from faceatlas.apps.retail import Entry, Privacy

    two_days = config.model_copy(update={"privacy": Privacy(max_visit_hours=48)})
    now = datetime(2026, 3, 4, 12)
    with RetailStore.open(two_days, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store:
        store.entry(Entry("in", now - timedelta(hours=13), track="long"))
        store.entry(Entry("in", now - timedelta(hours=1), track="short"))
        occupancy = store.observations.occupancy(now)
        assert (occupancy["inside"], occupancy["window_hours"]) == (2, 48)
        assert store.observations.occupancy(now, window_hours=12)["inside"] == 1
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store:  # the default: 12 h
        assert (store.observations.occupancy(now)["inside"], store.observations.occupancy(now)["window_hours"]) == \
            (1, 12)


def test_a_chart_of_no_category_says_so_with_no_numeric_axis(store: RetailStore) -> None:
    """zone_heat of a store with no zone visit (and the demo's retail_zone_tracks.png) drew an empty
    plot with x ticks from -0.04 to 0.04."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from faceatlas.apps.retail.analytics import NO_DATA

    report = store.report(T0.replace(hour=0), T0.replace(hour=23))
    seen = []
    original = plt.Figure.savefig

    def capture(figure, *args, **kwargs):
        axes = figure.axes[0]
        seen.append(([t.get_text() for t in axes.texts], list(axes.get_xticks()), list(axes.get_yticks()),
                     axes.get_xlabel(), len(axes.patches)))
        return original(figure, *args, **kwargs)

    plt.Figure.savefig = capture  # type: ignore[method-assign]
    try:
        for name in ("zone_heat", "zone_tracks", "zone_dwell", "basket_size"):
            assert chart_png(report, name)[:8] == b"\x89PNG\r\n\x1a\n"
        chart_png(report, "visits_per_hour")  # hours of no visit: bars of 0, a chart like any
    finally:
        plt.Figure.savefig = original  # type: ignore[method-assign]
    for texts, x_ticks, y_ticks, x_label, bars in seen[:4]:
        assert (texts, x_ticks, y_ticks, bars) == ([NO_DATA], [], [], 0) and x_label
    texts, x_ticks, _, _, bars = seen[4]
    assert texts == [] and len(x_ticks) == bars == 13
