"""The batch use cases on Ray Data: embed, enrol, search and dedupe a SOURCE of images.

One pipeline serves them all: the paths to do (``from_items``; a path that is not a regular file
is a failed image before Ray starts) → ``map_batches`` over an actor pool of :class:`FaceWorker`
(one ``FaceAnalyzer`` per actor, ``concurrency`` = workers), which reads each file's bytes (a file
that cannot be read, or is not an image, is an error row, not a failed job) → one output part per
batch, written by the actor (``output``). The driver only counts (progress) and, for enrol and
search, reads the faces back and talks to the gallery. Ray is started for the job (``ray.init``
on this machine with ``num_cpus=workers``) unless an address of a running cluster is given.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from faceatlas.batch.output import (
    FACE_SCHEMA,
    IMAGE_SCHEMA,
    hold,
    out_filesystem,
    output_space,
    prepare,
    read_faces,
    read_images,
    write_errors_csv,
    write_part,
)
from faceatlas.batch.source import Source, resolve_source
from faceatlas.batch.storage import storage_errors
from faceatlas.batch.worker import FaceWorker
from faceatlas.engine import get_pack
from faceatlas.errors import FaceAtlasError, InvalidArgument, InvalidInput, LimitExceeded, ModelMismatch, NotFound
from faceatlas.settings import EngineSettings

Progress = Callable[[int, int], None]
"""Called by the driver as images complete: (done, total), both counting images done before a restart."""

DEFAULT_BATCH_SIZE = 16
MAX_BLOCKS = 4096


CONNECT_SECONDS = 5.0  # how long a cluster's address may take to accept a connection


class ClusterUnavailable(LimitExceeded):
    """The Ray cluster of ``--ray-address`` does not answer (nothing listens there, or not in time)."""

    code = "cluster_unavailable"
    status = 503


LOCAL_WORKERS_PER_CORE = 4  # a local job's workers (processes, a model each) at most per core

@dataclass
class BatchOptions:
    """Where and how a job runs: ``workers`` actors (default: this machine's cores, or the
    cluster's CPUs), on the Ray cluster at ``ray_address`` (default: a local one started for the
    job), with model ``pack``; ``batch_size`` images per actor call and per output part."""

    workers: int | None = None
    ray_address: str | None = None
    pack: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    settings: EngineSettings = field(default_factory=EngineSettings)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.workers is not None and self.workers < 1):
            raise InvalidArgument("workers and batch size are at least 1")
        cores = os.cpu_count() or 1
        if self.ray_address is None and self.workers is not None and self.workers > LOCAL_WORKERS_PER_CORE * cores:
            # each worker is a process holding a model: 100,000 on 2 cores started 60 and never ended
            raise InvalidArgument(f"at most {LOCAL_WORKERS_PER_CORE * cores} workers on this machine "
                                  f"({LOCAL_WORKERS_PER_CORE} a core), not {self.workers}; a cluster takes "
                                  "more (--ray-address)")


@dataclass
class BatchReport:
    """What a job did: images in the source, done by earlier runs (``skipped``), done now
    (``processed``); faces and failed images of this run (``run_faces``, ``run_errors``) and of
    the job, every run of it (``faces``, ``errors``: the source's images in the output); the files
    it wrote. ``total_seconds``: this run from its first image on, Ray's start included (what the
    progress bar's images/s measures); ``seconds``: the same once Ray had started (the actors'
    start and their models' loading included)."""

    out: str
    images: int = 0
    skipped: int = 0
    processed: int = 0
    faces: int = 0
    errors: int = 0
    run_faces: int = 0
    run_errors: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    workers: int = 0
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Images done now a second once Ray had started."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def overall_images_per_second(self) -> float:
        """Images done now a second over the whole run, Ray's start included."""
        return self.processed / self.total_seconds if self.total_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 2),
                "overall_images_per_second": round(self.overall_images_per_second, 2)}


def _ray() -> Any:
    """The ``ray`` module, imported only when a job runs (the optional extra ``faceatlas[batch]``)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:  # an installation without the extra: say which one
        raise FaceAtlasError("batch jobs need Ray Data: pip install 'faceatlas[batch]'") from exc
    return ray


@contextmanager
def ray_session(workers: int | None, address: str | None) -> Iterator[int]:
    """A Ray session for one job: connect to ``address``, or start Ray here with ``workers``
    CPUs (no dashboard). Yields the number of workers; an already initialised Ray (a caller's
    own session) is used as it is and left running. Ray's warnings are not shown (its errors
    are); the caller's own SIGTERM and SIGINT handlers are put back after ``ray.init`` (Ray's
    ended the CLI on SIGTERM with status 15 and a C++ stack dump, not as on Ctrl-C)."""
    ray = _ray()

    started = not ray.is_initialized()
    if started:
        if address:
            check_reachable(address)  # ray.init retried an address nobody answers forever, deaf to Ctrl-C
        handlers = _own_handlers()
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        yield max(1, workers or cpus)
    finally:
        if started:
            ray.shutdown()


def _own_handlers() -> dict[int, Callable[..., Any]]:
    """The Python handlers of SIGTERM and SIGINT set by this process (the CLI turns SIGTERM into
    Ctrl-C), to put back after ``ray.init`` replaced them; none when not on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    return {signum: handler for signum, handler in handlers.items() if callable(handler)}


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Raise :class:`ClusterUnavailable` when nothing accepts a connection at ``address`` (``HOST:PORT``
    of the head's GCS, or ``ray://HOST:PORT``) within ``timeout`` seconds; ``auto``, and an
    address of another form, are left to Ray."""
    target = address.split("://", 1)[1] if "://" in address else address
    host, colon, port = target.rstrip("/").rpartition(":")
    if not colon or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address}: {reason.lower()} (within "
                                 f"{timeout:g} s); check the address (the head's port, 6379 unless `ray start "
                                 "--head --port` said another) and that the cluster is up") from None


def check_cluster(options: BatchOptions) -> None:
    """A job's first step on a cluster (``options.ray_address``), before it makes anything (its
    output folder and record, a collection): an address nobody answers is :class:`ClusterUnavailable`
    here (as a missing bucket is :class:`StorageUnavailable`), not once the output was claimed for
    the job's kind. A Ray this process already runs is the one the job uses: not checked."""
    ray = sys.modules.get("ray")
    if options.ray_address and not (ray is not None and ray.is_initialized()):
        check_reachable(options.ray_address)


def _run(source: Source, out: str, options: BatchOptions, on_progress: Progress | None, *, faces: bool,
         kind: str, report: BatchReport) -> set[str]:
    """Process what is left of ``source`` into ``out``; the ids of the images done in this run."""
    ray = _ray()

    done = prepare(out, kind, source.key or None)
    if faces and done:  # a restart with another pack would mix two embedding spaces in one output
        written, wanted = output_space(out), get_pack(options.pack, options.settings).recognizer_id
        if written is not None and written != wanted:
            raise ModelMismatch(f"{out} holds faces of another embedding space ({written[:60]}) than this "
                                f"job's pack makes ({wanted[:60]}): resume with the pack that wrote them, or "
                                "choose another --out")
    todo = [p for p in source.paths if p not in done]
    report.images, report.skipped = len(source.paths), len(source.paths) - len(todo)
    begun = time.perf_counter()  # as the progress bar's clock
    if on_progress:
        on_progress(report.skipped, report.images)
    now = set(todo)
    todo = _record_unfit(source, todo, out, report)
    if not todo:  # nothing left to do (a re-run): Ray is not started ("No files found" was a traceback)
        report.total_seconds = time.perf_counter() - begun
        return now
    with ray_session(options.workers, options.ray_address) as workers:
        report.workers = workers
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its warnings ("Progress bars disabled"), not errors
        started = time.perf_counter()
        # the paths go to the actors, which read the files themselves: a file that cannot be read (an
        # I/O error) is a failed image; in Ray's reader (read_binary_files) it failed the read task and
        # the whole job, a folder a manifest named was read as its files, and paths were parsed as URLs.
        # Blocks of about one batch (at most MAX_BLOCKS): the driver hears of every part as it is written
        blocks = max(1, min(MAX_BLOCKS, math.ceil(len(todo) / options.batch_size)))
        dataset = ray.data.from_items([{"path": path} for path in todo], override_num_blocks=blocks)
        given = set(todo)
        read: set[str] = set()
        with warnings.catch_warnings():  # Ray's warnings, for this job only (see _quiet)
            _quiet()
            dataset = dataset.map_batches(
                FaceWorker, batch_size=options.batch_size, batch_format="numpy", num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=workers), **_no_restarts(ray),
                fn_constructor_kwargs={"out": out, "pack": options.pack, "settings": options.settings,
                                       "faces": faces, "source": source.filesystem})
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    ids = [image_id for image_id in batch["image_id"].tolist() if image_id in given]  # only its own
                    read.update(ids)
                    report.processed += len(ids)
                    if on_progress:
                        on_progress(report.skipped + report.processed, report.images)
            except Exception as exc:  # noqa: BLE001 - whatever failed in Ray (a worker's error, a lost actor): one line
                raise ray_failure(exc) from None
        ended = time.perf_counter()
        report.seconds, report.total_seconds = ended - started, ended - begun
    # an image no actor answered for (none should be) is a failed image, done for a restart
    _record_failed([path for path in todo if path not in read], FaceAtlasError.code,
                   "not read: no worker answered for it", out, report)
    return now


def _quiet() -> None:
    """Ray Data's warnings of a job, ignored (in a ``warnings.catch_warnings()`` block: the filters go
    when the job's pipeline ends; they reach Ray's executor thread, which warns while the driver
    iterates): Ray 2.60 names ``max_restarts`` "deprecated" (see :func:`_no_restarts`), and a job of
    fewer blocks than workers (16 images or fewer: one block) drew "The minimum number of concurrent
    actors ... configuring `override_num_blocks`" (a UserWarning on stderr; the job is small, not slow)."""
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)


def _no_restarts(ray: Any) -> dict[str, Any]:
    """``max_restarts=0`` for the actors, where ``map_batches`` still takes it: an actor that dies
    fails the job (one line; the same command again resumes), as docs/batch.md says. Ray Data's
    default restarts actors for good and retries their batches: a batch retried after its faces
    part was written is in the output twice, and Ray printed on every job a C++ error line
    (``core_worker.cc: ... has constructor arguments in the object store and max_restarts > 0``:
    Ray Data passes every actor its arguments through the object store, however small). Ray
    2.64 drops ``**ray_remote_args``: then Ray's default."""
    parameters = inspect.signature(ray.data.Dataset.map_batches).parameters
    if "max_restarts" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return {"max_restarts": 0}
    return {}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)\b(: .*)?")
_CHAINED = re.compile(r"^(The above exception was the direct cause of the following exception:|"
                      r"During handling of the above exception, another exception occurred:)$", re.M)


def ray_failure(exc: BaseException) -> FaceAtlasError:
    """What failed the job in Ray as one line: the first cause's type and message (a worker's
    ``OSError: [Errno 28] No space left on device``), found in the worker's traceback that Ray
    sends as text (its exception does not carry the cause). It was a 440-line traceback (exit 1),
    or, the cause being an OSError, the whole Ray text flattened into one line."""
    text = _ANSI.sub("", str(exc))
    first = _CHAINED.split(text)[0]  # a chain is printed innermost first: the root cause's traceback
    lines = first.splitlines()
    found = [n for n, line in enumerate(lines) if _RAISED.fullmatch(line)]
    if found:
        cause = " ".join(line.strip() for line in lines[found[-1]:] if line.strip())
    else:
        cause = f"{type(exc).__name__}: {next((line.strip() for line in lines if line.strip()), '')}"
    if len(cause) > 500:
        cause = cause[:500] + " ..."
    return FaceAtlasError(f"the job failed in Ray: {cause} (the images done before are kept: the same command "
                          "again resumes)")


def _record_unfit(source: Source, todo: list[str], out: str, report: BatchReport) -> list[str]:
    """``todo`` without the paths that are not image files (listed on the driver, before any is
    read): a manifest's row naming a missing photo (``not_found``), a folder (Ray's reader read a
    folder's files, and outside the source), a pipe, socket or device (``bad_request``: opening a
    pipe waits for a writer), a folder of SOURCE that could not be listed (:attr:`Source.unlisted`:
    its code and message). Each is an image failed in the output (its errors CSV), so it is
    reported, and done for a restart."""
    unlisted = [path for path in todo if path in source.unlisted]
    for code, message in dict.fromkeys(source.unlisted[path] for path in unlisted):
        _record_failed([path for path in unlisted if source.unlisted[path] == (code, message)], code, message, out,
                       report)
    todo = [path for path in todo if path not in source.unlisted]
    infos = source.filesystem.get_file_info(todo)
    unfit = {pafs.FileType.NotFound: (NotFound.code, "no such file"),
             pafs.FileType.Directory: (InvalidInput.code, "a folder, not an image file"),
             pafs.FileType.Unknown: (InvalidInput.code, "not a regular file (a pipe, socket or device)")}
    refused: set[str] = set()
    for kind, (code, message) in unfit.items():
        paths = [info.path for info in infos if info.type == kind]
        _record_failed(paths, code, message, out, report)
        refused.update(paths)
    return [path for path in todo if path not in refused]


def _record_failed(paths: list[str], code: str, message: str, out: str, report: BatchReport) -> None:
    """``paths`` as images failed with ``code`` in the output's done-manifest (and so its errors CSV)."""
    if not paths:
        return
    fs, root = out_filesystem(out)
    count = len(paths)
    images = pa.table({"image_id": paths, "faces": [0] * count, "width": [0] * count, "height": [0] * count,
                       "phash": [0] * count, "error": [code] * count, "message": [message] * count},
                      schema=IMAGE_SCHEMA)
    write_part(fs, root, FACE_SCHEMA.empty_table(), images)
    report.processed += count


def _absolute(out: str, option: str = "--out") -> str:
    """The output folder ``out`` as an absolute path (or its URL); an empty one is refused (it was
    the current folder)."""
    if not out.strip():
        raise InvalidArgument(f"{option} is empty: give the output folder")
    return out if "://" in out else os.path.abspath(os.path.expanduser(out))


def embed(source: str, out: str, options: BatchOptions | None = None, on_progress: Progress | None = None, *,
          faces: bool = True) -> BatchReport:
    """Every face of every image of ``source`` into the Parquet dataset ``out`` (image id, box,
    keypoints, quality, pose, embedding, recognizer_id, pack); failed images into
    ``out/_errors.csv`` with their error code. Restarted with the same ``out``, a killed job
    does only what is left. ``faces=False`` only decodes and hashes (dedupe)."""
    return embed_source(resolve_source(source), out, options, on_progress, faces=faces)


def embed_source(source: Source, out: str, options: BatchOptions | None = None, on_progress: Progress | None = None,
                 *, faces: bool = True, kind: str | None = None) -> BatchReport:
    """:func:`embed` of an already resolved source. ``kind``: the job's (``embed``, or ``dedupe``
    without faces, by default), recorded in the output: another kind of job is refused on it."""
    options = options or BatchOptions()
    out = _absolute(out)
    if faces:  # an unknown pack or a missing model file fails here, not in every Ray actor
        get_pack(options.pack, options.settings)
    check_cluster(options)
    report = BatchReport(out=out)
    # held for the whole job (a second job on it is refused); prepared (listed, tidied) before Ray
    # starts: bad storage fails first
    with storage_errors(out), hold(out):
        now = _run(source, out, options, on_progress, faces=faces, kind=kind or ("embed" if faces else "dedupe"),
                   report=report)
        write_errors_csv(out)
        _count(source, out, now, faces, report)
    report.files = {"faces": out, "errors": f"{out}/_errors.csv"}
    return report


def _count(source: Source, out: str, now: set[str], faces: bool, report: BatchReport) -> None:
    """The job's faces and failures (the source's images in the output, every run) and this run's."""
    ids = pa.array(source.paths, pa.string())
    this_run = pa.array(sorted(now), pa.string())
    failed = read_images(out).filter(pc.field("error") != "").column("image_id")
    report.errors = pc.sum(pc.is_in(failed, value_set=ids)).as_py() or 0
    report.run_errors = pc.sum(pc.is_in(failed, value_set=this_run)).as_py() or 0
    if faces:
        found = read_faces(out, columns=["image_id"]).column("image_id")
        report.faces = pc.sum(pc.is_in(found, value_set=ids)).as_py() or 0
        report.run_faces = pc.sum(pc.is_in(found, value_set=this_run)).as_py() or 0


def image_table(out: str) -> Any:
    """The done-manifest of a job's output (a pyarrow table: one row per image)."""
    return read_images(_absolute(out))


def face_table(out: str) -> Any:
    """The faces of a job's output (a pyarrow table)."""
    return read_faces(_absolute(out))
