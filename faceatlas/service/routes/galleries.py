"""Collections, subjects, enrolment, 1:N search and 1:1 verify-subject, scoped to the caller's tenant."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceatlas.engine import DEFAULT_FAR, Embedding, NoFace
from faceatlas.errors import InvalidArgument, InvalidInput
from faceatlas.gallery import Gallery, source_crop
from faceatlas.service.deps import Meter, image_request_body, metered, read_images

router = APIRouter(tags=["galleries"])
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]


class CollectionRequest(BaseModel):
    name: Name
    keep_crops: bool = Field(default=False, description="store a source crop of each face (enables re-embedding)")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SubjectRequest(BaseModel):
    id: Name
    name: str | None = Field(default=None, max_length=300)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SubjectUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=300)
    metadata: dict[str, Any] | None = None


def tenant_gallery(request: Request, meter: Meter) -> Gallery:
    """The caller's tenant view of the gallery (one per tenant, cached)."""
    views: dict[str, Gallery] = request.app.state.tenant_galleries
    tenant = meter.principal.tenant_id
    if tenant not in views:
        views[tenant] = request.app.state.gallery.for_tenant(tenant)
    return views[tenant]


async def faces_with_crops(request: Request, image: bytes, *, all_faces: bool, keep_crops: bool):
    """Faces (embedded through the shared pool) and, when the collection keeps them, source crops."""
    pool = request.app.state.pool

    def work():
        decoded = pool.analyzer.load(image)
        faces = pool.analyze_sync(decoded, max_faces=None if all_faces else 1)
        return faces, [source_crop(decoded, face) if keep_crops else None for face in faces]

    return await pool.run(work)


# -- collections -----------------------------------------------------------------------------------


@router.get("/collections")
async def list_collections(request: Request, meter: Annotated[Meter, Depends(metered("collections.list", "read"))]):
    """The tenant's collections with their pack and sizes."""
    gallery = tenant_gallery(request, meter)
    return {"collections": [c.to_dict() for c in await run_in_threadpool(gallery.list_collections)]}


@router.post("/collections", status_code=201)
async def create_collection(
    body: CollectionRequest, request: Request, meter: Annotated[Meter, Depends(metered("collections.create", "write"))]
):
    """A collection bound to the server's model pack (its embeddings never mix with another's)."""
    gallery = tenant_gallery(request, meter)
    info = await run_in_threadpool(
        gallery.create_collection,
        body.name,
        request.app.state.analyzer,
        keep_crops=body.keep_crops,
        metadata=body.metadata,
    )
    await _audit(request, meter, "collection.create", body.name)
    return info.to_dict()


@router.get("/collections/{collection}")
async def get_collection(
    collection: str, request: Request, meter: Annotated[Meter, Depends(metered("collections.get", "read"))]
):
    gallery = tenant_gallery(request, meter)
    return (await run_in_threadpool(gallery.get_collection, collection)).to_dict()


@router.delete("/collections/{collection}", status_code=204)
async def delete_collection(
    collection: str, request: Request, meter: Annotated[Meter, Depends(metered("collections.delete", "write"))]
) -> None:
    """Delete a collection with every subject, face, vector and crop in it."""
    gallery = tenant_gallery(request, meter)
    await run_in_threadpool(gallery.delete_collection, collection)
    await _audit(request, meter, "collection.delete", collection)


# -- subjects ----------------------------------------------------------------------------------------


@router.post("/collections/{collection}/subjects", status_code=201)
async def add_subject(
    collection: str,
    body: SubjectRequest,
    request: Request,
    meter: Annotated[Meter, Depends(metered("subjects.create", "write"))],
):
    gallery = tenant_gallery(request, meter)
    info = await run_in_threadpool(gallery.add_subject, collection, body.id, name=body.name, metadata=body.metadata)
    await _audit(request, meter, "subject.create", f"{collection}/{body.id}")
    return info.to_dict()


@router.get("/collections/{collection}/subjects")
async def list_subjects(
    collection: str,
    request: Request,
    meter: Annotated[Meter, Depends(metered("subjects.list", "read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
):
    """Subjects page by page: pass ``next`` back as ``after``."""
    gallery = tenant_gallery(request, meter)
    page = await run_in_threadpool(gallery.list_subjects, collection, limit=limit, after=after)
    return {"subjects": [s.to_dict() for s in page.items], "next": page.next_cursor}


@router.get("/collections/{collection}/subjects/{subject}")
async def get_subject(
    collection: str, subject: str, request: Request, meter: Annotated[Meter, Depends(metered("subjects.get", "read"))]
):
    gallery = tenant_gallery(request, meter)
    return (await run_in_threadpool(gallery.get_subject, collection, subject)).to_dict()


@router.patch("/collections/{collection}/subjects/{subject}")
async def update_subject(
    collection: str,
    subject: str,
    body: SubjectUpdate,
    request: Request,
    meter: Annotated[Meter, Depends(metered("subjects.update", "write"))],
):
    gallery = tenant_gallery(request, meter)
    info = await run_in_threadpool(gallery.update_subject, collection, subject, name=body.name, metadata=body.metadata)
    await _audit(request, meter, "subject.update", f"{collection}/{subject}")
    return info.to_dict()


@router.delete("/collections/{collection}/subjects/{subject}", status_code=204)
async def delete_subject(
    collection: str,
    subject: str,
    request: Request,
    meter: Annotated[Meter, Depends(metered("subjects.delete", "write"))],
) -> None:
    """Delete a subject and every trace of it: faces, vectors, crops, index entries."""
    gallery = tenant_gallery(request, meter)
    removed = await run_in_threadpool(gallery.delete_subject, collection, subject)
    await _audit(request, meter, "subject.delete", f"{collection}/{subject}", {"faces": removed})


@router.post(
    "/collections/{collection}/subjects/{subject}/faces", status_code=201, openapi_extra=image_request_body("image")
)
async def enrol(
    collection: str,
    subject: str,
    request: Request,
    meter: Annotated[Meter, Depends(metered("enrol", "write"))],
    all_faces: Annotated[bool, Query(description="enrol every face, not only the largest")] = False,
    min_quality: Annotated[float, Query(ge=0, le=1)] = 0.0,
):
    """Enrol the face(s) of an image to a subject (created when new)."""
    gallery = tenant_gallery(request, meter)
    images, _ = await read_images(request, "image")
    info = await run_in_threadpool(gallery.get_collection, collection)
    faces, crops = await faces_with_crops(request, images["image"], all_faces=all_faces, keep_crops=info.keep_crops)
    if not faces:
        raise NoFace("no face found in the image")
    kept = [(f, c) for f, c in zip(faces, crops) if (f.quality or 0.0) >= min_quality]
    meter.faces = len(faces)
    if not kept:
        raise InvalidArgument(f"no face reached min_quality {min_quality}")
    ids = await run_in_threadpool(
        gallery.add_embeddings,
        collection,
        subject,
        np.stack([f.embedding for f, _ in kept]),
        recognizer_id=request.app.state.analyzer.pack.recognizer_id,
        qualities=[f.quality for f, _ in kept],
        sources=["api"] * len(kept),
        crops=[c for _, c in kept],
    )
    await _audit(request, meter, "face.enrol", f"{collection}/{subject}", {"faces": len(ids)})
    return {"face_ids": ids, "faces": [f.to_dict() for f, _ in kept], "rejected": len(faces) - len(kept)}


# -- search and verify -------------------------------------------------------------------------------


@router.post(
    "/collections/{collection}/search",
    openapi_extra=image_request_body("image", extra={
        "embedding": {"type": "array", "items": {"type": "number"}},
        "recognizer_id": {"type": "string", "description": "the embedding's space (as /detect returns it)"},
    }),
)
async def search(
    collection: str,
    request: Request,
    meter: Annotated[Meter, Depends(metered("search", "read"))],
    k: Annotated[int, Query(ge=1, le=100)] = 5,
    far: Annotated[float | None, Query(gt=0, lt=1)] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description="raw cosine cut-off")] = None,
    aggregate: Annotated[Literal["best", "mean"], Query()] = "best",
    all_faces: Annotated[bool, Query()] = False,
):
    """1:N: the subjects most similar to the query face(s) (image) or to an ``embedding`` with its
    ``recognizer_id`` (an embedding of another space than the collection's is ``model_mismatch``)."""
    gallery = tenant_gallery(request, meter)
    options: dict[str, Any] = {"k": k, "threshold": threshold, "far": far if threshold is None else None,
                               "aggregate": aggregate}
    body = await _json_body(request)
    if "embedding" in body:
        vector = _embedding(body)
        matches = await run_in_threadpool(lambda: gallery.search(collection, vector, **options))
        meter.faces = 1
        return {"results": [{"face": None, "matches": [m.to_dict() for m in matches]}]}
    images, _ = await read_images(request, "image")
    faces, _ = await faces_with_crops(request, images["image"], all_faces=all_faces, keep_crops=False)
    if not faces:
        raise NoFace("no face found in the query image")
    meter.faces = len(faces)
    calibration = request.app.state.analyzer.calibration
    results = []
    for face in faces:
        matches = await run_in_threadpool(gallery.search, collection, face, calibration=calibration, **options)
        results.append({"face": face.to_dict(), "matches": [m.to_dict() for m in matches]})
    return {"results": results}


@router.post("/collections/{collection}/subjects/{subject}/verify", openapi_extra=image_request_body("image"))
async def verify(
    collection: str,
    subject: str,
    request: Request,
    meter: Annotated[Meter, Depends(metered("verify", "read"))],
    far: Annotated[float, Query(gt=0, lt=1)] = DEFAULT_FAR,
    threshold: Annotated[float | None, Query(ge=-1, le=1)] = None,
):
    """1:1 against an enrolled subject: is the largest face of the image this subject?"""
    gallery = tenant_gallery(request, meter)
    images, _ = await read_images(request, "image")
    faces, _ = await faces_with_crops(request, images["image"], all_faces=False, keep_crops=False)
    if not faces:
        raise NoFace("no face found in the image")
    meter.faces = 1
    calibration = request.app.state.analyzer.calibration
    verdict = await run_in_threadpool(
        lambda: gallery.verify(collection, subject, faces[0], far=far, threshold=threshold, calibration=calibration)
    )
    return {**verdict.to_dict(), "face": faces[0].to_dict()}


async def _json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput(f"the JSON body does not parse: {exc}") from exc
    return body if isinstance(body, dict) else {}


def _embedding(body: dict[str, Any]) -> Embedding:
    return Embedding.parse(body["embedding"], body.get("recognizer_id"))


async def _audit(request: Request, meter: Meter, action: str, target: str, details: dict | None = None) -> None:
    await run_in_threadpool(
        request.app.state.accounts.audit, action, target, meter.principal.tenant_id, meter.principal.key_id, details
    )
