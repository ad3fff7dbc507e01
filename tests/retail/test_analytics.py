"""Analytics of a simulated day match the simulator's ground truth exactly; config and adapters."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from faceatlas.apps.retail import Entry, Exit, RetailStore, StoreConfig, ZoneVisit, from_video_event
from faceatlas.apps.retail.analytics import compute_report, draw_charts, report_window, suppress_cells, write_csv
from faceatlas.apps.retail.simulator import demo_store, simulate_day
from faceatlas.errors import InvalidInput


def test_simulated_day_matches_ground_truth(db_url: str, tmp_path: Path, fast_analyzer, lfw: Path,
                                            spoof_samples: Path) -> None:
    config = demo_store("sim")
    config.privacy.demographics_min_count = 1  # every demographic cell shown, to match the truth
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store:
        steps: list[tuple[int, int]] = []
        result = simulate_day(store, lfw, spoof_samples / "image_F1.jpg", members=4, visits=12, seed=3,
                              on_event=lambda done, total: steps.append((done, total)))
        report = store.report(result.start, result.end)
        default = compute_report(store.sessions, "sim", result.start, result.end)  # k = 5
    # the demo's progress: every event of the day reported once, in order, with the day's total
    assert [done for done, _ in steps] == list(range(1, len(steps) + 1)) and {t for _, t in steps} == {len(steps)}
    assert len(steps) >= 2 * 12  # at least an entry and an exit per visit
    for key, expected in asdict(result.truth).items():
        assert getattr(report, key) == expected, key
    assert result.truth.alerts.get("spoof") == 1
    for key in ("age_mix", "gender_mix"):  # at the default k, the same counts less the cells under 5
        assert getattr(default, key) == suppress_cells(getattr(result.truth, key), 5), key
    assert set(default.age_mix) <= {"suppressed"} and default.visits == report.visits  # four members: none shown
    retried = [o for o in result.outcomes if o.repeated]
    assert len(retried) == 1 and retried[0].status == "charged"
    assert report.purchases == sum(1 for o in result.outcomes if o.status == "charged" and not o.repeated)
    rows = list(csv.DictReader(write_csv(report, tmp_path / "day.csv").open()))
    assert {"metric": "summary", "key": "visits", "value": "12"} in rows
    charts = draw_charts(report, tmp_path / "charts")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts)


def test_the_default_report_is_thirty_days_today_included() -> None:
    """The default window was 30 days before today to today: 31 days, under the console's heading
    "Last 30 days" and the API's "30 days ago"."""
    first, last = report_window(None, None, today=date(2026, 3, 31))
    assert (first, last) == (date(2026, 3, 2), date(2026, 3, 31)) and (last - first).days + 1 == 30
    assert report_window(date(2026, 1, 1), date(2026, 1, 5)) == (date(2026, 1, 1), date(2026, 1, 5))
    assert report_window(None, date(1, 1, 10)) == (date(1, 1, 1), date(1, 1, 10))  # near the first calendar day


def test_store_config_loads_yaml_and_json(tmp_path: Path) -> None:
    raw = demo_store("files").model_dump()
    (tmp_path / "store.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "store.json").write_text(json.dumps(raw))
    assert StoreConfig.load(tmp_path / "store.yaml") == StoreConfig.load(tmp_path / "store.json") == demo_store("files")
    assert demo_store().product("milk").price_cents == 119
    # a misspelt name (privcy, min_liveliness) was dropped without a word: the store ran on the defaults
    for typo, says in (({"privcy": {"keep_face_crops": True}}, "unknown settings ['privcy']"),
                       ({"recognition": {"min_liveliness": 0.9}}, "recognition: Value error, unknown settings "
                                                                  "['min_liveliness'] (known: visit_fpir"),
                       ({"cameras": [{**raw["cameras"][0], "strid": 2}]}, "cameras.0: Value error, unknown")):
        (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**raw, **typo}))
        with pytest.raises(InvalidInput, match=re.escape(says)):
            StoreConfig.load(tmp_path / "typo.yaml")
    # the video settings a camera passes on: a recognition setting of another name was a TypeError out of the run
    from faceatlas.apps.retail.config import Camera

    for video in ({"recognition": {"fpr": 0.01}}, {"trak_timeout": 3}):  # refused as the camera is read
        with pytest.raises(ValueError, match="(?i)camera .door.: .*(unexpected keyword argument|unknown settings)"):
            Camera(id="door", role="door", source="door.mp4", video=video)
    # a store saved by an earlier version (a setting since renamed) still loads from its database record
    saved = {**raw, "recognition": {**raw["recognition"], "visit_far": 1e-4}}
    assert StoreConfig.model_validate(saved) == demo_store("files")


def test_a_store_cameras_video_settings_are_read_as_a_cams_yaml_camera() -> None:
    from faceatlas.apps.retail.config import Camera
    from faceatlas.apps.retail.live import camera_config

    # video: takes the settings of a cams.yaml camera as the file gives them: a zone, a calibration
    # and start_time as text were an AttributeError ('dict' has no 'polygon', no 'image') or refused
    video = {"zones": [{"name": "till", "polygon": [[0, 0], [100, 0], [100, 100]], "per_m2": True}],
             "calibration": {"image": [[0, 0], [100, 0], [100, 100], [0, 100]], "world": [[0, 0], [1, 0], [1, 1],
                                                                                       [0, 1]]},
             "start_time": "2026-12-04T10:00:00+00:00", "lines": ["0,50,100,50"]}
    made = camera_config(Camera(id="aisle", role="zone", zone="mugs", source="aisle.mp4", video=video))
    assert made.zones[0].polygon == [(0, 0), (100, 0), (100, 100)] and made.calibration is not None
    assert made.start_time == datetime(2026, 12, 4, 10, tzinfo=UTC) and made.lines[0].end == (100.0, 50.0)
    door = camera_config(Camera(id="door", role="door", source="door.mp4", line="0,5,9,5", video={"track_timeout": 3}))
    assert [line.name for line in door.lines] == ["door"] and door.track_timeout == 3
    for video, says in (({"lines": ["0,1,9,1"]}, "unknown settings \\['lines'\\]"),
                        ({"source": "other.mp4"}, "unknown settings \\['source'\\]"),
                        ({"zones": [{"name": "z", "polygon": [[0, 0], [9, 0], [9, 9]]}] * 2}, "zone names are unique"),
                        ({"calibration": {"image": [[0, 0], [1, 0], [2, 0], [0, 1]], "world": [[0, 0], [1, 0], [1, 1],
                                                                                             [0, 1]]}}, "on one line")):
        with pytest.raises(ValueError, match=f"camera 'door': video: .*{says}"):  # as the camera is read
            Camera(id="door", role="door", source="door.mp4", line="0,5,9,5", video=video)


def test_video_events_adapt(tmp_path: Path) -> None:
    config = demo_store()

    def video(kind: str, camera: str, **data: object) -> SimpleNamespace:
        return SimpleNamespace(type=kind, camera=camera, track_id=7, data=data, id=f"{kind}-{camera}",
                               wall_time="2026-03-02T10:00:00.000+00:00")

    assert isinstance(from_video_event(video("line_crossed", "door-in", direction="in"), config), Entry)
    leaving = from_video_event(video("line_crossed", "door-out", direction="out"), config)
    assert isinstance(leaving, Exit) and leaving.track == "door-out:7" and leaving.id == "line_crossed-door-out"
    assert isinstance(from_video_event(video("track_started", "shelf-dairy"), config), ZoneVisit)
    assert from_video_event(video("line_crossed", "door-in", direction="out"), config) is None
    assert from_video_event(video("zone_occupancy", "elsewhere"), config) is None


@pytest.mark.parametrize(("setting", "says"), [
    ({"recognition": {"pay_far": 2}}, "pay_far"),
    ({"webhook": {"url": "ftp://x", "secret": "s"}}, "webhook: url"),
    ({"webhook": {"url": "http://x"}}, "secret"),
    ({"webhook": {"url": "http://x", "secret": "s", "retries": 3}}, "retries"),
    ({"mqtt": {"hots": "localhost"}}, "hots"),
])
def test_a_store_setting_that_fails_only_later_is_refused_at_load(setting, says):
    """pay_far 2 failed every exit at pay time; an ftp webhook or a mistyped sink setting failed on
    every event of the run (or as a traceback at its start)."""
    from faceatlas.apps.retail import Camera, StoreConfig

    with pytest.raises(ValueError, match=says):
        StoreConfig(id="s", cameras=[Camera(id="door", role="door")], **setting)


def test_store_events_dash_is_refused(tmp_path: Path) -> None:
    """`events: "-"` in a store file made a file named "-"; stdout is where `retail run` prints its
    summary, so the store file is refused, saying so."""
    (tmp_path / "store.yaml").write_text(yaml.safe_dump({**demo_store("files").model_dump(), "events": "-"}))
    with pytest.raises(InvalidInput, match=re.escape("events: Value error, '-' (standard output) is where")):
        StoreConfig.load(tmp_path / "store.yaml")


def test_a_chart_title_names_the_last_day_of_the_report_not_the_day_after() -> None:
    """A chart of today said "2026-12-06 to 2026-12-07": the report's end is exclusive (midnight after)."""
    from datetime import datetime

    from faceatlas.apps.retail.analytics import _days_title

    assert _days_title(datetime(2026, 12, 6), datetime(2026, 12, 7)) == "2026-12-06"
    assert _days_title(datetime(2026, 11, 7), datetime(2026, 12, 7)) == "2026-11-07 to 2026-12-06"
    assert _days_title(datetime(2026, 12, 6, 9), datetime(2026, 12, 6, 17, 30)) == "2026-12-06"
