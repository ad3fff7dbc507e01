"""Request dependencies, typed: the app's parts (``SettingsDep``, ``DbDep``, ``AccountsDep``,
``PoolDep``, ``AnalyzerDep``, ``TenantGalleryDep``, ...), the caller's key (auth), scope checks,
rate limits, quotas, metering, auditing, and image inputs (multipart upload or base64 JSON).

Routes declare what they need as parameters (``pool: PoolDep``); nothing else reads ``app.state``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from faceatlas.apps.kyc import KycService
from faceatlas.apps.retail import ChartCache
from faceatlas.engine import Calibrations, FaceAnalyzer, decoded_pixels, encoded_pixels
from faceatlas.errors import (
    Forbidden,
    ImageTooLarge,
    InvalidArgument,
    InvalidImage,
    QuotaExceeded,
    RateLimited,
    StateUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from faceatlas.gallery import Gallery
from faceatlas.service.accounts import Accounts, Principal
from faceatlas.service.db import UsageRecord
from faceatlas.service.fetch import fetch_image
from faceatlas.service.idempotency import HEADER as IDEMPOTENCY_HEADER
from faceatlas.service.idempotency import IdempotentRoute
from faceatlas.service.idempotency import claim as claim_idempotency_key
from faceatlas.service.inference import InferencePool
from faceatlas.service.metrics import ServiceMetrics
from faceatlas.service.paths import API_PREFIX  # every API route's path starts with it
from faceatlas.service.redact import holds_credential
from faceatlas.service.shared_state import SharedState, month_of
from faceatlas.service.tenants import gallery_tenant
from faceatlas.settings import ServiceSettings


@dataclass
class Meter:
    """What one call did, filled by the route, recorded by the metering middleware."""

    principal: Principal
    operation: str
    faces: int = 0
    month: str | None = None  # the quota month the call was counted in ("YYYY-MM"), for its settle
    # a call that may change state (the API's idempotent routes, the console's POSTs): once it
    # succeeded, its answer goes even when its usage row cannot be written yet (see meter_calls)
    changes_state: bool = False
    # what the call holds until its answer is sent whole (an export's place among its tenant's: see
    # metered's ``hold``); idempotent, and called too when the Meter is dropped
    release: Callable[[], None] = lambda: None


# -- the app's parts, typed ------------------------------------------------------------------


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_db(request: Request) -> Engine:
    return request.app.state.db


def get_accounts(request: Request) -> Accounts:
    return request.app.state.accounts


def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


def get_analyzer(request: Request) -> FaceAnalyzer:
    return request.app.state.analyzer


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_shared(request: Request) -> SharedState:
    return request.app.state.shared


def get_kyc(request: Request) -> KycService:
    return request.app.state.kyc


def get_gallery(request: Request) -> Gallery:
    return request.app.state.gallery


def get_calibrations(request: Request) -> Calibrations:
    return request.app.state.calibrations


def get_store_charts(request: Request) -> ChartCache:
    return request.app.state.store_charts


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
DbDep = Annotated[Engine, Depends(get_db)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
AnalyzerDep = Annotated[FaceAnalyzer, Depends(get_analyzer)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
SharedDep = Annotated[SharedState, Depends(get_shared)]
GalleryDep = Annotated[Gallery, Depends(get_gallery)]
KycDep = Annotated[KycService, Depends(get_kyc)]
CalibrationsDep = Annotated[Calibrations, Depends(get_calibrations)]
StoreChartsDep = Annotated[ChartCache, Depends(get_store_charts)]


# -- the query string ----------------------------------------------------------------------------


_UNPARSED = object()  # no JSON body kept on request.state (``None`` is the body ``null``)


async def known_request(request: Request) -> None:
    """Refuse query parameters the route does not take (a misspelt ``?fpr=`` would otherwise be
    ignored and the default used): :class:`InvalidArgument` naming them and the ones it takes; and
    a body sent to a route that takes none (``DELETE`` with ``{"force": true}``). Both come from the
    app's OpenAPI document, the API's public contract. Checked by :func:`metered` once the call is
    metered (401, 403, 429 come first): a refusal here is billed as every other 422 (``?after=abc``,
    refused by FastAPI after the route's dependencies); as a router dependency, it ran before the
    metering, and ``?bogus=1`` or a repeated parameter was not recorded at all."""
    path = getattr(request.scope.get("route"), "path_format", "")
    if not path.startswith(API_PREFIX + "/"):  # an included router's route holds its path without the prefix
        path = API_PREFIX + path
    contract = route_contracts(request.app).get((request.method, path))
    if contract is None:
        return
    names, repeatable, takes_body = contract
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        raise InvalidArgument(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)} (this route takes: {takes})")
    given = [name for name, _ in request.query_params.multi_items()]
    twice = sorted({name for name in given if given.count(name) > 1} - repeatable)
    if twice:  # the last one was used, silently (and an Idempotency-Key's sorted fingerprint mixed them up)
        raise InvalidArgument(f"query parameter{'s' if len(twice) > 1 else ''} {', '.join(twice)} given more "
                              "than once: this route takes one")
    if not takes_body and (request.headers.get("content-length", "0") != "0"
                           or "transfer-encoding" in request.headers) and not _empty(await request.body()):
        raise InvalidArgument(f"{request.method} {path} takes no body (what was sent would be ignored)")
    if takes_body and media_type(request) == "application/json":
        with suppress(ValueError, RecursionError):  # a body that does not parse: the route says so
            request.state.json_body = json.loads(await request.body(), object_pairs_hook=unique_fields)


def unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of ``pairs`` (``json.loads``'s ``object_pairs_hook``), or :class:`InvalidArgument`
    naming a field given more than once: ``{"name": "a", "name": "b"}`` used the last, silently, as a
    repeated query parameter would have."""
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen = Counter(name for name, _ in pairs)
    twice = sorted(name for name, count in seen.items() if count > 1)
    raise InvalidArgument(f"JSON field{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))} given more "
                          "than once in one object: send each once")


def _empty(body: bytes) -> bool:
    """Nothing, or a JSON ``{}`` (what some clients send for "no fields")."""
    try:
        return not body.strip() or json.loads(body) == {}
    except (ValueError, RecursionError):
        return False


def route_contracts(app: Any) -> dict[tuple[str, str], tuple[set[str], set[str], bool]]:
    """(method, path) -> the query parameters OpenAPI documents for it, those of them that are lists
    (given once per value), and whether it takes a body; built once per app (at its start: the
    OpenAPI document took 0.5 s, which the first call of every process waited)."""
    cached = getattr(app.state, "route_contracts", None)
    if cached is None:
        cached = {}
        for path, operations in app.openapi().get("paths", {}).items():
            for method, operation in operations.items():
                if isinstance(operation, dict):
                    query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
                    cached[(method.upper(), path)] = ({p["name"] for p in query},
                                                      {p["name"] for p in query if _is_list(p.get("schema", {}))},
                                                      "requestBody" in operation)
        app.state.route_contracts = cached
    return cached


def _is_list(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(_is_list(s) for s in schema.get("anyOf", []))


def check_form(form: Any, takes: Collection[str], *, repeated: Collection[str] = ()) -> None:
    """Refuse a multipart form's fields that the call does not take, and a field it takes once given
    several times (either would be silently ignored): :class:`InvalidArgument` naming them."""
    given = [name for name, _ in form.multi_items()]
    _refuse_unknown(given, takes)
    twice = sorted(name for name in set(given) - set(repeated) if given.count(name) > 1)
    if twice:
        raise InvalidArgument(f"field(s) {', '.join(map(repr, twice))} given more than once: this call takes one")


def _refuse_unknown(given: Iterable[str], takes: Collection[str]) -> None:
    unknown = sorted(set(given) - set(takes))
    if unknown:
        allowed = ", ".join(f"'{name}'" for name in takes)
        raise InvalidArgument(f"unknown field(s) {', '.join(map(repr, unknown))}: this call takes {allowed}")


# -- the caller ----------------------------------------------------------------------------------


def bearer_token(request: Request) -> str | None:
    """The API key the request gives (``Authorization: Bearer`` or ``X-API-Key``), or None. A request
    carrying more than one credential (the header repeated, or both headers) is :class:`Unauthorized`:
    the first was used, silently, so a proxy adding its own key answered as the wrong tenant."""
    given = request.headers.getlist("authorization") + request.headers.getlist("x-api-key")
    if len(given) > 1:
        raise Unauthorized("more than one credential given (Authorization given more than once, or both "
                           "Authorization and X-API-Key): send one API key")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


# How a call gives its key, as the OpenAPI document declares it (securitySchemes, and ``security`` on
# every operation that authenticates): FastAPI documents these; bearer_token reads the headers.
_BEARER = HTTPBearer(scheme_name="bearer", auto_error=False, description="an API key: Authorization: Bearer fa_...")
_API_KEY = APIKeyHeader(name="X-API-Key", scheme_name="apiKey", auto_error=False,
                        description="an API key (fa_...), where an Authorization header cannot be sent")


def authenticate(request: Request, accounts: AccountsDep, shared: SharedDep,
                 _bearer: Annotated[Any, Depends(_BEARER)] = None,
                 _api_key: Annotated[Any, Depends(_API_KEY)] = None) -> Principal:
    """The caller of the request (its API key, looked up through the shared short-lived cache),
    or :class:`Unauthorized` (answered with ``WWW-Authenticate: Bearer``); a call without a key
    header that gives one in its query string is told that a key in the URL is refused."""
    token = bearer_token(request)
    principal = shared.principal(token, accounts.authenticate) if token else None
    if principal is None and token is None and holds_credential(request.scope.get("query_string", b"")):
        # README: keys in the query string are refused (and redacted from the access log): say so
        raise Unauthorized("an API key in the URL is refused (it would be logged): send it in "
                           "Authorization: Bearer or X-API-Key")
    if principal is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer fa_...)")
    request.state.tenant = principal.tenant_id  # the access line's tenant
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


IdempotencyKeyHeader = Annotated[str | None, Header(
    alias=IDEMPOTENCY_HEADER, min_length=1, max_length=200,
    description="a retry with the same key (same call: method, path, query and body) runs once and gets the "
    "first answer again (kept 24 h, FACEATLAS_IDEMPOTENCY_SECONDS), neither billed nor counted; the same key "
    "for another call is 422 idempotency_key_reused")]


async def refuse_idempotency_key(request: Request, key: Annotated[str | None, Header(
        alias=IDEMPOTENCY_HEADER, include_in_schema=False)] = None) -> None:
    """A dependency of the calls that issue a key (create, rotate), declared after their gate: an
    ``Idempotency-Key`` is :class:`InvalidArgument`. Their answer holds the new key's secret, which
    is stored nowhere (only its hash), so a retry cannot be given the first answer again; the header
    was ignored without a word and a retried creation made a second live key. The header is not in
    their OpenAPI parameters (a generated client offered it, as an option, to be refused always):
    their descriptions say it is refused."""
    if key is not None:
        raise InvalidArgument(f"{request.method} {request.url.path} takes no {IDEMPOTENCY_HEADER}: its answer holds "
                              "the new key's secret, kept nowhere, so a retry cannot be answered again; after a lost "
                              "answer, list the keys (GET /v1/keys) and revoke any you did not get")


NoIdempotencyKey = Annotated[None, Depends(refuse_idempotency_key)]


OPERATION_ATTRIBUTE = "faceatlas_operation"  # set on each :func:`metered` dependency: its operation
GATE_ATTRIBUTE = "faceatlas_gate"  # and its gate: (operation, scope, billable), for :class:`MeteredRoute`
LIMITS_ATTRIBUTE = "faceatlas_limits"  # and its 429 reasons, for :func:`route_error_answers`
RATE_LIMITED = "rate_limited: the key's rate limit (Retry-After says when)"
QUOTA_EXCEEDED = "quota_exceeded: the tenant's monthly call quota is used up (Retry-After: the next month)"


def metered(operation: str, scope: str, *, billable: bool = True, idempotent: bool = False,
            hold: Callable[[Request, Principal], Callable[[], None]] | None = None,
            held: str = "") -> Callable[..., Any]:
    """A dependency: authenticate, check ``scope``, rate limit, quota; returns the call's Meter.

    Billable calls count against the tenant's monthly quota and are recorded for the bill;
    account calls (keys, usage, audit) are neither, so a tenant over quota can still see its bill.
    ``idempotent``: the call honours an ``Idempotency-Key`` header (see
    :mod:`faceatlas.service.idempotency`; its router's ``route_class`` is ``IdempotentRoute``),
    claimed after the rate limit and before the quota: a replay is answered over quota, unbilled.
    The query and body are then held to the route's contract (:func:`known_request`), a metered call.
    ``hold`` (not with ``idempotent``): after the rate limit and before the quota, takes what the call
    holds while it runs (a place among its tenant's exports) or raises its refusal (a 429, neither
    counted nor recorded, as the rate limit's); what it returns frees it (:attr:`Meter.release`);
    ``held``: its refusal, in words, for the operation's OpenAPI 429 (:func:`route_error_answers`).
    """
    limits = [RATE_LIMITED] + ([QUOTA_EXCEEDED] if billable else []) + ([held] if held else [])

    def held_call(request: Request, principal: Principal) -> Meter:
        meter = admit_call(request, principal, operation, scope)
        assert hold is not None
        meter.release = release = hold(request, principal)
        weakref.finalize(meter, release)  # a call that fails before its route frees it does not keep it
        if billable:
            try:
                count_call(request, meter)
            except BaseException:
                release()
                raise
        return meter

    async def dependency(request: Request, principal: PrincipalDep) -> Meter:
        request.state.gated = True
        if hold is None:
            meter = await run_in_threadpool(meter_call, request, principal, operation, scope, billable=billable)
        else:
            meter = await run_in_threadpool(held_call, request, principal)
        try:
            await known_request(request)
        except BaseException:
            meter.release()  # in the loop: a place's release never blocks it (SharedState.take_slot)
            raise
        return meter

    setattr(dependency, OPERATION_ATTRIBUTE, operation)
    setattr(dependency, GATE_ATTRIBUTE, (operation, scope, billable))
    setattr(dependency, LIMITS_ATTRIBUTE, limits)
    if not idempotent:
        return dependency

    async def idempotent_dependency(request: Request, principal: PrincipalDep,
                                    key: IdempotencyKeyHeader = None) -> Meter:
        request.state.gated = True
        if key is None:
            meter = await run_in_threadpool(meter_call, request, principal, operation, scope, billable=billable)
            meter.changes_state = True
            await known_request(request)
            return meter
        # the key is looked at before the quota: a replay of a stored answer is answered even when the
        # tenant's quota is used up since, neither billed nor counted (it still spends the key's rate,
        # as every request does); a new call is then counted, and a refusal frees its key (IdempotentRoute)
        meter = await run_in_threadpool(admit_call, request, principal, operation, scope)
        meter.changes_state = True
        try:  # before the key is looked at (a call the route does not take claims none), billed as any 422
            await known_request(request)
        except InvalidArgument:
            if billable:
                await run_in_threadpool(count_call, request, meter)
            raise
        await claim_idempotency_key(request, get_shared(request), principal.tenant_id, key)
        if billable:
            await run_in_threadpool(count_call, request, meter)
        return meter

    setattr(idempotent_dependency, OPERATION_ATTRIBUTE, operation)
    setattr(idempotent_dependency, GATE_ATTRIBUTE, (operation, scope, billable))
    setattr(idempotent_dependency, LIMITS_ATTRIBUTE, limits)
    return idempotent_dependency


def route_operation(route: object) -> str | None:
    """The operation a routed call is metered as (its :func:`metered` dependency's), known before the
    call is metered: a call refused by its key, scope, rate or quota (401, 403, 429) is counted in the
    metrics under it, not under "other"."""
    gate = _route_gate(route)
    return gate[0] if gate is not None else None


def _route_gate(route: object) -> tuple[str, str, bool] | None:
    """(operation, scope, billable) of the route's :func:`metered` dependency, or None."""
    dependant = getattr(route, "dependant", None)
    pending = list(getattr(dependant, "dependencies", []))
    while pending:
        child = pending.pop()
        gate = getattr(child.call, GATE_ATTRIBUTE, None)
        if isinstance(gate, tuple):
            return gate
        pending.extend(child.dependencies)
    return None


def _route_calls(route: object) -> list[Any]:
    """Every dependency's callable of ``route`` (the whole tree, each once)."""
    pending = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    calls: list[Any] = []
    while pending:
        child = pending.pop()
        if child.call not in calls:
            calls.append(child.call)
        pending.extend(child.dependencies)
    return calls


def route_error_answers(route: object) -> dict[str, str]:
    """The error statuses ``route`` can answer by the dependencies it uses, and why, for its OpenAPI
    ``responses`` (the one place they are derived; the app adds the ErrorOut body): 401 where it
    authenticates (:func:`authenticate`), 403 and 429 where it is :func:`metered` (its scope; the key's
    rate, the tenant's quota when billable, a ``hold``'s refusal), 404 where its path names objects, 503
    where it runs inference (the :class:`InferencePool`'s queue: ``overloaded``)."""
    calls = _route_calls(route)
    answers: dict[str, str] = {}
    if authenticate in calls:
        answers["401"] = ("unauthorized: no API key, one unknown or revoked, more than one credential, "
                          "or a key in the URL")
    gate = _route_gate(route)
    if gate is not None:
        answers["403"] = f"forbidden: the key lacks the '{gate[1]}' scope"
        limits: list[str] = next((getattr(call, LIMITS_ATTRIBUTE) for call in calls
                                  if hasattr(call, LIMITS_ATTRIBUTE)), [])
        answers["429"] = "; ".join(limits)
        answers["422"] = "validation_error: a query parameter it does not take, or a value out of its range"
    names = [param.name for param in getattr(getattr(route, "dependant", None), "path_params", [])]
    if names and not getattr(getattr(route, "endpoint", None), LOOKS_NOTHING_UP, False):
        answers["404"] = f"not_found: no such {' or '.join(names)} (of the caller's tenant)"
    unavailable = ["database_unavailable or state_unavailable: the database, or the shared state (Redis), "
                   "cannot be reached now (Retry-After)"] if gate is not None else []
    if get_pool in calls:
        unavailable.append("overloaded: the inference queue is full, or holds the tenant's share of it already, "
                           "or the server is shutting down (Retry-After)")
    if unavailable:
        answers["503"] = "; ".join(unavailable)
    return answers


LOOKS_NOTHING_UP = "_faceatlas_looks_nothing_up"
F = TypeVar("F", bound=Callable[..., Any])


def looks_nothing_up(endpoint: F) -> F:
    """On a route whose path names no stored object (a camera's counts: none yet is an empty
    answer): no 404 in its OpenAPI answers (:func:`route_error_answers`)."""
    setattr(endpoint, LOOKS_NOTHING_UP, True)
    return endpoint


class MeteredRoute(IdempotentRoute):
    """The route class of the API's routers that take a JSON body. FastAPI parses the body before it
    runs a route's dependencies, so a body that does not parse (``{``; a number of 5,000 digits or
    a nesting 100,000 deep: its 400 "There was an error parsing the body") was answered 422 (or 400)
    before the key was looked at: without a key, or with one lacking the scope, and never billed,
    where the README has 401/403 first and every metered 422 billed. Such a refusal now passes the
    route's :func:`metered` gate first (its 401, 403 or 429 is the answer), then is answered 422
    ``validation_error`` and billed as every 422 is."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gate = _route_gate(self)

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as invalid:
                if gate is None or getattr(request.state, "gated", False) or not any(
                        error.get("type") == "json_invalid" for error in invalid.errors()):
                    raise
                await _gate_unparsed(request, gate)
                raise
            except HTTPException as refused:
                why = _unparsed(refused)
                if gate is None or getattr(request.state, "gated", False) or why is None or self.body_field is None:
                    raise  # a body over the upload limit (413) or a client gone mid-upload: not served, not billed
                await _gate_unparsed(request, gate)
                raise InvalidArgument(f"the JSON body does not parse ({why})") from None

        return route


def _unparsed(refused: HTTPException) -> str | None:
    """Why FastAPI's 400 "There was an error parsing the body" is the body's own fault, in words, or
    None for one that is not (FastAPI answers any error of reading the body so: a client that hung
    up mid-upload, a body cut off at the upload limit, which the limit answers 413)."""
    cause = refused.__cause__
    if refused.status_code != 400:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return "it is not UTF-8"
    if isinstance(cause, RecursionError):
        return "nested too deep"
    if isinstance(cause, ValueError):  # Python's limit on an integer's digits
        return "a number too long"
    return None


async def _gate_unparsed(request: Request, gate: tuple[str, str, bool]) -> None:
    """The gate of a call whose body FastAPI refused before the call's dependencies ran."""
    operation, scope, billable = gate
    request.state.gated = True
    principal = await run_in_threadpool(authenticate, request, get_accounts(request), get_shared(request))
    await run_in_threadpool(meter_call, request, principal, operation, scope, billable=billable)


def unmeter(request: Request, meter: Meter) -> None:
    """The call is not one (a replay, a refusal after metering): neither recorded nor counted."""
    if getattr(request.state, "meter", None) is meter:
        request.state.meter = None
        get_shared(request).settle(meter.principal.tenant_id, False, meter.month)


def meter_call(request: Request, principal: Principal, operation: str, scope: str, *, billable: bool = True) -> Meter:
    """Check ``scope``, the key's rate limit and the tenant's quota for one call of ``operation``;
    a billable call's Meter is left for the metering middleware. The one gate of the API's routes
    (through :func:`metered`) and of the web console's actions: :func:`admit_call`, then for a
    billable call :func:`count_call`."""
    meter = admit_call(request, principal, operation, scope)
    if billable:
        count_call(request, meter)
    return meter


def admit_call(request: Request, principal: Principal, operation: str, scope: str) -> Meter:
    """The first half of :func:`meter_call`: ``scope`` and the key's rate limit (one token); the
    call's Meter, not counted against the quota yet."""
    request.state.tenant = principal.tenant_id  # the access line's tenant (the console's calls too)
    if not principal.allows(scope):
        raise Forbidden(f"this key lacks the '{scope}' scope")
    wait = get_shared(request).take(principal.key_id, principal.rate_per_second, principal.burst)
    if wait > 0:
        get_metrics(request).rejected.labels("rate_limited").inc()
        raise RateLimited("rate limit exceeded for this key", retry_after=wait)
    return Meter(principal, operation)


def count_call(request: Request, meter: Meter) -> None:
    """The second half of :func:`meter_call` for a billable call: one call of the tenant's monthly
    quota spent (:class:`QuotaExceeded` when it is used up), and ``meter`` left for the metering
    middleware, which records the call and settles the count."""
    principal = meter.principal
    quota = principal.monthly_quota
    if quota is None:
        quota = get_settings(request).default_monthly_quota
    meter.month = month_of()
    wait = get_shared(request).spend(principal.tenant_id, quota, meter.month)
    if wait > 0:
        get_metrics(request).rejected.labels("quota_exceeded").inc()
        raise QuotaExceeded("the tenant's monthly call quota is used up", retry_after=wait)
    request.state.meter = meter


def get_tenant_gallery(request: Request, principal: PrincipalDep, gallery: GalleryDep) -> Gallery:
    """The caller's tenant view of the gallery (one per tenant, cached)."""
    return tenant_gallery(request, principal)


def tenant_gallery(request: Request, principal: Principal) -> Gallery:
    """``principal``'s tenant view of the app's gallery (one per tenant, cached)."""
    gallery = get_gallery(request)
    views: dict[str, Gallery] = request.app.state.tenant_galleries
    if principal.tenant_id not in views:
        views[principal.tenant_id] = gallery.for_tenant(gallery_tenant(principal.tenant_id))
    return views[principal.tenant_id]


TenantGalleryDep = Annotated[Gallery, Depends(get_tenant_gallery)]


# -- auditing ------------------------------------------------------------------------------------


@dataclass
class AuditEntry:
    """The audit record of one call: ``target`` from the route's path, ``details`` filled by the route."""

    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    skip: bool = False  # set by a route that succeeded without changing anything: no record


def audited(action: str, target: str = "{collection}") -> Any:
    """Declared on a route (``dependencies=[audited(...)]`` or as an ``AuditEntry`` parameter):
    once the route succeeded, ``action`` on ``target`` (formatted with the path parameters) is
    written to the tenant's audit trail, before the answer leaves. A failed call audits nothing.
    The route's change committed already: a database that drops now leaves the record waiting in
    the process (:meth:`Accounts.audit_committed`), written once the database is back, and the
    call is answered its success (not a 503 saying nothing was written, with its
    ``Idempotency-Key`` released for a retry that would act again)."""

    async def dependency(request: Request, principal: PrincipalDep, accounts: AccountsDep) -> AsyncIterator[AuditEntry]:
        entry = AuditEntry(action, target.format(**request.path_params))
        yield entry
        if getattr(request.state, "replayed", False) or entry.skip:  # a replay (the call ran once), or no change
            return
        await run_in_threadpool(accounts.audit_committed, entry.action, entry.target, principal.tenant_id,
                                principal.key_id, entry.details or None)

    return Depends(dependency, scope="function")


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


# What the 4xx answers of a call that reads its body by hand (images, files) say, in its OpenAPI
# ``responses`` (:func:`error_answers`); the app gives each the error body (ErrorOut) and adds the
# 400 every call can get (a NUL in the URL).
UNDECODABLE_IMAGE = "invalid_image, empty_image or truncated_image: an image that does not decode"
IMAGE_BY_URL = ("url_fetch_disabled or fetch_failed: an image by URL on an origin the server does not allow, "
                "or that could not be fetched")
UNPARSED_BODY = "bad_request: a multipart body that does not parse"
# a JSON body that does not parse is 422 on every route taking JSON (MeteredRoute answers FastAPI's so)
UNPARSED_JSON = "validation_error: a JSON body that does not parse"
TOO_LARGE = "image_too_large or payload_too_large: an image over the pixel limit, or a body over the size limit"
MEDIA_TYPES_TAKEN = "unsupported_media_type: a body sent as another media type than those listed"


def error_answers(*bad_request: str, too_large: str = TOO_LARGE,
                  media_types: str | None = MEDIA_TYPES_TAKEN) -> dict[str, Any]:
    """OpenAPI ``responses`` of a call that reads its body by hand (``openapi_extra``, merged into the
    operation): its 400 (``bad_request``: what it refuses so, one reason each), 413 and 415 (None:
    a call that answers none). A client generated from the document reads them as the error body
    (the app's ``_openapi`` adds it, and the 422 of a JSON body that does not parse)."""
    answers = {"400": {"description": "; ".join(bad_request)}, "413": {"description": too_large}}
    return answers | ({} if media_types is None else {"415": {"description": media_types}})


def image_request_body(*names: str, extra: dict[str, Any] | None = None, form: dict[str, Any] | None = None,
                       instead: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI ``requestBody`` (and error answers) for endpoints that take images as multipart or
    JSON: a base64 string, or ``{"url": ...}`` (fetched from an allowed origin; no other field).
    ``extra``: the JSON body's other fields; ``form``: the multipart form's (the retail members'
    form listed its image alone); ``instead``: the fields of a JSON body that replaces the images
    (a search's ``embedding`` and ``recognizer_id``), each required. No other field is taken
    (``additionalProperties: false``): :func:`read_images` refuses it (422)."""
    files = {name: {"type": "string", "format": "binary"} for name in names} | (form or {})
    url = {"type": "string", "description": "the image's http(s) URL, on an origin the server allows"}
    by_url = {"type": "object", "properties": {"url": url}, "required": ["url"], "additionalProperties": False}
    b64 = {name: {"oneOf": [{"type": "string", "description": "base64-encoded image"}, by_url]} for name in names}
    json_props = {**b64, **(extra or {})}
    as_json: dict[str, Any] = {"type": "object", "properties": json_props, "required": list(names),
                               "additionalProperties": False}
    if instead:
        as_json = {"oneOf": [as_json, {"type": "object", "properties": instead, "required": list(instead),
                                       "additionalProperties": False}]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": files, "required": list(names),
                                                   "additionalProperties": False}},
                "application/json": {"schema": as_json},
            },
        },
        "responses": error_answers(UNDECODABLE_IMAGE, IMAGE_BY_URL, UNPARSED_BODY),
    }


def media_type(request: Request) -> str:
    """The request body's media type, lowercased without its parameters (``Multipart/Form-Data;
    boundary=...`` is ``multipart/form-data``: media types are case-insensitive, as Starlette
    parses them)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def json_body(request: Request) -> Any:
    """The parsed JSON body, or an ``InvalidArgument`` (422) saying why it does not parse (a field given twice
    in one object is refused: :func:`unique_fields`). Parsed once: :func:`known_request` keeps what it
    parsed on ``request.state``."""
    parsed = getattr(request.state, "json_body", _UNPARSED)
    if parsed is not _UNPARSED:
        return parsed
    try:
        return json.loads(await request.body(), object_pairs_hook=unique_fields)
    except (ValueError, RecursionError) as exc:  # the same answer as a JSON body of the routes FastAPI parses
        raise InvalidArgument(f"the JSON body does not parse ({_why_unparsed(exc)})") from exc


def _why_unparsed(exc: BaseException) -> str:
    """Why ``json.loads`` refused a body, in the words of :class:`MeteredRoute`'s answer (422
    ``validation_error`` on every route taking JSON: the image routes said 400 ``bad_request``)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"at character {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deep"
    return "a number too long"  # Python's limit on an integer's digits


async def read_images(request: Request, *names: str, fields: Collection[str] = (),
                      repeated: Collection[str] = ()) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The named images of a multipart or JSON request, and its other ``fields`` (a form's text
    fields, a JSON body's values); any other field, or a field given twice, is refused
    (``validation_error``, :func:`check_form`), as the JSON bodies of the other routes are, rather
    than silently ignored, but for the fields of ``repeated``: each is the list of its values (a
    form's field given once per value, ``-F purposes=a -F purposes=b``; a JSON body's one value in a
    list). An image that its header shows empty, not an image, or over the pixel
    limit is refused here, before any work (the same answer from every route: the album, the
    store's members); large images spend more of the key's rate (see :func:`charge_pixels`)."""
    images, given = await _read_images(request, names, fields, repeated)
    limit = get_analyzer(request).max_pixels
    _spend_pixels(request, [decoded_pixels(data, max_pixels=limit) for data in images.values()])
    return images, given


def charge_pixels(request: Request, images: Iterable[bytes]) -> None:
    """Spend one more rate-limit token of the caller's key per ``pixels_per_token`` decoded
    pixels beyond the first share of each image (read from the header, before decoding): a
    client sending small files of huge images pays for the pixels, not the bytes. An image over the
    pixel limit costs nothing here: decoding refuses it (413), and a 429 would ask for a retry that
    cannot succeed; so is a call whose images cost more tokens than the key's bucket holds (its
    burst), however long the client waits (413 ``image_too_large``: it answered 429 to every retry)."""
    limit = get_analyzer(request).max_pixels
    _spend_pixels(request, [pixels for pixels in map(encoded_pixels, images) if pixels <= limit])


def _spend_pixels(request: Request, sizes: list[int]) -> None:
    """:func:`charge_pixels` for images whose pixels are counted already."""
    meter: Meter | None = getattr(request.state, "meter", None)
    settings = get_settings(request)
    extra = sum(max(0, math.ceil(pixels / settings.pixels_per_token) - 1) for pixels in sizes)
    if meter is None or extra == 0:
        return
    principal = meter.principal
    shared = get_shared(request)
    if extra + 1 > principal.burst:  # never payable: the bucket holds at most the burst, this call's token included
        request.state.meter = None
        shared.settle(principal.tenant_id, False, meter.month)
        raise ImageTooLarge(f"the image(s) cost {extra + 1} calls of {settings.pixels_per_token:,} pixels, more than "
                            f"this key's burst ({principal.burst:g}) can ever pay: send smaller images (or fewer in "
                            "one call), or ask for a key of a larger burst")
    try:
        wait = shared.take(principal.key_id, principal.rate_per_second, principal.burst, cost=extra)
    except StateUnavailable:
        request.state.meter = None
        shared.settle(principal.tenant_id, False, meter.month)
        raise
    if wait > 0:  # refused like any rate-limited call: neither recorded nor counted
        request.state.meter = None
        shared.settle(principal.tenant_id, False, meter.month)
        get_metrics(request).rejected.labels("rate_limited").inc()
        raise RateLimited(f"rate limit exceeded for this key: the image(s) cost {extra + 1} calls of "
                          f"{settings.pixels_per_token:,} pixels", retry_after=wait)


async def _read_images(request: Request, names: Collection[str], fields: Collection[str],
                       repeated: Collection[str] = ()) -> tuple[dict[str, bytes], dict[str, Any]]:
    content_type = media_type(request)
    if content_type == "multipart/form-data":
        form = await request.form()
        check_form(form, (*names, *fields), repeated=repeated)
        images = {}
        for name in names:
            part = form.get(name)
            if part is None or isinstance(part, str):
                raise InvalidArgument(f"multipart field '{name}' (a file) is required")
            images[name] = await part.read()
        return images, {key: form.getlist(key) if key in repeated else value
                        for key, value in form.items() if key not in images}
    if content_type == "application/json":
        body = await json_body(request)
        if not isinstance(body, dict):
            raise InvalidArgument("the JSON body must be an object")
        _refuse_unknown(body, (*names, *fields))
        images = {name: await _decode_json_image(request, body, name) for name in names}
        return images, {key: [value] if key in repeated else value
                        for key, value in body.items() if key not in images}
    raise UnsupportedMediaType("send images as multipart/form-data or application/json (base64)")


async def _decode_json_image(request: Request, body: dict[str, Any], name: str) -> bytes:
    """A JSON image: a base64 string, or ``{"url": "https://..."}`` (that one field, a string: ``null``
    or ``5`` was fetched as the URL 'None' or '5', and another field was ignored)."""
    value = body.get(name)
    if isinstance(value, dict) and "url" in value:
        if unknown := sorted(set(value) - {"url"}):
            raise InvalidArgument(f"'{name}': unknown field(s) {', '.join(map(repr, unknown))}: an image by URL "
                                  "is {\"url\": \"https://...\"}")
        if not isinstance(value["url"], str):
            raise InvalidArgument(f"'{name}.url' must be a string: the image's http(s) URL")
        return await fetch_image(get_settings(request), value["url"])
    if not isinstance(value, str):
        raise InvalidArgument(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"'{name}' is not valid base64") from exc
