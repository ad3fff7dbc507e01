"""Photos uploaded through a console form, each one metered call as the API bills it: its scope,
rate and quota checked, its usage row written and its quota settled once the batch is done."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request, UploadFile
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from faceatlas.errors import DatabaseUnavailable, FaceAtlasError, Forbidden, QuotaExceeded, RateLimited
from faceatlas.service.accounts import Principal, billed
from faceatlas.service.console.base import gate
from faceatlas.service.db import UsageRecord
from faceatlas.service.deps import Meter, charge_pixels, get_shared, usage_row
from faceatlas.service.errors import client_message

_log = logging.getLogger(__name__)

MAX_PHOTOS = 20


async def audit(accounts: Any, principal: Principal, action: str, target: str, details: dict | None = None) -> None:
    """One line of the tenant's audit trail for a console action (as the API's ``audited`` writes)."""
    await run_in_threadpool(accounts.audit, action, target, principal.tenant_id, principal.key_id, details)
# what to do with one photo's bytes under its meter: the outcome's extra fields (e.g. faces found)
PhotoWork = Callable[[bytes, Meter], Awaitable[dict[str, Any]]]


async def each_photo(request: Request, principal: Principal, accounts: Any, operation: str, scope: str,
                     photos: Sequence[UploadFile], work: PhotoWork, *, ok_status: int = 200) -> list[dict[str, Any]]:
    """``work`` on each of the first :data:`MAX_PHOTOS` photos, one metered ``operation`` call each;
    every photo's outcome (``file``, ``ok`` and the work's fields, or ``code``/``message``). A refused
    call (rate, quota) is neither recorded nor billed; a failed one is recorded with its status. A key
    without ``scope`` is refused up front (403), as the API refuses its request, not photo by photo."""
    if not principal.allows(scope):
        raise Forbidden(f"this key lacks the '{scope}' scope")
    outcomes: list[dict[str, Any]] = []
    rows: list[UsageRecord] = []
    settles: list[tuple[Meter, int]] = []
    for upload in photos[:MAX_PHOTOS]:
        started, status, meter = time.perf_counter(), ok_status, None
        try:
            meter = await gate(request, principal, operation, scope)
            data = await upload.read()
            await run_in_threadpool(charge_pixels, request, [data])
            outcomes.append({"file": upload.filename, "ok": True, **await work(data, meter)})
        except (RateLimited, QuotaExceeded) as exc:
            meter = None
            outcomes.append({"file": upload.filename, "ok": False, "code": exc.code, "message": str(exc)})
        except FaceAtlasError as exc:
            status = exc.status
            if getattr(request.state, "meter", None) is not meter:
                meter = None  # the gate gave this call back already (e.g. shared state unavailable)
            outcomes.append({"file": upload.filename, "ok": False, "code": exc.code, "message": client_message(exc)})
        except OperationalError:  # the database dropped: that photo's 503, as the API answers it
            status = DatabaseUnavailable.status
            if getattr(request.state, "meter", None) is not meter:
                meter = None
            outcomes.append({"file": upload.filename, "ok": False, "code": DatabaseUnavailable.code,
                             "message": "the database is unavailable; nothing was written"})
        except Exception:  # noqa: BLE001 - a fault on one photo is that photo's 500, as one API call's
            # (its traceback logged): the photos done before it stay recorded and billed, and the form's
            # outcome (kept under its one-time token) says which were enrolled, so a second sending does
            # not enrol them again
            _log.exception("console %s: photo %r failed", operation, upload.filename)
            status = 500
            if getattr(request.state, "meter", None) is not meter:
                meter = None
            outcomes.append({"file": upload.filename, "ok": False, "code": "internal",
                             "message": "internal server error"})
        if meter is not None:
            rows.append(usage_row(meter, status, started))
            settles.append((meter, status))
    request.state.meter = None  # this request's calls are recorded here, one row per photo
    if rows:
        await run_in_threadpool(accounts.record_usage, rows)
    shared = get_shared(request)
    for meter, status in settles:  # each photo's call is over once its row is written
        await run_in_threadpool(shared.settle, principal.tenant_id, billed(status), meter.month)
    return outcomes
