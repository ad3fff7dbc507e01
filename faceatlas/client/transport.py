"""One HTTP call's machinery: the image parts uploaded, the headers sent, the deadline of a whole
call, the answer's errors, and the transport's failures said with what to check."""

from __future__ import annotations

import contextvars
import errno
import io
import json
import os
import re
import stat
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote
from urllib.request import getproxies

import httpx

from faceatlas.client.errors import FaceAtlasApiError, FaceAtlasClientError, FaceAtlasTransportError

ImageArg = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def _seg(value: str) -> str:
    """``value`` as one URL path segment: percent-encoded, so that an id such as ``a/../b``, ``x?y``
    or ``..`` names itself (never another path the URL would resolve to)."""
    text = str(value)
    return quote(text, safe="") if text.strip(".") else "%2E" * len(text)


MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # an image file sent at most (servers refuse far less: 15 MB by default)
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # an answer read at most


def _too_large(what: object, size: int) -> FaceAtlasClientError:
    return FaceAtlasClientError(f"{what}: {size:,} bytes, above the {MAX_UPLOAD_BYTES:,} this client "
                                "sends (the server's limit is lower: 15 MB by default)", "payload_too_large")


def _image(name: str, image: ImageArg) -> tuple[str, tuple[str, bytes, str]]:
    """A multipart file part: the bytes of a bytes-like object (bytes, bytearray, memoryview) or
    of a binary file object (read from where it stands), or a regular file's bytes by its path (a
    device, a FIFO or a file above :data:`MAX_UPLOAD_BYTES` is refused before anything is read;
    bytes above it are refused before anything is sent: they were uploaded whole, for the server
    to refuse). Anything else (an array, a PIL image, a URL) is refused, saying what is accepted."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        size = memoryview(image).nbytes
        if size > MAX_UPLOAD_BYTES:
            raise _too_large(f"the {name} bytes", size)
        return name, (name, bytes(image), "application/octet-stream")
    if callable(getattr(image, "read", None)):
        content = None if isinstance(image, io.TextIOBase) else image.read(MAX_UPLOAD_BYTES + 1)  # type: ignore[union-attr]
        if not isinstance(content, (bytes, bytearray)):
            raise FaceAtlasClientError(f"the {name} file object reads text, not bytes: "
                                       "open it in binary mode ('rb')", "invalid_argument")
        if len(content) > MAX_UPLOAD_BYTES:
            raise _too_large(f"the {name} file object", len(content))
        file_name = getattr(image, "name", None)
        return name, (Path(file_name).name if isinstance(file_name, str) and file_name else name,
                      bytes(content), "application/octet-stream")
    if not isinstance(image, (str, os.PathLike)):
        raise FaceAtlasClientError(f"the {name} is a {type(image).__name__}: give a file path, the image file's "
                                   "bytes (bytes, bytearray, memoryview) or a binary file object (e.g. "
                                   "open(path, 'rb'), io.BytesIO)", "invalid_argument")
    if isinstance(image, str) and re.match(r"(?i)https?://", image.strip()):
        raise FaceAtlasClientError(f"the {name} is a URL: this client sends image files (a path, bytes or a "
                                   "binary file object); fetch the image first", "invalid_argument")
    path = Path(image)
    info = path.stat()  # OSError (missing, unreadable) as Python says it; before open(), which waits on a FIFO
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(info.st_mode):
        raise FaceAtlasClientError(f"{path}: not a regular file (an image file to send)", "invalid_argument")
    if info.st_size > MAX_UPLOAD_BYTES:
        raise _too_large(path, info.st_size)
    return name, (path.name, path.read_bytes(), "application/octet-stream")


def _header_value(value: str, what: str) -> str:
    """A header value as given (without surrounding whitespace, e.g. a CRLF file's), refused when
    it holds what no header may (the value itself is never repeated: it may be a secret)."""
    text = value.strip()
    if not text or not text.isascii() or not text.isprintable() or " " in text:
        raise FaceAtlasClientError(f"the {what} is empty or holds whitespace or non-ASCII characters "
                                   "(copy it again)", "invalid_argument")
    return text


def _once(idempotency_key: str | None) -> dict[str, str] | None:
    """The header of a write call that a retry with the same key repeats without acting twice."""
    if idempotency_key is None:
        return None
    return {"Idempotency-Key": _header_value(idempotency_key, "Idempotency-Key")}


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _gist(body: bytes, limit: int = 160) -> str:
    """A short line of a body that is not the API's JSON: an HTML page's title (a proxy's "502 Bad
    Gateway"), or its text without tags, cut at ``limit`` characters."""
    text = body[:4096].decode("utf-8", "replace")
    title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
    if title and title.group(1).strip():
        text = title.group(1)
    elif "<" in text:
        text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_of(response: httpx.Response, body: bytes) -> FaceAtlasApiError:
    """The server's error answer, whatever shape a proxy in between gave it."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", _gist(body) or response.reason_phrase
    return FaceAtlasApiError(response.status_code, code, message, _retry_after(response.headers.get("retry-after")))


def _closed() -> FaceAtlasClientError:
    return FaceAtlasClientError("this client is closed (a call after close() or after its with block): make "
                                "a new FaceAtlasClient", "client_closed")


class _TimeLeft(dict):
    """The ``timeout`` extension of one call's request: httpx's per-phase timeouts (connect, pool,
    write, read), each the seconds left until the call's deadline when httpcore starts the phase
    (the connection, the request, the headers, the body), so that no phase waits past it."""

    PHASES = ("connect", "read", "write", "pool")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        super().__init__(dict.fromkeys(self.PHASES, self._left()))

    def _left(self) -> float:
        return max(self._deadline - time.monotonic(), 0.001)  # 0 would be a non-blocking socket, not a timeout

    def __getitem__(self, key: str) -> Any:
        return self._left() if key in self.PHASES else super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._left() if key in self.PHASES else super().get(key, default)


def _late() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("the whole call took longer than the client's timeout")


def _past(deadline: float) -> None:
    """A call past its deadline is a timeout, whatever came (e.g. over a transport that takes no timeouts)."""
    if time.monotonic() > deadline:
        raise _late()


def _send(http: httpx.Client, request: httpx.Request, deadline: float) -> httpx.Response:
    """``request`` sent and its answer's headers read, in a thread of its own waited on until
    ``deadline``: httpx's timeouts bound each read, so a server that sent its header lines a
    byte at a time within each read's timeout held the call for as long as it liked (a 204 came
    back a success long after the deadline). Past it, :func:`_late`; the thread lets go of the
    connection when the server is done or silent (its answer, if one comes, is closed unread)."""
    outcome: dict[str, Any] = {}
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            response = http.send(request, stream=True)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            outcome["error"] = exc
            response = None
        with lock:
            outcome["response"] = response
            done.set()
            abandoned = outcome.get("abandoned", False)
        if abandoned and response is not None:
            response.close()

    threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True,
                     name="faceatlas-client-call").start()
    try:
        done.wait(max(deadline - time.monotonic(), 0))
    finally:  # past the deadline, or interrupted (Ctrl-C)
        with lock:
            outcome["abandoned"] = not done.is_set()
    if outcome["abandoned"]:
        raise _late()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def _wire_error(exc: Exception, base_url: str, timeout: float) -> FaceAtlasTransportError:
    """No answer from ``base_url``, said with what to check (a proxy, http vs https)."""
    if isinstance(exc, httpx.TimeoutException):
        return FaceAtlasTransportError(f"no answer from {base_url} within {timeout:g} s (the client's timeout): "
                                       "the server is busy or unreachable", "timeout")
    text = str(exc) or type(exc).__name__
    hint = ""
    if "WRONG_VERSION_NUMBER" in text:
        hint = " (the server speaks plain http: use http://)"
    elif any(scheme in getproxies() for scheme in ("http", "https", "all")):  # what httpx takes from the environment
        hint = " (through the proxy of HTTP_PROXY/HTTPS_PROXY/ALL_PROXY: NO_PROXY=<host> bypasses it)"
    return FaceAtlasTransportError(f"cannot reach the server at {base_url}: {text}{hint}")


def _is(kind: str, expect: str) -> bool:
    """Is the answer's media type ``kind`` the one expected (``"image"``: any image type)?"""
    return kind.startswith("image/") if expect == "image" else kind == expect
