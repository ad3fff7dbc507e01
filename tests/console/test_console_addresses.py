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
from faceatlas.gallery import AlreadyExists, Gallery

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
