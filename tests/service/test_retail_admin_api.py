"""The store owner's catalogue and members' consent over REST: products created, repriced and
deleted (carts keep the price of each pick), and a consent withdrawal that stops face pay at once
(the member's vectors leave the gallery, the account and history stay, the audit trail records it
and erasure blanks the member id in it)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from faceatlas.apps.retail import Camera, Entry, Product, RetailStore, StoreConfig
from faceatlas.apps.retail.db import Charge, Consent, Visit
from faceatlas.apps.retail.store import COLLECTION
from faceatlas.client import FaceAtlasApiError
from faceatlas.db import utcnow


def _config(name: str) -> StoreConfig:
    return StoreConfig(id=name, tenant="acme", cameras=[Camera(id="door", role="door"),
                                                        Camera(id="till", role="checkout")],
                       products=[Product(sku="mug", name="Mug", price_cents=1250)])


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_products_created_repriced_and_deleted_while_carts_keep_their_prices(api, fast_analyzer, tmp_path) -> None:
    config = _config(f"cat-{tmp_path.name[-6:]}")
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
        visit = store.entry(Entry("door", utcnow() - timedelta(minutes=2), track="t1"))
    base = f"/v1/retail/stores/{config.id}"
    with api.client("acme_admin") as acme:
        created = acme.post(f"{base}/products", json={"sku": "tea", "name": "Tea", "price_cents": 300})
        assert created.status_code == 201 and created.json() == {"sku": "tea", "name": "Tea", "price_cents": 300}
        assert _error(acme.post(f"{base}/products", json={"sku": "tea", "name": "T", "price_cents": 1})) == \
            (409, "already_exists")
        for price in (-1, 1.5, "12", 10_000_001, None):
            refused = acme.post(f"{base}/products", json={"sku": "jam", "name": "Jam", "price_cents": price})
            assert _error(refused) == (422, "validation_error"), (price, refused.text)
            assert _error(acme.patch(f"{base}/products/tea", json={"price_cents": price})) == \
                (422, "validation_error")
        assert _error(acme.patch(f"{base}/products/tea", json={})) == (422, "validation_error")
        assert _error(acme.patch(f"{base}/products/nope", json={"price_cents": 5})) == (404, "not_found")
        assert _error(acme.delete(f"{base}/products/nope")) == (404, "not_found")
        assert [p["sku"] for p in acme.get(f"{base}/products").json()["products"]] == ["mug", "tea"]

        cart = f"{base}/visits/{visit}/cart"
        acme.post(cart, json={"sku": "mug", "quantity": 2})
        repriced = acme.patch(f"{base}/products/mug", json={"price_cents": 1000, "name": "Big mug"})
        assert repriced.json() == {"sku": "mug", "name": "Big mug", "price_cents": 1000}
        held = acme.post(cart, json={"sku": "mug", "quantity": 1}).json()
        assert [(line["quantity"], line["unit_price_cents"]) for line in held["lines"]] == [(2, 1250), (1, 1000)]
        assert held["total_cents"] == 3500
        put_back = acme.post(cart, json={"sku": "mug", "quantity": -1}).json()  # the dearest goes back first
        assert (put_back["items"], put_back["total_cents"]) == (2, 2250)
        assert _error(acme.post(cart, json={"sku": "tea", "quantity": -1})) == (409, "conflict")

        removed = acme.delete(f"{base}/products/mug")
        assert removed.json() == {"sku": "mug", "deleted": True, "open_carts": 1}
        assert acme.get(cart).json()["total_cents"] == 2250  # the shopper still pays what they picked
        assert _error(acme.post(cart, json={"sku": "mug", "quantity": 1})) == (404, "not_found")
        assert acme.post(cart, json={"sku": "mug", "quantity": -1}).json()["total_cents"] == 1000
        assert _error(acme.patch(f"{base}/products/mug", json={"price_cents": 5})) == (404, "not_found")
        assert [p["sku"] for p in acme.get(f"{base}/products").json()["products"]] == ["tea"]
        audit = [e for e in acme.get("/v1/audit").json()["events"] if e["target"] == f"{config.id}/products"]
        assert [e["action"] for e in audit][:2] == ["retail.product.delete", "retail.product.update"]

    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx") as store:
        assert [p.sku for p in store.products.list()] == ["tea"]  # the config does not bring back a deleted SKU
    client = api.api_client("acme_admin")
    assert client.retail_create_product(config.id, "mug", "Mug", 900).price_cents == 900  # a deleted SKU returns
    assert client.retail_update_product(config.id, "tea", price_cents=350).price_cents == 350
    assert [(p.sku, p.price_cents) for p in client.retail_products(config.id)] == [("mug", 900), ("tea", 350)]
    assert client.retail_delete_product(config.id, "tea").open_carts == 0
    try:
        client.retail_create_product(config.id, "mug", "Mug", 900)
        raise AssertionError("a duplicate SKU was accepted")
    except FaceAtlasApiError as exc:
        assert (exc.status, exc.code) == (409, "already_exists")
    with api.client("globex_admin") as globex:
        assert globex.post(f"/v1/retail/stores/{config.id}/products",
                           json={"sku": "x", "name": "X", "price_cents": 1}).status_code == 404
        assert globex.delete(f"/v1/retail/stores/{config.id}/products/mug").status_code == 404


def test_withdrawn_consent_stops_face_pay_at_once_and_keeps_the_account(api, examples: Path, fast_analyzer,
                                                                        tmp_path) -> None:
    config = _config(f"consent-{tmp_path.name[-6:]}")
    lin = examples / "examples" / "lin-manuel-miranda.png"
    base = f"/v1/retail/stores/{config.id}"
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "idx"):
        pass
    client = api.api_client("acme_admin")
    member = client.retail_enrol_member(config.id, lin, name="Lin", purposes=["face_pay", "analytics"],
                                        payment_ref="card-7").id

    def shop(visit_key: str) -> int:
        with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / visit_key) as store:
            visit = store.entry(Entry("door", utcnow() - timedelta(minutes=2), image=lin, track=visit_key))
        with api.client("acme_admin") as acme:
            assert acme.post(f"{base}/visits/{visit}/cart", json={"sku": "mug"}).json()["total_cents"] == 1250
        return visit

    with api.client("acme_admin") as acme:
        shop("v1")
        first = acme.post(f"{base}/pay", params={"camera": "till", "event": "p1"}, files={"image": lin.read_bytes()})
        assert (first.json()["status"], first.json()["member_id"]) == ("charged", member)
        second_visit = shop("v2")  # recognised as the member at the door, with a mug in the cart

        withdrawn = acme.patch(f"{base}/members/{member}", json={"consent": False})
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json() == {"member": member, "withdrawn": ["face_pay", "analytics"], "purposes": [],
                                    "faces_deleted": 1, "payment_method_removed": True,
                                    "demographics_removed": False}
        paid = acme.post(f"{base}/pay", params={"camera": "till", "event": "p2"}, files={"image": lin.read_bytes()})
        assert paid.status_code == 200 and paid.json()["member_id"] is None, paid.text
        assert paid.json()["status"] != "charged" and paid.json()["amount_cents"] == 0
        assert paid.json()["charge_id"] is None
        [listed] = acme.get(f"{base}/members").json()["members"]  # the account stays, without faces or consent
        assert (listed["id"], listed["faces"], listed["purposes"], listed["has_payment_method"]) == \
            (member, 0, [], False)
        again = acme.patch(f"{base}/members/{member}", json={"consent": False}).json()
        assert (again["withdrawn"], again["faces_deleted"]) == ([], 0)
        assert _error(acme.patch(f"{base}/members/{member}", json={"consent": True})) == (422, "validation_error")
        assert _error(acme.patch(f"{base}/members/{member}", json={"consent": False, "purposes": ["x"]})) == \
            (422, "validation_error")
        assert _error(acme.patch(f"{base}/members/nobody", json={"consent": False})) == (404, "not_found")
        trail = [e for e in acme.get("/v1/audit").json()["events"]
                 if e["action"] == "retail.consent.withdraw" and e["target"] == f"{config.id}/{member}"]
        assert [e["details"]["faces_deleted"] for e in trail] == [1]  # the withdrawal asked again is not audited

    served = api.app.state.gallery.for_tenant(f"app:retail:{config.id}")  # the serving process's own index
    probe = fast_analyzer.analyze_one(lin)
    assert served.search(COLLECTION, probe, k=5, threshold=-1.0) == []
    with RetailStore.open(config, fast_analyzer, api.database_url, index_dir=tmp_path / "fresh") as store:
        assert store.gallery.get_collection(COLLECTION).faces == 0
        assert store.gallery.search(COLLECTION, probe, k=5, threshold=-1.0) == []
        with store.sessions() as session:  # history stays linked; the consent record says when it was withdrawn
            assert session.scalar(select(func.count()).select_from(Charge).where(Charge.member_id == member)) == 1
            assert session.get(Visit, second_visit).member_id == member
            consents = list(session.scalars(select(Consent).where(Consent.member_id == member)))
            assert [c.withdrawn_at is not None for c in consents] == [True]
        assert store.members.payment_ref(member) is None

    regranted = client.retail_grant_consent(config.id, member, lin, purposes=["face_pay"], granted_by="Lin",
                                            payment_ref="card-8")
    assert (regranted.faces, regranted.purposes, regranted.has_payment_method) == (1, ("face_pay",), True)
    with api.client("acme_admin") as acme:
        paid = acme.post(f"{base}/pay", params={"camera": "till", "event": "p3"}, files={"image": lin.read_bytes()})
        assert (paid.json()["status"], paid.json()["visit_id"], paid.json()["amount_cents"]) == \
            ("charged", second_visit, 1250)
        charge = first.json()["charge_id"]
    other = StoreConfig(id=f"other-{tmp_path.name[-6:]}", tenant="globex", cameras=[Camera(id="till", role="checkout")])
    with RetailStore.open(other, fast_analyzer, api.database_url, index_dir=tmp_path / "other"):
        pass
    with api.client("globex_admin") as globex:  # another tenant's store reaches neither acme's charges nor exits
        assert _error(globex.post(f"/v1/retail/stores/{other.id}/charges/{charge}/refund", json={})) == \
            (404, "not_found")
        replay = globex.post(f"/v1/retail/stores/{other.id}/pay", params={"camera": "till", "event": "p1"},
                             files={"image": lin.read_bytes()}).json()
        assert (replay["status"], replay["repeated"], replay["member_id"]) == ("no_visit", False, None)
    with api.client("acme_admin") as acme:
        assert acme.post(f"{base}/charges/{charge}/refund", json={"key": "r1"}).status_code == 200
        assert acme.delete(f"{base}/members/{member}").json()["faces_deleted"] == 1
        events = acme.get("/v1/audit").json()["events"]
        assert member not in str(events)  # erasure blanks the member id in the audit trail
        assert {"retail.consent.withdraw", "retail.consent.grant", "retail.erase"} <= \
            {e["action"] for e in events if e["target"] == f"{config.id}/[erased]"}
