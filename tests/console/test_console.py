"""The web console end to end in a real headless Chromium against a real server: log in, create a
collection, enrol two people by upload, search, delete, usage, revoked keys, tenant isolation, CSRF."""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from faceatlas.db import create_database_engine
from faceatlas.service.db import ConsoleSession
from faceatlas.video import DatabaseSink, Event

EXAMPLES = "data/face_recognition_examples/tests/test_images"


@pytest.fixture(scope="module")
def photos(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = shared / EXAMPLES
    wall = tmp_path_factory.mktemp("photos") / "wall.png"  # a real PNG with no face in it
    cv2.imwrite(str(wall), np.full((240, 320, 3), (180, 200, 210), np.uint8))
    other = shared / "data/face_recognition_examples/examples/knn_examples/train/biden"
    return {"obama": folder / "obama.jpg", "biden": folder / "biden.jpg", "query": folder / "obama2.jpg",
            "wall": wall, "biden_other": other / "biden2.jpg"}


def _billed_calls(page) -> int:
    page.goto("/console/usage")
    return int(re.match(r"(\d+) billed calls", page.locator("#quota").inner_text()).group(1))


def test_enrol_search_delete_and_usage(log_in, console, photos) -> None:
    page = log_in("acme_admin")
    page.on("dialog", lambda dialog: dialog.accept())
    before = _billed_calls(page)

    page.goto("/console/galleries")
    page.get_by_label("Name").fill("people")
    page.get_by_label(re.compile("Keep a face crop")).check()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url("**/console/galleries/people")

    for subject, name, files in (("obama", "Barack Obama", [photos["obama"], photos["wall"]]),
                                 ("biden", "Joe Biden", [photos["biden"]])):
        page.get_by_label("Subject id").fill(subject)
        page.get_by_label("Display name (optional)").fill(name)
        page.locator("#photos").set_input_files([str(f) for f in files])
        page.get_by_role("button", name="Enrol", exact=True).click()
        outcome = page.locator("#enrol-result .outcomes")
        outcome.wait_for()
        assert f"{files[0].name}: enrolled 1 face" in outcome.inner_text()
        if subject == "obama":  # the per-photo error of the photo without a face
            assert "wall.png: no_face" in outcome.inner_text()
        page.reload()

    subjects = page.locator(".subject")
    assert sorted(subjects.all_inner_texts()) == [
        "Barack Obama\nid obama · 1 face\nDelete", "Joe Biden\nid biden · 1 face\nDelete"]
    # thumbnails come from the stored crops and load as images
    assert page.locator(".subject img").count() == 2
    assert page.eval_on_selector_all(".subject img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")

    page.locator("#search-photo").set_input_files(str(photos["query"]))
    page.get_by_role("button", name="Search", exact=True).click()
    answer = page.locator("#search-answer")
    answer.wait_for()
    assert answer.locator("h3").inner_text() == "Found: Barack Obama"
    first = answer.locator("tbody tr").first.inner_text()
    assert "strangers (FAR" in first or "unknown" in first

    page.get_by_role("button", name="Delete subject biden", exact=True).click()
    # the form posts and the page is replaced: wait for the new page's list, not for a blank one
    expect(page.locator(".subject")).to_have_count(1)
    assert page.locator("[data-subject=biden]").count() == 0
    assert "Joe Biden" not in page.locator("main").inner_text()
    page.locator("#search-photo").set_input_files(str(photos["biden"]))  # erased: nobody now
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-answer h3", has_text="Unknown").wait_for()

    after = _billed_calls(page)
    # create, 3 enrol photos, search, delete, and the pages' listings
    assert after >= before + 6
    table = page.locator("#usage-table").inner_text()
    assert "enrol" in table and "search" in table and "subjects.delete" in table
    assert page.locator("svg.chart rect").count() >= 1
    with httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_admin']}"}) as api:
        trail = [(e["action"], e["target"]) for e in api.get("/v1/audit").json()["events"]]
    # console actions are audited as the API's; the deleted subject's id is erased from the trail
    assert ("face.enrol", "people/obama") in trail and ("subject.delete", "people/[erased]") in trail
    assert not any("biden" in target for _, target in trail)
    csv = page.request.get("/console/usage.csv")
    assert csv.ok and csv.headers["content-type"].startswith("text/csv")
    assert re.search(r"acme,\d{4}-\d\d-\d\d,enrol,3,", csv.text())
    page.context.close()


def test_try_it_draws_faces(log_in, console, photos) -> None:
    page = log_in("acme_read")
    page.goto("/console/try")
    page.get_by_label("Liveness").check()
    page.get_by_label("Photo", exact=True).set_input_files(str(photos["obama"]))
    page.get_by_role("button", name="Run", exact=True).click()
    answer = page.locator("#try-answer")
    answer.wait_for()
    assert answer.locator("h2").inner_text() == "1 face found"
    image = answer.locator("img")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.eval_on_selector("#try-answer img", "i => i.naturalWidth") > 100
    page.context.close()


def test_revoked_key_is_refused_at_once(log_in, console) -> None:
    doomed = console.accounts.create_key("acme", ["read"], name="doomed").token
    victim = log_in(doomed)
    admin = log_in("acme_admin")
    admin.on("dialog", lambda dialog: dialog.accept())
    admin.goto("/console/usage")
    prefix = doomed.split("_")[1]
    admin.get_by_role("button", name=f"Revoke key {prefix}").click()
    # the answer is the same address as the page asked from: wait for its row, not for the address
    expect(admin.locator(f"tr[data-prefix='{prefix}']")).to_contain_text("revoked")
    assert admin.locator(f"tr[data-prefix='{prefix}']").inner_text().count("revoked") == 1

    # a key created here is shown once and works on the API; rotating it replaces it at once
    admin.get_by_label("Name", exact=True).fill("ci")
    admin.get_by_label("Scope").select_option("read")
    admin.get_by_role("button", name="Create key", exact=True).click()
    created = admin.locator("#new-key").inner_text()
    admin.get_by_role("button", name=f"Rotate key {created.split('_')[1]}", exact=True).click()
    expect(admin.locator("#new-key")).not_to_have_text(created)  # the page before the answer has one too
    rotated = admin.locator("#new-key").inner_text()
    admin.goto("/console/usage")
    assert admin.locator("#new-key").count() == 0  # shown only on the answer that created it
    for token, status in ((created, 401), (rotated, 200)):
        answer = httpx.get(f"{console.url}/v1/collections", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status

    victim.goto("/console/galleries")  # the session's key is checked on every request
    assert "/console/login" in victim.url
    assert "revoked" in victim.get_by_role("alert").inner_text()
    victim.get_by_label("API key").fill(doomed)
    victim.get_by_role("button", name="Log in", exact=True).click()
    expect(victim.get_by_role("alert")).to_contain_text("not valid")  # the page before said "revoked"
    for page in (victim, admin):
        page.context.close()


def test_tenant_b_sees_nothing_of_tenant_a(log_in, console) -> None:
    acme = log_in("acme_write")
    acme.get_by_label("Name").fill("acme-only")
    acme.get_by_role("button", name="Create", exact=True).click()
    acme.wait_for_url("**/console/galleries/acme-only")

    globex = log_in("globex_admin")
    assert "acme-only" not in globex.locator("main").inner_text()
    response = globex.goto("/console/galleries/acme-only")
    assert response.status == 404 and "not_found" in globex.locator("main").inner_text()
    globex.goto("/console/usage")
    assert "acme" not in globex.locator("#keys").inner_text().lower()
    for page in (acme, globex):
        page.context.close()


def _session(console, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=console.url, timeout=30)
    login = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    answer = client.post("/console/login", data={"key": console.keys.get(key, key), "csrf": token})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/console" in cookie
    page = client.get("/console/galleries")
    return client, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_forms_without_the_csrf_token_are_refused(console) -> None:
    client, csrf = _session(console, "acme_write")
    assert client.post("/console/galleries", data={"name": "no-token"}).status_code == 403
    assert client.post("/console/galleries", data={"name": "no-token", "csrf": "forged"}).status_code == 403
    assert "no-token" not in client.get("/console/galleries").text
    assert client.post("/console/galleries", data={"name": "with-token", "csrf": csrf}).status_code == 303
    assert "with-token" in client.get("/console/galleries").text
    assert client.post("/console/logout", data={}).status_code == 403
    client.close()
    # the login form itself carries a token bound to its cookie
    with httpx.Client(base_url=console.url) as fresh:
        assert fresh.post("/console/login", data={"key": console.keys["acme_write"]}).status_code == 403


def test_a_key_form_sent_twice_makes_one_key(console) -> None:
    """A reload of the "Create key" answer sent the form again: a second key, another secret shown;
    rotating twice made two replacements. Each form carries a one-time token."""
    client, csrf = _session(console, "acme_admin")
    page = client.get("/console/usage").text
    once = re.search(r'name="once" value="([^"]+)"', page).group(1)
    before = len(console.accounts.list_keys("acme"))
    form = {"csrf": csrf, "once": once, "name": "twice", "scope": "read"}
    first, again = client.post("/console/keys", data=form), client.post("/console/keys", data=form)
    assert first.status_code == 201 and 'id="new-key"' in first.text
    made = re.search(r'<code id="new-key">(fa_[^<]+)</code>', first.text).group(1)
    assert again.status_code == 200 and 'id="new-key"' not in again.text and made not in again.text
    assert f"it made key {made.split('_')[1]} then" in again.text
    assert len(console.accounts.list_keys("acme")) == before + 1
    once = re.search(r'name="once" value="([^"]+)"', first.text).group(1)  # the answer's own forms: a new token
    rotate = {"csrf": csrf, "once": once, "confirmed": "yes"}
    url = f"/console/keys/{made.split('_')[1]}/rotate"
    rotated, again = client.post(url, data=rotate), client.post(url, data=rotate)
    assert rotated.status_code == 201 and again.status_code == 200 and "sent before" in again.text
    assert len(console.accounts.list_keys("acme")) == before + 2  # the rotated key and its one replacement
    assert client.post("/console/keys", data={**form, "once": "short"}).status_code == 422
    client.close()



def test_each_key_form_of_the_usage_page_has_its_own_token(console) -> None:
    """"Create key" and every Rotate form shared one one-time token: after a key was made, Rotate on
    the same page answered "this form was sent before: it made key <the new one>" and did nothing."""
    client, csrf = _session(console, "acme_admin")
    target = console.accounts.create_key("acme", ["read"], name="to-rotate").prefix
    page = client.get("/console/usage").text
    tokens = re.findall(r'name="once" value="([^"]+)"', page)
    assert len(tokens) >= 3 and len(set(tokens)) == len(tokens)
    made = client.post("/console/keys", data={"csrf": csrf, "once": tokens[-1], "name": "made", "scope": "read"})
    assert made.status_code == 201
    rotate = re.search(rf'action="/console/keys/{target}/rotate".*?name="once" value="([^"]+)"', page).group(1)
    rotated = client.post(f"/console/keys/{target}/rotate", data={"csrf": csrf, "once": rotate, "confirmed": "yes"})
    assert rotated.status_code == 201 and "sent before" not in rotated.text
    assert next(k for k in console.accounts.list_keys("acme") if k.prefix == target).revoked_at is not None
    client.close()


def test_an_upload_the_server_refuses_is_a_console_page_not_json(console) -> None:
    """Photos over the upload limit and more than 1000 files showed the API's raw JSON error."""
    client, csrf = _session(console, "acme_write")
    assert client.post("/console/galleries", data={"name": "big-uploads", "csrf": csrf}).status_code == 303
    url = "/console/galleries/big-uploads/enrol"
    big = client.post(url, data={"csrf": csrf, "subject": "someone"},
                      files={"photos": ("big.jpg", b"\xff" * 16_000_000, "image/jpeg")})
    many = client.post(url, data={"csrf": csrf, "subject": "someone"},
                       files=[("photos", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1001)])
    fragment = client.post(url, data={"csrf": csrf, "subject": "someone"}, headers={"HX-Request": "true"},
                           files={"photos": ("big.jpg", b"\xff" * 16_000_000, "image/jpeg")})
    for answer, status, words in ((big, 413, "MB the server takes at once"), (many, 400, "too many files"),
                                  (fragment, 413, "send fewer or smaller photos")):
        assert answer.status_code == status and answer.headers["content-type"].startswith("text/html"), answer.text
        assert words in answer.text and '{"error"' not in answer.text
    assert "<html" in big.text and "<html" not in fragment.text  # htmx swaps a fragment in
    assert client.get("/v1/collections").status_code == 401  # the API's own answers stay JSON
    client.close()


def test_scopes_follow_the_key(console) -> None:
    detector = console.accounts.create_key("acme", ["detect"], name="kiosk").token
    with httpx.Client(base_url=console.url) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        home = client.post("/console/login", data={"key": detector, "csrf": token}, follow_redirects=True)
        assert home.url.path == "/console/try" and ">Galleries<" not in home.text  # a detect key: Try it only
        assert client.get("/console/galleries").status_code == 403
    client, csrf = _session(console, "acme_read")
    page = client.get("/console/galleries").text
    assert "Create a collection" not in page  # a read key sees no write forms
    refused = client.post("/console/galleries", data={"name": "by-reader", "csrf": csrf})
    assert refused.status_code == 403 and "forbidden" in refused.text
    assert "API keys" not in client.get("/console/usage").text  # keys need the admin scope
    client.close()


def test_session_expires(console) -> None:
    client, _ = _session(console, "acme_read")
    with console.accounts.engine.begin() as connection:  # the session's end passes
        connection.execute(update(ConsoleSession).values(expires_at=datetime(2000, 1, 1)))
    answer = client.get("/console/galleries")
    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/login?reason=expired")
    assert "has expired" in client.get(answer.headers["location"]).text
    assert client.get("/console/galleries").headers["location"].endswith("?reason=login")
    assert "<script" not in client.get("/console/login?reason=<script>alert(1)</script>").text.split("</head>")[1]
    client.close()



def test_a_new_login_ends_the_session_the_browser_held(console) -> None:
    """Logging in again with another key left the previous session valid until it expired."""
    client, _ = _session(console, "acme_admin")
    first = client.cookies.get("faceatlas_console")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/login", data={"key": console.keys["acme_read"], "csrf": token}).status_code == 303
    assert client.cookies.get("faceatlas_console") != first
    client.close()
    with httpx.Client(base_url=console.url, cookies={"faceatlas_console": first}) as old:
        answer = old.get("/console/usage")
    assert answer.status_code == 303 and "/console/login" in answer.headers["location"]


def test_events_filtered_and_live(log_in, console, photos, tmp_path) -> None:
    sink = DatabaseSink(console.database_url, tenant="acme", batch=1)
    sink.emit(Event("identified", "entrance", frame=1, video_time=0.0, track_id=1, kind="face",
                    data={"subject": "obama"}))
    sink.emit(Event("track_started", "till-2", frame=2, video_time=0.1, track_id=2, kind="face"))
    DatabaseSink(console.database_url, tenant="globex", batch=1).emit(
        Event("watchlist_hit", "globex-door", frame=1, video_time=0.0))
    page = log_in("acme_read")
    page.goto("/console/events")
    rows = page.locator("#events tbody tr")
    assert rows.count() == 2 and "globex-door" not in page.locator("main").inner_text()
    page.get_by_label("Camera").fill("till-2")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**camera=till-2**")
    assert rows.count() == 1 and "track_started" in rows.first.inner_text()

    page.goto("/console/events")  # the live feed: an event stored now appears without a reload
    page.wait_for_timeout(500)  # the feed has connected
    # named as the pipeline names a snapshot (with `snapshots:`): camera, frame, track, type, event id
    frame = tmp_path / "entrance_0000009_7_unknown_person_0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f.jpg"
    frame.write_bytes(photos["biden"].read_bytes())
    sink.emit(Event("unknown_person", "entrance", frame=9, video_time=3.0, track_id=7, kind="face",
                    data={"snapshot": str(frame), "similarity": 0.25}))
    live = page.locator("#events tbody tr", has_text="unknown_person")
    live.wait_for(timeout=15_000)
    assert rows.count() == 3
    assert "similarity: 0.25" in live.inner_text() and "{" not in live.inner_text()  # words, not JSON
    assert str(tmp_path) not in live.inner_text()  # the frame's address, never the server's file path
    shot = live.get_by_role("img")
    shot.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=shot.element_handle())
    page.reload()  # the same snapshot in the listed rows
    assert page.locator("#events tbody tr img").count() == 1
    assert str(tmp_path) not in page.content()
    sink.close()
    page.context.close()


def test_photos_dropped_on_the_zone_are_uploaded(log_in, console, photos) -> None:
    page = log_in("acme_write")
    page.get_by_label("Name").fill("dropped")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url("**/console/galleries/dropped")
    payload = base64.b64encode(photos["biden"].read_bytes()).decode()
    page.evaluate("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "biden.jpg", {type: "image/jpeg"}));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", payload)
    assert page.locator("#drop-list").inner_text() == "1 photo(s): biden.jpg"
    page.get_by_label("Subject id").fill("biden")
    page.get_by_role("button", name="Enrol", exact=True).click()
    page.locator("#enrol-result .outcomes", has_text="biden.jpg: enrolled 1 face").wait_for()

    # the same person enrolled twice, merged into one subject
    page.get_by_label("Subject id").fill("biden-again")
    page.locator("#photos").set_input_files(str(photos["biden_other"]))
    page.get_by_role("button", name="Enrol", exact=True).click()
    page.locator("#enrol-result .outcomes", has_text=f"{photos['biden_other'].name}: enrolled").wait_for()
    page.reload()
    page.get_by_label("Merge").select_option("biden-again")
    page.get_by_label("into").select_option("biden")
    asked: list[str] = []  # a merge cannot be undone: it asks first, as a delete does
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Merge", exact=True).click()
    # the form posts and the page is replaced: wait for the new page's list (a blank page in between
    # has no biden-again either)
    expect(page.locator(".subject")).to_have_text(["biden\nid biden · 2 faces\nDelete"], use_inner_text=True)
    assert len(asked) == 1 and "cannot be undone" in asked[0]
    # the dialog names the two subjects chosen, as the page that asks first does ("the first subject")
    assert asked[0].startswith("Merge subject biden-again into biden?")
    page.context.close()


PAGES = ["/console/galleries", "/console/galleries/people", "/console/try", "/console/usage", "/console/events"]
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(e => e.tagName === 'BUTTON' ? !(e.getAttribute('aria-label') || e.textContent.trim())
                                        : e.labels.length === 0)
    .map(e => e.outerHTML)"""


def test_pages_are_labelled_keyboard_usable_and_fit_a_phone(log_in, console) -> None:
    # the collection page needs a collection: made here, not left to a test another worker may run
    made = httpx.post(f"{console.url}/v1/collections", json={"name": "people"},
                      headers={"Authorization": f"Bearer {console.keys['acme_admin']}"})
    assert made.status_code in (201, 409), made.text
    page = log_in("acme_admin", viewport={"width": 390, "height": 760})
    errors: list[str] = []  # script errors and Content-Security-Policy violations
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    for path in PAGES:
        page.goto(path)
        page.wait_for_timeout(300)  # scripts ran (the events page keeps its feed open: never network-idle)
        assert page.evaluate(UNLABELLED) == [], path
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path  # no sideways scrolling
        assert page.locator("main h1").count() == 1
    assert errors == []
    page.keyboard.press("Tab")  # the first stop is the skip link, and it leads to the content
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url("**/console/login**")
    page.goto("/console/usage")
    assert "/console/login" in page.url
    page.context.close()


def test_tables_wider_than_a_phone_show_that_they_scroll(log_in, console) -> None:
    """At 360 px the keys table (and the usage table) scrolled sideways with no hint that columns
    were hidden (Rotate, Revoke); a shadow on the hidden side says so."""
    page = log_in("acme_admin", viewport={"width": 360, "height": 740})
    page.goto("/console/usage")
    keys = page.locator("#keys")
    assert keys.evaluate("t => t.scrollWidth > t.clientWidth")  # the columns do not fit: it scrolls
    assert "radial-gradient" in keys.evaluate("t => getComputedStyle(t).backgroundImage")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # the page itself does not
    page.context.close()


def test_session_cookie_is_secure_over_https(console) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback, as from a TLS-terminating proxy in front of it
    with httpx.Client(base_url=console.url, headers={"X-Forwarded-Proto": "https"}) as client:
        form = client.get("/console/login")
        assert "Secure" in form.headers["set-cookie"]
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.cookies.clear()  # this client speaks http:// to the server: send the Secure cookie by hand
        client.cookies.set("faceatlas_console_login", token)
        answer = client.post("/console/login", data={"key": console.keys["acme_read"], "csrf": token})
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"]


def _people(page: str) -> dict[str, int]:
    """person id → face count, from an album page."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'data-person="(p\d+)".*?· (\d+) face', page, re.S)}


def test_album_people_and_corrections_by_clicking(console, shared: Path, tmp_path) -> None:
    """Albums page: photos added by upload (one metered call each, a bad file reported), people with
    their face crops, and the corrections (name, split, merge, not this person) as the annotation tool."""
    train = shared / "data/face_recognition_examples/examples/knn_examples/train"
    files = [train / "obama/obama.jpg", train / "obama/obama2.jpg", shared / EXAMPLES / "obama3.jpg",
             train / "biden/biden.jpg", train / "biden/biden2.jpg"]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    client, csrf = _session(console, "acme_write")
    before = console.accounts.calls_this_month("acme")
    uploads = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in [*files, bad]]
    added = client.post("/console/albums/photos", data={"album": "family", "keep_crops": "true", "csrf": csrf},
                        files=uploads)
    assert added.status_code == 200, added.text
    assert "notes.jpg: invalid_image" in added.text and "obama.jpg: 1 face" in added.text
    assert console.accounts.calls_this_month("acme") == before + len(files) + 1  # one metered call per photo
    people = _people(added.text)
    assert sum(people.values()) == 5 and len(people) >= 2, people
    biggest = max(people, key=people.get)  # obama's three photos
    assert people[biggest] == 3

    page = client.get(f"/console/albums/family/people/{biggest}").text
    faces = re.findall(r'data-face="(\d+)"', page)
    assert len(faces) == 3
    crop = client.get(f"/console/albums/family/faces/{faces[0]}")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR).shape[0] >= 40

    named = client.post(f"/console/albums/family/people/{biggest}/name", data={"name": "Barack", "csrf": csrf})
    assert named.status_code == 303 and "Barack" in client.get(named.headers["location"]).text
    split = client.post("/console/albums/family/split", data={"faces": faces[2], "csrf": csrf})  # a new person
    new = split.headers["location"].rsplit("/", 1)[1]
    assert _people(client.get("/console/albums/family").text)[new] == 1
    merged = client.post("/console/albums/family/merge",
                         data={"absorb": new, "into": biggest, "csrf": csrf, "confirmed": "yes"})
    assert merged.status_code == 303 and _people(client.get("/console/albums/family").text)[biggest] == 3
    rejected = client.post(f"/console/albums/family/faces/{faces[1]}/reject", data={"back": biggest, "csrf": csrf})
    assert rejected.status_code == 303
    assert _people(client.get("/console/albums/family").text)[biggest] == 2
    assert client.post("/console/albums/family/split", data={"csrf": csrf}).status_code == 422  # nothing ticked
    assert client.post("/console/albums/family/merge", data={"absorb": new, "into": biggest}).status_code == 403
    # the box unticked sends nothing: the album's setting (crops kept) applies, no refusal (an explicit
    # keep_crops=false of the API is one)
    more = sorted((shared / "data/lfw/images/Tony_Blair").glob("*.jpg"))[0]
    unticked = client.post("/console/albums/photos", data={"album": "family", "csrf": csrf},
                           files=[("photos", (more.name, more.read_bytes(), "image/jpeg"))])
    assert unticked.status_code == 200 and f"{more.name}: 1 face" in unticked.text, unticked.text[-500:]
    client.close()
    api = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_write']}"})
    assert "family" in api.get("/v1/albums").json()["albums"]
    assert api.get(f"/v1/albums/family/faces/{faces[0]}/crop").content == crop.content  # the API serves the same
    assert api.delete(f"/v1/albums/family/people/{biggest}").json()["faces_deleted"] == 2
    assert api.get(f"/v1/albums/family/faces/{faces[0]}/crop").status_code == 404  # erased with the person
    api.close()

    reader, _ = _session(console, "acme_read")
    assert "Add photos" not in reader.get("/console/albums").text and "family" in reader.get("/console/albums").text
    reader.close()
    other, _ = _session(console, "globex_admin")  # another tenant's album does not exist for them
    assert "family" not in other.get("/console/albums").text
    assert other.get("/console/albums/family").status_code == 404
    assert other.get(f"/console/albums/family/faces/{faces[0]}").status_code == 404
    other.close()


def test_album_dialogs_name_the_people_and_say_when_a_name_is_lost(log_in, console, shared: Path) -> None:
    """The merge dialog said "Merge the first person into the second?" and merging two named people
    silently dropped the first one's name. It names both (their names and ids, from the options'
    data-label) and says the name is lost; a face's delete button asks first in the browser too,
    though its form lies outside the faces form."""
    train = shared / "data/face_recognition_examples/examples/knn_examples/train"
    client, csrf = _session(console, "acme_write")
    added = client.post("/console/albums/photos", data={"album": "dialogs", "csrf": csrf}, files=[
        ("photos", (p.name, p.read_bytes(), "image/jpeg"))
        for p in (train / "obama/obama.jpg", train / "obama/obama2.jpg", train / "biden/biden.jpg")])
    obama, biden = sorted(_people(added.text), key=_people(added.text).get, reverse=True)
    for person, name in ((obama, "Barack"), (biden, "Joe")):
        client.post(f"/console/albums/dialogs/people/{person}/name", data={"name": name, "csrf": csrf})
    client.close()
    page = log_in("acme_write")
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.goto("/console/albums/dialogs")
    page.get_by_label("Merge").select_option(biden)
    page.get_by_label("into").select_option(obama)
    page.get_by_role("button", name="Merge", exact=True).click()
    assert asked[0].startswith(f"Merge “Joe” ({biden}) into “Barack” ({obama})?"), asked
    assert f"where both are named, the name of “Joe” ({biden}) is lost" in asked[0]
    page.goto(f"/console/albums/dialogs/people/{obama}")
    face = page.locator("#faces li").first.get_attribute("data-face")
    page.get_by_role("button", name=f"delete face {face}", exact=True).click()
    assert asked[1].startswith(f"Delete face {face}?") and len(asked) == 2
    assert page.url.endswith(f"/console/albums/dialogs/people/{obama}")  # dismissed: nothing was sent
    page.context.close()


def test_store_dashboard_visits_alerts_and_owner_only(console, fast_analyzer, tmp_path) -> None:
    from faceatlas.apps.retail import Camera, Entry, Product, RetailStore, StoreConfig
    from faceatlas.apps.retail.db import Alert
    from faceatlas.db import utcnow

    now = utcnow()
    alerts = {}
    for tenant, store_id in (("acme", "corner-shop"), ("globex", "globex-mart")):
        config = StoreConfig(id=store_id, tenant=tenant, cameras=[Camera(id="door", role="door")],
                             products=[Product(sku="mug", name="Mug", price_cents=1250)])
        with RetailStore.open(config, fast_analyzer, console.database_url, index_dir=tmp_path / "idx") as store:
            for track in ("a", "b", "c"):  # three shoppers walked in, none left yet
                store.entry(Entry("door", now, track=f"{store_id}:{track}"))
            with store.sessions.begin() as session:
                alert = Alert(store_id=store_id, kind="unpaid_exit", camera="door", event_id=f"{store_id}-e1",
                              details={"items": 2}, at=now)
                session.add(alert)
                session.flush()
                alerts[tenant] = alert.id
    client, csrf = _session(console, "acme_write")
    assert "corner-shop" in client.get("/console/store").text and "globex-mart" not in client.get("/console/store").text
    page = client.get("/console/store/corner-shop").text
    assert re.search(r'<strong>3</strong> shoppers inside', page)
    assert re.search(r'<th scope="row">Visits</th><td>3</td>', page)
    assert "unpaid exit" in page and 'alt="Visits per hour of day (today)"' in page
    assert "Zone visits" not in page  # no chart where the store has no figures
    # another tenant's alert cannot be resolved through this tenant's store
    assert client.post(f"/console/store/corner-shop/alerts/{alerts['globex']}/resolve",
                       data={"csrf": csrf}).status_code == 404
    assert client.get("/console/store/globex-mart").status_code == 404
    resolved = client.post(f"/console/store/corner-shop/alerts/{alerts['acme']}/resolve", data={"csrf": csrf})
    assert resolved.status_code == 303 and 'id="no-alerts"' in client.get("/console/store/corner-shop").text
    client.close()


def test_kyc_sessions_with_decisions_reasons_and_kept_frames(console, fast_analyzer, photos) -> None:
    from datetime import timedelta

    from faceatlas.apps.kyc import KycService
    from faceatlas.apps.kyc.db import KycReference, KycSession
    from faceatlas.db import utcnow

    engine = create_database_engine(console.database_url)
    kyc = KycService(engine, fast_analyzer)
    pending = kyc.create("svc:acme", ["blink", "turn_left"])
    refused = kyc.create("svc:acme", ["open_mouth"], retention_days=7)
    kyc.create("svc:globex", ["blink"])
    with engine.begin() as connection:  # decided as a submission would have left it
        connection.execute(update(KycSession).where(KycSession.id == refused.id).values(
            status="rejected", decided_at=utcnow(), reasons=["face_mismatch"],
            details={"similarity": 0.21, "threshold": 0.575, "far": 1e-6, "pack": "scrfd-mbf"}))
        connection.execute(KycReference.__table__.insert().values(
            session_id=refused.id, kind="selfie", image=photos["biden"].read_bytes(),
            expires_at=utcnow() + timedelta(days=7)))
    client, _ = _session(console, "acme_admin")
    page = client.get("/console/kyc").text
    assert pending.id in page and refused.id in page
    only = client.get("/console/kyc", params={"status": "rejected"}).text
    assert refused.id in only and pending.id not in only
    assert "the selfie is not the person on the document" in only
    detail = client.get(f"/console/kyc/{refused.id}").text
    assert "0.575" in detail and 'alt="selfie reference"' in detail
    assert "Nothing submitted yet" in client.get(f"/console/kyc/{pending.id}").text
    client.close()
    api = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['acme_admin']}"})
    listed = api.get("/v1/kyc/sessions", params={"status": "rejected"}).json()["sessions"]
    assert [(s["id"], s["reasons"]) for s in listed] == [(refused.id, ["face_mismatch"])]
    first = api.get("/v1/kyc/sessions", params={"limit": 1}).json()
    assert [s["id"] for s in first["sessions"]] == [refused.id] and first["next_cursor"]
    older = api.get("/v1/kyc/sessions", params={"limit": 1, "after": first["next_cursor"]}).json()
    assert [s["id"] for s in older["sessions"]] == [pending.id] and older["next_cursor"] is None
    assert api.get("/v1/kyc/sessions", params={"after": "yesterday"}).json()["error"]["code"] == "validation_error"
    api.close()
    old = utcnow() - timedelta(days=1)  # a page and more of older sessions: the console pages to them
    with engine.begin() as connection:
        connection.execute(KycSession.__table__.insert(), [
            {"id": f"{n:032x}", "tenant": "svc:acme", "challenge": ["blink"], "status": "expired",
             "created_at": old, "expires_at": old, "reasons": [], "details": {}, "retention_days": 0}
            for n in range(200)])
    client, _ = _session(console, "acme_admin")
    newest = client.get("/console/kyc").text
    assert pending.id in newest and f"{199:032x}" not in newest and "Older sessions" in newest
    link = re.search(r'href="(/console/kyc\?after=[^"]+)" rel="next"', newest)
    assert link, newest[-2000:]
    rest = client.get(html.unescape(link.group(1))).text
    assert f"{199:032x}" in rest and pending.id not in rest and "Newest sessions" in rest
    assert "Older sessions" not in rest
    client.close()
    other, _ = _session(console, "globex_admin")
    assert refused.id not in other.get("/console/kyc").text
    assert other.get(f"/console/kyc/{refused.id}").status_code == 404
    other.close()
    engine.dispose()



def test_kyc_reference_images_only_for_admin_keys_and_each_view_audited(console, fast_analyzer, photos) -> None:
    """A read key saw a session's reference face images (which no API call returns; keeping them is
    the admin's retention setting), and no view of them was audited."""
    from datetime import timedelta

    from faceatlas.apps.kyc import KycService
    from faceatlas.apps.kyc.db import KycReference, KycSession
    from faceatlas.db import utcnow

    engine = create_database_engine(console.database_url)
    kept = KycService(engine, fast_analyzer).create("svc:acme", ["blink"], retention_days=7)
    with engine.begin() as connection:
        connection.execute(update(KycSession).where(KycSession.id == kept.id).values(
            status="accepted", decided_at=utcnow(), reasons=[], details={"similarity": 0.8}))
        connection.execute(KycReference.__table__.insert().values(
            session_id=kept.id, kind="selfie", image=photos["obama"].read_bytes(),
            expires_at=utcnow() + timedelta(days=7)))
    engine.dispose()

    def views() -> list[str]:
        return [r.target for r in console.accounts.audit_log("acme", 1000) if r.action == "kyc.references.view"]

    before = views()
    reader, _ = _session(console, "acme_read")
    page = reader.get(f"/console/kyc/{kept.id}")
    reader.close()
    assert page.status_code == 200 and "data:image" not in page.text and 'alt="selfie reference"' not in page.text
    assert "shown to admin keys only" in page.text and views() == before
    admin, _ = _session(console, "acme_admin")
    for _ in range(2):
        assert 'alt="selfie reference"' in admin.get(f"/console/kyc/{kept.id}").text
    admin.close()
    assert views() == [kept.id, kept.id] + before  # newest first


def test_cookies_are_secure_where_tls_ends_at_a_proxy(fast_analyzer, tmp_path) -> None:
    """Behind the documented TLS proxy the request reaches the service as plain HTTP, so the session
    cookie went out without Secure; FACEATLAS_CONSOLE_SECURE_COOKIE marks it on every answer."""
    from fastapi.testclient import TestClient

    from faceatlas.service.accounts import Accounts
    from faceatlas.service.app import create_app
    from faceatlas.service.db import migrate
    from faceatlas.settings import ServiceSettings

    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    key = accounts.create_key("acme", ["read"]).token
    for secure in (False, True):
        settings = ServiceSettings(database_url=url, index_dir=tmp_path / "indexes", console_secure_cookie=secure)
        with TestClient(create_app(settings, analyzer=fast_analyzer)) as client:  # http://testserver
            login = client.get("/console/login")
            token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
            session = client.post("/console/login", data={"key": key, "csrf": token}, follow_redirects=False)
        for cookie in (login.headers["set-cookie"], session.headers["set-cookie"]):
            assert ("; secure" in cookie.lower()) is secure, cookie


def test_event_details_read_as_text_not_json_escapes(console) -> None:
    """Details showed {"name": "Fran\\u00e7ois"} and '<' as \\u003c (the live rows showed François),
    then JSON at all: they are "name: value" words, as the store's alerts and the KYC audit say theirs."""
    DatabaseSink(console.database_url, tenant="globex", batch=1).emit(
        Event("identified", "accents", frame=1, video_time=0.0,
              data={"name": "François Müller 李雷 <b>x</b>", "face_score": 0.5, "zone": {"x": 1}, "gone": None}))
    client, _ = _session(console, "globex_admin")
    page = client.get("/console/events", params={"camera": "accents"}).text
    client.close()
    row = re.search(r"<td>identified</td>.*?</tr>", page, re.S).group(0)
    assert "name: François Müller 李雷 &lt;b&gt;x&lt;/b&gt;, face score: 0.5, zone: (x: 1)" in row, row
    assert "\\u00e7" not in page and "\\u003c" not in page and "{" not in row and "gone" not in row


def test_an_album_upload_that_adds_nothing_makes_no_album_and_no_audit(console, tmp_path) -> None:
    """A file that is no photo made a new, empty album that the console could not delete; a read key's
    upload wrote album.scan audit lines and answered "no album"; a bad photo's code showed twice."""
    bad = ("notes.txt", b"not a photo at all", "text/plain")
    trail = len(console.accounts.audit_log("acme", 1000))
    reader, csrf = _session(console, "acme_read")
    refused = reader.post("/console/albums/photos", data={"album": "by-reader", "csrf": csrf},
                          files=[("photos", bad)])
    assert refused.status_code == 403 and "lacks the &#39;write&#39; scope" in refused.text, refused.text[-400:]
    reader.close()
    writer, csrf = _session(console, "acme_write")
    junk = writer.post("/console/albums/photos", data={"album": "junk-only", "csrf": csrf}, files=[("photos", bad)])
    assert junk.status_code == 422 and "No photo added to junk-only" in junk.text
    assert "notes.txt: invalid_image: not an image" in junk.text and "invalid_image: invalid_image" not in junk.text
    assert 'href="/console/albums/junk-only"' not in writer.get("/console/albums").text
    writer.close()
    assert len(console.accounts.audit_log("acme", 1000)) == trail  # nothing was done, nothing audited


def test_a_subject_id_out_of_its_rules_is_refused_before_any_photo_is_billed(console, photos) -> None:
    """Subject "a b" (the form's pattern bypassed) analysed and billed every photo, each answering the
    same validation_error; the API refuses it first, billed as one 422 call (as the console bills each
    refused form now, never per photo). The rule is said in words, not as a regex."""
    client, csrf = _session(console, "acme_write")
    assert client.post("/console/galleries", data={"name": "rules", "csrf": csrf}).status_code == 303
    before = console.accounts.calls_this_month("acme")
    uploads = [("photos", ("obama.jpg", photos["obama"].read_bytes(), "image/jpeg"))] * 2
    for fields in ({"subject": "a b"}, {"subject": "ok", "name": "two\nlines"}):
        refused = client.post("/console/galleries/rules/enrol", data={**fields, "csrf": csrf}, files=uploads)
        assert refused.status_code == 422, refused.text[-300:]
    assert "use 1 to 200 of A-Z" in client.post("/console/galleries/rules/enrol", data={"subject": "a b", "csrf": csrf},
                                                files=uploads).text
    assert console.accounts.calls_this_month("acme") == before + 3  # one 422 per form sent, as the API's
    client.close()


def test_every_subject_of_a_large_collection_is_reached_page_by_page(console) -> None:
    """505 subjects: the page said "505 subjects" and listed 500, with no way to the last five."""
    from faceatlas.gallery import Gallery

    with Gallery.open(console.database_url, tenant="svc:acme", index_dir=console.index_dir) as gallery:
        gallery.create_collection("crowd", "scrfd-mbf")
        for number in range(105):
            gallery.add_subject("crowd", f"s{number:04d}")
    client, _ = _session(console, "acme_read")
    seen: list[str] = []
    url: str | None = "/console/galleries/crowd"
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'data-subject="([^"]+)"', page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    client.close()
    assert seen == [f"s{number:04d}" for number in range(105)]


def test_a_rate_limited_page_says_when_to_try_again(console) -> None:
    slow = console.accounts.create_key("acme", ["read"], name="slow", rate_per_second=0.01, burst=2).token
    client, _ = _session(console, slow)
    answers = [client.get("/console/galleries") for _ in range(4)]
    client.close()
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert int(limited[0].headers["Retry-After"]) >= 1 and "Try again in" in limited[0].text
