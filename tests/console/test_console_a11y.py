"""The console used by keyboard, at 320 CSS px and by a screen reader: Enter in a face's checkbox
rejected another face unasked; the album person page scrolled sideways at 320 px; focus fell to the
page after each htmx form was sent; the no-script answer pages had no title of their own and no h1;
a button's name did not hold its visible text. A real server and Chromium where a browser's behaviour
is what is tested, the app in process otherwise."""

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
from tests.console.test_console_wording import _console, _upload

EXAMPLES = "data/face_recognition_examples/tests/test_images"
TRAIN = "data/face_recognition_examples/examples/knn_examples/train"


def _session(console, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=console.url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/login", data={"key": console.keys[key], "csrf": token}).status_code == 303
    return client, re.search(r'name="csrf" value="([^"]+)"', client.get("/console/galleries").text).group(1)


@pytest.fixture(scope="module")
def person(console, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Album ``a11y``: one person of two photos of Obama (crops kept), and an unsorted face (Biden's,
    too small to be sorted); the person's id."""
    biden = cv2.imread(str(shared / TRAIN / "biden/biden.jpg"))
    small = cv2.resize(biden, None, fx=0.08, fy=0.08, interpolation=cv2.INTER_AREA)  # a face of ~22 px
    tiny = np.full((240, 240, 3), 200, np.uint8)
    tiny[:small.shape[0], :small.shape[1]] = small
    far = tmp_path_factory.mktemp("a11y") / "far.jpg"
    cv2.imwrite(str(far), tiny)
    client, csrf = _session(console, "acme_write")
    photos = [shared / TRAIN / "obama/obama.jpg", shared / TRAIN / "obama/obama2.jpg", far]
    added = client.post("/console/albums/photos", data={"album": "a11y", "keep_crops": "true", "csrf": csrf},
                        files=[("photos", _upload(p)) for p in photos])
    assert added.status_code == 200, added.text[-500:]
    [(obama, faces)] = [(m.group(1), int(m.group(2)))
                        for m in re.finditer(r'data-person="(p\d+)".*?· (\d+) face', added.text, re.S)]
    assert faces == 2
    assert 'data-face="' in client.get("/console/albums/a11y/people/unsorted").text
    client.close()
    return obama


def _faces(page) -> list[str]:
    return page.locator("#faces li").evaluate_all("items => items.map(i => i.dataset.face)")


def test_enter_in_a_face_checkbox_rejects_no_face(log_in, person) -> None:
    """Enter in a face's checkbox sent the faces form with its first submit button: the first face's
    "Not this person", so another face left the person with nothing asked and nothing said."""
    page = log_in("acme_write")
    page.goto(f"/console/albums/a11y/people/{person}")
    faces = _faces(page)
    assert len(faces) == 2, faces
    page.locator(f"#face-{faces[1]}").focus()
    with page.expect_navigation():  # the form is sent (the bulk action, with nothing ticked: refused)
        page.keyboard.press("Enter")
    page.goto(f"/console/albums/a11y/people/{person}")
    assert _faces(page) == faces  # both faces are still this person's: none was rejected
    # "Not this person" still works, on its own face, without a script as with one
    page.get_by_role("button", name=f"face {faces[1]} is not this person", exact=True).click()
    page.wait_for_url(f"**/console/albums/a11y/people/{person}")
    assert _faces(page) == faces[:1]
    page.context.close()


@pytest.mark.parametrize("who", ["person", "unsorted"])
def test_the_album_person_page_reflows_at_320_px(log_in, person, who) -> None:
    """At 320 CSS px (WCAG 1.4.10) a face's row (checkbox, crop, text and three buttons that do not
    wrap) made the page 525 px wide, and its text wrapped one character a line."""
    page = log_in("acme_write", viewport={"width": 320, "height": 640})
    page.goto(f"/console/albums/a11y/people/{person if who == 'person' else 'unsorted'}")
    assert page.locator("#faces li").count() >= 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    # the face's text keeps a readable width (it shrank to a character a line)
    assert page.locator("#faces li > div").first.evaluate("d => d.getBoundingClientRect().width") >= 120
    page.context.close()


@pytest.mark.parametrize(("path", "photo", "button", "answer"), [
    ("/console/try", "#try-photo", "Run", "#try-answer"),
    ("/console/galleries/a11y-search", "#search-photo", "Search", "#search-answer")])
def test_focus_stays_on_the_form_once_its_answer_is_in(log_in, console, shared, path, photo, button,
                                                       answer) -> None:
    """A form sent by htmx disabled its buttons while in flight, the focused one too: focus fell to
    the page and stayed there once the answer came (WCAG 2.4.3), nothing on the page showing it."""
    made = httpx.post(f"{console.url}/v1/collections", json={"name": "a11y-search"},
                      headers={"Authorization": f"Bearer {console.keys['acme_admin']}"})
    assert made.status_code in (201, 409), made.text
    page = log_in("acme_admin")
    page.goto(path)
    page.locator(photo).set_input_files(str(shared / EXAMPLES / "obama.jpg"))
    sent = page.get_by_role("button", name=button, exact=True)
    sent.focus()
    page.keyboard.press("Enter")
    page.locator(answer).wait_for()
    expect(sent).to_be_enabled()
    page.wait_for_timeout(100)  # the request's last events have run
    assert page.evaluate("document.activeElement.tagName") != "BODY"
    assert sent.evaluate("b => b === document.activeElement")  # back on the button that sent it
    page.context.close()


def _titled(answer) -> tuple[str, list[str]]:
    """A page's title and its h1s, as text."""
    title = html.unescape(re.search(r"<title>(.*?)</title>", answer.text, re.S).group(1))
    return title, [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", h))).strip()
                   for h in re.findall(r"<h1\b[^>]*>(.*?)</h1>", answer.text, re.S)]


def _store_and_gallery(console, fast_analyzer, tmp_path, store: str) -> None:
    """A store ``store`` of acme selling a mug, and acme's gallery collection ``staff`` (made by the console)."""
    config = StoreConfig(id=store, tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="mug", name="Mug", price_cents=1250)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=tmp_path / "indexes").close()
    assert console.client.post("/console/galleries", data={"name": "staff", "csrf": console.csrf}).status_code == 200


def test_pages_answered_without_a_script_have_their_own_title_and_one_h1(fast_analyzer, examples,
                                                                        tmp_path) -> None:
    """The answers of the plain forms (search, enrol, a member's enrolment, a key rotated) and the
    error page were titled "FaceAtlas console", and had no h1 but the error page's "Refused"; every
    page that asks first was titled and headed "Confirm", its question in a paragraph (WCAG 2.4.2,
    2.4.6, 1.3.1)."""
    obama = examples / "tests/test_images/obama.jpg"
    with _console(fast_analyzer, tmp_path) as console:
        client, csrf = console.client, console.csrf
        _store_and_gallery(console, fast_analyzer, tmp_path, "titles")
        pages = {
            "searched": client.post("/console/galleries/staff/search", data={"csrf": csrf},
                                    files=[("photo", _upload(obama))]),
            "enrolled": client.post("/console/galleries/staff/enrol", data={"subject": "kit", "csrf": csrf},
                                    files=[("photos", _upload(obama))]),
            "member": client.post("/console/store/titles/members",
                                  data={"name": "Barack", "purposes": "visit_recognition", "csrf": csrf},
                                  files=[("photos", _upload(obama))]),
            "error": client.get("/console/no-such-page"),
            "confirm": client.post("/console/galleries/staff/subjects/kit/delete", data={"csrf": csrf}),
        }
        once = re.search(r'name="once" value="([^"]+)"', client.get("/console/usage").text).group(1)
        prefix = console.key.split("_")[1]
        pages["rotated"] = client.post(f"/console/keys/{prefix}/rotate",
                                       data={"csrf": csrf, "once": once, "confirmed": "yes"})
    said = {name: _titled(answer) for name, answer in pages.items()}
    assert said == {
        "searched": ("Unknown · Search in staff · FaceAtlas console", ["Search in staff"]),
        "enrolled": ("Enrolment of kit · staff · FaceAtlas console", ["Enrolment in staff"]),
        "member": ("Enrolled Barack · Members of titles · FaceAtlas console", ["Enrolment of a member of titles"]),
        "error": ("Refused: not found · FaceAtlas console", ["Refused: not found"]),
        "confirm": ("Delete kit? · FaceAtlas console", ["Delete kit?"]),
        "rotated": ("Key rotated · FaceAtlas console", ["Key rotated"]),
    }, said
    # the outcome's heading is an h2 under the page's h1 (an h3 in the fragment swapped into a page)
    assert "<h2>Unknown</h2>" in pages["searched"].text and "<h2>Enrolment of kit</h2>" in pages["enrolled"].text
    assert "<h2>Enrolled Barack</h2>" in pages["member"].text


def test_a_confirm_pages_heading_is_its_question_a_quoted_name_kept_whole() -> None:
    from faceatlas.service.console.albums import erase_person_question
    from faceatlas.service.console.base import asked

    assert asked(erase_person_question("“Who? Me” (p3)", False)) == "Erase “Who? Me” (p3)?"
    assert asked("Rotate key ab12? It is revoked at once.") == "Rotate key ab12?"
    assert asked("no question") == "no question"


def test_a_buttons_name_holds_its_visible_text_and_no_header_cell_is_empty(fast_analyzer, tmp_path) -> None:
    """"Take off sale" was named "take mug off sale": a voice user saying what they see matched
    nothing (WCAG 2.5.3). The corner cell of the store's table and the products' actions column
    were header cells of no text."""
    with _console(fast_analyzer, tmp_path) as console:
        client = console.client
        _store_and_gallery(console, fast_analyzer, tmp_path, "names")
        pages = {path: client.get(path).text for path in (
            "/console/store/names", "/console/store/names/products", "/console/store/names/members",
            "/console/galleries/staff", "/console/usage")}
    assert 'aria-label="Take off sale: mug">Take off sale</button>' in pages["/console/store/names/products"]
    for path, page in pages.items():
        for label, text in re.findall(r'<button\b[^>]*\baria-label="([^"]*)"[^>]*>(.*?)</button>', page, re.S):
            shown = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", text))).strip()
            assert shown.lower() in html.unescape(label).lower(), (path, label, shown)
        assert not re.search(r"<th\b[^>]*>\s*</th>", page), path
