"""Stateless face operations: detect, compare (1:1), liveness."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from faceatlas.engine import DEFAULT_FAR, Cut, NoFace
from faceatlas.service.deps import AnalyzerDep, Meter, PoolDep, image_request_body, metered, read_images
from faceatlas.service.schemas import CompareOut, DetectOut, LivenessOut

router = APIRouter(tags=["faces"])
IMAGE_PAIR = ("image_a", "image_b")


@router.post(
    "/detect", response_model=DetectOut, response_model_exclude_unset=True, openapi_extra=image_request_body("image")
)
async def detect(
    request: Request,
    meter: Annotated[Meter, Depends(metered("detect", "detect"))],
    pool: PoolDep,
    liveness: Annotated[bool, Query(description="add a passive liveness score per face")] = False,
    embedding: Annotated[bool, Query(description="include each face's embedding")] = False,
    max_faces: Annotated[int | None, Query(ge=1, le=1000)] = None,
    attributes: Annotated[bool, Query(description="add age, gender and emotion per face (the pack's models)")]
    = False,
) -> dict:
    """Faces in an image: box, score, 5 keypoints, quality, pose (and liveness, attributes, embedding on
    request)."""
    images, _ = await read_images(request, "image")
    faces = await pool.analyze(images["image"], liveness=liveness, max_faces=max_faces, attributes=attributes,
                              tenant=meter.principal.tenant_id)
    meter.faces = len(faces)
    return {"pack": pool.analyzer.pack.name, "faces": [face.to_dict(with_embedding=embedding) for face in faces]}


@router.post("/compare", response_model=CompareOut, openapi_extra=image_request_body(*IMAGE_PAIR))
async def compare(
    request: Request,
    meter: Annotated[Meter, Depends(metered("compare", "detect"))],
    pool: PoolDep,
    analyzer: AnalyzerDep,
    far: Annotated[float, Query(gt=0, lt=1, description="false-accept rate of the decision")] = DEFAULT_FAR,
) -> dict:
    """1:1: the largest face of each image, their similarity and a FAR-calibrated verdict;
    ``faces_in_image_a`` / ``_b``: how many faces each image holds (a group photo's largest face
    was compared without a word)."""
    Cut.verifying(far=far).check(analyzer.calibration)  # a rate the pack has no threshold for: before any face
    images, _ = await read_images(request, *IMAGE_PAIR)
    tenant = meter.principal.tenant_id
    results = await asyncio.gather(*(pool.largest_face(images[n], tenant=tenant) for n in IMAGE_PAIR))
    for name, largest in zip(IMAGE_PAIR, results):
        if not largest.faces:
            raise NoFace(f"no face found in {name}")
    meter.faces = 2
    verdict = analyzer.verify(*(largest.faces[0] for largest in results), far=far)
    return {**verdict.to_dict(), "pack": analyzer.pack.name,
            **{f"faces_in_{name}": largest.found for name, largest in zip(IMAGE_PAIR, results)}}


@router.post(
    "/liveness",
    response_model=LivenessOut,
    response_model_exclude_unset=True,
    openapi_extra=image_request_body("image"),
)
async def liveness(
    request: Request, meter: Annotated[Meter, Depends(metered("liveness", "detect"))], pool: PoolDep
) -> dict:
    """Passive liveness of the largest face: real or spoof, with class probabilities."""
    images, _ = await read_images(request, "image")
    largest = await pool.largest_face(images["image"], liveness=True, tenant=meter.principal.tenant_id)
    faces = largest.faces
    if not faces or faces[0].liveness is None:
        raise NoFace("no face found for the liveness check")
    meter.faces = 1
    return {**faces[0].liveness.to_dict(), "face": faces[0].to_dict(), "faces_in_image": largest.found}
