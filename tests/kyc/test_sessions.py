"""Verification sessions end to end on real footage and real cards: a genuine selfie accepted
with its audit, then the same selfie refused as a replay; another person's selfie and a selfie
without a face refused; attacks from stills refused; sessions decided once, expiring (also when
left half-decided), keeping no face image unless retention says so and no fingerprint past the
replay window."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select, update

from faceatlas.apps.kyc import ACTIONS, REASONS, KycConfig, KycService, decode_video, parse_challenge, random_challenge
from faceatlas.apps.kyc.checks import Outcome
from faceatlas.apps.kyc.db import KycFingerprint, KycReference, KycSession
from faceatlas.db import create_database_engine, utcnow
from faceatlas.errors import Conflict, InvalidArgument, InvalidImage, NotFound, SessionExpired
from tests.clips import sideways

from .conftest import CARS, HAMILTON, MIRANDA, still
from .media import clip, encode_mp4, moved_still, render_card


def _count(service: KycService, table: type) -> int:
    with service._sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _jpegs(frames: Sequence[np.ndarray]) -> list[bytes]:
    return [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]


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


def test_an_uncalibrated_far_is_refused_even_for_a_replayed_selfie(service: KycService, tmp_path: Path,
                                                                     night_card: bytes, night_blink: bytes) -> None:
    """A replay used to be decided (and audited with the bad FAR) before the FAR was looked at:
    `faceatlas kyc verify --far 2` on a selfie seen before answered REFUSED (replay), exit 1."""
    service.submit("acme", service.create("acme", ["blink"]).id, night_card, video=night_blink)
    odd = KycService(create_database_engine(f"sqlite:///{tmp_path / 'kyc.db'}"), service.analyzer, KycConfig(far=2.0))
    pending = odd.create("acme", ["blink"])
    with pytest.raises(InvalidArgument, match="calibrated rates"):
        odd.submit("acme", pending.id, night_card, video=night_blink)
    assert odd.get("acme", pending.id).status == "pending"


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_phone_video_stored_sideways_is_read_upright_and_accepted(service: KycService, night: Path, tmp_path: Path,
                                                                   night_card: bytes, rotation: int) -> None:
    """Phones store a portrait video sideways with a display rotation: read as stored, the genuine
    blink was refused as ``low_quality`` (no good frame: the face lay on its side). Read as a player
    shows it, it is decided as the upright clip is, on the same pictures."""
    frames = clip(night, 345, 395)
    video = sideways(frames, tmp_path / "phone.mp4", rotation=rotation).read_bytes()
    upright = decode_video(encode_mp4(frames), KycConfig())
    selfie = decode_video(video, KycConfig())
    assert selfie.frames[0].shape == upright.frames[0].shape == frames[0].shape
    assert np.abs(selfie.frames[0].astype(int) - upright.frames[0]).mean() < 3
    decided = service.verify("acme", night_card, ["blink"], video=video)
    assert decided.accepted, decided.details
    assert decided.details["challenge_result"]["done"][0]["action"] == "blink"


def test_a_photo_moved_before_the_camera_is_refused(service: KycService, shared: Path, miranda_card: bytes) -> None:
    """A still of the card's own person, moved and zoomed: the face matches and passive liveness
    is fooled by the digital still, but nobody blinks or turns."""
    attack = encode_mp4(moved_still(still(shared / MIRANDA), seconds=2.0, fps=15), 15)
    decided = service.verify("acme", miranda_card, ["blink", "turn_left"], video=attack)
    assert not decided.accepted
    assert "challenge_failed" in decided.reasons
    assert decided.details["challenge_result"]["seen"] == []
    assert "selfie_is_document" not in decided.reasons  # another picture of the person, not the card's


def test_the_document_itself_as_the_selfie_is_refused(service: KycService, miranda_card: bytes) -> None:
    """The card's own image given as the selfie matched it at 0.9997 and passed passive liveness: it
    was refused only because no action was done. It is refused as the document, whatever else."""
    decided = service.verify("acme", miranda_card, ["blink"], frames=[miranda_card] * 12, fps=10)
    assert not decided.accepted and decided.reasons[0] == "selfie_is_document", decided.reasons


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


def test_another_persons_selfie_is_refused_as_a_mismatch(service: KycService, night: Path, lfw_card: bytes) -> None:
    """An impostor: the night driver's live selfie (the blink, every frame as an image at 25 fps)
    against the ID card of an LFW person. He blinks, he is alone and live: only the match refuses."""
    created = service.create("acme", ["blink"])
    decided = service.submit("acme", created.id, lfw_card, frames=_jpegs(clip(night, 345, 395)), fps=25)
    assert decided.status == "rejected" and decided.accepted is False
    assert decided.reasons == ["face_mismatch"], decided.details
    assert decided.details["document"]["found"] and decided.details["challenge_result"]["passed"]
    match = decided.details["match"]
    assert match["match"] is False and match["far"] == 1e-6
    assert match["similarity"] < match["threshold"]
    assert service.get("acme", created.id) == decided


@pytest.mark.parametrize("scene", ["street", "blank"])
def test_a_selfie_without_a_face_is_refused(service: KycService, shared: Path, night_card: bytes, scene: str) -> None:
    """Frames with nobody in them: a street seen from above (real footage), or a grey screen."""
    frames = (clip(shared / CARS, 0, 30) if scene == "street"
              else [np.full((480, 640, 3), 120 + i % 3, np.uint8) for i in range(20)])
    decided = service.verify("acme", night_card, ["blink"], frames=_jpegs(frames), fps=10)
    assert not decided.accepted
    assert "selfie_no_face" in REASONS
    assert decided.reasons == ["selfie_no_face", "challenge_failed"], decided.details
    assert decided.details["selfie"]["face_frames"] == 0 and decided.details["document"]["found"]
    assert "match" not in decided.details and "liveness" not in decided.details


def test_a_session_left_processing_by_a_killed_process_expires(service: KycService, night_card: bytes,
                                                               night_blink: bytes) -> None:
    """A process killed while deciding leaves its session ``processing``: once the session is
    past its expiry by the processing timeout it reads as expired (get, list), and submitting
    it again is ``session_expired``; within the timeout a decision may still be under way."""
    listed, got, in_flight, fresh = (service.create(t, ["blink"]) for t in ("acme", "globex", "acme", "acme"))
    long_ago = utcnow() - timedelta(hours=1)  # the session expired an hour ago (the timeout is minutes)
    with service._sessions.begin() as session:  # what a crash leaves: claimed, never decided
        for sid, expires_at in ((listed.id, long_ago), (got.id, long_ago),
                                (in_flight.id, utcnow() - timedelta(seconds=1)), (fresh.id, fresh.expires_at)):
            session.execute(update(KycSession).where(KycSession.id == sid)
                            .values(status="processing", expires_at=expires_at))
    statuses = {s.id: s.status for s in service.list("acme").items}
    assert statuses == {listed.id: "expired", in_flight.id: "processing", fresh.id: "processing"}
    assert {s.id for s in service.list("acme", status="processing").items} == {in_flight.id, fresh.id}
    expired = service.get("globex", got.id)
    assert expired.status == "expired" and expired.accepted is None
    assert expired.details["expired_while"] == "processing"
    assert service.get("acme", listed.id).details["expired_while"] == "processing"
    for sid, tenant in ((listed.id, "acme"), (got.id, "globex"), (in_flight.id, "acme")):
        with pytest.raises(SessionExpired):
            service.submit(tenant, sid, night_card, video=night_blink)
    with pytest.raises(Conflict) as raised:  # not expired: another request may be deciding it
        service.submit("acme", fresh.id, night_card, video=night_blink)
    assert raised.value.code == "conflict"
    # A decision that comes after its session was given up writes nothing over the expiry.
    selfie = decode_video(night_blink, service.config)
    with pytest.raises(SessionExpired):
        service._decide("acme", listed.id, selfie, Outcome([], {}), 0)
    assert service.get("acme", listed.id).status == "expired"
    assert _count(service, KycFingerprint) == 0


def _age_fingerprints(service: KycService, age: timedelta) -> None:
    with service._sessions.begin() as session:
        session.execute(update(KycFingerprint).values(at=utcnow() - age))


def test_fingerprints_are_kept_for_the_replay_window_only(service: KycService, night_card: bytes,
                                                          night_blink: bytes) -> None:
    """The frame hashes of a selfie are biometric-derived: deleted once older than the replay
    window (``KycConfig.replay_days``, 30 days) by ``purge``; within it a replay is refused."""
    window = timedelta(days=30)  # the window docs/kyc.md states
    first = service.verify("acme", night_card, ["blink"], video=night_blink)
    assert first.accepted, first.reasons
    _age_fingerprints(service, window + timedelta(minutes=1))
    service.purge()
    assert _count(service, KycFingerprint) == 0  # older than the window: gone
    second = service.verify("acme", night_card, ["blink"], video=night_blink)
    assert second.accepted, second.reasons  # nothing is remembered past the window
    _age_fingerprints(service, window - timedelta(days=1))
    assert service.apply_retention("acme", 0) == 0  # the images' retention does not shorten the window
    service.purge()
    assert _count(service, KycFingerprint) == 1
    replay = service.verify("acme", night_card, ["blink"], video=night_blink)
    assert replay.reasons == ["replay"] and replay.details["replay"]["same_bytes_as"] == second.id
    assert service.config.replay_days == window.days


def test_the_random_challenge_never_asks_to_look_up(service: KycService) -> None:
    """Look up was never seen on real footage (docs/kyc.md): the server does not draw it; a
    challenge given explicitly may still ask it."""
    rng = random.Random(7)
    drawn = [random_challenge(2, rng) for _ in range(400)]
    assert all(len(set(c)) == 2 and "look_up" not in c for c in drawn)
    assert {a for c in drawn for a in c} == set(ACTIONS) - {"look_up"}
    assert sorted(random_challenge(5, rng)) == sorted(set(ACTIONS) - {"look_up"})
    assert not any("look_up" in service.create("acme").challenge for _ in range(40))
    assert service.create("acme", parse_challenge("blink,up")).challenge == ["blink", "look_up"]


@pytest.mark.parametrize("text", ["blink,,left", "blink,left,", " ,blink", ["blink", " "]])
def test_an_empty_challenge_action_is_refused_not_dropped(text: str | list[str]) -> None:
    """``-c blink,$NEXT,left`` with NEXT unset asked two actions without a word; now it is refused."""
    with pytest.raises(InvalidArgument, match="is empty"):
        parse_challenge(text)
    assert parse_challenge(" Blink , left ") == ["blink", "turn_left"]


def test_the_session_list_pages_through_every_session_once(service: KycService) -> None:
    """The list stopped at its limit (the console at 200) with no way to the older sessions; pages
    now walk all of them, newest first, sessions created in the same microsecond included."""
    made = [service.create("acme", ["blink"]).id for _ in range(7)]
    service.create("globex", ["blink"])
    same = utcnow() - timedelta(minutes=1)
    with service._sessions.begin() as session:  # three created at one instant: the id orders them
        session.execute(update(KycSession).where(KycSession.id.in_(made[2:5])).values(created_at=same))
    seen: list[str] = []
    page = service.list("acme", limit=2)
    while True:
        assert len(page.items) <= 2
        seen += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        page = service.list("acme", limit=2, after=page.next_cursor)
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert seen == [s.id for s in service.list("acme", limit=100).items]
    for bad in ("2026", "x" * 40, "20261205T231000000000." + "g" * 32):
        with pytest.raises(InvalidArgument, match="next_cursor"):
            service.list("acme", after=bad)
    with pytest.raises(InvalidArgument, match="status is one of"):  # no session has it: it listed every one
        service.list("acme", status="bogus")


def test_one_selfie_submitted_to_two_sessions_at_once_is_decided_once(db_url: str, fast_analyzer, shared: Path,
                                                                        miranda_card: bytes) -> None:
    """Two sessions of one tenant submitted the same selfie at the same moment (two workers): both
    looked it up before either was decided, and both were decided without ``replay`` (a third,
    later, was refused). Its fingerprint is now recorded when it is looked up, under the tenant's
    lock: one of the two decides, the other is the replay (on SQLite and PostgreSQL)."""
    engine = create_database_engine(db_url)
    try:
        service = KycService(engine, fast_analyzer, KycConfig())
        frames = _jpegs(moved_still(still(shared / MIRANDA), seconds=1.0, fps=10, size=(480, 360), seed=3))
        sessions = [service.create("acme", ["blink"]).id for _ in range(2)]
        start = threading.Barrier(2)

        def submit(session_id: str):  # type: ignore[no-untyped-def]
            start.wait()
            return service.submit("acme", session_id, miranda_card, frames=frames, fps=10)

        with ThreadPoolExecutor(2) as pool:
            decided = list(pool.map(submit, sessions))
        replays = [d for d in decided if d.reasons == ["replay"]]
        assert len(replays) == 1, [d.reasons for d in decided]
        first = next(d for d in decided if d.reasons != ["replay"])
        assert "challenge_failed" in first.reasons  # decided on its checks: a still does not blink
        assert replays[0].details["replay"]["same_bytes_as"] == first.id
        later = service.submit("acme", service.create("acme", ["blink"]).id, miranda_card, frames=frames, fps=10)
        assert later.reasons == ["replay"] and later.details["replay"]["same_bytes_as"] == first.id
        assert _count(service, KycFingerprint) == 3
    finally:
        engine.dispose()


def test_a_submission_refused_before_its_decision_is_no_replay_of_itself(service: KycService, shared: Path,
                                                                          miranda_card: bytes) -> None:
    """The selfie's fingerprint is recorded before the checks: a submission that fails on the way (a
    document cut short: its header reads, its pixels do not) leaves the session pending with no
    fingerprint, and the same selfie submitted again to it is decided on its checks, not as a
    replay of itself."""
    frames = _jpegs(moved_still(still(shared / MIRANDA), seconds=0.6, fps=10, size=(320, 240), seed=4))
    pending = service.create("acme", ["blink"])
    with pytest.raises(InvalidImage):
        service.submit("acme", pending.id, miranda_card[: len(miranda_card) // 3], frames=frames, fps=10)
    assert service.get("acme", pending.id).status == "pending" and _count(service, KycFingerprint) == 0
    decided = service.submit("acme", pending.id, miranda_card, frames=frames, fps=10)
    assert "replay" not in decided.reasons and "challenge_failed" in decided.reasons, decided.reasons


def test_selfies_without_a_picture_are_not_replays_of_each_other(service: KycService, night_card: bytes,
                                                                  shared: Path, miranda_card: bytes) -> None:
    """Every flat frame had the difference hash 0: a customer whose camera showed nothing (a grey
    JPEG, a black one, a flat PNG) was refused as a ``replay`` of another customer's empty camera,
    not as ``selfie_no_face``. Flat frames are neither recorded nor compared, and black frames added
    to a replayed selfie do not hide it."""
    grey = _jpegs([np.full((480, 640, 3), 120 + i % 3, np.uint8) for i in range(20)])
    black = _jpegs([np.zeros((480, 640, 3), np.uint8)] * 20)
    flat_png = [cv2.imencode(".png", np.full((360, 480, 3), 60, np.uint8))[1].tobytes()] * 20
    for frames in (grey, flat_png, black, black):  # the same black bytes twice: still nothing to recognise
        decided = service.verify("acme", night_card, ["blink"], frames=frames, fps=10)
        assert decided.reasons == ["selfie_no_face", "challenge_failed"], decided.reasons
    assert _count(service, KycFingerprint) == 0
    moved = _jpegs(moved_still(still(shared / MIRANDA), seconds=1.0, fps=10, size=(480, 360), seed=6))
    first = service.verify("acme", miranda_card, ["blink"], frames=moved, fps=10)
    assert "replay" not in first.reasons
    padded = service.verify("acme", miranda_card, ["blink"], frames=black[:15] + moved + black[:15], fps=10)
    assert padded.reasons == ["replay"] and padded.details["replay"]["frames_seen_before"] == 1.0


def test_a_challenge_given_at_creation_is_one_that_can_be_done(service: KycService) -> None:
    """create("t1", ["wink"]), ["left"] and "blink" (a string: five one-letter actions) made
    sessions no one could pass (challenge_failed, whatever the selfie). A challenge given is read
    as the CLI reads one (aliases, a comma list); anything else is refused, no session made."""
    assert service.create("t1", ["left", "Smile"]).challenge == ["turn_left", "open_mouth"]
    assert service.create("t1", "blink").challenge == ["blink"]
    assert service.create("t1", "blink, up").challenge == ["blink", "look_up"]
    assert service.create("t1", ("turn_right",)).challenge == ["turn_right"]
    made = len(service.list("t1").items)
    for bad in (["wink"], ["blink", "wink"], "blink,wink", ["b", "l"], [1], [None], [" "], ","):
        with pytest.raises(InvalidArgument, match="challenge actions"):
            service.create("t1", bad)  # type: ignore[arg-type]
    assert len(service.list("t1").items) == made


def test_a_sessions_times_are_written_as_every_answers_time(service: KycService) -> None:
    """A session's times were written with a 'Z' (``...T18:52:40Z``) where every other answer of
    the API, and `faceatlas kyc`'s JSON, writes UTC with its offset (``+00:00``, UtcTime)."""
    from datetime import UTC, datetime

    info = service.create("acme")
    shown = info.to_dict()
    assert shown["created_at"].endswith("+00:00") and shown["expires_at"].endswith("+00:00"), shown
    assert datetime.fromisoformat(shown["created_at"]) == info.created_at.replace(tzinfo=UTC)
    assert shown["decided_at"] is None
