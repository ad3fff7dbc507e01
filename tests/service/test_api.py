"""The REST API in process (``api``) and, for the upload limit at the socket, over a real uvicorn
api (``api``): faces, errors, keys, limits, metering, metrics."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceatlas.cli.main import app as cli


def _upload(path, name: str = "image") -> dict:
    return {name: (path.name, path.read_bytes(), "image/jpeg")}


def test_detect_by_upload_and_by_base64_json(api, examples):
    photo = examples / "examples" / "two_people.jpg"
    with api.client("acme_detect") as client:
        uploaded = client.post("/v1/detect", files=_upload(photo))
        as_json = client.post("/v1/detect", json={"image": base64.b64encode(photo.read_bytes()).decode()})
    assert uploaded.status_code == 200, uploaded.text
    assert len(uploaded.json()["faces"]) == 2
    assert as_json.json()["faces"] == uploaded.json()["faces"]


def test_compare_same_and_different_people(api, examples):
    images = examples / "tests" / "test_images"
    with api.client("acme_detect") as client:
        same = client.post(
            "/v1/compare",
            files={**_upload(images / "obama.jpg", "image_a"), **_upload(images / "obama2.jpg", "image_b")},
        ).json()
        different = client.post(
            "/v1/compare",
            files={**_upload(images / "obama.jpg", "image_a"), **_upload(images / "biden.jpg", "image_b")},
        ).json()
    assert same["similarity"] > 0.5 > different["similarity"]
    if same["match"] is not None:  # the pack is calibrated: FAR-based verdicts
        assert same["match"] is True and different["match"] is False


def test_compare_at_a_far_not_calibrated_is_refused_before_any_face_is_billed(api, examples):
    """POST /compare?far=0.5 answered 422 "not one of the calibrated rates" only after both faces
    were analysed, and the bill counted them (faces: 2). The rate is checked first: no face billed."""
    images = examples / "tests" / "test_images"
    tenant = f"far-{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant)
    key = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    with api.client(key) as client:
        pair = {**_upload(images / "obama.jpg", "image_a"), **_upload(images / "obama2.jpg", "image_b")}
        refused = client.post("/v1/compare", params={"far": 0.5}, files=pair)
        assert refused.status_code == 422, refused.text
        assert "far 0.5 is not one of the calibrated rates" in refused.json()["error"]["message"]
        [row] = [r for r in client.get("/v1/usage").json()["rows"] if r["operation"] == "compare"]
    assert (row["calls"], row["errors"], row["faces"]) == (1, 1, 0)


def test_liveness_endpoint(api, shared):
    samples = shared / "data" / "antispoof_samples"
    with api.client("acme_detect") as client:
        real = client.post("/v1/liveness", files=_upload(samples / "image_T1.jpg")).json()
        spoof = client.post("/v1/liveness", files=_upload(samples / "image_F2.jpg")).json()
    assert real["real"] is True and spoof["real"] is False


def test_errors_have_stable_codes_and_statuses(api, examples, tmp_path):
    photo = examples / "tests" / "test_images" / "obama.jpg"
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    truncated = photo.read_bytes()[:3000]
    with api.client() as anonymous:
        assert anonymous.post("/v1/detect", files=_upload(photo)).json()["error"]["code"] == "unauthorized"
    with api.client("fa_nope_wrong") as wrong:
        assert wrong.post("/v1/detect", files=_upload(photo)).status_code == 401
    with api.client("acme_detect") as client:
        cases = {
            "invalid_image": client.post("/v1/detect", files={"image": ("x.jpg", b"not an image", "image/jpeg")}),
            "truncated_image": client.post("/v1/detect", files={"image": ("t.jpg", truncated, "image/jpeg")}),
            "no_face": client.post("/v1/compare", files={**_upload(blank, "image_a"), **_upload(photo, "image_b")}),
            "unsupported_media_type": client.post("/v1/detect", content=b"raw", headers={"content-type": "text/plain"}),
            "url_fetch_disabled": client.post("/v1/detect", json={"image": {"url": "http://127.0.0.1:1/x.jpg"}}),
            "forbidden": client.get("/v1/usage"),
            "validation_error": client.post("/v1/detect", json={"nothing": 1}),
        }
    statuses = {code: (r.status_code, r.json()["error"]["code"]) for code, r in cases.items()}
    assert statuses == {
        "invalid_image": (400, "invalid_image"),
        "truncated_image": (400, "truncated_image"),
        "no_face": (422, "no_face"),
        "unsupported_media_type": (415, "unsupported_media_type"),
        "url_fetch_disabled": (400, "url_fetch_disabled"),
        "forbidden": (403, "forbidden"),
        "validation_error": (422, "validation_error"),
    }


def test_upload_limit_is_enforced_while_streaming(server):
    big = b"\xff" * 4_000_000
    with server.client("acme_detect") as client:
        declared = client.post("/v1/detect", files={"image": ("big.jpg", big, "image/jpeg")})

        def chunks():
            for _ in range(40):
                yield b"\x00" * 100_000

        streamed = client.post("/v1/detect", content=chunks(), headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
    assert streamed.status_code == 413
    assert declared.content.startswith(b'{"error":{"code":"payload_too_large","message":')  # as every error body


def test_rate_limit_answers_429_with_retry_after(api, examples):
    photo = examples / "tests" / "test_images" / "obama.jpg"
    with api.client("acme_slow") as client:
        statuses = [client.post("/v1/detect", files=_upload(photo)) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert statuses[2].status_code == 429 and statuses[2].json()["error"]["code"] == "rate_limited"
    assert int(statuses[2].headers["retry-after"]) >= 1


def test_monthly_quota(api, examples):
    photo = examples / "tests" / "test_images" / "obama.jpg"
    api.accounts.create_tenant("initech", "Initech", monthly_quota=6)
    key = api.accounts.create_key("initech", ["detect"], rate_per_second=100, burst=100).token
    with api.client(key) as client:
        responses = [client.post("/v1/detect", files=_upload(photo)) for _ in range(7)]
    assert [r.status_code for r in responses[:6]] == [200] * 6
    assert responses[6].status_code == 429 and responses[6].json()["error"]["code"] == "quota_exceeded"
    assert int(responses[6].headers["retry-after"]) > 0


def test_usage_is_metered_per_tenant_and_operation(api, examples):
    photo = examples / "examples" / "two_people.jpg"
    with api.client("acme_detect") as client:
        for _ in range(3):
            assert client.post("/v1/detect", files=_upload(photo)).status_code == 200
    with api.client("acme_read") as client:
        rows = client.get("/v1/usage").json()["rows"]
        csv_text = client.get("/v1/usage", params={"format": "csv"}).text
    detect = [r for r in rows if r["operation"] == "detect"]
    assert detect and all(r["tenant"] == "acme" for r in rows)
    assert detect[0]["calls"] >= 3 and detect[0]["faces"] >= 6
    assert csv_text.splitlines()[0] == "tenant,day,operation,calls,faces,errors,failed"
    result = CliRunner().invoke(cli, ["admin", "usage", "--csv", "--db", api.database_url])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("acme,") for line in result.stdout.splitlines())
    table = CliRunner().invoke(cli, ["admin", "usage", "--db", api.database_url], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "failed" in table.stdout.splitlines()[2], table.output  # the CSV's columns

    # a typo reads as "no usage" no more: a tenant that never was, or days given backwards, are errors
    typo = CliRunner().invoke(cli, ["admin", "usage", "--tenant", "acme-typo", "--db", api.database_url])
    assert typo.exit_code == 2 and "error (not_found): no tenant 'acme-typo'" in typo.output, typo.output
    quiet = CliRunner().invoke(cli, ["admin", "usage", "--tenant", "globex", "--csv", "--db", api.database_url])
    assert quiet.exit_code == 0, quiet.output  # a tenant that exists: its rows, however few
    assert all(line.startswith("globex,") for line in quiet.stdout.splitlines()[1:])
    backwards = CliRunner().invoke(cli, ["admin", "usage", "--from", "2026-12-05", "--to", "2026-12-01",
                                         "--db", api.database_url])
    assert backwards.exit_code == 2 and "'from' is after 'to'" in " ".join(backwards.output.split())
    with api.client("acme_read") as client:
        refused = client.get("/v1/usage", params={"from": "2026-12-05", "to": "2026-12-01"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"


def test_keys_are_shown_once_stored_hashed_rotated_and_revoked(api, examples):
    photo = examples / "tests" / "test_images" / "obama.jpg"
    with api.client("acme_admin") as admin:
        created = admin.post("/v1/keys", json={"scopes": ["detect"], "name": "kiosk"})
        assert created.status_code == 201
        token, prefix = created.json()["key"], created.json()["prefix"]
        listed = admin.get("/v1/keys").json()["keys"]
        assert any(k["prefix"] == prefix for k in listed) and token not in json.dumps(listed)
    stored = [k for k in api.accounts.list_keys("acme") if k.prefix == prefix][0]
    assert token.split("_", 2)[2] not in stored.secret_hash and len(stored.secret_hash) == 64
    with api.client(token) as kiosk:
        assert kiosk.post("/v1/detect", files=_upload(photo)).status_code == 200
    with api.client("acme_admin") as admin:
        rotated = admin.post(f"/v1/keys/{prefix}/rotate").json()["key"]
        audit = [e["action"] for e in admin.get("/v1/audit").json()["events"]]
    assert {"key.create", "key.revoke"} <= set(audit)
    with api.client(token) as old, api.client(rotated) as new:
        assert old.post("/v1/detect", files=_upload(photo)).status_code == 401
        assert new.post("/v1/detect", files=_upload(photo)).status_code == 200


def test_issuing_a_key_refuses_an_idempotency_key_rather_than_making_a_second_one(api):
    """`POST /v1/keys` (and a rotation) ignored an Idempotency-Key without a word: a retry after a lost
    answer made a second live key (a rotation's retry 409 key_revoked, the new key lost). The answer
    holds the key's secret, stored nowhere, so no retry can be given it: the header is refused, 422."""
    tenant, _ = api.own_tenant()
    admin_key = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    with api.client(admin_key) as admin:
        before = len(admin.get("/v1/keys").json()["keys"])
        once = {"Idempotency-Key": "k-1"}
        refused = admin.post("/v1/keys", json={"scopes": ["read"]}, headers=once)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error", refused.text
        assert "takes no Idempotency-Key" in refused.json()["error"]["message"], refused.text
        assert len(admin.get("/v1/keys").json()["keys"]) == before  # no key made
        prefix = admin.post("/v1/keys", json={"scopes": ["read"]}).json()["prefix"]
        rotation = admin.post(f"/v1/keys/{prefix}/rotate", headers=once)
        assert rotation.status_code == 422 and "takes no Idempotency-Key" in rotation.text, rotation.text
        assert {k["prefix"]: k["revoked"] for k in admin.get("/v1/keys").json()["keys"]}[prefix] is False
    with api.client() as anonymous:  # the key first: 401, as every call
        assert anonymous.post("/v1/keys", json={"scopes": ["read"]}, headers=once).status_code == 401
    for path in ("/v1/keys", "/v1/keys/{prefix}/rotate"):  # not offered as an option: said refused
        operation = api.app.openapi()["paths"][path]["post"]
        assert "Idempotency-Key" not in [p["name"] for p in operation.get("parameters", [])], operation
        said = " ".join(operation["description"].split())
        assert "Idempotency-Key`` header is refused (422)" in said, said


def test_tenants_cannot_touch_each_others_keys_or_usage(api):
    acme_prefixes = {k.prefix for k in api.accounts.list_keys("acme")}
    with api.client("globex_admin") as globex:
        visible = {k["prefix"] for k in globex.get("/v1/keys").json()["keys"]}
        for prefix in list(acme_prefixes)[:3]:
            assert globex.delete(f"/v1/keys/{prefix}").status_code == 404
            assert globex.post(f"/v1/keys/{prefix}/rotate").status_code == 404
    assert not visible & acme_prefixes
    assert all(k.revoked_at is None for k in api.accounts.list_keys("acme") if k.name != "kiosk")


def test_health_readiness_and_prometheus_metrics(api, examples):
    photo = examples / "tests" / "test_images" / "obama.jpg"
    with api.client("acme_detect") as client:
        assert client.post("/v1/detect", files=_upload(photo)).status_code == 200
    with api.client() as anonymous:
        # a refused call (no key) is counted under its operation, as an answered one: not as "other"
        assert anonymous.post("/v1/detect", files=_upload(photo)).status_code == 401
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").status_code == 200
        # load balancers and uptime monitors probe with HEAD (it was 405)
        assert anonymous.head("/healthz").status_code == anonymous.head("/readyz").status_code == 200
        metrics = anonymous.get("/metrics").text
        assert anonymous.get("/docs").status_code == 404  # Swagger UI loads from a CDN: off unless FACEATLAS_DOCS
        assert "/v1/detect" in anonymous.get("/openapi.json").json()["paths"]
    assert 'faceatlas_requests_total{operation="detect",status="200"}' in metrics
    assert 'faceatlas_requests_total{operation="detect",status="401"}' in metrics
    assert "faceatlas_recognizer_batch_size_bucket" in metrics and "faceatlas_inference_queue_depth" in metrics


def test_video_events_are_listed_per_tenant(api, examples, tmp_path):
    from faceatlas.video.events import Event
    from faceatlas.video.sinks import DatabaseSink

    frame = tmp_path / "door_0000010_1_watchlist_hit_4d5e0c2a9b8f41d7a6e3c1b0f9a8e7d6.jpg"  # as `snapshots:` keeps
    frame.write_bytes((examples / "tests" / "test_images" / "obama.jpg").read_bytes())
    for tenant, camera in (("acme", "door"), ("globex", "lobby")):
        sink = DatabaseSink(api.database_url, tenant=tenant)
        hit = {"subject": f"{tenant}-vip", "snapshot": str(frame)}
        sink.emit(Event("watchlist_hit", camera, 10, 0.4, 1, "face", hit))
        sink.emit(Event("line_crossed", camera, 20, 0.8, 2, "person", {"direction": "in"}))
        sink.close()
    with api.client("acme_read") as acme, api.client("globex_admin") as globex:
        listed = acme.get("/v1/events").json()["events"]
        hits = acme.get("/v1/events", params={"type": "watchlist_hit", "camera": "door"}).json()["events"]
        assert hits[0]["data"]["snapshot"] == f"/v1/events/{hits[0]['id']}/snapshot"  # not the server's file path
        shot = acme.get(hits[0]["data"]["snapshot"])
        assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
        assert shot.content == frame.read_bytes()
        crossing = next(e for e in listed if e["type"] == "line_crossed")
        assert acme.get(f"/v1/events/{crossing['id']}/snapshot").json()["error"]["code"] == "not_found"
        assert globex.get(f"/v1/events/{hits[0]['id']}/snapshot").status_code == 404  # another tenant's event
        # since is a time with its offset (it was compared as text: an offset or a 'Z' left events out)
        emitted = datetime.fromisoformat(crossing["wall_time"])
        ahead = (emitted - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
        assert crossing["id"] in {e["id"] for e in acme.get("/v1/events", params={"since": ahead}).json()["events"]}
        later = (emitted + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-5))).isoformat()
        assert acme.get("/v1/events", params={"since": later, "camera": "door"}).json()["events"] == []
        refused = acme.get("/v1/events", params={"since": "yesterday"})
        assert refused.status_code == 422 and "ISO 8601" in refused.json()["error"]["message"]
        frame.unlink()  # removed by the operator's retention: gone, not a 500
        assert acme.get(f"/v1/events/{hits[0]['id']}/snapshot").status_code == 404
    assert sorted(e["type"] for e in listed if e["camera"] == "door") == ["line_crossed", "watchlist_hit"]
    assert not any(e["camera"] == "lobby" for e in listed)  # globex's camera (other tests may add acme's)
    assert [e["data"]["subject"] for e in hits if e["camera"] == "door"] == ["acme-vip"]


def test_snapshots_of_a_watch_run_from_another_folder_are_served_and_erased(api, shared, tmp_path, monkeypatch):
    """``faceatlas watch`` run in a site folder with ``snapshots: snaps`` stored each event's
    snapshot as ``snaps/<file>.jpg``, relative to that folder: the API server, working elsewhere,
    answered 404 for a file that was there, and deleting the tenant left the JPEGs on disk. A
    relative ``snapshots`` still means the working folder of the watch run; events store the
    absolute path."""
    from pathlib import Path

    from faceatlas.service.tenants import delete_tenant
    from faceatlas.video import load_config, run_watch
    from tests.clips import first_seconds

    tenant = "snap-site"
    api.accounts.create_tenant(tenant)
    reader = api.accounts.create_key(tenant, ["read"], rate_per_second=500, burst=500).token
    site, server = tmp_path / "site", tmp_path / "server"
    site.mkdir(), server.mkdir()
    first_seconds(shared / "data" / "videos" / "people_walking_vtest.avi", site / "hall.mp4", 1.0)
    (site / "cams.yaml").write_text(
        f"tenant: {tenant}\ndatabase: {json.dumps(api.database_url)}\ncameras:\n"
        "  - {name: hall, source: hall.mp4, faces: false, stride: 1, snapshots: snaps,\n"
        "     zones: [{name: all, polygon: [[0, 0], [10000, 0], [10000, 10000], [0, 10000]], max_dwell: 0.2}]}\n")
    monkeypatch.chdir(site)  # watch runs where its cams.yaml is, naming its files relative to it
    run_watch(load_config(Path("cams.yaml")), pack="scrfd-mbf")
    kept = sorted((site / "snaps").glob("hall_*_dwell_exceeded_*.jpg"))  # ..._<type>_<event id>.jpg
    assert kept, "the run kept no snapshot"

    monkeypatch.chdir(server)  # the server works in another folder
    with api.client(reader) as client:
        events = client.get("/v1/events", params={"type": "dwell_exceeded", "camera": "hall"}).json()["events"]
        # the frames' addresses, not the server's file paths; each is served wherever one works
        assert [e["data"]["snapshot"] for e in events] == [f"/v1/events/{e['id']}/snapshot" for e in events]
        shots = [client.get(e["data"]["snapshot"]) for e in events]
        assert all(shot.status_code == 200 for shot in shots), shots[0].text
        assert sorted(shot.content for shot in shots) == sorted(path.read_bytes() for path in kept)
    delete_tenant(api.accounts, api.app.state.gallery, tenant)
    assert not any(path.exists() for path in kept)  # erased with the tenant's events


def test_retail_analytics_are_served_to_the_store_owner_only(api, examples, fast_analyzer, tmp_path):
    from datetime import datetime, timedelta

    from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig
    from faceatlas.apps.retail.events import Entry, Exit

    config = StoreConfig(
        id=f"shop-{tmp_path.name[-6:]}",
        tenant="acme",
        cameras=[Camera(id="in", role="entrance"), Camera(id="out", role="exit")],
        products=[Product(sku="milk", name="Milk", price_cents=120)],
    )
    visitor = examples / "tests" / "test_images" / "biden.jpg"
    day = datetime(2026, 11, 2, 10, 0)
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
        store.entry(Entry("in", day, image=visitor, track="a"))
        store.exit(Exit("out", day + timedelta(minutes=12), image=visitor, track="a"))
    path = f"/v1/retail/stores/{config.id}/analytics"
    window = {"from": "2026-11-01", "to": "2026-11-03"}
    with api.client("acme_read") as acme:
        report = acme.get(path, params=window).json()
        chart = acme.get(path, params={**window, "format": "png", "chart": "dwell"})
        table = acme.get(path, params={**window, "format": "csv"}).text
        unix = acme.get(path, params={"from": "0", "to": "86400.0"})  # read as Unix times: 1970's empty report
        assert unix.status_code == 422 and unix.json()["error"]["code"] == "validation_error", unix.text
    assert report["summary"]["visits"] == 1 and report["summary"]["anonymous_visits"] == 1
    assert chart.headers["content-type"] == "image/png" and chart.content[:4] == b"\x89PNG"
    assert table.splitlines()[0] == "metric,key,value"
    with api.client("globex_admin") as globex:
        assert globex.get(path, params=window).status_code == 404


def test_every_json_body_model_of_the_api_refuses_unknown_fields(api):
    """A body model that ignores a field it does not declare answers 200 to a typo and does nothing
    asked: every model of a JSON request body forbids them (``additionalProperties: false``)."""
    spec = api.app.openapi()
    schemas = spec["components"]["schemas"]

    def refs(schema: dict) -> list[str]:
        found = [schema["$ref"]] if "$ref" in schema else []
        return found + [ref for option in schema.get("anyOf", []) for ref in refs(option)]

    bodies = {
        f"{method.upper()} {path}": ref.rsplit("/", 1)[-1]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for ref in refs(operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                        .get("schema", {}))
    }
    assert len(bodies) >= 17 and "PATCH /v1/collections/{collection}/subjects/{subject}" in bodies
    lax = sorted(f"{route} ({model})" for route, model in bodies.items()
                 if schemas[model].get("additionalProperties") is not False)
    assert lax == []


def test_image_calls_refuse_fields_they_do_not_take(api, examples):
    """The image calls read their body by hand (multipart or base64 JSON), outside the body models:
    a field they do not take (a typo, an option of another call) was ignored with a 200; it is a
    ``validation_error`` naming it, in both encodings."""
    photo = examples / "tests" / "test_images" / "obama.jpg"
    encoded = base64.b64encode(photo.read_bytes()).decode()
    with api.client("acme_detect") as client:
        as_json = client.post("/v1/detect", json={"image": encoded, "max_face": 1})
        as_form = client.post("/v1/detect", files=_upload(photo), data={"attributes": "true"})
        plain = client.post("/v1/detect", json={"image": encoded})
    for refused, field in ((as_json, "max_face"), (as_form, "attributes")):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error" and field in refused.json()["error"]["message"]
    assert plain.status_code == 200 and len(plain.json()["faces"]) == 1


def test_an_image_by_url_is_an_object_of_one_string_field(api):
    """``{"url": null}`` or ``{"url": 5}`` was fetched as the URL 'None' or '5' (400 url_fetch_disabled
    "'None' is not an origin"), and ``{"url": ..., "x": 1}`` was taken with its 'x' ignored."""
    with api.client("acme_detect") as client:
        null = client.post("/v1/detect", json={"image": {"url": None}})
        five = client.post("/v1/compare", json={"image_a": {"url": 5}, "image_b": {"url": "https://example.org/b.jpg"}})
        extra = client.post("/v1/detect", json={"image": {"url": "https://example.org/a.jpg", "x": 1}})
        plain = client.post("/v1/detect", json={"image": {"url": "https://example.org/a.jpg"}})
    for refused, words in ((null, "'image.url' must be a string"), (five, "'image_a.url' must be a string"),
                           (extra, "unknown field(s) 'x'")):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error" and words in refused.json()["error"]["message"]
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "url_fetch_disabled"  # off by default
    schema = api.app.openapi()["paths"]["/v1/detect"]["post"]["requestBody"]["content"]["application/json"]
    by_url = [option for option in schema["schema"]["properties"]["image"]["oneOf"] if option["type"] == "object"]
    assert by_url and by_url[0]["additionalProperties"] is False and by_url[0]["required"] == ["url"]


def test_a_corrupt_avif_is_a_400_on_every_image_call(api, examples):
    """A corrupt AVIF (PIL's RuntimeError) answered 500 on detect, compare and base64 JSON."""
    from PIL import features

    if not features.check_module("avif"):
        pytest.skip("this Pillow decodes no AVIF")
    from tests.bad_images import corrupt_avif

    photo = examples / "tests" / "test_images" / "obama.jpg"
    bad = corrupt_avif(photo)
    with api.client("acme_detect") as client:
        answers = [
            client.post("/v1/detect", files={"image": ("bad.avif", bad, "image/avif")}),
            client.post("/v1/detect", json={"image": base64.b64encode(bad).decode()}),
            client.post("/v1/compare", files={"image_a": ("a.jpg", photo.read_bytes(), "image/jpeg"),
                                              "image_b": ("bad.avif", bad, "image/avif")}),
            client.post("/v1/liveness", files={"image": ("bad.avif", bad, "image/avif")}),
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_image"


def test_a_palette_image_above_the_work_pixels_gives_the_faces_the_cli_gives(api, examples, tmp_path):
    """A 5630x3305 palette PNG (above the 16 MP of work_pixels) was refused by the API as "image has
    wrong mode" (PIL's reduce takes no palette) while `faceatlas detect` found its faces."""
    portrait = Image.open(examples / "tests" / "test_images" / "obama.jpg").convert("RGB")
    canvas = Image.new("RGB", (5630, 3305), (128, 128, 128))
    canvas.paste(portrait.resize((1000, 1000 * portrait.height // portrait.width)), (2000, 1000))
    path = tmp_path / "big_palette.png"
    canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    with api.client("acme_detect") as client:
        answer = client.post("/v1/detect", files={"image": ("big_palette.png", path.read_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    found = CliRunner().invoke(cli, ["detect", str(path), "-p", "scrfd-mbf", "--json"])
    assert found.exit_code == 0, found.output
    [cli_face] = json.loads(found.stdout)["results"][0]["faces"]
    [api_face] = answer.json()["faces"]
    assert np.abs(np.array(api_face["bbox"]) - np.array(cli_face["bbox"])).max() < 30, (api_face, cli_face)


def test_every_json_answer_of_the_api_has_a_schema(api):
    """Eight retail routes (member erasure, carts, face pay, refunds, alerts, occupancy) answered an
    undocumented object: every JSON answer names its fields in the OpenAPI schema."""
    spec = api.app.openapi()
    untyped = sorted(
        f"{method.upper()} {path} {status}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if status.startswith("2") and (schema := answer.get("content", {}).get("application/json", {})
                                       .get("schema")) is not None
        and "$ref" not in json.dumps(schema)
    )
    assert untyped == []


def test_query_parameters_a_route_does_not_take_are_refused(api):
    """``?formt=csv`` (a typo) answered 200 with the default format, and ``?sinse=`` listed every
    event: a query parameter the route does not document is a ``validation_error`` naming it and
    the ones the route takes, on every /v1 route; the documented ones still work."""
    with api.client("acme_admin") as client:
        typo = client.get("/v1/usage", params={"formt": "csv"})
        two = client.get("/v1/events", params={"sinse": "2026-01-01T00:00:00Z", "kamera": "door"})
        fine = client.get("/v1/usage", params={"format": "csv"})
        listed = client.get("/v1/collections", params={"limit": "3"})
    assert typo.status_code == 422, typo.text
    error = typo.json()["error"]
    assert error["code"] == "validation_error" and "formt" in error["message"] and "format" in error["message"]
    assert two.status_code == 422 and "kamera, sinse" in two.json()["error"]["message"]
    assert fine.status_code == 200 and fine.headers["content-type"].startswith("text/csv")
    assert listed.status_code == 422 and "none" in listed.json()["error"]["message"]
    with api.client() as anonymous:  # no key: still 401 first, whatever the query says
        assert anonymous.get("/v1/usage", params={"api_key": "fa_0123_x"}).status_code == 401
    with api.client("acme_admin") as client:  # ?format=json&format=csv used the last one, silently
        twice = client.get("/v1/usage", params=[("format", "json"), ("format", "csv")])
        listed = client.post("/v1/ar/effects", params=[("effect", "glasses"), ("effect", "hat")])  # a list
    assert twice.status_code == 422 and "format given more than once" in twice.json()["error"]["message"]
    assert "more than once" not in listed.text  # a list parameter repeats (refused here for its missing image)


def test_a_query_refused_by_the_route_s_contract_is_billed_as_every_422(api):
    """``?after=abc`` or ``?limit=-1`` (FastAPI's validation) was billed as a call with an error, as the
    README says of a metered call answered below 500, but ``?bogus=1`` and ``?after=1&after=2`` (the
    route's contract, checked before the metering) were not recorded at all: all are recorded alike."""
    api.accounts.create_tenant("strict")
    key = api.accounts.create_key("strict", ["admin"], rate_per_second=500, burst=500).token
    path = "/v1/collections/staff/subjects"
    with api.client(key) as client:
        refused = [client.get(path, params=params) for params in
                   ({"after": "abc"}, {"limit": "-1"}, {"bogus": "1"}, [("after", "1"), ("after", "2")])]
        assert [r.status_code for r in refused] == [422] * 4, [r.text for r in refused]
        assert "bogus" in refused[2].text and "more than once" in refused[3].text
        rows = [r for r in client.get("/v1/usage").json()["rows"] if r["operation"] != "usage"]
    assert [(r["calls"], r["errors"]) for r in rows] == [(4, 4)], rows
    assert api.accounts.calls_this_month("strict") == 4


def test_a_json_field_given_twice_is_refused(api, examples):
    """``{"name": "ct5", "name": "ct6"}`` created ct6, the first name dropped silently: a field given
    twice in one JSON object is a 422 naming it, on a route of a body model as on an image call."""
    image = base64.b64encode((examples / "tests" / "test_images" / "obama.jpg").read_bytes()).decode()
    json_type = {"content-type": "application/json"}
    with api.client("acme_admin") as client:
        created = client.post("/v1/collections", content=b'{"name": "ct5", "name": "ct6"}', headers=json_type)
        detect = client.post("/v1/detect", content=json.dumps({"image": image}).replace(
            '{"image"', f'{{"image": "{image}", "image"', 1).encode(), headers=json_type)
        names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
        fine = client.post("/v1/detect", json={"image": image})
    assert created.status_code == 422 and "'name' given more than once" in created.json()["error"]["message"]
    assert detect.status_code == 422 and "'image' given more than once" in detect.json()["error"]["message"]
    assert "ct5" not in names and "ct6" not in names
    assert fine.status_code == 200, fine.text


def test_a_204_answer_has_no_content_type(api, examples):
    """DELETE of a collection, a subject or a key answered 204 with ``content-type: application/json``
    and an empty body (a client parsing it as JSON failed): a 204 carries no content-type, replayed
    for an Idempotency-Key as the first time, and every 204 route of the API is declared so."""
    from fastapi.responses import Response
    from fastapi.routing import APIRoute

    from faceatlas.service.routes import account, albums, ar, events, faces, galleries, kyc, retail

    with api.client("acme_admin") as client:
        assert client.post("/v1/collections", json={"name": "bare204"}).status_code == 201
        assert client.post("/v1/collections/bare204/subjects", json={"id": "s1"}).status_code == 201
        key = client.post("/v1/keys", json={"scopes": ["read"]}).json()["prefix"]
        answers = [client.delete("/v1/collections/bare204/subjects/s1"), client.delete(f"/v1/keys/{key}"),
                   client.delete("/v1/collections/bare204", headers={"Idempotency-Key": "bare204-delete"}),
                   client.delete("/v1/collections/bare204", headers={"Idempotency-Key": "bare204-delete"})]
    assert [a.status_code for a in answers] == [204] * 4, [a.text for a in answers]
    assert answers[3].headers.get("idempotent-replayed") == "true"
    assert [a.headers.get("content-type") for a in answers] == [None] * 4
    assert all(a.content == b"" for a in answers)
    routes = [r for module in (account, albums, ar, events, faces, galleries, kyc, retail)
              for r in module.router.routes if isinstance(r, APIRoute) and r.status_code == 204]
    assert len(routes) >= 3 and all(r.response_class is Response for r in routes), routes


def test_a_key_in_the_query_string_is_refused_saying_so(api):
    """`/v1/detect?api_key=fa_...` got the generic 401 "a valid API key is required", though the
    README says keys in the query string are refused: the 401 says so, and where the key goes."""
    key = api.keys["acme_detect"]
    refused = "an API key in the URL is refused (it would be logged): send it in Authorization: Bearer or X-API-Key"
    with api.client() as anonymous:
        for query in (f"api_key={key}", f"key={key}", f"token={key}", f"x={key}", key, "api_key=fa_0123_x"):
            response = anonymous.post(f"/v1/detect?{query}")
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", query
            assert response.json()["error"] == {"code": "unauthorized", "message": refused}, query
        plain = anonymous.post("/v1/detect", params={"limit": "3"})  # no key anywhere: the message as before
    assert plain.status_code == 401
    assert plain.json()["error"]["message"] == "a valid API key is required (Authorization: Bearer fa_...)"


def test_a_request_carrying_two_keys_is_refused(api):
    """``Authorization: Bearer B`` with ``Authorization: Bearer A`` (or with ``X-API-Key: A``) answered
    200 as B, the second key ignored: a request carrying more than one credential is a 401 saying so."""
    acme, globex = api.keys["acme_admin"], api.keys["globex_admin"]
    with api.client() as anonymous:
        for headers in ([("Authorization", f"Bearer {globex}"), ("Authorization", f"Bearer {acme}")],
                        [("Authorization", f"Bearer {globex}"), ("X-API-Key", acme)],
                        [("X-API-Key", globex), ("X-API-Key", acme)],
                        [("Authorization", f"Bearer {acme}"), ("Authorization", f"Bearer {acme}")]):
            refused = anonymous.get("/v1/collections", headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert "more than one credential" in refused.json()["error"]["message"]
        assert anonymous.get("/v1/collections", headers={"X-API-Key": acme}).status_code == 200


def test_a_bug_answers_500_unbilled_and_uncounted(api, monkeypatch):
    """An unhandled exception (a bug) answered 500 but skipped the metering: the call was counted against
    the quota and never recorded, so a tenant with a quota of 3 was refused after three 500s and its
    bill showed nothing. Now it is recorded as failed, neither billed nor counted."""
    from fastapi.testclient import TestClient

    from faceatlas.gallery import Gallery

    api.accounts.create_tenant("buggy", "Buggy", monthly_quota=3)
    key = api.accounts.create_key("buggy", ["admin"], rate_per_second=100, burst=100).token
    client = TestClient(api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})
    with monkeypatch.context() as patched:
        patched.setattr(Gallery, "list_collections", lambda self: 1 / 0)
        failures = [client.get("/v1/collections") for _ in range(4)]
    assert [r.status_code for r in failures] == [500] * 4
    assert failures[0].json() == {"error": {"code": "internal", "message": "internal server error"}}
    served = [client.get("/v1/collections") for _ in range(4)]
    assert [r.status_code for r in served] == [200, 200, 200, 429]  # the quota: 3 calls served
    [row] = [r for r in client.get("/v1/usage").json()["rows"] if r["operation"] == "collections.list"]
    assert (row["calls"], row["failed"]) == (3, 4)


def test_the_openapi_document_describes_the_error_body_the_api_answers(api, examples):
    """Every 422 was documented as FastAPI's {"detail": [...]} while the API answers
    {"error": {"code", "message"}}: a client generated from the document could not read an error."""
    spec = api.app.openapi()
    assert "HTTPValidationError" not in json.dumps(spec)
    error = spec["components"]["schemas"]["ErrorOut"]
    detail = spec["components"]["schemas"][error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
    assert set(detail["required"]) == {"code", "message"}
    answers = [operation["responses"] for operations in spec["paths"].values() for operation in operations.values()]
    assert all(a["default"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut") for a in answers)
    with api.client("acme_detect") as client:
        refused = client.post("/v1/detect", params={"max_faces": 0},
                              files=_upload(examples / "tests" / "test_images" / "obama.jpg"))
    assert refused.status_code == 422 and set(refused.json()) == {"error"}
    with api.client("acme_admin") as client:  # a method the path does not take: its own code, not bad_request
        wrong = client.put("/v1/collections")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert set(refused.json()["error"]) == set(detail["required"])
    assert spec["paths"]["/v1/detect"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"}


def test_every_declared_error_answer_of_the_openapi_document_is_the_json_error_body(api, examples):
    """The 404s of GET /v1/events/{id}/snapshot ("no snapshot kept") and GET
    /v1/albums/{album}/faces/{face}/crop ("unknown face, or no crops kept") were declared without
    content, while the server answers them with the JSON error body: a client generated from the
    document could not read them."""
    spec = api.app.openapi()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    declared = {(path, method, status): answer for path, operations in spec["paths"].items()
                for method, operation in operations.items() for status, answer in operation["responses"].items()
                if status == "default" or int(status) >= 400}
    assert {("/v1/events/{event_id}/snapshot", "get", "404"),
            ("/v1/albums/{album}/faces/{face}/crop", "get", "404")} <= set(declared)
    lacking = [where for where, answer in declared.items()
               if answer.get("content", {}).get("application/json", {}).get("schema") != error]
    assert lacking == []
    album = f"crops_{uuid.uuid4().hex[:6]}"
    with api.client("acme_admin") as client:
        snapshot = client.get(f"/v1/events/{uuid.uuid4().hex}/snapshot")
        added = client.post(f"/v1/albums/{album}/photos", files=_upload(examples / "tests/test_images/obama.jpg"))
        assert added.status_code == 200, added.text
        person = client.get(f"/v1/albums/{album}/people").json()["people"][0]["id"]
        face = client.get(f"/v1/albums/{album}/people/{person}/faces").json()["faces"][0]["id"]
        no_crop = client.get(f"/v1/albums/{album}/faces/{face}/crop")  # the album keeps no crops
        unknown = client.get(f"/v1/albums/{album}/faces/{face + 1000}/crop")
        client.delete(f"/v1/albums/{album}")
    for answer in (snapshot, no_crop, unknown):
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json", answer.text
        assert set(answer.json()) == {"error"} and answer.json()["error"]["code"] == "not_found"


def test_the_openapi_document_says_what_the_server_refuses(api):
    """A client generated from the document tripped on what it left unsaid (a schemathesis run):
    image and file bodies allowed fields the server refuses (422); their 400s (``invalid_image``,
    ``url_fetch_disabled``, an import that is not an export, a body that does not parse) and every
    call's (a NUL in the URL) were declared nowhere; the key-issuing calls listed an
    ``Idempotency-Key`` they always refuse; strict integers did not say 30.0 is refused; the events'
    ``type`` and the counts' ``class`` were free strings, where the layer takes a fixed set."""
    from faceatlas.video import EVENT_TYPES
    from faceatlas.video.store import COUNTED_CLASSES

    spec = api.app.openapi()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    operations = {f"{method.upper()} {path}": operation for path, methods in spec["paths"].items()
                  for method, operation in methods.items()}
    undeclared = sorted(call for call, operation in operations.items()
                        if operation["responses"].get("400", {}).get("content", {}).get("application/json", {})
                        .get("schema") != error)
    assert undeclared == []
    by_hand = {call: operation for call, operation in operations.items()
               if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})}
    assert {"POST /v1/detect", "POST /v1/compare", "POST /v1/ar/effects", "POST /v1/collections/import",
            "POST /v1/kyc/sessions/{session_id}/submit", "POST /v1/retail/stores/{store_id}/members",
            "POST /v1/albums/{album}/photos"} <= set(by_hand)
    lax = []
    for call, operation in by_hand.items():
        assert operation["responses"]["400"]["description"].count(":") >= 2, call  # its own reasons too
        assert operation["responses"]["413"]["content"]["application/json"]["schema"] == error, call
        for media, body in operation["requestBody"]["content"].items():
            objects = body["schema"].get("oneOf", [body["schema"]])  # a search's image or embedding
            lax += [f"{call} {media}" for schema in objects if schema.get("additionalProperties") is not False]
    assert lax == []
    assert "invalid_image" in by_hand["POST /v1/detect"]["responses"]["400"]["description"]
    assert "url_fetch_disabled" in by_hand["POST /v1/detect"]["responses"]["400"]["description"]
    assert "not a FaceAtlas collection export" in by_hand["POST /v1/collections/import"]["responses"]["400"][
        "description"]
    assert "unknown_effect" in operations["POST /v1/ar/effects"]["responses"]["422"]["description"]
    for call in ("POST /v1/keys", "POST /v1/keys/{prefix}/rotate"):
        assert "Idempotency-Key" not in [p["name"] for p in operations[call].get("parameters", [])], call

    def query(call: str, name: str) -> dict:
        [schema] = [p["schema"] for p in operations[call]["parameters"] if p["name"] == name]
        return next(option for option in schema.get("anyOf", [schema]) if option.get("type") == "string")

    assert query("GET /v1/events", "type")["enum"] == list(EVENT_TYPES)
    assert sorted(query("GET /v1/cameras/{camera}/counts", "class")["enum"]) == sorted(COUNTED_CLASSES)
    schemas = spec["components"]["schemas"]
    for model, field in (("ProductCreate", "price_cents"), ("ProductChange", "price_cents"),
                         ("PickRequest", "quantity"), ("RefundRequest", "amount_cents"),
                         ("SettingsRequest", "kyc_retention_days"), ("SessionRequest", "retention_days")):
        assert "30.0 is refused" in json.dumps(schemas[model]["properties"][field]), (model, field)


def test_an_event_type_outside_its_enum_is_refused_naming_the_types(api):
    """The events' ``type`` is the layer's enum: another is the ``validation_error`` it was, naming them."""
    with api.client("acme_read") as client:
        refused = client.get("/v1/events", params={"type": "bogus"})
        fine = client.get("/v1/events", params={"type": "watchlist_hit"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error", refused.text
    assert "watchlist_hit" in refused.json()["error"]["message"], refused.text
    assert fine.status_code == 200, fine.text


def test_a_chunked_body_over_the_limit_is_refused_unrecorded_not_a_phantom_500(api):
    """A chunked upload over the limit got its 413, but the route's read of the cut-off body raised
    ClientDisconnect: a traceback in the log and a 'failed' call on the tenant's usage."""
    from sqlalchemy import func, select

    from faceatlas.service.db import UsageRecord

    def rows() -> int:
        with api.accounts.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(UsageRecord))

    before = rows()

    def chunks():
        for _ in range(40):
            yield b"x" * 100_000

    with api.client("acme_detect") as client:
        answer = client.post("/v1/detect", content=chunks(),
                             headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert answer.status_code == 413, answer.text
    assert rows() == before


def test_media_types_are_case_insensitive(api, examples):
    """``Multipart/Form-Data`` and ``Application/JSON`` were 415 (Starlette parses them; the routes
    compared case-sensitive prefixes) and ``application/jsonx`` passed as JSON."""
    import base64

    photo = (examples / "tests" / "test_images" / "obama.jpg").read_bytes()
    boundary = "b0undary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"o.jpg\"\r\n"
                 f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    body = json.dumps({"image": base64.b64encode(photo).decode()})
    with api.client("acme_detect") as client:
        upper = client.post("/v1/detect", content=multipart,
                            headers={"content-type": f"Multipart/Form-Data; boundary={boundary}"})
        as_json = client.post("/v1/detect", content=body, headers={"content-type": "Application/JSON; charset=utf-8"})
        odd = client.post("/v1/detect", content=body, headers={"content-type": "application/jsonx"})
    assert upper.status_code == 200 and len(upper.json()["faces"]) == 1
    assert as_json.status_code == 200 and len(as_json.json()["faces"]) == 1
    assert odd.status_code == 415 and odd.json()["error"]["code"] == "unsupported_media_type"


def test_a_wrong_method_names_the_allowed_ones_and_a_missing_key_how_to_authenticate(api):
    """A 405 came without its Allow header (the error handler dropped the exception's headers), and
    a 401 without WWW-Authenticate (RFC 9110 asks both)."""
    with api.client("acme_admin") as client:
        wrong = client.put("/v1/collections")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    with api.client() as anonymous:
        refused = anonymous.get("/v1/usage")
    assert (refused.status_code, refused.headers.get("www-authenticate")) == (401, "Bearer")
    with api.client("fa_0123_not_a_key") as wrong_key:
        assert wrong_key.get("/v1/usage").headers.get("www-authenticate") == "Bearer"


def test_usage_days_are_iso_dates_not_unix_times(api):
    """?to=0 was 1970-01-01 and ?from=86400&to=86400.0 1970-01-02 (pydantic reads a number as a Unix
    time): 200 with an empty bill instead of a refusal."""
    with api.client("acme_admin") as client:
        for params in ({"to": "0"}, {"from": "86400", "to": "86400.0"}, {"from": "1e9"},
                       {"to": "2026-12-05T00:00:00"}, {"from": "20261205"}, {"to": "2026-02-30"}):
            refused = client.get("/v1/usage", params=params)
            assert refused.status_code == 422, (params, refused.text)
            assert refused.json()["error"]["code"] == "validation_error"
        assert client.get("/v1/usage", params={"from": "2026-12-01", "to": "2026-12-05"}).status_code == 200


def test_the_openapi_document_says_how_a_call_gives_its_key(api):
    """The document declared no securitySchemes: a generated client sent no key. Every /v1 operation
    takes one, as Authorization: Bearer or X-API-Key (both accepted)."""
    spec = api.app.openapi()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == (
        "apiKey", "header", "X-API-Key")
    operations = [(path, operation) for path, methods in spec["paths"].items() for operation in methods.values()]
    assert operations and all(path.startswith("/v1/") for path, _ in operations)
    assert all(operation["security"] == [{"bearer": []}, {"apiKey": []}] for _, operation in operations)
    assert not any(p["in"] == "header" and p["name"].lower() in ("authorization", "x-api-key")
                   for _, operation in operations for p in operation.get("parameters", []))
    with api.client() as anonymous:
        by_header = anonymous.get("/v1/usage", headers={"X-API-Key": api.keys["acme_admin"]})
    assert by_header.status_code == 200, by_header.text


def test_the_api_s_contract_is_read_before_the_first_call(new_database, fast_analyzer, tmp_path) -> None:
    """The OpenAPI document each call's query is checked against was built on the first metered call
    of every process (0.5-1.2 s more for that call, after /readyz said ready)."""
    from fastapi.testclient import TestClient

    from faceatlas.service import create_app
    from faceatlas.settings import ServiceSettings

    with new_database("sqlite", tmp_path) as database_url:
        settings = ServiceSettings(database_url=database_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf",
                                   workers=1)
        app = create_app(settings, analyzer=fast_analyzer)
        with TestClient(app) as http:
            assert http.get("/readyz").status_code == 200
            contracts = getattr(app.state, "route_contracts", None)
            assert contracts and ("GET", "/v1/collections/{collection}/subjects") in contracts
