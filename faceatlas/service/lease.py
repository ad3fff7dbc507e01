"""A server's hold on its database: the check that two servers never count rates and quotas apart.

Without ``FACEATLAS_REDIS_URL`` a server counts every key's rate and every tenant's quota in its own
memory, so it must be the only server of its database: it holds the database **exclusively**.
With Redis, servers count together, and each holds the database **shared** — any number of them,
none beside a server without Redis — and names the shared state it counts in (the deployment id
of this database in its Redis, ``redis_state.deployment``): servers of one database naming two (two
Redis, or two database numbers of one) are refused too. The id is kept under the database's own id
(as every key of its state), so other databases' servers on the same Redis are no concern of this
check: their state never meets this database's. Every hold is one the operating system or the database
drops by itself when the process dies (no stale row to clean after a ``kill -9``):

- PostgreSQL: session-level advisory locks on one connection kept open, per database and schema
  (the tables' schema, first on the search path: other FaceAtlas installs in other schemas of one
  database are not in the way); the deployment a shared lock of its own, others' read in ``pg_locks``;
- an SQLite file: ``flock`` on the database file itself (a symlink or a hard link to it is the same
  file), and on ``<file>.redis-<id>.lock`` beside its real path for the deployment (a hard link
  elsewhere escapes this second check, not the first);
- an in-memory SQLite database is this process's alone: nothing to hold.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import time
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from faceatlas.db import create_database_engine, normalize_url, sqlite_path
from faceatlas.errors import InvalidSetting

__all__ = ["Identity", "ServerLease"]

Identity = Callable[[bool], str]  # this database's deployment id in Redis, given whether this server is alone
LOCK_CLASS = 0x46_41_43_45  # "FACE": the advisory locks of FaceAtlas servers (the second key: the schema's hash)
ALONE = ("another FaceAtlas server serves this database: a server without FACEATLAS_REDIS_URL counts rates and "
         "quotas in its own memory and must be the only one (each would grant every key's full rate and every "
         "tenant's full quota); stop the other, or set the same FACEATLAS_REDIS_URL on every server")
BESIDE_ALONE = ("a FaceAtlas server without FACEATLAS_REDIS_URL serves this database and counts rates and quotas "
                "in its own memory; stop it, or restart it with this server's FACEATLAS_REDIS_URL")
OTHER_REDIS = ("the other servers of this database count rates and quotas in another Redis (or another database "
               "number of it): each Redis would grant every tenant's full quota; give every server the same "
               "FACEATLAS_REDIS_URL")


def _key(text_: str) -> int:
    """A signed 32-bit key for an advisory lock."""
    value = zlib.crc32(text_.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


class ServerLease:
    """Held from :meth:`take` to :meth:`release` (or the process's end) by ``faceatlas serve``'s
    process (with ``--processes N``, the parent of the N workers)."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._fds: list[int] = []

    @classmethod
    def take(cls, url: str, *, redis_identity: Identity | None = None) -> ServerLease:
        """Hold the database ``url``: shared when ``redis_identity`` gives the deployment id of this
        server's Redis, else alone; :class:`InvalidSetting` when another server's hold forbids it."""
        lease = cls()
        try:
            if make_url(normalize_url(url)).get_backend_name() == "postgresql":
                lease._take_postgresql(url, redis_identity)
            else:
                lease._take_file(url, redis_identity)
        except BaseException:
            lease.release()
            raise
        return lease

    def _take_postgresql(self, url: str, identity: Identity | None) -> None:
        self._engine = create_database_engine(url)
        connection = self._connection = self._engine.connect()
        schema = connection.execute(text("SELECT current_schema()")).scalar() or "public"
        function = "pg_try_advisory_lock_shared" if identity else "pg_try_advisory_lock"
        held = connection.execute(text(f"SELECT {function}(:a, :b)"), {"a": LOCK_CLASS, "b": _key(schema)}).scalar()
        connection.commit()
        if not held:
            raise InvalidSetting(BESIDE_ALONE if identity else ALONE)
        if identity is None:
            return
        # Alone: no other server has named its deployment yet (holds a deployment lock), asked one server
        # at a time: servers started at the same moment each saw the others' holds on the database, none
        # was alone, none made the deployment id, and every one failed waiting for it.
        deployment_class = _key(f"faceatlas-redis:{schema}")
        connection.execute(text("SELECT pg_advisory_lock(:a, :b)"), {"a": LOCK_CLASS, "b": deployment_class})
        try:
            named = connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                "AND classid = CAST(CAST(:a AS int4) AS oid) AND pid <> pg_backend_pid()"),
                {"a": deployment_class}).scalar()
            deployment = _key(identity(not named))
            connection.execute(text("SELECT pg_advisory_lock_shared(:a, :b)"),
                               {"a": deployment_class, "b": deployment})
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": LOCK_CLASS, "b": deployment_class})
        others = connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid = CAST(CAST(:a AS int4) AS oid) AND objid <> CAST(CAST(:b AS int4) AS oid)"),
            {"a": deployment_class, "b": deployment}).scalar()
        connection.commit()
        if others:
            raise InvalidSetting(OTHER_REDIS)

    def _take_file(self, url: str, identity: Identity | None) -> None:
        path = sqlite_path(normalize_url(url))
        if path is None:  # in memory: no other process can open it
            return
        path = Path(os.path.realpath(path))
        fd = self._open(path)  # an empty new file is an empty SQLite database
        if identity is None:
            if not _flock(fd, fcntl.LOCK_EX):
                raise InvalidSetting(ALONE)
            return
        alone = _flock(fd, fcntl.LOCK_EX)  # no other server holds it
        deadline = time.monotonic() + 2.0  # a server starting beside this one holds it alone a moment (above)
        while not _flock(fd, fcntl.LOCK_SH):  # converts that hold, or joins the others'
            if time.monotonic() > deadline:  # held alone for good: a server without Redis
                raise InvalidSetting(BESIDE_ALONE)
            time.sleep(0.05)
        ours = Path(f"{path}.redis-{hashlib.sha256(identity(alone).encode()).hexdigest()[:16]}.lock")
        mine = self._open(ours)
        deadline = time.monotonic() + 2.0  # another server probing it (below) holds it a moment
        while not _flock(mine, fcntl.LOCK_SH):
            if time.monotonic() > deadline:
                raise InvalidSetting(OTHER_REDIS)
            time.sleep(0.05)
        for other in glob.glob(f"{glob.escape(str(path))}.redis-*.lock"):
            if other == str(ours):
                continue
            probe = os.open(other, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if not _flock(probe, fcntl.LOCK_EX):  # held: servers counting in another Redis run
                    raise InvalidSetting(OTHER_REDIS)
            finally:
                os.close(probe)

    def _open(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fds.append(fd)
        return fd

    def release(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # the database gone: its locks went with the session
                self._connection.close()
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()  # its connections close: the session's locks go
            self._engine = None
        for fd in self._fds:
            os.close(fd)  # a flock goes with its descriptor
        self._fds.clear()


def _flock(fd: int, kind: int) -> bool:
    """Whether ``fd`` now holds ``kind`` (``LOCK_SH``/``LOCK_EX``), not waiting for it."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
