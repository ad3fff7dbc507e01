"""The console's addresses and destructive forms against a real server: every link and asset is a
root-relative path (not the scheme and host of the request), a destructive form does nothing
until it is confirmed (with console.js or without it), path segments of dots reach their own
page, and the event feed refuses a filter out of its rules before it starts."""

from __future__ import annotations

import contextlib
import html
import re

import httpx
import pytest
from sqlalchemy.orm import Session

from faceatlas.apps.retail import Camera, Product, RetailStore, StoreConfig
from faceatlas.apps.retail.db import CatalogueProduct
from faceatlas.db import create_database_engine
from faceatlas.errors import InvalidArgument
from faceatlas.gallery import ID_MAX_LENGTH, NAME_MAX_LENGTH, AlreadyExists, Gallery, check_id
from faceatlas.video import DatabaseSink, Event

# every attribute of a page that the browser follows or loads
LINK = re.compile(r'\s(src|href|action|formaction|hx-(?:get|post|put|patch|delete)|data-stream)="([^"]*)"')


def _session(console, key: str) -> tuple[httpx.Client, str]:
    """A logged-in console session over plain HTTP, and its CSRF token."""
    client = httpx.Client(base_url=console.url, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/login", data={"key": console.keys[key], "csrf": token}).status_code == 303
    return client, re.search(r'name="csrf" value="([^"]+)"', client.get("/console/galleries").text).group(1)


def _subjects(console, collection: str, *subjects: str) -> None:
    with Gallery.open(console.database_url, tenant="svc:acme", index_dir=console.index_dir) as gallery:
        if collection not in {c.name for c in gallery.list_collections()}:
            gallery.create_collection(collection, "scrfd-mbf")
        for subject in subjects:
            with contextlib.suppress(AlreadyExists):
                gallery.add_subject(collection, subject)


def _relative_links(page: str, where: str) -> None:
    links = LINK.findall(page)
    assert links, where
    for name, value in links:
        relative = value.startswith("/") and not value.startswith("//")
        assert relative or value.startswith(("#", "data:")), (where, name, value)


@pytest.mark.parametrize("headers", [{"Host": "evil.example"}, {"X-Forwarded-Proto": "https"},
                                     {"Host": "evil.example", "X-Forwarded-Proto": "https"}])
def test_links_and_assets_are_root_relative_whatever_the_host(console, headers) -> None:
    """The stylesheet, htmx and console.js were linked as http://<Host header>/console/static/...: behind
    the documented TLS proxy the browser blocked them under the CSP (script-src 'self'), so the
    confirm dialogs never ran; a forged Host named another site."""
    _subjects(console, "links", "someone")
    client, _ = _session(console, "acme_admin")
    with httpx.Client(base_url=console.url, headers=headers) as anonymous:
        _relative_links(anonymous.get("/console/login").text, "/console/login")
    for path in ("/console/galleries", "/console/galleries/links", "/console/albums", "/console/store",
                 "/console/kyc", "/console/try", "/console/events", "/console/usage", "/console/no-such-page"):
        page = client.get(path, headers=headers).text
        assert "evil.example" not in page, path
        _relative_links(page, path)
        assert '<script src="/console/static/console.js" defer></script>' in page, path
    client.close()


def test_a_store_or_sku_of_dots_is_refused_and_one_kept_from_before_is_reached(console, fast_analyzer) -> None:
    """SKU '..' (the console's form took it) linked Save to /console/store/<id>/ (404), SKU '.' linked
    take-off-sale to .../products/delete: a browser resolves '.' and '..' away in a URL, and '%2E' and
    '%2E%2E' as well, so such an id is refused; one stored before is linked as %2E%2E for other clients."""
    with pytest.raises(ValueError, match="cannot be '..'"):
        StoreConfig(id="..", tenant="acme", cameras=[Camera(id="door", role="door")])
    with pytest.raises(ValueError, match="cannot be '.'"):
        StoreConfig(id="shop", tenant="acme", cameras=[Camera(id="door", role="door")],
                    products=[Product(sku=".", name="Dot", price_cents=1)])
    config = StoreConfig(id="dots-shop", tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="tea", name="Tea", price_cents=300)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    client, csrf = _session(console, "acme_write")
    for sku in (".", ".."):
        refused = client.post("/console/store/dots-shop/products",
                              data={"csrf": csrf, "sku": sku, "name": "Dots", "price": "1.00"})
        assert refused.status_code == 422 and "not '.' or '..'" in html.unescape(refused.text), refused.text[-300:]
    engine = create_database_engine(console.database_url)
    with Session(engine) as session, session.begin():  # a product put on sale before the rule
        session.add(CatalogueProduct(store_id="dots-shop", sku="..", name="Old", price_cents=100))
    engine.dispose()
    page = client.get("/console/store/dots-shop/products").text
    assert 'action="/console/store/dots-shop/products/%2E%2E"' in page
    saved = client.post("/console/store/dots-shop/products/%2E%2E", data={"csrf": csrf, "name": "Old", "price": "2.00"})
    assert saved.status_code == 303 and saved.headers["location"] == "/console/store/dots-shop/products"
    assert 'value="2.00" required' in client.get("/console/store/dots-shop/products").text
    client.close()


def _listed(console, collection: str) -> list[str]:
    with Gallery.open(console.database_url, tenant="svc:acme", index_dir=console.index_dir) as gallery:
        return [s.external_id for s in gallery.list_subjects(collection, limit=100).items]


def test_a_delete_without_console_js_asks_first_on_a_page(log_in, console) -> None:
    """Where console.js did not run (blocked by the CSP behind the TLS proxy), one click on Delete
    erased a subject with no confirmation: the server now asks first, on a page."""
    _subjects(console, "no-script", "doomed", "kept")
    page = log_in("acme_write", java_script_enabled=False)
    page.goto("/console/galleries/no-script")
    page.get_by_role("button", name="Delete subject doomed", exact=True).click()
    page.wait_for_load_state()
    assert "Delete doomed? Every face" in page.locator("#question").inner_text()
    assert _listed(console, "no-script") == ["doomed", "kept"]
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("**/console/galleries/no-script")
    assert _listed(console, "no-script") == ["doomed", "kept"]
    page.get_by_role("button", name="Delete subject doomed", exact=True).click()
    page.get_by_role("button", name="Yes, go ahead").click()
    page.wait_for_url("**/console/galleries/no-script")
    assert _listed(console, "no-script") == ["kept"]
    page.context.close()


def test_rotate_asks_first_as_revoke_does(log_in, console) -> None:
    """Rotate revoked a key with one click (Revoke asked first)."""
    spare = console.accounts.create_key("acme", ["read"], name="spare").token
    prefix = spare.split("_")[1]
    page = log_in("acme_admin")
    page.goto("/console/usage")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name=f"Rotate key {prefix}", exact=True).click()
    assert asked == [f"Rotate key {prefix}? It is revoked at once and a new key replaces it: calls with the old key "
                     "are refused."]
    assert httpx.get(f"{console.url}/v1/collections", headers={"Authorization": f"Bearer {spare}"}).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Rotate key {prefix}", exact=True).click()
    page.locator("#new-key").wait_for()
    assert httpx.get(f"{console.url}/v1/collections", headers={"Authorization": f"Bearer {spare}"}).status_code == 401
    page.context.close()


def test_every_destructive_form_sent_unconfirmed_does_nothing(console, fast_analyzer) -> None:
    """Each form that console.js confirms (delete, merge, take off sale, revoke, rotate) does nothing
    until it is confirmed: sent without it, the answer asks first, with the same fields to send."""
    _subjects(console, "unconfirmed", "one", "two")
    config = StoreConfig(id="confirm-shop", tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="tea", name="Tea", price_cents=300)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    spare = console.accounts.create_key("acme", ["read"], name="spare").token
    prefix = spare.split("_")[1]
    client, csrf = _session(console, "acme_admin")
    once = re.search(r'name="once" value="([^"]+)"', client.get("/console/usage").text).group(1)
    forms = {"/console/galleries/unconfirmed/subjects/one/delete": {},
             "/console/galleries/unconfirmed/merge": {"absorb": "one", "into": "two"},
             "/console/galleries/unconfirmed/delete": {},
             "/console/store/confirm-shop/products/tea/delete": {},
             f"/console/keys/{prefix}/revoke": {},
             f"/console/keys/{prefix}/rotate": {"once": once}}
    for url, fields in forms.items():
        asked = client.post(url, data={"csrf": csrf, **fields})
        assert asked.status_code == 200 and 'id="question"' in asked.text, url
        assert f'<form method="post" action="{url}">' in asked.text, url
        for name, value in {"csrf": csrf, **fields, "confirmed": "yes"}.items():
            assert f'name="{name}" value="{value}"' in asked.text, (url, name)
    assert _listed(console, "unconfirmed") == ["one", "two"]
    assert 'data-sku="tea"' in client.get("/console/store/confirm-shop/products").text
    assert httpx.get(f"{console.url}/v1/collections", headers={"Authorization": f"Bearer {spare}"}).status_code == 200
    done = client.post("/console/galleries/unconfirmed/subjects/one/delete", data={"csrf": csrf, "confirmed": "yes"})
    assert done.status_code == 303 and _listed(console, "unconfirmed") == ["two"]
    client.close()


def test_the_live_feed_of_no_events_yet_delivers_and_a_bad_filter_is_refused_first(console) -> None:
    """A tenant without events (or a filter matching none) wired its feed to ...&since=, which failed
    after the stream started ("since is not an ISO 8601 time: ''"): the browser reconnected every
    few seconds and no event ever arrived; type=bogus broke the stream the same way."""
    client, _ = _session(console, "acme_read")
    page = client.get("/console/events", params={"camera": "quiet-door"}).text
    assert 'id="no-events"' in page
    feed = html.unescape(re.search(r'data-stream="([^"]+)"', page).group(1))
    assert feed.endswith("&since=")
    sink = DatabaseSink(console.database_url, tenant="acme", batch=1)
    with client.stream("GET", feed, timeout=20) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        sink.emit(Event("track_started", "quiet-door", frame=1, video_time=0.0, track_id=3, kind="face"))
        line = next(line for line in stream.iter_lines() if line.startswith("data:"))
    sink.close()
    assert '"camera": "quiet-door"' in line and '"type": "track_started"' in line
    for params, words in (({"type": "bogus"}, "unknown event type 'bogus'"),
                          ({"since": "yesterday"}, "since is not an ISO 8601 time")):
        refused = client.get("/console/events/stream", params={"camera": "", "type": "", "since": "", **params})
        assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html"), params
        assert words in html.unescape(refused.text), params
    client.close()


def test_a_read_key_enrolling_in_a_gallery_is_refused_up_front(console, shared) -> None:
    """A read-only key's enrolment answered 200 with a "forbidden" line per photo; an album's upload
    refused the same case up front with 403."""
    _subjects(console, "read-only")
    photo = (shared / "data/face_recognition_examples/tests/test_images/obama.jpg").read_bytes()
    client, csrf = _session(console, "acme_read")
    for url, fields in (("/console/galleries/read-only/enrol", {"subject": "someone"}),
                        ("/console/albums/photos", {"album": "by-reader"})):
        refused = client.post(url, data={"csrf": csrf, **fields},
                              files=[("photos", ("obama.jpg", photo, "image/jpeg"))])
        assert refused.status_code == 403, (url, refused.text[-300:])
        assert "lacks the 'write' scope" in html.unescape(refused.text), url
    client.close()
    assert _listed(console, "read-only") == []


def test_form_limits_are_the_servers(console, shared, browser) -> None:
    """The id inputs asked for a leading letter or digit and at most 128 characters (the server takes a
    leading '_', '.' or '-' and 200); an album person's name took 400 characters (the server 300)."""
    photo = (shared / "data/face_recognition_examples/tests/test_images/obama.jpg").read_bytes()
    _subjects(console, "limits")
    client, csrf = _session(console, "acme_write")
    added = client.post("/console/albums/photos", data={"album": "limits", "csrf": csrf},
                        files=[("photos", ("obama.jpg", photo, "image/jpeg"))])
    person = re.search(r'href="/console/albums/limits/people/(p\d+)"', added.text).group(1)
    inputs = {"#name": client.get("/console/galleries").text, "#subject": client.get("/console/galleries/limits").text,
              "#album": client.get("/console/albums").text}
    names = {"#subject-name": inputs["#subject"],
             "#person-name": client.get(f"/console/albums/limits/people/{person}").text}
    client.close()
    page = browser.new_page()
    for selector, text in inputs.items():
        field = re.search(rf'<input id="{selector[1:]}"[^>]*>', text).group(0)
        assert f'maxlength="{ID_MAX_LENGTH}"' in field, field
        page.set_content(f"<form>{field}</form>")
        for value in ("_a", ".hidden", "-x", "a.b-c_d", "a" * ID_MAX_LENGTH, "..", ".", "a b", "é", "a/b"):
            page.fill(selector, value)
            valid = page.eval_on_selector(selector, "e => e.validity.valid")
            try:
                check_id(value)
                assert valid, (selector, value)
            except InvalidArgument:
                assert not valid, (selector, value)
    page.close()
    for selector, text in names.items():
        assert f'maxlength="{NAME_MAX_LENGTH}"' in re.search(rf'<input id="{selector[1:]}"[^>]*>', text).group(0)


def test_a_price_that_is_no_number_is_said_so(console, fast_analyzer) -> None:
    """Price NaN or Infinity answered "a price has at most two decimals"."""
    config = StoreConfig(id="price-shop", tenant="acme", cameras=[Camera(id="door", role="door")],
                         products=[Product(sku="tea", name="Tea", price_cents=300)])
    RetailStore.open(config, fast_analyzer, console.database_url, index_dir=console.index_dir).close()
    client, csrf = _session(console, "acme_write")
    url = "/console/store/price-shop/products/tea"
    for price in ("NaN", "Infinity", "-inf", "sNaN", "twelve"):
        refused = client.post(url, data={"csrf": csrf, "name": "Tea", "price": price})
        assert refused.status_code == 422 and f"'{price}' is not a price" in html.unescape(refused.text), price
    refused = client.post(url, data={"csrf": csrf, "name": "Tea", "price": "1.005"})
    assert refused.status_code == 422 and "at most two decimals" in refused.text
    client.close()


def test_deleting_a_collection_erases_its_subjects_ids_from_the_audit_trail(console) -> None:
    """As DELETE /v1/collections/{c}: the console's delete erased the subjects with their faces, but
    their ids stayed in the audit trail (targets, and a merge's ``into``)."""
    _subjects(console, "console-gone", "dora")
    console.accounts.audit("subject.create", "console-gone/dora", "acme", None)
    console.accounts.audit("subject.merge", "console-gone/dora_old", "acme", None, {"into": "dora"})
    client, csrf = _session(console, "acme_write")
    done = client.post("/console/galleries/console-gone/delete", data={"csrf": csrf, "confirmed": "yes"})
    client.close()
    assert done.status_code == 303
    trail = [(r.action, r.target, r.details) for r in console.accounts.audit_log("acme", 1000)
             if r.target.startswith("console-gone")]
    assert "dora" not in repr(trail)
    assert [(action, target) for action, target, _ in trail] == [
        ("collection.delete", "console-gone"), ("subject.merge", "console-gone/[erased]"),
        ("subject.create", "console-gone/[erased]")]


@pytest.mark.parametrize("headers", [{}, {"Host": "evil.example", "X-Forwarded-Proto": "https"}])
def test_console_without_its_slash_is_sent_on_by_a_relative_address(console, headers) -> None:
    """``/console`` answered ``Location: http://<Host header>/console/``: any host a request named,
    and plain http behind the documented TLS proxy."""
    with httpx.Client(base_url=console.url) as client:
        answer = client.get("/console", headers=headers)
        assert answer.is_redirect and answer.headers["location"] == "/console/", answer.headers
        assert client.get("/console?x=1").headers["location"] == "/console/?x=1"


def test_http_errors_under_console_are_its_pages_and_the_apis_stay_json(console) -> None:
    """A NUL in the query (400), a method no page takes (405) and a static file that is not there
    (404) answered the API's raw JSON; HEAD of a page was 405. The API's answers are unchanged."""
    client, _ = _session(console, "acme_read")
    for method, path, status in (("GET", "/console/events?camera=%00", 400), ("PUT", "/console/galleries", 405),
                                 ("GET", "/console/static/nope.js", 404), ("DELETE", "/console", 405)):
        answer = client.request(method, path)
        assert answer.status_code == status and answer.headers["content-type"].startswith("text/html"), (path, answer)
        assert '{"error"' not in answer.text and "Back to the console" in answer.text, answer.text
    assert "GET" in client.put("/console/galleries").headers["allow"]
    fragment = client.get("/console/events?camera=%00", headers={"HX-Request": "true"})
    assert fragment.status_code == 400 and "<html" not in fragment.text and "NUL" in fragment.text
    head = client.head("/console/galleries")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    assert client.head("/console/static/console.js").status_code == 200
    client.close()
    with httpx.Client(base_url=console.url) as api:
        assert api.get("/v1/collections?x=%00").json()["error"]["code"] == "bad_request"
        assert api.put("/v1/collections").json()["error"]["code"] == "method_not_allowed"
        assert api.get("/v1/nope").headers["content-type"] == "application/json"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_login_or_a_form_sent_from_another_site_is_refused(console, site: str) -> None:
    """The login form's token is its cookie echoed back: a page on another port or a sibling
    subdomain could set that cookie, post its own tenant's key with it and log the user's browser
    into that tenant (their uploads then went to it). Browsers say where a form comes from."""
    with httpx.Client(base_url=console.url) as browser:
        token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/login").text).group(1)
        forged = browser.post("/console/login", data={"key": console.keys["globex_admin"], "csrf": token},
                              headers={"Sec-Fetch-Site": site})
        assert forged.status_code == 403 and "another site" in forged.text, forged.text
        assert "faceatlas_console=" not in forged.headers.get("set-cookie", "")
    client, csrf = _session(console, "acme_write")
    try:
        sent = client.post("/console/galleries", data={"name": f"from-afar-{site}", "csrf": csrf},
                           headers={"Sec-Fetch-Site": site})
        assert sent.status_code == 403
        same = client.post("/console/galleries", data={"name": f"from-here-{site}", "csrf": csrf},
                           headers={"Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 303
        page = client.get("/console/galleries").text
        assert f"from-here-{site}" in page and f"from-afar-{site}" not in page
    finally:
        client.close()


def test_every_answer_says_nosniff_and_no_referrer_and_the_apis_are_not_cached(console) -> None:
    """Console pages had their CSP and no-store, but no ``nosniff`` or ``Referrer-Policy``; the
    static files and every API answer had none, and the API's answers (a new key's secret, an
    export's vectors, search answers) no ``Cache-Control`` either."""
    auth = {"Authorization": f"Bearer {console.keys['acme_admin']}"}
    with httpx.Client(base_url=console.url) as client:
        answers = {
            "page": client.get("/console/login"),
            "static": client.get("/console/static/console.css"),
            "api": client.get("/v1/collections", headers=auth),
            "key": client.post("/v1/keys", json={"scopes": ["read"], "name": "shown-once"}, headers=auth),
            "refused": client.get("/v1/collections"),
            "health": client.get("/healthz"),
        }
    assert answers["key"].status_code == 201 and answers["static"].status_code == 200
    for what, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        assert answer.headers.get("referrer-policy") == "no-referrer", what
    for what in ("api", "key", "refused"):
        assert "no-store" in answers[what].headers.get("cache-control", ""), what
    assert answers["static"].headers.get("cache-control") != "no-store"  # the stylesheet may be cached


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_apis_slash_redirect_names_no_host(console, method: str) -> None:
    """``/v1/collections/`` answered ``Location: http://<Host header>/v1/collections``: any host a
    request named (a proxy passing Host on, a poisoned cache), with the upload sent after it."""
    auth = {"Authorization": f"Bearer {console.keys['acme_admin']}", "Host": "evil.example"}
    with httpx.Client(base_url=console.url) as client:
        answer = client.request(method, "/v1/collections/?limit=5", headers=auth)
        assert answer.status_code == 307 and answer.headers["location"] == "/v1/collections?limit=5", answer.headers
