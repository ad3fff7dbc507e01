"""The output folder of a batch job, written part by part so that a killed job resumes.

``OUT/`` is a Parquet dataset of faces (``part-<id>.parquet``, one per processed batch of images:
``pandas.read_parquet(OUT)`` reads them all) beside folders whose names start with ``_`` (readers
of the dataset skip them):

- ``_images/part-<id>.parquet``: the done-manifest, one row per image of the batch (its id, path,
  number of faces, error code and message, perceptual hash). It is written last, after the faces
  part, so an image is done only when its faces are on disk;
- ``_errors.csv``: the images that failed (id, path, typed error code, message), rewritten at the
  end of each run from the done-manifest;
- ``_job.json``: the kind of job that wrote the output (``embed``, ``enrol``, ``search``,
  ``dedupe``) and its source: a job of another kind, or of another source, is refused (its faces
  would be mixed with the first one's, and a dedupe's output, without faces, was taken as an
  embed's that was done).

Every part is written under a name starting with ``.`` and renamed into place. A restarted job
deletes faces parts without their manifest part (a kill between the two) and skips done images.

A job holds its output for its whole life (:func:`hold`): ``_lock``, locked with ``flock``, so a
second job on the same local output is refused (two at once each wrote every image, and one tidied
the other's temporary files away). The job removes ``_lock`` as it ends, however it ends (a killed
one cannot: its file stays, locked by nobody, and the next job takes it). Object storage has no
such lock: one job per output URL.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from faceatlas.batch.storage import filesystem
from faceatlas.errors import Conflict, InvalidArgument

IMAGES_DIR = "_images"
ERRORS_CSV = "_errors.csv"
LOCK = "_lock"  # flock'ed by the job that writes the output (a local one)
JOB = "_job.json"  # the kind of job that wrote the output, and its source
_PART = re.compile(r"part-[0-9a-f]{32}\.parquet")  # what write_part names: a file of another name is not ours
_TEMPORARY = re.compile(r"\.(part-[0-9a-f]{32}\.parquet|_job\.json)\.[0-9a-f]{8}\.tmp")

FACE_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("face", pa.int32()),
    ("box", pa.list_(pa.float32(), 4)),
    ("det_score", pa.float32()),
    ("keypoints", pa.list_(pa.float32(), 10)),
    ("quality", pa.float32()),
    ("yaw", pa.float32()),
    ("pitch", pa.float32()),
    ("roll", pa.float32()),
    ("embedding", pa.list_(pa.float32())),
    ("recognizer_id", pa.string()),
    ("pack", pa.string()),
])
IMAGE_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("faces", pa.int32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("phash", pa.uint64()),
    ("error", pa.string()),
    ("message", pa.string()),
])


def out_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of an output folder (a local path or a URL)."""
    if "://" in uri:
        return filesystem(uri)
    return pafs.LocalFileSystem(), uri


def _files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    return [i for i in fs.get_file_info(pafs.FileSelector(folder)) if i.type == pafs.FileType.File]


def _write(fs: pafs.FileSystem, table: pa.Table, folder: str, name: str) -> None:
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, temporary, filesystem=fs)
        fs.move(temporary, f"{folder}/{name}")
    except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed: the half-written file goes
        with suppress(OSError):
            fs.delete_file(temporary)
        raise


def write_part(fs: pafs.FileSystem, root: str, faces: pa.Table, images: pa.Table) -> str:
    """Write one batch: its faces part (when it has faces), then its manifest part. Returns the part id."""
    part = uuid.uuid4().hex
    fs.create_dir(f"{root}/{IMAGES_DIR}", recursive=True)
    if faces.num_rows:
        _write(fs, faces, root, f"part-{part}.parquet")
    _write(fs, images, f"{root}/{IMAGES_DIR}", f"part-{part}.parquet")
    return part


_held: dict[str, int] = {}  # the outputs this process holds: real path -> the locked file's descriptor


def _check_ours(fs: pafs.FileSystem, root: str, uri: str) -> None:
    """Refuse a file, or a folder that holds anything but no job's manifest: it is not a job's
    output (a user's own ``part-*.parquet`` there was deleted as an orphan)."""
    if fs.get_file_info(f"{root}/{IMAGES_DIR}").type == pafs.FileType.Directory:
        return
    found = fs.get_file_info(root)
    if found.type == pafs.FileType.File:
        raise InvalidArgument(f"--out {uri} is a file: give a folder (new, empty, or a job's to resume)")
    if found.type == pafs.FileType.Directory:
        held = [i for i in fs.get_file_info(pafs.FileSelector(root)) if PurePosixPath(i.path).name not in (LOCK, JOB)]
        if held:
            shown = ", ".join(sorted(PurePosixPath(i.path).name for i in held)[:3])
            raise InvalidArgument(f"--out {uri} holds files no batch job wrote ({shown}"
                                  f"{', ...' if len(held) > 3 else ''}): give a new or empty folder, "
                                  "or the output folder of the job to resume")


@contextmanager
def hold(uri: str, *, dataset: bool = True) -> Iterator[None]:
    """The output folder ``uri`` for this process alone while the block runs: created, and its
    ``_lock`` file locked (``flock``, exclusive); an output another job holds is :class:`Conflict`,
    nothing in it touched. Held again in the same process (a job's steps), it is the same hold.
    ``dataset``: the folder is a job's Parquet dataset (refused when it holds other files, before
    anything is made in it); else a folder of a job's outputs (search's, dedupe's).
    The lock goes with the process (a killed job holds nothing); the ``_lock`` file goes when the
    block ends, however it ends (:func:`_release`: a finished output keeps none). A block that fails before anything
    was written into a folder it made (a cluster that refused the job) removes that folder
    (:func:`_unmake`): the output of a job that never ran is not claimed for its kind. Object
    storage has no lock: the block runs without one."""
    fs, root = out_filesystem(uri)
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    key = os.path.realpath(root)
    if key in _held:
        yield
        return
    if dataset:
        _check_ours(fs, root, uri)  # before anything is made in a folder that is not a job's
    elif fs.get_file_info(root).type == pafs.FileType.File:
        raise InvalidArgument(f"--out {uri} is a file: give a folder (new, empty, or a job's to resume)")
    made = _first_missing(root)
    os.makedirs(root, exist_ok=True)
    lock = os.path.join(root, LOCK)
    descriptor = _lock(lock, uri)
    _held[key] = descriptor
    try:
        yield
    except BaseException:
        if made:  # a job that failed before it wrote anything leaves no output claimed for its kind
            _unmake(root, made)
        raise
    finally:
        del _held[key]
        _release(descriptor, lock)


LOCK_TRIES = 10  # a _lock removed under us by each job that ended meanwhile: as many jobs as that


def _lock(path: str, uri: str) -> int:
    """The descriptor of ``path`` (``OUT/_lock``, created when missing), locked (``flock``,
    exclusive), or :class:`Conflict` when another job holds it. A job removes its ``_lock`` as it
    ends, while it still holds it (:func:`_release`): a file opened before that and locked after
    it is no longer the output's ``_lock`` (a new job may have made and locked the one there now),
    so the lock is taken again on the file that is there."""
    for _ in range(LOCK_TRIES):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited (O_CLOEXEC)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            raise Conflict(f"{uri} is in use: another batch job holds it ({LOCK}) until it ends; wait for that "
                           "job, or give another output folder") from exc
        if _is_there(descriptor, path):
            return descriptor
        os.close(descriptor)  # removed by the job that held it, as it ended
    raise Conflict(f"{uri} is in use: other batch jobs took and left it {LOCK_TRIES} times while this one "
                   "tried to hold it; wait for them, or give another output folder")


def _is_there(descriptor: int, path: str) -> bool:
    """Whether ``path`` is the file open as ``descriptor`` (not removed, nor made again since)."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(descriptor)
    return (there.st_dev, there.st_ino) == (own.st_dev, own.st_ino)


def _release(descriptor: int, path: str) -> None:
    """Remove the ``_lock`` this job holds, then let it go: a finished output keeps no lock file.
    Removed while still locked, and only when it is still this job's file (:func:`_unmake` may have
    removed it, and another job made a new one since): a job that opened it before and locks it
    after sees it gone and takes the one there (:func:`_lock`), so two jobs never hold one output."""
    try:
        if _is_there(descriptor, path):
            os.unlink(path)
    except OSError:  # not removed (a read-only folder): it stays, locked by nobody, as a killed job's
        pass
    finally:
        os.close(descriptor)  # the lock goes with it


def _first_missing(root: str) -> str | None:
    """The outermost folder of ``root`` (itself or a parent) that does not exist yet: the one a job
    making ``root`` makes first; None when ``root`` is there."""
    missing = None
    path = os.path.abspath(root)
    while not os.path.lexists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _unmake(root: str, top: str) -> None:
    """Remove the folder ``root`` that this job made (and its parents up to ``top``, made with it),
    when it holds nothing but what any job makes first (its lock, its record, an empty manifest
    folder, an errors CSV of no image): a failed start (a cluster that refused the job, Ctrl-C
    while Ray started) claimed the folder for its kind and source, and the next job of another
    kind there was refused. A folder holding anything else (a part, someone else's file) is left
    as it is."""
    images = os.path.join(root, IMAGES_DIR)
    try:
        names = set(os.listdir(root))
        if not names <= {LOCK, JOB, ERRORS_CSV, IMAGES_DIR} or (IMAGES_DIR in names and os.listdir(images)):
            return
    except OSError:  # gone, or _images is not a folder: not touched
        return
    with suppress(OSError):
        for name in (JOB, ERRORS_CSV):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(root, name))
        if IMAGES_DIR in names:
            os.rmdir(images)
        os.unlink(os.path.join(root, LOCK))
        folder = os.path.abspath(root)
        while True:  # root, then the parents made with it (an empty one only)
            os.rmdir(folder)
            if folder == top:
                break
            folder = os.path.dirname(folder)


def claim(uri: str, kind: str | None, source: str | None) -> None:
    """Record in ``uri`` (held) that a ``kind`` job of ``source`` writes it (``_job.json``), or
    refuse it when another kind of job, or a job of another source, wrote it (:class:`InvalidArgument`).
    An output without the record (older, or not yet begun) is taken as this job's, except a job's
    dataset (``_images``) for a search or dedupe: that is an embed's or an enrol's."""
    if kind is None and source is None:
        return
    fs, root = out_filesystem(uri)
    record: dict[str, str] = {}
    if fs.get_file_info(f"{root}/{JOB}").type == pafs.FileType.File:
        with fs.open_input_stream(f"{root}/{JOB}") as stream:
            try:
                found = json.loads(stream.read().decode())
            except ValueError:  # a record half-written by a kill: written again below
                found = {}
        record = {key: str(value) for key, value in found.items()} if isinstance(found, dict) else {}
    elif kind in ("search", "dedupe") and fs.get_file_info(f"{root}/{IMAGES_DIR}").type == pafs.FileType.Directory:
        record = {"kind": "embed or enrol --work"}
    written = record.get("kind")
    if kind is not None and written is not None and written != kind:
        raise InvalidArgument(f"{uri} is the output of a batch {written} job, not of batch {kind}: give another "
                              "folder (one output, one kind of job)")
    if source and record.get("source") and record["source"] != source:
        raise InvalidArgument(f"{uri} holds the output of another source ({record['source']}), not of {source}: "
                              "give another folder, or that source to resume (one output, one source)")
    wanted = {**record, **({"kind": kind} if kind else {}), **({"source": source} if source else {})}
    if wanted != record:
        fs.create_dir(root, recursive=True)
        temporary = f"{root}/.{JOB}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_output_stream(temporary) as stream:
            stream.write(json.dumps(wanted, indent=1).encode())
        fs.move(temporary, f"{root}/{JOB}")


def prepare(uri: str, kind: str | None = None, source: str | None = None) -> set[str]:
    """Create the output folder or tidy one left by a killed run (temporary files, faces parts
    without their manifest part), holding it (:func:`hold`: never while another job writes it);
    the ids of the images already done. A folder that holds anything but no job's manifest is not
    a job's output: refused, nothing in it touched; so is one of another ``kind`` of job or another
    ``source`` (:func:`claim`)."""
    with hold(uri):
        return _prepare(uri, kind, source)


def _prepare(uri: str, kind: str | None, source: str | None) -> set[str]:
    fs, root = out_filesystem(uri)
    _check_ours(fs, root, uri)
    claim(uri, kind, source)
    fs.create_dir(f"{root}/{IMAGES_DIR}", recursive=True)
    manifest = {PurePosixPath(i.path).name for i in _files(fs, f"{root}/{IMAGES_DIR}")}
    for folder in (root, f"{root}/{IMAGES_DIR}"):
        for info in _files(fs, folder):
            name = PurePosixPath(info.path).name
            orphan = folder == root and _PART.fullmatch(name) is not None and name not in manifest
            if _TEMPORARY.fullmatch(name) or orphan:
                fs.delete_file(info.path)
    return set(read_images(uri).column("image_id").to_pylist())


def read_images(uri: str) -> pa.Table:
    """The done-manifest: one row per processed image."""
    fs, root = out_filesystem(uri)
    files = [i.path for i in _files(fs, f"{root}/{IMAGES_DIR}") if i.path.endswith(".parquet")]
    if not files:
        return IMAGE_SCHEMA.empty_table()
    return pads.dataset(files, schema=IMAGE_SCHEMA, filesystem=fs, format="parquet").to_table()


def read_faces(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Every face of the job's output (the Parquet dataset at ``uri``): its ``columns`` (default: all)."""
    fs, root = out_filesystem(uri)
    files = [i.path for i in _files(fs, root) if PurePosixPath(i.path).name.startswith("part-")]
    if not files:
        empty = FACE_SCHEMA.empty_table()
        return empty.select(columns) if columns else empty
    return pads.dataset(files, schema=FACE_SCHEMA, filesystem=fs, format="parquet").to_table(columns=columns)


def output_space(uri: str) -> str | None:
    """The embedding space (``recognizer_id``) of the faces a job wrote at ``uri``: its first part's
    first face; None before any face was written."""
    fs, root = out_filesystem(uri)
    for info in sorted(_files(fs, root), key=lambda i: i.path):
        if PurePosixPath(info.path).name.startswith("part-"):
            table = pads.dataset([info.path], schema=FACE_SCHEMA, filesystem=fs, format="parquet").head(
                1, columns=["recognizer_id"])
            if table.num_rows:
                return str(table.column("recognizer_id")[0].as_py())
    return None


def write_errors_csv(uri: str) -> int:
    """Rewrite ``_errors.csv`` from the manifest; the number of failed images."""
    images = read_images(uri).filter(pads.field("error") != "").sort_by("image_id")
    fs, root = out_filesystem(uri)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["image_id", "error", "message"])
    for row in images.select(["image_id", "error", "message"]).to_pylist():
        writer.writerow([row["image_id"], row["error"], row["message"]])
    with fs.open_output_stream(f"{root}/{ERRORS_CSV}") as stream:
        stream.write(text.getvalue().encode())
    return images.num_rows
