"""The state every process of the service must agree on: per-key token buckets, per-tenant
monthly quota counters, idempotency keys of write calls, each tenant's places of the calls it may
run only so many of at once (its collection exports) and the cache of key lookups.

One interface, :class:`SharedState`, two implementations: :class:`MemoryState` (one process:
the state lives in its memory, today's behaviour) and ``RedisState`` (many processes on one or
many machines: the state lives in Redis, see :mod:`faceatlas.service.redis_state`).
The app picks one from ``FACEATLAS_REDIS_URL`` (``service.app.open_shared_state``).

The bill is the usage table in the database (committed before an answer leaves); the quota
counter is a fast copy of it, reconciled from the table (see ``RedisState.reconcile``).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from faceatlas.db import utcnow
from faceatlas.errors import IdempotencyInFlight, IdempotencyKeyReused
from faceatlas.service.accounts import Principal
from faceatlas.service.ratelimit import TokenBuckets
from faceatlas.settings import ServiceSettings

IN_FLIGHT = "a call with this Idempotency-Key is still running; retry once it answered"
CountCalls = Callable[[str], int]  # billed calls of a tenant this month, from the usage table
LoadKey = Callable[[str], "Principal | None"]  # a presented key's principal, from the database


KEY_REUSED = ("this Idempotency-Key was used for another call (method, path, query or body); "
              "use a new key for a new call")


def same_call(first: str, again: str) -> bool:
    """Whether two fingerprints of calls with one ``Idempotency-Key`` name one call (an empty
    one, from a claim stored before fingerprints, matches any)."""
    return not first or not again or first == again


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer of a write call with an ``Idempotency-Key``: what a retry gets back."""

    status: int
    body: bytes
    media_type: str = "application/json"  # "": none (a 204)
    path: str = field(default="", compare=False)  # the call's path: an erasure forgets the answers under it


class AnswerStore(Protocol):
    """Where the stored answers of ``Idempotency-Key`` calls are replaced by an erasure: a server's
    :class:`SharedState`, or for a door that is no server (the CLI) the Redis its servers share
    (``redis_state.RedisAnswers``)."""

    def replace_answers(self, scope: str, match: Callable[[StoredAnswer], bool], replacement: StoredAnswer) -> int:
        """See :meth:`SharedState.replace_answers`."""
        ...


class SharedState(ABC):
    """Rates, quotas, idempotency keys and key lookups, shared by every process of the service.
    Every method may raise :class:`~faceatlas.errors.StateUnavailable` (Redis unreachable): the
    call is then refused, never served unmetered."""

    @abstractmethod
    def take(self, key_id: int, rate: float, burst: int, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of the key's bucket: 0.0 when the call may proceed, else the
        seconds until it could (the Retry-After)."""

    @abstractmethod
    def spend(self, tenant_id: str, quota: int | None, month: str | None = None) -> float:
        """Count one call against the tenant's ``month`` (default: this one): 0.0 when within
        ``quota`` (and counted), else the seconds until the month ends."""

    @abstractmethod
    def settle(self, tenant_id: str, billed: bool, month: str | None = None) -> None:
        """A call counted by :meth:`spend` in ``month`` is over (its usage row written): unless
        ``billed`` (answered 5xx, or refused after spending), give its count back."""

    @abstractmethod
    def take_slot(self, kind: str, tenant_id: str, limit: int) -> Callable[[], None] | None:
        """One of the at most ``limit`` places of ``kind`` (``"exports"``: a tenant's collection
        exports, each a copy of its collection in TMPDIR until its download ends) that
        ``tenant_id`` may hold at once across every process, and what frees it (once, however often
        it is called; never raising, never blocking an event loop's thread: it may be called there,
        by a route or by the garbage collector, as a Meter's finalizer; and it may be called by the
        collector in the thread of a take or a release under way), or None when the tenant holds
        ``limit`` already. A place held by a process that died is freed as its Idempotency-Key claims are."""

    @abstractmethod
    def principal(self, token: str, load: LoadKey) -> Principal | None:
        """The principal of a presented key, from a cache of at most ``key_cache_seconds``."""

    def forget_keys(self) -> None:  # noqa: B027 - memory keeps no key cache
        """Drop the cached key lookups of every process (a key was revoked, a quota changed): the
        next call of each key reads its row (``Accounts.keys_changed``)."""

    @abstractmethod
    def begin_idempotent(self, scope: str, key: str, fingerprint: str = "") -> StoredAnswer | None:
        """Claim ``key`` (within ``scope``, the tenant) for the call ``fingerprint`` names (method,
        path, query, body): None when this call runs, the stored first answer when it ran already;
        :class:`IdempotencyInFlight` while it runs; :class:`IdempotencyKeyReused` when the key
        was claimed for another call (an empty fingerprint matches any)."""

    @abstractmethod
    def finish_idempotent(self, scope: str, key: str, answer: StoredAnswer | None, fingerprint: str = "") -> None:
        """Store the answer of a claimed key (a retry gets it back), or release the claim
        (``None``: the call failed, a retry runs it again). A claim is held as long as its call
        runs, however long; only the death of its process (or :meth:`abandon`) frees it unanswered."""

    @abstractmethod
    def replace_answers(self, scope: str, match: Callable[[StoredAnswer], bool], replacement: StoredAnswer) -> int:
        """Replace the stored answers of ``scope`` for which ``match`` is true with ``replacement``,
        each key keeping its call and its expiry (an erasure: the answers that name what was
        erased become one that names nothing, and a retry is still answered, never run again);
        returns how many."""

    @abstractmethod
    def abandon(self, scope: str, key: str) -> None:
        """Stop holding a claim of this process's without a word to the store (no I/O: for a call
        cancelled mid-way); the claim frees by itself as a dead process's does."""

    def reconcile(self) -> int:
        """Set the quota counters from the usage table; returns how many tenants it set."""
        return 0

    def check(self) -> None:  # noqa: B027 - memory needs no check
        """At start: :class:`~faceatlas.errors.InvalidSetting` when the state refuses this server."""

    def reachable(self) -> bool:
        """Whether the state answers now (``/readyz``)."""
        return True

    def close(self) -> None:  # noqa: B027 - nothing to close in memory
        """Stop background work and drop connections."""


def seconds_to_next_month(now: datetime | None = None) -> float:
    now = now or utcnow()
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    return (first - now).total_seconds()


def month_of(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


class TenantSlots:
    """At most ``limit`` of one kind of call per tenant at once, in this process (a tenant's
    collection exports, each a copy of its collection in TMPDIR until its download ends): the
    places of :class:`MemoryState` (one process: ``--processes > 1`` needs Redis)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()
        # reentrant: a place's release is also a weakref.finalize callback (metered's ``hold``), which the
        # garbage collector may run in this thread while it holds the lock (in take or held): a Lock deadlocked
        self._lock = threading.RLock()

    def held(self, tenant_id: str) -> int:
        with self._lock:
            return self._held[tenant_id]

    def take(self, tenant_id: str, limit: int | None = None) -> Callable[[], None] | None:
        """A place for ``tenant_id`` and what frees it (once, however often it is called), or None
        when the tenant holds ``limit`` already (given: the new limit, from now on, set under the lock)."""
        with self._lock:
            if limit is not None:
                self.limit = limit
            if self._held[tenant_id] >= self.limit:
                return None
            self._held[tenant_id] += 1
        freed = False

        def release() -> None:
            nonlocal freed
            with self._lock:
                if freed:
                    return
                freed = True
                self._held[tenant_id] -= 1
                if self._held[tenant_id] <= 0:
                    del self._held[tenant_id]

        return release


class MemoryState(SharedState):
    """The state of one process, in its memory: quota counts read from the usage table once per
    tenant and month, then counted here; no key cache (every call reads the key's row)."""

    def __init__(self, count_calls: CountCalls, settings: ServiceSettings) -> None:
        self._count_calls = count_calls
        self._buckets = TokenBuckets()
        self._counts: dict[str, tuple[str, int]] = {}
        # (scope, key) -> (expiry, fingerprint, answer), oldest first; the claims of calls running: apart
        self._answers: OrderedDict[tuple[str, str], tuple[float, str, StoredAnswer]] = OrderedDict()
        self._running: dict[tuple[str, str], str] = {}  # (scope, key) -> fingerprint
        self._lock = threading.Lock()
        self._idempotency_seconds = settings.idempotency_seconds
        self._slots: dict[str, TenantSlots] = {}  # kind -> each tenant's places of it in this process

    def take(self, key_id: int, rate: float, burst: int, cost: float = 1.0) -> float:
        return self._buckets.take(key_id, rate, burst, cost)

    def spend(self, tenant_id: str, quota: int | None, month: str | None = None) -> float:
        month = month or month_of()
        with self._lock:
            cached = self._counts.get(tenant_id)
            count = cached[1] if cached and cached[0] == month else self._count_calls(tenant_id)
            if quota is not None and count >= quota:
                self._counts[tenant_id] = (month, count)
                return seconds_to_next_month()
            self._counts[tenant_id] = (month, count + 1)
            return 0.0

    def settle(self, tenant_id: str, billed: bool, month: str | None = None) -> None:
        if billed:
            return
        with self._lock:
            cached = self._counts.get(tenant_id)
            if cached is not None and cached[1] > 0 and cached[0] == (month or month_of()):
                self._counts[tenant_id] = (cached[0], cached[1] - 1)

    def take_slot(self, kind: str, tenant_id: str, limit: int) -> Callable[[], None] | None:
        with self._lock:
            slots = self._slots.setdefault(kind, TenantSlots(limit))
        return slots.take(tenant_id, limit)  # the limit set under the slots' lock, with the take

    def principal(self, token: str, load: LoadKey) -> Principal | None:
        return load(token)

    def begin_idempotent(self, scope: str, key: str, fingerprint: str = "") -> StoredAnswer | None:
        now = time.monotonic()
        with self._lock:
            while self._answers and next(iter(self._answers.values()))[0] < now:  # oldest first
                self._answers.popitem(last=False)
            running = self._running.get((scope, key))
            if running is not None:
                if not same_call(running, fingerprint):
                    raise IdempotencyKeyReused(KEY_REUSED)
                raise IdempotencyInFlight(IN_FLIGHT, retry_after=1.0)
            stored = self._answers.get((scope, key))
            if stored is not None:
                if not same_call(stored[1], fingerprint):
                    raise IdempotencyKeyReused(KEY_REUSED)
                return stored[2]
            self._running[(scope, key)] = fingerprint
            return None

    def finish_idempotent(self, scope: str, key: str, answer: StoredAnswer | None, fingerprint: str = "") -> None:
        with self._lock:
            self._running.pop((scope, key), None)
            if answer is not None:
                self._answers[(scope, key)] = (time.monotonic() + self._idempotency_seconds, fingerprint, answer)
                self._answers.move_to_end((scope, key))

    def replace_answers(self, scope: str, match: Callable[[StoredAnswer], bool], replacement: StoredAnswer) -> int:
        # matched outside the lock, which every metered call's quota takes (each erasure held it while it
        # parsed every stored answer: 0.9 s at 50,000, every call waiting); replaced unless changed meanwhile
        with self._lock:
            held = [(name, answer) for name, (_, _, answer) in self._answers.items() if name[0] == scope]
        named = [(name, answer) for name, answer in held if match(answer)]
        replaced = 0
        with self._lock:
            for name, answer in named:
                stored = self._answers.get(name)
                if stored is not None and stored[2] is answer:
                    self._answers[name] = (stored[0], stored[1], replacement)
                    replaced += 1
        return replaced

    def abandon(self, scope: str, key: str) -> None:
        with self._lock:
            self._running.pop((scope, key), None)
