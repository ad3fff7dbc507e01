"""The console's addresses and destructive forms against a real server: every link and asset is a
root-relative path (not the scheme and host of the request), a destructive form does nothing
until it is confirmed (with console.js or without it), path segments of dots reach their own
page, and the event feed refuses a filter out of its rules before it starts."""

from __future__ import annotations

import contextlib
import re

import httpx
import pytest

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
