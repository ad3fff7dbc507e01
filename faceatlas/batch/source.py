"""What a batch job reads: a folder (recursive), a glob, a manifest CSV or an fsspec/pyarrow URL,
resolved on the driver into one sorted list of files on one filesystem.

An image's id is its path as the user reached it, made absolute but with no link resolved
(``/abs/dd/path.jpg`` locally, ``dd`` a link or not; ``bucket/key.jpg`` for ``s3://bucket/key.jpg``),
whatever the form of SOURCE (a folder, a glob, a manifest's rows): two links to one photo are two
images (``cams/door/x.jpg`` and ``cams/till/x.jpg``: which camera a hit came from). Ray Data
reports the same string, so a restarted job can tell what is done. For enrolment every image
also has a subject: the name of the first folder under SOURCE it is in (per-person folders,
``people/<subject>/2019/x.jpg`` too) or the manifest's ``subject`` column.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from faceatlas.batch.storage import check_bucket, filesystem, storage_errors
from faceatlas.engine import IMAGE_SUFFIXES, is_hidden  # what the workers decode (decode_image)
from faceatlas.errors import FaceAtlasError, FileMissing, InvalidArgument, InvalidInput

MANIFEST_SUFFIXES = frozenset({".csv"})


@dataclass
class Source:
    """The files of a job: ``paths`` on ``filesystem`` (sorted), with a subject per path when known."""

    filesystem: pafs.FileSystem
    paths: list[str]
    subjects: dict[str, str] = field(default_factory=dict)
    uri: str = ""
    unlisted: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Folders under SOURCE that could not be listed (a permission, an I/O error), each with its
    error code and message; in ``paths`` too: each is a failed input of the job (its images were
    skipped silently, the folder reported nowhere)."""

    @property
    def key(self) -> str:
        """The source as an output records it (one output, one source): a URL as given, a local
        folder, file or glob by its absolute path (the same folder from another working folder is
        the same source), links not resolved as in its images' ids: ``dd`` (a link) and its target
        name their images differently, so they are two sources (a resume of one by the other
        redid every image under other ids)."""
        if not self.uri or "://" in self.uri:
            return self.uri
        return _local(self.uri)


def _local(path: str) -> str:
    """A local path as the user reached it: absolute (``~`` expanded, ``.`` and ``..`` taken out by
    name), no link resolved (an image's id, :mod:`faceatlas.batch.source`)."""
    return os.path.abspath(os.path.expanduser(path))


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for a URL (:func:`~faceatlas.batch.storage.filesystem`), or the local
    filesystem for a plain path (absolute, links not resolved: :func:`_local`)."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), _local(uri)
    return filesystem(uri)


def _images_under(fs: pafs.FileSystem, root: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The images under ``root`` (sorted), and the folders under it that could not be listed."""
    unlisted: dict[str, tuple[str, str]] = {}
    if isinstance(fs, pafs.LocalFileSystem):
        found, unlisted = _local_images(root)
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        found = [i.path for i in infos if i.type == pafs.FileType.File]
    return (sorted(p for p in found if not _hidden(p, root) and PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES),
            {p: why for p, why in unlisted.items() if p == root or not _hidden(p, root)})


def list_failure(exc: OSError) -> tuple[str, str] | None:
    """The error code and message of a folder that could not be listed (a failed input of the job,
    as a file that could not be read is a failed image); None for one that is not there (gone
    since its parent was listed: nothing in it to miss)."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return None
    if isinstance(exc, PermissionError):
        return InvalidInput.code, "a folder that cannot be listed: permission denied (none of its images is in the job)"
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or type(exc).__name__)
    return FaceAtlasError.code, (f"a folder that cannot be listed: {reason[:1].lower()}{reason[1:]} "
                                 "(none of its images is in the job)")


def _walk(root: str) -> tuple[Iterator[tuple[str, list[str], list[str]]], dict[str, tuple[str, str]]]:
    """``os.walk`` of a local folder, not following links to folders, and the folders it could not
    list (filled as it goes; os.walk skipped them silently, with every photo in them)."""
    unlisted: dict[str, tuple[str, str]] = {}

    def failed(exc: OSError) -> None:
        why = list_failure(exc)
        if why is not None and exc.filename is not None:
            unlisted[_utf8(os.fsdecode(exc.filename), root, "folder")] = why

    return os.walk(root, followlinks=False, onerror=failed), unlisted


def _utf8(path: str, root: str, what: str = "file") -> str:
    """``path``, refused when its name is not UTF-8: Ray and Parquet keep paths as UTF-8 text (it
    was a traceback)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "replace")
        raise InvalidArgument(f"{shown}: a {what} name that is not UTF-8; rename it (or move it out of "
                              f"{root}) to run the job") from None
    return path


def _local_images(root: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The files under a local folder, not following links to folders (pyarrow's listing followed
    ``up -> ..`` round and round, and never returned), and the folders that could not be listed.
    A name that is not UTF-8 is refused with its folder."""
    found: list[str] = []
    walk, unlisted = _walk(root)
    for folder, _, files in walk:
        found.extend(_utf8(os.path.join(folder, name), root) for name in files)
    return found, unlisted


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
    reader = csv.reader(io.StringIO(text), strict=True)
    base = PurePosixPath(path).parent
    paths: list[str] = []
    subjects: dict[str, str] = {}
    # the line where the record being read begins: csv's line_num is the line it ended on (an
    # unterminated quote reads to the last one), and csv.DictReader's named the last good record's
    line = 1
    try:
        columns = next(reader, [])
        if "path" not in columns:
            raise InvalidArgument(f"{uri}: a manifest needs a 'path' column (and optionally 'subject')")
        twice = [name for name in ("path", "subject") if columns.count(name) > 1]
        if twice:  # `path,subject,path` read the last one, silently
            raise InvalidArgument(f"{uri}: the header names the column {twice[0]!r} {columns.count(twice[0])} times; "
                                  "a manifest gives each column once")
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                break
            if not record:  # a blank line
                continue
            if len(record) > len(columns):  # `imgs/a, b.jpg,Adam` was path `imgs/a`, subject `b.jpg`
                raise InvalidArgument(f"{uri}: line {line} has {len(record)} fields for {len(columns)} columns; "
                                      'quote a path or subject that holds a comma ("imgs/a, b.jpg")')
            row = dict(zip(columns, record))
            raw = (row.get("path") or "").strip()
            if not raw:
                continue
            if "\x00" in raw:  # csv takes it (since Python 3.11); pyarrow refused it with a traceback
                raise InvalidArgument(f"{uri}: line {line} names a path with a NUL character: no file is named so")
            # a URL on the manifest's own filesystem, an absolute path, or one relative to the manifest
            file = _filesystem(raw)[1] if "://" in raw else str(base / raw)
            if isinstance(fs, pafs.LocalFileSystem):  # `x/../a.jpg` and `a.jpg`: one photo, listed once
                file = os.path.normpath(file)
            paths.append(file)
            subject = (row.get("subject") or "").strip()
            if subject and subjects.setdefault(file, subject) != subject:  # the last one won, silently
                raise InvalidArgument(f"{uri}: line {line} gives {raw} the subject {subject!r}, "
                                      f"an earlier line {subjects[file]!r}: one photo, one subject")
    except csv.Error as exc:  # an unterminated quote: not a CSV file
        raise InvalidArgument(f"{uri}: not a valid CSV manifest (line {line}: {exc})") from exc
    if paths and isinstance(fs, pafs.LocalFileSystem):
        _check_any_file(fs, list(dict.fromkeys(paths)), uri)
    return Source(fs, sorted(set(paths)), subjects, uri)


_NOT_FILES = {pafs.FileType.NotFound: ("missing", "missing", "not there"),
              pafs.FileType.Directory: ("folder", "folders", "a folder, not an image file (a row names a file; "
                                                             "a folder is not expanded)"),
              pafs.FileType.Unknown: ("not a regular file", "not regular files",
                                      "not a regular file (a pipe, socket or device)")}


def _check_any_file(fs: pafs.FileSystem, paths: list[str], uri: str) -> None:
    """A local manifest none of whose rows is a file is refused before the job, saying why (its rows
    are failed images when one of them is a file): every row missing (paths relative to another
    folder), or folders (``../photos/Ann``: "none of the files it lists exists" was said of a
    folder that is there), pipes or devices."""
    infos = fs.get_file_info(paths)
    if any(info.type == pafs.FileType.File for info in infos):
        return
    if all(info.type == pafs.FileType.NotFound for info in infos):
        raise InvalidArgument(f"{uri}: none of the {len(paths)} files it lists exists (e.g. {paths[0]})")
    kinds = [info.type if info.type in _NOT_FILES else pafs.FileType.Unknown for info in infos]
    counts = {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}
    said = ", ".join(f"{count} {_NOT_FILES[kind][0 if count == 1 else 1]}" for kind, count in counts.items())
    shown = next(i for i, kind in enumerate(kinds) if kind != pafs.FileType.NotFound)  # what a look did not see
    raise InvalidArgument(f"{uri}: none of the {len(paths)} paths it lists is an image file ({said}): "
                          f"{paths[shown]} is {_NOT_FILES[kinds[shown]][2]}")


def resolve_source(uri: str) -> Source:
    """The files named by ``uri``: a folder (its images, recursively; a file's subject is the first
    folder under it that holds the file), a glob (``photos/*/*.jpg``), a manifest ``.csv``, one image, or the
    same on object storage (``s3://bucket/prefix/``). Nothing found is :class:`InvalidArgument`;
    a missing bucket or storage that refuses or does not answer is :class:`StorageUnavailable`."""
    if not uri.strip():  # it was the current folder (every image under it)
        raise InvalidArgument("SOURCE is empty: give a folder, a glob, a manifest .csv or a URL")
    with storage_errors(uri):
        return _resolve(uri)


def _magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _first_folder(path: str, root: str) -> str | None:
    """The name of the first folder under ``root`` that holds ``path`` (its subject), or None for a
    file right in ``root``: ``root/Adam/2019/x.jpg`` is Adam's (the immediate parent, ``2019``,
    merged everyone's 2019 folders into one subject)."""
    parts = PurePosixPath(path).relative_to(PurePosixPath(root)).parts
    return parts[0] if len(parts) > 1 else None


def _globbed(pattern: str) -> tuple[dict[str, str | None], dict[str, tuple[str, str]]]:
    """The files a local glob matches (``*``, ``?``, ``[...]`` within a name, ``**`` for any
    folders; names starting with ``.`` only by a part that starts with one), each once by its
    path as matched (absolute, links not resolved: two links to one photo are two images). The
    folders under the pattern's fixed part are walked without following links to folders, as a
    folder source is listed: ``glob(recursive=True)`` went down ``a/loop -> ..``
    (every photo listed 41 times; two such links never ended) and a link to a sibling folder
    listed its photos twice. Each file's subject: the first folder under the fixed part it is in.
    Also the folders that could not be listed where a match could be (absolute)."""
    parts = Path(pattern).expanduser().parts
    fixed = next((i for i, part in enumerate(parts) if _magic(part)), len(parts))
    root, rest = (str(Path(*parts[:fixed])) if fixed else "."), parts[fixed:]
    deepest = None if "**" in rest else len(rest) - 1  # folders below the root a match can be in
    dotted = any(part.startswith(".") for part in rest)
    found: dict[str, str | None] = {}
    walk, unlisted = _walk(root)
    for folder, folders, files in walk:
        inside = PurePosixPath(os.path.relpath(folder, root)).parts if folder != root else ()
        if deepest is not None and len(inside) >= deepest:
            folders.clear()
        elif not dotted:
            folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            path = os.path.join(folder, name)
            if _matches((*inside, name), rest) and os.path.isfile(path):
                found.setdefault(_local(path), inside[0] if inside else None)
    missed = {_local(folder): why for folder, why in unlisted.items()
              if _may_hold(PurePosixPath(os.path.relpath(folder, root)).parts if folder != root else (), rest)}
    return dict(sorted(found.items())), missed


def _may_hold(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether a file in the folder ``names`` (below the glob's fixed part) could match ``pattern``'s parts."""
    if not names:
        return bool(pattern)
    if not pattern:
        return False
    head, tail = pattern[0], pattern[1:]
    if head == "**":  # no folder more, or one more (not hidden) and still in the `**`
        return _may_hold(names, tail) or (not names[0].startswith(".") and _may_hold(names[1:], pattern))
    if names[0].startswith(".") and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _may_hold(names[1:], tail)


def _matches(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """``names`` (folders then a file, below the glob's fixed part) matched by ``pattern``'s parts."""
    if not pattern:
        return not names
    head, tail = pattern[0], pattern[1:]
    if head == "**":  # any number of names, none hidden
        for skipped in range(len(names) + 1):
            if _matches(names[skipped:], tail):
                return True
            if skipped < len(names) and names[skipped].startswith("."):
                return False
        return False
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _matches(names[1:], tail)


def _check_listed(uri: str, unlisted: dict[str, tuple[str, str]], found: Collection[str]) -> None:
    """A SOURCE where no image could be listed, a folder failing (SOURCE's own: mode 000), is
    refused before the job, saying which folder and why (as `gallery enrol` and `eval folder`
    refuse it; it was "no images found"); beside images, such a folder is a failed input of the job
    (:attr:`Source.unlisted`)."""
    if not found and unlisted:
        folder, (_, message) = min(unlisted.items())
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise InvalidArgument(f"{uri}: no image could be listed: {folder} is {message.split(' (')[0]}{more}")


def _resolve(uri: str) -> Source:
    # a glob, unless it names a file or folder that is there ("party [2024]" was "no images found")
    if "://" not in uri and _magic(uri) and not os.path.lexists(Path(uri).expanduser()):
        found, unlisted = _globbed(uri)
        _check_listed(uri, unlisted, found)
        source = Source(pafs.LocalFileSystem(), sorted([*found, *unlisted]), {p: s for p, s in found.items() if s},
                        uri, unlisted)
    else:
        fs, path = _filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            paths, unlisted = _images_under(fs, path)
            _check_listed(uri, unlisted, paths)
            subjects = {p: _first_folder(p, path) for p in paths}
            source = Source(fs, sorted([*paths, *unlisted]), {p: s for p, s in subjects.items() if s}, uri, unlisted)
        elif info.type == pafs.FileType.File and PurePosixPath(path).suffix.lower() in MANIFEST_SUFFIXES:
            source = _manifest(fs, path, uri)
        elif info.type == pafs.FileType.File:
            source = Source(fs, [path], {}, uri)
        else:
            check_bucket(fs, path, uri)
            raise FileMissing(f"{uri}: no such file or folder")
    if not source.paths:
        raise InvalidArgument(f"{uri}: no images found")
    return source
