"""Every route a tenant uses has its method in the Python client (faceatlas.client), end to end
against the app on real data: API keys and the audit trail, subjects renamed and merged,
collections exported and imported, video events, snapshots and camera counts, a store's carts,
face pay, refunds, alerts, occupancy and analytics."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from faceatlas.apps.retail import Camera, Entry, Product, RetailStore, StoreConfig
from faceatlas.client import (
    ApiKey,
    CameraCounts,
    FaceAtlasApiError,
    FaceAtlasClientError,
    IssuedKey,
    RetailCart,
)
from faceatlas.db import utcnow
from tests.service.refusals import refused


def test_keys_are_created_listed_rotated_and_revoked_and_audited(api) -> None:
    tenant, admin = api.own_tenant()
    issued = admin.create_key(["read"], name="reporting", rate_per_second=5, burst=7)
    assert isinstance(issued, IssuedKey) and issued.scopes == ("read",)
    assert issued.key.startswith(f"fa_{issued.prefix}_") and issued.key not in repr(issued)
    listed = {k.prefix: k for k in admin.list_keys()}
    assert len(listed) == 2  # the admin's own key and this one
    assert listed[issued.prefix] == ApiKey(issued.prefix, "reporting", ("read",), 5.0, 7,
                                           listed[issued.prefix].created_at, False)
    datetime.fromisoformat(listed[issued.prefix].created_at)

    reader = api.api_client(issued.key)
    assert reader.list_collections() == []
    refused(reader.list_keys, 403, "forbidden")  # keys are the admin's

    rotated = admin.rotate_key(issued.prefix)
    assert rotated.prefix != issued.prefix and rotated.scopes == ("read",)
    refused(reader.list_collections, 401, "unauthorized")  # the old key stopped at once
    assert api.api_client(rotated.key).list_collections() == []
    listed = {k.prefix: k for k in admin.list_keys()}
    assert listed[issued.prefix].revoked and not listed[rotated.prefix].revoked
    assert (listed[rotated.prefix].name, listed[rotated.prefix].rate_per_second, listed[rotated.prefix].burst) == \
        ("reporting", 5.0, 7)  # the same limits
    refused(lambda: admin.rotate_key(issued.prefix), 409, "key_revoked")  # a key rotates once

    tag = uuid.uuid4().hex[:8]
    assert admin.revoke_key(rotated.prefix, idempotency_key=f"revoke-{tag}") is None
    assert admin.revoke_key(rotated.prefix, idempotency_key=f"revoke-{tag}") is None  # replayed
    admin.revoke_key(rotated.prefix)  # a revoked key's revocation changes nothing
    refused(api.api_client(rotated.key).list_collections, 401, "unauthorized")
    refused(lambda: admin.revoke_key("0123456789ab"), 404, "not_found")
    refused(lambda: admin.create_key(["root"]), 422, "validation_error")

    trail = admin.audit_log()
    ours = {f"key:{issued.prefix}", f"key:{rotated.prefix}"}
    assert [(e.action, e.target) for e in trail if e.target in ours] == [
        ("key.revoke", f"key:{rotated.prefix}"),  # newest first; revoked once, audited once
        ("key.rotate", f"key:{rotated.prefix}"),
        ("key.revoke", f"key:{issued.prefix}"),
        ("key.create", f"key:{issued.prefix}"),
    ]
    created = next(e for e in trail if e.action == "key.create" and e.target == f"key:{issued.prefix}")
    assert created.details == {"scopes": ["read"]} and created.key_id is not None
    assert [e.action for e in admin.audit_log(limit=1)] == ["key.revoke"]
    assert trail[-1].action == "tenant.create" and trail[-1].target == tenant  # the oldest


def test_subjects_renamed_merged_and_a_collection_exported_and_imported(api, examples: Path, tmp_path: Path) -> None:
    _, client = api.own_tenant()
    photos = examples / "tests" / "test_images"
    client.create_collection("staff")
    client.add_subject("staff", "obama", name="B. Obama", metadata={"team": "a"})
    client.enrol("staff", "obama", photos / "obama.jpg")
    client.enrol("staff", "dup", photos / "obama2.jpg")  # the same man enrolled twice
    client.add_subject("staff", "biden", metadata={"team": "b"})
    client.enrol("staff", "biden", photos / "biden.jpg")

    renamed = client.update_subject("staff", "obama", name="Barack Obama", metadata={"room": 7},
                                    idempotency_key=f"rename-{tmp_path.name}")
    assert (renamed.name, renamed.metadata, renamed.faces) == ("Barack Obama", {"team": "a", "room": 7}, 1)
    assert client.update_subject("staff", "obama", metadata={"desk": 2}).name == "Barack Obama"  # name kept
    merged = client.merge_subjects("staff", "dup", into="obama")
    assert (merged.external_id, merged.faces, merged.metadata) == ("obama", 2, {"team": "a", "room": 7, "desk": 2})
    refused(lambda: client.get_subject("staff", "dup"), 404, "not_found")
    refused(lambda: client.merge_subjects("staff", "obama", into="obama"), 422, "validation_error")

    exported = client.export_collection("staff")
    assert exported[:4] == b"PAR1" and exported[-4:] == b"PAR1"
    written = client.export_collection_to("staff", tmp_path)  # a folder: <collection>.parquet in it
    assert written == tmp_path / "staff.parquet" and written.read_bytes()[:4] == b"PAR1"
    with_crops = client.export_collection_to("staff", tmp_path / "crops.parquet", crops=True)
    assert with_crops.stat().st_size > 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "crops.parquet", "staff.parquet"]
    with pytest.raises(FaceAtlasApiError) as missing:
        client.export_collection_to("nowhere", tmp_path / "nowhere.parquet")
    assert missing.value.status == 404 and not (tmp_path / "nowhere.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops.parquet", "staff.parquet"]  # no partial file

    copy = client.import_collection(written, name="staff-copy", idempotency_key=f"import-{tmp_path.name}")
    assert (copy.name, copy.subjects, copy.faces) == ("staff-copy", 2, 3)
    assert client.import_collection(written, name="staff-copy", idempotency_key=f"import-{tmp_path.name}") == copy
    assert client.get_subject("staff-copy", "obama").metadata == {"team": "a", "room": 7, "desk": 2}
    [found] = client.search("staff-copy", photos / "obama3.jpg")
    assert [m.external_id for m in found.matches][:1] == ["obama"] and found.matches[0].matched_faces >= 1
    from_bytes = client.import_collection(exported, name="staff-bytes")
    assert (from_bytes.subjects, from_bytes.faces, from_bytes.recognizer_id) == (2, 3, copy.recognizer_id)
    refused(lambda: client.import_collection(exported, name="staff"), 409, "already_exists")
    refused(lambda: client.import_collection(b"not parquet", name="junk"), 400, "bad_request")
    assert sorted(c.name for c in client.list_collections()) == ["staff", "staff-bytes", "staff-copy"]
    trail = [(e.action, e.target) for e in client.audit_log() if e.action.startswith(("subject.", "collection."))]
    assert trail[:4] == [("collection.import", "staff-bytes"), ("collection.import", "staff-copy"),
                         ("collection.export", "staff"), ("collection.export", "staff")]
    assert ("subject.merge", "staff/dup") in trail and ("subject.update", "staff/obama") in trail


def test_events_snapshots_and_camera_counts(api, examples: Path, tmp_path: Path) -> None:
    from faceatlas.video.events import Event
    from faceatlas.video.sinks import DatabaseSink

    tenant, client = api.own_tenant()
    frame = tmp_path / "door_0000010_1_watchlist_hit.jpg"
    frame.write_bytes((examples / "tests" / "test_images" / "obama.jpg").read_bytes())
    sink = DatabaseSink(api.database_url, tenant=tenant)
    sink.emit(Event("watchlist_hit", "door", 10, 0.4, 1, "face", {"subject": "vip", "snapshot": str(frame)}))
    sink.emit(Event("line_crossed", "door", 20, 0.8, 2, "person", {"direction": "in"}))
    sink.emit(Event("line_crossed", "yard", 30, 1.2, 3, "person", {"direction": "out"}))
    for minute, seen in (("10:00", 3), ("10:01", 5), ("10:02", 1)):
        sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": f"2026-12-04T{minute}",
                                                        "classes": {"car": {"seen": seen}, "person": {"seen": 1}}}))
    sink.close()

    every = client.list_events()
    assert sorted((e.camera, e.type) for e in every if e.type != "counts") == [
        ("door", "line_crossed"), ("door", "watchlist_hit"), ("yard", "line_crossed")]
    [hit] = client.list_events(type="watchlist_hit")
    assert (hit.camera, hit.frame, hit.video_time, hit.track_id, hit.kind, hit.data["subject"]) == \
        ("door", 10, 0.4, 1, "face", "vip")
    assert {e.camera for e in client.list_events(type="line_crossed", camera="yard")} == {"yard"}
    assert len(client.list_events(type="line_crossed", limit=1)) == 1
    emitted = datetime.fromisoformat(hit.wall_time)
    assert hit.id in {e.id for e in client.list_events(since=emitted - timedelta(seconds=1))}
    assert client.list_events(since=(emitted + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2)))) == []
    assert client.event_snapshot(hit.id) == frame.read_bytes()
    assert hit.data["snapshot"] == f"/v1/events/{hit.id}/snapshot"  # its address, not the server's file path
    crossing = next(e for e in every if e.camera == "door" and e.type == "line_crossed")
    refused(lambda: client.event_snapshot(crossing.id), 404, "not_found")
    refused(lambda: api.api_client("globex_admin").event_snapshot(hit.id), 404, "not_found")  # another tenant's
    refused(lambda: client.list_events(since="yesterday"), 422, "validation_error")

    counts = client.camera_counts("gate")
    assert isinstance(counts, CameraCounts) and counts.camera == "gate" and not counts.truncated
    assert [(c.minute[-5:], c.label, c.counts["seen"]) for c in counts.counts] == [
        ("10:00", "car", 3), ("10:00", "person", 1), ("10:01", "car", 5), ("10:01", "person", 1),
        ("10:02", "car", 1), ("10:02", "person", 1)]
    cars = client.camera_counts("gate", label="car", since=datetime(2026, 12, 4, 11, 1,
                                                                     tzinfo=timezone(timedelta(hours=1))))
    assert [(c.minute[-5:], c.counts["seen"]) for c in cars.counts] == [("10:01", 5), ("10:02", 1)]
    page = client.camera_counts("gate", label="car", limit=2)
    assert page.truncated and page.next_from == "2026-12-04T10:02"
    rest = client.camera_counts("gate", label="car", since=page.next_from, until="2026-12-04T10:03")
    assert [c.minute[-5:] for c in rest.counts] == ["10:02"] and rest.next_from is None
    assert client.camera_counts("nowhere").counts == ()
    assert len({hit, *every, counts, cars}) == len(every) + 2  # answers are hashable (dict fields left out)
    refused(lambda: client.camera_counts("gate", label="cars"), 422, "validation_error")


def test_carts_face_pay_refunds_alerts_occupancy_and_analytics(api, shared: Path, examples: Path, fast_analyzer,
                                                               tmp_path: Path) -> None:
    tenant, client = api.own_tenant()
    config = StoreConfig(id=f"cli-{tmp_path.name[-6:]}", tenant=tenant,
                         cameras=[Camera(id="door", role="door"), Camera(id="till", role="checkout")],
                         products=[Product(sku="mug", name="Mug", price_cents=1250)])
    lin = examples / "examples" / "lin-manuel-miranda.png"
    spoof = shared / "data" / "antispoof_samples" / "image_F2.jpg"
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    store = config.id
    client.retail_create_product(store, "tea", "Tea", 300)
    member = client.retail_enrol_member(store, lin, name="Lin", purposes=["face_pay", "visit_recognition", "analytics"],
                                        payment_ref="card-9")
    empty = client.retail_occupancy(store)
    assert (empty.store, empty.inside, empty.members_inside, empty.window_hours) == (store, 0, 0, 12.0)
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as opened:
        visit = opened.entry(Entry("door", utcnow() - timedelta(minutes=3), image=lin, track="d:1"))
    inside = client.retail_occupancy(store)
    assert (inside.inside, inside.members_inside) == (1, 1)

    assert client.retail_cart(store, visit) == RetailCart(visit, 0, 0, ())
    client.retail_add_to_cart(store, visit, "mug", 2, idempotency_key=f"pick-{tmp_path.name}")
    client.retail_add_to_cart(store, visit, "mug", 2, idempotency_key=f"pick-{tmp_path.name}")  # replayed
    client.retail_add_to_cart(store, visit, "tea")
    cart = client.retail_add_to_cart(store, visit, "tea", 2)
    assert (cart.visit_id, cart.items, cart.total_cents) == (visit, 5, 3400)
    assert sorted((line.sku, line.quantity, line.unit_price_cents) for line in cart.lines) == [
        ("mug", 2, 1250), ("tea", 3, 300)]
    cart = client.retail_add_to_cart(store, visit, "tea", -1)  # put one back
    assert (cart.items, cart.total_cents) == (4, 3100) and client.retail_cart(store, visit) == cart
    refused(lambda: client.retail_add_to_cart(store, visit, "caviar"), 404, "not_found")
    refused(lambda: client.retail_cart(store, 2**64), 422, "validation_error")

    spoofed = client.retail_pay(store, spoof, camera="till", event="e0")
    assert (spoofed.status, spoofed.amount_cents, spoofed.charge_id, spoofed.alert) == ("no_visit", 0, None, "spoof")
    paid = client.retail_pay(store, lin, camera="till", event="e1")
    assert (paid.status, paid.visit_id, paid.member_id, paid.amount_cents, paid.repeated) == \
        ("charged", visit, member.id, 3100, False)
    again = client.retail_pay(store, lin, camera="till", event="e1")
    assert again.repeated and again.charge_id == paid.charge_id and again.status == "charged"
    assert client.retail_occupancy(store).inside == 0
    assert paid.charge_id is not None

    refund = client.retail_refund(store, paid.charge_id, amount_cents=1000, reason="chipped mug", key="r1")
    assert refund.charge_id == paid.charge_id and refund.refund_id >= 1
    assert client.retail_refund(store, paid.charge_id, amount_cents=1000, reason="chipped mug",
                                key="r1") == refund  # once per key
    refused(lambda: client.retail_refund(store, paid.charge_id, amount_cents=500, key="r1"), 422,
             "validation_error")
    rest = client.retail_refund(store, paid.charge_id, key="r2")  # what is left: 2100
    assert rest.refund_id != refund.refund_id
    refused(lambda: client.retail_refund(store, paid.charge_id, amount_cents=1, key="r3"), 409,
             "conflict")  # nothing left: the charge is fully refunded

    [alert] = client.retail_alerts(store)
    assert (alert.kind, alert.camera, alert.resolved) == ("spoof", "till", False)
    resolved = client.retail_resolve_alert(store, alert.id, idempotency_key=f"resolve-{tmp_path.name}")
    assert (resolved.id, resolved.resolved, resolved.already_resolved) == (alert.id, True, False)
    again = client.retail_resolve_alert(store, alert.id)  # once: the first resolution stays, and it says so
    assert (again.already_resolved, again.resolved_at) == (True, resolved.resolved_at) and resolved.resolved_at
    assert client.retail_alerts(store) == [] and len({alert, resolved}) == 2
    assert [(a.id, a.resolved) for a in client.retail_alerts(store, open_only=False)] == [(alert.id, True)]
    refused(lambda: client.retail_resolve_alert(store, alert.id + 10_000), 404, "not_found")

    report = client.retail_analytics(store)
    assert report.store == store and report.last == utcnow().date().isoformat()
    assert (report.summary["visits"], report.summary["member_visits"], report.summary["purchases"]) == (1, 1, 1)
    assert (report.summary["revenue_cents"], report.summary["refunded_cents"]) == (0, 3100)  # net: refunded in full
    assert report.sections and all(row.metric != "summary" for row in report.sections)
    before = client.retail_analytics(store, start="2025-01-01", end=datetime(2025, 1, 31).date())
    assert (before.first, before.last, before.summary["visits"]) == ("2025-01-01", "2025-01-31", 0)
    assert len({report, before, cart, paid}) == 4  # hashable (dict fields left out)
    chart = client.retail_analytics_chart(store, "visits_per_hour")
    assert chart[:4] == b"\x89PNG"
    refused(lambda: client.retail_analytics_chart(store, "pie"), 422, "validation_error")
    refused(lambda: api.api_client("globex_admin").retail_occupancy(store), 404, "not_found")


def test_a_bytes_answer_of_another_media_type_is_not_taken(api, examples: Path) -> None:
    """An image route's answer that is JSON (a proxy's, or another server's) is not returned as
    the bytes asked for (it came back as a dict typed bytes)."""
    client = api.api_client("acme_admin")
    with pytest.raises(FaceAtlasClientError) as caught:
        client._call("GET", "/v1/usage", expect="image")
    assert caught.value.code == "unexpected_answer" and "image" in str(caught.value)
