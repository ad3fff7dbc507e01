"""Request dependencies: the caller's key (auth), scope checks, rate limits, quotas, metering,
and image inputs (multipart upload or base64 JSON)."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from fastapi import Request

from faceatlas.db import utcnow
from faceatlas.errors import (
    Forbidden,
    InvalidArgument,
    InvalidImage,
    InvalidInput,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    UrlFetchDisabled,
)
from faceatlas.service.accounts import Principal
from faceatlas.service.db import UsageRecord


@dataclass
class Meter:
    """What one call did, filled by the route, recorded by the metering middleware."""

    principal: Principal
    operation: str
    faces: int = 0


class QuotaCounter:
    """Calls per tenant in the current month, read from the usage table once, then counted here."""

    def __init__(self, load: Callable[[str], int]) -> None:
        self._load = load
        self._counts: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def spend(self, tenant_id: str, quota: int | None) -> float:
        """0.0 when within quota (and counted), else the seconds until the month ends."""
        month = utcnow().strftime("%Y-%m")
        with self._lock:
            cached = self._counts.get(tenant_id)
            count = cached[1] if cached and cached[0] == month else self._load(tenant_id)
            if quota is not None and count >= quota:
                self._counts[tenant_id] = (month, count)
                return _seconds_to_next_month()
            self._counts[tenant_id] = (month, count + 1)
            return 0.0


def _seconds_to_next_month() -> float:
    now = utcnow()
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    return (first - now).total_seconds()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def metered(operation: str, scope: str, *, billable: bool = True) -> Callable[[Request], Meter]:
    """A dependency: authenticate, check ``scope``, rate limit, quota; returns the call's Meter.

    Billable calls count against the tenant's monthly quota and are recorded for the bill;
    account calls (keys, usage, audit) are neither, so a tenant over quota can still see its bill.
    """

    def dependency(request: Request) -> Meter:
        state = request.app.state
        token = bearer_token(request)
        principal = state.accounts.authenticate(token) if token else None
        if principal is None:
            raise Unauthorized("a valid API key is required (Authorization: Bearer fa_...)")
        if not principal.allows(scope):
            raise Forbidden(f"this key lacks the '{scope}' scope")
        wait = state.buckets.take(principal.key_id, principal.rate_per_second, principal.burst)
        if wait > 0:
            state.metrics.rejected.labels("rate_limited").inc()
            raise RateLimited("rate limit exceeded for this key", retry_after=wait)
        meter = Meter(principal, operation)
        if not billable:
            return meter
        quota = principal.monthly_quota
        if quota is None:
            quota = state.settings.default_monthly_quota
        wait = state.quotas.spend(principal.tenant_id, quota)
        if wait > 0:
            state.metrics.rejected.labels("quota_exceeded").inc()
            raise QuotaExceeded("the tenant's monthly call quota is used up", retry_after=wait)
        request.state.meter = meter
        return meter

    return dependency


def usage_row(meter: Meter, status: int, started: float) -> UsageRecord:
    return UsageRecord(
        tenant_id=meter.principal.tenant_id,
        key_id=meter.principal.key_id,
        operation=meter.operation,
        faces=meter.faces,
        status=status,
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


# -- image inputs ------------------------------------------------------------------------------


def image_request_body(*names: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for endpoints that take images as multipart or base64 JSON."""
    files = {name: {"type": "string", "format": "binary"} for name in names}
    b64 = {name: {"type": "string", "description": "base64-encoded image"} for name in names}
    json_props = {**b64, **(extra or {})}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": files, "required": list(names)}},
                "application/json": {"schema": {"type": "object", "properties": json_props, "required": list(names)}},
            },
        }
    }


async def read_images(request: Request, *names: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The named images of a multipart or JSON request, and the JSON body's other fields."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        images = {}
        for name in names:
            part = form.get(name)
            if part is None or isinstance(part, str):
                raise InvalidArgument(f"multipart field '{name}' (a file) is required")
            images[name] = await part.read()
        return images, {}
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise InvalidInput(f"the JSON body does not parse: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidArgument("the JSON body must be an object")
        images = {name: await _decode_json_image(request, body, name) for name in names}
        return images, body
    raise UnsupportedMediaType("send images as multipart/form-data or application/json (base64)")


async def _decode_json_image(request: Request, body: dict[str, Any], name: str) -> bytes:
    value = body.get(name)
    if isinstance(value, dict) and "url" in value:
        return await _fetch_allowed(request, str(value["url"]))
    if not isinstance(value, str):
        raise InvalidArgument(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"'{name}' is not valid base64") from exc


async def _fetch_allowed(request: Request, url: str) -> bytes:
    """Fetch an image URL only when the operator allow-listed its host (URL fetching is an SSRF hole)."""
    allowlist = request.app.state.settings.url_fetch_allowlist
    host = urlparse(url).hostname or ""
    if not allowlist:
        raise UrlFetchDisabled("fetching images by URL is disabled on this server")
    if host not in allowlist or urlparse(url).scheme not in ("http", "https"):
        raise UrlFetchDisabled(f"host '{host}' is not on the server's URL allow-list")
    limit = request.app.state.settings.max_upload_bytes
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise InvalidImage(f"fetching the URL answered HTTP {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise PayloadTooLarge(f"the image at the URL exceeds {limit} bytes")
    return bytes(data)
