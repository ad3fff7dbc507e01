"""Verification sessions: created with a random challenge and an expiry, submitted once, decided
once, audited; replayed selfies refused per tenant (fingerprints kept for the replay window only);
reference images kept only under retention; a session left half-decided by a killed process expires."""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import cv2
import numpy as np
from sqlalchemy import ColumnElement, and_, delete, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.drive import FaceMeshTracker
from faceatlas.apps.kyc.checks import Outcome, check_pixels, run_checks
from faceatlas.apps.kyc.config import RANDOM_ACTIONS, Action, KycConfig, parse_challenge
from faceatlas.apps.kyc.db import KycFingerprint, KycReference, KycSession, migrate
from faceatlas.apps.kyc.selfie import Selfie, decode_frames, decode_video, informative, replayed_share
from faceatlas.db import rowcount, sqlite_write_lock, utc_text, utcnow
from faceatlas.engine import FaceAnalyzer, ImageInput
from faceatlas.errors import Conflict, InvalidArgument, NotFound, SessionExpired
from faceatlas.gallery import Page, check_limit, check_tenant

REPLAY_WINDOW = 500  # a submission is compared with the tenant's last this many selfies' frames
REPLAY_LOCK = 0x4B594352  # "KYCR": the advisory locks (one per tenant) of the replay check on PostgreSQL
DECIDED = ("accepted", "rejected")
UNDECIDED = ("pending", "processing")
STATUSES = (*UNDECIDED, *DECIDED, "expired")  # every status a session has
_CURSOR_TIME = "%Y%m%dT%H%M%S%f"


@dataclass(frozen=True)
class SessionInfo:
    """A session as the doors show it."""

    id: str
    status: str
    challenge: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # answered by :meth:`KycService.submit` with a decision it did not make (not part of the session)
    decided_before: bool = field(default=False, compare=False)

    @property
    def decided(self) -> bool:
        """Whether the session has its decision (one of :data:`DECIDED`)."""
        return self.status in DECIDED

    @property
    def accepted(self) -> bool | None:
        return self.status == "accepted" if self.decided else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "accepted": self.accepted, "challenge": self.challenge,
            # as every answer writes a time (UTC with its offset, +00:00), not the 'Z' these alone had
            "created_at": utc_text(self.created_at), "expires_at": utc_text(self.expires_at),
            "decided_at": None if self.decided_at is None else utc_text(self.decided_at),
            "reasons": self.reasons, "details": self.details,
        }


def _info(row: KycSession) -> SessionInfo:
    return SessionInfo(row.id, row.status, list(row.challenge), row.created_at, row.expires_at, row.decided_at,
                       list(row.reasons or []), dict(row.details or {}))


def random_challenge(length: int, rng: random.Random | None = None,
                     pool: Sequence[Action] = RANDOM_ACTIONS) -> list[Action]:
    """``length`` different actions of ``pool`` in a random order (at most one turn each way). The
    default pool leaves out ``look_up``, whose detection was never measured (docs/kyc.md)."""
    chooser = rng or secrets.SystemRandom()
    return chooser.sample(list(pool), k=max(1, min(length, len(pool))))


class KycService:
    """Verification sessions on the one database, decided with ``analyzer`` (its calibration
    gives the threshold at ``config.far``). Open one per process and reuse it."""

    def __init__(self, db: Engine, analyzer: FaceAnalyzer, config: KycConfig | None = None, *,
                 migrated: bool = False) -> None:
        if not migrated:
            migrate(db)
        self.config = config or KycConfig()
        self.analyzer = analyzer
        self._sessions = sessionmaker(db, expire_on_commit=False)

    # -- sessions ---------------------------------------------------------------------------
    def create(self, tenant: str, challenge: str | Sequence[str] | None = None, *,
               retention_days: int | None = None) -> SessionInfo:
        """A new session with a random challenge (or the one given: actions of :data:`ACTIONS` or
        their aliases, ``"blink,left"`` or a list, read by :func:`parse_challenge`; anything else is
        :class:`InvalidArgument`, not a session no one can pass) that expires after ``session_s``;
        ``tenant``: a tenant space (:func:`faceatlas.gallery.check_tenant`)."""
        check_tenant(tenant)
        retention = self.config.retention_days if retention_days is None else retention_days
        if retention < 0:
            raise InvalidArgument("retention_days must be 0 (keep no images) or more")
        actions = parse_challenge(challenge) if challenge else random_challenge(self.config.challenge_length)
        now = utcnow()
        row = KycSession(id=secrets.token_hex(16), tenant=tenant, challenge=list(actions),
                         status="pending", created_at=now,
                         expires_at=now + timedelta(seconds=self.config.session_s),
                         reasons=[], details={}, retention_days=retention)
        with self._sessions.begin() as session:
            session.add(row)
        return _info(row)

    def get(self, tenant: str, session_id: str) -> SessionInfo:
        """The session and its decision; ``expired`` once its time passed undecided (see :meth:`list`)."""
        with self._sessions.begin() as session:
            row = self._row(session, tenant, session_id)
            if row.status in UNDECIDED:
                self._expire(session, utcnow(), KycSession.id == session_id)
                session.refresh(row)
            return _info(row)

    def list(self, tenant: str, *, status: str | None = None, limit: int = 100,
             after: str | None = None) -> Page[SessionInfo]:
        """The tenant's sessions, newest first (``status``: only those, one of :data:`STATUSES`, else
        :class:`InvalidArgument`), ``limit`` a page: pass a page's ``next_cursor`` as ``after`` for
        the next (older) one. Pending ones past their expiry
        are ``expired``, and so are ``processing`` ones past it by ``processing_s`` (a decision that
        never finished: ``details["expired_while"]``)."""
        check_limit(limit)  # 1 to the gallery's PAGE_MAX
        if status is not None and status not in STATUSES:  # no session has it: every one was listed
            raise InvalidArgument(f"status is one of {', '.join(STATUSES)} (got {status[:40]!r})")
        now = utcnow()
        with self._sessions.begin() as session:
            self._expire(session, now, KycSession.tenant == tenant)
            query = select(KycSession).where(KycSession.tenant == tenant)
            if status is not None:
                query = query.where(KycSession.status == status)
            if after:
                created, session_id = _parse_cursor(after)
                query = query.where(or_(KycSession.created_at < created,
                                        and_(KycSession.created_at == created, KycSession.id > session_id)))
            rows = list(session.scalars(query.order_by(KycSession.created_at.desc(), KycSession.id)
                                        .limit(limit + 1)))
            last = rows[limit - 1] if len(rows) > limit else None
            return Page([_info(row) for row in rows[:limit]], None if last is None else _cursor(last))

    def submit(self, tenant: str, session_id: str, document: ImageInput, *, video: bytes | None = None,
               frames: Sequence[bytes] | None = None, fps: float | None = None,
               tracker: FaceMeshTracker | None = None) -> SessionInfo:
        """Decide the session on the document image and the selfie (a video or frames). A decided
        session answers its decision again and decides nothing; an expired one is :class:`SessionExpired`.
        Images that would decode to more than ``max_submission_pixels`` (or one above the engine's
        ``max_pixels``) are :class:`ImageTooLarge` before any is decoded; the session stays pending."""
        if (video is None) == (frames is None):
            raise InvalidArgument("give the selfie as a video or as frames (one of them)")
        self._check_far()
        with self._sessions.begin() as session:
            row = self._row(session, tenant, session_id)
            if row.status in DECIDED:  # before this call, or by another one while this waited for a worker
                return replace(_info(row), decided_before=True)
            if row.status == "expired" or row.expires_at <= utcnow():
                raise SessionExpired(f"session {session_id} expired at {utc_text(row.expires_at)}")
            claimed = session.execute(update(KycSession).values(status="processing").where(
                KycSession.id == session_id, KycSession.status == "pending"))
            if rowcount(claimed) != 1:
                raise Conflict(f"session {session_id} is being decided by another request")
            challenge = list(row.challenge)
            retention = row.retention_days
        started = utcnow()
        try:
            check_pixels(self.analyzer, document, self.config, frames, fps)  # before decoding anything
            selfie = (decode_video(video, self.config) if video is not None
                      else decode_frames(frames or [], self.config, fps, max_pixels=self.analyzer.max_pixels))
            outcome = self._replayed(tenant, session_id, selfie) or run_checks(
                self.analyzer, document, selfie, challenge, self.config, tracker)  # type: ignore[arg-type]
        except BaseException:
            with self._sessions.begin() as session:  # pending again: its selfie is no longer one submitted
                session.execute(delete(KycFingerprint).where(KycFingerprint.session_id == session_id))
                session.execute(update(KycSession).where(KycSession.id == session_id,
                                                         KycSession.status == "processing").values(status="pending"))
            raise
        outcome.details["seconds"] = round((utcnow() - started).total_seconds(), 3)
        return self._decide(tenant, session_id, selfie, outcome, retention)

    def verify(self, tenant: str, document: ImageInput, challenge: Sequence[Action], *, video: bytes | None = None,
               frames: Sequence[bytes] | None = None, fps: float | None = None) -> SessionInfo:
        """One session created with ``challenge`` and decided at once (the CLI's one call). A
        submission refused (an image or video that does not decode, a FAR without a threshold)
        leaves no session behind: it was made for this call alone."""
        self._check_far()
        created = self.create(tenant, challenge)
        try:
            return self.submit(tenant, created.id, document, video=video, frames=frames, fps=fps)
        except BaseException:
            with self._sessions.begin() as session:
                session.execute(delete(KycSession).where(KycSession.id == created.id,
                                                         KycSession.status.in_(UNDECIDED)))
            raise

    def _check_far(self) -> None:
        """A FAR the pack's calibration has no threshold for: :class:`FarNotCalibrated`, before any work."""
        if self.analyzer.calibration is not None:
            self.analyzer.calibration.threshold(self.config.far)

    def _match_threshold(self) -> float | None:
        """The document-selfie match's threshold at the configured FAR, as a match states it (None:
        the pack has no calibration): stated in a decision made without a match too (a selfie or a
        document without a face), where it was null though the threshold is known."""
        if self.analyzer.calibration is None:
            return None
        return round(self.analyzer.calibration.threshold(self.config.far), 4)

    def purge(self, now: datetime | None = None) -> int:
        """Delete reference images past their retention and selfie fingerprints older than the
        replay window (``replay_days``), at ``now`` (default the present); returns how many images.
        Runs on every decision, on every retention change and whenever references are read; the
        service also runs it at its start and every ``FACEATLAS_RETENTION_SWEEP_SECONDS``."""
        now = now or utcnow()
        with self._sessions.begin() as session:
            session.execute(delete(KycFingerprint).where(KycFingerprint.at <= self._replay_since(now)))
            return rowcount(session.execute(delete(KycReference).where(KycReference.expires_at <= now)))

    def apply_retention(self, tenant: str, days: int, now: datetime | None = None) -> int:
        """The tenant's retention became ``days``: its kept reference images now expire at most
        ``days`` after their session's decision (0: all deleted now), its undecided sessions keep
        at most that, and what is past it is purged. A longer retention does not lengthen the
        life of images already kept; the selfies' fingerprints keep their own window (``replay_days``,
        purged here too). Returns how many images were deleted."""
        if days < 0:
            raise InvalidArgument("retention_days must be 0 (keep no images) or more")
        owned = select(KycSession.id).where(KycSession.tenant == tenant)
        deleted = 0
        with self._sessions.begin() as session:
            session.execute(update(KycSession).values(retention_days=days).where(
                KycSession.tenant == tenant, KycSession.status.in_(UNDECIDED),
                KycSession.retention_days > days))
            if days == 0:
                deleted = rowcount(session.execute(delete(KycReference).where(KycReference.session_id.in_(owned))))
            else:
                kept = session.execute(select(KycReference.id, KycReference.expires_at, KycSession.decided_at)
                                       .join(KycSession, KycSession.id == KycReference.session_id)
                                       .where(KycSession.tenant == tenant)).all()
                for ref_id, expires_at, decided_at in kept:
                    latest = (decided_at or expires_at) + timedelta(days=days)
                    if latest < expires_at:
                        session.execute(update(KycReference).where(KycReference.id == ref_id)
                                        .values(expires_at=latest))
        return deleted + self.purge(now)  # and the fingerprints past the replay window

    def erase_tenant(self, tenant: str) -> int:
        """Erase every session of ``tenant`` (see :func:`erase_tenant`); returns how many."""
        return erase_tenant(self._sessions, tenant)

    def references(self, tenant: str, session_id: str) -> dict[str, bytes]:
        """The reference JPEGs a session still keeps (none without retention)."""
        self.purge()
        with self._sessions() as session:
            self._row(session, tenant, session_id)
            rows = session.scalars(select(KycReference).where(KycReference.session_id == session_id))
            return {r.kind: r.image for r in rows}

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _row(session: Session, tenant: str, session_id: str, *, lock: bool = False) -> KycSession:
        row = session.get(KycSession, session_id, with_for_update=lock)
        if row is None or row.tenant != tenant:
            raise NotFound(f"no verification session {session_id}")
        return row

    def _expire(self, session: Session, now: datetime, *where: ColumnElement[bool]) -> None:
        """Sessions (of ``where``) whose time is up become ``expired``: pending ones past their
        expiry, and processing ones past it by ``processing_s`` (claimed by a submission whose
        process died before deciding; the claim is taken before the expiry, so a decision still
        under way has had at least that long). Conditional updates: a decision written meanwhile stays."""
        session.execute(update(KycSession).values(status="expired").where(
            KycSession.status == "pending", KycSession.expires_at <= now, *where))
        session.execute(update(KycSession).values(
            status="expired", details={"expired_while": "processing", "processing_s": self.config.processing_s},
        ).where(KycSession.status == "processing",
                KycSession.expires_at <= now - timedelta(seconds=self.config.processing_s), *where))

    def _replay_since(self, now: datetime) -> datetime:
        """Fingerprints from before this are out of the replay window (and purged)."""
        return now - timedelta(days=self.config.replay_days)

    def _replayed(self, tenant: str, session_id: str, selfie: Selfie) -> Outcome | None:
        """A ``replay`` outcome when ``selfie`` was submitted to another session of ``tenant`` within
        the replay window (the same bytes, or frames within ``replay_bits``), else None; either way
        its fingerprint is recorded for ``session_id`` in the same transaction, under the tenant's
        replay lock, before any slow check: of two sessions submitting one selfie at once, the
        second sees the first's (both were looked up before either was decided, and both were
        decided without ``replay``). A selfie without an :func:`informative` frame (a black camera,
        a grey screen) is neither looked up nor recorded: every such selfie looks alike."""
        bits = self.config.replay_bits
        hashes = [value for value in selfie.hashes if informative(value, bits)]
        if not hashes:
            return None
        now = utcnow()
        since = self._replay_since(now)
        others = and_(KycFingerprint.tenant == tenant, KycFingerprint.at > since,
                      KycFingerprint.session_id != session_id)
        with self._sessions.begin() as session:
            _lock_replays(session, tenant)
            same = session.scalar(select(KycFingerprint.session_id).where(
                others, KycFingerprint.digest == selfie.digest).limit(1))
            recent = session.scalars(select(KycFingerprint.hashes).where(others)
                                     .order_by(KycFingerprint.id.desc()).limit(REPLAY_WINDOW)).all()
            session.execute(delete(KycFingerprint).where(KycFingerprint.session_id == session_id))
            session.add(KycFingerprint(tenant=tenant, session_id=session_id, digest=selfie.digest,
                                       hashes=[format(value, "x") for value in hashes], at=now))
        if same is not None:
            return Outcome(["replay"], {"replay": {"same_bytes_as": same}})
        earlier = [int(h, 16) for stored in recent for h in stored]
        share = replayed_share(hashes, earlier, bits)
        if share >= self.config.replay_share:
            return Outcome(["replay"], {"replay": {"frames_seen_before": round(share, 3)}})
        return None

    def _decide(self, tenant: str, session_id: str, selfie: Selfie, outcome: Outcome, retention: int) -> SessionInfo:
        now = utcnow()
        outcome.details.setdefault("thresholds", {
            "far": self.config.far,
            "match": self._match_threshold(),  # the match's own (Verdict.to_dict rounds it alike) or the one it uses
            "liveness": self.config.liveness_cut,  # the one it is decided at (it said null: the default's)
            "turn_yaw": self.config.turn_yaw, "look_up_pitch": self.config.look_up_pitch,
            "blink_closed": self.config.blink_closed, "mouth_open_mar": self.config.mouth_open_mar,
            "step_s": self.config.step_s, "min_quality": self.config.min_quality,
        })
        with self._sessions.begin() as session:
            row = self._row(session, tenant, session_id, lock=True)  # a retention change waits for this
            if row.status != "processing":  # given up meanwhile (processing past its expiry by processing_s)
                raise SessionExpired(f"session {session_id} expired before its decision was written")
            row.status = "accepted" if outcome.accepted else "rejected"
            row.decided_at = now
            row.reasons = outcome.reasons
            row.details = outcome.details
            retention = min(retention, row.retention_days)  # the tenant may have shortened it meanwhile
            if retention > 0:
                for kind, image in outcome.references.items():
                    session.add(KycReference(session_id=session_id, kind=kind, image=_jpeg(image),
                                             expires_at=now + timedelta(days=retention)))
            info = _info(row)
        self.purge(now)
        return info


def _lock_replays(session: Session, tenant: str) -> None:
    """Hold ``tenant``'s replay lock to the end of ``session``'s transaction (call it first in it):
    looking a selfie up among the tenant's fingerprints and recording its own is one step for
    concurrent submissions, whatever process runs them. PostgreSQL: a transaction-scoped advisory
    lock on the tenant; SQLite: the file's write lock, taken now (:func:`faceatlas.db.sqlite_write_lock`;
    a plain transaction reads without any lock)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:4], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock, :key)"), {"lock": REPLAY_LOCK, "key": key})
    sqlite_write_lock(connection)


def erase_tenant(db: Engine | sessionmaker[Session], tenant: str, *, migrated: bool = True) -> int:
    """Erase everything verification keeps of ``tenant``: its kept reference face images, the
    fingerprints of its selfies and its sessions with their audited decisions, in one transaction
    (the tenant is going away: nothing of it is kept). Returns how many sessions were deleted; a
    second call finds nothing and returns 0. Needs no analyzer (``migrated`` False: bring the
    tables up first, for a database the service never opened)."""
    if isinstance(db, Engine) and not migrated:
        migrate(db)
    sessions = db if isinstance(db, sessionmaker) else sessionmaker(db)
    owned = select(KycSession.id).where(KycSession.tenant == tenant)
    with sessions.begin() as session:
        session.execute(delete(KycReference).where(KycReference.session_id.in_(owned)))
        session.execute(delete(KycFingerprint).where(
            (KycFingerprint.tenant == tenant) | KycFingerprint.session_id.in_(owned)))
        return rowcount(session.execute(delete(KycSession).where(KycSession.tenant == tenant)))


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InvalidArgument("a reference image could not be encoded")
    return encoded.tobytes()


def _cursor(row: KycSession) -> str:
    """A page cursor: the last listed session's creation time and id (newest first, then by id)."""
    return f"{row.created_at.strftime(_CURSOR_TIME)}.{row.id}"


def _parse_cursor(text: str) -> tuple[datetime, str]:
    """A cursor :func:`_cursor` made, else :class:`InvalidArgument`."""
    when, _, session_id = text.partition(".")
    try:
        if len(session_id) != 32 or not all(c in "0123456789abcdef" for c in session_id):
            raise ValueError(session_id)
        return datetime.strptime(when, _CURSOR_TIME), session_id
    except ValueError:
        raise InvalidArgument(f"'after' is the 'next_cursor' of a previous page, got {text[:60]!r}") from None
