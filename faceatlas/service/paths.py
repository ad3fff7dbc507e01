"""The API's paths that more than its routes name: every route's prefix, and the paths of a
gallery's collections and subjects, of an album and of a retail store's members, where an erasure
finds the stored answers of the calls on them (``Idempotency-Key``), whichever door erased them
(the API, the console, the CLI)."""

from __future__ import annotations

API_PREFIX = "/v1"  # every API route's path starts with it
COLLECTIONS_PATH = f"{API_PREFIX}/collections"
CONSOLE_PREFIX = "/console"  # the web console's pages


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the web console's (``/console`` or under it), not the API's."""
    return path == CONSOLE_PREFIX or path.startswith(f"{CONSOLE_PREFIX}/")


def collection_path(collection: str) -> str:
    """The API path of the gallery collection ``collection`` (what the paths of calls on it start with)."""
    return f"{COLLECTIONS_PATH}/{collection}"


def subjects_path(collection: str) -> str:
    """The API path of the subjects of ``collection`` (a subject's own path is under it)."""
    return f"{collection_path(collection)}/subjects"


def album_path(album: str) -> str:
    """The API path of the album ``album`` of a tenant (what the paths of calls on it, and of its
    stored answers, start with)."""
    return f"{API_PREFIX}/albums/{album}"


def retail_member_path(store_id: str, member_id: str) -> str:
    """The API path of the member ``member_id`` of the retail store ``store_id`` (what the paths of
    calls on them start with; their enrolment is a POST to its parent), as a request's ``url.path``
    gives it: a store id may hold ``?``, ``#`` and ``\\``, which Starlette's URL encodes (the paths of
    the stored answers of calls on a member of store ``shop#1`` were not matched, and kept)."""
    return f"{API_PREFIX}/retail/stores/{_as_in_url(store_id)}/members/{_as_in_url(member_id)}"


def _as_in_url(segment: str) -> str:
    """``segment`` as Starlette's ``Request.url.path`` writes it (``starlette.datastructures.URL``)."""
    return segment.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
