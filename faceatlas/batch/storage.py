"""The filesystem of a batch job's source or output URL, and its failures as typed errors.

``s3://``, ``gs://``, ``hdfs://`` and ``file://`` are pyarrow's own filesystems (S3 reads the
standard ``AWS_*`` variables, including ``AWS_ENDPOINT_URL`` for MinIO or any S3-compatible
server, and the URL's query: ``s3://bucket/prefix?endpoint_override=...``); any other protocol
goes through fsspec. A failure of object storage (no such bucket, refused credentials, an
endpoint that does not answer) is :class:`StorageUnavailable`, with pyarrow's reason, not an
``OSError`` from deep inside a job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

import pyarrow.fs as pafs

from faceatlas.errors import StorageUnavailable

_MISSING_BUCKET = re.compile(r"[Bb]ucket '([^']+)' not found")


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names object storage (or another non-local filesystem) rather than local files."""
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem and path for a URL (``s3://``, ``gs://``, ``file://`` ...), or any other
    fsspec protocol through fsspec. Plain paths are the caller's (they differ on resolving)."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pafs.ArrowInvalid, ValueError, OSError):  # a protocol pyarrow lacks: ask fsspec
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _hint(uri: str) -> str:
    if uri.startswith("s3://"):
        return ("check the endpoint (AWS_ENDPOINT_URL), the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
                "and the region (AWS_REGION)")
    if uri.startswith(("gs://", "gcs://")):
        return "check the credentials (GOOGLE_APPLICATION_CREDENTIALS)"
    return "check the URL and the filesystem's credentials"


def missing_bucket(uri: str) -> StorageUnavailable:
    """The error for a URL whose bucket does not exist (FaceAtlas creates no buckets)."""
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    return StorageUnavailable(f"{uri}: bucket '{bucket}' not found (FaceAtlas creates no buckets: create it, "
                              f"or {_hint(uri)})")


def check_bucket(fs: pafs.FileSystem, path: str, uri: str) -> None:
    """Raise :func:`missing_bucket` when the first part of ``path`` (a bucket) is not on ``fs``."""
    bucket = PurePosixPath(path).parts[0] if path else ""
    if is_remote(uri) and bucket and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise missing_bucket(uri)


@contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """Turn an ``OSError`` of the object storage behind ``uri`` into :class:`StorageUnavailable`
    (local files keep their ``OSError``: the CLI reports those as they are)."""
    try:
        yield
    except OSError as exc:
        if not is_remote(uri):
            raise
        if _MISSING_BUCKET.search(str(exc)):
            raise missing_bucket(uri) from exc
        raise StorageUnavailable(f"{uri}: {exc} ({_hint(uri)})") from exc
