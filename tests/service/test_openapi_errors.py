"""The OpenAPI document declares, per operation, the error statuses it really answers (its 401, 403,
404, 429 were only in ``default``), derived from the dependencies each route uses; the real calls
answer statuses their operations declare. A JSON body that does not parse is one status on every
route taking JSON (the image routes said 400 ``bad_request``, the others 422 ``validation_error``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

ERROR_BODY = {"$ref": "#/components/schemas/ErrorOut"}
INFERENCE = {"POST /v1/detect", "POST /v1/compare", "POST /v1/liveness", "POST /v1/ar/effects",
             "POST /v1/collections/{collection}/subjects/{subject}/faces", "POST /v1/collections/{collection}/search",
             "POST /v1/collections/{collection}/subjects/{subject}/verify", "POST /v1/albums/{album}/photos",
             "POST /v1/retail/stores/{store_id}/members", "POST /v1/retail/stores/{store_id}/pay",
             "POST /v1/retail/stores/{store_id}/members/{member_id}/consent",
             "POST /v1/kyc/sessions/{session_id}/submit"}


def _operations(api) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in api.app.openapi()["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _url(path: str, operation: dict[str, Any], value: str = "nope-1") -> str:
    """``path`` with each path parameter given ``value`` (an integer one 1), and its required query
    parameters a value of their type."""
    params = operation.get("parameters", [])
    kinds = {p["name"]: p.get("schema", {}) for p in params if p["in"] == "path"}
    url = re.sub(r"\{([^}]+)\}", lambda m: "1" if kinds.get(m.group(1), {}).get("type") == "integer" else value,
                 path)
    query = [f"{p['name']}={_example(p.get('schema', {}))}" for p in params if p["in"] == "query" and p.get("required")]
    return url + ("?" + "&".join(query) if query else "")


def _example(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") in ("integer", "number"):
        return "1"
    return "x1"


def _declared(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"] if status.isdigit()}


def test_each_operation_declares_the_errors_its_dependencies_answer(api):
    """401 on every authenticated operation, 403 (its scope) and 429 (rate; quota when billed) on every
    metered one, 404 where the path names objects, 503 where inference runs; the export's 429 says
    its ceiling (FACEATLAS_MAX_EXPORTS_PER_TENANT); each with the error body."""
    seen = set()
    for method, path, operation in _operations(api):
        call = f"{method} {path}"
        seen.add(call)
        answers = operation["responses"]
        assert operation.get("security"), call  # every /v1 operation authenticates
        for status in ("401", "403", "429"):
            assert status in answers, (call, status)
            assert answers[status]["content"]["application/json"]["schema"] == ERROR_BODY, (call, status)
        assert answers["401"]["description"].startswith("unauthorized"), call
        assert re.search(r"lacks the '(admin|write|read|detect)' scope", answers["403"]["description"]), call
        assert "rate_limited" in answers["429"]["description"], call
        # a camera's counts look nothing up: an unknown camera is an empty answer, no 404
        assert ("404" in answers) == ("{" in path and call != "GET /v1/cameras/{camera}/counts"), call
        assert "422" in answers, call  # an unknown query parameter, on every operation
        assert "database_unavailable" in answers["503"]["description"], call  # every metered call reads or writes
        assert ("overloaded" in answers["503"]["description"]) == (call in INFERENCE), call
        assert answers["503"]["content"]["application/json"]["schema"] == ERROR_BODY, call
    assert seen >= INFERENCE
    for call, code in (("POST /v1/collections", "already_exists"), ("POST /v1/keys", "key_limit")):
        assert code in dict(_by_call(api))[call]["responses"]["409"]["description"], call
    assert "quota_exceeded" in dict(_by_call(api))["POST /v1/detect"]["responses"]["429"]["description"]
    assert "quota_exceeded" not in dict(_by_call(api))["GET /v1/keys"]["responses"]["429"]["description"]
    export = dict(_by_call(api))["GET /v1/collections/{collection}/export"]["responses"]["429"]["description"]
    assert "FACEATLAS_MAX_EXPORTS_PER_TENANT" in export, export
    snapshot = dict(_by_call(api))["GET /v1/events/{event_id}/snapshot"]["responses"]["404"]["description"]
    assert snapshot.startswith("no snapshot kept") and "not_found" in snapshot, snapshot  # the route's own first


def _by_call(api) -> Iterator[tuple[str, dict[str, Any]]]:
    for method, path, operation in _operations(api):
        yield f"{method} {path}", operation


def test_real_refusals_answer_statuses_their_operations_declare(api):
    """Every operation: without a key (401), with a read key (403 where another scope is needed; a
    read route on an unknown object 404; a GET with a query parameter it does not take 422), and a
    key past its rate (429): each answer's status is one its operation declares."""
    undeclared = []
    with api.client() as anonymous, api.client("acme_read") as reader:
        for method, path, operation in _operations(api):
            call = f"{method} {path}"
            declared = _declared(operation)
            body = {"json": {}} if "requestBody" in operation else {}
            answer = anonymous.request(method, _url(path, operation), **body)
            assert answer.status_code == 401, (call, answer.text)
            if 401 not in declared:
                undeclared.append((call, 401))
            answer = reader.request(method, _url(path, operation), **body)
            if re.search("'(write|admin)' scope", operation["responses"]["403"]["description"]):  # read: detect too
                assert answer.status_code == 403, (call, answer.text)
            if answer.status_code >= 400 and answer.status_code not in declared:
                undeclared.append((call, answer.status_code))
            if method == "GET":  # a query parameter the operation does not take
                answer = reader.get(_url(path, operation), params={"zzz": "1"})
                if answer.status_code >= 400 and answer.status_code not in declared:
                    undeclared.append((call, answer.status_code))
        unknown = reader.get(f"/v1/collections/nope-{uuid.uuid4().hex[:8]}")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found", unknown.text
        nothing = reader.get(f"/v1/cameras/nope-{uuid.uuid4().hex[:8]}/counts")
        assert nothing.status_code == 200 and nothing.json()["counts"] == [], nothing.text
    assert 404 in _declared(dict(_by_call(api))["GET /v1/collections/{collection}"])
    tenant = f"own-{uuid.uuid4().hex[:12]}"
    api.accounts.create_tenant(tenant)
    slow_key = api.accounts.create_key(tenant, ["detect"], rate_per_second=0.01, burst=2).token
    with api.client(slow_key) as slow:  # a burst of 2, then 429
        statuses = [slow.post("/v1/detect", json={}).status_code for _ in range(3)]
    assert statuses[-1] == 429, statuses
    assert 429 in _declared(dict(_by_call(api))["POST /v1/detect"])
    assert undeclared == []


def test_a_json_body_that_does_not_parse_is_one_status_on_every_route_taking_json(api):
    """``{bad`` sent as application/json: the image routes (read by hand) said 400 ``bad_request``, the
    routes of a body model 422 ``validation_error``. Every operation whose OpenAPI body takes JSON
    (a new one is covered as it is added) answers 422 ``validation_error`` "the JSON body does not
    parse (...)", as the README says; and declares it."""
    tenant = f"own-{uuid.uuid4().hex[:12]}"
    api.accounts.create_tenant(tenant)
    admin = api.accounts.create_key(tenant, ["admin"], rate_per_second=10_000, burst=10_000).token
    as_json = {"content-type": "application/json"}
    taking_json = [(method, path, operation) for method, path, operation in _operations(api)
                   if "application/json" in operation.get("requestBody", {}).get("content", {})]
    assert {"POST /v1/detect", "POST /v1/collections", "PATCH /v1/settings", "POST /v1/keys",
            "POST /v1/albums/{album}/photos"} <= {f"{m} {p}" for m, p, _ in taking_json}
    differ = []
    with api.client(admin) as http:  # the path's objects exist: the body is what is refused
        assert http.post("/v1/collections", json={"name": "x1"}).status_code == 201
        assert http.post("/v1/collections/x1/subjects", json={"id": "x1"}).status_code == 201
        for method, path, operation in taking_json:
            call = f"{method} {path}"
            if 422 not in _declared(operation):
                differ.append((call, "422 undeclared"))
            for body in (b"{bad", b'{"name": "\xff"}'):
                answer = http.request(method, _url(path, operation, "x1"), content=body, headers=as_json)
                error = answer.json().get("error", {})
                if (answer.status_code, error.get("code")) != (422, "validation_error") or not error.get(
                        "message", "").startswith("the JSON body does not parse ("):
                    differ.append((call, body, answer.status_code, answer.text[:200]))
    assert differ == []
