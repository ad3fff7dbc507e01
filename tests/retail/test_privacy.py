"""What leaves the store and what its reports show: a member's id reaches the store's sinks only
under consent to visit recognition; demographic cells of fewer than k people are suppressed.

Sinks: the first 4.5 s of the Hamilton clip (Lin-Manuel Miranda's face; at stride 4 a track of
hers is decided unknown at 1.3 s, the next one identified at 4.0 s) as a door camera and a zone
camera, with a JSONL sink, once with the member enrolled for face pay only and once for visit
recognition.

Demographics: the attribute models on LFW photos (scrfd-mbf): Serena_Williams_0001 female, 29.0
years; Tony_Blair_0032, 0048, 0053, 0064, 0086 male, 45.0 to 51.2 years (all "45-59").
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from faceatlas.apps.retail import (
    SUPPRESSED,
    Camera,
    ConsentRecord,
    Entry,
    Privacy,
    Product,
    RetailStore,
    StoreConfig,
    StoreRun,
    chart_png,
    compute_report,
    count_demographics,
    csv_text,
    store_report,
    suppress_cells,
)
from faceatlas.db import create_database_engine
from faceatlas.video import Event, events_from_jsonl
from tests.clips import first_seconds

T0 = datetime(2026, 3, 2, 10, 15)
PURPOSES = {"face_pay": ("face_pay",), "visit_recognition": ("visit_recognition",)}


@pytest.fixture(scope="module")
def clip(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shared / "data" / "face_recognition_examples" / "examples" / "short_hamilton_clip.mp4"
    return first_seconds(source, tmp_path_factory.mktemp("sink-clip") / "hamilton-4.5s.mp4", 4.5)


def _run(shared: Path, analyzer: Any, clip: Path, folder: Path, purposes: tuple[str, ...]) -> dict[str, Any]:
    """One run of a door and a zone camera on the clip, Lin enrolled under ``purposes``."""
    sink = folder / "events.jsonl"
    config = StoreConfig(id="sink-store", products=[Product(sku="mug", name="Mug", price_cents=100)], events=str(sink),
                         cameras=[Camera(id="door", role="door", source=str(clip), line="300,0,300,360", stride=4,
                                         persons=False),
                                  Camera(id="aisle", role="zone", zone="ceramics", source=str(clip), stride=4,
                                         persons=False)])
    with RetailStore.open(config, analyzer, f"sqlite:///{folder / 's.db'}", index_dir=folder / "idx") as store:
        photo = shared / "data" / "face_recognition_examples" / "examples" / "lin-manuel-miranda.png"
        member = store.members.enrol("Lin", [photo], ConsentRecord(purposes, granted_by="Lin"),
                                     payment_ref="card-lin" if "face_pay" in purposes else None).id
        report = StoreRun(store).run()
    return {"member": member, "report": report, "text": sink.read_text(), "events": events_from_jsonl(sink)}


@pytest.mark.parametrize("consent", ["face_pay", "visit_recognition"])
def test_sinks_name_only_members_who_consented_to_visit_recognition(
        consent: str, shared: Path, fast_analyzer: Any, clip: Path, tmp_path: Path) -> None:
    run = _run(shared, fast_analyzer, clip, tmp_path, PURPOSES[consent])
    report, member, events = run["report"], run["member"], run["events"]
    assert report.errors == 0
    # both cameras identified her: the video layer's events, before they leave the store
    assert report.events.get("identified", 0) >= 2, report.events
    assert {e.camera for e in events} == {"door", "aisle"}
    named = [e for e in events if e.data.get("subject")]
    if consent == "face_pay":
        assert member not in run["text"]  # nowhere in the file, in no field
        assert not named and not [e for e in events if e.type in ("identified", "identity_lost")]
        assert all("similarity" not in e.data for e in events)
        withheld = report.events["identified"] + report.events.get("identity_lost", 0)
        assert len(events) == sum(report.events.values()) - withheld  # all else is sent
    else:
        identified = [e for e in events if e.type == "identified"]
        assert {e.camera for e in identified} == {"door", "aisle"}
        assert {e.data["subject"] for e in named} == {member}
        assert len(events) == sum(report.events.values())


def test_each_event_is_decided_on_the_member_s_consent_at_that_moment(
        db_url: str, tmp_path: Path, fast_analyzer: Any, clip: Path, member_photos: list[Path],
        stranger_photo: Path) -> None:
    config = StoreConfig(id="consent-store", cameras=[Camera(id="door", role="door", source=str(clip),
                                                              line="0,386,768,170")])
    with RetailStore.open(config, fast_analyzer, db_url, index_dir=tmp_path / "idx") as store:
        both = store.members.enrol("Both", member_photos[:1], ConsentRecord(("face_pay", "visit_recognition"),
                                                                           granted_by="B"), payment_ref="card-b").id
        payer = store.members.enrol("Payer", [stranger_photo], ConsentRecord(("face_pay",), granted_by="P"),
                                    payment_ref="card-p").id
        run = StoreRun(store)

        def match(subject: str, previous: str | None = None) -> dict[str, Any]:
            return {"subject": subject, "name": subject, "similarity": 0.6, "far_level": 1e-5, "evidence": 3,
                    "agreeing": 3, "previous": previous}

        def out(kind: str, data: dict[str, Any]) -> Event | None:
            return run.outgoing(Event(kind, "door", 10, 1.0, 7, "face", data))  # type: ignore[arg-type]

        named = out("identified", match(both))
        assert named is not None and named.data["subject"] == both
        assert out("identified", match(payer)) is None  # reads as unidentified: not sent
        assert out("identity_lost", {"evidence": 3, "previous": payer}) is None
        ended = out("track_ended", {"dwell": 2.0, "subject": payer})
        assert ended is not None and ended.data == {"dwell": 2.0}
        # the sinks knew the track as a member they may name, now it is one they may not
        switched = out("identified", match(payer, previous=both))
        assert switched is not None and switched.type == "identity_lost"
        assert switched.data == {"evidence": 3, "agreeing": 3, "previous": both}
        renamed = out("identified", match(both, previous=payer))
        assert renamed is not None and renamed.data["subject"] == both and renamed.data["previous"] is None
        assert out("track_ended", {"dwell": 1.0}) is not None
        # withdrawing visit recognition (face pay stays) counts from the next event on
        store.members.withdraw(both, ["visit_recognition"])
        assert out("identified", match(both)) is None
        assert store.members.shares_identity("nobody") is False


def test_an_hour_with_one_visitor_shows_no_demographic(store: RetailStore, lfw: Path, db_url: str) -> None:
    serena = sorted((lfw / "Serena_Williams").glob("*.jpg"))[0]
    blair = sorted((lfw / "Tony_Blair").glob("*.jpg"))[1:6]
    store.entry(Entry("in", T0, track="t:0"))
    assert count_demographics(store, serena, T0)
    for i, photo in enumerate(blair):  # five visitors in the next hour
        at = T0.replace(hour=11, minute=i)
        store.entry(Entry("in", at, track=f"t:{i + 1}"))
        assert count_demographics(store, photo, at)
    ten, eleven, noon = (T0.replace(hour=h, minute=0) for h in (10, 11, 12))

    alone = store.report(ten, eleven)
    assert alone.visits_per_hour == {10: 1} and alone.estimated_faces == 1
    assert alone.estimated_age_mix == alone.estimated_gender_mix == {SUPPRESSED: 1}

    busy = store.report(eleven, noon)
    assert busy.estimated_gender_mix == {"male": 5} and busy.estimated_age_mix == {"45-59": 5}

    day = store.report(ten - timedelta(hours=10), noon + timedelta(hours=11))
    assert day.visits_per_hour == {10: 1, 11: 5} and day.estimated_faces == 6  # totals count everyone
    assert day.estimated_gender_mix == {"male": 5, SUPPRESSED: 1}
    assert day.estimated_age_mix == {"45-59": 5, SUPPRESSED: 1}
    assert sum(day.estimated_gender_mix.values()) == day.summary()["estimated_faces"] == 6
    # the day less its busy hour is the lone hour: nothing of hers by difference either
    later = store.report(eleven, noon + timedelta(hours=11))
    assert {k: day.estimated_gender_mix[k] - later.estimated_gender_mix.get(k, 0)
            for k in day.estimated_gender_mix} == {"male": 0, SUPPRESSED: 1}

    # the renderers: CSV, JSON rows, PNG chart; the REST report reads k from the saved config
    rows = list(csv.DictReader(io.StringIO(csv_text(day))))
    shown = {(r["key"], r["value"]) for r in rows if r["metric"] == "estimated_gender"}
    assert shown == {("male", "5"), (SUPPRESSED, "1")} and "female" not in csv_text(day)
    assert {"metric": "summary", "key": "demographics_min_count", "value": "5"} in rows
    assert chart_png(day, "estimated_gender")[:4] == b"\x89PNG"
    served = store_report(create_database_engine(db_url), "default", store.config.id, date(2026, 3, 2),
                          date(2026, 3, 2))
    assert served.estimated_gender_mix == {"male": 5, SUPPRESSED: 1} and served.demographics_min_count == 5

    # k is the store's privacy setting: k=1 shows every cell
    everything = compute_report(store.sessions, store.config.id, ten, noon, min_count=1)
    assert everything.estimated_gender_mix == {"female": 1, "male": 5}
    assert everything.estimated_age_mix == {"18-29": 1, "45-59": 5}
    assert Privacy().demographics_min_count == 5


def test_small_cells_are_suppressed_with_a_complement() -> None:
    genders = ("female", "male", "unknown")
    assert suppress_cells({"male": 1}, 5, genders) == {SUPPRESSED: 1}
    assert suppress_cells({"male": 6, "female": 1}, 5, genders) == {"male": 6, SUPPRESSED: 1}  # two cells hide it
    # one cell under k would be the total less the others: the smallest shown goes with it
    assert suppress_cells({"male": 7, "female": 6, "unknown": 1}, 5, genders) == {"male": 7, SUPPRESSED: 7}
    assert suppress_cells({"male": 7, "female": 6}, 5, genders) == {"female": 6, "male": 7}  # 0 unknown: no one hid
    assert suppress_cells({"30-44": 2, "45-59": 9, "60+": 1}, 5) == {"45-59": 9, SUPPRESSED: 3}
    assert suppress_cells({"30-44": 6, "45-59": 9, "60+": 1}, 5) == {"45-59": 9, SUPPRESSED: 7}
    assert suppress_cells({}, 5, genders) == {}
    assert suppress_cells({"male": 1, "female": 2}, 1, genders) == {"female": 2, "male": 1}
