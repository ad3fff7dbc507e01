"""The server's log: a request id on every call, one access line per call, and the format of every line.

- :class:`RequestLog` (an ASGI middleware, the outermost) gives each call a request id: a valid
  ``X-Request-ID`` the client sent (at most 64 of ``A-Z a-z 0-9 . _ -``) is kept, else a new one;
  every answer carries it in ``X-Request-ID`` (errors too). Once the answer is sent it writes the
  call's access line (logger ``faceatlas.access``): the time, client, method, path as the access log
  may hold it (:func:`faceatlas.service.redact.loggable_path`: no person's id, no key's secret; the
  query string redacted), status, latency in ms, request id and tenant (when a key named one).
- uvicorn's own access line of such a call is dropped (:class:`UvicornAccess`); the lines uvicorn
  writes of calls that never reach the app (a 503 past ``FACEATLAS_MAX_CONNECTIONS``) stay, their path
  redacted the same way.
- ``FACEATLAS_LOG_FORMAT``: ``text`` (``2026-12-08T10:11:12.345Z INFO logger: message``) or ``json``,
  one JSON object per line (``time``, ``level``, ``logger``, ``message``; an access line also
  ``method``, ``path``, ``status``, ``ms``, ``request_id``, ``tenant``, ``client``; a line written while a
  call is answered its ``request_id``; a traceback ``exception``). :func:`log_config` is the
  ``logging.config.dictConfig`` of ``faceatlas serve`` (and of each of its processes).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceatlas.service.redact import redact_path, redact_people, redact_people_query, redact_query

__all__ = ["ACCESS_LOGGER", "REQUEST_ID_HEADER", "RequestLog", "log_config", "request_id"]

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER = "faceatlas.access"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_access = logging.getLogger(ACCESS_LOGGER)
# the id of the call this code runs for (None outside a call); threads of run_in_threadpool see it too
_request_id: ContextVar[str | None] = ContextVar("faceatlas_request_id", default=None)


def request_id() -> str | None:
    """The id of the call being answered, or None."""
    return _request_id.get()


def _given_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.fullmatch(text) else None
    return None


def _template(scope: Scope) -> str | None:
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) else None


def _loggable_target(raw_path: str, query: bytes, template: str | None = None) -> str:
    """The path (as sent: percent-encoded) and query of a call as a log line may hold them."""
    path = redact_path(redact_people(raw_path, template))
    if not query:
        return path
    return f"{path}?{redact_people_query(redact_query(query)).decode('latin-1')}"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class RequestLog:
    """The request id and access line of every HTTP call (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _given_id(scope) or uuid.uuid4().hex
        token = _request_id.set(rid)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                self._log(scope, 500 if status is None else status, (time.perf_counter() - started) * 1000, rid)
            finally:
                _request_id.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, ms: float, rid: str) -> None:
        if not _access.isEnabledFor(logging.INFO):
            return
        raw = scope.get("raw_path") or scope.get("path", "").encode("latin-1")
        path = _loggable_target(raw.decode("latin-1"), scope.get("query_string", b""), _template(scope))
        method, version, client = scope.get("method", ""), scope.get("http_version", "1.1"), _client(scope)
        tenant = (scope.get("state") or {}).get("tenant")
        tenant = tenant if isinstance(tenant, str) else None
        _access.info('%s "%s %s HTTP/%s" %d %.1f ms id=%s%s', client, method, path, version, status, ms, rid,
                     f" tenant={tenant}" if tenant else "",
                     extra={"access": {"method": method, "path": path, "status": status, "ms": round(ms, 1),
                                       "request_id": rid, "tenant": tenant, "client": client}})


class UvicornAccess(logging.Filter):
    """uvicorn's access line: dropped for a call :class:`RequestLog` logs itself; else (a call
    uvicorn answered without the app) kept, its path redacted as the app's are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _request_id.get() is not None:
            return False
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, _, query = args[2].partition("?")
            record.args = (*args[:2], _loggable_target(path, query.encode("latin-1")), *args[3:])
        return True


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message`` (time ISO 8601 UTC, milliseconds), the request id of a line
    written while a call is answered (``[id]``), its traceback after it."""

    def format(self, record: logging.LogRecord) -> str:
        rid = _request_id.get() if not hasattr(record, "access") else None
        line = f"{_time(record.created)} {record.levelname} {record.name}{f' [{rid}]' if rid else ''}: " \
               f"{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, an access line's fields,
    ``request_id`` of a line written while a call is answered, ``exception`` (its traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _time(record.created), "level": record.levelname, "logger": record.name,
                                 "message": record.getMessage()}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        elif (rid := _request_id.get()) is not None:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(log_format: str = "text") -> dict[str, Any]:
    """The logging of ``faceatlas serve``: uvicorn's, the access lines (stdout) and FaceAtlas's own from
    INFO on (stderr), every line in ``log_format`` (``text`` or ``json``); other libraries' warnings
    too (they went out bare, through Python's last-resort handler)."""
    formatter = {"()": f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"faceatlas": formatter},
        "filters": {"uvicorn_access": {"()": f"{__name__}.UvicornAccess"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "faceatlas", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "faceatlas", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False,
                               "filters": ["uvicorn_access"]},
            "faceatlas": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
