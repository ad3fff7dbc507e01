"""A `watch` run for a service tenant: ``tenant: "svc:<id>"`` in cams.yaml recognises against the
collections the tenant made through the API (its gallery space ``svc:<id>``) and stores its events
under the tenant's id, where `GET /v1/events` lists them."""

from __future__ import annotations

import uuid
from pathlib import Path

from faceatlas.video import run_watch
from faceatlas.video.config import CameraConfig, WatchConfig
from tests.clips import first_seconds

LIN = "lin-manuel-miranda"


def test_a_watch_for_a_service_tenant_finds_its_collection_and_its_events_are_its_own(
        api, examples: Path, tmp_path: Path) -> None:
    """``tenant: acme`` with the collection acme made through the API: not_found (the collection is
    in the space ``svc:acme``); ``tenant: "svc:acme"``: found, but the events were stored under
    ``svc:acme`` and acme's GET /v1/events listed none of them."""
    tenant = f"watch-{uuid.uuid4().hex[:10]}"
    api.accounts.create_tenant(tenant)
    admin = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    with api.client(admin) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        assert http.post("/v1/collections/staff/subjects", json={"id": LIN, "name": "Lin"}).status_code == 201
        photo = (examples / "examples" / "lin-manuel-miranda.png").read_bytes()
        enrolled = http.post(f"/v1/collections/staff/subjects/{LIN}/faces", files={"image": photo})
        assert enrolled.status_code in (200, 201), enrolled.text
    hamilton = examples / "examples" / "short_hamilton_clip.mp4"
    clip = first_seconds(hamilton, tmp_path / "stage.mp4", 6.0)  # Miranda on stage from about 3 s
    camera = CameraConfig(source=str(clip), name="stage", stride=3, persons=False, snapshots=tmp_path / "snaps")
    config = WatchConfig([camera], collection="staff", gallery=api.database_url, tenant=f"svc:{tenant}",
                         database=api.database_url)
    report = run_watch(config)
    assert report.events.get("identified"), report.events
    with api.client(admin) as http:
        listed = http.get("/v1/events", params={"limit": 500}).json()["events"]
        identified = [e for e in listed if e["type"] == "identified"]
        assert [e["data"]["subject"] for e in identified] == [LIN], [e["type"] for e in listed]
        assert sum(report.events.values()) == len(listed)  # every event of the run, under the tenant's id
        shot = http.get(identified[0]["data"]["snapshot"])
        assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
    with api.client("acme_admin") as other:  # another tenant sees none of them
        assert not [e for e in other.get("/v1/events", params={"limit": 500}).json()["events"]
                    if e["camera"] == "stage"]
