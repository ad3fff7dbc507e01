"""A server's hold on its database: the check that two servers never count rates and quotas apart.

Without ``FACEATLAS_REDIS_URL`` a server counts every key's rate and every tenant's quota in its own
memory, so it must be the only server of its database: it holds the database **exclusively**.
With Redis, servers count together, and each holds the database **shared**: any number of them,
but none beside a server without Redis. The hold is one the operating system or the database
drops by itself when the process dies (no stale row to clean after a ``kill -9``):

- PostgreSQL: a session-level advisory lock on one connection kept open (``pg_try_advisory_lock``
  or its ``_shared`` form), per database and schema (the tables' schema, first on the search path:
  servers of other FaceAtlas installs in other schemas of one database are not in the way);
- an SQLite file: ``flock`` on ``<file>.serve-lock`` beside it (exclusive or shared);
- an in-memory SQLite database is this process's alone: nothing to hold.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import suppress

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from faceatlas.db import create_database_engine, normalize_url, sqlite_path
from faceatlas.errors import InvalidSetting

__all__ = ["ServerLease"]

LOCK_CLASS = 0x46_41_43_45  # "FACE": the advisory locks of FaceAtlas servers (the second key: the schema's hash)
ALONE = ("another FaceAtlas server serves this database: a server without FACEATLAS_REDIS_URL counts rates and "
         "quotas in its own memory and must be the only one (each would grant every key's full rate and every "
         "tenant's full quota); stop the other, or set the same FACEATLAS_REDIS_URL on every server")
BESIDE_ALONE = ("a FaceAtlas server without FACEATLAS_REDIS_URL serves this database and counts rates and quotas "
                "in its own memory; stop it, or restart it with this server's FACEATLAS_REDIS_URL")


class ServerLease:
    """Held from :meth:`take` to :meth:`release` (or the process's end) by ``faceatlas serve``'s
    process (with ``--processes N``, the parent of the N workers)."""

    def __init__(self, engine: Engine | None = None, connection: Connection | None = None,
                 fd: int | None = None) -> None:
        self._engine = engine
        self._connection = connection
        self._fd = fd

    @classmethod
    def take(cls, url: str, *, shared: bool) -> ServerLease:
        """Hold the database ``url``: ``shared`` with Redis, else alone; :class:`InvalidSetting`
        when another server's hold forbids it."""
        refusal = BESIDE_ALONE if shared else ALONE
        if make_url(normalize_url(url)).get_backend_name() == "postgresql":
            engine = create_database_engine(url)
            connection = engine.connect()
            try:
                function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
                held = connection.execute(text(f"SELECT {function}(:kind, hashtext(current_schema()))"),
                                          {"kind": LOCK_CLASS}).scalar()
                connection.commit()
            except BaseException:
                connection.invalidate()
                engine.dispose()
                raise
            if not held:
                connection.close()
                engine.dispose()
                raise InvalidSetting(refusal)
            return cls(engine=engine, connection=connection)
        path = sqlite_path(normalize_url(url))
        if path is None:  # in memory: no other process can open it
            return cls()
        fd = os.open(f"{path}.serve-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InvalidSetting(refusal) from None
        return cls(fd=fd)

    def release(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # the database gone: its lock went with the session
                self._connection.close()
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()  # its connections close: the session's lock goes
            self._engine = None
        if self._fd is not None:
            os.close(self._fd)  # the flock goes with the last descriptor
            self._fd = None
