"""Issue 15 (8): no request makes the service answer a 500 or a non-JSON error. Every route gets
a corpus of malformed bodies and boundary query values (in process, the real app); a real uvicorn
server gets the worst of them on one keep-alive connection, which must keep working; an unexpected
fault answers the documented JSON shape; two enrolments racing to create one subject are clean."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

DEEP = 5000  # well past the json module's recursion limit (about 1000)

BODIES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "application/json"),
    "truncated": (b'{"image": "abc', "application/json"),
    "deep_list": (b"[" * DEEP + b"]" * DEEP, "application/json"),
    "deep_object": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "application/json"),
    "deep_metadata": (b'{"name": "n", "id": "n", "metadata": ' + b'{"a":' * 900 + b"1" + b"}" * 901,
                      "application/json"),
    "deep_embedding": (b'{"recognizer_id": "x", "embedding": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}",
                       "application/json"),
    "huge_int": (b'{"image": ' + b"9" * 5000 + b', "k": 99999999999999999999999, "rate_per_second": '
                 b"99999999999999999999999, \"burst\": 99999999999999999999999, \"scopes\": [\"read\"]}",
                 "application/json"),
    "huge_float": (b'{"embedding": [1e999, 1e999], "recognizer_id": "x", "image": 1e999}', "application/json"),
    "nan": (b'{"embedding": [NaN, Infinity, -Infinity], "recognizer_id": "x", "rate_per_second": NaN,'
            b' "scopes": ["read"]}', "application/json"),
    "embedding_strings": (b'{"embedding": ["a", {}, null], "recognizer_id": 5}', "application/json"),
    "wrong_types": (b'{"image": 5, "name": [], "id": {}, "metadata": "x", "scopes": "admin", "keep_crops": "y"}',
                    "application/json"),
    "array_body": (b"[1, 2, 3]", "application/json"),
    "string_body": (b'"image"', "application/json"),
    "null_body": (b"null", "application/json"),
    "invalid_base64": (b'{"image": "!!!not base64!!!", "image_a": "%%%", "image_b": "QQ="}', "application/json"),
    "base64_not_image": (b'{"image": "' + base64.b64encode(b"hello" * 100) + b'"}', "application/json"),
    "url_object": (b'{"image": {"url": 5}, "image_a": {"url": "ftp://x"}, "image_b": {"url": null}}',
                   "application/json"),
    "invalid_utf8": (b'{"image": "\xff\xfe"}', "application/json"),
    "nul_bytes": (b'{"id": "a\\u0000b", "name": "\\u0000"}', "application/json"),
    "multipart_no_boundary": (b"--x\r\n", "multipart/form-data"),
    "multipart_garbage": (b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nzz',
                          "multipart/form-data; boundary=b"),
    "text_plain": (b"image=abc", "text/plain"),
}

QUERIES = {
    "after_huge": "after=9999999999999999999",
    "after_negative_huge": "after=-9999999999999999999",
    "to_max": "to=9999-12-31",
    "from_min_to_min": "from=0001-01-01&to=0001-01-01",
    "from_max": "from=9999-12-31",
    "to_min": "to=0001-01-01",
    "odd_names": "%C3%BC%F2%A6%AC%8E=%19%C2%9D&%FF%FE=1&%5B%06=f%C3%94",
    "to_min_csv": "to=0001-01-02&format=csv",
    "window_everything": "from=0001-01-01&to=9999-12-31",
    "nan": "far=nan&threshold=nan&min_quality=nan",
    "inf": "far=inf&threshold=-inf&min_quality=inf",
    "huge_ints": "limit=99999999999999999999&k=99999999999999999999&max_faces=99999999999999999999",
    "since_garbage": "since=9999-99-99T99:99&type=%00&camera=%00",
    "since_extremes": "since=0001-01-01T00:00:00",
    "csv": "format=csv&to=9999-12-31",
    "png": "format=png&to=9999-12-31",
}


@dataclass
class Prepared:
    client: TestClient
    tenant: str
    store_id: str


def _tenant(api) -> tuple[str, str]:
    tenant = f"sec{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant, "security tests")
    return tenant, api.accounts.create_key(tenant, ["admin"], rate_per_second=10_000, burst=10_000).token


def _routes(api, prepared: Prepared) -> list[tuple[str, str]]:
    """(method, path) of every /v1 route but deletes, path parameters filled with names that exist."""
    values = {"collection": "sec", "subject": "alice", "store_id": prepared.store_id, "prefix": "000000000000",
              "album": "sec", "person": "p1", "face": "1", "photo": "1", "member_id": "m1", "visit_id": "1",
              "charge_id": "1", "alert_id": "1", "event_id": "0" * 32, "camera": "door", "session_id": "0" * 32,
              "sku": "milk"}
    found = []
    for template, operations in api.app.openapi()["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        found += [(method.upper(), path) for method in operations if method != "delete"]
    return found


def _unclean(response, what: str) -> list[str]:
    """[``what``] when the answer is a 5xx or an error without the documented JSON shape."""
    if response.status_code >= 500:
        return [f"{what}: {response.status_code} {response.text[:200]}"]
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            assert set(error) == {"code", "message"} and error["code"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return [f"{what}: {response.status_code} not the error shape: {response.text[:200]}"]
    return []


def _assert_clean(response, what: str) -> None:
    assert not _unclean(response, what), _unclean(response, what)


@pytest.fixture
def prepared(api, examples, fast_analyzer, tmp_path) -> Prepared:
    """A tenant of its own with a collection 'sec', an enrolled subject 'alice' and a store."""
    from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig

    tenant, key = _tenant(api)
    client = TestClient(api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})
    assert client.post("/v1/collections", json={"name": "sec"}).status_code == 201
    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    enrolled = client.post("/v1/collections/sec/subjects/alice/faces", files={"image": ("o.jpg", photo, "image/jpeg")})
    assert enrolled.status_code == 201, enrolled.text
    config = StoreConfig(id=f"shop-{tenant}", tenant=tenant, cameras=[Camera(id="in", role="entrance")],
                         products=[Product(sku="milk", name="Milk", price_cents=120)])
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    return Prepared(client, tenant, config.id)


def test_malformed_bodies_on_every_route_answer_json_4xx(api, prepared):
    routes = [(m, p) for m, p in _routes(api, prepared) if m in ("POST", "PATCH", "PUT")]
    assert len(routes) >= 10
    failures = []
    for method, path in routes:
        for name, (body, content_type) in BODIES.items():
            response = prepared.client.request(method, path, content=body, headers={"content-type": content_type})
            failures += _unclean(response, f"{method} {path} body={name}")
    assert not failures, "\n".join(failures)


def test_boundary_query_values_on_every_route_answer_json(api, prepared):
    failures = []
    for method, path in _routes(api, prepared):
        for name, query in QUERIES.items():
            response = prepared.client.request(method, f"{path}?{query}", json={})
            failures += _unclean(response, f"{method} {path}?{query} ({name})")
    assert not failures, "\n".join(failures)


def test_nul_characters_in_paths_queries_and_key_names_answer_json_4xx(api, prepared):
    """PostgreSQL refuses NUL in text: it must never reach a query (store ids, key prefixes, names)."""
    failures = []
    for method, path in _routes(api, prepared):
        for variant in (re.sub(r"(sec|alice|shop-[\w-]+|000000000000)", "a%00b", path), f"{path}?camera=%00&after=%00"):
            failures += _unclean(prepared.client.request(method, variant, json={}), f"{method} {variant}")
    for prefix in ("a%00b", "000000000000"):
        failures += _unclean(prepared.client.delete(f"/v1/keys/{prefix}"), f"DELETE /v1/keys/{prefix}")
    named = prepared.client.post("/v1/keys", json={"scopes": ["read"], "name": "a\u0000b"})
    failures += _unclean(named, "POST /v1/keys name with NUL")
    assert named.status_code != 201
    assert not failures, "\n".join(failures)


def test_an_unexpected_fault_answers_the_documented_json_shape(api, prepared, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.app.state.accounts, "usage_report", broken)
    response = prepared.client.get("/v1/usage")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal server error"}}
    assert "a bug" not in response.text


def test_a_bad_request_leaves_the_keep_alive_connection_working(server):
    """On a real server, each bad request answers JSON 4xx and the same connection serves the next."""
    with server.client("acme_admin") as client:
        for body, content_type in [BODIES["deep_list"], BODIES["deep_object"], BODIES["truncated"], BODIES["nan"]]:
            response = client.post("/v1/detect", content=body, headers={"content-type": content_type})
            _assert_clean(response, f"detect {body[:20]!r}")
            assert 400 <= response.status_code < 500, response.text
            for query in ("after=9999999999999999999", "to=9999-12-31"):
                path = "/v1/usage" if query.startswith("to") else "/v1/collections/none/subjects"
                _assert_clean(client.get(f"{path}?{query}"), query)
            assert client.get("/healthz").json() == {"status": "ok"}


def test_concurrent_enrolments_of_one_new_subject_both_succeed(api, prepared, examples):
    """Two enrolments race to create the subject: the second INSERT meets the first one's row
    (forced here: a second connection inserts the same subject just before the request's own
    INSERT). The request still enrols its face into the one subject; no 500."""
    engine: Engine = api.app.state.gallery._sessions.kw["bind"]
    raced: list[str] = []

    def race(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SUBJECTS") and not raced:
            raced.append(statement)
            raw = engine.raw_connection()
            try:
                other = raw.cursor()
                other.execute(statement, parameters)
                raw.commit()
            finally:
                raw.close()

    photo = (examples / "tests" / "test_images" / "obama2.jpg").read_bytes()
    event.listen(engine, "before_cursor_execute", race)
    try:
        response = prepared.client.post("/v1/collections/sec/subjects/bob/faces",
                                 files={"image": ("o.jpg", photo, "image/jpeg")})
    finally:
        event.remove(engine, "before_cursor_execute", race)
    assert raced, "the race was not staged"
    assert response.status_code == 201, response.text
    subject = prepared.client.get("/v1/collections/sec/subjects/bob").json()
    assert subject["faces"] == 1


def _console_client(api, key: str) -> TestClient:
    """A browser-like client logged in to the console with ``key`` (CSRF token from the login form)."""
    client = TestClient(api.app, raise_server_exceptions=False, base_url="http://testserver")
    form = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text[:300]
    logged_in = client.post("/console/login", data={"key": key, "csrf": csrf.group(1)}, follow_redirects=False)
    assert logged_in.status_code == 303, logged_in.text[:300]
    return client


CONSOLE_VALUES = {
    "huge": "99999999999999999999999",
    "negative": "-1",
    "zero": "0",
    "nul": "a%00b",
    "long": "x" * 300,
    "odd": "%C3%BC%F2%A6",
}


def test_every_console_page_answers_a_page_not_a_500(api, prepared):
    """The console's routes are not in the OpenAPI schema, so the fuzz above misses them: every
    GET console address, each path value replaced by boundary values, answers an HTML page (error
    pages included) and never a 500; an unknown address and an over-long login key are pages too."""
    from fastapi.routing import APIRoute

    client = _console_client(api, prepared.client.headers["Authorization"].removeprefix("Bearer "))
    from faceatlas.service import console

    pages = (console.account, console.albums, console.auth, console.events, console.galleries, console.kyc,
             console.members, console.store, console.trial)
    templates = [f"/console{route.path}" for page in pages for route in page.router.routes
                 if isinstance(route, APIRoute) and "GET" in route.methods and "{" in route.path]
    assert len(templates) >= 5, templates
    failures = []
    for template in templates:
        for name, value in CONSOLE_VALUES.items():
            path = re.sub(r"\{(\w+)\}", value, template)
            response = client.get(path, follow_redirects=False)
            page = response.headers["content-type"].startswith("text/html")
            # a NUL in a URL is refused for every address before routing (JSON 400), the rest are pages
            if response.status_code >= 500 or (response.status_code >= 400 and not page and name != "nul"):
                failures.append(f"GET {path} ({name}): {response.status_code} {response.text[:120]}")
    assert not failures, "\n".join(failures)
    unknown = client.get("/console/no-such-page")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    assert "no console page" in unknown.text
    fresh = TestClient(api.app, raise_server_exceptions=False)
    form = fresh.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    too_long = fresh.post("/console/login", data={"key": "k" * 500, "csrf": csrf.group(1)})
    assert too_long.status_code == 422 and too_long.headers["content-type"].startswith("text/html")
