"""The store's members and products in the console, in a real headless Chromium against a real
server: a member enrolled from a real photo under the consent ticked (the photo without a face
reported as such), listed, a purpose withdrawn, erased after the confirm step and gone, with no
face, vector or row of theirs left in the store's database and gallery; the catalogue edited;
another tenant and a read-only key kept out."""

from __future__ import annotations

import html
import re
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig
from faceatlas.apps.retail.store import COLLECTION
from tests.retail.test_members import _all_rows_text

STORE = "console-shop"
EXAMPLES = "data/face_recognition_examples/tests/test_images"


@pytest.fixture(scope="module")
def shop(console, fast_analyzer) -> StoreConfig:
    """Acme's store, as `retail run` leaves it: its config saved, the catalogue seeded."""
    config = StoreConfig(id=STORE, tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="mug", name="Mug", price_cents=1250)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    return config


def _client(console, key: str) -> tuple[httpx.Client, str]:
    """A logged-in console session over plain HTTP, and its CSRF token."""
    client = httpx.Client(base_url=console.url, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/login", data={"key": console.keys[key], "csrf": token}).status_code == 303
    return client, re.search(r'name="csrf" value="([^"]+)"', client.get("/console/galleries").text).group(1)


def test_member_enrolled_listed_withdrawn_and_erased(log_in, console, shop, shared: Path, fast_analyzer,
                                                     tmp_path: Path) -> None:
    obama = shared / EXAMPLES / "obama.jpg"
    wall = tmp_path / "wall.png"  # a real PNG with no face in it
    cv2.imwrite(str(wall), np.full((240, 320, 3), (180, 200, 210), np.uint8))
    page = log_in("acme_admin")
    page.goto(f"/console/store/{STORE}")
    page.get_by_role("link", name="Members", exact=True).click()
    page.wait_for_url(f"**/console/store/{STORE}/members")
    assert page.locator("#no-members").is_visible()

    page.get_by_label("Member's name").fill("Barack Obama")
    page.get_by_label(re.compile("^visit recognition")).check()
    page.get_by_label(re.compile("^analytics")).check()
    page.locator("#photos").set_input_files([str(obama), str(wall)])
    page.get_by_role("button", name="Enrol member", exact=True).click()
    outcome = page.locator("#enrol-outcome")
    outcome.wait_for()
    text = outcome.inner_text()
    assert "Enrolled Barack Obama" in text and "obama.jpg: face enrolled" in text
    assert "wall.png: no_face" in text  # the photo without a face, reported as the galleries page does
    member = re.search(r"Member ([0-9a-f]{32}): 1 face enrolled", text).group(1)

    page.get_by_role("link", name="Refresh the member list").click()
    row = page.locator(f"#members tr[data-member='{member}']")
    assert row.inner_text().split("\t")[:5] == [
        "Barack Obama", member, "visit recognition, analytics", "1", "none"]

    # change consent: analytics withdrawn, the face stays (visit recognition is still consented)
    row.get_by_role("link", name="Barack Obama").click()
    page.get_by_label("analytics", exact=True).check()
    page.get_by_role("button", name="Withdraw", exact=True).click()
    assert "Withdrawn: analytics" in page.locator("#withdrawal").inner_text()
    assert "0 faces deleted" in page.locator("#withdrawal").inner_text()
    page.get_by_role("link", name="Back to the member").click()
    assert "visit recognition" in page.locator("#member").inner_text()
    assert "analytics" not in page.locator("#member").inner_text()
    client, csrf = _client(console, "acme_admin")  # the same form sent again (a back button): nothing to withdraw
    again = client.post(f"/console/store/{STORE}/members/{member}/withdraw",
                        data={"csrf": csrf, "purposes": "analytics"})
    assert again.status_code == 200, again.text[-300:]
    client.close()

    # erasure: the promise stated on a confirm step, then done
    page.locator("#erase-link").click()
    page.wait_for_url(f"**/members/{member}/erase")
    promise = page.locator("#erasure-promise").inner_text()
    assert "every face, vector and stored crop" in promise and "cannot be undone" in promise
    page.get_by_role("button", name="Erase Barack Obama for good").click()
    assert "1 face and their vectors deleted" in page.locator("#erasure").inner_text()
    page.get_by_role("link", name="Back to the members").click()
    expect(page.locator("#no-members")).to_be_visible()  # is_visible does not wait for the next page
    assert "Barack Obama" not in page.locator("main").inner_text()
    page.context.close()

    # at the layer: no member, face, vector or row of theirs left (the retail erasure test's checks)
    with RetailStore.open(shop, fast_analyzer, console.database_url, index_dir=console.index_dir) as store:
        assert store.members.list() == []
        assert store.gallery.get_collection(COLLECTION).faces == 0
        assert store.gallery.list_subjects(COLLECTION).items == []
        face = store.analyzer.analyze_one(obama)
        assert store.gallery.search(COLLECTION, face, k=5, threshold=-1.0) == []
        rows = _all_rows_text(store)
    assert "Barack Obama" not in rows
    with httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_admin']}"}) as api:
        trail = [(e["action"], e["target"]) for e in api.get("/v1/audit").json()["events"]]
        assert api.get(f"/v1/retail/stores/{STORE}/members").json()["members"] == []
    assert ("retail.consent.withdraw", f"{STORE}/[erased]") in trail and ("retail.erase", f"{STORE}/[erased]") in trail
    assert trail.count(("retail.consent.withdraw", f"{STORE}/[erased]")) == 1  # a withdrawal of nothing wrote one
    assert not any(member in target for _, target in trail)
    assert member not in rows  # the id is gone from every table, the audit trail included


def test_products_added_and_repriced(log_in, console, shop) -> None:
    page = log_in("acme_write")
    page.goto(f"/console/store/{STORE}/products")
    expect(page.locator("#products tr[data-sku='mug']")).to_be_visible()
    page.get_by_label("SKU").fill("tea")
    page.get_by_label("Name", exact=True).fill("Green tea")
    page.get_by_label("Price (EUR)").fill("3.40")
    # each form posts and is redirected back to this same URL: wait_for_url would match the page
    # still shown; the navigation itself is waited for, then the page it loaded is read
    with page.expect_navigation(url=f"**/console/store/{STORE}/products"):
        page.get_by_role("button", name="Add product").click()
    expect(page.get_by_label("price of tea")).to_have_value("3.40")
    page.get_by_label("price of tea").fill("3.90")
    with page.expect_navigation(url=f"**/console/store/{STORE}/products"):
        page.get_by_role("button", name="save tea").click()
    expect(page.get_by_label("price of tea")).to_have_value("3.90")  # as the server now has it
    page.context.close()
    with httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_admin']}"}) as api:
        products = {p["sku"]: p for p in api.get(f"/v1/retail/stores/{STORE}/products").json()["products"]}
    assert (products["tea"]["name"], products["tea"]["price_cents"]) == ("Green tea", 390)
    client, csrf = _client(console, "acme_write")  # a price the form's pattern refuses, the server refuses too
    refused = client.post(f"/console/store/{STORE}/products/mug", data={"csrf": csrf, "name": "Mug", "price": "1.005"})
    assert refused.status_code == 422 and "at most two decimals" in refused.text
    client.close()


def test_members_are_the_owner_tenants_only(console, shop, shared: Path) -> None:
    other, csrf = _client(console, "globex_admin")
    assert other.get(f"/console/store/{STORE}/members").status_code == 404
    assert other.get(f"/console/store/{STORE}/products").status_code == 404
    photo = (shared / EXAMPLES / "obama.jpg").read_bytes()
    enrol = other.post(f"/console/store/{STORE}/members", data={"csrf": csrf, "name": "X",
                                                                "purposes": "visit_recognition"},
                       files={"photos": ("obama.jpg", photo, "image/jpeg")})
    assert enrol.status_code == 404
    other.close()
    reader, csrf = _client(console, "acme_read")
    page = reader.get(f"/console/store/{STORE}/members").text
    assert "Enrol a member" not in page
    assert reader.post(f"/console/store/{STORE}/members", data={"csrf": csrf, "name": "X"},
                       files={"photos": ("obama.jpg", photo, "image/jpeg")}).status_code == 403
    assert reader.get(f"/console/store/{STORE}/members/abc/erase").status_code == 403
    reader.close()
    owner, csrf = _client(console, "acme_write")
    unconfirmed = owner.post(f"/console/store/{STORE}/members/abc/erase", data={"csrf": csrf})
    assert unconfirmed.status_code == 422
    no_consent = owner.post(f"/console/store/{STORE}/members", data={"csrf": csrf, "name": "X",
                                                                      "purposes": "marketing"},
                            files={"photos": ("obama.jpg", photo, "image/jpeg")})
    assert no_consent.status_code == 403 and "consent_required" in no_consent.text
    # every GET address of these pages, each path value at its boundaries, is a page and never a 500
    # (the values of tests/security/test_no_500.py)
    from fastapi.routing import APIRoute

    from faceatlas.service.console import members

    values = ("99999999999999999999999", "-1", "0", "x" * 300, "%C3%BC%F2%A6", "a%20b")
    for route in members.router.routes:
        assert isinstance(route, APIRoute)
        if "GET" not in route.methods:
            continue
        for value in values:
            for path in (route.path.replace("{store_id}", value), re.sub(r"\{(member_id|sku)\}", value, route.path)
                         .replace("{store_id}", STORE)):
                answer = owner.get(f"/console{path}")
                assert answer.status_code < 500 and answer.headers["content-type"].startswith("text/html"), path
    owner.close()


def test_a_store_id_with_url_characters_is_reached_by_its_links(console, fast_analyzer) -> None:
    """A store id holding '#' or '?' (the config allows them) was linked unencoded: its page
    answered "store 'main st ' not found"; a '/' is refused by the config (no page could name it)."""
    store = "main st #1?x%"
    config = StoreConfig(id=store, tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="tea", name="Tea", price_cents=300)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    client, _ = _client(console, "acme_admin")
    stores = client.get("/console/store").text
    link = re.search(r'<a href="(/console/store/[^"]+)">main st #1\?x%</a>', stores).group(1)
    page = client.get(link)
    assert page.status_code == 200 and "not found" not in page.text, page.text[:300]
    for sub in re.findall(r'href="(/console/store/main[^"]*)"', page.text):  # members, products
        assert client.get(sub).status_code == 200, sub
    client.close()
    with pytest.raises(ValueError, match="pattern"):
        StoreConfig(id="main/st", tenant="acme", cameras=[Camera(id="door", role="door")])


def test_a_new_consent_with_another_person_s_photo_is_refused_and_said_so(console, shared: Path,
                                                                         fast_analyzer) -> None:
    """The grant form took Biden's photo on Obama's member (face pay could then charge Biden's cart
    to him): now each photo's outcome says which is not the member's (``face_mismatch``, 409), and
    that nothing was recorded; no grant is audited. His own second photo is granted."""
    config = StoreConfig(id="match-shop", tenant="acme", cameras=[Camera(id="door", role="door")])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    photo = {name: (f"{name}.jpg", (shared / EXAMPLES / f"{name}.jpg").read_bytes(), "image/jpeg")
             for name in ("obama", "obama2", "biden")}
    client, csrf = _client(console, "acme_admin")
    enrolled = client.post(f"/console/store/{config.id}/members", files=[("photos", photo["obama"])],
                           data={"csrf": csrf, "name": "Barack", "purposes": "visit_recognition"})
    found = re.search(r"Member <code>([0-9a-f]{32})</code>: 1 face enrolled", enrolled.text)
    assert found, enrolled.text[-800:]
    member = found.group(1)
    grant = f"/console/store/{config.id}/members/{member}/consent"
    form = {"csrf": csrf, "purposes": "face_pay", "granted_by": "Barack", "payment_ref": "card-joe"}
    refused = client.post(grant, files=[("photos", photo["biden"])], data=form)
    assert refused.status_code == 409, refused.text[-500:]
    text = html.unescape(re.sub(r"<[^>]+>", "", refused.text))
    assert "biden.jpg: face_mismatch — not the member's face" in text and "nothing was recorded" in text
    mixed = client.post(grant, files=[("photos", photo["obama2"]), ("photos", photo["biden"])], data=form,
                        headers={"HX-Request": "true"})
    text = html.unescape(re.sub(r"<[^>]+>", "", mixed.text))
    assert mixed.status_code == 409 and "obama2.jpg: not_recorded" in text and "biden.jpg: face_mismatch" in text
    with httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_admin']}"}) as api:
        listed = api.get(f"/v1/retail/stores/{config.id}/members").json()["members"]
        assert [(m["faces"], m["purposes"], m["has_payment_method"]) for m in listed] == \
            [(1, ["visit_recognition"], False)]
        granted = client.post(grant, files=[("photos", photo["obama2"])], data={**form, "payment_ref": "card-b"})
        assert granted.status_code == 200 and "obama2.jpg: face enrolled" in granted.text
        trail = [e["details"] for e in api.get("/v1/audit").json()["events"]
                 if e["action"] == "retail.consent.grant" and e["target"] == f"{config.id}/{member}"]
    assert trail == [{"purposes": ["visit_recognition", "face_pay"]}]
    client.close()
