"""/v1/kyc/sessions: a session with a server-chosen challenge, one multipart submission (the
document and the selfie as a video or frames), the decision and its audit; tenants see only theirs."""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import pytest

pytest.importorskip("mediapipe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kyc.media import encode_mp4, moved_still, render_card

from faceatlas.client import FaceAtlasApiError
from faceatlas.errors import AlreadyExists

MIRANDA = "examples/lin-manuel-miranda.png"


def test_a_session_is_created_submitted_and_read_back(api, examples):
    photo = cv2.imread(str(examples / MIRANDA))
    card = render_card(examples / MIRANDA, "Lin_Manuel_Miranda", 7)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moved_still(photo, seconds=1.0, fps=10, size=(480, 360))]
    with api.client("acme_detect") as client, api.client("globex_admin") as other:
        created = client.post("/v1/kyc/sessions")
        assert created.status_code == 201, created.text
        session = created.json()
        assert session["status"] == "pending" and session["accepted"] is None
        assert len(session["challenge"]) == 2
        url = f"/v1/kyc/sessions/{session['id']}"
        files = [("document", ("id.jpg", card, "image/jpeg"))] + [("frame", (f"{i}.jpg", f, "image/jpeg"))
                                                                   for i, f in enumerate(frames)]
        decided = client.post(f"{url}/submit", files=files, data={"fps": "10"})
        assert decided.status_code == 200, decided.text
        body = decided.json()
        assert body["status"] == "rejected" and body["accepted"] is False
        assert "challenge_failed" in body["reasons"]  # a still moved before the camera does no action
        assert body["details"]["match"]["match"] is True  # ... though it is the card's person
        assert body["details"]["thresholds"]["far"] == 1e-6
        assert client.get(url).json() == body
        billed = api.accounts.calls_this_month("acme")
        assert client.post(f"{url}/submit", files=files, data={"fps": "10"}).json() == body  # decided once
        empty = [("document", ("e.jpg", b"", "image/jpeg")), ("frame", ("0.jpg", b"", "image/jpeg"))]
        assert client.post(f"{url}/submit", files=empty).json() == body
        assert api.accounts.calls_this_month("acme") == billed  # answering the decision again does no work
        assert other.get(url).status_code == 404  # another tenant's session
        missing = client.post(f"{url}/submit", files=[("document", ("id.jpg", card, "image/jpeg"))])
        assert missing.status_code == 422 and "selfie" in missing.json()["error"]["message"]
        fresh = client.post("/v1/kyc/sessions", json={"retention_days": 0}).json()
        video = encode_mp4(moved_still(photo, seconds=0.4, fps=10, size=(320, 240)), 10)
        both = client.post(f"/v1/kyc/sessions/{fresh['id']}/submit",
                           files=[("document", ("id.jpg", card, "image/jpeg")),
                                  ("selfie", ("s.mp4", video, "video/mp4")),
                                  ("frame", ("0.jpg", frames[0], "image/jpeg"))])
        assert both.status_code == 422 and both.json()["error"]["code"] == "validation_error"
        broken = client.post(f"/v1/kyc/sessions/{fresh['id']}/submit",
                             files=[("document", ("id.jpg", card, "image/jpeg")),
                                    ("selfie", ("s.mp4", b"not a video", "video/mp4"))])
        assert broken.status_code == 400
        assert "invalid data found" in broken.json()["error"]["message"]  # FFmpeg's words, not its errno
        assert "Errno" not in broken.text and "<none>" not in broken.text
        assert client.get(f"/v1/kyc/sessions/{fresh['id']}").json()["status"] == "pending"  # not used up
        for extra in ({"bogus": "1"}, {"selfie": "text, not a video"}):  # were ignored, the session used up
            ignored = client.post(f"/v1/kyc/sessions/{fresh['id']}/submit", data=extra,
                                  files=[("document", ("id.jpg", card, "image/jpeg")),
                                         ("frame", ("0.jpg", frames[0], "image/jpeg"))])
            assert (ignored.status_code, ignored.json()["error"]["code"]) == (422, "validation_error"), extra
        assert client.get(f"/v1/kyc/sessions/{fresh['id']}").json()["status"] == "pending"
    with api.client() as anonymous:
        assert anonymous.post("/v1/kyc/sessions").status_code == 401


def test_submissions_of_one_session_at_once_bill_the_one_that_decides(api, examples):
    """Four submissions of one session at once, on one worker: the three queued behind the first
    answered its decision and were billed each (four kyc.verify calls for one decision)."""
    photo = cv2.imread(str(examples / "examples" / "alex-lacamoire.png"))
    card = render_card(examples / "examples" / "alex-lacamoire.png", "Alex_Lacamoire", 5)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moved_still(photo, seconds=1.0, fps=10, size=(480, 360))]
    files = [("document", ("id.jpg", card, "image/jpeg"))] + [("frame", (f"{i}.jpg", f, "image/jpeg"))
                                                               for i, f in enumerate(frames)]
    with api.client("acme_detect") as client:
        session = client.post("/v1/kyc/sessions").json()
        billed = api.accounts.calls_this_month("acme")
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: api.http.post(
                f"/v1/kyc/sessions/{session['id']}/submit", files=files, data={"fps": "10"},
                headers={"Authorization": f"Bearer {api.keys['acme_detect']}"}), range(4)))
    decided = [a for a in answers if a.status_code == 200]
    assert decided and all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    assert all(a.json() == decided[0].json() for a in decided) and decided[0].json()["status"] == "rejected"
    assert api.accounts.calls_this_month("acme") == billed + 1 + sum(a.status_code == 409 for a in answers)


def test_the_python_client_runs_a_session(api, examples):
    obama = examples / "examples" / "obama-480p.jpg"  # not Miranda: the test above submitted that still (a replay)
    photo = cv2.imread(str(obama))
    card = render_card(obama, "Barack_Obama", 3)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moved_still(photo, seconds=1.0, fps=10, size=(480, 360))]
    client = api.api_client("acme_detect")
    session = client.kyc_session()
    assert session.status == "pending" and len(session.challenge) == 2
    decided = client.kyc_submit(session.id, card, frames=frames, fps=10)
    assert decided.accepted is False and "replay" not in decided.reasons
    assert "challenge_failed" in decided.reasons  # a still moved before the camera does no action
    assert client.kyc_get(session.id) == decided
    reviewer = api.api_client("acme_read")  # listing every session is a reviewer's read, not a kiosk's detect
    assert session.id in [s.id for s in reviewer.kyc_sessions(status="rejected").sessions]
    assert session.id not in [s.id for s in reviewer.kyc_sessions(status="pending").sessions]
    client.kyc_session()  # a second session: two pages of one
    newest = reviewer.kyc_sessions(limit=1)
    assert len(newest.sessions) == 1 and newest.next
    assert newest.sessions[0].id not in [s.id for s in reviewer.kyc_sessions(limit=1, after=newest.next).sessions]
    with pytest.raises(FaceAtlasApiError, match="'read' scope"):
        client.kyc_sessions()


def _admin_of_new_tenant(api, tenant: str) -> str:
    """An admin key of ``tenant``, created here (the ``api`` database is shared by the session's tests)."""
    with contextlib.suppress(AlreadyExists):
        api.accounts.create_tenant(tenant)
    return api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token


def test_reference_frames_are_kept_only_as_long_as_the_tenant_says(api, examples):
    """Retention is the tenant's: none by default, N days when its admin sets N, then purged;
    shortening it deletes what is past it at once."""
    photo = cv2.imread(str(examples / MIRANDA))
    card = render_card(examples / MIRANDA, "Lin_Manuel_Miranda", 11)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moved_still(photo, seconds=0.6, fps=10, size=(320, 240))]
    files = [("document", ("id.jpg", card, "image/jpeg"))] + [("frame", (f"{i}.jpg", f, "image/jpeg"))
                                                               for i, f in enumerate(frames)]
    kyc = api.app.state.kyc
    week_admin = _admin_of_new_tenant(api, "kyc-keep-week")
    with api.client(_admin_of_new_tenant(api, "kyc-keep-none")) as none, api.client(week_admin) as week:
        assert {k: none.get("/v1/settings").json()[k] for k in ("tenant", "kyc_retention_days")} == {
            "tenant": "kyc-keep-none", "kyc_retention_days": 0}  # default
        changed = week.patch("/v1/settings", json={"kyc_retention_days": 7})
        assert changed.status_code == 200 and changed.json()["kyc_retention_days"] == 7
        assert week.get("/v1/settings").json()["kyc_retention_days"] == 7
        assert none.get("/v1/settings").json()["kyc_retention_days"] == 0  # the other tenant's stays
        assert week.patch("/v1/settings", json={"kyc_retention_days": -1}).status_code == 422
        audit = week.get("/v1/audit").json()["events"]
        assert any(e["action"] == "tenant.update" and e["details"]["kyc_retention_days"] == 7 for e in audit)
        refused = none.post("/v1/kyc/sessions", json={"retention_days": 7})  # a session may not keep longer
        assert refused.status_code == 422 and "retention" in refused.json()["error"]["message"]
        decided = {}
        for name, client in (("none", none), ("week", week)):
            session = client.post("/v1/kyc/sessions").json()
            answer = client.post(f"/v1/kyc/sessions/{session['id']}/submit", files=files, data={"fps": "10"})
            assert answer.status_code == 200 and answer.json()["status"] == "rejected", answer.text
            decided[name] = answer.json()
        assert kyc.references("svc:kyc-keep-none", decided["none"]["id"]) == {}  # nothing written
        week_id = decided["week"]["id"]
        kept = kyc.references("svc:kyc-keep-week", week_id)
        assert set(kept) == {"document", "selfie"} and all(data[:2] == b"\xff\xd8" for data in kept.values())
        assert decided["week"]["decided_at"].endswith("+00:00")  # as every answer's time (it wrote 'Z')
        at = datetime.fromisoformat(decided["week"]["decided_at"]).replace(tzinfo=None)
        assert kyc.purge(now=at + timedelta(days=7) - timedelta(minutes=1)) == 0  # kept through the 7 days ...
        assert set(kyc.references("svc:kyc-keep-week", week_id)) == {"document", "selfie"}
        assert kyc.purge(now=at + timedelta(days=7, seconds=1)) >= 2  # ... and purged after them
        assert kyc.references("svc:kyc-keep-week", week_id) == {}

        session = week.post("/v1/kyc/sessions").json()  # kept again, then the admin stops keeping
        frames_again = [cv2.imencode(".jpg", cv2.flip(f, 1))[1].tobytes()
                        for f in moved_still(photo, seconds=0.6, fps=10, size=(320, 240), seed=5)]
        again = [files[0]] + [("frame", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames_again)]
        answer = week.post(f"/v1/kyc/sessions/{session['id']}/submit", files=again, data={"fps": "10"})
        assert answer.status_code == 200, answer.text
        assert set(kyc.references("svc:kyc-keep-week", session["id"])) == {"document", "selfie"}
        assert week.patch("/v1/settings", json={"kyc_retention_days": 0}).json()["kyc_retention_days"] == 0
        assert kyc.references("svc:kyc-keep-week", session["id"]) == {}  # deleted at once, not in 7 days
    client = api.api_client(week_admin)  # the Python client
    updated = client.update_tenant_settings(kyc_retention_days=2)  # typed answers
    assert (updated.tenant, updated.kyc_retention_days) == ("kyc-keep-week", 2)
    assert client.tenant_settings() == updated
    assert {k: client.tenant_settings().raw[k] for k in ("tenant", "kyc_retention_days")} == {
        "tenant": "kyc-keep-week", "kyc_retention_days": 2}
    with api.client("acme_detect") as detect:
        assert detect.get("/v1/settings").status_code == 403  # the admin's alone
        assert detect.patch("/v1/settings", json={"kyc_retention_days": 30}).status_code == 403


def test_a_session_retention_is_a_whole_number_of_days(api):
    """{"retention_days": true} was read as 1 day and 0.0 as 0 (PATCH /v1/settings refuses both):
    the number of days is an integer, nothing read as one."""
    keeper = _admin_of_new_tenant(api, "kyc-strict-days")
    with api.client(keeper) as client:
        assert client.patch("/v1/settings", json={"kyc_retention_days": 3}).status_code == 200
        for odd in (True, False, 0.0, 1.0, "1", [1]):
            answer = client.post("/v1/kyc/sessions", json={"retention_days": odd})
            assert answer.status_code == 422, (odd, answer.text)
            assert answer.json()["error"]["code"] == "validation_error"
        for days in (0, 3, None):
            assert client.post("/v1/kyc/sessions", json={"retention_days": days}).status_code == 201, days


def test_a_sessions_times_are_utc_with_their_offset_as_every_answers(api):
    """A KYC session's times ended in 'Z' where every other answer's (collections, subjects, keys,
    audit, retail) are UtcTime, ``+00:00``: one client parser read both, another only one."""
    keeper = _admin_of_new_tenant(api, "kyc-utc-times")
    with api.client(keeper) as client:
        created = client.post("/v1/kyc/sessions").json()
        read = client.get(f"/v1/kyc/sessions/{created['id']}").json()
        listed = client.get("/v1/kyc/sessions").json()["sessions"][0]
    for answer in (created, read, listed):
        assert answer["created_at"].endswith("+00:00") and answer["expires_at"].endswith("+00:00"), answer
        assert answer["decided_at"] is None


def test_a_tenant_with_the_longest_id_can_open_a_session(api, examples):
    """Tenant ids are up to 64 characters, and KYC keeps them as ``svc:<id>`` in a 64-character
    column: on PostgreSQL a 61-64 character id failed every session with a 500."""
    tenant = "t" * 64
    api.accounts.create_tenant(tenant, "Long Name Ltd")
    key = api.accounts.create_key(tenant, ["read"], rate_per_second=100, burst=100).token
    with api.client(key) as client:
        created = client.post("/v1/kyc/sessions")
        assert created.status_code == 201, created.text
        session = created.json()
        assert client.get(f"/v1/kyc/sessions/{session['id']}").json()["status"] == "pending"
        assert [s["id"] for s in client.get("/v1/kyc/sessions").json()["sessions"]] == [session["id"]]


def test_expired_reference_images_are_deleted_without_any_kyc_call(db_url, fast_analyzer, tmp_path):
    """docs/kyc.md: a reference image is "deleted once it passes". Only more KYC traffic (a
    decision, a read of references, a retention change) deleted it: images that expired while the
    service was down, or while no session was decided, stayed in the database (a restart, then GET
    of the session and of the list, left them). The service deletes them at its start, before any
    call, and every FACEATLAS_RETENTION_SWEEP_SECONDS while it runs (fingerprints past the replay
    window too)."""
    import time

    from fastapi.testclient import TestClient
    from sqlalchemy import func, select, update
    from sqlalchemy.orm import Session

    from faceatlas.apps.kyc import migrate as migrate_kyc
    from faceatlas.apps.kyc.db import KycFingerprint, KycReference, KycSession
    from faceatlas.db import create_database_engine, utcnow
    from faceatlas.service import create_app
    from faceatlas.settings import ServiceSettings

    engine = create_database_engine(db_url)
    migrate_kyc(engine)
    now = utcnow()
    decided = now - timedelta(days=3)
    expired, kept = "a" * 32, "b" * 32
    with Session(engine) as session, session.begin():  # what a tenant keeping 2 days left before a restart
        for session_id in (expired, kept):
            session.add(KycSession(id=session_id, tenant="svc:acme", challenge=["blink"], status="rejected",
                                   created_at=decided, expires_at=decided, decided_at=decided, reasons=[],
                                   details={}, retention_days=2))
        session.flush()
        for kind in ("document", "selfie"):
            session.add(KycReference(session_id=expired, kind=kind, image=b"\xff\xd8",
                                     expires_at=decided + timedelta(days=2)))
            session.add(KycReference(session_id=kept, kind=kind, image=b"\xff\xd8", expires_at=now + timedelta(days=1)))
        session.add(KycFingerprint(tenant="svc:acme", session_id=expired, digest="0" * 64, hashes=[],
                                   at=now - timedelta(days=31)))

    def images() -> list[str]:
        with Session(engine) as session:
            return sorted(session.scalars(select(KycReference.session_id)))

    settings = ServiceSettings(database_url=db_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1,
                               retention_sweep_seconds=0.2)
    try:
        with TestClient(create_app(settings, analyzer=fast_analyzer)):
            assert images() == [kept, kept]  # deleted at the start, no call made
            with Session(engine) as session:
                assert session.scalar(select(func.count()).select_from(KycFingerprint)) == 0
            with Session(engine) as session, session.begin():  # the other session's images expire meanwhile
                session.execute(update(KycReference).values(expires_at=utcnow() - timedelta(seconds=1)))
            deadline = time.monotonic() + 10
            while images() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert images() == []  # deleted by the sweep while the service runs
    finally:
        engine.dispose()


def test_a_submission_of_more_frames_than_the_limit_is_refused(api, examples):
    """301 frames were taken (the form's file limit was MAX_FRAMES + 2: the document and 301 frames)."""
    from faceatlas.service.routes.kyc import MAX_FRAMES

    card = render_card(examples / MIRANDA, "Lin_Manuel_Miranda", 7)
    frame = cv2.imencode(".jpg", cv2.imread(str(examples / MIRANDA))[:64, :64])[1].tobytes()
    with api.client("acme_detect") as client:
        session = client.post("/v1/kyc/sessions").json()
        url = f"/v1/kyc/sessions/{session['id']}"
        files = [("document", ("id.jpg", card, "image/jpeg"))] + [("frame", (f"{i}.jpg", frame, "image/jpeg"))
                                                                   for i in range(MAX_FRAMES + 1)]
        refused = client.post(f"{url}/submit", files=files, data={"fps": "30"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
        assert f"at most {MAX_FRAMES} frames" in refused.json()["error"]["message"]
        assert client.get(url).json()["status"] == "pending"
