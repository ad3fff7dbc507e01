"""The store's REST operations, for its owner tenant only: members by upload, products, carts,
face pay with liveness (once per key), refunds, alerts, occupancy, erasure."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from pathlib import Path

from PIL import Image

from faceatlas.apps.retail import Camera, Entry, Product, RetailStore, StoreConfig
from faceatlas.apps.retail.db import StoreRecord
from faceatlas.db import utcnow


def test_store_operations_for_the_owner_only(api, shared: Path, examples: Path, fast_analyzer, tmp_path) -> None:
    config = StoreConfig(id=f"ops-{tmp_path.name[-6:]}", tenant="acme",
                         cameras=[Camera(id="door", role="door"),
                                  Camera(id="till", role="checkout", source="rtsp://till:secret@10.0.0.7/s")],
                         products=[Product(sku="mug", name="Mug", price_cents=1250)],
                         webhook={"url": "https://example.org/hook", "secret": "secret"})
    lin = examples / "examples" / "lin-manuel-miranda.png"
    spoof = shared / "data" / "antispoof_samples" / "image_F2.jpg"
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as opened, \
            opened.sessions() as session:  # the config the API reads keeps no credentials
        saved = session.get(StoreRecord, config.id).config
    assert "secret" not in json.dumps(saved) and saved["cameras"][1]["role"] == "checkout"
    base = f"/v1/retail/stores/{config.id}"
    with api.client("acme_admin") as acme:
        enrolled = acme.post(f"{base}/members", files={"image": lin.read_bytes()},
                             data={"name": "Lin", "purposes": "face_pay,analytics", "payment_ref": "card-9"})
        assert enrolled.status_code == 201, enrolled.text
        member = enrolled.json()["id"]
        members = acme.get(f"{base}/members").json()["members"]
        assert [m["id"] for m in members] == [member]
        # times are UTC with their offset, as every answer's (they were naive: read as local time by clients)
        assert members[0]["enrolled_at"].endswith("+00:00"), members[0]
        assert acme.get(f"{base}/products").json()["products"][0]["price_cents"] == 1250
        with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
            visit = store.entry(Entry("door", utcnow() - timedelta(minutes=3), image=lin, track="d:1"))
        occupancy = acme.get(f"{base}/occupancy").json()
        assert occupancy["inside"] == 1 and occupancy["at"].endswith("+00:00"), occupancy
        cart = acme.post(f"{base}/visits/{visit}/cart", json={"sku": "mug", "quantity": 2}).json()
        assert (cart["items"], cart["total_cents"]) == (2, 2500)
        refused = acme.post(f"{base}/pay", params={"camera": "till", "event": "k0"},
                            files={"image": spoof.read_bytes()})
        assert refused.json()["status"] in ("refused", "no_visit") and refused.json()["amount_cents"] == 0
        paid = acme.post(f"{base}/pay", params={"camera": "till", "event": "k1"}, files={"image": lin.read_bytes()})
        again = acme.post(f"{base}/pay", params={"camera": "till", "event": "k1"}, files={"image": lin.read_bytes()})
        charged = paid.json()
        assert (charged["status"], charged["amount_cents"], charged["member_id"]) == ("charged", 2500, member)
        assert again.json()["repeated"] and again.json()["charge_id"] == paid.json()["charge_id"]
        assert acme.get(f"{base}/occupancy").json()["inside"] == 0
        for loose in (True, "100", 1.0):  # money as JSON's integer only: true refunded 1 cent, "100" 100
            refused_amount = acme.post(f"{base}/charges/{charged['charge_id']}/refund", json={"amount_cents": loose})
            assert refused_amount.status_code == 422, (loose, refused_amount.text)
        refund = acme.post(f"{base}/charges/{charged['charge_id']}/refund", json={"amount_cents": 1250, "key": "r1"})
        assert refund.status_code == 200
        reused = acme.post(f"{base}/charges/{charged['charge_id']}/refund", json={"amount_cents": 500, "key": "r1"})
        assert reused.status_code == 422 and "another refund" in reused.text  # it answered the 1250's refund
        alerts = acme.get(f"{base}/alerts").json()["alerts"]
        assert alerts  # the spoof at the till
        for alert in alerts:
            resolved = acme.post(f"{base}/alerts/{alert['id']}/resolve").json()
            assert resolved["resolved"] and alert["at"].endswith("+00:00"), alert
            assert resolved["resolved_at"].endswith("+00:00"), resolved
        assert acme.get(f"{base}/alerts").json()["alerts"] == []
        huge = 2**64  # an id no BIGINT holds was a 500 (OverflowError in the database driver)
        for method, path, body in (("GET", f"visits/{huge}/cart", None),
                                   ("POST", f"visits/{huge}/cart", {"sku": "mug"}),
                                   ("POST", f"charges/{huge}/refund", {"key": "r2"}),
                                   ("POST", f"alerts/{huge}/resolve", None)):
            refused_id = acme.request(method, f"{base}/{path}", json=body)
            assert (refused_id.status_code, refused_id.json()["error"]["code"]) == (422, "validation_error"), path
        erased = api.api_client("acme_admin").retail_erase_member(config.id, member)  # a typed answer
        assert (erased.member, erased.faces_deleted, erased.charges_anonymised) == (member, 1, 1)
        assert set(erased.raw) == {"member", "faces_deleted", "consents_deleted", "visits_anonymised",
                                   "charges_anonymised"} and erased.consents_deleted >= 1
        assert acme.get(f"{base}/members").json()["members"] == []
    with api.client("globex_admin") as globex:
        assert globex.get(f"{base}/members").status_code == 404
        assert globex.get(f"{base}/occupancy").status_code == 404


def test_expired_anonymous_visitors_are_deleted_without_any_entry(db_url, fast_analyzer, tmp_path: Path) -> None:
    """docs/retail.md: a non-member's face vector is kept for `anonymous_retention_hours`. Only a
    store's next entry (or `purge_anonymous()`) deleted the expired ones: a store with no more
    visitors kept them for ever. The service's retention sweep deletes them at its start and every
    FACEATLAS_RETENTION_SWEEP_SECONDS."""
    from fastapi.testclient import TestClient
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from faceatlas.apps.retail import migrate
    from faceatlas.apps.retail.db import AnonymousVisitor
    from faceatlas.db import create_database_engine
    from faceatlas.service import create_app
    from faceatlas.settings import ServiceSettings

    engine = create_database_engine(db_url)
    migrate(engine)
    now = utcnow()
    with Session(engine) as session, session.begin():
        for visitor, expires in (("gone", now - timedelta(hours=1)), ("kept", now + timedelta(hours=1))):
            session.add(AnonymousVisitor(id=visitor, store_id="shop", embedding=b"\0" * 512,
                                         first_seen=now - timedelta(hours=25), expires_at=expires))

    def visitors() -> list[str]:
        with Session(engine) as session:
            return sorted(session.scalars(select(AnonymousVisitor.id)))

    settings = ServiceSettings(database_url=db_url, index_dir=tmp_path / "indexes", pack="scrfd-mbf", workers=1)
    try:
        with TestClient(create_app(settings, analyzer=fast_analyzer)):
            assert visitors() == ["kept"]  # deleted at the start, no call made
    finally:
        engine.dispose()


def test_a_store_of_another_pack_says_which_pack_to_serve(api, examples: Path, fast_analyzer, tmp_path) -> None:
    """README serves scrfd-mbf and retail.md ran `faceatlas retail run store.yaml` on the default pack:
    adding a member answered "collection 'members' holds embeddings of pack 'yunet-frfeature' ... Use a
    collection of that pack or reembed this one", of a collection the user never made. It names the
    store's pack, the server's, and how to serve the store's."""
    from faceatlas.engine import FaceAnalyzer

    config = StoreConfig(id=f"pack-{tmp_path.name[-6:]}", tenant="acme", cameras=[Camera(id="door", role="door")])
    default_pack = FaceAnalyzer("yunet-frfeature", announce_license=False)
    with RetailStore.open(config, default_pack, api.database_url, index_dir=tmp_path / "idx"):
        pass  # as `retail run` on the default pack made it
    lin = examples / "examples" / "lin-manuel-miranda.png"
    with api.client("acme_admin") as acme:
        refused = acme.post(f"/v1/retail/stores/{config.id}/members", files={"image": lin.read_bytes()},
                            data={"name": "Lin", "purposes": "visit_recognition"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_mismatch", refused.text
    told = refused.json()["error"]["message"]
    assert f"store '{config.id}' was set up with pack 'yunet-frfeature'" in told, told
    assert "this server runs pack 'scrfd-mbf'" in told and "`faceatlas serve --pack yunet-frfeature`" in told
    assert "FACEATLAS_PACK=yunet-frfeature" in told and "collection 'members'" not in told


def test_a_member_photo_of_several_people_is_refused_and_the_answer_says_the_faces(api, examples: Path,
                                                                                  fast_analyzer, tmp_path) -> None:
    """POST .../members and .../consent enrolled the largest face of a group photo under the member's
    consent, saying nothing. A photo of several people is refused (422 too_many_faces: a consent is
    one person's); an enrolment or a grant answers faces_in_image, which the Python client reads."""
    config = StoreConfig(id=f"group-{tmp_path.name[-6:]}", tenant="acme", cameras=[Camera(id="door", role="door")])
    RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx").close()
    group, lin = examples / "examples" / "two_people.jpg", examples / "examples" / "lin-manuel-miranda.png"
    base = f"/v1/retail/stores/{config.id}"
    with api.client("acme_admin") as acme:
        refused = acme.post(f"{base}/members", files={"image": group.read_bytes()},
                            data={"name": "Group", "purposes": "visit_recognition"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "too_many_faces"), refused.text
        assert acme.get(f"{base}/members").json()["members"] == []
        client = api.api_client("acme_admin")
        member = client.retail_enrol_member(config.id, lin, name="Lin", purposes=["visit_recognition"])
        assert (member.faces, member.faces_in_image, member.raw["faces_in_image"]) == (1, 1, 1)
        granted = client.retail_grant_consent(config.id, member.id, lin, purposes=["visit_recognition"],
                                              granted_by="Lin")
        assert (granted.faces, granted.faces_in_image) == (2, 1)
        again = acme.post(f"{base}/members/{member.id}/consent", files={"image": group.read_bytes()},
                          data={"purposes": "visit_recognition", "granted_by": "Lin"})
        assert (again.status_code, again.json()["error"]["code"]) == (422, "too_many_faces")
        listed = acme.get(f"{base}/members").json()["members"]
        assert [(m["id"], m["faces"]) for m in listed] == [(member.id, 2)] and "faces_in_image" not in listed[0]


def test_face_pay_with_no_face_in_the_photo_bills_no_face(api, fast_analyzer, tmp_path) -> None:
    """POST .../pay with a photo holding no face (1x1 black) answered 200 no_visit, and the bill
    counted a face for it (retail.pay faces + 1). The answer stands; the faces billed are those found."""
    tenant = f"pay-{uuid.uuid4().hex[:8]}"
    api.accounts.create_tenant(tenant)
    key = api.accounts.create_key(tenant, ["admin"], rate_per_second=500, burst=500).token
    config = StoreConfig(id=f"pay-{tmp_path.name[-6:]}", tenant=tenant,
                         cameras=[Camera(id="door", role="door"), Camera(id="till", role="checkout")])
    RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx").close()
    black = io.BytesIO()
    Image.new("RGB", (1, 1)).save(black, "PNG")
    with api.client(key) as http:
        paid = http.post(f"/v1/retail/stores/{config.id}/pay", params={"camera": "till", "event": "e9"},
                         files={"image": ("black.png", black.getvalue(), "image/png")})
        assert paid.status_code == 200, paid.text
        assert (paid.json()["status"], paid.json()["member_id"]) == ("no_visit", None)
        [row] = [r for r in http.get("/v1/usage").json()["rows"] if r["operation"] == "retail.pay"]
    assert (row["calls"], row["errors"], row["faces"]) == (1, 0, 0)
