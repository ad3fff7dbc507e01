"""Remote identity verification (KYC): an ID document's face against a selfie video at a stated
FAR, passive liveness on the best frames, and an active challenge (blink, turns, open mouth; look
up only when asked explicitly) checked on Face Mesh in the order asked; sessions audited in the one database.

Needs the optional extra: ``pip install 'faceatlas[kyc]'`` (MediaPipe, through apps.drive).
"""

from faceatlas.apps.kyc.checks import Outcome, find_document_face, run_checks
from faceatlas.apps.kyc.config import ACTIONS, RANDOM_ACTIONS, REASON_WORDS, REASONS, Action, KycConfig, parse_challenge
from faceatlas.apps.kyc.db import migrate
from faceatlas.apps.kyc.selfie import Selfie, decode_frames, decode_video
from faceatlas.apps.kyc.sessions import (
    STATUSES,
    KycService,
    SessionInfo,
    erase_tenant,
    random_challenge,
)

__all__ = [
    "ACTIONS",
    "STATUSES",
    "RANDOM_ACTIONS",
    "REASON_WORDS",
    "REASONS",
    "Action",
    "KycConfig",
    "KycService",
    "Outcome",
    "Selfie",
    "SessionInfo",
    "decode_frames",
    "decode_video",
    "erase_tenant",
    "find_document_face",
    "migrate",
    "parse_challenge",
    "random_challenge",
    "run_checks",
]
