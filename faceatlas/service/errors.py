"""Stable error codes and their HTTP statuses; every error body is ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceatlas.engine.errors import FaceAtlasError

STATUS_BY_CODE = {
    "invalid_image": 400,
    "empty_image": 400,
    "truncated_image": 400,
    "bad_request": 400,
    "url_fetch_disabled": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "model_mismatch": 409,
    "conflict": 409,
    "already_exists": 409,
    "not_calibrated": 409,
    "image_too_large": 413,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "no_face": 422,
    "too_many_faces": 422,
    "validation_error": 422,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "overloaded": 503,
    "model_missing": 503,
}


class ApiError(Exception):
    """An error raised by the service itself, with a stable code and optional Retry-After."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


def error_response(code: str, message: str, retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, int(round(retry_after))))} if retry_after is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, STATUS_BY_CODE.get(code, 500), headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map engine errors, service errors, HTTP errors and validation errors to the JSON body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.code, str(exc), exc.retry_after)

    @app.exception_handler(FaceAtlasError)
    async def _engine_error(_: Request, exc: FaceAtlasError) -> JSONResponse:
        return error_response(exc.code if exc.code in STATUS_BY_CODE else "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response("validation_error", details or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "bad_request", 401: "unauthorized", 403: "forbidden", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "bad_request")
        response = error_response(code, str(exc.detail))
        response.status_code = exc.status_code
        return response
