"""Where events go: a JSON lines file, a database table, MQTT, webhooks (see webhook.py).

Every sink has ``emit(event)`` (never blocks for long) and ``close()`` (flushes). :class:`EventBus`
fans one event out to every sink, from any number of camera threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from sqlalchemy import delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from faceatlas.errors import InvalidInput
from faceatlas.video.config import MqttConfig
from faceatlas.video.events import Event
from faceatlas.video.store import CountRow, EventRow, open_events_db

log = logging.getLogger(__name__)
EVENTS_STDOUT = "-"  # the events "file" that is standard output (`--events -`)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonRecord(Protocol):
    """Anything that writes itself as one line of JSON (video ``Event``, drive ``DriveEvent``)."""

    def to_json(self) -> str: ...


class JsonlSink:
    """One JSON line per event (flushed per line, so a crash loses nothing written); appends to
    the file, or starts it afresh with ``append=False``. The one JSONL writer of video and drive.
    ``path`` ``-`` (:data:`EVENTS_STDOUT`) is standard output, as for most command-line tools (a file
    named "-" was created), left open when the sink closes. When its reader goes away (``| head -1``)
    and ``on_reader_gone`` is given, the sink writes no more, sets ``reader_gone`` and calls it once (the run stops:
    its output is read by nobody), as Unix tools end; it was a traceback, the whole video run, and
    exit 1."""

    def __init__(self, path: Path | str, *, append: bool = True,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        self._owned = str(path) != EVENTS_STDOUT
        self.reader_gone = False
        self._on_reader_gone = on_reader_gone
        self._file: TextIO
        if self._owned:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self._file = sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: JsonRecord) -> None:
        with self._lock:
            if self.reader_gone:
                return
            try:
                self._file.write(event.to_json() + "\n")
                self._file.flush()
            except BrokenPipeError:
                # a named pipe (FIFO) given as the file: an error; without on_reader_gone the caller
                # ends on it (drive's run)
                if self._owned or self._on_reader_gone is None:
                    raise
                self.reader_gone = True
        if self.reader_gone and self._on_reader_gone is not None:
            self._on_reader_gone()

    def close(self) -> None:
        with self._lock:
            if self._owned:
                self._file.close()
            elif not self.reader_gone:
                self._file.flush()


def events_write_failed(exc: OSError, path: Path | str) -> InvalidInput:
    """The error for an events file that could not be written (a full disk, a file size limit): it
    names the file (standard output for ``-``), not the source being read."""
    where = "to standard output" if str(path) == EVENTS_STDOUT else str(path)
    reason = exc.strerror.lower() if exc.strerror else str(exc)
    return InvalidInput(f"cannot write the events {where}: {reason}")


class DatabaseSink:
    """Inserts events into the ``video_events`` table (and ``counts`` events into ``video_counts``) in
    batches (every ``batch`` events or ``interval`` seconds, and on close), on behalf of ``tenant``
    (the API lists them per tenant).

    A database that is locked or unreachable does not stop the cameras: its events wait (at most
    ``max_waiting``, the oldest dropped beyond) and the write is retried, the delay doubling to
    30 s; an SQLite lock is waited on ``busy_s`` per try (the cameras wait meanwhile). What is not
    written when the sink closes is its ``undelivered`` count (the watch summary prints it)."""

    RETRY_MAX_S = 30.0

    def __init__(self, url: str, *, tenant: str = "default", batch: int = 50, interval: float = 1.0,
                 busy_s: float = 2.0, max_waiting: int = 100_000) -> None:
        self.engine = open_events_db(url, busy_s=busy_s)  # the usual 30 s would stall every camera per try
        self.tenant = tenant
        self.batch = batch
        self.interval = interval
        self.max_waiting = max_waiting
        self._pending: list[Event] = []
        self._dropped = 0
        self._flushed_at = time.monotonic()
        self._retry_at = 0.0
        self._delay = 0.0
        self._lock = threading.Lock()

    @property
    def undelivered(self) -> int:
        """Events not written (yet): waiting for the database, or dropped past ``max_waiting``."""
        with self._lock:
            return self._dropped + len(self._pending)

    def emit(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > self.max_waiting:
                del self._pending[0]
                self._dropped += 1
            now = time.monotonic()
            if now >= self._retry_at and (len(self._pending) >= self.batch or now - self._flushed_at >= self.interval):
                self._try_flush()

    def _try_flush(self) -> bool:
        """Write what waits; a database locked or gone keeps it waiting (counted per event, not per try)."""
        try:
            self._flush()
        except OperationalError as exc:
            if not self._delay:
                log.warning("event database not writable (%s): events wait, retried with backoff",
                            str(exc.orig).splitlines()[0][:200])
            self._delay = min(self.RETRY_MAX_S, max(1.0, self._delay * 2))
            self._retry_at = time.monotonic() + self._delay
            return False
        if self._delay:
            log.warning("event database writable again")
        self._delay = self._retry_at = 0.0
        return True

    def _flush(self) -> None:
        if self._pending:
            with Session(self.engine) as session, session.begin():
                for pending in self._pending:
                    session.merge(EventRow.of(pending, self.tenant))
                    if pending.type == "counts":  # the per-minute series, one row per class
                        superseded = CountRow.superseded(pending, self.tenant)
                        if superseded:
                            session.execute(delete(CountRow).where(CountRow.id.in_(superseded)))
                        for row in CountRow.of(pending, self.tenant):
                            session.merge(row)
            self._pending.clear()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._try_flush():
                log.error("%d events not written to the event database (it stayed locked or unreachable)",
                          len(self._pending))
        self.engine.dispose()


class MqttSink:
    """Publishes each event as JSON to ``<topic>/<camera>/<type>`` with QoS 1 (needs paho-mqtt:
    ``pip install 'faceatlas[mqtt]'``).

    A broker that cannot be reached is one warning (again only after it was reached): events wait
    in paho's queue and go out when the background reconnection, with backoff, succeeds.
    ``undelivered`` counts the events the broker has not acknowledged: still waiting, refused by a
    full queue, or left when the sink closed."""

    CLOSE_GRACE_S = 1.0  # the time a close gives the DISCONNECT when the acknowledgements took all of it

    def __init__(self, config: MqttConfig) -> None:
        import paho.mqtt.client as mqtt

        self.config = config
        self.topic = config.topic.rstrip("/")
        self._lock = threading.Lock()
        self._waiting: set[int] = set()  # message ids not acknowledged yet
        self._early: set[int] = set()  # acknowledged before publish() returned their id
        self._refused = 0
        self._warned = False
        self._gone = threading.Event()  # the connection ended (set by on_disconnect)
        self._denied: Counter[str] = Counter()  # PUBACKs with a failure reason (MQTT 5), per reason
        protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"faceatlas-{id(self):x}",
                                  protocol=protocol)
        if config.tls or config.ca_certs:
            self.client.tls_set(ca_certs=config.ca_certs)
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.reconnect_delay_set(config.backoff_start, config.backoff_max)
        self.client.max_queued_messages_set(config.max_queued)
        self.client.on_publish = self._acknowledged
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        try:
            self.client.connect(config.host, config.port)
        except OSError as exc:
            self._warn(f"not reachable ({exc})")
            self.client.connect_async(config.host, config.port)
        self.client.loop_start()

    @property
    def undelivered(self) -> int:
        with self._lock:
            return self._refused + len(self._waiting)

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("MQTT broker %s:%d %s; retrying in the background, events wait in a queue",
                        self.config.host, self.config.port, what)

    def _acknowledged(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        """A PUBACK; on MQTT 5 its reason code says whether the broker took the message (a publish its
        ACL denies is acknowledged "Not authorized": not delivered, logged once per reason)."""
        refused = bool(getattr(reason, "is_failure", False))
        with self._lock:
            if mid in self._waiting:
                self._waiting.remove(mid)
            else:
                self._early.add(mid)
            if refused:
                self._refused += 1
                self._denied[str(reason)] += 1
                first = self._denied[str(reason)] == 1
        if refused and first:
            log.error("MQTT broker %s:%d refused a publish to %s/... (%s): such events are not delivered",
                      self.config.host, self.config.port, self.topic, reason)

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            if self._warned:
                log.info("MQTT broker %s:%d reached", self.config.host, self.config.port)
            self._warned = False
        else:
            self._warn(f"refused the connection ({reason})")

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._gone.set()
        if reason.is_failure:
            self._warn(f"lost ({reason})")

    def emit(self, event: Event) -> None:
        import paho.mqtt.client as mqtt

        # not under self._lock: paho calls on_publish holding its own lock, which publish() takes
        info = self.client.publish(f"{self.topic}/{event.camera}/{event.type}", event.to_json(), qos=1)
        with self._lock:
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # not queued
                self._refused += 1
            elif info.mid in self._early:
                self._early.remove(info.mid)
            else:
                self._waiting.add(info.mid)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._warn(f"is behind: queue of {self.config.max_queued} full, events dropped")
        elif info.rc == mqtt.MQTT_ERR_NO_CONN:
            self._warn("not connected")

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` s for the broker to acknowledge (not when it is unreachable), then
        disconnect; the close is bounded by ``timeout`` (plus at most :attr:`CLOSE_GRACE_S` for the
        goodbye) whatever the broker does.

        The client disconnects before its network thread is stopped: stopped first, that thread ran
        on while messages waited for an acknowledgement, until paho's keepalive (60 s) gave up on a
        broker that froze (``kill -STOP``) or never spoke MQTT (a port that only accepts), and the
        `watch` at exit ignored Ctrl-C meanwhile. A DISCONNECT that cannot even be written (a full
        socket buffer) is followed by shutting the socket down."""
        import paho.mqtt.client as mqtt

        deadline = time.monotonic() + timeout
        while self.client.is_connected() and self.undelivered and time.monotonic() < deadline:
            time.sleep(0.01)
        self._gone.clear()
        queued = self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS  # a socket: the DISCONNECT is queued
        if queued and not self._gone.wait(max(deadline - time.monotonic(), self.CLOSE_GRACE_S)):
            sock = self.client.socket()
            if isinstance(sock, socket.socket):  # TLS too (an SSLSocket is one)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the network thread sees the end and stops
        self.client.loop_stop()
        if self.undelivered:  # reported as the sink's ``undelivered`` (the watch summary prints it)
            log.info("MQTT broker %s:%d: %d events not delivered", self.config.host, self.config.port,
                     self.undelivered)


class EventBus:
    """Fans events out to sinks and counts them by type; a failing sink is logged (its first failure
    with the traceback, then counted), not fatal, and its failed events are in :meth:`undelivered`."""

    def __init__(self, sinks: list[EventSink] | None = None) -> None:
        self.sinks = list(sinks or [])
        self.counts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # events a sink raised on, per sink (e.g. a database refusing them)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.counts[event.type] += 1
            for sink in self.sinks:
                try:
                    sink.emit(event)
                except Exception:
                    name = type(sink).__name__
                    if not self.failed[name]:
                        log.exception("sink %s failed on event %s (later failures are counted)", name, event.id)
                    self.failed[name] += 1

    def undelivered(self) -> dict[str, int]:
        """Events not delivered, per sink: those a sink raised on, and those it counts itself (an
        ``undelivered`` attribute: the broker's or the webhook's unacknowledged events)."""
        counts: dict[str, int] = dict(self.failed)  # a Counter holds only the sinks that failed
        for sink in self.sinks:
            count = getattr(sink, "undelivered", None)
            if isinstance(count, int):
                counts[type(sink).__name__] = counts.get(type(sink).__name__, 0) + count
        return counts

    def dead_letters(self) -> dict[str, tuple[int, str]]:
        """Per sink with a dead letter file: how many events it wrote there, and the file."""
        files: dict[str, tuple[int, str]] = {}
        for sink in self.sinks:
            dead = getattr(sink, "dead_letters", None)
            if isinstance(dead, tuple):
                files[type(sink).__name__] = dead
        return files

    def close(self) -> None:
        """Flush and close every sink."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)


def events_from_jsonl(path: Path) -> list[Event]:
    """The events of a JSON lines file."""
    with open(path, encoding="utf-8") as handle:
        return [Event.from_dict(json.loads(line)) for line in handle if line.strip()]
