"""Photos uploaded through a console form, each one metered call as the API bills it: its scope,
rate and quota checked, its usage row written and its quota settled as soon as that photo is
done (a process killed mid-form had billed none of the photos it had enrolled)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

from fastapi import Request, UploadFile
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from faceatlas.errors import (
    DatabaseUnavailable,
    FaceAtlasError,
    Forbidden,
    IdempotencyInFlight,
    QuotaExceeded,
    RateLimited,
    StateUnavailable,
)
from faceatlas.service.accounts import Principal, billed
from faceatlas.service.console.base import gate
from faceatlas.service.deps import Meter, charge_pixels, get_shared, usage_row
from faceatlas.service.errors import client_message
from faceatlas.service.shared_state import StoredAnswer

_log = logging.getLogger(__name__)

MAX_PHOTOS = 20


async def audit(accounts: Any, principal: Principal, action: str, target: str, details: dict | None = None) -> None:
    """One line of the tenant's audit trail for a console action (as the API's ``audited`` writes)."""
    await run_in_threadpool(accounts.audit_committed, action, target, principal.tenant_id, principal.key_id, details)
# what to do with one photo's bytes under its meter: the outcome's extra fields (e.g. faces found)
PhotoWork = Callable[[bytes, Meter], Awaitable[dict[str, Any]]]


async def each_photo(request: Request, principal: Principal, operation: str, scope: str,
                     photos: Sequence[UploadFile], work: PhotoWork, *, ok_status: int = 200, once: str = "",
                     path: str = "") -> list[dict[str, Any]]:
    """``work`` on each of the first :data:`MAX_PHOTOS` photos, one metered ``operation`` call each;
    every photo's outcome (``file``, ``ok`` and the work's fields, or ``code``/``message``). A refused
    call (rate, quota) is neither recorded nor billed; a failed one is recorded with its status. A key
    without ``scope`` is refused up front (403), as the API refuses its request, not photo by photo.

    With the form's one-time token ``once``, each photo done is also kept as a stored answer of its
    own (under ``path``, the matching API call's, so that an erasure replaces it), as an API call
    with an ``Idempotency-Key``: a form sent again after its first sending died mid-way (a killed
    process; its claim on the form frees within seconds) does the photos it had not done and
    answers the others' first outcome (``sent_before``), neither done nor billed twice."""
    if not principal.allows(scope):
        raise Forbidden(f"this key lacks the '{scope}' scope")
    shared = get_shared(request)
    call = hashlib.sha256(f"console-photo\0{request.url.path}".encode()).hexdigest()
    outcomes: list[dict[str, Any]] = []
    for index, upload in enumerate(photos[:MAX_PHOTOS]):
        key = f"console:{once}:{index}" if once else None
        if key is not None:
            try:
                first = await run_in_threadpool(shared.begin_idempotent, principal.tenant_id, key, call)
            except IdempotencyInFlight as exc:  # an earlier sending is on it still (or died on it: freed soon)
                outcomes.append({"file": upload.filename, "ok": False, "code": exc.code,
                                 "message": "an earlier sending of this form is still on this photo: send the "
                                            "form again in a few seconds"})
                continue
            if first is not None:
                outcomes.append({**json.loads(first.body), "sent_before": True} if first.status == 200 else
                                {"file": upload.filename, "ok": False, "code": "not_found",
                                 "message": "this photo was done before, and what it added was erased since"})
                continue
        try:
            outcome, final = await _one_photo(request, principal, operation, scope, upload, work, ok_status)
        except asyncio.CancelledError:  # no I/O while cancelled: the claim frees as a dead process's does
            if key is not None:
                shared.abandon(principal.tenant_id, key)
            raise
        except BaseException:
            if key is not None:
                await run_in_threadpool(shared.finish_idempotent, principal.tenant_id, key, None, call)
            raise
        if key is not None:  # done or refused for good: kept; else (busy, a fault) free: a new sending does it
            answer = StoredAnswer(200, json.dumps(outcome).encode(), "application/json", path) if final else None
            await run_in_threadpool(shared.finish_idempotent, principal.tenant_id, key, answer, call)
        outcomes.append(outcome)
    request.state.meter = None  # this request's calls are recorded here, one row per photo
    return outcomes


async def _one_photo(request: Request, principal: Principal, operation: str, scope: str,
                     upload: UploadFile, work: PhotoWork, ok_status: int) -> tuple[dict[str, Any], bool]:
    """One photo of :func:`each_photo`: its outcome, its usage row written (as the metering
    middleware writes a call's: tried again, and kept in memory for a photo done while the database
    fails) and its quota settled; and whether the outcome is final (done, or refused for good: a
    4xx but rate and quota, which a later sending may pass), so that a sending again answers it
    rather than doing and billing it again."""
    started, status, meter = time.perf_counter(), ok_status, None
    try:
        meter = await gate(request, principal, operation, scope)
        data = await upload.read()
        await run_in_threadpool(charge_pixels, request, [data])
        outcome = {"file": upload.filename, "ok": True, **await work(data, meter)}
    except (RateLimited, QuotaExceeded) as exc:
        meter = None
        outcome = {"file": upload.filename, "ok": False, "code": exc.code, "message": str(exc)}
    except FaceAtlasError as exc:
        status = exc.status
        if getattr(request.state, "meter", None) is not meter:
            meter = None  # the gate gave this call back already (e.g. shared state unavailable)
        outcome = {"file": upload.filename, "ok": False, "code": exc.code, "message": client_message(exc)}
    except OperationalError:  # the database dropped: that photo's 503, as the API answers it
        status = DatabaseUnavailable.status
        if getattr(request.state, "meter", None) is not meter:
            meter = None
        outcome = {"file": upload.filename, "ok": False, "code": DatabaseUnavailable.code,
                   "message": "the database is unavailable; nothing was written"}
    except Exception:  # noqa: BLE001 - a fault on one photo is that photo's 500, as one API call's
        # (its traceback logged): the photos done before it stay recorded and billed, and the form's
        # outcome (kept under its one-time token) says which were enrolled, so a second sending does
        # not enrol them again
        # without the file's name: a photo's file name often is its person's name
        _log.exception("console %s: a photo of the form failed", operation)
        status = 500
        if getattr(request.state, "meter", None) is not meter:
            meter = None
        outcome = {"file": upload.filename, "ok": False, "code": "internal", "message": "internal server error"}
    if meter is None:  # refused before it was counted: nothing billed, nothing final
        return outcome, False
    request.state.meter = None  # billed now, not when the form is over: a kill after it keeps its row
    row, usage, charged = usage_row(meter, status, started), request.app.state.usage, billed(status)
    try:
        await run_in_threadpool(usage.record, row)
    except SQLAlchemyError:
        if status >= 400:  # a refusal that cannot be billed now is not billed: a new sending tries it again
            charged = False
            status = DatabaseUnavailable.status
        else:  # done: billed once the database takes the row
            usage.keep(row)
    with suppress(StateUnavailable):  # the outcome stands; reconciliation mends the counter
        await run_in_threadpool(get_shared(request).settle, principal.tenant_id, charged, meter.month)
    return outcome, status < 500 and outcome.get("code") not in (RateLimited.code, QuotaExceeded.code)
