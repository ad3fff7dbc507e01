"""Issue 15 (7): images by URL come only from allow-listed origins (scheme, host and port), within
one deadline for the whole fetch, and every failure to fetch is ``fetch_failed`` (never a 500).
Real HTTP servers on loopback stand in for the origins."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from faceatlas.errors import InvalidSetting
from faceatlas.service import create_app
from faceatlas.settings import ServiceSettings


@contextmanager
def origin(body: bytes, *, trickle: float = 0.0) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET with ``body`` (one byte per ``trickle``
    seconds when set); yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if not trickle:
                    self.wfile.write(body)
                    return
                for byte in body[:200]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(trickle)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def photo(examples) -> bytes:
    return (examples / "tests" / "test_images" / "obama.jpg").read_bytes()


@pytest.fixture
def service(api, fast_analyzer, tmp_path):
    """``service(allowlist, **settings)``: a running app over the ``api`` database; its client
    carries a detect key."""
    clients = []
    key = api.keys["acme_detect"]

    def _make(allowlist: list[str], **overrides) -> TestClient:
        settings = ServiceSettings(database_url=api.database_url, index_dir=tmp_path / "idx", pack="scrfd-mbf",
                                   workers=1, url_fetch_allowlist=allowlist, **overrides)
        client = TestClient(create_app(settings, analyzer=fast_analyzer), raise_server_exceptions=False,
                            headers={"Authorization": f"Bearer {key}"})
        clients.append(client.__enter__())
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


def _detect(client: TestClient, url: str):
    return client.post("/v1/detect", json={"image": {"url": url}})


def test_an_allowed_origin_is_fetched_and_another_port_of_its_host_is_refused(service, photo):
    with origin(photo) as allowed, origin(photo) as other:
        client = service([f"http://127.0.0.1:{allowed}"])
        fetched = _detect(client, f"http://127.0.0.1:{allowed}/obama.jpg")
        refused = _detect(client, f"http://127.0.0.1:{other}/obama.jpg")
        wrong_scheme = _detect(client, f"https://127.0.0.1:{allowed}/obama.jpg")
    assert fetched.status_code == 200 and len(fetched.json()["faces"]) == 1
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "url_fetch_disabled"
    assert wrong_scheme.json()["error"]["code"] == "url_fetch_disabled"


def test_a_bare_host_entry_allows_only_the_default_ports(service, photo):
    with origin(photo) as port:
        response = _detect(service(["127.0.0.1"]), f"http://127.0.0.1:{port}/obama.jpg")
    assert response.status_code == 400 and response.json()["error"]["code"] == "url_fetch_disabled"
    assert ServiceSettings(url_fetch_allowlist=["127.0.0.1"]).url_fetch_origins == {
        ("http", "127.0.0.1", 80), ("https", "127.0.0.1", 443)}


def test_a_trickling_origin_hits_the_deadline_fast(service, photo):
    with origin(photo, trickle=0.2) as port:  # 200 bytes at 5 bytes/s: 40 s if nothing stops it
        client = service([f"http://127.0.0.1:{port}"], fetch_timeout=1.0)
        started = time.monotonic()
        response = _detect(client, f"http://127.0.0.1:{port}/obama.jpg")
        took = time.monotonic() - started
    assert response.status_code == 400 and response.json()["error"]["code"] == "fetch_failed", response.text
    assert took < 15, took  # a 1 s deadline, on a loaded machine; 40 s if nothing stops the trickle


def test_a_closed_port_is_fetch_failed_not_500(service):
    port = _closed_port()
    response = _detect(service([f"http://127.0.0.1:{port}"]), f"http://127.0.0.1:{port}/x.jpg")
    assert response.status_code == 400 and response.json()["error"]["code"] == "fetch_failed", response.text


def test_an_origin_answering_an_error_is_fetch_failed(service):
    class NotFoundHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFoundHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        response = _detect(service([f"http://127.0.0.1:{port}"]), f"http://127.0.0.1:{port}/missing.jpg")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 400 and response.json()["error"]["code"] == "fetch_failed"


def test_a_malformed_allowlist_entry_fails_at_start():
    with pytest.raises(InvalidSetting, match="ftp://files.example"):
        ServiceSettings(url_fetch_allowlist=["ftp://files.example"])
