"""Images by URL, fetched only from the origins the operator allow-listed (URL fetching is an
SSRF hole: without a port check a client could make the server fetch its own /metrics or scan
local ports).

An allow-list entry is an origin, ``scheme://host[:port]`` (the port defaults to the scheme's),
or a bare ``host``, which allows that host on the default ports only (http 80, https 443).
The whole fetch (connect, headers, body) has one deadline (``fetch_timeout``); every failure
to fetch an allowed URL is :class:`FetchFailed`."""

from __future__ import annotations

import asyncio

import httpx

from faceatlas.errors import FetchFailed, PayloadTooLarge, UrlFetchDisabled
from faceatlas.settings import ServiceSettings, url_origin


async def fetch_image(settings: ServiceSettings, url: str) -> bytes:
    """The bytes at ``url`` when its origin is allow-listed, within ``settings.fetch_timeout``
    seconds for the whole fetch and ``settings.max_upload_bytes``."""
    if not settings.url_fetch_allowlist:
        raise UrlFetchDisabled("fetching images by URL is disabled on this server")
    origin = url_origin(url)
    if origin is None or origin not in settings.url_fetch_origins:
        shown = f"{origin[0]}://{origin[1]}:{origin[2]}" if origin else url[:100]
        raise UrlFetchDisabled(f"'{shown}' is not an origin on the server's URL allow-list")
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            return await _get(url, settings.max_upload_bytes)
    except TimeoutError as exc:
        raise FetchFailed(f"fetching the URL took longer than {settings.fetch_timeout:g} s") from exc
    except (httpx.HTTPError, OSError) as exc:
        raise FetchFailed(f"fetching the URL failed: {type(exc).__name__}") from exc


async def _get(url: str, limit: int) -> bytes:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client, \
            client.stream("GET", url) as response:
        if response.status_code != 200:
            raise FetchFailed(f"fetching the URL answered HTTP {response.status_code}")
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                raise PayloadTooLarge(f"the image at the URL exceeds {limit} bytes")
    return bytes(data)
