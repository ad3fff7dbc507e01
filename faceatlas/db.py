"""Database infrastructure shared by every layer that keeps tables (gallery, video events, retail,
service): URL resolution, the engine with SQLite pragmas, the Alembic runner each layer's
``migrate`` calls with its own history, ``utcnow`` for naive-UTC timestamp columns, ``utc_text``
for such a time in an answer and ``day_range`` for queries over inclusive calendar days."""

from __future__ import annotations

import logging
import re
import select
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, CursorResult, Engine, MetaData, Result, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError
from sqlalchemy.orm import Session

from faceatlas.errors import DatabaseUnavailable, InvalidArgument, NotFound
from faceatlas.settings import StorageSettings

_log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """Now in UTC, naive (how every table stores its timestamps)."""
    return datetime.now(UTC).replace(tzinfo=None)


def utc_text(moment: datetime) -> str:
    """``moment`` as every answer writes a time: ISO 8601 in UTC with its offset,
    ``2026-12-07T18:52:40.791166+00:00`` (a naive one is UTC, as the tables keep it; an aware one is
    converted). Written naive, a client read it as its local time (JavaScript's ``new Date`` does)."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def day_range(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """The naive-UTC ``[start, end)`` of the days ``first`` to ``last`` inclusive (None: unbounded).
    Every calendar date is valid: a range ending on 9999-12-31 ends at ``datetime.max``. A first day
    after the last is :class:`InvalidArgument` (it would read as "nothing happened")."""
    if first is not None and last is not None and first > last:
        raise InvalidArgument(f"the days run from {first} to {last}: 'from' is after 'to'")
    start = datetime.combine(first, datetime.min.time()) if first else None
    if last is None:
        return start, None
    end = datetime.max if last == date.max else datetime.combine(last + timedelta(days=1), datetime.min.time())
    return start, end


def default_database_url() -> str:
    """``FACEATLAS_DATABASE_URL`` (the storage settings), else an SQLite file under ``~/.local/share/faceatlas``."""
    return StorageSettings().database_url


def normalize_url(url: str) -> str:
    """Expand ``~`` in SQLite paths and accept a bare file path as an SQLite database."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # a port that is no number was a 78-line traceback
        shown = _without_password(url)[:120]
        raise InvalidArgument(f"{shown} is no database URL ({one_reason(exc)}): sqlite:///FILE or "
                              "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return parsed.set(database=str(Path(parsed.database).expanduser())).render_as_string(hide_password=False)
    return url


def _without_password(url: str) -> str:
    """``url`` with its password (anything between the user's ``:`` and the last ``@`` before the
    host) as ``***``: a password may hold ``/``, ``@``, ``?`` or ``#``."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def url_without_password(url: str) -> str:
    """``url`` as a log line may show it: its password (in the URL or as a ``password=`` parameter) as ``***``."""
    shown = _without_password(url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", shown)


def one_reason(exc: BaseException) -> str:
    """The first line of ``exc``'s message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def require_database(url: str, what: str, hint: str = "") -> None:
    """:class:`NotFound` when ``url`` names an SQLite file that does not exist: a read of a
    mistyped path is not a read of an empty database, and makes no file (``what``: "gallery
    database"; ``hint``: the command that makes one). An empty ``url`` is :class:`InvalidArgument`:
    it was the working folder (``counts X --db ''``: "no events database at /home/me")."""
    if not url.strip():
        raise InvalidArgument(f"the {what} is empty: give its URL or SQLite file")
    path = sqlite_path(normalize_url(url))
    if path is not None and not path.is_file():
        raise NotFound(f"no {what} at {path}" + (f" ({hint})" if hint else ""))
    if path is not None:  # a read makes no tables in a file that holds none (an empty file, another file)
        with path.open("rb") as handle:
            head = handle.read(16)
        if head != b"SQLite format 3\x00":
            if head:
                raise NotFound(f"no {what} at {path}: the file is not an SQLite database")
            raise NotFound(f"no {what} at {path} (an empty file)" + (f"; {hint}" if hint else ""))


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases and in-memory SQLite), also of
    a URI filename (``sqlite:///file:/srv/fa.db?uri=true``: the file ``/srv/fa.db``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.query.get("uri") == "true" and parsed.database.startswith("file:"):
        if parsed.query.get("mode") == "memory":
            return None
        return Path(unquote(urlsplit(parsed.database).path))
    return Path(parsed.database)


def database_address(url: str) -> str:
    """Where the database at ``url`` is, for a log line: ``host:port/database`` (no user, no
    password), or an SQLite file's path."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return str(sqlite_path(str(parsed)) or "memory")
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


DEFAULT_CONNECT_TIMEOUT = 5  # seconds: FACEATLAS_DB_CONNECT_TIMEOUT's default


def create_database_engine(url: str, *, busy_s: float = 30.0,
                           connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout (``busy_s``: how long
    a statement waits on another connection's lock) on every connection. A server database gets
    ``connect_timeout`` (seconds, at least libpq's 2; a ``connect_timeout`` in the URL wins) for a
    new connection and as the bound of the check of a pooled one at its checkout
    (:func:`_checked_at_checkout`): a database that does not answer (a hung host, a network black
    hole) fails a call within it, not after the system's TCP timeout (~130 s) or never.

    No engine writes a statement's parameters into an error's text (``hide_parameters``): an
    unexpected database error's traceback in the server log held the names, metadata, embeddings
    and face crops of the rows it wrote."""
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_backend_name() != "sqlite":
        try:
            parsed = make_url(url)
            own = parsed.query.get("connect_timeout")
            seconds = max(2, int(own) if isinstance(own, str) and own.isdigit() else connect_timeout)
            arguments = {"connect_timeout": seconds} if parsed.get_driver_name() == "psycopg" else {}
            engine = create_engine(url, hide_parameters=True, connect_args=arguments,
                                   pool_pre_ping=parsed.get_driver_name() != "psycopg")
            if parsed.get_driver_name() == "psycopg":
                _checked_at_checkout(engine, seconds)
            return engine
        except (NoSuchModuleError, ArgumentError, ImportError) as exc:
            # notaurl://x was a traceback, and so was mysql://... (its driver, MySQLdb, not installed)
            missing = f" (its driver {exc.name} is not installed)" if isinstance(exc, ImportError) and exc.name else ""
            raise InvalidArgument(f"{make_url(url).render_as_string()[:80]} is no database URL this install "
                                  f"opens{missing}: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB") from exc
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": busy_s})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        _enter_wal(cursor, busy_s)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are zeroed, whatever the build's default
        cursor.close()

    _erasures_leave_the_journal(engine, busy_s)
    return engine


def _checked_at_checkout(engine: Engine, timeout_s: float) -> None:
    """Each pooled psycopg connection answers ``SELECT 1`` within ``timeout_s`` when it is checked
    out, else it is dropped and a new one made (bounded by the connect timeout): SQLAlchemy's
    ``pool_pre_ping`` waits for its answer for ever, and a database host that hung (stopped, a
    network black hole: the kernel still acknowledges what is sent) held every call, ``/readyz``
    included, until it came back."""

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not _answers(dbapi_connection, timeout_s):
            raise DisconnectionError("the database did not answer a ping within the connect timeout")


def _answers(connection: Any, timeout_s: float) -> bool:
    """Whether the psycopg ``connection`` answers ``SELECT 1`` within ``timeout_s`` (libpq's
    non-blocking calls: psycopg's own wait has no bound)."""
    import psycopg

    pgconn = connection.pgconn
    deadline = time.monotonic() + timeout_s
    try:
        pgconn.send_query(b"SELECT 1")
        while pgconn.flush():
            if not select.select([], [pgconn.socket], [], max(0.0, deadline - time.monotonic()))[1]:
                return False
        while True:
            pgconn.consume_input()
            if pgconn.is_busy():
                if not select.select([pgconn.socket], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    return False
                continue
            result = pgconn.get_result()
            if result is None:
                return True
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                return False
    except psycopg.Error:
        return False


_ERASED = "faceatlas_erased"  # in a pooled connection's info: it deleted rows since it was checked out


def _erasures_leave_the_journal(engine: Engine, busy_s: float) -> None:
    """Erased rows leave SQLite's write-ahead log too: a connection that deleted rows checkpoints
    the WAL into the database file (where ``secure_delete`` zeroes them) and truncates it when it
    goes back to the pool. The WAL kept a deleted subject's name, metadata, embedding and face crop
    (the rows written when they were enrolled) for as long as the server ran. The truncation never
    waits: with a reader of the WAL (another process's read, a backup) it is tried again at that
    connection's next checkin (a wait of seconds stalled every writer and every later checkin)."""

    @event.listens_for(engine, "after_cursor_execute")
    def _note_deletes(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:6].upper() == "DELETE" and (cursor.rowcount or 0) > 0:
            conn.info[_ERASED] = True

    @event.listens_for(engine, "checkin")
    def _truncate_after_erasure(dbapi_connection: Any, record: Any) -> None:
        if record.info.pop(_ERASED, False) and dbapi_connection is not None \
                and not truncate_journal(dbapi_connection, busy_s):
            record.info[_ERASED] = True  # a reader meanwhile: tried again when it comes back next


def erases(session: Session) -> None:
    """The transaction of ``session`` erases personal data by rewriting rows (the audit trail's
    names made ``[erased]``): on SQLite its journal is truncated when its connection goes back to the
    pool, as a delete's is. Without it the database file kept the rows as they were (the WAL held the
    rewrite) until a later delete or the server's stop."""
    session.connection().info[_ERASED] = True


def truncate_journal(dbapi_connection: sqlite3.Connection, busy_s: float = 30.0) -> bool:
    """Checkpoint an SQLite database's WAL into its file and truncate it, if no reader holds it now
    (no wait; ``busy_s``: the connection's busy timeout, put back after); whether it was done.
    Never raises (it runs as a connection goes back to the pool, where an exception lost the pool
    its connection): a failure is logged and False."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=0")
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
            cursor.close()
    except Exception as exc:  # noqa: BLE001 - the database gone or locked: said, not raised at a checkin
        _log.warning("the SQLite journal was not truncated after an erasure: %s", exc)
        return False
    return not busy


def _enter_wal(cursor: sqlite3.Cursor, busy_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, waiting up to ``busy_s`` for other connections: SQLite answers
    "database is locked" at once, without its busy timeout, when connections open a fresh file
    together (6 at once: 40 of 300 tries failed; ``serve --processes N`` on a new database)."""
    deadline = time.monotonic() + busy_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def check_database_url(url: str) -> None:
    """:class:`InvalidArgument` when this install opens no database at ``url`` (an unknown scheme, or
    one whose driver is not installed: ``mysql://`` without MySQLdb), said without connecting and
    without making a file, so that a run can refuse it before it loads its models."""
    if make_url(normalize_url(url)).get_backend_name() != "sqlite":
        create_database_engine(url).dispose()


def upgrade(engine: Engine, script_location: Path, revision: str = "head") -> None:
    """Run the Alembic history in ``script_location`` to ``revision``; every layer that keeps tables
    (gallery, service, retail) has its own history and calls this at open. Alembic is imported
    here: a command that opens no database (``detect``) does not load it (half a second)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as connection:
        lock_schema(connection)
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, revision)
        except CommandError as exc:
            unknown = _UNKNOWN_REVISION.search(str(exc))
            if unknown is None:
                raise
            layer = script_location.parent.name  # faceatlas/<layer>/migrations, faceatlas/apps/<layer>/migrations
            raise DatabaseUnavailable(
                f"the {layer} tables are at revision '{unknown[1]}', which this FaceAtlas does not know: a newer "
                "FaceAtlas migrated the database; run that version or a later one (a database is never "
                "migrated back)") from exc


_UNKNOWN_REVISION = re.compile(r"Can't locate revision identified by '([^']*)'")


MIGRATION_LOCK = 0x46414345  # "FACE": the advisory lock every schema change of FaceAtlas takes


def lock_schema(connection: Connection) -> None:
    """Wait for the lock of schema changes, held to the end of ``connection``'s transaction (call it
    first in the transaction): processes starting together on a fresh database (``faceatlas serve
    --processes N``, two servers) migrate one after the other instead of creating the same table
    twice. PostgreSQL: a transaction-scoped advisory lock. SQLite: the file's write lock, taken now
    (``BEGIN IMMEDIATE``; Python's sqlite3 runs DDL outside any transaction otherwise, and
    ``create_all``'s check-then-create raced: "table video_events already exists")."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    else:
        sqlite_write_lock(connection)


def sqlite_write_lock(connection: Connection) -> None:
    """SQLite: take the file's write lock now, held to the end of ``connection``'s transaction
    (``BEGIN IMMEDIATE``, which waits the busy timeout for other writers; its driver begins a
    transaction only at the first write otherwise, and the reads before it take no lock). Nothing
    on another database, or where ``connection`` is already in a transaction."""
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def run_migrations_env(metadata: MetaData, version_table: str = "alembic_version") -> None:
    """The whole body of a layer's Alembic ``env.py``: migrate the connection :func:`upgrade` hands over,
    recording the revision in the layer's own ``version_table``."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, version_table=version_table,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (SQLAlchemy types ``execute`` as a plain ``Result``)."""
    return cast(CursorResult[Any], result).rowcount
