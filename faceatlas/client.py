"""A small Python client for a FaceAtlas server (``faceatlas serve``).

>>> client = FaceAtlasClient("http://127.0.0.1:8000", api_key="fa_...")
>>> client.detect("group.jpg")["faces"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

ImageArg = str | os.PathLike | bytes
# The server's default false-accept rate (faceatlas.engine.DEFAULT_FAR; the client imports nothing
# of the server, a test keeps the two equal).
DEFAULT_FAR = 1e-4


class FaceAtlasApiError(Exception):
    """An error answer of the server, with its stable ``code``, HTTP status and Retry-After."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.retry_after = retry_after


def _image(name: str, image: ImageArg) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(image, bytes):
        return name, (name, image, "application/octet-stream")
    path = Path(image)
    return name, (path.name, path.read_bytes(), "application/octet-stream")


class FaceAtlasClient:
    """Typed access to the ``/v1`` API; every method returns the decoded JSON answer."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FaceAtlasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:500]}
            retry = response.headers.get("retry-after")
            raise FaceAtlasApiError(
                response.status_code, error["code"], error["message"], float(retry) if retry else None
            )
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # -- faces ---------------------------------------------------------------------------------
    def detect(self, image: ImageArg, *, liveness: bool = False, embedding: bool = False) -> dict:
        return self._call(
            "POST",
            "/v1/detect",
            files=dict([_image("image", image)]),
            params={"liveness": liveness, "embedding": embedding},
        )

    def compare(self, image_a: ImageArg, image_b: ImageArg, *, far: float = DEFAULT_FAR) -> dict:
        files = dict([_image("image_a", image_a), _image("image_b", image_b)])
        return self._call("POST", "/v1/compare", files=files, params={"far": far})

    def liveness(self, image: ImageArg) -> dict:
        return self._call("POST", "/v1/liveness", files=dict([_image("image", image)]))

    # -- galleries -------------------------------------------------------------------------------
    def create_collection(self, name: str, *, keep_crops: bool = False) -> dict:
        return self._call("POST", "/v1/collections", json={"name": name, "keep_crops": keep_crops})

    def list_collections(self) -> dict:
        return self._call("GET", "/v1/collections")

    def delete_collection(self, name: str) -> None:
        self._call("DELETE", f"/v1/collections/{name}")

    def add_subject(
        self, collection: str, subject_id: str, *, name: str | None = None, metadata: dict | None = None
    ) -> dict:
        body = {"id": subject_id, "name": name, "metadata": metadata or {}}
        return self._call("POST", f"/v1/collections/{collection}/subjects", json=body)

    def list_subjects(self, collection: str, *, limit: int = 100, after: str | None = None) -> dict:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._call("GET", f"/v1/collections/{collection}/subjects", params=params)

    def enrol(self, collection: str, subject_id: str, image: ImageArg) -> dict:
        return self._call(
            "POST", f"/v1/collections/{collection}/subjects/{subject_id}/faces", files=dict([_image("image", image)])
        )

    def delete_subject(self, collection: str, subject_id: str) -> None:
        self._call("DELETE", f"/v1/collections/{collection}/subjects/{subject_id}")

    def search(self, collection: str, image: ImageArg, *, k: int = 5, far: float | None = None) -> dict:
        """The ``k`` most similar subjects; only those reaching ``far`` when it is given (as the
        gallery, the CLI and the API: search ranks, ``verify`` decides)."""
        params: dict[str, Any] = {"k": k}
        if far is not None:
            params["far"] = far
        return self._call(
            "POST", f"/v1/collections/{collection}/search", files=dict([_image("image", image)]), params=params
        )

    def verify(self, collection: str, subject_id: str, image: ImageArg, *, far: float = DEFAULT_FAR) -> dict:
        return self._call(
            "POST",
            f"/v1/collections/{collection}/subjects/{subject_id}/verify",
            files=dict([_image("image", image)]),
            params={"far": far},
        )

    # -- account ---------------------------------------------------------------------------------
    def usage(self) -> dict:
        return self._call("GET", "/v1/usage")
