"""Webhook delivery: signed POSTs from a background thread, retried with exponential backoff.

Each event is POSTed as its JSON body with the headers

- ``X-FaceAtlas-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>``
- ``Idempotency-Key: <event id>`` (the same on every retry: receivers drop repeats)
- ``X-FaceAtlas-Event: <event type>``

Delivery is at-least-once and in order: a 2xx ends it, a network error, 408, 429 or 5xx is
retried (backoff doubling from ``backoff_start`` to ``backoff_max``, up to ``max_attempts``),
other 4xx are given up at once. A redirect (3xx) is not followed (the event and the URL's
credentials stay with the configured host): it is given up, logged with where it pointed, so
that the final URL can be configured. ``emit`` only enqueues, so the pipeline never waits on a
receiver.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from faceatlas.video.config import WebhookConfig
from faceatlas.video.events import Event

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FaceAtlas-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE = {408, 429}


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    return hmac.compare_digest(sign(body, secret), header or "")


def _host(parts: urllib.parse.SplitResult) -> str:
    """host[:port] of a URL, without its user and password."""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def _shown(url: str) -> str:
    """A URL as logs show it: scheme, host and path only."""
    try:
        parts = urllib.parse.urlsplit(url)
        if not parts.netloc:  # a relative Location, or none
            return repr(url[:200])
        return urllib.parse.urlunsplit((parts.scheme, _host(parts), parts.path, "", ""))
    except ValueError:  # 'http://[::1', a port of 99999: raised in log.exception, it ended the thread
        return "(an invalid URL)"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer itself (urllib's default re-sent the event as a bodiless GET,
    with the Authorization header, to whatever host the Location named)."""

    def http_error_302(self, *args: object, **kwargs: object) -> None:
        """Not handled (urllib's handler parsed the Location first: one it could not split,
        ``http://[::1``, was a ValueError out of the delivery): the 3xx is raised as its HTTPError."""
        return None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_NoRedirects)


class WebhookSink:
    """Delivers events to one URL from a background thread."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0
        self.failed = 0
        self._in_flight = 0  # the event being delivered (in neither count while its attempts last)
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._dropped = 0  # events refused by a full queue (``max_queued``): a dead URL on a live camera
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        """Queue ``event`` for delivery; with ``max_queued`` waiting already (the URL down or slow
        while the camera goes on), it is dropped and counted (one warning a backlog): the queue, in
        memory, grew without bound."""
        if self._queue.qsize() >= self.config.max_queued:
            if not self._dropped:
                log.warning("webhook %s is behind: %d events wait, later ones are dropped until it catches up",
                            self.shown_url, self.config.max_queued)
            self._dropped += 1
            return
        if self._dropped and self._queue.qsize() < self.config.max_queued // 2:
            log.warning("webhook %s caught up: %d events were dropped", self.shown_url, self._dropped)
            self.failed += self._dropped
            self._dropped = 0
        self._queue.put(event)

    @property
    def undelivered(self) -> int:
        """Events not delivered: given up on (refused, out of attempts, dropped by a full queue) and
        still queued."""
        return (self.failed + self._dropped + self._in_flight
                + sum(event is not None for event in list(self._queue.queue)))

    @property
    def shown_url(self) -> str:
        """The URL as logs show it: no user, password or query (a token there leaked into every line)."""
        return _shown(self.config.url)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(5)
        if self.undelivered:  # reported as the sink's ``undelivered`` (the watch summary prints it)
            log.warning("webhook %s: %d events not delivered (%d delivered)", self.shown_url, self.undelivered,
                        self.delivered)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            self._in_flight = 1
            try:
                delivered = self._deliver(event)
            except Exception:  # a bug must not end the thread: every later event would be lost unsaid
                log.exception("webhook %s: event %s failed", self.shown_url, event.id)
                delivered = False
            if delivered:
                self.delivered += 1
            else:
                self.failed += 1
            self._in_flight = 0

    def _deliver(self, event: Event) -> bool:
        body = event.to_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.config.secret),
            IDEMPOTENCY_HEADER: event.id,
            "X-FaceAtlas-Event": event.type,
        }
        last = "no answer"
        for attempt in range(1, self.config.max_attempts + 1):
            status, location = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and 300 <= status < 400:
                log.error("webhook %s answered event %s with HTTP %d to %s: redirects are not followed (the "
                          "event and the URL's login stay with its host): configure the final URL", self.shown_url,
                          event.id, status, _shown(location))
                return False
            if status is not None and 400 <= status < 500 and status not in RETRYABLE:
                log.error("webhook %s refused event %s with HTTP %d", self.shown_url, event.id, status)
                return False
            last = "no answer" if status is None else f"HTTP {status}"
            delay = min(self.config.backoff_max, self.config.backoff_start * 2 ** (attempt - 1))
            if attempt < self.config.max_attempts and self._abort.wait(delay):
                return False
        log.error("webhook %s: event %s not delivered after %d attempts (last: %s)", self.shown_url, event.id,
                  attempt, last)
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        """The HTTP status (None: no answer) and, for a redirect, where it pointed."""
        parts = urllib.parse.urlsplit(self.config.url)
        if parts.username is not None:  # user:password@ in the URL: urllib took it for the host name
            login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers = {**headers, "Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
        url = urllib.parse.urlunsplit((parts.scheme, _host(parts), parts.path, parts.query, ""))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        started = time.monotonic()
        try:
            with _OPENER.open(request, timeout=self.config.timeout) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location", "") if exc.headers else ""
        except (urllib.error.URLError, OSError) as exc:
            log.warning("webhook %s unreachable after %.1fs: %s", self.shown_url, time.monotonic() - started, exc)
            return None, ""
