"""Where events go: a JSON lines file, a database table, MQTT, webhooks (see webhook.py).

Every sink has ``emit(event)`` (never blocks for long) and ``close()`` (flushes). :class:`EventBus`
fans one event out to every sink, from any number of camera threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from faceatlas.video.config import MqttConfig
from faceatlas.video.events import Event
from faceatlas.video.store import EventRow, open_events_db

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonRecord(Protocol):
    """Anything that writes itself as one line of JSON (video ``Event``, drive ``DriveEvent``)."""

    def to_json(self) -> str: ...


class JsonlSink:
    """One JSON line per event (flushed per line, so a crash loses nothing written); appends to
    the file, or starts it afresh with ``append=False``. The one JSONL writer of video and drive."""

    def __init__(self, path: Path, *, append: bool = True) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def emit(self, event: JsonRecord) -> None:
        with self._lock:
            self._file.write(event.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class DatabaseSink:
    """Inserts events into the ``video_events`` table in batches (every ``batch`` events or
    ``interval`` seconds, and on close), on behalf of ``tenant`` (the API lists them per tenant)."""

    def __init__(self, url: str, *, tenant: str = "default", batch: int = 50, interval: float = 1.0) -> None:
        self.engine = open_events_db(url)
        self.tenant = tenant
        self.batch = batch
        self.interval = interval
        self._pending: list[Event] = []
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)
            if len(self._pending) >= self.batch or time.monotonic() - self._flushed_at >= self.interval:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            with Session(self.engine) as session, session.begin():
                for event in self._pending:
                    session.merge(EventRow.of(event, self.tenant))
            self._pending.clear()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._flush()
        self.engine.dispose()


class MqttSink:
    """Publishes each event as JSON to ``<topic>/<camera>/<type>`` with QoS 1 (needs paho-mqtt:
    ``pip install 'faceatlas[mqtt]'``)."""

    def __init__(self, config: MqttConfig) -> None:
        import paho.mqtt.client as mqtt

        self.topic = config.topic.rstrip("/")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"faceatlas-{id(self):x}")
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        try:
            self.client.connect(config.host, config.port)
        except OSError as exc:
            log.warning("MQTT broker %s:%d not reachable (%s); retrying in the background", config.host,
                        config.port, exc)
            self.client.connect_async(config.host, config.port)
        self.client.loop_start()
        self._messages: list[mqtt.MQTTMessageInfo] = []

    def emit(self, event: Event) -> None:
        info = self.client.publish(f"{self.topic}/{event.camera}/{event.type}", event.to_json(), qos=1)
        self._messages.append(info)
        self._messages = [m for m in self._messages if not m.is_published()]

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for message in self._messages:
            while not message.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.client.loop_stop()
        self.client.disconnect()


class EventBus:
    """Fans events out to sinks and counts them by type; a failing sink is logged, not fatal."""

    def __init__(self, sinks: list[EventSink] | None = None) -> None:
        self.sinks = list(sinks or [])
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.counts[event.type] += 1
            for sink in self.sinks:
                try:
                    sink.emit(event)
                except Exception:
                    log.exception("sink %s failed on event %s", type(sink).__name__, event.id)

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
