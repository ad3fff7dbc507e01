"""Webhook delivery: signed POSTs from a background thread, retried with exponential backoff.

Each event is POSTed as its JSON body with the headers

- ``X-FaceAtlas-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>``
- ``Idempotency-Key: <event id>`` (the same on every retry: receivers drop repeats)
- ``X-FaceAtlas-Event: <event type>``

Delivery is at-least-once and in order: a 2xx ends it, a network error, 408, 429 or 5xx is
retried (backoff doubling from ``backoff_start`` to ``backoff_max``, up to ``max_attempts``),
other 4xx are given up at once. ``emit`` only enqueues, so the pipeline never waits on a receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time
import urllib.error
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


class WebhookSink:
    """Delivers events to one URL from a background thread."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        self._queue.put(event)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(5)
            log.warning("webhook %s: stopped with %d events undelivered", self.config.url, self._queue.qsize())

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            if self._deliver(event):
                self.delivered += 1
            else:
                self.failed += 1

    def _deliver(self, event: Event) -> bool:
        body = event.to_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.config.secret),
            IDEMPOTENCY_HEADER: event.id,
            "X-FaceAtlas-Event": event.type,
        }
        for attempt in range(1, self.config.max_attempts + 1):
            status = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and 400 <= status < 500 and status not in RETRYABLE:
                log.error("webhook %s refused event %s with HTTP %d", self.config.url, event.id, status)
                return False
            delay = min(self.config.backoff_max, self.config.backoff_start * 2 ** (attempt - 1))
            if attempt < self.config.max_attempts and self._abort.wait(delay):
                return False
        log.error("webhook %s: event %s not delivered after %d attempts", self.config.url, event.id, attempt)
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> int | None:
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            log.warning("webhook %s unreachable after %.1fs: %s", self.config.url, time.monotonic() - started, exc)
            return None
