"""Stateless face operations: detect, compare (1:1), liveness."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from faceatlas.engine import DEFAULT_FAR, NoFace
from faceatlas.service.deps import Meter, image_request_body, metered, read_images

router = APIRouter(tags=["faces"])


async def analyze(request: Request, image: bytes, *, liveness: bool = False, max_faces: int | None = None):
    """Every face of an uploaded image, through the shared inference pool."""
    return await request.app.state.pool.analyze(image, liveness=liveness, max_faces=max_faces)


@router.post("/detect", openapi_extra=image_request_body("image"))
async def detect(
    request: Request,
    meter: Annotated[Meter, Depends(metered("detect", "detect"))],
    liveness: Annotated[bool, Query(description="add a passive liveness score per face")] = False,
    embedding: Annotated[bool, Query(description="include each face's embedding")] = False,
    max_faces: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> dict:
    """Faces in an image: box, score, 5 keypoints, quality, pose (and liveness, embedding on request)."""
    images, _ = await read_images(request, "image")
    faces = await analyze(request, images["image"], liveness=liveness, max_faces=max_faces)
    meter.faces = len(faces)
    return {
        "pack": request.app.state.analyzer.pack.name,
        "faces": [face.to_dict(with_embedding=embedding) for face in faces],
    }


@router.post("/compare", openapi_extra=image_request_body("image_a", "image_b"))
async def compare(
    request: Request,
    meter: Annotated[Meter, Depends(metered("compare", "detect"))],
    far: Annotated[float, Query(gt=0, lt=1, description="false-accept rate of the decision")] = DEFAULT_FAR,
) -> dict:
    """1:1: the largest face of each image, their similarity and a FAR-calibrated verdict."""
    images, _ = await read_images(request, "image_a", "image_b")
    analyzer = request.app.state.analyzer
    results = await asyncio.gather(*(analyze(request, images[n], max_faces=1) for n in ("image_a", "image_b")))
    for name, faces in zip(("image_a", "image_b"), results):
        if not faces:
            raise NoFace(f"no face found in {name}")
    found = [faces[0] for faces in results]
    meter.faces = 2
    return {**analyzer.verify(*found, far=far).to_dict(), "pack": analyzer.pack.name}


@router.post("/liveness", openapi_extra=image_request_body("image"))
async def liveness(request: Request, meter: Annotated[Meter, Depends(metered("liveness", "detect"))]) -> dict:
    """Passive liveness of the largest face: real or spoof, with class probabilities."""
    images, _ = await read_images(request, "image")
    faces = await analyze(request, images["image"], liveness=True, max_faces=1)
    if not faces:
        raise NoFace("no face found for the liveness check")
    meter.faces = 1
    return {**faces[0].liveness.to_dict(), "face": faces[0].to_dict()}
