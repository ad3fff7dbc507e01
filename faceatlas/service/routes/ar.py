"""AR face effects on one image."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from faceatlas.apps.ar import MAX_EFFECTS, apply_effects
from faceatlas.service.deps import Meter, PoolDep, image_request_body, metered, read_images

router = APIRouter(tags=["ar"])
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


@router.post(
    "/ar/effects",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the image with effects"},
               422: {"description": "unknown_effect: an effect of no such name"}},
    openapi_extra=image_request_body("image"),
)
async def ar_effects(
    request: Request,
    meter: Annotated[Meter, Depends(metered("ar.effects", "detect"))],
    pool: PoolDep,
    effect: Annotated[list[str], Query(min_length=1, max_length=MAX_EFFECTS,
                                       description=f"effects in order of application (at most {MAX_EFFECTS}): "
                                       "glasses, hat, mask, smooth, slim, big-eyes, blur-background, "
                                       "green-background")],
    image_format: Annotated[Literal["png", "jpeg"], Query(alias="format")] = "jpeg",
) -> Response:
    """The image with AR effects applied to every face (and the background); ``X-Faces`` counts the faces.
    Without the ``[ar]`` extra (MediaPipe) it answers ``provider_missing`` (503) with the install hint."""
    images, _ = await read_images(request, "image")
    encoded, faces = await pool.run(apply_effects, images["image"], effect, image_format,
                                    pool.analyzer.max_pixels, tenant=meter.principal.tenant_id)
    meter.faces = faces
    return Response(encoded, media_type=MEDIA_TYPES[image_format], headers={"X-Faces": str(faces)})
