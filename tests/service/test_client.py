"""The Python client (faceatlas.client) and `faceatlas remote` against a real server and against
what stands between a client and its server in the field: proxies' redirects and login pages,
odd error bodies, HTTP-date Retry-After, a server that drips its answer. Every failure is one of
the client's errors (FaceAtlasClientError), ids are one path segment each, a key is never echoed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.client import (
    FaceAtlasApiError,
    FaceAtlasClient,
    FaceAtlasClientError,
    FaceAtlasTransportError,
)


def test_ids_are_one_path_segment_each(api, examples) -> None:
    """``delete_subject("victim", "../../victim")`` deleted the whole collection (httpx resolved
    the dot segments), and ``enrol("staff", "alice/../bob", ...)`` enrolled to bob."""
    photo = examples / "tests/test_images/obama.jpg"
    client = api.api_client("acme_admin")
    for name in ("victim", "staff"):
        client.create_collection(name)
    client.add_subject("staff", "bob")
    try:
        with pytest.raises(FaceAtlasApiError):
            client.delete_subject("victim", "../../victim")
        with pytest.raises(FaceAtlasApiError):
            client.enrol("staff", "alice/../bob", photo)
        with pytest.raises(FaceAtlasApiError) as dots:
            client.get_subject("staff", "..")
        assert dots.value.status in (404, 422)
        assert "victim" in [c.name for c in client.list_collections()]
        assert client.get_subject("staff", "bob").faces == 0
    finally:
        for name in ("victim", "staff"):
            client.delete_collection(name)


class _Field(BaseHTTPRequestHandler):
    """What a client meets between it and a FaceAtlas server, by path."""

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        mode = self.path.split("/")[1]
        if mode == "redirect":
            self._send(301, b"", "text/html", Location="https://faceatlas.example/v1/usage")
        elif mode == "login":
            self._send(200, b"<html><body>Sign in to the corporate proxy</body></html>", "text/html")
        elif mode == "empty":
            self._send(200, b"{}")
        elif mode == "list":
            self._send(200, b"[1, 2]")
        elif mode == "broken":
            self._send(200, b"{not json")
        elif mode == "errstr":
            self._send(500, b'{"error": "boom"}')
        elif mode == "busy":
            self._send(503, b'{"error": {"code": "overloaded", "message": "try later"}}',
                       Retry_After="Wed, 21 Oct 2099 07:28:00 GMT")
        elif mode == "drip":  # headers at once, then a byte every 0.3 s for ever (each read is quick)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
        elif mode == "huge":
            self._send(200, b"[" + b"0," * 600_000 + b"0]")
        elif mode == "shapes":
            self._send(200, SHAPES)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, SHAPES)


SHAPES = b'{"results": 5, "rows": 3, "faces": 5, "subjects": "x", "pack": "p", "total": 1}'  # lists that are not


@pytest.fixture(scope="module")
def field() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Field)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_what_stands_between_is_one_of_the_clients_errors(field: str) -> None:
    """Each of these was a raw KeyError, TypeError, JSONDecodeError or ValueError (an HTTP-date
    Retry-After), and a dripping server held the client past its timeout for ever."""
    def usage_at(mode: str, **options: object) -> FaceAtlasClientError:
        with (FaceAtlasClient(f"{field}/{mode}", "fa_key", **options) as client,  # type: ignore[arg-type]
              pytest.raises(FaceAtlasClientError) as caught):
            client.usage()
        return caught.value

    redirected = usage_at("redirect")
    assert redirected.code == "redirected" and "https://faceatlas.example/v1/usage" in str(redirected)
    for mode in ("login", "empty", "list", "broken"):
        assert usage_at(mode).code == "unexpected_answer", mode
    assert "text/html" in str(usage_at("login"))
    odd = usage_at("errstr")
    assert isinstance(odd, FaceAtlasApiError) and (odd.status, odd.code) == (500, "http_error")
    busy = usage_at("busy")
    assert isinstance(busy, FaceAtlasApiError) and busy.code == "overloaded"
    assert busy.retry_after is not None and busy.retry_after > 1e8 and "retry in" in str(busy)
    started = time.monotonic()
    slow = usage_at("drip", timeout=2)
    assert isinstance(slow, FaceAtlasTransportError) and slow.code == "timeout"
    assert time.monotonic() - started < 6 and "within 2 s" in str(slow)
    assert usage_at("huge", max_answer_bytes=100_000).code == "answer_too_large"


def test_a_key_is_stripped_or_refused_never_echoed(field: str, tmp_path) -> None:
    """A key with a trailing CR (a CRLF file) or a space was sent as an illegal header and echoed
    whole in the error; a non-ASCII one was a UnicodeEncodeError."""
    with FaceAtlasClient(f"{field}/busy", "fa_secretkey\r\n") as client, pytest.raises(FaceAtlasApiError):
        client.usage()  # the key, stripped, reached the server
    for bad in ("fa_secret key", "fa_secretkeyé", "  "):
        with pytest.raises(FaceAtlasClientError) as caught:
            FaceAtlasClient(field, bad)
        assert "secret" not in str(caught.value) and caught.value.code == "invalid_argument"
    with pytest.raises(FaceAtlasClientError, match="user and password") as caught:
        FaceAtlasClient("http://me:hunter2@127.0.0.1:9", "fa_x")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(FaceAtlasClientError, match="without /v1"):
        FaceAtlasClient("http://127.0.0.1:9/v1", "fa_x")
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with FaceAtlasClient(field, "fa_x") as client, pytest.raises(FaceAtlasClientError, match="not a regular file"):
        client.detect(fifo)  # it blocked for ever, waiting for a writer


def test_remote_enrol_without_an_answer_names_its_idempotency_key(examples) -> None:
    """`remote enrol` sent no Idempotency-Key: a retry after a dropped connection enrolled twice,
    and its error did not say the enrol may have been applied. ``--json`` is every command's."""
    photo = examples / "tests/test_images/obama.jpg"
    runner = CliRunner()
    down = ["--server", "http://127.0.0.1:9", "--key", "fa_x"]
    result = runner.invoke(app, ["remote", "enrol", "staff", "bob", str(photo), *down])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "run it again with --idempotency-key " in result.output, result.output
    as_json = runner.invoke(app, ["remote", "enrol", "staff", "bob", str(photo), "--idempotency-key", "k1",
                                  "--json", *down])
    error = json.loads(as_json.stdout)
    assert as_json.exit_code == 2 and error["error"] == "server_unreachable" and "k1" in error["message"]
    usage = runner.invoke(app, ["remote", "usage", "--json", *down])
    assert usage.exit_code == 2 and json.loads(usage.stdout)["error"] == "server_unreachable"


def test_an_answer_whose_lists_are_not_lists_is_one_of_the_clients_errors(field: str, examples: Path) -> None:
    """``{"results": 5}`` to search, ``{"rows": 3}`` to usage, ``{"faces": 5}`` to detect: a
    TypeError traceback ('int' object is not iterable) where detect's other answers said
    unexpected_answer."""
    photo = examples / "tests/test_images/obama.jpg"
    with FaceAtlasClient(f"{field}/shapes", "fa_key") as client:
        for call in (client.usage, lambda: client.search("c1", photo), lambda: client.detect(photo),
                     lambda: client.list_subjects("c1")):
            with pytest.raises(FaceAtlasClientError) as caught:
                call()
            assert caught.value.code == "unexpected_answer" and "is not a list of objects" in str(caught.value)
