"""A console form sent twice does its work once: a double click on Enrol enrolled every photo
twice (two identical faces, two enrol calls billed) while the page showed one outcome. A form's
one-time token makes the second sending answer the first's outcome, as an API call retried with
its Idempotency-Key. Also: a console form refused for a field is billed as the API's 422, and says
the field by its label, not the API's ``body.name: Field required``."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from faceatlas.apps.retail import Camera, RetailStore, StoreConfig
from faceatlas.gallery import Gallery
from tests.console.test_store_members import _client

EXAMPLES = "data/face_recognition_examples/tests/test_images"


@pytest.fixture(scope="module")
def obama(shared: Path) -> Path:
    return shared / EXAMPLES / "obama.jpg"


def _faces(console, collection: str, subject: str) -> int:
    with Gallery.open(console.database_url, tenant="svc:acme", index_dir=console.index_dir) as gallery:
        return len(gallery.list_faces(collection, subject=subject, limit=100).items)


def _enrol_calls(console) -> int:
    return sum(row["calls"] for row in console.accounts.usage_report("acme") if row["operation"] == "enrol")


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_a_double_click_on_enrol_enrols_once(log_in, console, obama) -> None:
    page = log_in("acme_write")
    page.goto("/console/galleries")
    page.get_by_label("Name").fill("twice")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url("**/console/galleries/twice")
    billed = _enrol_calls(console)
    page.get_by_label("Subject id").fill("obama")
    page.locator("#photos").set_input_files(str(obama))
    page.get_by_role("button", name="Enrol", exact=True).dblclick()
    expect(page.locator("#enrol-result .outcomes")).to_contain_text("obama.jpg: enrolled 1 face")
    expect(page.get_by_role("button", name="Enrol", exact=True)).to_be_enabled()
    page.wait_for_timeout(1500)  # a second request, had one gone, is answered by now
    assert _faces(console, "twice", "obama") == 1
    assert _enrol_calls(console) == billed + 1

    # the same form enrols the next subject: each answer gives the form its next token
    page.get_by_label("Subject id").fill("again")
    page.locator("#photos").set_input_files(str(obama))
    page.get_by_role("button", name="Enrol", exact=True).click()
    expect(page.locator("#enrol-result h3")).to_have_text("Enrolment of again")
    expect(page.locator("#enrol-result .outcomes")).to_contain_text("obama.jpg: enrolled 1 face")
    assert _faces(console, "twice", "again") == 1
    page.context.close()


def test_an_enrol_form_sent_twice_with_its_token_enrols_once(console, obama) -> None:
    client, csrf = _client(console, "acme_write")
    assert client.post("/console/galleries", data={"name": "resent", "csrf": csrf}).status_code == 303
    token = re.search(r'name="once" id="enrol-once"[^>]* value="([^"]+)"', client.get("/console/galleries/resent").text)
    assert token is not None
    billed = _enrol_calls(console)
    form = {"csrf": csrf, "subject": "obama", "once": token.group(1)}
    answers = [client.post("/console/galleries/resent/enrol", data=form,
                           files={"photos": ("obama.jpg", obama.read_bytes(), "image/jpeg")}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert "obama.jpg: enrolled 1 face" in _text(answers[0].text) and "sent before" not in answers[0].text
    assert "obama.jpg: enrolled 1 face" in _text(answers[1].text) and "sent before" in answers[1].text
    assert _faces(console, "resent", "obama") == 1
    assert _enrol_calls(console) == billed + 1
    client.close()


def test_a_member_enrol_form_sent_twice_enrols_one_member(console, shared: Path, fast_analyzer, obama) -> None:
    config = StoreConfig(id="once-shop", tenant="acme", cameras=[Camera(id="door", role="door")])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    client, csrf = _client(console, "acme_write")
    members_page = client.get("/console/store/once-shop/members").text
    token = re.search(r'name="once" id="enrol-once"[^>]* value="([^"]+)"', members_page)
    assert token is not None
    form = {"csrf": csrf, "name": "Barack", "purposes": "visit_recognition", "once": token.group(1)}
    answers = [client.post("/console/store/once-shop/members", data=form,
                           files={"photos": ("obama.jpg", obama.read_bytes(), "image/jpeg")}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    members = {re.search(r"Member\s+([0-9a-f]{32})", _text(a.text)).group(1) for a in answers}
    assert len(members) == 1 and "sent before" in answers[1].text
    listed = client.get("/console/store/once-shop/members").text
    assert len(re.findall(r'data-member="[0-9a-f]{32}"', listed)) == 1

    # erased through the console, the member is off the stored outcome too (it named them and their photos)
    [member] = members
    erased = client.post(f"/console/store/once-shop/members/{member}/erase", data={"csrf": csrf, "confirm": "erase"})
    assert erased.status_code == 200, erased.text[-500:]
    after = client.post("/console/store/once-shop/members", data=form,
                        files={"photos": ("obama.jpg", obama.read_bytes(), "image/jpeg")})
    assert after.status_code == 404 and "erased since" in after.text and member not in after.text
    client.close()


def _scan_calls(console) -> int:
    return sum(row["calls"] for row in console.accounts.usage_report("acme") if row["operation"] == "albums.scan")


def test_an_album_upload_sent_twice_with_its_token_is_done_and_billed_once(console, obama) -> None:
    """The album's upload form had no one-time token: sent twice (a double click, a browser's retry),
    its photos were scanned and billed twice (skipped the second time as already in the album, but
    billed). Now the second sending answers the first's outcome and bills nothing."""
    client, csrf = _client(console, "acme_write")
    token = re.search(r'name="once"[^>]* value="([^"]+)"', client.get("/console/albums").text)
    assert token is not None
    billed = _scan_calls(console)
    form = {"csrf": csrf, "album": "twice-sent", "once": token.group(1)}
    answers = [client.post("/console/albums/photos", data=form,
                           files={"photos": ("obama.jpg", obama.read_bytes(), "image/jpeg")}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert "obama.jpg: 1 face" in _text(answers[0].text) and "sent before" not in answers[0].text
    assert "obama.jpg: 1 face" in _text(answers[1].text) and "This form was sent before" in _text(answers[1].text)
    assert _scan_calls(console) == billed + 1
    client.close()


def test_a_field_the_console_refuses_is_billed_as_the_apis_422_and_named_by_its_label(console) -> None:
    client, csrf = _client(console, "acme_write")
    api = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_write']}"})
    before = console.accounts.calls_this_month("acme")
    assert api.post("/v1/collections", json={"name": "bad name"}).status_code == 422
    assert console.accounts.calls_this_month("acme") == before + 1  # the API bills its 422
    for name in ("..", "x" * 201, ""):
        refused = client.post("/console/galleries", data={"name": name, "csrf": csrf})
        assert refused.status_code == 422, refused.text[-300:]
    assert console.accounts.calls_this_month("acme") == before + 4  # the console's, as the API's

    empty = _text(client.post("/console/galleries", data={"name": "", "csrf": csrf}).text)
    assert "Name: this field is required" in empty and "body." not in empty and "Field required" not in empty
    face = _text(client.get("/console/galleries/staff/faces/abc").text)
    assert "face id: must be a whole number" in face and "path." not in face
    assert "Name: at most 200 characters" in _text(client.post("/console/galleries",
                                                                data={"name": "x" * 201, "csrf": csrf}).text)
    # the API keeps its own words
    assert "body.name: Field required" in api.post("/v1/collections", json={}).json()["error"]["message"]
    api.close()
    client.close()
