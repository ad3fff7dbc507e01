"""Every refusal reason is traceable to a number in the session's details. The Hamilton clip's
first frames (the singer, people behind him) were refused as ``multiple_faces`` with
``details.selfie.multi_face_frames`` 0: Face Mesh saw one face, the engine's pass over the analysed
frames saw the others, and its count went nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceatlas.apps.kyc import REASONS, KycService
from faceatlas.apps.kyc.checks import MIN_FACE_SHARE, MULTI_FACE_SHARE

from .conftest import HAMILTON
from .media import clip
from .test_sessions import _jpegs


def traced(reason: str, details: dict[str, Any]) -> bool:
    """Whether ``details`` hold the numbers that decide ``reason`` (as ``checks.run_checks`` does)."""
    selfie, document = details.get("selfie", {}), details.get("document", {})
    return {
        "replay": lambda: "same_bytes_as" in details.get("replay", {})
        or "frames_seen_before" in details.get("replay", {}),
        "selfie_is_document": lambda: document["selfie_frames_alike"] >= 0.5,
        "document_no_face": lambda: document["found"] is False,
        "selfie_no_face": lambda: selfie["face_frames"] < MIN_FACE_SHARE * max(1, selfie["frames"])
        or selfie["engine_faces"] == 0,
        "multiple_faces": lambda: selfie["multi_face_frames"] > MULTI_FACE_SHARE * max(1, selfie["face_frames"])
        or selfie["engine_multi_face_frames"] > MULTI_FACE_SHARE * selfie["analysed_frames"],
        "low_quality": lambda: selfie["engine_faces"] > 0 and selfie["good_frames"] == 0,
        "challenge_failed": lambda: details["challenge_result"]["passed"] is False,
        "liveness_failed": lambda: details["liveness"]["real"] is False,
        "face_mismatch": lambda: details["match"]["match"] is False,
    }[reason]()


def test_people_the_engine_sees_behind_the_person_are_counted_in_details(
        service: KycService, shared: Path, miranda_card: bytes) -> None:
    frames = clip(shared / HAMILTON, 200, 240)[::2]  # the crowd of the clip's end
    decided = service.verify("acme", miranda_card, ["blink"], frames=_jpegs(frames), fps=15)
    selfie = decided.details["selfie"]
    assert "multiple_faces" in decided.reasons, decided.details
    assert selfie["multi_face_frames"] == 0, selfie  # Face Mesh: one face; the engine: more
    assert selfie["engine_multi_face_frames"] > MULTI_FACE_SHARE * selfie["analysed_frames"] > 0, selfie
    assert set(decided.reasons) <= set(REASONS)
    assert all(traced(reason, decided.details) for reason in decided.reasons), (decided.reasons, decided.details)
    assert decided.details["document"]["selfie_frames_alike"] < 0.5  # a film of him, not the card
