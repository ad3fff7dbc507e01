"""The console used by keyboard, at 320 CSS px and by a screen reader: Enter in a face's checkbox
rejected another face unasked; the album person page scrolled sideways at 320 px; focus fell to the
page after each htmx form was sent; the no-script answer pages had no title of their own and no h1;
a button's name did not hold its visible text. A real server and Chromium where a browser's behaviour
is what is tested, the app in process otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

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
def person(console, shared: Path) -> str:
    """Album ``a11y``: one person of two photos of Obama (crops kept), and an unsorted face; their id."""
    client, csrf = _session(console, "acme_write")
    photos = [shared / TRAIN / "obama/obama.jpg", shared / TRAIN / "obama/obama2.jpg", shared / TRAIN / "biden/biden.jpg"]
    added = client.post("/console/albums/photos", data={"album": "a11y", "keep_crops": "true", "csrf": csrf},
                        files=[("photos", _upload(p)) for p in photos])
    assert added.status_code == 200, added.text[-500:]
    people = {m.group(1): int(m.group(2))
              for m in re.finditer(r'data-person="(p\d+)".*?· (\d+) face', added.text, re.S)}
    client.close()
    return max(people, key=people.get)


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
