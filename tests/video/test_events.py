"""Events and sinks: JSON round trip, JSON lines, database table, MQTT; identity vote; zones."""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from sqlalchemy import select
from sqlalchemy.orm import Session

from faceatlas.engine import Embedding, ModelMismatch
from faceatlas.video.config import MqttConfig, load_config
from faceatlas.video.events import EVENT_TYPES, Event
from faceatlas.video.identity import EmbeddingMatcher, IdentityMatch, IdentityVote
from faceatlas.video.sinks import DatabaseSink, EventBus, JsonlSink, events_from_jsonl
from faceatlas.video.store import EventRow
from faceatlas.video.zones import ZoneCounter, ZoneSpec


def _events() -> list[Event]:
    return [Event(kind, "cam", i, i / 10, i, "face", {"n": i}) for i, kind in enumerate(EVENT_TYPES)]


def test_event_json_round_trip():
    for event in _events():
        assert Event.from_dict(json.loads(event.to_json())) == event


def test_jsonl_and_database_sinks(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    bus = EventBus([JsonlSink(tmp_path / "events.jsonl"), DatabaseSink(url, batch=3)])
    for event in _events():
        bus.emit(event)
    bus.close()
    assert events_from_jsonl(tmp_path / "events.jsonl") == _events_ids(bus, tmp_path)
    assert bus.counts == {kind: 1 for kind in EVENT_TYPES}


def _events_ids(bus: EventBus, tmp_path) -> list[Event]:
    sink = next(s for s in bus.sinks if isinstance(s, DatabaseSink))
    with Session(sink.engine) as session:
        return [row.to_event() for row in session.scalars(select(EventRow).order_by(EventRow.frame))]


def test_vote_needs_several_frames_and_does_not_flicker():
    alice, bob = IdentityMatch("alice", "Alice", 0.6), IdentityMatch("bob", "Bob", 0.7)
    vote = IdentityVote(min_evidence=3, min_agree=2)
    vote.add(alice)
    assert vote.decide() is None, "one frame is not enough"
    vote.add(None)
    vote.add(alice)
    assert vote.decide() == alice
    vote.add(bob)
    vote.add(bob)
    assert vote.decide().external_id == "alice", "a tie keeps the current name"
    vote.add(bob)
    assert vote.decide().external_id == "alice", "no majority yet: 3 of 6"
    vote.add(bob)
    assert vote.decide() == bob


def test_embedding_matcher_threshold():
    matcher = EmbeddingMatcher(threshold=0.5)
    matcher.add("a", [Embedding(np.array([1.0, 0.0]), "space-1")], "A")
    assert matcher.match(Embedding(np.array([0.9, 0.1]), "space-1")).external_id == "a"
    assert matcher.match(Embedding(np.array([0.0, 1.0]), "space-1")) is None
    with pytest.raises(ModelMismatch):
        matcher.match(Embedding(np.array([0.9, 0.1]), "space-2"))


def test_zone_levels_and_report_rate():
    zone = ZoneCounter(ZoneSpec("z", [(0, 0), (100, 0), (100, 100), (0, 100)], levels={"busy": 2}, report_every=1.0,
                                min_dwell=0.0))
    inside = sv.Detections(xyxy=np.array([[10, 10, 20, 20], [30, 30, 40, 40], [50, 50, 60, 60]], np.float32))
    assert zone.update(inside[:1], 0.0) == {"zone": "z", "count": 1, "level": None}
    assert zone.update(inside[:2], 0.1) == {"zone": "z", "count": 2, "level": "busy"}  # at once: no dwell
    assert zone.update(inside, 0.2) is None  # count change within report_every
    assert zone.update(inside, 1.2) == {"zone": "z", "count": 3, "level": "busy"}


def _mosquitto() -> str | None:
    """The Debian mosquitto broker (.ci/run installs it)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def test_mqtt_sink_publishes(tmp_path):
    mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    broker = _mosquitto()
    if broker is None:
        pytest.skip("no MQTT broker: apt-get install mosquitto (.ci/run does)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([broker, "-c", str(tmp_path / "m.conf")], stderr=subprocess.DEVNULL)
    try:
        received: list[bytes] = []
        subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda client, userdata, message: received.append(message.payload)
        for _ in range(50):
            try:
                subscriber.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.1)
        subscriber.subscribe("fa/#", qos=1)
        subscriber.loop_start()
        time.sleep(0.3)
        from faceatlas.video.sinks import MqttSink

        sink = MqttSink(MqttConfig("127.0.0.1", port, "fa"))
        event = Event("watchlist_hit", "door", 5, 0.2, 1, "face", {"subject": "alice"})
        sink.emit(event)
        sink.close()
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        subscriber.loop_stop()
        assert [Event.from_dict(json.loads(p)) for p in received] == [event]
    finally:
        process.terminate()
        process.wait(5)


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mqtt_sink_with_unreachable_broker_warns_once_and_counts(caplog, capfd):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    from faceatlas.video.sinks import MqttSink

    caplog.set_level(logging.INFO)
    sink = MqttSink(MqttConfig("127.0.0.1", _closed_port(), "fa"))
    bus = EventBus([sink])
    for i in range(20):
        bus.emit(Event("track_started", "door", i, i / 25, i, "face", {"box": [0, 0, 10, 10]}))
        time.sleep(0.02)  # the background reconnection runs meanwhile
    assert sink.undelivered == 20
    bus.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not reachable" in warnings[0].getMessage(), [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.exc_info]
    assert "Traceback" not in capfd.readouterr().err
    assert sink.undelivered == 20 and bus.undelivered() == {"MqttSink": 20}


def test_mqtt_sink_delivers_queued_events_once_the_broker_is_up(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    broker = _mosquitto()
    if broker is None:
        pytest.skip("no MQTT broker: apt-get install mosquitto (.ci/run does)")
    from faceatlas.video.sinks import MqttSink

    port = _closed_port()
    sink = MqttSink(MqttConfig("127.0.0.1", port, "fa", backoff_start=1, backoff_max=2))
    for i in range(5):
        sink.emit(Event("track_started", "door", i, i / 25, i, "face", {}))
    assert sink.undelivered == 5
    (tmp_path / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([broker, "-c", str(tmp_path / "m.conf")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while sink.undelivered and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.undelivered == 0, "the queued events go out after the reconnection"
        sink.close()
    finally:
        process.terminate()
        process.wait(5)


class _MuteBroker:
    """A port that accepts TCP connections and reads what comes, but never acknowledges a message:
    ``connack`` False never speaks MQTT at all (half-open); True answers the CONNECT and nothing
    after it (a broker that froze, as under ``kill -STOP``)."""

    def __init__(self, connack: bool) -> None:
        import threading

        self.connack = connack
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.port = self.server.getsockname()[1]
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            while True:
                client, _ = self.server.accept()
                self.clients.append(client)
                if self.connack:
                    client.recv(1024)  # the CONNECT
                    client.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK (MQTT 5), accepted; no PUBACK ever
        except OSError:  # closed by the test
            pass

    def close(self) -> None:
        for client in [self.server, *self.clients]:
            client.close()


@pytest.mark.parametrize("connack", [False, True], ids=["half-open", "frozen"])
def test_mqtt_sink_close_is_bounded_when_the_broker_never_acknowledges(connack, caplog):
    """A broker that accepts TCP and never speaks MQTT (or froze after the CONNACK) held `watch` at
    exit for paho's keepalive (60 s and more), deaf to Ctrl-C: the close is bounded by its timeout,
    and the events the broker did not acknowledge are still counted."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    import threading

    from faceatlas.video.sinks import MqttSink

    caplog.set_level(logging.INFO)
    broker = _MuteBroker(connack)
    try:
        sink = MqttSink(MqttConfig("127.0.0.1", broker.port, "fa"))
        deadline = time.monotonic() + 30
        while connack and not sink.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.client.is_connected() == connack
        bus = EventBus([sink])
        for i in range(7):
            bus.emit(Event("track_started", "door", i, i / 25, i, "face", {}))
        closing = threading.Thread(target=sink.close, kwargs={"timeout": 1.0}, daemon=True)
        started = time.monotonic()
        closing.start()
        closing.join(30)  # the keepalive it waited for was 60 s and more
        assert not closing.is_alive(), "the close waited for the keepalive"
        # the timeout (1 s), the goodbye's grace (1 s), and slack for a loaded machine: far below 60 s
        assert time.monotonic() - started < 15
        assert sink.undelivered == 7 and bus.undelivered() == {"MqttSink": 7}
        assert "7 events not delivered" in caplog.text
    finally:
        broker.close()


def test_watch_cli_runs_two_cameras_from_yaml(tmp_path):
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    clip = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (320, 240))
    for value in range(12):
        writer.write(np.full((240, 320, 3), value * 20, np.uint8))
    writer.release()
    (tmp_path / "cams.yaml").write_text(
        f"events: {tmp_path / 'events.jsonl'}\n"
        f"database: sqlite:///{tmp_path / 'events.db'}\n"
        "cameras:\n"
        f"  - {{name: a, source: {clip}, stride: 3, lines: ['0,120,320,120'], output: {tmp_path / 'a.mp4'}}}\n"
        f"  - {{name: b, source: {clip}, persons: false,"
        " zones: [{name: all, polygon: [[0,0],[320,0],[320,240],[0,240]], levels: {busy: 3}}]}\n"
    )
    config = load_config(tmp_path / "cams.yaml")
    assert [c.name for c in config.cameras] == ["a", "b"] and config.cameras[0].lines[0].end == (320.0, 120.0)
    result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.mp4").stat().st_size > 0
    assert (tmp_path / "events.jsonl").exists() and (tmp_path / "events.db").exists()


def _half_second(source: Path, clip: Path) -> Path:
    """The first 15 frames of ``source`` (a 640x360 clip at 30 fps), re-encoded into ``clip``."""
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 30, (640, 360))
    for _ in range(15):
        writer.write(capture.read()[1])
    writer.release()
    capture.release()
    return clip


def test_watch_summary_counts_events_the_broker_did_not_get(hamilton, tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    clip = _half_second(hamilton, tmp_path / "singer.mp4")
    (tmp_path / "cams.yaml").write_text(
        f"events: {tmp_path / 'events.jsonl'}\n"
        f"mqtt: {{host: 127.0.0.1, port: {_closed_port()}}}\n"
        f"cameras:\n  - {{name: stage, source: {clip}, stride: 3, persons: false}}\n"
    )
    result = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.yaml")])
    assert result.exit_code == 1, result.output  # it was 0: a script could not tell the events were lost
    emitted = len(events_from_jsonl(tmp_path / "events.jsonl"))
    assert emitted >= 2 and f"MqttSink: {emitted} events not delivered" in result.output, result.output


def test_a_named_track_whose_face_changes_is_forgotten():
    """Issue 16.2 (without a cut): re-checks that find nobody known make a named track unknown again."""
    alice = IdentityMatch("alice", "Alice", 0.6)
    vote = IdentityVote(min_evidence=3, min_agree=2)
    for match in (alice, alice, alice):
        vote.add(match)
    assert vote.decide() == alice
    vote.add(None)
    assert vote.decide() == alice, "one poor frame does not unname a track"
    vote.add(None)
    assert vote.decide() is None, "two re-checks of nobody known: the face is no longer alice"
    vote.add(alice)
    vote.add(alice)
    assert vote.decide() is None, "the name comes back only with a majority of new evidence"
    vote.add(alice)
    assert vote.decide() == alice


def test_a_named_track_is_rechecked_on_its_latest_face():
    from faceatlas.video.tracks import FaceSample, Track

    crop = np.zeros((112, 112, 3), np.uint8)
    track = Track(1, "face", 0, 0.0, 0.0, np.zeros(4))
    for frame in range(3):
        track.add_sample(FaceSample(0.9, frame, crop, time=frame * 0.1))
    for sample in track.due_for_recognition(3, 0.1, recheck=1.0):
        track.record(sample, IdentityMatch("alice", "Alice", 0.6))
    assert track.vote.decide() is not None
    track.add_sample(FaceSample(0.3, 10, crop, time=0.5))  # a poorer, newer face: not due yet
    assert track.due_for_recognition(3, 0.1, recheck=1.0) == []
    newest = FaceSample(0.3, 30, crop, time=1.5)
    track.add_sample(newest)
    assert track.due_for_recognition(3, 0.1, recheck=1.0) == [newest]
    assert track.due_for_recognition(3, 0.1, recheck=None) == []


def test_watch_events_dash_are_json_lines_on_stdout(hamilton, tmp_path, monkeypatch):
    """`watch --events -` created a file named "-" (and printed nothing); the events are JSON lines
    on stdout (the summary and the logs are on stderr)."""
    from typer.testing import CliRunner

    from faceatlas.cli.main import app

    clip = _half_second(hamilton, tmp_path / "singer.mp4")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["watch", str(clip), "--no-persons", "--stride", "3", "--events", "-"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["singer.mp4"]  # no file named "-"
    events = [Event.from_dict(json.loads(line)) for line in result.stdout.splitlines()]  # nothing but events
    kinds = [e.type for e in events]
    assert kinds.count("track_started") == kinds.count("track_ended") > 0 and kinds[-1] == "counts"
    assert "faceatlas watch" in result.stderr


def test_mqtt_sink_counts_a_publish_the_broker_acl_denies(tmp_path, caplog):
    """A broker whose ACL denies the topic acknowledged every publish (MQTT 3.1.1 has no reason code)
    and the run said all delivered, exit 0, nothing received: on MQTT 5 the PUBACK's reason counts."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'faceatlas[mqtt]')")
    broker = _mosquitto()
    if broker is None:
        pytest.skip("no MQTT broker: apt-get install mosquitto (.ci/run does)")
    from faceatlas.video.sinks import MqttSink

    port = _closed_port()
    (tmp_path / "acl").write_text("topic readwrite other/#\ntopic read fa/#\n")
    # as root mosquitto drops to the user "mosquitto", who cannot read the ACL in pytest's folder: stay
    (tmp_path / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                                     f"acl_file {tmp_path / 'acl'}\n")
    process = subprocess.Popen([broker, "-c", str(tmp_path / "m.conf")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        sink = MqttSink(MqttConfig("127.0.0.1", port, "fa"))
        bus = EventBus([sink])
        for i in range(4):
            bus.emit(Event("track_started", "door", i, i / 25, i, "face", {}))
        deadline = time.monotonic() + 10
        while len(sink._waiting) and time.monotonic() < deadline:
            time.sleep(0.05)
        bus.close()
    finally:
        process.terminate()
        process.wait(5)
    assert sink.undelivered == 4 and bus.undelivered() == {"MqttSink": 4}
    refusals = [r for r in caplog.records if "refused a publish" in r.getMessage()]
    assert len(refusals) == 1 and "Not authorized" in refusals[0].getMessage(), caplog.text
