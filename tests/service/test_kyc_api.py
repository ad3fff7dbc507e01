"""/v1/kyc/sessions: a session with a server-chosen challenge, one multipart submission (the
document and the selfie as a video or frames), the decision and its audit; tenants see only theirs."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

pytest.importorskip("mediapipe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kyc.media import encode_mp4, moved_still, render_card

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
        assert client.post(f"{url}/submit", files=files, data={"fps": "10"}).json() == body  # decided once
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
        assert client.get(f"/v1/kyc/sessions/{fresh['id']}").json()["status"] == "pending"  # not used up
    with api.client() as anonymous:
        assert anonymous.post("/v1/kyc/sessions").status_code == 401


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
    assert session.id in [s.id for s in client.kyc_sessions(status="rejected")]
    assert session.id not in [s.id for s in client.kyc_sessions(status="pending")]
