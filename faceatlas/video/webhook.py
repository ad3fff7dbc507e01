"""Webhook delivery: signed POSTs from a background thread over one keep-alive connection,
retried with exponential backoff, and a dead letter file for what is not delivered.

Each event is POSTed as its JSON body with the headers

- ``X-FaceAtlas-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body with the shared secret>``
- ``Idempotency-Key: <event id>`` (the same on every retry: receivers drop repeats)
- ``X-FaceAtlas-Event: <event type>``

Delivery is at-least-once and in order: a 2xx ends it, a network error, 408, 429 or 5xx is
retried (backoff doubling from ``backoff_start`` to ``backoff_max``, a ``Retry-After`` of the
receiver honoured up to :data:`RETRY_AFTER_MAX_S`) until the event is ``retry_for`` seconds old
(and ``max_attempts`` tries when set); other 4xx are given up at once; 410 Gone stops the
webhook (one error line; every later event is given up unsent). A redirect (3xx) is not
followed (the event and the URL's credentials stay with the configured host): it is given up,
logged with where it pointed, so that the final URL can be configured. ``emit`` only enqueues,
so the pipeline never waits on a receiver. Every event not delivered (given up, dropped by a
full queue, left at close) is appended to the ``dead_letter`` file when one is set, as the body
it would have been POSTed with.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import logging
import queue
import threading
import time
import urllib.parse
from pathlib import Path

import httpx

from faceatlas.video.config import WebhookConfig
from faceatlas.video.events import Event

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FaceAtlas-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE = {408, 429}
RETRY_AFTER_MAX_S = 300.0  # the longest Retry-After honoured (a receiver asking for a day gets 5 minutes)


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


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), bounded by
    :data:`RETRY_AFTER_MAX_S`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(RETRY_AFTER_MAX_S, seconds))


class WebhookSink:
    """Delivers events to one URL from a background thread."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0
        self.failed = 0  # given up on, dropped by a full queue, or left at close
        self.dead_lettered = 0  # of those, the events written to ``config.dead_letter``
        self._in_flight: Event | None = None  # the event being delivered (in neither count while its attempts last)
        self._queue: queue.Queue[tuple[Event, float] | None] = queue.Queue()
        self._dropped = 0  # events refused by the current backlog (``max_queued``), for the warnings
        self._abort = threading.Event()
        self._gone = False  # the receiver answered 410 Gone: nothing more is sent
        self._lock = threading.Lock()
        # the event in flight that close() gave up while its request hung: the thread, if it ever ends that
        # request, counts it no second time (the only event two threads may settle; no set of every id
        # given up, which grew for as long as a receiver stayed down)
        self._abandoned: str | None = None
        self._dead_file = None if config.dead_letter is None else Path(config.dead_letter)
        if self._dead_file is not None:
            self._dead_file.parent.mkdir(parents=True, exist_ok=True)
        self._url, self._auth = self._target(config.url)
        # one keep-alive connection for every request (a new TCP connection per event capped throughput);
        # the transport itself: httpx's Client parses a redirect's Location even when not following it
        # (one it cannot parse, 'http://[::1', was an error instead of the answer)
        self._transport = httpx.HTTPTransport()
        self._timeout = httpx.Timeout(config.timeout).as_dict()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    @staticmethod
    def _target(url: str) -> tuple[str, str | None]:
        """The URL to POST to, without its user:password@, and that login as a Basic header."""
        parts = urllib.parse.urlsplit(url)
        login = None
        if parts.username is not None:
            user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            login = "Basic " + base64.b64encode(user.encode()).decode()
        return urllib.parse.urlunsplit((parts.scheme, _host(parts), parts.path, parts.query, "")), login

    def emit(self, event: Event) -> None:
        """Queue ``event`` for delivery; with ``max_queued`` waiting already (the URL down or slow
        while the camera goes on), it is given up at once (dead-lettered, counted; one warning a
        backlog): the queue, in memory, grew without bound."""
        if self._gone:
            self._give_up(event)
            return
        if self._queue.qsize() >= self.config.max_queued:
            if not self._dropped:
                log.warning("webhook %s is behind: %d events wait, later ones are dropped%s until it catches up",
                            self.shown_url, self.config.max_queued, self._dead_note)
            self._dropped += 1
            self._give_up(event)
            return
        if self._dropped and self._queue.qsize() < self.config.max_queued // 2:
            log.warning("webhook %s caught up: %d events were dropped%s", self.shown_url, self._dropped,
                        self._dead_note)
            self._dropped = 0
        self._queue.put((event, time.monotonic()))

    @property
    def _dead_note(self) -> str:
        return "" if self._dead_file is None else f" (written to {self._dead_file})"

    def _give_up(self, event: Event, *, abandon: bool = False) -> None:
        """Count ``event`` as not delivered and append it to the dead letter file (once: ``abandon``,
        close() giving up the event in flight, settles it for the thread too)."""
        with self._lock:
            if event.id == self._abandoned:
                return
            if abandon:
                self._abandoned = event.id
            self.failed += 1
            if self._dead_file is None:
                return
            try:
                with open(self._dead_file, "a", encoding="utf-8") as handle:
                    handle.write(event.to_json() + "\n")
                self.dead_lettered += 1
            except OSError as exc:
                log.error("webhook %s: event %s not written to the dead letter file %s: %s", self.shown_url,
                          event.id, self._dead_file, exc.strerror or exc)

    @property
    def undelivered(self) -> int:
        """Events not delivered: given up on (refused, out of time, dropped by a full queue) and
        still queued."""
        return (self.failed + (self._in_flight is not None)
                + sum(item is not None for item in list(self._queue.queue)))

    @property
    def dead_letters(self) -> tuple[int, str] | None:
        """How many events were written to the dead letter file, and its path (None: no file set)."""
        return None if self._dead_file is None else (self.dead_lettered, str(self._dead_file))

    @property
    def shown_url(self) -> str:
        """The URL as logs show it: no user, password or query (a token there leaked into every line)."""
        return _shown(self.config.url)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds, ``flush_timeout`` by
        default), then stop; what is left is given up (dead-lettered)."""
        self._queue.put(None)
        self._thread.join(self.config.flush_timeout if timeout is None else timeout)
        if self._thread.is_alive():
            self._abort.set()  # the thread gives the rest up without sending
            self._thread.join(min(5.0, self.config.timeout + 1))
        if self._thread.is_alive():  # stuck in a request: what it holds and what waits are given up here
            in_flight = self._in_flight
            if in_flight is not None:
                self._give_up(in_flight, abandon=True)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._give_up(item[0])
        else:
            self._transport.close()
        if self.undelivered:  # reported as the sink's ``undelivered`` (the watch summary prints it)
            log.warning("webhook %s: %d events not delivered (%d delivered)%s", self.shown_url, self.undelivered,
                        self.delivered, "" if self._dead_file is None
                        else f", {self.dead_lettered} written to {self._dead_file}")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            event, queued_at = item
            self._in_flight = event
            if self._abort.is_set() or self._gone:
                delivered = False
            else:
                try:
                    delivered = self._deliver(event, queued_at)
                except Exception:  # a bug must not end the thread: every later event would be lost unsaid
                    log.exception("webhook %s: event %s failed", self.shown_url, event.id)
                    delivered = False
            if delivered:
                with self._lock:
                    if event.id != self._abandoned:
                        self.delivered += 1
            else:
                self._give_up(event)
            self._in_flight = None

    def _deliver(self, event: Event, queued_at: float) -> bool:
        body = event.to_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.config.secret),
            IDEMPOTENCY_HEADER: event.id,
            "X-FaceAtlas-Event": event.type,
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth
        deadline = queued_at + self.config.retry_for
        last = "no answer"
        attempt = 0
        while True:
            attempt += 1
            status, location, wait = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and 300 <= status < 400:
                log.error("webhook %s answered event %s with HTTP %d to %s: redirects are not followed (the "
                          "event and the URL's login stay with its host): configure the final URL", self.shown_url,
                          event.id, status, _shown(location))
                return False
            if status == 410:
                self._gone = True
                log.error("webhook %s answered HTTP 410 Gone: no more events are sent to it%s", self.shown_url,
                          self._dead_note)
                return False
            if status is not None and 400 <= status < 500 and status not in RETRYABLE:
                log.error("webhook %s refused event %s with HTTP %d", self.shown_url, event.id, status)
                return False
            last = "no answer" if status is None else f"HTTP {status}"
            delay = min(self.config.backoff_max, self.config.backoff_start * 2 ** (attempt - 1))
            if wait is not None and status in (429, 503):
                delay = wait
            out_of_attempts = self.config.max_attempts is not None and attempt >= self.config.max_attempts
            if out_of_attempts or time.monotonic() + delay > deadline:
                break
            if self._abort.wait(delay):
                return False
        log.error("webhook %s: event %s not delivered after %d attempts in %.0f s (last: %s)%s", self.shown_url,
                  event.id, attempt, time.monotonic() - queued_at, last, self._dead_note)
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, float | None]:
        """The HTTP status (None: no answer), for a redirect where it pointed, and the seconds a
        ``Retry-After`` asked for."""
        started = time.monotonic()
        try:
            request = httpx.Request("POST", self._url, content=body, headers=headers,
                                    extensions={"timeout": self._timeout})
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("webhook %s unreachable after %.1fs: %s", self.shown_url, time.monotonic() - started,
                        exc if str(exc) else type(exc).__name__)
            return None, "", None
        return (response.status_code, response.headers.get("Location", ""),
                retry_after(response.headers.get("Retry-After")))
