"""The Python client (faceatlas.client) and `faceatlas remote` against a real server and against
what stands between a client and its server in the field: proxies' redirects and login pages,
odd error bodies, HTTP-date Retry-After, a server that drips its answer. Every failure is one of
the client's errors (FaceAtlasClientError), ids are one path segment each, a key is never echoed."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig
from faceatlas.cli.main import app
from faceatlas.client import (
    MAX_UPLOAD_BYTES,
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
        elif mode == "slow-headers":
            self._slow_headers(200, b'{"rows": []}')
        elif mode == "huge":
            self._send(200, b"[" + b"0," * 600_000 + b"0]")
        elif mode == "shapes":
            self._send(200, SHAPES)
        elif mode == "gzip":  # says gzip, is not: httpx's DecodingError
            self._send(200, b"this is not gzip at all", Content_Encoding="gzip")

    def _slow_headers(self, status: int, body: bytes) -> None:
        """The status line, then a header line a second for 12 s (each read is quick), then ``body``."""
        try:
            self.wfile.write(f"HTTP/1.1 {status} X\r\n".encode())
            for n in range(12):
                self.wfile.write(f"X-Slow-{n}: {n}\r\n".encode())
                self.wfile.flush()
                time.sleep(1)
            self.wfile.write(b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass

    def do_DELETE(self) -> None:
        if self.path.startswith("/slow-headers/"):
            self._slow_headers(204, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/bad-gateway/"):  # nginx's page when the server behind it died mid-call
            self._send(502, BAD_GATEWAY, "text/html")
        elif self.path.startswith("/gzip/"):
            self._send(200, b"this is not gzip at all", Content_Encoding="gzip")
        else:
            self._send(200, SHAPES)


BAD_GATEWAY = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
               b"</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
               + b"<!-- pad -->\r\n" * 40)


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
    assert time.monotonic() - started < 15 and "within 2 s" in str(slow)  # 2 s, with a loaded machine's slack
    assert usage_at("huge", max_answer_bytes=100_000).code == "answer_too_large"


def test_the_timeout_bounds_the_whole_call_while_the_headers_come_too(field: str) -> None:
    """A server that sent its header lines one a second held a call past its ``timeout`` for as long
    as it sent them (httpx's timeouts bound each read; the deadline was checked only between body
    chunks): with timeout=2, an answer of 200 raised only when its headers were done, and a 204
    (delete_collection) came back a success."""
    for call in (lambda c: c.usage(), lambda c: c.delete_collection("staff")):
        started = time.monotonic()
        with (FaceAtlasClient(f"{field}/slow-headers", "fa_key", timeout=2) as client,
              pytest.raises(FaceAtlasTransportError) as caught):
            call(client)
        assert caught.value.code == "timeout" and "within 2 s" in str(caught.value)
        assert time.monotonic() - started < 8  # 2 s, with a loaded machine's slack; the headers take 12 s


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


def test_remote_enrol_after_a_proxys_502_names_its_key_and_not_the_page(field: str, examples: Path) -> None:
    """A 502 page of a proxy was printed whole (HTML) and the key of the enrol, which the server
    may have applied before the proxy gave up, was not named."""
    photo = examples / "tests/test_images/obama.jpg"
    result = CliRunner().invoke(app, ["remote", "enrol", "staff", "bob", str(photo), "--idempotency-key", "k502",
                                      "--server", f"{field}/bad-gateway", "--key", "fa_x"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "run it again with --idempotency-key k502" in result.output, result.output
    assert "502 Bad Gateway" in result.output and "<" not in result.output and "pad" not in result.output
    with FaceAtlasClient(f"{field}/bad-gateway", "fa_x") as client, pytest.raises(FaceAtlasApiError) as caught:
        client.enrol("staff", "bob", photo)
    assert (caught.value.status, caught.value.code, caught.value.message) == (502, "http_error", "502 Bad Gateway")


def test_answers_hold_plain_values_and_are_hashable(api, examples: Path) -> None:
    """Nested objects (metadata, pose, details, raw) were the client's own answer type: a missing
    key said "is the server URL that of a FaceAtlas server?" instead of KeyError, a frozen answer
    could not be hashed ('_Answer'). Now they are plain dicts and lists (json.dumps takes them), left
    out of the hash."""
    client = api.api_client("acme_admin")
    client.create_collection("plain")
    try:
        subject = client.add_subject("plain", "ann", metadata={"dept": "x", "tags": ["a", "b"], "deep": {"k": 1}})
        assert subject.metadata["dept"] == "x" and subject.metadata["tags"] == ["a", "b"]
        assert subject.metadata["deep"]["k"] == 1
        for mapping in (subject.metadata, subject.metadata["deep"]):
            with pytest.raises(KeyError):
                mapping["nope"]
        assert json.loads(json.dumps(subject.metadata)) == {"dept": "x", "tags": ["a", "b"], "deep": {"k": 1}}
        changed = dict(subject.metadata, x=1)  # a copy to change; the answer stays as sent
        assert "x" not in subject.metadata and "x" not in subject.raw["metadata"] and changed["x"] == 1
        again = client.get_subject("plain", "ann")
        assert again == subject and hash(again) == hash(subject) and len({subject, again}) == 1
        assert type(subject.raw) is dict and type(subject.raw["metadata"]) is dict
        assert json.loads(json.dumps(subject.raw))["metadata"]["tags"] == ["a", "b"]
        assert {c.name: c for c in client.list_collections()}["plain"].metadata == {}

        detected = client.detect(examples / "tests/test_images/obama.jpg")
        face = detected.faces[0]
        assert face.pose is not None and set(face.pose) >= {"yaw", "pitch", "roll"}
        with pytest.raises(KeyError):
            face.pose["nope"]
        assert len({detected, face}) == 2 and type(face.raw["pose"]) is dict
        client.enrol("plain", "ann", examples / "tests/test_images/obama.jpg")
        [result] = client.search("plain", examples / "tests/test_images/obama.jpg")
        assert len({result, result.matches[0]}) == 2 and result.matches[0].metadata["dept"] == "x"
    finally:
        client.delete_collection("plain")


def test_verify_rounds_its_scores_as_compare_and_search_do(api, examples: Path) -> None:
    """Verify's similarity and threshold were sent unrounded (0.8123456789...)."""
    client = api.api_client("acme_admin")
    client.create_collection("rounded")
    try:
        client.enrol("rounded", "obama", examples / "tests/test_images/obama.jpg")
        verdict = client.verify("rounded", "obama", examples / "tests/test_images/obama2.jpg")
        for name in ("similarity", "threshold", "best_similarity", "mean_similarity"):
            value = verdict.raw[name]
            assert value == round(value, 4), (name, value)
        [result] = client.search("rounded", examples / "tests/test_images/obama2.jpg")
        assert result.matches[0].similarity == verdict.similarity
    finally:
        client.delete_collection("rounded")


def test_images_as_bytes_like_and_file_objects_or_a_clear_error(api, examples: Path) -> None:
    """A bytearray, a memoryview, an open file or a BytesIO was a raw TypeError; an array, a PIL
    image or a URL too (or a FileNotFoundError naming the URL as a path)."""
    path = examples / "tests/test_images/obama.jpg"
    content = path.read_bytes()
    client = api.api_client("acme_detect")
    with path.open("rb") as opened:
        for image in (bytearray(content), memoryview(content), io.BytesIO(content), opened):
            assert len(client.detect(image).faces) == 1, type(image)
    for image in (np.zeros((8, 8, 3), np.uint8), Image.open(path), "https://example.com/a.jpg", 5):
        with pytest.raises(FaceAtlasClientError) as caught:
            client.detect(image)  # type: ignore[arg-type]
        assert caught.value.code == "invalid_argument" and "binary file object" in str(caught.value), image
    with path.open() as text, pytest.raises(FaceAtlasClientError, match="binary mode"):
        client.detect(text)  # type: ignore[arg-type]


def test_results_keep_the_usage_failed_and_the_store_currency(api, fast_analyzer, tmp_path: Path) -> None:
    """Usage rows dropped ``failed`` and the product listing its ``currency``."""
    tenant, client = api.own_tenant()
    client.list_collections()
    rows = client.usage().rows
    assert rows and all(row.failed == row.raw["failed"] for row in rows)
    config = StoreConfig(id=f"cur-{tmp_path.name[-6:]}", tenant=tenant, cameras=[Camera(id="door", role="door")],
                         currency="CHF", products=[Product(sku="mug", name="Mug", price_cents=1250)])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    assert [(p.sku, p.currency) for p in client.retail_products(config.id)] == [("mug", "CHF")]


def test_every_write_can_send_an_idempotency_key_and_an_empty_one_isrefused(api, examples: Path, fast_analyzer,
                                                                              tmp_path: Path) -> None:
    """kyc_submit, retail_enrol_member, retail_grant_consent, retail_withdraw_consent,
    retail_update_product and update_tenant_settings took no key (a retry acted twice); an empty
    key was dropped silently (two faces for two calls) while "a b" was refused."""
    tenant, client = api.own_tenant()
    photo = examples / "tests/test_images/obama.jpg"
    client.create_collection("once")
    client.add_subject("once", "ann")
    try:
        for bad in ("", "a b"):
            with pytest.raises(FaceAtlasClientError) as caught:
                client.enrol("once", "ann", photo, idempotency_key=bad)
            assert caught.value.code == "invalid_argument" and "Idempotency-Key" in str(caught.value)
        assert client.get_subject("once", "ann").faces == 0
    finally:
        client.delete_collection("once")

    def reused(call) -> None:  # the same key for another call: the server saw the key
        with pytest.raises(FaceAtlasApiError) as caught:
            call()
        assert caught.value.code == "idempotency_key_reused"

    tag = tmp_path.name[-6:]
    before = client.tenant_settings().kyc_retention_days
    first = client.update_tenant_settings(kyc_retention_days=7, idempotency_key=f"settings-{tag}")
    assert client.update_tenant_settings(kyc_retention_days=7, idempotency_key=f"settings-{tag}") == first
    reused(lambda: client.update_tenant_settings(kyc_retention_days=8, idempotency_key=f"settings-{tag}"))
    client.update_tenant_settings(kyc_retention_days=before)

    config = StoreConfig(id=f"idem-{tag}", tenant=tenant, cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="mug", name="Mug", price_cents=1250)])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    store = config.id
    repriced = client.retail_update_product(store, "mug", price_cents=900, idempotency_key=f"price-{tag}")
    assert repriced.price_cents == 900
    reused(lambda: client.retail_update_product(store, "mug", price_cents=800, idempotency_key=f"price-{tag}"))
    member = client.retail_enrol_member(store, photo, name="Ann", purposes=["visit_recognition", "analytics"],
                                        idempotency_key=f"member-{tag}")
    assert client.retail_enrol_member(store, photo, name="Ann", purposes=["visit_recognition", "analytics"],
                                      idempotency_key=f"member-{tag}") == member
    assert [m.id for m in client.retail_members(store)] == [member.id]  # enrolled once
    withdrawn = client.retail_withdraw_consent(store, member.id, ["analytics"], idempotency_key=f"withdraw-{tag}")
    reused(lambda: client.retail_withdraw_consent(store, member.id, idempotency_key=f"withdraw-{tag}"))
    assert withdrawn.purposes == ("visit_recognition",)
    granted = client.retail_grant_consent(store, member.id, photo, purposes=["visit_recognition", "analytics"],
                                          granted_by="Ann", idempotency_key=f"grant-{tag}")
    reused(lambda: client.retail_grant_consent(store, member.id, photo, purposes=["visit_recognition"],
                                               granted_by="Ann", idempotency_key=f"grant-{tag}"))
    assert set(granted.purposes) == {"visit_recognition", "analytics"}

    session = client.kyc_session()
    decided = client.kyc_submit(session.id, photo, frames=[photo], idempotency_key=f"kyc-{tag}")
    assert decided.status in ("accepted", "rejected") and decided.details is not None
    reused(lambda: client.kyc_submit(session.id, photo, frames=[photo, photo], idempotency_key=f"kyc-{tag}"))


def test_a_body_that_says_gzip_and_is_not_is_one_of_the_clients_errors(field: str, examples: Path) -> None:
    """An answer with ``Content-Encoding: gzip`` whose body is not gzip was httpx's DecodingError
    (not a TransportError): a raw exception from the client, a rich traceback and exit 1 from
    `faceatlas remote detect`."""
    with FaceAtlasClient(f"{field}/gzip", "fa_key") as client:
        for call in (client.usage, lambda: client.detect(examples / "tests/test_images/obama.jpg")):
            with pytest.raises(FaceAtlasClientError) as caught:
                call()
            assert caught.value.code == "unexpected_answer" and "Content-Encoding" in str(caught.value)
    photo = examples / "tests/test_images/obama.jpg"
    result = CliRunner().invoke(app, ["remote", "detect", str(photo), "--server", f"{field}/gzip", "--key", "fa_x"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error (unexpected_answer): "), result.output


def test_a_closed_client_says_so(field: str) -> None:
    """A call after close() (or after its with block) was httpx's RuntimeError "Cannot send a
    request, as the client has been closed"."""
    import httpx

    with FaceAtlasClient(f"{field}/empty", "fa_key") as client:
        pass
    closed = httpx.Client(base_url=field)
    closed.close()
    for call in (client.usage, FaceAtlasClient(field, "fa_key", http=closed).usage):
        with pytest.raises(FaceAtlasClientError) as caught:
            call()
        assert caught.value.code == "client_closed" and "closed" in str(caught.value)


def test_a_server_url_with_a_query_or_a_fragment_or_a_timeout_out_of_range_is_refused(field: str) -> None:
    """``http://host:port?x=1`` was taken (the query dropped or mixed with each call's); the
    secret a query may hold is never echoed. A timeout of 0, below it or NaN hung or failed at
    each call."""
    for url in (f"{field}?api_key=fa_secret", f"{field}/#fa_secret", f"{field}?"):
        with pytest.raises(FaceAtlasClientError, match="query string or a fragment") as caught:
            FaceAtlasClient(url, "fa_x")
        assert caught.value.code == "invalid_argument" and "secret" not in str(caught.value)
    for timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(FaceAtlasClientError, match="timeout") as caught:
            FaceAtlasClient(field, "fa_x", timeout=timeout)
        assert caught.value.code == "invalid_argument"


def test_usage_takes_a_datetime_as_its_day(api) -> None:
    """``usage(start=datetime(...))`` sent ``2024-05-01T10:30:00``, which the server refused (422):
    a datetime is its day (in UTC when it has a zone)."""
    from datetime import UTC, date, datetime, timedelta, timezone

    _, client = api.own_tenant()
    client.list_collections()
    today = datetime.now(UTC)
    rows = client.usage(start=today.replace(tzinfo=None) - timedelta(days=1), end=today).rows
    assert rows and all(row.day == today.date().isoformat() for row in rows)
    ahead = datetime.combine(today.date() + timedelta(days=1), datetime.min.time()).replace(
        hour=1, tzinfo=timezone(timedelta(hours=5)))  # 1:00 tomorrow at UTC+5: today 20:00 UTC
    assert client.usage(start=ahead, end=ahead).rows == client.usage(start=today.date(), end=today.date()).rows
    assert "day" in client.usage_csv(start=today, end=date.today() + timedelta(days=1))


def test_remote_takes_a_timeout_option_and_faceatlas_timeout(field: str) -> None:
    """`faceatlas remote` waited 60 s on a server that dripped its answer, with no way to say less."""
    runner = CliRunner()
    down = ["--server", f"{field}/drip", "--key", "fa_x"]
    for args, env in ((["--timeout", "1"], {}), ([], {"FACEATLAS_TIMEOUT": "1"})):
        started = time.monotonic()
        result = runner.invoke(app, ["remote", "usage", *down, *args], env=env)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.output.startswith("error (timeout): no answer from ") and "within 1 s" in result.output
        assert time.monotonic() - started < 20, (args, env)  # 1 s and slack; it waited 60 s
    refused = runner.invoke(app, ["remote", "usage", *down, "--timeout", "0"])
    assert refused.exit_code == 2 and refused.output.startswith("error (usage): the timeout is"), refused.output


def test_a_replayed_erasure_is_an_answer_without_the_erased_id(api, shared: Path, examples: Path, fast_analyzer,
                                                               tmp_path: Path) -> None:
    """A retry of ``retail_erase_member`` or ``album_erase_person`` with the same key raised
    ``unexpected_answer``: the server's replay (200, Idempotent-Replayed) leaves out the erased id,
    ``member`` / ``person``, which the client's answers required."""
    tenant, client = api.own_tenant()
    tag = tmp_path.name[-6:]
    config = StoreConfig(id=f"erase-{tag}", tenant=tenant, cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    member = client.retail_enrol_member(config.id, examples / "examples" / "lin-manuel-miranda.png", name="Lin",
                                        purposes=["visit_recognition"])
    first = client.retail_erase_member(config.id, member.id, idempotency_key=f"erase-member-{tag}")
    assert (first.member, first.faces_deleted) == (member.id, 1)
    replayed = client.retail_erase_member(config.id, member.id, idempotency_key=f"erase-member-{tag}")
    assert replayed.member is None and "member" not in replayed.raw
    assert (replayed.faces_deleted, replayed.consents_deleted) == (first.faces_deleted, first.consents_deleted)
    assert client.retail_members(config.id) == []

    album = f"fam-{tag}"
    for photo in sorted((shared / "data" / "lfw" / "images" / "George_W_Bush").glob("*.jpg"))[:2]:
        assert client.album_add_photo(album, photo).photos == 1
    person = client.album_people(album)[0].id
    erased = client.album_erase_person(album, person, idempotency_key=f"erase-person-{tag}")
    assert (erased.person, erased.faces_deleted, erased.photos_deleted) == (person, 2, 2)
    again = client.album_erase_person(album, person, idempotency_key=f"erase-person-{tag}")
    assert again.person is None and "person" not in again.raw
    assert (again.faces_deleted, again.photos_deleted) == (2, 2)


def test_bytes_above_max_upload_bytes_are_refused_before_anything_is_sent(api, tmp_path: Path) -> None:
    """A path or a file object above MAX_UPLOAD_BYTES was refused before anything was read, but
    bytes, a bytearray or a memoryview of 65 MiB were uploaded whole, for the server to refuse."""
    client = api.api_client("acme_detect")
    size = MAX_UPLOAD_BYTES + (1 << 20)
    big = tmp_path / "big.jpg"
    with big.open("wb") as sparse:
        sparse.truncate(size)
    with pytest.raises(FaceAtlasClientError) as by_path:
        client.detect(big)
    content = bytes(size)
    for image in (content, bytearray(content), memoryview(content), memoryview(content).cast("I")):
        with pytest.raises(FaceAtlasClientError) as caught:
            client.detect(image)
        assert type(caught.value) is FaceAtlasClientError, caught.value  # not the server's refusal
        assert caught.value.code == by_path.value.code == "payload_too_large"
        assert str(caught.value) == str(by_path.value).replace(str(big), "the image bytes")


def test_the_client_s_default_far_is_the_engine_s() -> None:
    """The client imports nothing of the package, so it holds its own copy of the default FAR."""
    import faceatlas.client.api as client
    import faceatlas.engine as engine

    assert client.DEFAULT_FAR == engine.DEFAULT_FAR
