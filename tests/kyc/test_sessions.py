"""Verification sessions end to end on real footage and real cards: a genuine selfie accepted
with its audit, then the same selfie refused as a replay; attacks from stills refused; sessions
decided once, expiring, keeping no face image unless retention says so."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from sqlalchemy import func, select

from faceatlas.apps.kyc import REASONS, KycConfig, KycService
from faceatlas.apps.kyc.db import KycFingerprint, KycReference
from faceatlas.errors import NotFound, SessionExpired

from .conftest import HAMILTON, MIRANDA, still
from .media import clip, encode_mp4, moved_still, render_card


def _count(service: KycService, table: type) -> int:
    with service._sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_genuine_blink_is_accepted_and_audited_then_replay_refused(service: KycService, night: Path,
                                                                   night_card: bytes, night_blink: bytes) -> None:
    created = service.create("acme", ["blink"])
    assert created.status == "pending" and created.expires_at > created.created_at
    decided = service.submit("acme", created.id, night_card, video=night_blink)
    assert decided.accepted, decided.details
    assert decided.reasons == []
    details = decided.details
    assert details["match"]["match"] and details["match"]["far"] == 1e-6
    assert details["match"]["similarity"] >= details["match"]["threshold"] > 0.5
    assert details["liveness"]["real"]
    assert details["challenge_result"]["done"][0]["action"] == "blink"
    assert details["models"]["pack"] == "scrfd-mbf" and details["models"]["recognizer_id"]
    assert details["thresholds"]["far"] == 1e-6
    # Decided once: a second submission answers the first decision and decides nothing.
    again = service.submit("acme", created.id, night_card, video=night_blink)
    assert again == decided
    assert service.get("acme", created.id) == decided
    # The same selfie on a new session is a replay; another tenant's history is its own.
    replay = service.submit("acme", service.create("acme", ["blink"]).id, night_card, video=night_blink)
    assert replay.reasons == ["replay"] and replay.details["replay"]["same_bytes_as"] == created.id
    with pytest.raises(NotFound):
        service.get("globex", created.id)
    # Re-encoded smaller (other bytes, the same pictures): refused by its frames.
    smaller = encode_mp4([cv2.resize(f, None, fx=0.75, fy=0.75) for f in clip(night, 345, 395)])
    replay = service.submit("acme", service.create("acme", ["blink"]).id, night_card, video=smaller)
    assert replay.reasons == ["replay"] and replay.details["replay"]["frames_seen_before"] > 0.9
    # Retention 0 (the default): no face image was written.
    assert _count(service, KycReference) == 0
    assert _count(service, KycFingerprint) == 3


def test_a_photo_moved_before_the_camera_is_refused(service: KycService, shared: Path, miranda_card: bytes) -> None:
    """A still of the card's own person, moved and zoomed: the face matches and passive liveness
    is fooled by the digital still, but nobody blinks or turns."""
    attack = encode_mp4(moved_still(still(shared / MIRANDA), seconds=2.0, fps=15), 15)
    decided = service.verify("acme", miranda_card, ["blink", "turn_left"], video=attack)
    assert not decided.accepted
    assert "challenge_failed" in decided.reasons
    assert decided.details["challenge_result"]["seen"] == []


def test_expired_and_unknown_sessions(tmp_path: Path, fast_analyzer, night_card: bytes, night_blink: bytes) -> None:
    from faceatlas.db import create_database_engine

    service = KycService(create_database_engine(f"sqlite:///{tmp_path / 'k.db'}"), fast_analyzer,
                         KycConfig(session_s=1e-6))
    created = service.create("acme")
    assert len(created.challenge) == 2 and len(set(created.challenge)) == 2
    with pytest.raises(SessionExpired) as raised:
        service.submit("acme", created.id, night_card, video=night_blink)
    assert raised.value.code == "session_expired" and raised.value.status == 410
    assert service.get("acme", created.id).status == "expired"
    with pytest.raises(NotFound):
        service.submit("acme", "0" * 32, night_card, video=night_blink)


def test_a_card_without_a_face(service: KycService, shared: Path, night: Path) -> None:
    blank = render_card(shared / MIRANDA, "No_Photo", 5, with_photo=False)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip(night, 345, 375, max_side=480)[::3]]
    decided = service.verify("acme", blank, ["blink"], frames=frames, fps=10)
    assert decided.reasons[0] == "document_no_face"
    assert set(decided.reasons) <= set(REASONS)
    assert decided.details["selfie"]["frames"] == 10 and decided.details["document"]["search"] == "none"


@pytest.mark.slow
def test_hamilton_turns_are_accepted(service: KycService, shared: Path, miranda_card: bytes) -> None:
    """Frames 141-212 of the Hamilton clip: he faces the camera, turns to his left, then to his right."""
    video = encode_mp4(clip(shared / HAMILTON, 141, 213), 29.97)
    decided = service.verify("acme", miranda_card, ["turn_left", "turn_right"], video=video)
    assert decided.accepted, decided.reasons
    wrong_order = service.verify("other", miranda_card, ["turn_right", "turn_left"], video=video)
    assert wrong_order.reasons == ["challenge_failed"]


@pytest.mark.slow
def test_people_behind_the_driver_are_refused(service: KycService, night: Path, night_card: bytes) -> None:
    video = encode_mp4(clip(night, 940, 1000, (0.0, 0.0, 0.5, 1.0)))
    decided = service.verify("acme", night_card, ["blink", "turn_left"], video=video)
    assert "multiple_faces" in decided.reasons
    assert decided.details["challenge_result"]["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["image_F1.jpg", "image_F2.jpg"])
def test_recaptured_photos_are_refused(service: KycService, shared: Path, sample: str) -> None:
    """Silent-Face's spoof samples (a printed or on-screen face recaptured), moved as a video."""
    image = still(shared / "data" / "antispoof_samples" / sample)
    card = render_card(image, "Spoof_Sample", 4, photo_crop=(0.25, 0.05, 0.75, 0.95))
    decided = service.verify("acme", card, ["blink"], video=encode_mp4(moved_still(image, seconds=2.0, fps=15), 15))
    assert not decided.accepted
    assert {"liveness_failed", "low_quality"} & set(decided.reasons)


@pytest.mark.slow
def test_retention_keeps_reference_images_until_they_expire(tmp_path: Path, fast_analyzer, night_card: bytes,
                                                            night_blink: bytes) -> None:
    from faceatlas.db import create_database_engine

    service = KycService(create_database_engine(f"sqlite:///{tmp_path / 'k.db'}"), fast_analyzer,
                         KycConfig(retention_days=30))
    created = service.create("acme", ["blink"])
    service.submit("acme", created.id, night_card, video=night_blink)
    kept = service.references("acme", created.id)
    assert set(kept) == {"document", "selfie"} and all(data[:2] == b"\xff\xd8" for data in kept.values())


def test_a_shorter_retention_shortens_the_images_kept(service: KycService) -> None:
    """``apply_retention``: a tenant's images expire at most N days after their decision once its
    retention becomes N, undecided sessions keep at most N, other tenants are untouched, and a
    longer retention lengthens nothing."""
    from datetime import timedelta

    from faceatlas.apps.kyc.db import KycSession
    from faceatlas.db import utcnow

    decided = utcnow() - timedelta(days=5)
    with service._sessions.begin() as session:  # decided sessions with images kept 30 days (rows written here)
        for tenant, sid in (("acme", "a" * 32), ("acme", "b" * 32), ("globex", "c" * 32)):
            session.add(KycSession(id=sid, tenant=tenant, challenge=["blink"], status="rejected", created_at=decided,
                                   expires_at=decided, decided_at=decided, reasons=[], details={}, retention_days=30))
            session.flush()
            session.add(KycReference(session_id=sid, kind="selfie", image=b"\xff\xd8",
                                     expires_at=decided + timedelta(days=30)))
    pending = service.create("acme", ["blink"], retention_days=30)
    assert service.apply_retention("acme", 10) == 0  # 5 days old: within 10
    assert service.apply_retention("acme", 40) == 0  # longer: the images still end at day 30 ...
    assert set(service.references("acme", "a" * 32)) == {"selfie"}
    assert service.purge(now=decided + timedelta(days=10, seconds=1)) == 2  # ... and at day 10 after the first
    assert service.references("acme", "b" * 32) == {}
    assert set(service.references("globex", "c" * 32)) == {"selfie"}  # another tenant's retention is its own
    assert service.apply_retention("acme", 3) == 0
    with service._sessions() as session:
        assert session.get(KycSession, pending.id).retention_days == 3  # undecided: at most the tenant's
    assert service.apply_retention("globex", 4) == 1  # 5 days old, past 4 days: deleted now
    assert service.references("globex", "c" * 32) == {}
