"""Thresholds and timings of remote identity verification, with where the defaults come from
(see docs/kyc.md). Angles in degrees, times in seconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from faceatlas.engine import REAL_THRESHOLD
from faceatlas.errors import InvalidArgument
from faceatlas.settings import MAX_KYC_SESSION_SECONDS

Action = Literal["blink", "turn_left", "turn_right", "look_up", "open_mouth"]
ACTIONS: tuple[Action, ...] = ("blink", "turn_left", "turn_right", "look_up", "open_mouth")
# What the server draws a random challenge from: look up is left out (never seen on real footage,
# so its detection rate and the BPCER of a challenge asking it are unmeasured; docs/kyc.md). A
# challenge given explicitly (the CLI's --challenge, KycService.create) may still ask it.
RANDOM_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a != "look_up")
# What a client or the CLI may write for an action ("left" for turn_left, "smile" for open_mouth).
ALIASES: dict[str, Action] = {
    "left": "turn_left", "right": "turn_right", "up": "look_up", "mouth": "open_mouth", "smile": "open_mouth",
    **{a: a for a in ACTIONS},
}

# The stable codes of a refused verification (``Decision.reasons``), in the order they are checked.
REASONS = (
    "replay",
    "selfie_is_document",
    "document_no_face",
    "selfie_no_face",
    "multiple_faces",
    "low_quality",
    "challenge_failed",
    "liveness_failed",
    "face_mismatch",
)
# Each reason in words, as the doors say it (the console's pages, `faceatlas kyc` when a match is missing).
REASON_WORDS = {
    "replay": "the same selfie was submitted before",
    "selfie_is_document": "the selfie is the ID document's own picture",
    "document_no_face": "no face found on the ID document",
    "selfie_no_face": "no face on the selfie",
    "multiple_faces": "more than one person on camera",
    "low_quality": "face too small, blurred or turned",
    "challenge_failed": "the actions asked were not done in order and in time",
    "liveness_failed": "the selfie looks like a photo or a screen",
    "face_mismatch": "the selfie is not the person on the document",
}


@dataclass(frozen=True)
class KycConfig:
    """Every tunable of a verification session."""

    # The 1:1 decision between the document's face and the selfie's, at this false-accept rate of
    # the pack's calibration (a bank's usual 1e-6; the calibration must hold a threshold for it).
    far: float = 1e-6
    # Sessions: how long a created session may be submitted (more than 0, at most 30 days:
    # ``MAX_KYC_SESSION_SECONDS``), and how many actions it asks for.
    session_s: float = 600.0
    challenge_length: int = 2
    # A session still ``processing`` (claimed by a submission, never decided: its process was
    # killed) this long past its expiry reads as expired. A decision takes seconds (p90 11 s under
    # load), and the claim is taken before the expiry, so one under way has had at least this long.
    processing_s: float = 300.0
    # The selfie: at most this many seconds are read, sampled at about this rate, and the actions
    # must all be done within step_s of each other (and the first within step_s of the start).
    max_video_s: float = 10.0  # 300 frames of 640 x 360 at most: about 200 MB while deciding
    sample_fps: float = 30.0  # every frame of a 25-30 fps phone video: a blink lasts 2-4 frames
    step_s: float = 5.0
    # Frames given as images (no container to time them) are this far apart.
    frames_fps: float = 10.0
    # One submission's images (the document and the frames used) may decode to at most this many
    # pixels, counted from their headers before any is decoded (a JPEG at the scale its codec
    # reduces it to, a PNG at full size): 300 frames of 640 x 480 (10 s at 30 fps) and a 16 MP
    # document fit; small files of huge images (a flat 40 MP PNG is 130 kB) are refused, not
    # decoded. A PNG decodes at about 50 ms per MP on a 2-core machine (docs/kyc.md).
    max_submission_pixels: int = 120_000_000
    # Actions, against the person's own neutral pose and eyes (the median of the selfie's frames).
    # Left and right are the person's own: with an unmirrored camera their left is the image's right.
    mirrored: bool = False
    turn_yaw: float = 25.0
    look_up_pitch: float = 12.0
    blink_closed: float = 0.55  # eye openness (EAR over the open-eye EAR) below this is a closed eye ...
    blink_max_s: float = 0.8  # ... for at most this long (longer is eyes shut, not a blink)
    mouth_open_mar: float = 0.3  # inner-lip opening over mouth width
    # One person: another face counts when its box is at least this share of the person's box.
    other_face_share: float = 0.2
    # Quality and pose bounds of the frames used for matching and liveness.
    min_quality: float = 0.3
    max_match_yaw: float = 25.0
    best_frames: int = 3
    # Passive liveness: the mean real-class probability of the best frames (None: the engine's rule).
    liveness_threshold: float | None = None

    @property
    def liveness_cut(self) -> float:
        """The liveness threshold a session is decided at: ``liveness_threshold``, else the engine's
        one rule (:data:`~faceatlas.engine.REAL_THRESHOLD`); what a decision's details state."""
        return REAL_THRESHOLD if self.liveness_threshold is None else self.liveness_threshold
    # The document: faces smaller than this (pixels, box height) are searched again on an upscaled copy.
    document_min_face: int = 80
    document_upscale: float = 2.0
    # Replay: a submission whose frames match an earlier one's this closely (share of sampled frames
    # whose 256-bit difference hash is within replay_bits of a stored one) is refused.
    replay_bits: int = 24
    replay_share: float = 0.5
    # The fingerprints of submitted selfies (sha256, frame hashes: derived from biometric images)
    # are kept this many days, whatever the tenant's image retention: a replay is recognised
    # within this window (and among the tenant's last 500 selfies); older ones are purged.
    replay_days: float = 30.0
    # Reference frames (the document face and the best selfie frame) are kept this many days; 0: never written.
    retention_days: int = 0

    def __post_init__(self) -> None:
        # 1e12 seconds made every session's expiry a date past year 9999: a 500 at each creation
        if not (isinstance(self.session_s, int | float) and math.isfinite(self.session_s)
                and 0 < self.session_s <= MAX_KYC_SESSION_SECONDS):
            raise InvalidArgument(f"session_s is more than 0 and at most {MAX_KYC_SESSION_SECONDS} seconds "
                                  f"(30 days), not {self.session_s!r}")


def parse_challenge(text: str | Sequence[str]) -> list[Action]:
    """``"blink,left"`` (or a list of names) as actions, the aliases of :data:`ALIASES` mapped; unknown
    names, an empty one between commas (``"blink,,left"``: an unset variable?) or a list holding something
    else than names are :class:`InvalidArgument`."""
    if not isinstance(text, str) and any(not isinstance(t, str) for t in text):
        raise InvalidArgument(f"challenge actions are names among {', '.join(ACTIONS)}; got {list(text)!r:.80}")
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    if any(not t for t in items) and any(items):  # it was dropped: the session asked one action fewer
        raise InvalidArgument(f"challenge action {items.index('') + 1} of {len(items)} is empty in "
                              f"{','.join(items)!r:.80}: give names among {', '.join(ACTIONS)}")
    items = [t for t in items if t]
    unknown = [t for t in items if t not in ALIASES]
    if unknown or not items:
        raise InvalidArgument(f"challenge actions must be among {', '.join(ACTIONS)} (or left, right, up, smile); "
                              f"got {', '.join(unknown) or 'none'}")
    return [ALIASES[t] for t in items]
