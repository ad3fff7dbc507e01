"""Tenants, API keys, usage metering and the audit trail: the business side of the service.

An API key reads ``fa_<prefix>_<secret>``. Only ``sha256(secret)`` is stored, the prefix finds
the row, and the full key is shown once, when it is created or rotated.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from faceatlas.db import erases, rowcount, utcnow
from faceatlas.errors import AlreadyExists, InvalidArgument, KeyLimitReached, KeyRevoked, NotFound
from faceatlas.gallery import DEFAULT_TENANT, check_limit, check_text, name_key
from faceatlas.service.db import ApiKey, AuditRecord, ConsoleSession, DeletedTenant, Tenant, UsageRecord

log = logging.getLogger(__name__)

TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
INT_COLUMN_MAX = 2**31 - 1  # an INTEGER column's largest value (PostgreSQL's is 32-bit): a quota, a burst
ERASED = "[erased]"  # what the audit trail shows in place of a deleted subject's id
SCOPES = ("admin", "write", "read", "detect")
MAX_RETENTION_DAYS = 3650  # the longest a tenant may keep verification reference images
TENANT_NAME_MAX_LENGTH = 200  # svc_tenants.name
# What each scope grants: admin ⊃ write ⊃ read ⊃ detect.
_IMPLIED = {
    "admin": set(SCOPES),
    "write": {"write", "read", "detect"},
    "read": {"read", "detect"},
    "detect": {"detect"},
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    tenant_id: str
    key_id: int
    scopes: frozenset[str]
    rate_per_second: float
    burst: int
    monthly_quota: int | None = None

    def allows(self, scope: str) -> bool:
        return any(scope in _IMPLIED[s] for s in self.scopes)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: ``token`` is the only time the secret is visible."""

    id: int
    tenant_id: str
    prefix: str
    token: str
    scopes: list[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyCeilings:
    """Per-tenant ceilings on its active (unrevoked) keys: how many, and their summed rate (calls
    per second). None: no ceiling."""

    max_keys: int | None = None
    max_rate: float | None = None
    # whether a tenant's own ceiling (``Tenant.max_key_rate``, the operator's) replaces ``max_rate``
    # for it: the server's (a tenant's admin issues its keys there); an operator's tools set none
    tenant_rates: bool = False


class Accounts:
    """Tenant, key, usage and audit operations over one database. ``ceilings`` bound the keys a
    tenant may hold (the service passes its settings; none by default, for operators' tools)."""

    def __init__(self, engine: Engine, ceilings: KeyCeilings | None = None,
                 keys_changed: Callable[[], None] | None = None, follow_ups: FollowUps | None = None) -> None:
        """``keys_changed``: told after a key is revoked or rotated and after a tenant's quota
        changes or the tenant goes (what a principal holds), so that servers' caches of key lookups
        drop what they knew (``SharedState.forget_keys``). ``follow_ups``: where the bookkeeping of
        a change committed already (:meth:`audit_committed`, the erasures of ids from the audit
        trail) waits when the database drops before it is written (a server's); without it (the
        CLI), such a failure raises."""
        self.engine = engine
        self.ceilings = ceilings or KeyCeilings()
        self.keys_changed = keys_changed
        self.follow_ups = follow_ups
        # whether the subject an audit target names (``collection/subject``) is gone from the
        # tenant's gallery: an audit record kept while the database dropped, written after another
        # process deleted the subject (and erased its ids), is erased too (the server sets it)
        self.subject_gone: Callable[[str, str], bool] | None = None

    def _after_commit(self, what: str, step: Callable[[], None], late: Callable[[], None] | None = None) -> None:
        """Run ``step``, the bookkeeping of a change committed already: with :attr:`follow_ups`,
        a database that drops meanwhile (or steps kept waiting before it) leaves it kept there, in
        order, and ``late`` (default ``step``) runs once the database is back (:class:`FollowUps`);
        else it runs (and raises)."""
        if self.follow_ups is None:
            step()
        else:
            self.follow_ups.run(what, step, late)

    def _keys_changed(self) -> None:
        if self.keys_changed is not None:
            self.keys_changed()

    # -- tenants ---------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, name: str = "", monthly_quota: int | None = None,
                      max_key_rate: float | None = None) -> Tenant:
        """A new tenant, with the most calls/s its active keys may allow summed (``max_key_rate``,
        set by the operator; None: the server's ``FACEATLAS_MAX_KEY_RATE_PER_TENANT``). Its id is 1–64
        letters, digits, ``_``, ``.`` or ``-`` (no colon: the gallery spaces of the CLI and the apps
        stay out of its reach), and no deleted tenant's: its bill stays under that id (a new tenant of
        it inherited the old one's calls against its quota)."""
        if not TENANT_ID.fullmatch(tenant_id):
            raise InvalidArgument(f"invalid tenant id {tenant_id!r}: use 1-64 letters, digits, '_', '.' or '-'")
        if tenant_id.lower() == DEFAULT_TENANT:
            # the events of a `watch` run and the stores opened with no tenant are the default space's:
            # a service tenant of that id was served them (and could reprice a store, or erase it all)
            raise InvalidArgument(f"tenant id {tenant_id!r} is reserved: '{DEFAULT_TENANT}' is the operator's own "
                                  "space (the CLI's galleries, `watch` runs and stores that name no tenant); "
                                  "choose another id")
        _check_name(name)
        _check_quota(monthly_quota)
        _check_max_rate(max_key_rate)
        with Session(self.engine, expire_on_commit=False) as session:
            if session.get(Tenant, tenant_id) is not None:
                raise AlreadyExists(f"tenant '{tenant_id}' already exists")
            if session.get(DeletedTenant, tenant_id) is not None:
                raise AlreadyExists(f"tenant '{tenant_id}' was deleted and its id is not given again: its bill "
                                    "stays under that id; choose another id")
            tenant = Tenant(id=tenant_id, name=_display_name(name, tenant_id), monthly_quota=monthly_quota,
                            max_key_rate=max_key_rate)
            session.add(tenant)
            session.add(AuditRecord(tenant_id=tenant_id, action="tenant.create", target=tenant_id))
            session.commit()
            return tenant

    def existing_tenant(self, tenant_id: str, name: str = "", monthly_quota: int | None = None,
                        max_key_rate: float | None = None) -> Tenant:
        """The tenant ``tenant_id`` when it is the one :meth:`create_tenant` with these arguments
        makes (its display name, monthly quota and key rate ceiling): an "ensure" step run again
        (`admin tenant create --exist-ok`) finds it as it asked for it. One made otherwise (or changed
        since) is :class:`AlreadyExists`, naming what differs, as is a deleted tenant's id (never given
        again); none of that id, :class:`NotFound`."""
        with Session(self.engine, expire_on_commit=False) as session:
            if session.get(Tenant, tenant_id) is None and session.get(DeletedTenant, tenant_id) is not None:
                raise AlreadyExists(f"tenant '{tenant_id}' was deleted and its id is not given again: its bill "
                                    "stays under that id; choose another id")
        tenant = self.get_tenant(tenant_id)
        wanted = {"name": _display_name(name, tenant_id), "quota": monthly_quota, "key rate ceiling": max_key_rate}
        held = {"name": tenant.name, "quota": tenant.monthly_quota, "key rate ceiling": tenant.max_key_rate}
        differs = [f"{what} {held[what]!r}, not {wanted[what]!r}" for what in wanted if held[what] != wanted[what]]
        if differs:
            raise AlreadyExists(f"tenant '{tenant_id}' already exists with other settings: {', '.join(differs)}")
        return tenant

    def get_tenant(self, tenant_id: str) -> Tenant:
        with Session(self.engine) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant '{tenant_id}'")
            return tenant

    def tenant_ceilings(self, tenant_id: str, default_quota: int | None = None) -> dict[str, Any]:
        """What bounds ``tenant_id``, for its own admin to read (``GET /v1/settings``): its monthly call
        quota (its own, else ``default_quota``, the server's), the most active keys it may hold and their
        summed rate ceiling (the tenant's own ``max_key_rate`` where :attr:`KeyCeilings.tenant_rates`,
        else the server's), and what its active keys hold of them (``active_keys``, ``key_rate``)."""
        with Session(self.engine) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant '{tenant_id}'")
            count, rate = session.execute(select(func.count(), func.coalesce(func.sum(ApiKey.rate_per_second), 0.0))
                                          .where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))).one()
        max_rate = self.ceilings.max_rate
        if self.ceilings.tenant_rates and tenant.max_key_rate is not None:
            max_rate = tenant.max_key_rate
        quota = tenant.monthly_quota if tenant.monthly_quota is not None else default_quota
        return {"monthly_quota": quota, "max_keys": self.ceilings.max_keys, "active_keys": int(count),
                "max_key_rate": max_rate, "key_rate": float(rate)}

    def update_tenant(self, tenant_id: str, *, name: str | None = None, monthly_quota: int | None = None,
                      unlimited: bool = False, kyc_retention_days: int | None = None,
                      max_key_rate: float | None = None, default_max_key_rate: bool = False,
                      actor_key_id: int | None = None) -> Tenant:
        """Rename a tenant, change its monthly quota (``unlimited`` removes it), the days its
        verifications' reference face images are kept (0: none written) or the most calls/s its
        active keys may allow summed (``max_key_rate``; ``default_max_key_rate``: the server's
        setting again). A lower ceiling leaves the keys issued already as they are: new keys are
        refused until the tenant's keys are within it (a rotation, which replaces a key by its
        like, is not: a leaked key stays replaceable). Audited when something
        changed (a call that changes nothing writes no record)."""
        if name is not None:
            _check_name(name)
        _check_quota(monthly_quota)
        _check_max_rate(max_key_rate)
        if default_max_key_rate and max_key_rate is not None:
            raise InvalidArgument("give a key rate ceiling or the server's default, not both")
        if unlimited and monthly_quota is not None:
            raise InvalidArgument("give a monthly quota or 'unlimited', not both")
        if kyc_retention_days is not None and not 0 <= kyc_retention_days <= MAX_RETENTION_DAYS:
            raise InvalidArgument(f"kyc_retention_days is 0 (keep no face image) to {MAX_RETENTION_DAYS}")
        with Session(self.engine, expire_on_commit=False) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant '{tenant_id}'")
            before = (tenant.name, tenant.monthly_quota, tenant.kyc_retention_days, tenant.max_key_rate)
            if max_key_rate is not None or default_max_key_rate:
                tenant.max_key_rate = max_key_rate
            if name is not None:
                tenant.name = _display_name(name, tenant_id)
            if monthly_quota is not None or unlimited:
                tenant.monthly_quota = None if unlimited else monthly_quota
            if kyc_retention_days is not None:
                tenant.kyc_retention_days = kyc_retention_days
            if (tenant.name, tenant.monthly_quota, tenant.kyc_retention_days, tenant.max_key_rate) == before:
                return tenant
            session.add(AuditRecord(tenant_id=tenant_id, key_id=actor_key_id, action="tenant.update", target=tenant_id,
                                    details={"name": tenant.name, "monthly_quota": tenant.monthly_quota,
                                             "kyc_retention_days": tenant.kyc_retention_days,
                                             "max_key_rate": tenant.max_key_rate}))
            session.commit()
        if tenant.monthly_quota != before[1]:
            self._keys_changed()
        return tenant

    def revoke_tenant_keys(self, tenant_id: str) -> int:
        """Revoke every key of a tenant at once (the first step of deleting it, so that its keys stop
        adding data while the rest is erased; the deletion's audit record covers it). Returns how many."""
        with Session(self.engine) as session:
            revoked = rowcount(session.execute(update(ApiKey).where(
                ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())))
            session.commit()
        if revoked:
            self._keys_changed()
        return revoked

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete a tenant's account, keys and audit trail (see ``service.tenants.delete_tenant`` for
        all it owns), in one transaction. What stays: its usage rows (the bill), the audit record of
        the deletion, and its id among the deleted tenants' (never given to a new tenant)."""
        with Session(self.engine) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant '{tenant_id}'")
            keys = select(ApiKey.id).where(ApiKey.tenant_id == tenant_id).scalar_subquery()
            session.execute(delete(ConsoleSession).where(ConsoleSession.key_id.in_(keys)))
            session.execute(delete(ApiKey).where(ApiKey.tenant_id == tenant_id))
            session.execute(delete(AuditRecord).where(AuditRecord.tenant_id == tenant_id))
            session.delete(tenant)
            if session.get(DeletedTenant, tenant_id) is None:  # a tenant of the id from before it was kept
                session.add(DeletedTenant(id=tenant_id))
            session.add(AuditRecord(tenant_id=tenant_id, action="tenant.delete", target=tenant_id))
            session.commit()
        self._keys_changed()

    def list_tenants(self) -> list[Tenant]:
        with Session(self.engine) as session:
            return list(session.scalars(select(Tenant).order_by(Tenant.id)))

    # -- keys ------------------------------------------------------------------------------
    def create_key(
        self,
        tenant_id: str,
        scopes: list[str],
        name: str = "",
        rate_per_second: float = 20.0,
        burst: int = 40,
        actor_key_id: int | None = None,
    ) -> IssuedKey:
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise InvalidArgument(f"scopes must be among {SCOPES}, got {scopes}")
        if "\x00" in name:
            raise InvalidArgument("a key name cannot contain NUL characters")
        if not 0 < rate_per_second < math.inf:  # also NaN; 1e400 read as inf was a key without a limit
            raise InvalidArgument(f"a key's rate is a finite number of requests per second above 0, "
                                  f"not {rate_per_second:g}")
        if not 1 <= burst <= INT_COLUMN_MAX:
            raise InvalidArgument(f"a key's burst is 1 to {INT_COLUMN_MAX:,} requests, not {burst}")
        with Session(self.engine) as session:
            issued = self._issue(session, tenant_id, scopes, name, rate_per_second, burst, actor_key_id)
            session.commit()
            return issued

    def _issue(
        self,
        session: Session,
        tenant_id: str,
        scopes: list[str],
        name: str,
        rate_per_second: float,
        burst: int,
        actor_key_id: int | None,
        action: str = "key.create",
        replacing: bool = False,
    ) -> IssuedKey:
        """A new key in the session's transaction, within the tenant's ceilings (the tenant row is
        locked for the check where the database can); one ``replacing`` a key revoked in the same
        transaction (a rotation) is not checked: it takes that key's place, count and rate, so a
        leaked key is always replaceable, under a lowered ceiling too."""
        tenant = session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound(f"no tenant '{tenant_id}'")
        if not replacing:
            self._check_ceilings(session, tenant, rate_per_second)
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(
            tenant_id=tenant_id,
            prefix=prefix,
            secret_hash=_hash(secret),
            name=name,
            scopes=sorted(set(scopes)),
            rate_per_second=rate_per_second,
            burst=burst,
        )
        session.add(key)
        session.flush()
        session.add(
            AuditRecord(
                tenant_id=tenant_id,
                key_id=actor_key_id,
                action=action,
                target=f"key:{prefix}",
                details={"scopes": key.scopes},
            )
        )
        return IssuedKey(key.id, tenant_id, prefix, f"fa_{prefix}_{secret}", key.scopes)

    def _check_ceilings(self, session: Session, tenant: Tenant, rate_per_second: float) -> None:
        """A key of ``rate_per_second`` more within the tenant's ceilings: the count, and the summed
        rate, the tenant's own (the operator's, where :attr:`KeyCeilings.tenant_rates`) or else the
        server's."""
        ceilings = self.ceilings
        max_rate = ceilings.max_rate
        if ceilings.tenant_rates and tenant.max_key_rate is not None:
            max_rate = tenant.max_key_rate
        if ceilings.max_keys is None and max_rate is None:
            return
        active = select(func.count(), func.coalesce(func.sum(ApiKey.rate_per_second), 0.0)).where(
            ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None)
        )
        count, rate = session.execute(active).one()
        if ceilings.max_keys is not None and count + 1 > ceilings.max_keys:
            raise KeyLimitReached(f"the tenant has {count} active keys, the most allowed is {ceilings.max_keys}")
        if max_rate is not None and float(rate) + rate_per_second > max_rate:
            raise KeyLimitReached(
                f"the tenant's active keys allow {float(rate):g} calls/s; another {rate_per_second:g} would pass "
                f"the ceiling of {max_rate:g}"
            )

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key, or those of ``tenant_id`` (an unknown tenant is :class:`NotFound`)."""
        with Session(self.engine) as session:
            query = select(ApiKey).order_by(ApiKey.id)
            if tenant_id is not None:
                if session.get(Tenant, tenant_id) is None:
                    raise NotFound(f"no tenant '{tenant_id}'")
                query = query.where(ApiKey.tenant_id == tenant_id)
            return list(session.scalars(query))

    def revoke_key(self, prefix: str, tenant_id: str | None = None, actor_key_id: int | None = None) -> bool:
        """Revoke the key with ``prefix`` (within ``tenant_id`` when given). Revoking a revoked key
        changes nothing and is not audited again; returns whether this call revoked it."""
        with Session(self.engine) as session:
            key = self._find(session, prefix, tenant_id)
            revoked = rowcount(session.execute(
                update(ApiKey).where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())))
            if revoked:
                session.add(AuditRecord(tenant_id=key.tenant_id, key_id=actor_key_id, action="key.revoke",
                                        target=f"key:{key.prefix}"))
            session.commit()
        if revoked:
            self._keys_changed()
        return bool(revoked)

    def rotate_key(self, prefix: str, tenant_id: str | None = None, actor_key_id: int | None = None) -> IssuedKey:
        """Revoke a key and issue its one replacement (same tenant, scopes and limits), in one
        transaction. A key rotates once: a revoked key (rotated already, or revoked) is
        :class:`KeyRevoked`, also when two rotations of one key race."""
        with Session(self.engine) as session:
            old = self._find(session, prefix, tenant_id)
            revoked = rowcount(
                session.execute(
                    update(ApiKey).where(ApiKey.id == old.id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
                )
            )
            if not revoked:
                raise KeyRevoked(f"key '{old.prefix}' is revoked (or rotated already): create a new key instead")
            session.add(
                AuditRecord(tenant_id=old.tenant_id, key_id=actor_key_id, action="key.revoke",
                            target=f"key:{old.prefix}")
            )
            issued = self._issue(
                session, old.tenant_id, list(old.scopes), old.name, old.rate_per_second, old.burst, actor_key_id,
                action="key.rotate", replacing=True,
            )
            session.commit()
        self._keys_changed()
        return issued

    @staticmethod
    def _find(session: Session, prefix: str, tenant_id: str | None) -> ApiKey:
        prefix = key_prefix(prefix)
        key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
            raise NotFound(f"no key with prefix '{_shown(prefix)}'")
        return key

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a presented key, or None when it is unknown, malformed or revoked."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "fa":
            return None
        _, prefix, secret = parts
        with Session(self.engine) as session:
            key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            if key is None or key.revoked_at is not None:
                return None
            if not hmac.compare_digest(key.secret_hash, _hash(secret)):
                return None
            return _principal(session, key)

    def principal_of_key(self, key_id: int) -> tuple[Principal, str] | None:
        """The principal of the key with ``key_id`` (a console session's key, checked again on
        every request) and the key's prefix (the page shows it), or None when it is gone or
        revoked: one read of the key's row (the console read it twice per page, once for each)."""
        with Session(self.engine) as session:
            key = session.get(ApiKey, key_id)
            if key is None or key.revoked_at is not None:
                return None
            return _principal(session, key), key.prefix

    # -- metering and audit ------------------------------------------------------------------
    def record_usage(self, rows: list[UsageRecord]) -> None:
        """Append usage records (the service batches them from a background writer)."""
        with Session(self.engine) as session:
            session.add_all(rows)
            session.commit()

    def calls_this_month(self, tenant_id: str, now: datetime | None = None) -> int:
        """Billed calls of the tenant this month (what its quota counts)."""
        now = now or utcnow()
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        with Session(self.engine) as session:
            query = (
                select(func.count())
                .select_from(UsageRecord)
                .where(UsageRecord.tenant_id == tenant_id, UsageRecord.at >= start, UsageRecord.status < 500)
            )
            return int(session.scalar(query) or 0)

    def usage_report(
        self, tenant_id: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict]:
        """Billed calls, their faces and client errors per day and operation (the bill), and the
        server failures that are not billed, summed in SQL (see :func:`billed`). A ``tenant_id``
        that is no tenant and has no usage recorded (a deleted tenant's bill stays) is :class:`NotFound`."""
        day = func.date(UsageRecord.at)
        is_billed = UsageRecord.status < 500
        calls = func.sum(case((is_billed, 1), else_=0))
        faces = func.sum(case((is_billed, UsageRecord.faces), else_=0))
        errors = func.sum(case(((UsageRecord.status >= 400) & is_billed, 1), else_=0))
        failed = func.sum(case((is_billed, 0), else_=1))
        query = select(
            UsageRecord.tenant_id, day, UsageRecord.operation, calls, faces, errors, failed
        ).group_by(UsageRecord.tenant_id, day, UsageRecord.operation)
        if tenant_id is not None:
            query = query.where(UsageRecord.tenant_id == tenant_id)
        if start is not None:
            query = query.where(UsageRecord.at >= start)
        if end is not None:
            query = query.where(UsageRecord.at < end)
        with Session(self.engine) as session:
            rows = session.execute(query.order_by(UsageRecord.tenant_id, day, UsageRecord.operation)).all()
            if not rows and tenant_id is not None and session.get(Tenant, tenant_id) is None and session.scalar(
                    select(UsageRecord.id).where(UsageRecord.tenant_id == tenant_id).limit(1)) is None:
                raise NotFound(f"no tenant '{tenant_id}' and no usage recorded for it")
        return [
            {"tenant": t, "day": str(d), "operation": op, "calls": int(c or 0), "faces": int(f or 0),
             "errors": int(e or 0), "failed": int(x or 0)}
            for t, d, op, c, f, e, x in rows
        ]

    def audit(
        self, action: str, target: str, tenant_id: str | None, key_id: int | None, details: dict | None = None
    ) -> None:
        with Session(self.engine) as session:
            session.add(
                AuditRecord(tenant_id=tenant_id, key_id=key_id, action=action, target=target, details=details or {})
            )
            session.commit()

    def audit_committed(
        self, action: str, target: str, tenant_id: str | None, key_id: int | None, details: dict | None = None
    ) -> None:
        """The audit record of a change committed already (an enrolment, a deletion: the API's
        ``audited``): as :meth:`audit`, but a database that drops before it is written never
        turns the change into a failure: the record waits in :attr:`follow_ups` (a server's) and
        is written once the database is back.

        A record on a gallery subject is written after its change committed, so a delete of the
        subject that committed meanwhile (another call, another process) may have erased its ids
        before the record was there: the subject (a merge's ``into``) is looked up once the record
        is written, and gone, its ids are erased again (:attr:`subject_gone`)."""
        def late() -> None:  # written after the database came back: what happened meanwhile holds
            with Session(self.engine) as session:
                if tenant_id is not None and session.get(Tenant, tenant_id) is None:
                    return  # the tenant was deleted meanwhile (by another process): nothing of it is written
            self.audit(action, target, tenant_id, key_id, details)

        self._after_commit(f"the audit record {action} of tenant {tenant_id}",
                           lambda: self.audit(action, target, tenant_id, key_id, details), late)
        subject = _audited_subject(action, target, details)
        if tenant_id is not None and subject is not None and self.subject_gone is not None:
            gone = self.subject_gone
            self._after_commit(f"checking that the subject of the audit record {action} of tenant {tenant_id} "
                               "is not erased", lambda: self._erase_subject(tenant_id, subject)
                               if gone(tenant_id, subject) else None)

    def erase_subject(self, tenant_id: str, target: str, *, keep_ids: bool) -> str:
        """After a subject was deleted: unless ``keep_ids``, replace ``target`` (``collection/subject``)
        by ``collection/[erased]`` in every audit record of the tenant, details dropped, and so for the
        ids merged into it (``subject.merge`` records whose ``into`` is the subject, or one merged into
        it: the same person's earlier ids). Returns the target the deletion itself is audited under.
        The deletion committed already: with :attr:`follow_ups`, a database that drops meanwhile
        leaves the erasure waiting there, done once the database is back."""
        if keep_ids:
            return target
        collection = target.split("/", 1)[0]
        self._after_commit(f"erasing a deleted subject's id from the audit trail of tenant {tenant_id}",
                           lambda: self._erase_subject(tenant_id, target))
        return f"{collection}/{ERASED}"

    def _erase_subject(self, tenant_id: str, target: str) -> None:
        collection = target.split("/", 1)[0]
        erased = f"{collection}/{ERASED}"
        with Session(self.engine) as session:
            merges = session.execute(select(AuditRecord.target, AuditRecord.details).where(
                AuditRecord.tenant_id == tenant_id, AuditRecord.action == "subject.merge",
                target_under(f"{collection}/"))).all()
            targets, grown = {target}, True
            while grown:  # the ids merged into one of them, transitively
                merged = {source for source, details in merges
                          if f"{collection}/{(details or {}).get('into')}" in targets}
                grown = not merged <= targets
                targets |= merged
            session.execute(update(AuditRecord).where(AuditRecord.tenant_id == tenant_id,
                                                      AuditRecord.target.in_(sorted(targets)))
                            .values(target=erased, details={}))
            erases(session)
            session.commit()

    def erase_collection(self, tenant_id: str, collection: str, *, keep_ids: bool) -> None:
        """After a collection was deleted with its subjects: unless ``keep_ids``, every audit record
        of the tenant on one of its subjects (a ``subject.*`` or ``face.*`` record whose target is
        ``collection/<subject>``) names ``collection/[erased]``, details dropped (a merge's ``into``),
        as :meth:`erase_subject` does for one subject. The collection's own records (created,
        exported, deleted) keep its name; an album's records (``album.*``) are not its."""
        if keep_ids:
            return
        self._after_commit(f"erasing a deleted collection's subject ids from the audit trail of tenant {tenant_id}",
                           lambda: self._erase_collection(tenant_id, collection))

    def _erase_collection(self, tenant_id: str, collection: str) -> None:
        with Session(self.engine) as session:
            session.execute(update(AuditRecord).where(
                AuditRecord.tenant_id == tenant_id, _subject_actions(),
                target_under(f"{collection}/"))
                .values(target=f"{collection}/{ERASED}", details={}))
            erases(session)
            session.commit()

    def erase_album_person(self, tenant_id: str, album: str, ids: Iterable[str], names: Iterable[str | None] = (),
                           faces: Iterable[int] = (), *, keep_ids: bool) -> str:
        """After an album's person was erased (or left with no face by a deleted face or photo):
        unless ``keep_ids``, every ``album.*`` audit record of the tenant that names them, details
        dropped, names ``album/[erased]``: a record on a person whose target is ``album/<ref>`` with
        ``<ref>`` one of ``ids`` (``p12``; every id that held their faces: theirs and the ids merged
        into them) however it was written (``12``, ``p012``, `` p12``: the target of a record made
        before targets were the person's id), or one of ``names`` (their names, the reference the
        erasure was called with); and a record on a face (a move, a rejection, a deletion: target
        ``album/<face id>``) of ``faces``. Returns the target the erasure itself is audited under
        (``album/[erased]``, or ``album/<first id>`` when ids are kept)."""
        wanted = list(ids)
        if keep_ids:
            return f"{album}/{wanted[0]}" if wanted else album
        numbers = {int(ref[1:]) for ref in wanted}
        texts = {name.strip() for name in names if name and name.strip()}
        face_ids = {int(face) for face in faces}
        self._after_commit(f"erasing an album's erased people from the audit trail of tenant {tenant_id}",
                           lambda: self._erase_album_person(tenant_id, album, numbers, texts, face_ids))
        return f"{album}/{ERASED}"

    def _erase_album_person(self, tenant_id: str, album: str, numbers: set[int], texts: set[str],
                            face_ids: set[int]) -> None:
        prefix = f"{album}/"
        with Session(self.engine) as session:
            records = session.execute(select(AuditRecord.id, AuditRecord.action, AuditRecord.target).where(
                AuditRecord.tenant_id == tenant_id, AuditRecord.action.startswith("album.", autoescape=True),
                target_under(prefix))).all()
            hit = [rid for rid, action, target in records
                   if _names_album_person(action, target[len(prefix):], numbers, texts, face_ids)]
            for start in range(0, len(hit), 10_000):
                session.execute(update(AuditRecord).where(AuditRecord.id.in_(hit[start:start + 10_000]))
                                .values(target=f"{album}/{ERASED}", details={}))
            erases(session)
            session.commit()

    def erase_album(self, tenant_id: str, album: str, *, keep_ids: bool) -> None:
        """After an album was erased whole: unless ``keep_ids``, every ``album.*`` audit record of
        the tenant on something in it (target ``album/<person, face or photo>``) names
        ``album/[erased]``, details dropped, as :meth:`erase_album_person` does for one person. The
        album's own records (scans, re-clusters, its deletion: target ``album``) keep its name, as a
        deleted collection's keep its."""
        if keep_ids:
            return
        self._after_commit(f"erasing an erased album's contents from the audit trail of tenant {tenant_id}",
                           lambda: self._erase_album(tenant_id, album))

    def _erase_album(self, tenant_id: str, album: str) -> None:
        with Session(self.engine) as session:
            session.execute(update(AuditRecord).where(
                AuditRecord.tenant_id == tenant_id, AuditRecord.action.startswith("album.", autoescape=True),
                target_under(f"{album}/"))
                .values(target=f"{album}/{ERASED}", details={}))
            erases(session)
            session.commit()

    def audit_log(self, tenant_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` audit records (of ``tenant_id``, or of every tenant), newest first; a
        ``limit`` outside 1 to :data:`~faceatlas.gallery.PAGE_MAX` is :class:`InvalidArgument` (SQLite
        read a negative one as every record)."""
        check_limit(limit)
        with Session(self.engine) as session:
            query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
            if tenant_id is not None:
                query = query.where(AuditRecord.tenant_id == tenant_id)
            return list(session.scalars(query))


_ALBUM_FACE_ACTIONS = frozenset({"album.move", "album.reject", "album.delete_face"})  # target album/<face id>
_ALBUM_PHOTO_ACTIONS = frozenset({"album.delete_photo"})  # target album/<photo id>: no person's


def _names_album_person(action: str, ref: str, numbers: set[int], names: set[str], faces: set[int]) -> bool:
    """Whether an album audit record (``action`` on ``album/<ref>``) names an erased person (their
    id numbers, their names) or an erased face. A face's record names it by its bare number (the
    console once audited a move under the person it went to: ``p12``, a name); a person's record by
    their id, as ``p12`` since targets are the person's id, earlier as the reference called with."""
    text = ref.strip()
    if action in _ALBUM_PHOTO_ACTIONS:
        return False
    if action in _ALBUM_FACE_ACTIONS and text.isascii() and text.isdigit():
        return int(text) in faces
    number = text[1:] if text[:1] == "p" else text
    if number.isascii() and number.isdigit():
        return int(number) in numbers
    return text in names


def target_under(prefix: str) -> ColumnElement[bool]:
    """Audit records whose target starts with ``prefix`` (``collection/``), letter case included:
    SQLite's LIKE ignores it, and deleting collection ``VIP`` erased the records of live subjects of
    collection ``vip``."""
    return and_(AuditRecord.target.startswith(prefix, autoescape=True),
                func.substr(AuditRecord.target, 1, len(prefix)) == prefix)


def _audited_subject(action: str, target: str, details: dict | None) -> str | None:
    """The gallery subject (``collection/subject``) an audit record names, whose erasure must reach
    it: its target (a merge's: its ``into``, the absorbed id's records go with it); None for a
    record on no live subject (a delete's, already erased; an album's, a store's)."""
    if not action.startswith(("subject.", "face.")) or action == "subject.delete" or "/" not in target:
        return None
    if action == "subject.merge":
        into = (details or {}).get("into")
        return f"{target.split('/', 1)[0]}/{into}" if isinstance(into, str) and into else None
    return target


def _subject_actions() -> ColumnElement[bool]:
    """The audit records of a gallery subject: ``subject.create``/``update``/``merge``/``delete``, ``face.enrol``."""
    return or_(AuditRecord.action.startswith("subject.", autoescape=True),
               AuditRecord.action.startswith("face.", autoescape=True))


_KEY_REFERENCE = re.compile(r"fa_([0-9a-fA-F]+)(?:_.*)?", re.DOTALL)


def key_prefix(reference: str) -> str:
    """The prefix a key is named by, from its prefix, ``fa_<prefix>`` or the whole key
    ``fa_<prefix>_<secret>`` (pasted where its prefix belongs: the key is then found, and its
    secret goes no further: not into an answer, a log line or the audit trail)."""
    match = _KEY_REFERENCE.fullmatch(reference)
    return match.group(1) if match else reference


def _shown(prefix: str) -> str:
    """A prefix as an error message quotes it: one that is not a key's prefix (anything pasted
    there) is cut short, so a secret in it is never echoed whole."""
    return prefix if len(prefix) <= 16 else f"{prefix[:12]}…"


def _check_max_rate(max_key_rate: float | None) -> None:
    if max_key_rate is not None and not 0 < max_key_rate < math.inf:  # also NaN
        raise InvalidArgument(f"a tenant's key rate ceiling is a finite number of calls per second above 0, "
                              f"not {max_key_rate:g}")


def _check_name(name: str) -> None:
    """A tenant's display name: at most :data:`TENANT_NAME_MAX_LENGTH` characters on one line, the
    gallery's rule for a subject's name (:func:`~faceatlas.gallery.check_text`: no NUL, which
    PostgreSQL refused with a traceback in the CLI; no newline, ESC or other control character, which
    ``admin tenant list`` printed raw, splitting its rows or clearing the terminal)."""
    check_text(name, "tenant's name", max_length=TENANT_NAME_MAX_LENGTH)


def _display_name(name: str, tenant_id: str) -> str:
    """A tenant's display name as kept: without its outer blanks, composed (NFC, as every name), its
    id when nothing is left (one rule for create and update: update --name '' blanked it, create
    --name '   ' kept the blanks)."""
    return name_key(name.strip()) or tenant_id


def _check_quota(calls: int | None) -> None:
    """A monthly quota is 0 to :data:`INT_COLUMN_MAX` calls (beyond it the database failed, a
    traceback in the CLI)."""
    if calls is not None and not 0 <= calls <= INT_COLUMN_MAX:
        raise InvalidArgument(f"a monthly quota is 0 to {INT_COLUMN_MAX:,} calls (none: unlimited)")


def _principal(session: Session, key: ApiKey) -> Principal:
    tenant = session.get(Tenant, key.tenant_id)
    quota = tenant.monthly_quota if tenant else None
    return Principal(key.tenant_id, key.id, frozenset(key.scopes), key.rate_per_second, key.burst, quota)


def billed(status: int) -> bool:
    """What is billable: a metered call (one that passed authentication, its scope, the rate limit
    and the quota) answered with a status below 500 — a success, or a client error such as no face
    in the image. A server failure (5xx, including 503 overloaded) is recorded but neither billed
    nor counted against the quota; a call refused before metering (401, 403, 429) is not recorded,
    nor is one refused for its size (413) or one that failed on the database itself (503
    ``database_unavailable``: see the app's ``meter_calls``)."""
    return status < 500


_NOT_DROPPED = ("no such table", "no such column", "readonly database", "read-only", "syntax error")


def database_dropped(exc: BaseException) -> bool:
    """Whether ``exc`` is the database out of reach (refused, dropped, restarted: a connection's
    failure, worth trying again), not a statement's own fault (a constraint, a bug, a statement or
    lock timeout, a table missing, a read-only file: errors that trying again only repeats)."""
    if isinstance(exc, InterfaceError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if state:  # PostgreSQL's class 08 (connection exception), 57P0x (shut down, restarting)
        return str(state).startswith(("08", "57P"))
    text = str(exc.orig).lower()  # a client-side failure (no state), or SQLite's (locked, busy: a wait)
    return not any(words in text for words in _NOT_DROPPED)


class FollowUps:
    """The bookkeeping of one server process's changes committed already (an enrolment's audit
    record, a deletion's erasure of the subject's id from the audit trail), kept while the database
    cannot take it, in the spirit of :class:`UsageWriter`: the change happened, so its call is
    answered its success, never "nothing was written" (its ``Idempotency-Key`` then keeps that
    answer, and a retry with it acts no second time).

    :meth:`run` runs a step at once; one that fails because the database dropped
    (:func:`database_dropped`) is kept in this process's memory, logged, and tried again in a
    background thread (after ``retries`` seconds, the last repeated) until the database takes it.
    Steps run in the order they were given: while some wait, a new one waits behind them (an
    erasure kept never runs after a later record of the same id). A step that fails otherwise (a
    bug) is logged and dropped. :meth:`close` (the server's shutdown) tries those left once more;
    a process killed before they are written loses them (each was logged when kept)."""

    MAX_WAITING = 10_000  # steps kept at most: beyond, one more is logged and dropped (memory stays bounded)
    MAX_TRIES = 720  # tries of the first step waiting (an hour at 5 s) before it is logged and dropped

    def __init__(self, retries: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 5.0)) -> None:
        self.retries = tuple(retries)
        self._waiting: list[tuple[str, Callable[[], None]]] = []
        self._tries = 0  # failed tries of the first step waiting
        self._lock = threading.Lock()  # guards _waiting and _thread
        self._writing = threading.Lock()  # one writer of the waiting steps at a time: in order, each once
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Steps kept, not done yet."""
        with self._lock:
            return len(self._waiting)

    def run(self, what: str, step: Callable[[], None], late: Callable[[], None] | None = None) -> bool:
        """Run ``step`` (``what`` it does, for the log); True when it is done, False when it waits
        (the database dropped, or steps given before it wait): then ``late`` (default ``step``) is
        what runs once the database is back (a record that checks what happened meanwhile). An
        error that is not the database's absence raises, as the step itself would."""
        with self._lock:
            behind = bool(self._waiting)
        if behind:
            self._keep(what, late or step)
            return self.flush()
        try:
            step()
            return True
        except SQLAlchemyError as exc:
            if not database_dropped(exc):
                raise
            self._keep(what, late or step)
            return False

    def _keep(self, what: str, step: Callable[[], None]) -> None:
        with self._lock:
            if len(self._waiting) >= self.MAX_WAITING:
                log.error("%d steps of bookkeeping wait for the database already: %s is dropped", len(self._waiting),
                          what)
                return
            self._waiting.append((what, step))
            waiting = len(self._waiting)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._retry, name="faceatlas-follow-ups", daemon=True)
                self._thread.start()
        log.warning("the database dropped after a change was committed: %s waits in memory until the database "
                    "takes it (%d waiting)", what, waiting)

    def flush(self) -> bool:
        """Run the steps kept, in order, until one cannot be; True when none is left waiting."""
        if not self._writing.acquire(blocking=False):  # another thread is writing them (this one's too)
            return False
        try:
            done = 0
            while True:
                with self._lock:
                    if not self._waiting:
                        break
                    what, step = self._waiting[0]
                try:
                    step()
                except Exception as exc:  # a step that raises anything else is dropped, not kept
                    if isinstance(exc, SQLAlchemyError) and database_dropped(exc):
                        self._tries += 1
                        if self._tries < self.MAX_TRIES:
                            log.warning("%d steps of bookkeeping kept in memory still cannot be written",
                                        self.waiting)
                            return False
                        log.error("%s could not be written in %d tries; dropped", what, self._tries)
                    else:
                        log.exception("%s failed; dropped", what)
                with self._lock:
                    self._waiting.pop(0)
                    self._tries = 0
                done += 1
            if done:
                log.warning("%d steps of bookkeeping kept in memory while the database failed are done now", done)
            return True
        finally:
            self._writing.release()

    def _retry(self) -> None:
        """The background retries: after each wait of ``retries`` (the last repeated), until none waits."""
        tries = 0
        try:
            while True:
                self._wake.wait(self.retries[min(tries, len(self.retries) - 1)])
                tries += 1
                if self.flush() or self._closed:
                    with self._lock:  # checked and cleared at once: a step kept meanwhile starts a new thread
                        if not self._waiting or self._closed:
                            self._thread = None
                            return
        except BaseException:  # however else it ends, a later step kept starts a thread again
            with self._lock:
                self._thread = None
            raise

    def close(self) -> None:
        """At shutdown: the steps kept are tried once more; those the database still refuses are
        logged, lost."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=30)
        if self.flush():
            return
        with self._lock:
            lost, self._waiting = [what for what, _ in self._waiting], []
        log.error("%d steps of bookkeeping of changes committed could not be done before the shutdown: %s",
                  len(lost), lost)


class UsageWriter:
    """Writes the usage rows of one server process's calls (the bill), and keeps those that could
    not be written while the database failed, for calls whose effect happened (see the service's
    metering middleware): an enrolment done and answered is on the bill once the database is back.

    :meth:`record` writes a row, tried again after each of ``retries`` seconds (a connection
    killed, a failover: the database is often back within them), then the rows kept waiting;
    :meth:`keep` holds a row that could not be written, in this process's memory, until the next
    :meth:`record` that succeeds or :meth:`close` (the server's shutdown). A process killed before
    then loses them: each is logged, with its values, when kept."""

    _COLUMNS = ("tenant_id", "key_id", "operation", "faces", "status", "latency_ms", "at")

    def __init__(self, accounts: Accounts, retries: Sequence[float] = (0.05, 0.25)) -> None:
        self.accounts = accounts
        self.retries = tuple(retries)
        self._waiting: list[dict] = []
        self._lock = threading.Lock()

    @classmethod
    def _values(cls, row: UsageRecord) -> dict:
        """The row's columns (its time set now when unset), each try writing a new object of them."""
        values = {name: getattr(row, name) for name in cls._COLUMNS}
        values["at"] = values["at"] or utcnow()
        return values

    def record(self, row: UsageRecord) -> None:
        """Write ``row`` (the SQLAlchemyError of its last try when it cannot be), then the rows kept."""
        values = self._values(row)
        for wait in (*self.retries, None):
            try:
                self.accounts.record_usage([UsageRecord(**values)])
                break
            except SQLAlchemyError:
                if wait is None:
                    raise
                time.sleep(wait)
        if self._waiting:
            self.flush()

    def keep(self, row: UsageRecord) -> None:
        """Hold ``row``, which could not be written, until the database takes it."""
        values = self._values(row)
        with self._lock:
            self._waiting.append(values)
            waiting = len(self._waiting)
        log.warning("the usage row of a call served could not be written; kept in memory until the database "
                    "takes it (%d waiting): %s", waiting, values)

    @property
    def waiting(self) -> int:
        """Rows kept, not written yet."""
        with self._lock:
            return len(self._waiting)

    def flush(self) -> bool:
        """Write the rows kept (all or none); True when none is left waiting."""
        with self._lock:  # taken out while written: two flushes never write a row twice
            rows, self._waiting = self._waiting, []
        if not rows:
            return True
        try:
            self.accounts.record_usage([UsageRecord(**values) for values in rows])
        except SQLAlchemyError:
            with self._lock:
                self._waiting[:0] = rows
            log.warning("%d usage rows kept in memory still cannot be written", len(rows), exc_info=True)
            return False
        log.warning("%d usage rows kept in memory while the database failed are written now", len(rows))
        return True

    def close(self) -> None:
        """At shutdown: the rows kept are written (tried as :meth:`record` tries); those the
        database still refuses are logged, lost to the bill."""
        for wait in (*self.retries, None):
            if self.flush():
                return
            if wait is not None:
                time.sleep(wait)
        with self._lock:
            lost, self._waiting = self._waiting, []
        log.error("%d usage rows of calls served could not be written before the shutdown; not on the bill: %s",
                  len(lost), lost)


def usage_through(last: date | None) -> date:
    """The last day a usage report covers: ``last`` (the report's ``to``), else today in UTC. Usage
    days, as the monthly quota, are UTC days: the local date (a day ahead east of UTC in the evening)
    named a day no row could be of yet."""
    return last if last is not None else utcnow().date()


def usage_csv(rows: list[dict]) -> str:
    """The usage report as CSV text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["tenant", "day", "operation", "calls", "faces", "errors", "failed"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
