"""Deleting a tenant erases every face it owns, wherever an app keeps one: its gallery, its
verification sessions' kept frames, its albums, its stores' members, its events' snapshots
(not only its own gallery collections); the bill, the audit record of the deletion and the store's money
stay."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

pytest.importorskip("mediapipe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kyc.media import moved_still, render_card

from faceatlas.apps.albums import erase_owner
from faceatlas.apps.albums.db import AlbumRecord, FaceRow, Photo
from faceatlas.apps.kyc.db import KycFingerprint, KycReference, KycSession
from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from faceatlas.apps.retail.db import Charge, Consent, Member, StoreRecord
from faceatlas.cli.main import app as cli
from faceatlas.engine import Embedding
from faceatlas.errors import NotFound
from faceatlas.gallery.models import Collection, FaceRecord, Tenant
from faceatlas.service.db import AuditRecord, UsageRecord
from faceatlas.service.tenants import delete_tenant
from faceatlas.video import EventRow
from faceatlas.video.events import Event

TENANT = "erase-me"
MIRANDA = "examples/lin-manuel-miranda.png"


def _spaces(session: Session) -> list[tuple[str, str, bytes, bytes | None]]:
    """(gallery tenant, collection, vector, crop) of every face stored under a gallery space of TENANT."""
    return [(space, name, vector, crop) for space, name, vector, crop in session.execute(
        select(Tenant.name, Collection.name, FaceRecord.embedding, FaceRecord.crop)
        .join(Collection, Collection.id == FaceRecord.collection_id).join(Tenant, Tenant.id == Collection.tenant_id)
        .where(Tenant.name.in_([f"svc:{TENANT}", f"app:retail:shop-{TENANT}"]) |
               Tenant.name.like(f"app:albums:svc:{TENANT}:%")))]


def _on_disk(index_dir: Path, vectors: list[bytes]) -> list[str]:
    """Which ``vectors`` (float32 bytes, or as float16) any file under ``index_dir`` holds."""
    found = []
    for path in (p for p in index_dir.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        for n, raw in enumerate(vectors):
            half = np.frombuffer(raw, np.float32).astype(np.float16).tobytes()
            if raw in blob or half in blob:
                found.append(f"vector {n} in {path.name}")
    return found


def test_deleting_a_tenant_erases_every_face_it_owns(api, examples: Path, fast_analyzer, tmp_path: Path) -> None:
    photo_path = examples / MIRANDA
    # a copy of its own (a corner's pixels changed): another test's tenant that enrolled this photo
    # keeps the very same vector bytes in its own index file, which this tenant's deletion must keep
    own = cv2.imread(str(photo_path))
    own[:6, :6] = 255 - own[:6, :6]
    photo = cv2.imencode(".png", own)[1].tobytes()
    api.accounts.create_tenant(TENANT)
    admin = api.accounts.create_key(TENANT, ["admin"], rate_per_second=500, burst=500).token
    store_config = StoreConfig(id=f"shop-{TENANT}", tenant=TENANT, cameras=[Camera(id="door", role="door")])
    RetailStore.open(store_config, fast_analyzer, api.database_url, index_dir=tmp_path / "store-idx").close()
    snapshot = tmp_path / "snaps" / "cam_0000001_1_identified.jpg"
    snapshot.parent.mkdir()
    snapshot.write_bytes(cv2.imencode(".jpg", cv2.imread(str(photo_path)))[1].tobytes())
    event = Event("identified", "cam", 1, 0.1, 1, "face", {"snapshot": str(snapshot)})
    with Session(api.accounts.engine) as session, session.begin():
        session.add(EventRow.of(event, TENANT))

    still = cv2.imread(str(photo_path))
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moved_still(still, seconds=0.6, fps=10, size=(320, 240))]
    kyc_files = [("document", ("id.jpg", render_card(photo_path, "Lin_Manuel_Miranda", 11), "image/jpeg"))] + [
        ("frame", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    with api.client(admin) as http:
        assert http.patch("/v1/settings", json={"kyc_retention_days": 7}).status_code == 200
        session_id = http.post("/v1/kyc/sessions").json()["id"]
        decided = http.post(f"/v1/kyc/sessions/{session_id}/submit", files=kyc_files, data={"fps": "10"})
        assert decided.status_code == 200, decided.text
        assert http.post("/v1/collections", json={"name": "staff", "keep_crops": True}).status_code == 201
        assert http.post("/v1/collections/staff/subjects", json={"id": "lin"}).status_code == 201
        enrolled = http.post("/v1/collections/staff/subjects/lin/faces", files={"image": photo})
        assert enrolled.status_code in (200, 201), enrolled.text
        scanned = http.post("/v1/albums/trip/photos", params={"keep_crops": True}, files={"image": photo})
        assert scanned.status_code == 200 and scanned.json()["faces"] + scanned.json()["unsorted"] == 1, scanned.text
        member = http.post(f"/v1/retail/stores/{store_config.id}/members", files={"image": photo},
                           data={"name": "Lin", "purposes": "face_pay", "payment_ref": "card-erase-me"})
        assert member.status_code == 201, member.text
        assert http.get("/v1/events").json()["events"][0]["id"] == event.id
    gallery = api.app.state.gallery
    gallery.flush()
    index_dir = api.app.state.settings.index_dir
    engine = api.accounts.engine
    with Session(engine) as session:
        kept = _spaces(session)
        assert {space.split(":")[1] for space, _, _, _ in kept} == {TENANT, "retail", "albums"}  # 3 spaces hold faces
        assert all(crop for space, _, _, crop in kept if not space.startswith("app:retail"))
        assert session.scalar(select(func.count()).select_from(KycReference)
                              .where(KycReference.session_id == session_id)) == 2
        usage = session.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.tenant_id == TENANT))
    vectors = [vector for _, _, vector, _ in kept]
    for space, collection, vector, _ in kept:  # each space's index loaded and written to the index folder
        owned = gallery.for_tenant(space)
        owned.search(collection, Embedding(np.frombuffer(vector, np.float32),
                                           owned.get_collection(collection).recognizer_id))
    gallery.flush()
    assert _on_disk(index_dir, vectors)  # the check sees vectors that are there

    assert erase_owner(engine, gallery, f"svc:{TENANT}") == 1  # a deletion cut short after the albums ...
    assert api.accounts.get_tenant(TENANT).id == TENANT  # ... leaves the account: running it again finishes
    deleted = delete_tenant(api.accounts, gallery, TENANT)
    assert (deleted.collections, deleted.albums) == (1, 0)
    with Session(engine) as session:
        assert _spaces(session) == []
        assert session.scalar(select(func.count()).select_from(KycSession)
                              .where(KycSession.tenant == f"svc:{TENANT}")) == 0
        assert session.scalar(select(func.count()).select_from(KycReference)
                              .where(KycReference.session_id == session_id)) == 0
        assert session.scalar(select(func.count()).select_from(KycFingerprint)
                              .where(KycFingerprint.tenant == f"svc:{TENANT}")) == 0
        assert session.scalar(select(func.count()).select_from(AlbumRecord)
                              .where(AlbumRecord.owner == f"svc:{TENANT}")) == 0
        assert session.scalar(select(func.count()).select_from(Photo)) == session.scalar(
            select(func.count()).select_from(Photo).join(AlbumRecord, AlbumRecord.id == Photo.album_id))
        assert session.scalar(select(func.count()).select_from(FaceRow).where(
            FaceRow.album_id.not_in(select(AlbumRecord.id)))) == 0
        assert session.get(StoreRecord, store_config.id) is None
        assert session.scalar(select(func.count()).select_from(Member).where(Member.store_id == store_config.id)) == 0
        assert session.scalar(select(func.count()).select_from(Consent).where(
            Consent.member_id.not_in(select(Member.id)))) == 0
        assert session.scalar(select(func.count()).select_from(EventRow).where(EventRow.tenant == TENANT)) == 0
        assert session.scalar(select(func.count()).select_from(Charge).where(
            Charge.store_id == store_config.id, Charge.member_id.is_not(None))) == 0
        # the bill and the audit record of the deletion stay
        assert session.scalar(select(func.count()).select_from(UsageRecord)
                              .where(UsageRecord.tenant_id == TENANT)) == usage > 0
        assert session.execute(select(AuditRecord.action, AuditRecord.target).where(
            AuditRecord.tenant_id == TENANT)).all() == [("tenant.delete", TENANT)]  # the rest named its subjects
    gallery.flush()
    assert not _on_disk(index_dir, vectors)
    assert not snapshot.exists()
    with api.client(admin) as http:
        assert http.get("/v1/collections").status_code == 401
    with pytest.raises(NotFound):  # a second run: the tenant is gone
        delete_tenant(api.accounts, gallery, TENANT)
    again = CliRunner().invoke(cli, ["admin", "tenant", "delete", TENANT, "--yes", "--db", api.database_url])
    assert again.exit_code == 2 and TENANT in again.output


def test_deleting_a_tenant_leaves_no_gallery_space_that_names_it(api, shared: Path, examples: Path, fast_analyzer,
                                                                tmp_path: Path, monkeypatch) -> None:
    """`admin tenant delete acme --yes` left the gallery row `app:albums:svc:acme:grandma` (an album's
    name can be a person's), made the row `svc:acme` anew, and said "deleted with 0 collections" of a
    tenant whose albums it deleted too; a store's space row `app:retail:<store>` stayed as well."""
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(api.app.state.settings.index_dir))  # the app's, for the CLI
    photo = sorted((shared / "data" / "lfw" / "images" / "Aaron_Eckhart").glob("*.jpg"))[0].read_bytes()
    for door in ("function", "cli"):
        tenant = f"rows-{uuid.uuid4().hex[:8]}"
        api.accounts.create_tenant(tenant)
        key = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
        with api.client(key) as http:
            for album in ("grandma", "trip"):
                assert http.post(f"/v1/albums/{album}/photos", files={"image": photo}).status_code == 200
        config = StoreConfig(id=f"{tenant}-shop", tenant=tenant, cameras=[Camera(id="door", role="door")])
        with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
            pass
        api.api_client(key).retail_enrol_member(config.id, examples / "examples" / "lin-manuel-miranda.png",
                                                name="Lin", purposes=["visit_recognition"])
        with Session(api.accounts.engine) as session:  # the store's space is there to be deleted
            assert session.scalar(select(Tenant.name).where(Tenant.name == f"app:retail:{config.id}")) is not None
        if door == "cli":
            deleted = CliRunner().invoke(cli, ["admin", "tenant", "delete", tenant, "--yes", "--db", api.database_url])
            assert deleted.exit_code == 0, deleted.output
        else:
            report = delete_tenant(api.accounts, api.app.state.gallery, tenant)
        with Session(api.accounts.engine) as session:
            assert session.scalars(select(Tenant.name).where(Tenant.name.contains(tenant, autoescape=True))).all() == []
        if door == "cli":
            # the store and its member, which it deleted too, were not said
            said = " ".join(deleted.output.split())
            assert f"tenant {tenant} deleted with 0 collections, 2 albums, 0 verification sessions, 1 store and " \
                   "0 stored video events" in said, said
        else:
            assert (report.collections, report.albums, report.kyc_sessions, report.stores) == (0, 2, 0, 1)
