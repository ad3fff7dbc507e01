"""Every time in an API answer is UTC with its offset."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta


def _utc(text: str) -> datetime:
    """``text`` as a time, which must carry the offset +00:00 (a naive time is read as local by clients)."""
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0) and text.endswith("+00:00"), text
    return parsed


def test_collection_subject_key_and_audit_times_are_utc_with_an_offset(api) -> None:
    """A collection's and a subject's created_at/updated_at, a key's created_at and an audit record's
    at were naive ("2026-12-07T18:52:40.791166"), while video events ended in +00:00: JavaScript's
    ``new Date`` read them as local time, hours off for a console east or west of UTC. They are UTC
    with the offset +00:00, and the instant they name is now."""
    tenant = f"own-{uuid.uuid4().hex[:12]}"
    api.accounts.create_tenant(tenant)
    key = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    before = datetime.now(UTC) - timedelta(seconds=5)
    with api.client(key) as client:
        created = client.post("/v1/collections", json={"name": "staff"})
        assert created.status_code == 201, created.text
        subject = client.post("/v1/collections/staff/subjects", json={"id": "ann", "name": "Ann"})
        assert subject.status_code == 201, subject.text
        answers = [created.json()["created_at"], client.get("/v1/collections/staff").json()["created_at"],
                   *(client.get("/v1/collections").json()["collections"][0][f] for f in ("created_at",)),
                   subject.json()["created_at"], subject.json()["updated_at"],
                   *(client.get("/v1/collections/staff/subjects").json()["subjects"][0][f]
                     for f in ("created_at", "updated_at")),
                   *(k["created_at"] for k in client.get("/v1/keys").json()["keys"]),
                   *(e["at"] for e in client.get("/v1/audit").json()["events"])]
    assert len(answers) >= 9
    for text in answers:
        assert before <= _utc(text) <= datetime.now(UTC) + timedelta(seconds=5), text


def test_album_photo_added_at_is_utc_with_an_offset(api, shared) -> None:
    """An album photo's added_at (the server's clock) was naive; its taken_at (EXIF, the camera's
    local time) stays as the photo says it."""
    photo = shared / "data" / "lfw" / "images" / "Tony_Blair"
    album = f"times_{uuid.uuid4().hex[:6]}"
    before = datetime.now(UTC) - timedelta(seconds=5)
    with api.client("acme_write") as http:
        for path in sorted(photo.glob("*.jpg"))[:2]:
            assert http.post(f"/v1/albums/{album}/photos", files={"image": path.read_bytes()}).status_code == 200
        person = http.get(f"/v1/albums/{album}/people").json()["people"][0]["id"]
        photos = http.get(f"/v1/albums/{album}/people/{person}/timeline").json()["photos"]
    assert photos
    for shown in photos:
        assert before <= _utc(shown["added_at"]) <= datetime.now(UTC) + timedelta(seconds=5), shown
