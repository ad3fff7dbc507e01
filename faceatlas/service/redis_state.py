"""The shared state in Redis, for many service processes on one or many machines.

- token buckets: one hash per key, spent by one Lua script (atomic; Redis's clock, so the
  processes' clocks need not agree);
- quota counters: one counter per tenant and month, counted and refunded by Lua scripts. Each
  process also counts its calls in flight (``inflight`` hash, one field per process, the process
  alive while its heartbeat key lives). A counter missing (first call of the month, Redis
  restarted empty) is seeded from the usage table, and every ``quota_reconcile_seconds`` one
  process sets every counter of the month to *billed rows + calls in flight of live processes*:
  the calls a killed process had admitted but never answered stop counting (also at once, for one
  tenant, when they would refuse one of its calls: :meth:`RedisState.spend`). The calls settled
  billed while the table is read are added (a tally in Redis), so a counter is never below the bill;
  a call billed but not yet settled while the table is read counts twice until the next period (the
  side that refuses, never the side that serves beyond the quota), and a counter seeded while no
  call is in flight (the month's first call) is exact. A call counted
  before Redis restarted empty and billed after the counter was seeded again may be in neither
  (its count is gone, its row newer than the seed): each call is counted in an ``instance`` of
  Redis's state (a random id set once Redis starts empty), and a call settling billed in a newer
  instance than its own counts its counter again from the bill. Each process's heartbeat moves
  its calls in flight counted in an older instance into the newest (counter and ``inflight``);
  until every process has beaten once (``restart_grace()``), a restart seen by a process that
  knew the older instance refuses the calls of tenants with a quota (503, Retry-After), so the
  calls in flight across the restart are counted before anyone else's: the quota holds exactly;
- idempotency keys: ``SET NX`` claims, held as long as their call runs (each process refreshes
  its claims with its heartbeat; a killed process's claims free within ``CLAIM_SECONDS``), the
  first answer stored for ``idempotency_seconds``;
- a tenant's places (its collection exports under way, at most ``max_exports_per_tenant``): one
  hash per tenant and kind, a field per process holding any (how many), taken by a Lua script that
  counts only the fields of live processes (their heartbeat key lives) and drops the others': a
  killed process's places free within ``ALIVE_SECONDS``, as its calls in flight stop counting. Each
  process writes its own field again with its heartbeat (a Redis restarted empty gets them back;
  during the restart grace a place is refused, 503, as a quota call is); a release Redis did not
  hear is written by the next heartbeat;
- key lookups: cached for ``key_cache_seconds`` (≤ 1 s), each with the ``keys`` generation it was
  read in; revoking or rotating a key, changing a tenant's quota or deleting it moves the generation
  on (``forget_keys``, after the database committed), so every process reads the key's row again on
  its next call. With Redis unreachable for the revoker, the cache still holds a lookup at most
  ``key_cache_seconds``.

Every key belongs to one database: ``faceatlas:<database id>:<name>`` (``key_prefix``; the id is the
database's ``gallery_identity`` row), so several databases may share one Redis database (staging and
production): the same tenant name, key number, Idempotency-Key or token in two of them are two
things, counted, cached and replayed apart. Keys of earlier versions, without the id
(``faceatlas:quota:<tenant>:<month>``), are no longer read: counters are seeded again from the
usage table, the old keys expire (docs/deploy.md, "Upgrading").

Redis unreachable: every call raises :class:`~faceatlas.errors.StateUnavailable` (503); the
client reconnects by itself on the next call once Redis answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from hashlib import sha256
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis

from faceatlas.errors import IdempotencyInFlight, IdempotencyKeyReused, InvalidSetting, StateUnavailable
from faceatlas.service.accounts import Principal, database_dropped
from faceatlas.service.shared_state import (
    IN_FLIGHT,
    KEY_REUSED,
    CountCalls,
    LoadKey,
    SharedState,
    StoredAnswer,
    month_of,
    same_call,
    seconds_to_next_month,
)
from faceatlas.settings import ServiceSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "faceatlas:"  # every key is ``faceatlas:<database id>:<name>`` (see ``key_prefix``)
MONTH_TTL = 40 * 24 * 3600  # a month's counter outlives its month, then goes
DEAD_CHECK_SECONDS = 2.0  # a refusal looks for a dead process's calls in flight at most this often per tenant
ALIVE_SECONDS = 15  # a process is alive while its key lives: refreshed by its heartbeat and its calls
HEARTBEAT_SECONDS = 5.0
CLAIM_SECONDS = 15  # a claim of an Idempotency-Key lives this long past its process's last heartbeat
INSTANCE_KEY = "instance"  # a random id, set by the first call counted after Redis started empty
DEPLOYMENT_KEY = "deployment"  # a random id: the state this Redis holds for one database's servers
RESTARTED_KEY = "restarted"  # lives restart_grace() after a process saw Redis restarted empty
KEYS_KEY = "keys"  # the generation of key lookups: moved on by every revocation (``forget_keys``)
LEGACY_DEPLOYMENT_KEY = f"{PREFIX}deployment"  # what servers before database-scoped keys set


def key_prefix(database: str) -> str:
    """The start of every key of the state of the database ``database`` (its id,
    ``faceatlas.gallery.database_identity``): ``faceatlas:<id>:``. Databases sharing one Redis
    (staging and production) each count, cache and replay in their own keys; nothing is shared."""
    if not database or any(c in database for c in ":*?[]\\ "):
        raise ValueError(f"a database id is a non-empty name without ':', spaces or glob characters: {database!r}")
    return f"{PREFIX}{database}:"


def restart_grace() -> float:
    """Seconds after a restart of Redis within which every live process has beaten once."""
    return HEARTBEAT_SECONDS + 1.0

_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost elseif rate > 0 then wait = (cost - tokens) / rate else wait = 3600 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.min(86400, math.ceil(burst / math.max(rate, 0.001)) + 60))
return tostring(wait)
"""



def _current_instance(key: int, arg: int) -> str:
    """Lua setting ``instance`` to the instance of Redis's state (``KEYS[key]``), made when Redis
    holds none (``ARGV[arg]``: a new id), with the restart grace (``KEYS[key + 1]``, for
    ``ARGV[arg + 2]`` ms) when this process knew an older one (``ARGV[arg + 1]``; "": none)."""
    return f"""
local instance = redis.call('GET', KEYS[{key}])
if not instance then
  instance = ARGV[{arg}]
  redis.call('SET', KEYS[{key}], instance)
  if ARGV[{arg + 1}] ~= '' then redis.call('SET', KEYS[{key + 1}], '1', 'PX', ARGV[{arg + 2}]) end
end
"""


# KEYS: instance, restarted; ARGV: a new instance id, the instance this process knew, the grace in ms.
_INSTANCE = _current_instance(1, 1) + "return instance\n"

# KEYS: counter, inflight, this process's alive key, instance, restarted; ARGV: quota (-1: none),
# process, ttl, alive ttl, a new instance id, the instance this process knew, the grace in ms.
# -1: seed first; 0: over; -2: Redis restarted, the calls in flight not all counted again yet;
# else counted, in the instance named (the state this Redis holds since it last started empty).
# A process counting calls is alive (also before its next heartbeat after Redis restarted empty):
# a reset keeps its calls in flight.
_SPEND = _current_instance(4, 5) + """
local quota = tonumber(ARGV[1])
if quota >= 0 and redis.call('EXISTS', KEYS[5]) == 1 then return -2 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local count = redis.call('INCR', KEYS[1])
if quota >= 0 and count > quota then redis.call('DECR', KEYS[1]) return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[4])
return instance
"""

# KEYS: counter, inflight, instance, settled; ARGV: process, billed (1/0), the instance the call was
# counted in, ttl. -1: the counter does not hold this call: it was counted in an instance that is
# gone (Redis restarted empty), or its count was dropped (the process taken for dead, its count below
# zero); the caller counts the counter again from the bill, nothing is given back. 0: settled.
# ``settled`` counts the calls settled billed (ever rising): a counter set from the bill adds those
# settled while the bill was read (see ``_RESET``).
_SETTLE = """
if ARGV[2] == '1' then redis.call('INCR', KEYS[4]) redis.call('EXPIRE', KEYS[4], ARGV[4]) end
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if left < 0 then return -1 end
if ARGV[2] == '0' and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""

# KEYS: counter, inflight, instance; ARGV: process, calls, the instance they move into, ttl. Calls
# in flight counted in an older instance, counted again in this one (-1: the instance changed).
_ADOPT = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: counter, inflight, settled; ARGV: billed rows, ttl, alive-key prefix, only-if-missing (1/0),
# ``settled`` before the rows were read. counter := billed rows + calls settled billed since the rows
# were begun to be read (their rows may be missing from the count) + calls in flight of live processes
# (dead processes' fields dropped).
_RESET = """
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local sum = tonumber(redis.call('GET', KEYS[3]) or '0') - tonumber(ARGV[5])
if sum < 0 then sum = 0 end
local h = redis.call('HGETALL', KEYS[2])
for i = 1, #h, 2 do
  if redis.call('EXISTS', ARGV[3] .. h[i]) == 1 then sum = sum + tonumber(h[i + 1])
  else redis.call('HDEL', KEYS[2], h[i]) end
end
redis.call('SET', KEYS[1], tonumber(ARGV[1]) + sum, 'EX', ARGV[2])
return sum
"""

# KEYS: a tenant's places of one kind (a hash: process -> places it holds), this process's alive key,
# instance, restarted; ARGV: the most at once, process, the places this process holds with this one,
# the alive-key prefix, alive ttl, a new instance id, the instance this process knew, the grace in ms.
# 1: taken; 0: the tenant holds the most already; -2: Redis restarted, the places held not all written
# back yet. The places of a process whose heartbeat stopped (its alive key gone) count no more: dropped.
# This process's field is SET, not incremented: what this relies on is that every write of it (this
# script, a release, the heartbeat) sends the process's own count (``RedisState._slots``, the truth)
# read under ``_slot_lock`` with nothing changing it until Redis answered: other threads wait for the
# lock, and a release the garbage collector runs in the same thread meanwhile (a Meter's finalizer) is
# deferred until that write is done (``RedisState._slot_writes``). So the last write is always the
# present count, and a field Redis got wrong (a release it did not hear, a Redis restarted empty) is
# made right by the next write: the take's own (its ARGV[3]) or the heartbeat's.
_TAKE_SLOT = _current_instance(3, 6) + """
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
local held = tonumber(ARGV[3]) - 1
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if h[i] ~= ARGV[2] then
    if redis.call('EXISTS', ARGV[4] .. h[i]) == 1 then held = held + tonumber(h[i + 1])
    else redis.call('HDEL', KEYS[1], h[i]) end
  end
end
if held >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[5])
return 1
"""

# KEYS: claims of Idempotency-Keys; ARGV: ttl, then the value each claim holds while this process's
# call runs. Each still held (not answered, not taken over) lives ttl seconds more; one gone (Redis
# restarted empty) is claimed again.
_REFRESH = """
for i, name in ipairs(KEYS) do
  local held = redis.call('GET', name)
  if held == ARGV[i + 1] then redis.call('EXPIRE', name, ARGV[1])
  elseif not held then redis.call('SET', name, ARGV[i + 1], 'EX', ARGV[1]) end
end
return 0
"""

# KEYS: a claim; ARGV: the value it held while this process's call ran, the answer, ttl. The answer
# is stored only where the claim still holds (or nothing does): a retry that took over an expired
# claim keeps its own answer. 1: stored.
_STORE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: a claim; ARGV: the value it holds while this process's call runs. Deleted only if so.
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') return 1 end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisState(SharedState):
    """The shared state of every process that names the same ``FACEATLAS_REDIS_URL``."""

    def __init__(self, settings: ServiceSettings, count_calls: CountCalls, database: str,
                 client: redis.Redis | None = None) -> None:
        """``database``: the id of the database whose state this is (``gallery.database_identity``):
        every key is scoped by it, so several databases may share one Redis (database number)."""
        assert settings.redis_url is not None
        self.prefix = key_prefix(database)
        self.address = address(settings.redis_url)
        self.redis = client or connect(settings.redis_url)
        self._down = False  # the last call failed: logged once per outage
        self.process = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # host-pid-random
        self._count_calls = count_calls
        self._settings = settings
        self._lock = threading.Lock()
        self._instance = ""  # the instance of Redis's state this process last saw (counting, beating)
        self._counted: dict[tuple[str, str, str], int] = {}  # (tenant, month, instance): calls in flight
        self._dead_checked: dict[str, float] = {}  # tenant: when a refusal last looked for dead processes' calls
        self._take = self.redis.register_script(_TAKE)
        self._spend = self.redis.register_script(_SPEND)
        self._settle = self.redis.register_script(_SETTLE)
        self._reset = self.redis.register_script(_RESET)
        self._adopt = self.redis.register_script(_ADOPT)
        self._current = self.redis.register_script(_INSTANCE)
        self._refresh = self.redis.register_script(_REFRESH)
        self._release = self.redis.register_script(_RELEASE)
        self._replace = self.redis.register_script(_REPLACE)
        self._store = self.redis.register_script(_STORE)
        self._deployment: bytes | str | None = None  # the id of this deployment's state (see ``deployment``)
        with suppress(redis.RedisError):
            self._deployment = self.redis.get(self.name(DEPLOYMENT_KEY))
        self._claims: dict[str, bytes] = {}  # Idempotency-Keys claimed by this process's calls running
        # (kind, tenant) -> the places this process holds, as Redis should have them (0: to delete); a
        # lock of its own, reentrant: a release run by a Meter's finalizer may come while it is held, and
        # is then deferred until the write under way is done (``_slot_writes``)
        self._slots: dict[tuple[str, str], int] = {}
        self._slot_lock = threading.RLock()
        self._slot_writing = False  # a take, release or heartbeat is between reading _slots and Redis's answer
        self._deferred: list[tuple[str, str]] = []  # places freed meanwhile (same thread: the collector)
        self._take_slot = self.redis.register_script(_TAKE_SLOT)
        self._stop = threading.Event()
        self._heartbeat()
        self._threads = [threading.Thread(target=self._background, name="faceatlas-shared-state", daemon=True),
                         threading.Thread(target=self._beat, name="faceatlas-heartbeat", daemon=True)]
        for thread in self._threads:
            thread.start()

    # -- Redis calls, failing as StateUnavailable -------------------------------------------------
    def _call(self, action: Callable[[], T]) -> T:
        """``action``'s answer; Redis failing: :class:`StateUnavailable`, whose message (sent to
        callers) names neither Redis's address nor its error; the log has both, once an outage."""
        try:
            answer = action()
        except redis.RedisError as exc:
            if not self._down:
                log.warning("the shared state (Redis at %s) fails: %s", self.address, exc)
            self._down = True
            raise StateUnavailable("the shared state of the service is unavailable; retry shortly",
                                   retry_after=1.0) from exc
        if self._down:
            log.warning("the shared state (Redis at %s) answers again", self.address)
            self._down = False
        return answer

    def check(self) -> None:
        try:
            check(self.redis, self.address)
        except StateUnavailable as exc:  # gone since serve waited for it (or an app run without serve)
            log.warning("%s; /readyz answers 503 until it can", exc)

    def reachable(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def name(self, *parts: object) -> str:
        """The key ``faceatlas:<database id>:<part>:<part>...`` of this database's state."""
        return self.prefix + ":".join(map(str, parts))

    def _quota_keys(self, tenant_id: str, month: str) -> list[str]:
        return [self.name("quota", tenant_id, month), self.name("inflight", tenant_id, month)]

    def _settled_key(self, tenant_id: str, month: str) -> str:
        return self.name("settled", tenant_id, month)

    # -- rates and quotas --------------------------------------------------------------------------
    def take(self, key_id: int, rate: float, burst: int, cost: float = 1.0) -> float:
        cost = min(float(cost), float(burst))
        wait = self._call(lambda: self._take(keys=[self.name("bucket", key_id)], args=[rate, burst, cost]))
        return float(wait)

    def spend(self, tenant_id: str, quota: int | None, month: str | None = None) -> float:
        month = month or month_of()
        keys = self._quota_keys(tenant_id, month)
        spend_keys = [*keys, self.name("alive", self.process), self.name(INSTANCE_KEY), self.name(RESTARTED_KEY)]
        recounted = False
        for _ in range(3):
            counted = self._call(lambda: self._spend(keys=spend_keys, args=[
                -1 if quota is None else quota, self.process, MONTH_TTL, ALIVE_SECONDS, uuid.uuid4().hex,
                self._instance, int(restart_grace() * 1000)]))
            if isinstance(counted, bytes | str):  # counted in this instance of Redis's state
                instance = counted.decode() if isinstance(counted, bytes) else counted
                with self._lock:
                    self._instance = instance
                    self._counted.setdefault((tenant_id, month, instance), 0)
                    self._counted[(tenant_id, month, instance)] += 1
                return 0.0
            if int(counted) == 0:
                # over the quota, with calls in flight of a dead process counted: counted again from the
                # bill now (a killed process's calls held the tenant refused under its quota until the
                # next reconciliation, up to quota_reconcile_seconds)
                if recounted or not self._dead_in_flight(tenant_id, keys[1]) \
                        or not self._recount(tenant_id, month, "after a process died"):
                    return seconds_to_next_month()
                recounted = True
                continue
            if int(counted) == -2:
                raise StateUnavailable("the shared state (Redis) restarted; quotas are counted again from the calls "
                                       "in flight within seconds", retry_after=restart_grace())
            self._reset_counter(tenant_id, month, only_if_missing=True)
        raise StateUnavailable("the quota counter could not be seeded", retry_after=1.0)

    def _dead_in_flight(self, tenant_id: str, inflight: str) -> bool:
        """Whether a process whose heartbeat stopped (its alive key gone) has calls in flight counted;
        asked of Redis at most once every :data:`DEAD_CHECK_SECONDS` per tenant by this process (each
        refusal of a tenant hammering past its quota cost two more round trips)."""
        now = time.monotonic()
        with self._lock:
            if now - self._dead_checked.get(tenant_id, -DEAD_CHECK_SECONDS) < DEAD_CHECK_SECONDS:
                return False
            self._dead_checked[tenant_id] = now

        def ask() -> bool:
            processes = [p.decode() if isinstance(p, bytes) else str(p) for p in self.redis.hkeys(inflight)]
            with self.redis.pipeline(transaction=False) as pipe:
                for process in processes:
                    pipe.exists(self.name("alive", process))
                return not all(pipe.execute())
        return self._call(ask)

    def _recount(self, tenant_id: str, month: str, why: str) -> bool:
        """The counter set from the bill and the live processes' calls (:meth:`_reset_counter`);
        False when the bill cannot be read (the counter stays as it is: reconciliation mends it)."""
        try:
            return self._reset_counter(tenant_id, month, only_if_missing=False)
        except StateUnavailable:
            raise
        except Exception:  # the database
            log.warning("quota counter of %s not counted again %s", tenant_id, why, exc_info=True)
            return False

    def _settled_instance(self, tenant_id: str, month: str) -> str:
        """The instance a call of the tenant now settling was counted in. Calls are not told apart:
        one counted in an older instance than the newest goes first (a restart of Redis finds calls
        in flight that were admitted before it, and these are answered first), so a mistake only
        makes the counter count one call too many until reconciled, never too few."""
        with self._lock:
            mine = [key for key, n in self._counted.items() if key[:2] == (tenant_id, month) and n > 0]
            if not mine:
                return self._instance
            key = next((k for k in mine if k[2] != self._instance), mine[0])
            self._counted[key] -= 1
            if self._counted[key] == 0:
                del self._counted[key]
            return key[2]

    def settle(self, tenant_id: str, billed: bool, month: str | None = None) -> None:
        month = month or month_of()
        keys = [*self._quota_keys(tenant_id, month), self.name(INSTANCE_KEY), self._settled_key(tenant_id, month)]
        instance = self._settled_instance(tenant_id, month)
        held = int(self._call(lambda: self._settle(keys=keys, args=[self.process, int(billed), instance,
                                                                     MONTH_TTL])))
        if held < 0 and billed:  # its row is on the bill, its count not in the counter: count again
            self._recount(tenant_id, month, "after a restart of Redis")  # failed: the answer stands

    def _reset_counter(self, tenant_id: str, month: str, *, only_if_missing: bool) -> bool:
        """counter := billed rows + calls in flight + calls settled billed while the rows were read
        (their rows may have come after the read; they are no longer in flight). Calls counted after
        the counter is set are counted once, by the counter alone; a call whose row was read and
        which settles before the counter is set counts twice (the refusing side) until the next
        reconciliation. True when it was set."""
        keys = [*self._quota_keys(tenant_id, month), self._settled_key(tenant_id, month)]
        settled = int(self._call(lambda: self.redis.get(keys[2])) or 0)
        billed = self._count_calls(tenant_id)
        done = int(self._call(lambda: self._reset(
            keys=keys, args=[billed, MONTH_TTL, self.name("alive", ""), int(only_if_missing), settled])))
        return done >= 0

    def reconcile(self) -> int:
        """Every counter of this month from the usage table (one process at a time)."""
        month = month_of()
        lock = self.name("reconcile", month)
        if not self._call(lambda: self.redis.set(lock, self.process, nx=True, ex=30)):
            return 0
        try:
            pattern = f"{_glob_escaped(self.name('quota'))}:*:{month}"  # this database's counters only
            keys = self._call(lambda: list(self.redis.scan_iter(match=pattern, count=500)))
            tenants = [key.decode().removeprefix(self.name("quota", "")).rsplit(":", 1)[0] for key in keys]
            return sum(self._reset_counter(tenant, month, only_if_missing=False) for tenant in tenants)
        finally:
            self._call(lambda: self.redis.delete(lock))

    # -- a tenant's places (its exports under way) ------------------------------------------------------
    def _slot_name(self, kind: str, tenant_id: str) -> str:
        return self.name("slots", kind, tenant_id)

    @contextmanager
    def _slot_writes(self) -> Iterator[None]:
        """The slot lock, held while this thread reads ``_slots`` and writes them to Redis. A release
        that comes meanwhile can only be this thread's (the lock is held): the garbage collector running
        a Meter's finalizer inside the Redis call. Run there, it would change ``_slots`` and write its
        count before the interrupted write sends (or stores) the count read before it: a release lost
        (the place held for the life of the process) or a place resurrected in Redis. So it is deferred
        (:meth:`_freed`) and done here, after the interrupted write, in the same hold of the lock."""
        with self._slot_lock:
            if self._slot_writing:  # nested in this thread (a deferred release's own write): already guarded
                yield
                return
            self._slot_writing = True
            try:
                yield
            finally:
                self._slot_writing = False
                while self._deferred:  # each freed now (a release re-entered in that one is deferred again)
                    self._free(self._deferred.pop(0))

    def take_slot(self, kind: str, tenant_id: str, limit: int) -> Callable[[], None] | None:
        held = (kind, tenant_id)
        keys = [self._slot_name(kind, tenant_id), self.name("alive", self.process), self.name(INSTANCE_KEY),
                self.name(RESTARTED_KEY)]
        with self._slot_writes():  # nothing changes _slots[held] before Redis answered (see _TAKE_SLOT)
            mine = self._slots.get(held, 0) + 1
            try:
                taken = int(self._call(lambda: self._take_slot(keys=keys, args=[
                    limit, self.process, mine, self.name("alive", ""), ALIVE_SECONDS, uuid.uuid4().hex,
                    self._instance, int(restart_grace() * 1000)])))
            except StateUnavailable:  # refused; Redis may have taken it all the same: the heartbeat writes it back
                self._slots.setdefault(held, mine - 1)
                raise
            if taken == -2:
                raise StateUnavailable("the shared state (Redis) restarted; the places held are written again "
                                       "within seconds", retry_after=restart_grace())
            if taken == 0:
                return None
            self._slots[held] = mine
        freed = False

        def release() -> None:
            nonlocal freed
            if _on_event_loop():  # never blocks a loop (a Redis call of up to 1 s, or the lock held as long)
                with suppress(RuntimeError):  # no new thread at interpreter shutdown: freed here then
                    threading.Thread(target=release, name="faceatlas-slot-release", daemon=True).start()
                    return
            with self._slot_lock:
                if freed:
                    return
                freed = True
                if self._slot_writing:  # re-entered in this thread by the collector: once that write is done
                    self._deferred.append(held)
                    return
                self._free(held)

        return release

    def _free(self, held: tuple[str, str]) -> None:
        """One place of ``held`` (kind, tenant) freed, in ``_slots`` and in Redis (never raising:
        Redis not hearing it, the next heartbeat writes it)."""
        with self._slot_writes():
            self._slots[held] = max(0, self._slots.get(held, 1) - 1)
            try:
                self._write_slots([held])
            except redis.RedisError as exc:  # freed here; Redis hears it at the next heartbeat
                log.warning("the shared state (Redis at %s) did not hear an export's place freed (%s); "
                            "the next heartbeat writes it", self.address, exc)

    def _write_slots(self, held: list[tuple[str, str]]) -> None:
        """Write this process's places of ``held`` (kind, tenant) as it holds them (within
        :meth:`_slot_writes`); those it holds no more are forgotten once written."""
        if not held:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for kind, tenant_id in held:
                name, count = self._slot_name(kind, tenant_id), self._slots.get((kind, tenant_id), 0)
                if count > 0:
                    pipe.hset(name, self.process, count)
                    pipe.expire(name, ALIVE_SECONDS)
                else:
                    pipe.hdel(name, self.process)
            pipe.execute()
        for key in held:
            if self._slots.get(key) == 0:
                del self._slots[key]

    # -- keys and idempotency ------------------------------------------------------------------------
    def principal(self, token: str, load: LoadKey) -> Principal | None:
        ttl_ms = int(self._settings.key_cache_seconds * 1000)
        if ttl_ms <= 0:
            return load(token)
        # "lookup", not the "key" of versions before generations: each version reads only its own
        # entries in a rolling upgrade (an older one read this shape as a principal: a KeyError, a 500)
        name = self.name("lookup", sha256(token.encode()).hexdigest())
        try:
            cached, generation = self.redis.mget(name, self.name(KEYS_KEY))
        except redis.RedisError:
            return load(token)  # the cache is an optimisation: the database answers alone
        now = _text(generation)
        if cached is not None:
            entry = json.loads(cached)
            if isinstance(entry, dict) and "principal" in entry and entry.get("keys") == now:  # else: stale
                return _principal_from(entry["principal"])
        principal = load(token)  # read after the generation: a revocation since moves it on again
        with suppress(redis.RedisError):
            self.redis.set(name, json.dumps({"keys": now, "principal": _principal_to(principal)}), px=ttl_ms)
        return principal

    def forget_keys(self) -> None:
        forget_keys(self.redis, self.prefix, self.address)

    def _claim_name(self, scope: str, key: str) -> str:
        return self.name("idem", scope, sha256(key.encode()).hexdigest())

    def begin_idempotent(self, scope: str, key: str, fingerprint: str = "") -> StoredAnswer | None:
        # one value per key: "<status> <fingerprint> <media type>\n<body>"; while the call runs:
        # "0 <fingerprint> <process>", refreshed by the process's heartbeat
        name = self._claim_name(scope, key)
        fingerprint = _one_word(fingerprint)
        claim = f"0 {fingerprint} {self.process}".encode()
        claimed = bool(self._call(lambda: self.redis.set(name, claim, nx=True, ex=CLAIM_SECONDS)))
        if claimed:
            with self._lock:  # from now on refreshed by the heartbeat
                self._claims[name] = claim
            return None
        stored = self._call(lambda: self.redis.get(name))
        if isinstance(stored, str):
            stored = stored.encode()
        status, claimed_for, media_type, path, body = _stored(stored)
        if not same_call(claimed_for, fingerprint):
            raise IdempotencyKeyReused(KEY_REUSED)
        if not status or status == "0":  # running (or freed between the two calls: rare, and retried)
            raise IdempotencyInFlight(IN_FLIGHT, retry_after=self._claim_wait(name, media_type))
        return StoredAnswer(int(status), body, media_type if claimed_for else "application/json", path)

    def replace_answers(self, scope: str, match: Callable[[StoredAnswer], bool], replacement: StoredAnswer) -> int:
        return self._call(lambda: _replace_answers(self.redis, self._replace, self.name("idem", scope), match,
                                                   replacement))

    def _claim_wait(self, name: str, process: str) -> float:
        """Seconds until a call holding the claim ``name`` may be retried: a second while its process
        lives (the call may finish any moment), else the claim's time left (it frees by itself then:
        sooner retries would all be refused)."""
        if not process:
            return 1.0
        def ask() -> list[int]:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(self.name("alive", process))
            pipe.pttl(name)
            return pipe.execute()

        alive, left_ms = self._call(ask)
        return 1.0 if alive or left_ms <= 0 else max(1.0, left_ms / 1000)

    def finish_idempotent(self, scope: str, key: str, answer: StoredAnswer | None, fingerprint: str = "") -> None:
        name = self._claim_name(scope, key)
        with self._lock:
            claim = self._claims.pop(name, None)
        if answer is None:
            if claim is not None:  # never another process's claim (this one's may have expired)
                self._call(lambda: self._release(keys=[name], args=[claim]))
            return
        media_type = "".join(answer.media_type.split())  # "text/csv; charset=utf-8": one word in the head
        value = f"{answer.status} {_one_word(fingerprint)} {media_type} {answer.path}\n".encode() + answer.body
        stored = self._call(lambda: self._store(keys=[name], args=[claim or b"", value,
                                                                    self._settings.idempotency_seconds]))
        if not int(stored):  # this process stalled past its claim (SIGSTOP, a paused VM) and a retry ran
            log.error("the call with Idempotency-Key %r ran twice: this process stalled past its claim and a "
                      "retry took it over; the answer the retry got stands", key)

    def abandon(self, scope: str, key: str) -> None:
        with self._lock:
            self._claims.pop(self._claim_name(scope, key), None)

    # -- background: heartbeat and reconciliation ----------------------------------------------------
    def _heartbeat(self) -> None:
        """This process is alive, and so are the calls it runs: their claims and places live on, and
        their counts move into the newest instance of Redis's state (see :meth:`_follow`)."""
        with suppress(redis.RedisError):
            self.redis.set(self.name("alive", self.process), b"1", ex=ALIVE_SECONDS)
            with self._lock:  # a call finishing now releases its claim after this, never before
                if self._claims:
                    self._refresh(keys=list(self._claims), args=[CLAIM_SECONDS, *self._claims.values()])
            with self._slot_writes():  # its places: back into a Redis restarted empty, releases it missed
                self._write_slots(list(self._slots))
            self._follow()
            self._keep_deployment()

    def _keep_deployment(self) -> None:
        """The deployment id back in a Redis restarted empty (before a new server makes another)."""
        known = self._deployment
        if known is None:
            self._deployment = self.redis.get(self.name(DEPLOYMENT_KEY))
        else:
            self.redis.set(self.name(DEPLOYMENT_KEY), known, nx=True)

    def _follow(self) -> None:
        """Learn the instance of Redis's state (making it, and the restart grace, when Redis
        restarted empty); count this process's calls in flight of older instances in it."""
        instance = self._current(keys=[self.name(INSTANCE_KEY), self.name(RESTARTED_KEY)],
                                 args=[uuid.uuid4().hex, self._instance, int(restart_grace() * 1000)])
        instance = instance.decode() if isinstance(instance, bytes) else str(instance)
        with self._lock:  # held across the moves: a settle meanwhile would take a call moved or not
            for (tenant_id, month, old), calls in list(self._counted.items()):
                if old == instance or calls <= 0:
                    continue
                moved = self._adopt(keys=[*self._quota_keys(tenant_id, month), self.name(INSTANCE_KEY)],
                                    args=[self.process, calls, instance, MONTH_TTL])
                if int(moved) < 0:  # the instance changed again: the next beat
                    return
                del self._counted[(tenant_id, month, old)]
                self._counted[(tenant_id, month, instance)] = self._counted.get((tenant_id, month, instance), 0) + calls
            self._instance = instance

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._heartbeat()

    def _background(self) -> None:
        period = self._settings.quota_reconcile_seconds
        failing = False  # the database dropped at the last try: said once, in one line, until it answers
        while True:
            try:
                self.reconcile()
                if failing:
                    log.warning("quota reconciliation works again")
                failing = False
            except StateUnavailable:  # Redis down: said once by _call; the next period tries again
                pass
            except Exception as exc:  # the next period tries again
                if not database_dropped(exc):  # a fault of another kind: its traceback, each time
                    log.warning("quota reconciliation failed; retrying in %ss", period, exc_info=True)
                elif not failing:  # the database down (logged by the calls that met it): no traceback a period
                    why = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:200]
                    log.warning("quota reconciliation failed: the database cannot be reached (%s); retrying "
                                "every %ss", why, period)
                failing = database_dropped(exc)
            if self._stop.wait(period):
                return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with suppress(redis.RedisError):
            self.redis.delete(self.name("alive", self.process))
        self.redis.close()


def _replace_answers(client: redis.Redis, replace: Any, scope: str, match: Callable[[StoredAnswer], bool],
                     replacement: StoredAnswer) -> int:
    """``SharedState.replace_answers`` in the Redis of ``client``, ``scope`` the start of the names
    of a tenant's keys (``<prefix>idem:<tenant>``), ``replace`` the registered :data:`_REPLACE`:
    each value is replaced unless it changed meanwhile (a claim answered, another erasure)."""
    pattern = f"{_glob_escaped(scope)}:*"
    names = list(client.scan_iter(match=pattern, count=500))
    replaced = 0
    for start in range(0, len(names), 500):  # read 500 at a time (one GET each took 3.7 s for 10,000)
        batch = names[start:start + 500]
        for name, value in zip(batch, client.mget(batch), strict=True):
            if value is None:
                continue
            status, call, media_type, path, body = _stored(value)
            if status and status != "0" and match(StoredAnswer(int(status), body, media_type, path)):
                head = f"{replacement.status} {call} {replacement.media_type} {replacement.path}\n"
                replaced += int(replace(keys=[name], args=[value, head.encode() + replacement.body]))  # unless changed
    return replaced


class RedisAnswers:
    """The stored ``Idempotency-Key`` answers that the servers of one database (its id) keep in the
    Redis at ``url``, for a door that is no server (the CLI's erasures, ``tenants.deployment_answers``):
    an :class:`~faceatlas.service.shared_state.AnswerStore` replacing them as a server does, one
    connection a call. Redis unreachable: :class:`StateUnavailable`."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.prefix = key_prefix(database)

    def replace_answers(self, scope: str, match: Callable[[StoredAnswer], bool], replacement: StoredAnswer) -> int:
        client = connect(self.url)
        try:
            return _replace_answers(client, client.register_script(_REPLACE), f"{self.prefix}idem:{scope}", match,
                                    replacement)
        except redis.RedisError as exc:
            raise StateUnavailable(f"the shared state (Redis at {address(self.url)}) cannot be reached to replace "
                                   f"the stored answers: {exc}", retry_after=1.0) from exc
        finally:
            client.close()


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (a route's error path, a finalizer or a generator
    closed by the garbage collector in the server's loop): a blocking call here stalls every call."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _glob_escaped(text: str) -> str:
    """``text`` matching itself in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _one_word(fingerprint: str) -> str:
    """``fingerprint`` as one word of a stored value's head (its fields are split at blanks): a
    fingerprint with a blank or a line break (the console's forms named theirs "console <path>",
    and a second sending was refused as another call's) by its SHA-256."""
    return fingerprint if not any(c.isspace() for c in fingerprint) else sha256(fingerprint.encode()).hexdigest()


def _stored(value: bytes | str | None) -> tuple[str, str, str, str, bytes]:
    """Status, fingerprint, media type, path and body of an Idempotency-Key's value: "<status>
    <fingerprint> <media type> <path>\n<body>" (a claim: "0 <fingerprint> <process>"; values
    written before paths have none, before fingerprints "<status>\n<body>")."""
    raw = value.encode() if isinstance(value, str) else value or b""
    head, _, body = raw.partition(b"\n")
    status, fingerprint, media_type, path = (head.decode().split(" ", 3) + ["", "", ""])[:4]
    return status, fingerprint, media_type, path, body


def connect(url: str) -> redis.Redis:
    """A client of the Redis at ``url`` (connected on first use; calls time out after 1 s)."""
    try:
        return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry_on_timeout=False)
    except ValueError as exc:  # an option of the URL's query (the URL itself passed the settings)
        raise InvalidSetting(f"FACEATLAS_REDIS_URL ({address(url)}): {exc}") from None


def forget_keys(client: redis.Redis, prefix: str, where: str) -> None:
    """Move the generation of key lookups of the database whose keys start ``prefix`` on: every
    lookup cached before is read again from the database. Redis unreachable: logged, not raised
    (the revocation is committed; cached lookups expire within ``key_cache_seconds``)."""
    try:
        client.incr(prefix + KEYS_KEY)
    except redis.RedisError as exc:
        log.warning("the shared state (Redis at %s) cannot be told of a revoked key: %s; servers may still "
                    "accept it for up to FACEATLAS_KEY_CACHE_SECONDS", where, exc)


def keys_forgetter(url: str, database: Callable[[], str]) -> Callable[[], None]:
    """For a door that is no server (the CLI): a ``keys_changed`` for ``Accounts`` that tells the
    servers of the database whose id ``database`` gives, sharing the Redis at ``url``, to read keys
    again (the id asked when a key changed, not before)."""

    def forget() -> None:  # after the commit: told or logged, never raised (the key is revoked)
        try:
            client = connect(url)
            try:
                forget_keys(client, key_prefix(database()), address(url))
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - after the commit: a URL option, an unreadable id: the revocation stands
            log.warning("the servers sharing the Redis at %s could not be told of a revoked key (%s): they may "
                        "still accept it for up to FACEATLAS_KEY_CACHE_SECONDS", address(url), exc)

    return forget


def forget_scope(url: str, database: str, scope: str) -> int:
    """Delete every Idempotency-Key of ``scope`` (a tenant: its claims and stored answers) of the
    database ``database`` (its id) from the Redis at ``url``; returns how many. For a deleted tenant:
    its answers (subjects' names, faces' boxes) would otherwise stay in Redis until their keys
    expire. Redis unreachable: :class:`StateUnavailable` (run the deletion again)."""
    client = connect(url)
    try:
        pattern = f"{_glob_escaped(key_prefix(database) + 'idem:' + scope)}:*"
        names = list(client.scan_iter(match=pattern, count=500))
        return sum(int(client.delete(*names[i : i + 500])) for i in range(0, len(names), 500))
    except redis.RedisError as exc:
        raise StateUnavailable(f"the shared state (Redis at {address(url)}) cannot be reached to delete the "
                               f"tenant's stored answers: {exc}; run the deletion again", retry_after=1.0) from exc
    finally:
        client.close()


def check(client: redis.Redis, where: str) -> None:
    """At start: a Redis that refuses this server (no or a wrong password, a database number it
    does not have) is :class:`InvalidSetting`, which stops the start; one unreachable now is
    :class:`StateUnavailable`, to wait for (``faceatlas serve`` waits before it starts; a
    process's app already started answers ``/readyz`` 503 until Redis answers)."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise InvalidSetting(
            f"FACEATLAS_REDIS_URL: Redis at {where} refused this server's credentials ({exc}); "
            "give them in the URL: redis://[user]:password@host:port/database") from None
    except redis.ResponseError as exc:
        raise InvalidSetting(f"FACEATLAS_REDIS_URL: Redis at {where} refused this server: {exc}") from None
    except redis.RedisError as exc:
        if _plain_behind_tls(client):
            raise InvalidSetting(f"FACEATLAS_REDIS_URL: Redis at {where} speaks no TLS (it answers plain commands), "
                                 "so rediss:// waits for a handshake that never comes: use redis://, or turn "
                                 "TLS on in that Redis") from None
        raise StateUnavailable(f"the shared state (Redis at {where}) cannot be reached yet ({exc})",
                               retry_after=1.0) from None


def _plain_behind_tls(client: redis.Redis) -> bool:
    """Whether ``client`` asks for TLS (``rediss://``) of a Redis that answers a plain PING."""
    options = client.connection_pool.connection_kwargs
    if client.connection_pool.connection_class is not redis.SSLConnection or "host" not in options:
        return False
    try:
        with socket.create_connection((options["host"], options.get("port", 6379)), timeout=1.0) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(1)[:1] in (b"+", b"-")  # +PONG, or -NOAUTH: a Redis reply
    except OSError:
        return False


def deployment(client: redis.Redis, database: str, alone: bool) -> str:
    """The id of the shared state of the database ``database`` (its id) in this Redis: every server
    of one database must name the same (``service.lease``); servers of other databases sharing this
    Redis have ids of their own, under their own keys. Made here when Redis holds none for this
    database and this server is ``alone`` on it; else waited for (``restart_grace``): the servers
    running put it back into a Redis restarted empty with their heartbeat; still none, they use
    another Redis (or run a FaceAtlas from before database-scoped keys): :class:`InvalidSetting`.
    Redis unreachable: :class:`StateUnavailable`."""
    key = key_prefix(database) + DEPLOYMENT_KEY
    try:
        found = client.get(key)
        if found is None and alone:
            client.set(key, uuid.uuid4().hex, nx=True)
            found = client.get(key)
        deadline = time.monotonic() + restart_grace()
        while found is None and time.monotonic() < deadline:
            time.sleep(0.2)
            found = client.get(key)
        legacy = found is None and bool(client.exists(LEGACY_DEPLOYMENT_KEY))
    except redis.RedisError as exc:
        raise StateUnavailable(f"the shared state (Redis) cannot be reached to read this database's deployment "
                               f"id: {exc}", retry_after=1.0) from exc
    if found is None:
        older = (" (or they run an older FaceAtlas, whose state in this Redis is not kept per database: "
                 "stop every server of this database, then start them all on this version)") if legacy else ""
        raise InvalidSetting("the other servers of this database use another Redis (this one holds no FaceAtlas "
                             f"state of this database){older}: give every server the same FACEATLAS_REDIS_URL")
    return found.decode() if isinstance(found, bytes) else str(found)


def address(url: str) -> str:
    """The URL without its credentials: what messages and logs may show."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _principal_to(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {"tenant_id": principal.tenant_id, "key_id": principal.key_id, "scopes": sorted(principal.scopes),
            "rate_per_second": principal.rate_per_second, "burst": principal.burst,
            "monthly_quota": principal.monthly_quota}


def _principal_from(data: dict[str, Any] | None) -> Principal | None:
    if data is None:
        return None
    return Principal(data["tenant_id"], data["key_id"], frozenset(data["scopes"]), data["rate_per_second"],
                     data["burst"], data["monthly_quota"])
