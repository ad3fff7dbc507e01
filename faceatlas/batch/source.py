"""What a batch job reads: a folder (recursive), a glob, a manifest CSV or an fsspec/pyarrow URL,
resolved on the driver into one sorted list of files on one filesystem.

An image's id is its path as the filesystem names it (``/abs/path.jpg`` locally, ``bucket/key.jpg``
for ``s3://bucket/key.jpg``): Ray Data reports the same string, so a restarted job can tell what
is done. For enrolment every image also has a subject: its parent folder's name (per-person
folders) or the manifest's ``subject`` column.
"""

from __future__ import annotations

import csv
import glob as globbing
import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from faceatlas.batch.storage import check_bucket, filesystem, storage_errors
from faceatlas.engine import IMAGE_SUFFIXES as ENGINE_IMAGE_SUFFIXES
from faceatlas.engine import is_hidden
from faceatlas.errors import InvalidArgument

IMAGE_SUFFIXES = ENGINE_IMAGE_SUFFIXES | {".gif"}  # what the workers decode
MANIFEST_SUFFIXES = frozenset({".csv"})


@dataclass
class Source:
    """The files of a job: ``paths`` on ``filesystem`` (sorted), with a subject per path when known."""

    filesystem: pafs.FileSystem
    paths: list[str]
    subjects: dict[str, str] = field(default_factory=dict)
    uri: str = ""


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for a URL (:func:`~faceatlas.batch.storage.filesystem`), or the local
    filesystem for a plain path."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    return filesystem(uri)


def _images_under(fs: pafs.FileSystem, root: str) -> list[str]:
    if isinstance(fs, pafs.LocalFileSystem):
        found = _local_images(root)
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        found = [i.path for i in infos if i.type == pafs.FileType.File]
    return sorted(p for p in found if not _hidden(p, root) and PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES)


def _local_images(root: str) -> list[str]:
    """The files under a local folder, not following links to folders (pyarrow's listing followed
    ``up -> ..`` round and round, and never returned). A name that is not UTF-8 is refused with
    its folder: Ray and Parquet keep paths as UTF-8 text (it was a traceback)."""
    found: list[str] = []
    for folder, _, files in os.walk(root, followlinks=False):
        for name in files:
            path = os.path.join(folder, name)
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(path).decode("utf-8", "replace")
                raise InvalidArgument(f"{shown}: a file name that is not UTF-8; rename it (or move it out of "
                                      f"{root}) to run the job") from None
            found.append(path)
    return found


def _hidden(path: str, root: str) -> bool:
    return is_hidden(PurePosixPath(path[len(root):].lstrip("/")))


def _manifest(fs: pafs.FileSystem, path: str, uri: str) -> Source:
    """A CSV with a ``path`` column (relative paths are taken from the manifest's folder) and an
    optional ``subject`` column."""
    with fs.open_input_stream(path) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{uri}: a manifest is a UTF-8 CSV file; this one is not text") from exc
    reader = csv.DictReader(io.StringIO(text), strict=True)
    base = PurePosixPath(path).parent
    paths: list[str] = []
    subjects: dict[str, str] = {}
    try:
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InvalidArgument(f"{uri}: a manifest needs a 'path' column (and optionally 'subject')")
        for row in reader:
            raw = (row.get("path") or "").strip()
            if not raw:
                continue
            # a URL on the manifest's own filesystem, an absolute path, or one relative to the manifest
            file = _filesystem(raw)[1] if "://" in raw else str(base / raw)
            paths.append(file)
            if (subject := (row.get("subject") or "").strip()):
                subjects[file] = subject
    except csv.Error as exc:  # an unterminated quote, a NUL byte: not a CSV file
        raise InvalidArgument(f"{uri}: not a valid CSV manifest (line {reader.line_num}: {exc})") from exc
    if paths and isinstance(fs, pafs.LocalFileSystem) and not any(
            info.type == pafs.FileType.File for info in fs.get_file_info(paths)):
        raise InvalidArgument(f"{uri}: none of the {len(set(paths))} files it lists exists (e.g. {paths[0]})")
    return Source(fs, sorted(set(paths)), subjects, uri)


def resolve_source(uri: str) -> Source:
    """The files named by ``uri``: a folder (its images, recursively; a file's subject is its
    parent folder's name), a glob (``photos/*/*.jpg``), a manifest ``.csv``, one image, or the
    same on object storage (``s3://bucket/prefix/``). Nothing found is :class:`InvalidArgument`;
    a missing bucket or storage that refuses or does not answer is :class:`StorageUnavailable`."""
    with storage_errors(uri):
        return _resolve(uri)


def _resolve(uri: str) -> Source:
    if "://" not in uri and any(c in uri for c in "*?["):
        paths = sorted(str(Path(p).resolve()) for p in globbing.glob(str(Path(uri).expanduser()), recursive=True)
                       if Path(p).is_file())
        source = Source(pafs.LocalFileSystem(), paths, {p: Path(p).parent.name for p in paths}, uri)
    else:
        fs, path = _filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            paths = _images_under(fs, path)
            source = Source(fs, paths, {p: PurePosixPath(p).parent.name for p in paths
                                        if PurePosixPath(p).parent != PurePosixPath(path)}, uri)
        elif info.type == pafs.FileType.File and PurePosixPath(path).suffix.lower() in MANIFEST_SUFFIXES:
            source = _manifest(fs, path, uri)
        elif info.type == pafs.FileType.File:
            source = Source(fs, [path], {}, uri)
        else:
            check_bucket(fs, path, uri)
            raise InvalidArgument(f"{uri}: no such file or folder")
    if not source.paths:
        raise InvalidArgument(f"{uri}: no images found")
    return source
