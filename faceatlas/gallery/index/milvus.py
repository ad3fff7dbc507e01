"""Milvus as the vector store of the galleries (``FACEATLAS_VECTOR_BACKEND=milvus``).

The database stays the record: Milvus holds a copy of each face's vector keyed by its face id,
in one Milvus collection per gallery collection (:meth:`MilvusStore.name`: prefix, tenant,
collection id), and, in one small collection of its own, the gallery revision each copy
reflects, so a process that starts catches up from the database as the FAISS index files do.
That collection also names the database whose copy the prefix holds (:meth:`MilvusStore._claim`):
the default prefix is one of the database's own id, and a prefix another database holds is
refused, never taken (its catch-up would drop that database's collections).

``FACEATLAS_MILVUS_URI`` is a file path ending in ``.db`` for Milvus Lite (embedded, one process
per file: :func:`hold_lite_file`) or ``http://host:19530`` for a Milvus standalone or cluster; the same pymilvus
``MilvusClient`` code talks to both. Metric: inner product on the L2-normalised vectors (cosine).
Index: HNSW on a server. Milvus Lite 2.5 builds only FLAT, IVF_FLAT and AUTOINDEX, and its
searches ignore ``nprobe`` (IVF_FLAT at 100k faces: recall@1 0.67 whatever nprobe), so FLAT
(exact) there; ``FACEATLAS_MILVUS_INDEX`` chooses another. Measured: bench/gallery_search.py.

Every call is bounded (``FACEATLAS_MILVUS_TIMEOUT``, retries included: pymilvus alone retries an
unreachable Milvus for about 3.5 minutes), and a Lite file that Lite cannot use (damaged, not a
Lite file, read-only, in a folder that cannot be written) is refused before Lite starts, in one
sentence naming the file (Lite's own answer: "Open local milvus failed", or "internal error" at
the first write).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import math
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from faceatlas.errors import InvalidArgument, InvalidSetting, VectorStoreUnavailable
from faceatlas.gallery.index.base import Storage, _pad

T = TypeVar("T")
_log = logging.getLogger(__name__)
STALE = -1  # the stored revision of a copy that must be caught up from the database
# IVF_FLAT: clusters, and clusters scanned per query; HNSW: links per node, candidate lists while
# building and searching. Chosen with bench/gallery_search.py (docs/milvus.md).
IVF_NLIST = 1024
IVF_NPROBE = 32
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 256
HNSW_EF = 128
_TOP_K_MAX = 16_384  # Milvus's limit on k
_BATCH = 8_192  # vectors or ids per request (gRPC messages stay far below 64 MB at 512-d)
_REVISIONS = "revisions"
_NAME_MAX = 255
DEFAULT_TIMEOUT_S = 10.0  # FACEATLAS_MILVUS_TIMEOUT: what one Milvus call may take, its retries included
_SQLITE_MAGIC = b"SQLite format 3\x00"  # a Milvus Lite 2.4/2.5 file is an SQLite database
_LITE_FILE_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,36}")  # what milvus-lite takes (else a RuntimeError)
_LITE_INDEXES = ("FLAT", "IVF_FLAT")  # what Milvus Lite 2.5 builds (and AUTOINDEX); HNSW it refuses
DEFAULT_PREFIX = "faceatlas"  # without FACEATLAS_MILVUS_PREFIX: faceatlas_<12 hex digits of the database's id>
# The row of <prefix>_revisions that names the database whose copy the prefix holds (its
# recognizer_id field: the database's id); a collection id no gallery collection has.
_CLAIM_NAME = "database"
_CLAIM_ID = -1


def is_lite(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite file rather than a server."""
    return "://" not in uri and not uri.startswith("unix:")


class CollectionMissing(VectorStoreUnavailable):
    """Milvus answered that a collection it was asked about does not exist (a server restarted
    empty, a collection dropped by hand or by another process): what it held is rebuilt from the
    database, the record, rather than refused (:class:`faceatlas.gallery.milvus_sync.MilvusIndexCache`)."""


def _guard(call: Callable[[], T], doing: str) -> T:
    """Run one Milvus call; any failure of Milvus is :class:`VectorStoreUnavailable`
    (:class:`CollectionMissing` when the collection does not exist)."""
    import grpc
    from pymilvus.exceptions import ErrorCode, MilvusException

    try:
        return call()
    except (MilvusException, grpc.RpcError, ConnectionError, OSError) as error:
        missing = isinstance(error, MilvusException) and (
            getattr(error, "code", None) == ErrorCode.COLLECTION_NOT_FOUND
            or "collection not found" in _reason(error).lower())
        raise (CollectionMissing if missing else VectorStoreUnavailable)(
            f"Milvus could not {doing}: {_reason(error)}") from error


class _ToDebug(logging.Handler):
    """In place of pymilvus's own handlers (stderr, at WARNING: "[ERROR][handler] RPC error ...",
    "failed to get mvccTs ..." before FaceAtlas's one-sentence error): its records go to this
    module's logger at DEBUG, where a server log set to debug still shows them."""

    def emit(self, record: logging.LogRecord) -> None:
        if _PYMILVUS_LOG.isEnabledFor(logging.DEBUG):
            _PYMILVUS_LOG.debug("%s [%s] %s", record.name, record.levelname, record.getMessage(),
                                exc_info=record.exc_info)


_PYMILVUS_LOG = _log.getChild("pymilvus")
_QUIET = _ToDebug()


def quiet_pymilvus() -> None:
    """pymilvus logs to stderr of its own (handlers it installs at import, not propagated): its
    failures come through FaceAtlas's errors (:class:`VectorStoreUnavailable`, naming the call and
    the reason), its records through :class:`_ToDebug`. milvus-lite's import warns that
    ``pkg_resources`` is deprecated (its own use of it): not this program's business."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pymilvus  # noqa: F401 (installs pymilvus's logging)

        with contextlib.suppress(ImportError):  # a server only
            import milvus_lite  # noqa: F401
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer"):
        logger = logging.getLogger(name)
        logger.handlers = [_QUIET]
        logger.propagate = False
        logger.setLevel(logging.WARNING)


def _reason(error: BaseException) -> str:
    """What a pymilvus or gRPC error says, without its class and code wrapping."""
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    details = getattr(error, "details", None)
    if callable(details) and isinstance(details(), str):
        return str(details())
    return str(error)


def check_lite_file(path: Path) -> None:
    """Refuse a Milvus Lite file that Lite cannot use, in one sentence naming it and what to do,
    before Lite's server is started on it: Lite answers a damaged file with its server's log and
    "Open local milvus failed", a read-only file with "internal error" at the first write, a folder
    it cannot write with a PermissionError on its lock file."""
    if not _LITE_FILE_NAME.fullmatch(path.name):
        raise InvalidArgument(f"a Milvus Lite file name is at most 36 letters, digits, '.', '-' or '_' "
                              f"(Milvus Lite's rule), not {path.name!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        blocking = next((above for above in path.parents if above.is_file()), None)
        if blocking is not None:
            raise VectorStoreUnavailable(f"the Milvus Lite file {path} cannot be made: {blocking} is a file, not a "
                                         "folder; set FACEATLAS_MILVUS_URI to a file in a folder") from None
        raise VectorStoreUnavailable(
            f"the folder of the Milvus Lite file {path} cannot be written ({error.strerror}): Milvus Lite "
            "writes its file, journal and lock files there; make it writable or set FACEATLAS_MILVUS_URI to a "
            "file in a folder this process may write") from None
    if path.is_dir():
        raise VectorStoreUnavailable(f"the Milvus Lite file {path} is a folder: set FACEATLAS_MILVUS_URI to a "
                                     "file path ending in .db")
    if not path.exists():
        return
    try:
        with open(path, "r+b") as handle:
            head = handle.read(100)  # SQLite's database header
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise VectorStoreUnavailable(
            f"the Milvus Lite file {path} cannot be opened for writing ({error.strerror}): Milvus Lite writes to "
            "it; give this process write access to it or set FACEATLAS_MILVUS_URI to another file") from None
    if head and head[:len(_SQLITE_MAGIC)] != _SQLITE_MAGIC:
        raise VectorStoreUnavailable(
            f"{path} is not a Milvus Lite file (damaged, or another kind of file): move it aside (Milvus Lite "
            "starts a new one there; the galleries' vectors are copied again from the database)")
    if head and size < _sqlite_size(head):
        raise VectorStoreUnavailable(
            f"{path} is cut short ({size:,} of the {_sqlite_size(head):,} bytes its header states; a copy that "
            "stopped, a full disk): move it aside (Milvus Lite starts a new one there; the galleries' vectors are "
            "copied again from the database)")


def _sqlite_size(header: bytes) -> int:
    """The bytes an SQLite file's 100-byte ``header`` says the file holds (page size x pages), 0 when
    the header does not state it (too short, or a size left stale by an old writer)."""
    if len(header) < 100 or header[92:96] != header[24:28]:  # "version-valid-for" = change counter
        return 0
    page_size = int.from_bytes(header[16:18], "big")
    return (65536 if page_size == 1 else page_size) * int.from_bytes(header[28:32], "big")


# -- one process per Lite file --------------------------------------------------------------------
# milvus-lite guards a file with a POSIX lock on ``.<name>.lock`` beside it, and unlinks that file
# whenever one of its servers stops, its own or not: a second process refused ("Open local milvus
# failed") unlinks the first one's lock as its refused server is collected, and a process whose
# server stops unlinks a lock another process may have taken meanwhile. A third process then makes
# a new lock file, takes it, and serves the same file beside the first: two servers write one
# SQLite file. FaceAtlas processes hold a lock of their own, ``<file>.faceatlas-lock`` (flock,
# never unlinked, released by the kernel when a process dies), for as long as any store of the
# process is open on the file, and stop this process's Lite server before they release it.
_LITE_HELD: dict[str, list[Any]] = {}  # resolved path -> [its open lock file, stores of this process on it]
_LITE_GUARD = threading.Lock()


def _in_use(path: Path, by: str) -> VectorStoreUnavailable:
    return VectorStoreUnavailable(
        f"the Milvus Lite file {path} is in use by {by}: Milvus Lite serves one process per file; stop that "
        "process, set FACEATLAS_MILVUS_URI to another file for this one, or use a Milvus server "
        "(http://host:19530) for several processes")


def _lite_servers() -> dict[str, Any]:
    """The Lite servers this process runs, by resolved path (milvus-lite's own registry)."""
    from milvus_lite.server_manager import server_manager_instance

    servers: dict[str, Any] = getattr(server_manager_instance, "_servers", {})
    return servers


def hold_lite_file(path: Path) -> None:
    """Count one more store of this process on the Lite file ``path``; the first takes the file's
    lock for the process, refusing (:class:`VectorStoreUnavailable`, naming the file and the
    process that holds it) a file another process serves."""
    key = str(path.resolve())
    with _LITE_GUARD:
        if key in _LITE_HELD:
            _LITE_HELD[key][1] += 1
            return
        lock_path = path.with_name(f"{path.name}.faceatlas-lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 (held open while the process serves the file)
        except OSError as error:
            raise VectorStoreUnavailable(f"cannot open {lock_path}, the lock of the Milvus Lite file {path} "
                                         f"({error.strerror}): make its folder writable") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise _in_use(path, f"process {holder}" if holder.isdigit() else "another process") from None
        try:
            if key not in _lite_servers():
                _check_lite_lock(path)
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        if not _LITE_HELD:
            atexit.unregister(_release_all)  # registered once, to run before milvus-lite's own cleanup
            atexit.register(_release_all)
        _LITE_HELD[key] = [handle, 1]


def _check_lite_lock(path: Path) -> None:
    """Refuse a Lite file that a program without FaceAtlas's lock serves (milvus-lite's own lock is
    taken): starting Lite there would fail and unlink that program's lock on the way."""
    try:
        with open(path.with_name(f".{path.name}.lock"), "a") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise _in_use(path, "another program") from None
            fcntl.lockf(handle, fcntl.LOCK_UN)  # this process serves no Lite on it: no lock of its own is lost
    except OSError:
        return  # Lite's start says why


def release_lite_file(path: Path) -> None:
    """One store of this process fewer on the Lite file ``path``; after the last, this process's
    Lite server on it is stopped, then the file's lock released (another process may serve it)."""
    key = str(path.resolve())
    with _LITE_GUARD:
        held = _LITE_HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _LITE_HELD[key]
            _stop_lite(key, held[0])


def _stop_lite(key: str, handle: Any) -> None:
    from milvus_lite.server_manager import server_manager_instance

    try:
        if key in _lite_servers():
            server_manager_instance.release_server(key)
    except (OSError, subprocess.SubprocessError):  # still serving, perhaps: held until this process ends
        _log.exception("could not stop the Milvus Lite server of %s", key)
        return
    handle.close()


def _release_all() -> None:
    """At exit: stop this process's Lite servers before their locks go."""
    with _LITE_GUARD:
        for key, (handle, _) in list(_LITE_HELD.items()):
            del _LITE_HELD[key]
            _stop_lite(key, handle)


class MilvusStore:
    """One Milvus (a Lite file or a server) holding the vectors of one FaceAtlas database."""

    # how many times this store found its revisions collection gone and made it anew (Milvus
    # restarted empty, or it was dropped): every copy a process trusted before is rebuilt
    resets = 0

    def __init__(self, uri: str, *, token: str | None = None, prefix: str | None = None,
                 database: str | None = None, index_type: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """``database``: the id of the database whose copy this is (``faceatlas.gallery.models.database_id``):
        the prefix is claimed for it in Milvus, and a prefix another database holds is
        :class:`InvalidSetting` (its recover would drop that database's collections). ``prefix``
        None: ``faceatlas_<12 hex digits of database>``, or ``faceatlas`` where Milvus holds this
        database's copy made before database ids (or one no database claims: adopted, no rebuild).
        Without ``database`` (benchmarks, tools) nothing is claimed and the prefix defaults to ``faceatlas``."""
        try:
            quiet_pymilvus()
            from pymilvus import MilvusClient
            from pymilvus.exceptions import ConnectionConfigException, MilvusException
        except ImportError as error:
            raise VectorStoreUnavailable("FACEATLAS_VECTOR_BACKEND=milvus needs pymilvus and milvus-lite: "
                                         "pip install 'faceatlas[milvus]'") from error
        if prefix is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", prefix):
            raise InvalidArgument(f"a Milvus prefix is a letter then letters, digits or '_', not {prefix!r}")
        if database is not None and not re.fullmatch(r"[0-9a-f]{32}", database):
            raise InvalidArgument(f"a database id is 32 hex digits, not {database!r}")
        self.lite = is_lite(uri)
        self.index_type = ("FLAT" if self.lite else "HNSW") if index_type == "auto" else index_type
        if self.lite and self.index_type not in _LITE_INDEXES:  # Lite refused it at the first collection made
            raise InvalidSetting(f"FACEATLAS_MILVUS_INDEX={index_type!r}: Milvus Lite ({uri}) builds FLAT and "
                                 "IVF_FLAT indexes only, an HNSW index needs a Milvus server (http://host:19530); "
                                 "unset it (auto: FLAT on Lite) or set FLAT")
        if self.lite:
            path = Path(uri).expanduser()
            if path.suffix != ".db":
                raise InvalidArgument(f"a Milvus Lite file ends with .db, not {uri!r}")
            path = path.absolute()
            check_lite_file(path)
            uri = str(path)
        self._path = Path(uri)
        self._held = False  # whether this store counts in hold_lite_file
        if not timeout_s > 0:
            raise InvalidArgument(f"a Milvus timeout is a number of seconds above 0, not {timeout_s}")
        self.uri = uri
        self.database = database
        self.nprobe, self.ef = IVF_NPROBE, HNSW_EF  # search parameters (bench/gallery_search.py sweeps them)
        # whole seconds: pymilvus bounds its retries by a timeout only when it is an int
        self.timeout = max(1, math.ceil(timeout_s))

        def connect() -> Any:
            try:
                return MilvusClient(uri=uri, token=token or "", alias=f"faceatlas-{uuid.uuid4().hex}",
                                    timeout=self.timeout)
            except ConnectionConfigException:
                if not self.lite:
                    raise
                raise VectorStoreUnavailable(
                    f"Milvus Lite could not start on {uri} (its server logs why on stderr): if the file is "
                    "damaged, move it aside (the galleries' vectors are copied again from the database)") from None
            except MilvusException as error:
                unreachable = self._unreachable(error)
                if unreachable is None:
                    raise
                raise unreachable from error

        self._connect = connect
        self._client: Any = None
        self._compacts = True  # until a server answers that it cannot
        try:
            self.prefix = self._default_prefix() if prefix is None else prefix
            self._revisions = f"{self.prefix}_{_REVISIONS}"
            if not _guard(lambda: self.client.has_collection(self._revisions, timeout=self.timeout),
                          "list collections"):
                self._create_revisions()
            self._claim()
        except BaseException:
            self.close()
            raise

    def _unreachable(self, error: Exception) -> VectorStoreUnavailable | None:
        """What a failed connection to a server says: that no Milvus server could be reached at the
        URI within the timeout, where pymilvus said "Fail connecting to server on host:port, illegal
        connection params or server unavailable" (nothing answered) or "Incorrect port or sdk is
        incompatible with server" (something answered that is no Milvus: a proxy, a web server).
        None for any other failure (a token refused): Milvus's own answer."""
        import grpc
        from pymilvus.client.types import Status

        cause = error.__cause__  # pymilvus raises its connection errors "from" themselves: often no gRPC error
        if getattr(error, "code", None) == Status.CONNECT_FAILED:
            why = "nothing answered"
        elif "Incorrect port" in _reason(error) or (isinstance(cause, grpc.RpcError)
                                                     and cause.code() == grpc.StatusCode.UNIMPLEMENTED):
            why = "what answers there is no Milvus server, or none this pymilvus speaks to"
        else:
            return None
        return VectorStoreUnavailable(
            f"no Milvus server could be reached at {self.uri} within {self.timeout} s ({why}): check "
            "FACEATLAS_MILVUS_URI (host, and port: Milvus's is 19530) and that the server runs")

    # -- which database a prefix belongs to ------------------------------------------------
    def _owner(self, revisions: str) -> str | None:
        """The id of the database that claimed ``revisions``' prefix (None: unclaimed)."""
        rows = _guard(lambda: self.client.query(revisions, filter=f"collection_id == {_CLAIM_ID}",
                                                output_fields=["recognizer_id"], consistency_level="Strong",
                                                timeout=self.timeout), "read which database it holds")
        return str(rows[0]["recognizer_id"]) if rows else None

    def _default_prefix(self) -> str:
        """Without FACEATLAS_MILVUS_PREFIX: ``faceatlas`` where its revisions are this database's, or
        no database's (a copy made before database ids: adopted, not rebuilt), else
        ``faceatlas_<12 hex digits of the database's id>``: each database its own by default, where
        one shared prefix made two databases drop each other's copy at every open."""
        if self.database is None:
            return DEFAULT_PREFIX
        legacy = f"{DEFAULT_PREFIX}_{_REVISIONS}"
        if _guard(lambda: self.client.has_collection(legacy, timeout=self.timeout), "list collections") and \
                self._owner(legacy) in (None, self.database):
            return DEFAULT_PREFIX
        return f"{DEFAULT_PREFIX}_{self.database[:12]}"

    def _claim(self) -> None:
        """Record in Milvus that this prefix holds this database's copy, or refuse one that holds
        another's (:class:`InvalidSetting`): this database would take that copy for its own and drop
        the collections its database does not have (every collection of the other)."""
        if self.database is None:
            return
        owner = self._owner(self._revisions)
        if owner is None:
            row = {"name": _CLAIM_NAME, "collection_id": _CLAIM_ID, "revision": 0, "recognizer_id": self.database,
                   "dim": 0, "vector": [1.0, 0.0]}
            _guard(lambda: self.client.upsert(self._revisions, [row], timeout=self.timeout),
                   "record which database it holds")
            owner = self._owner(self._revisions)  # two databases claiming at once: the one Milvus kept
        if owner == self.database:
            return
        drop = (f"delete {self.uri} (every prefix's copy in it is made again from its database)" if self.lite
                else f"drop the Milvus collections whose names start with {self.prefix}_")
        raise InvalidSetting(
            f"FACEATLAS_MILVUS_PREFIX={self.prefix!r}: Milvus at {self.uri} holds the vectors of another "
            f"FaceAtlas database (id {owner}) under this prefix; this database (id {self.database}) would drop "
            f"them. Give each database its own prefix: FACEATLAS_MILVUS_PREFIX unset (this database's default, "
            f"{DEFAULT_PREFIX}_{self.database[:12]}) or another name, or FACEATLAS_MILVUS_URI another Milvus. "
            f"If that database is gone (deleted, or made anew), delete its copy: {drop}")

    @property
    def client(self) -> Any:
        """This store's pymilvus ``MilvusClient``, connected on first use (again after :meth:`close`).
        A connection of its own: pymilvus shares one per URI, which any client's close() would end.
        On a Lite file, the file is held for this process first (:func:`hold_lite_file`)."""
        if self._client is None:
            if self.lite and not self._held:
                hold_lite_file(self._path)
                self._held = True
            try:
                self._client = _guard(self._connect, f"connect to {self.uri}")
            except BaseException:
                self.close()
                raise
        return self._client

    def close(self) -> None:
        """Close this connection (the next call opens another). The last store of this process on
        a Lite file closed stops Lite's embedded server and releases the file: another process
        may then serve it (Lite serves one process per file)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._held:
            self._held = False
            release_lite_file(self._path)

    # -- names and revisions ----------------------------------------------------------------
    def name(self, tenant: str, collection_id: int) -> str:
        """The Milvus collection of a gallery collection: ``<prefix>_<tenant>_<hash>_c<id>``, the
        tenant with every character but letters and digits as ``_``, and 8 hex digits of a hash of
        the prefix and the tenant as given: prefix ``fa`` with tenant ``b_x`` and prefix ``fa_b``
        with tenant ``x`` named one collection, two databases' vectors in it."""
        tail = f"_{hashlib.sha256(f'{self.prefix}/{tenant}'.encode()).hexdigest()[:8]}_c{collection_id}"
        safe = re.sub(r"[^A-Za-z0-9]", "_", tenant)[: _NAME_MAX - len(self.prefix) - len(tail) - 1]
        return f"{self.prefix}_{safe}{tail}"

    def _create_revisions(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=_NAME_MAX)
        schema.add_field("collection_id", DataType.INT64)
        schema.add_field("revision", DataType.INT64)
        schema.add_field("recognizer_id", DataType.VARCHAR, max_length=512)
        schema.add_field("dim", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
        params = self.client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        _guard(lambda: self.client.create_collection(self._revisions, schema=schema, index_params=params,
                                                     consistency_level="Strong", timeout=self.timeout),
               "create its revisions")

    def _revisions_lost(self) -> None:
        """The revisions collection is gone (Milvus restarted empty, or it was dropped): make it
        anew and count a reset (:attr:`resets`: no copy is trusted any longer; each is rebuilt from
        the database at its next use). Before, only opening a store made it: a running service
        answered every search, enrolment and delete with 503 until it was restarted."""
        _log.warning("Milvus at %s no longer holds %s (restarted empty, or dropped): made anew; each "
                     "collection's vectors are copied again from the database at its next use",
                     self.uri, self._revisions)
        if not _guard(lambda: self.client.has_collection(self._revisions, timeout=self.timeout), "list collections"):
            self._create_revisions()
        self.resets += 1

    def record(self, collection_id: int) -> dict[str, Any] | None:
        """What Milvus holds for a gallery collection: name, revision, recognizer_id, dim."""
        try:
            rows = _guard(lambda: self.client.query(self._revisions, filter=f"collection_id == {int(collection_id)}",
                                                    output_fields=["name", "revision", "recognizer_id", "dim"],
                                                    consistency_level="Strong", timeout=self.timeout),
                          "read a revision")
        except CollectionMissing:
            self._revisions_lost()
            return None
        return dict(rows[0]) if rows else None

    def records(self) -> list[dict[str, Any]]:
        """Every gallery collection Milvus holds vectors of, as :meth:`record` gives each (with its
        collection_id)."""
        fields = ["name", "collection_id", "revision", "recognizer_id", "dim"]
        # one query while they fit its window (a query iterator logs a warning on Lite at every use)
        try:
            rows = _guard(lambda: self.client.query(self._revisions, filter="collection_id >= 0", output_fields=fields,
                                                    limit=_TOP_K_MAX, consistency_level="Strong",
                                                    timeout=self.timeout), "list revisions")
        except CollectionMissing:
            self._revisions_lost()
            return []
        if len(rows) < _TOP_K_MAX - 1:  # Lite answers at most one less than its window
            return [dict(row) for row in rows]
        iterator = _guard(lambda: self.client.query_iterator(self._revisions, batch_size=_BATCH,
                                                             filter="collection_id >= 0", output_fields=fields,
                                                             timeout=self.timeout),
                          "list revisions")
        found: list[dict[str, Any]] = []
        try:
            while batch := _guard(iterator.next, "list revisions"):
                found.extend(dict(row) for row in batch)
        finally:
            iterator.close()
        return found

    def set_revision(self, name: str, collection_id: int, revision: int, recognizer_id: str, dim: int) -> None:
        row = {"name": name, "collection_id": int(collection_id), "revision": int(revision),
               "recognizer_id": recognizer_id, "dim": int(dim), "vector": [1.0, 0.0]}
        try:
            _guard(lambda: self.client.upsert(self._revisions, [row], timeout=self.timeout), "store a revision")
        except CollectionMissing:
            self._revisions_lost()
            _guard(lambda: self.client.upsert(self._revisions, [row], timeout=self.timeout), "store a revision")

    # -- collections ----------------------------------------------------------------------
    def open(self, name: str, dim: int, count: int | None = None) -> MilvusIndex:
        """The index over Milvus collection ``name``, created (empty, its ``created`` set) when missing."""
        if not _guard(lambda: self.client.has_collection(name, timeout=self.timeout), "list collections"):
            self._create(name, dim)
            index = MilvusIndex(self, name, dim, 0)
            index.created = True
            return index
        return MilvusIndex(self, name, dim, count)

    def _create(self, name: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        options = {"IVF_FLAT": {"nlist": IVF_NLIST}, "HNSW": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}}
        params = self.client.prepare_index_params()
        params.add_index("vector", index_type=self.index_type, metric_type="IP",
                         params=options.get(self.index_type, {}))
        _guard(lambda: self.client.create_collection(name, schema=schema, index_params=params,
                                                     consistency_level="Strong", timeout=self.timeout),
               f"create {name}")

    def search_params(self, k: int) -> dict[str, Any]:
        params = {"IVF_FLAT": {"nprobe": self.nprobe}, "HNSW": {"ef": max(self.ef, k)}}
        return {"metric_type": "IP", "params": params.get(self.index_type, {})}

    def settle(self, name: str, timeout_s: float = 3600.0) -> None:
        """Seal what was written to ``name`` and wait until its index covers every vector (a fresh
        write is searched without the index until then); for benchmarks."""
        _guard(lambda: self.client.flush(name, timeout=max(self.timeout, math.ceil(timeout_s))), f"flush {name}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = _guard(lambda: self.client.describe_index(name, "vector", timeout=self.timeout),
                           f"describe the index of {name}")
            if not state.get("pending_index_rows", 0) and state.get("indexed_rows", 0) >= state.get("total_rows", 0):
                return
            time.sleep(0.5)

    def compact(self, name: str) -> None:
        """Ask a Milvus server to rewrite ``name``'s segments without deleted rows (it runs in the
        background). Milvus Lite implements no compaction, so nothing is asked of it; a server
        that answers UNIMPLEMENTED (Milvus Lite's binary serving a port) is warned about once and
        not asked again. Any other failure is :class:`VectorStoreUnavailable`."""
        import grpc

        if self.lite or not self._compacts:
            return
        try:
            _guard(lambda: self.client.compact(name, timeout=self.timeout), f"compact {name}")
        except VectorStoreUnavailable as error:
            cause = error.__cause__
            if not isinstance(cause, grpc.RpcError) or cause.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            self._compacts = False
            _log.warning("the Milvus server at %s implements no compaction: deleted vectors stay in its "
                         "segment files (never searched or returned)", self.uri)

    def discard(self, name: str) -> None:
        """Drop the Milvus collection ``name`` if it exists (vectors no revision vouches for)."""
        if _guard(lambda: self.client.has_collection(name, timeout=self.timeout), "list collections"):
            _guard(lambda: self.client.drop_collection(name, timeout=self.timeout), f"drop {name}")

    def drop(self, collection_id: int) -> None:
        """Delete a gallery collection's vectors and revision from Milvus: the collection first, its
        revision last (a drop that fails leaves the revision that names what is left to drop)."""
        record = self.record(collection_id)
        if record is None:
            return
        with contextlib.suppress(CollectionMissing):  # gone already
            _guard(lambda: self.client.drop_collection(record["name"], timeout=self.timeout), f"drop {record['name']}")
        _guard(lambda: self.client.delete(self._revisions, ids=[record["name"]], timeout=self.timeout),
               "forget a revision")

    def forget(self, record: Mapping[str, Any]) -> None:
        """Drop the Milvus collection that a stored revision (:meth:`records`) names, then the
        revision; nothing when the revision stored under that name is now another's (a collection
        given the name meanwhile)."""
        name = str(record["name"])
        rows = _guard(lambda: self.client.query(self._revisions, ids=[name], output_fields=["recognizer_id"],
                                                consistency_level="Strong", timeout=self.timeout), "read a revision")
        if not rows or rows[0]["recognizer_id"] != record["recognizer_id"]:
            return
        with contextlib.suppress(CollectionMissing):  # gone already
            _guard(lambda: self.client.drop_collection(name, timeout=self.timeout), f"drop {name}")
        _guard(lambda: self.client.delete(self._revisions, ids=[name], timeout=self.timeout), "forget a revision")


class MilvusIndex:
    """The :class:`VectorIndex` of one Milvus collection: face ids and vectors live in Milvus; this
    object counts them (the count each search needs without asking Milvus). A removal is
    confirmed: the ids are queried after the delete and any still found is an error."""

    kind = "milvus"
    storage: Storage = "float32"
    created = False  # made empty by MilvusStore.open: its faces are still to be copied
    # set by the cache: this collection's index rebuilt from the database, for a search that finds
    # its Milvus collection gone (a server restarted empty)
    renew: Callable[[], MilvusIndex] | None = None

    def __init__(self, store: MilvusStore, name: str, dim: int, count: int | None = None) -> None:
        self.store = store
        self.name = name
        self.dim = dim
        self._count = self._counted() if count is None else count

    @property
    def _client(self) -> Any:
        return self.store.client

    def _counted(self) -> int:
        rows = _guard(lambda: self._client.query(self.name, filter="id >= 0", output_fields=["count(*)"],
                                                 consistency_level="Strong", timeout=self.store.timeout),
                      "count vectors")
        return int(rows[0]["count(*)"])

    def __len__(self) -> int:
        return self._count

    def recount(self, count: int | None = None) -> None:
        """Set the count of held faces: ``count``, or as Milvus counts them (after writes elsewhere)."""
        self._count = self._counted() if count is None else count

    def ids(self) -> np.ndarray:
        return np.fromiter(self._iter_ids(), np.int64)

    def _iter_ids(self) -> Iterator[int]:
        iterator = _guard(lambda: self._client.query_iterator(self.name, batch_size=_BATCH, filter="",
                                                              output_fields=["id"], timeout=self.store.timeout),
                          "list ids")
        try:
            while batch := _guard(iterator.next, "list ids"):
                yield from (int(row["id"]) for row in batch)
        finally:
            iterator.close()

    def held(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` Milvus holds (query straight to Milvus)."""
        found: list[int] = []
        for start in range(0, len(ids), _BATCH):
            chunk = [int(i) for i in ids[start: start + _BATCH]]
            try:
                rows = _guard(partial(self._client.query, self.name, ids=chunk, output_fields=["id"],
                                      consistency_level="Strong", timeout=self.store.timeout), "query ids")
            except CollectionMissing:
                return np.empty(0, np.int64)  # a collection that is gone holds none of them
            found.extend(int(row["id"]) for row in rows)
        return np.asarray(sorted(found), np.int64)

    def reserve(self, faces: int) -> None:
        """Nothing to reserve: Milvus allocates."""

    def add(self, ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray | None = None) -> None:
        ids = np.asarray(ids, np.int64).ravel()
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        for start in range(0, len(ids), _BATCH):
            rows = [{"id": int(i), "vector": v} for i, v in zip(ids[start: start + _BATCH],
                                                                 vectors[start: start + _BATCH])]
            _guard(partial(self._client.upsert, self.name, rows, timeout=self.store.timeout), "store vectors")
        self._count += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        """Delete these faces' vectors and confirm they are gone; returns how many were held."""
        held = self.held(np.unique(np.asarray(ids, np.int64)))
        for start in range(0, len(held), _BATCH):
            chunk = [int(i) for i in held[start: start + _BATCH]]
            _guard(partial(self._client.delete, self.name, ids=chunk, timeout=self.store.timeout), "delete vectors")
        if len(held) and len(self.held(held)):
            raise VectorStoreUnavailable(f"Milvus still holds deleted faces of {self.name}")
        self._count -= len(held)
        return len(held)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k, renew=True)

    def _search(self, queries: np.ndarray, k: int, *, renew: bool) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        limit = min(k, _TOP_K_MAX)
        if self._count == 0 or limit < 1:
            return _pad(np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64), k)
        try:
            found = _guard(lambda: self._client.search(self.name, data=list(queries), limit=limit,
                                                       output_fields=["id"],
                                                       search_params=self.store.search_params(limit),
                                                       timeout=self.store.timeout), "search")
        except CollectionMissing:
            if self.renew is None or not renew:
                raise
            renewed = self.renew()  # rebuilt from the database, then searched (once)
            self._count = len(renewed)
            return renewed._search(queries, k, renew=False)
        sims = np.full((len(queries), limit), -np.inf, np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        for row, hits in enumerate(found):
            for column, hit in enumerate(hits):
                sims[row, column], ids[row, column] = hit["distance"], hit["id"]
        return _pad(sims, ids, k)

    def memory_bytes(self) -> int:
        """Bytes held in this process: none (the vectors live in Milvus)."""
        return 0

    def groups(self) -> None:
        return None  # ids and vectors only

    def needs_rebuild(self, faces: int, ann_min_faces: int) -> bool:
        return False  # Milvus builds and compacts its own index

    def persist(self, path: Path, meta: dict[str, Any], write: Callable[[dict[str, np.ndarray]], None]) -> Path | None:
        raise TypeError("a Milvus index is persisted by Milvus, not in an index file")

    @classmethod
    def restore(cls, path: Path, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> MilvusIndex | None:
        return None  # never saved in an index file
