"""Try it: detect, liveness or compare on uploaded photos, the faces drawn on the answer."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from faceatlas.engine import DEFAULT_FAR, NoFace
from faceatlas.errors import InvalidArgument
from faceatlas.service.console.base import ConsoleRoute, PostingUserDep, UserDep, gate, is_htmx, render
from faceatlas.service.console.draw import faces_png
from faceatlas.service.deps import AnalyzerDep, PoolDep, charge_pixels

router = APIRouter(route_class=ConsoleRoute)


@router.get("/try", include_in_schema=False)
def try_page(request: Request, user: UserDep) -> Response:
    return render(request, "try.html", user, result=None)


@router.post("/try", include_in_schema=False)
async def try_it(
    request: Request, user: PostingUserDep, pool: PoolDep, analyzer: AnalyzerDep,
    operation: Annotated[Literal["detect", "liveness", "compare"], Form()],
    photo: Annotated[UploadFile, File()],
    other: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """One metered call of ``operation`` (scope ``detect``), as ``/v1/detect|liveness|compare``.
    Liveness and compare read the largest face of a photo, as the API does; the answer says how
    many faces the photo held (liveness of a photo of two people said "1 face found" where detect
    said 2). Detect of a photo without a face answers "no face found" as ``/v1/detect`` answers
    ``faces: []`` (it was NoFace, a 422)."""
    meter = await gate(request, user.principal, operation, "detect")
    data = await photo.read()
    result: dict = {"operation": operation}
    if operation == "compare":
        second = await other.read() if other is not None else b""
        if not second:
            raise InvalidArgument("compare needs a second photo")
        charge_pixels(request, [data, second])
        pair = await asyncio.gather(*(pool.largest_face(d, tenant=user.principal.tenant_id) for d in (data, second)))
        for label, largest in zip(("the first photo", "the second photo"), pair):
            if not largest.faces:
                raise NoFace(f"no face found in {label}")
        found = [largest.faces for largest in pair]
        result["found"] = [largest.found for largest in pair]
        meter.faces = 2
        verdict = analyzer.verify(found[0][0], found[1][0], far=DEFAULT_FAR)
        result["verdict"] = verdict
        result["images"] = await run_in_threadpool(
            lambda: [faces_png(d, f) for d, f in zip((data, second), found)])
    else:
        charge_pixels(request, [data])
        if operation == "liveness":
            largest = await pool.largest_face(data, liveness=True, tenant=user.principal.tenant_id)
            faces, result["found"] = largest.faces, largest.found
            if not faces:  # as /v1/liveness: no face to check is NoFace
                raise NoFace("no face found in the photo")
        else:  # as /v1/detect: a photo without a face is an answer (no face found), billed for 0 faces
            faces = await pool.analyze(data, tenant=user.principal.tenant_id)
            result["found"] = len(faces)
        meter.faces = len(faces)
        result["faces"] = faces
        result["live"] = [f.liveness.is_real() if f.liveness is not None else None for f in faces]
        result["images"] = [await run_in_threadpool(faces_png, data, faces)]
    return render(request, "_try.html" if is_htmx(request) else "try.html", user, result=result)
