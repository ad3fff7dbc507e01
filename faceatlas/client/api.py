"""The client: :class:`FaceAtlasClient`, one method per route of the ``/v1`` API."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from faceatlas.client.errors import FaceAtlasClientError, _not_ours
from faceatlas.client.results import (
    AlbumDeletion,
    AlbumErasure,
    AlbumFace,
    AlbumPerson,
    AlbumPhoto,
    AlbumPromotion,
    AlbumRecluster,
    AlbumScan,
    ApiKey,
    AuditEvent,
    CameraCounts,
    Collection,
    CompareResult,
    ConsentWithdrawal,
    DetectResult,
    EnrolResult,
    Face,
    IssuedKey,
    KycSession,
    KycSessionPage,
    LivenessResult,
    MinuteCount,
    RetailAlert,
    RetailAlertResolution,
    RetailCart,
    RetailErasure,
    RetailMember,
    RetailOccupancy,
    RetailPayment,
    RetailProduct,
    RetailProductRemoval,
    RetailRefund,
    RetailReport,
    RetailReportRow,
    SearchResult,
    SearchResults,
    Subject,
    SubjectPage,
    TenantSettings,
    Usage,
    UsageRow,
    Verification,
    VideoEvent,
    _Answer,
    _cart,
    _faces,
    _failures,
    _items,
    _parse,
    _search_results,
)
from faceatlas.client.transport import (
    MAX_ANSWER_BYTES,
    ImageArg,
    _closed,
    _error_of,
    _header_value,
    _image,
    _is,
    _once,
    _past,
    _seg,
    _send,
    _TimeLeft,
    _wire_error,
)

# The server's default false-accept rate (faceatlas.engine.DEFAULT_FAR; the client imports nothing
# of the server, a test keeps the two equal).
DEFAULT_FAR = 1e-4

PARQUET = "application/vnd.apache.parquet"  # a collection export's media type


def _iso(moment: str | datetime | None) -> str | None:
    """A time as the API takes it: ISO 8601 (a naive datetime is UTC to the server)."""
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _day(value: date | str) -> str:
    """A day as the API takes it: an ISO date; a datetime's day in UTC (a naive one is UTC)."""
    if isinstance(value, datetime):
        value = (value.astimezone(UTC) if value.tzinfo is not None else value).date()
    return value.isoformat() if isinstance(value, date) else value


def _days(start: date | str | None, end: date | str | None) -> dict[str, str]:
    """The ``from``/``to`` days of a report (ISO dates; a datetime is its day), those given."""
    return {k: _day(v) for k, v in (("from", start), ("to", end)) if v is not None}


def _search_options(k: int, fpir: float | None, far: float | None, threshold: float | None, rank_only: bool,
                    aggregate: str) -> dict[str, Any]:
    """The query of a search: ``k``, the cut given, ``rank_only`` and ``aggregate`` when not the
    server's defaults."""
    params: dict[str, Any] = {"k": k}
    if rank_only:
        params["rank_only"] = "true"
    params |= {name: v for name, v in (("far", far), ("fpir", fpir), ("threshold", threshold)) if v is not None}
    if aggregate != "best":
        params["aggregate"] = aggregate
    return params


class FaceAtlasClient:
    """Typed access to the ``/v1`` API; every method returns a frozen dataclass of the answer.
    A write method's ``idempotency_key``: a retry with the same key (after a timeout or a dropped
    connection) acts once and returns the first answer (``Idempotency-Key``, kept 24 h).

    ``http`` replaces the HTTP client (e.g. a ``fastapi.testclient.TestClient``, which is one)."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 60.0, http: httpx.Client | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """``timeout``: seconds for a whole call, from sending to the last byte of the answer."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise FaceAtlasClientError(f"the timeout is a number of seconds above 0, not {timeout!r}",
                                       "invalid_argument")
        self._owned = http is None
        self._timeout = timeout
        self._max_answer = max_answer_bytes
        self._auth = {"Authorization": f"Bearer {_header_value(api_key, 'API key')}"}
        if http is None:
            try:
                url = httpx.URL(base_url.rstrip("/"))
            except httpx.InvalidURL as exc:
                raise FaceAtlasClientError(f"invalid server URL (give http(s)://host[:port]): {exc}",
                                           "invalid_argument") from None
            if url.scheme not in ("http", "https") or not url.host:
                shown = str(url.copy_with(username=None, password=None))
                raise FaceAtlasClientError(f"invalid server URL {shown!r} (give http(s)://host[:port])",
                                           "invalid_argument")
            if url.userinfo:
                raise FaceAtlasClientError("the server URL holds a user and password: give the API key as "
                                           "api_key (FACEATLAS_API_KEY), not in the URL", "invalid_argument")
            if url.query or url.fragment or "?" in base_url or "#" in base_url:  # never echoed: it may hold a secret
                raise FaceAtlasClientError("the server URL holds a query string or a fragment ('?...', '#...'): give "
                                           "http(s)://host[:port] alone (parameters go with each call)",
                                           "invalid_argument")
            if url.path.rstrip("/").endswith("/v1"):
                raise FaceAtlasClientError(f"give the server URL without /v1 (the client adds it): "
                                           f"{str(url)[: -len(url.path)] or url}", "invalid_argument")
            try:
                http = httpx.Client(base_url=url, timeout=timeout)
            except ImportError as exc:  # e.g. ALL_PROXY=socks5://... without httpx[socks]
                raise FaceAtlasClientError(f"the proxy in the environment needs a package: {exc}",
                                           "invalid_argument") from None
        self._http = http
        self._base = str(http.base_url).rstrip("/")
        self._closed = False

    def close(self) -> None:
        """Close the client (its connections, when it made its own HTTP client): a call after this
        is :class:`FaceAtlasClientError` ``client_closed``."""
        self._closed = True
        if self._owned:
            self._http.close()

    def __enter__(self) -> FaceAtlasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, extra_headers: dict[str, str] | None = None, *,
              expect: str = "json", sink: IO[bytes] | None = None, **kwargs: Any) -> Any:
        """One call: the answer's JSON (``expect="json"``) or bytes (``"image"``: of any image type;
        else of the media type ``expect`` names); an error answer is :class:`FaceAtlasApiError`, no
        answer within ``timeout`` in all (the request and the headers waited on until the deadline:
        :func:`_send`; each body read within the time left: :class:`_TimeLeft`)
        :class:`FaceAtlasTransportError` ``timeout``. With ``sink``, the bytes
        of a successful answer are written there as they come (none held, ``max_answer_bytes`` not
        applied) and their count is returned."""
        if self._closed or self._http.is_closed:
            raise _closed()
        deadline = time.monotonic() + self._timeout
        try:
            request = self._http.build_request(method, path, headers={**self._auth, **(extra_headers or {})},
                                               extensions={"timeout": _TimeLeft(deadline)}, **kwargs)
            response = _send(self._http, request, deadline)
            with contextlib.closing(response):
                _past(deadline)
                kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                if sink is not None and 200 <= response.status_code < 300 and _is(kind, expect):
                    written = 0
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                        written += len(chunk)
                        _past(deadline)
                    _past(deadline)
                    return written
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._max_answer:
                        raise FaceAtlasClientError(f"the answer is larger than {self._max_answer:,} bytes "
                                                   "(max_answer_bytes)", "answer_too_large")
                    _past(deadline)
                _past(deadline)  # an empty body (a 204) too
        except httpx.TransportError as exc:  # refused, reset, timed out, a proxy or TLS failure
            raise _wire_error(exc, self._base, self._timeout) from None
        except httpx.DecodingError as exc:  # e.g. a body that says gzip and is not: an answer, not the API's
            raise _not_ours(f"a body that does not decode as its Content-Encoding says: {exc}") from None
        except httpx.HTTPError as exc:  # any other of httpx's (TooManyRedirects, ...): an answer, not the API's
            raise _not_ours(f"{type(exc).__name__}: {exc}") from None
        except (httpx.InvalidURL, httpx.CookieConflict) as exc:  # what the request holds cannot be sent
            raise FaceAtlasClientError(f"the call cannot be sent: {exc}", "invalid_argument") from None
        except RuntimeError as exc:  # httpx's StreamError, or the HTTP client closed meanwhile (another thread)
            if self._http.is_closed:
                raise _closed() from None
            raise FaceAtlasClientError(f"the call cannot be sent: {exc}", "invalid_argument") from None
        if response.is_redirect:
            raise FaceAtlasClientError(f"the server redirected to {response.headers.get('location')!r}: give that "
                                       "URL as the server (http to https?)", "redirected")
        if response.status_code >= 400:
            raise _error_of(response, bytes(body))
        if response.status_code == 204:
            return None
        if expect != "json":  # bytes of one media type: JSON (or a proxy's page) is not the answer asked for
            if _is(kind, expect):
                return bytes(body)
            raise _not_ours(f"{kind or 'no media type'} where {expect} was expected, {len(body):,} bytes")
        if kind != "application/json":
            raise _not_ours(f"{kind or 'no media type'}, {len(body):,} bytes")
        try:
            answer = json.loads(body, object_hook=_Answer)
        except ValueError:
            raise _not_ours("JSON that does not parse") from None
        if not isinstance(answer, dict):  # every answer of the API is an object
            raise _not_ours(f"a JSON {type(answer).__name__}, not an object")
        return answer

    # -- faces ---------------------------------------------------------------------------------
    def detect(
        self, image: ImageArg, *, liveness: bool = False, embedding: bool = False, attributes: bool = False,
        max_faces: int | None = None,
    ) -> DetectResult:
        """The faces of ``image`` (the ``max_faces`` largest when given; the server's default: all),
        with a liveness score, their ``embedding`` (and its ``recognizer_id``, for
        :meth:`search_embedding`) and ``attributes`` (age, gender, emotion) on request."""
        params: dict[str, Any] = {"liveness": liveness, "embedding": embedding, "attributes": attributes}
        if max_faces is not None:
            params["max_faces"] = max_faces
        data = self._call("POST", "/v1/detect", files=dict([_image("image", image)]), params=params)
        return _parse(DetectResult, data, faces=_faces(data))

    def compare(self, image_a: ImageArg, image_b: ImageArg, *, far: float = DEFAULT_FAR) -> CompareResult:
        files = dict([_image("image_a", image_a), _image("image_b", image_b)])
        return _parse(CompareResult, self._call("POST", "/v1/compare", files=files, params={"far": far}))

    def liveness(self, image: ImageArg) -> LivenessResult:
        data = self._call("POST", "/v1/liveness", files=dict([_image("image", image)]))
        return _parse(LivenessResult, data, face=Face.of(data.get("face")))

    # -- galleries -------------------------------------------------------------------------------
    def create_collection(self, name: str, *, keep_crops: bool = False, metadata: dict | None = None,
                          exist_ok: bool = False, idempotency_key: str | None = None) -> Collection:
        """A collection bound to the server's model pack (``keep_crops``: keep a source crop of each
        face; ``metadata``: a JSON object kept with it). ``exist_ok``: one of this name in the server's
        embedding space with the same ``keep_crops`` is answered as it is (``raw["existed"]`` true);
        one made otherwise is still ``already_exists``."""
        body: dict[str, Any] = {"name": name, "keep_crops": keep_crops}
        if metadata is not None:
            body["metadata"] = metadata
        if exist_ok:
            body["exist_ok"] = True
        return _parse(Collection, self._call("POST", "/v1/collections", _once(idempotency_key), json=body))

    def list_collections(self) -> list[Collection]:
        return [_parse(Collection, c) for c in self._call("GET", "/v1/collections")["collections"]]

    def get_collection(self, name: str) -> Collection:
        return _parse(Collection, self._call("GET", f"/v1/collections/{_seg(name)}"))

    def delete_collection(self, name: str, *, idempotency_key: str | None = None) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(name)}", _once(idempotency_key))

    def add_subject(
        self, collection: str, subject_id: str, *, name: str | None = None, metadata: dict | None = None,
        idempotency_key: str | None = None,
    ) -> Subject:
        body = {"id": subject_id, "name": name, "metadata": metadata or {}}
        path = f"/v1/collections/{_seg(collection)}/subjects"
        return _parse(Subject, self._call("POST", path, _once(idempotency_key),
                                          json=body))

    def get_subject(self, collection: str, subject_id: str) -> Subject:
        return _parse(Subject, self._call("GET", f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}"))

    def list_subjects(self, collection: str, *, limit: int = 100, after: str | None = None) -> SubjectPage:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        data = self._call("GET", f"/v1/collections/{_seg(collection)}/subjects", params=params)
        return _parse(SubjectPage, data, subjects=tuple(_parse(Subject, s) for s in _items(data, "subjects")),
                      next=data.get("next_cursor", data.get("next")))  # `next` alone: a server of before 2026-12

    def enrol(self, collection: str, subject_id: str, image: ImageArg, *, all_faces: bool = False,
              min_quality: float = 0.0, idempotency_key: str | None = None) -> EnrolResult:
        """Enrol the largest face of ``image`` (``all_faces``: every face of it) to the subject (made
        when new); a face of quality below ``min_quality`` (0 to 1) is not enrolled but counted in
        ``rejected`` (none reaching it: the server's 422 ``validation_error``). With
        ``idempotency_key``, a retry of this call (after a timeout or a dropped connection) enrols
        nothing more and returns the first result."""
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/faces"
        params: dict[str, Any] = {}
        if all_faces:
            params["all_faces"] = "true"
        if min_quality:
            params["min_quality"] = min_quality
        data = self._call(
            "POST", path, files=dict([_image("image", image)]), params=params,
            extra_headers=_once(idempotency_key),
        )
        return _parse(EnrolResult, data, faces=_faces(data))

    def delete_subject(self, collection: str, subject_id: str, *, idempotency_key: str | None = None) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}", _once(idempotency_key))

    def search(self, collection: str, image: ImageArg, *, k: int = 5, fpir: float | None = None,
               far: float | None = None, threshold: float | None = None, rank_only: bool = False,
               aggregate: str = "best", all_faces: bool = False) -> SearchResults:
        """Who is the query face (``all_faces``: each face of ``image``; by default its largest), or
        nobody: the ``k`` most similar subjects that reach the cut (``unknown`` when none does):
        ``fpir`` (the share of strangers named, for the collection's size; the server's default 1e-3
        when no cut is given), a 1:1 ``far`` or a raw cosine ``threshold`` (-1 to 1); ``rank_only``
        ranks without deciding (strangers included). Two cuts at once are the server's
        ``validation_error``. ``aggregate``: a subject scores its best face (``"best"``) or its
        mean template (``"mean"``). The list answered is a :class:`SearchResults`, which also
        holds the cut decided at and how many faces the photo held."""
        params = _search_options(k, fpir, far, threshold, rank_only, aggregate)
        if all_faces:
            params["all_faces"] = "true"
        data = self._call(
            "POST", f"/v1/collections/{_seg(collection)}/search", files=dict([_image("image", image)]), params=params
        )
        return _search_results(data)

    def search_embedding(self, collection: str, vector: Any, recognizer_id: str, *, k: int = 5,
                         fpir: float | None = None, far: float | None = None, threshold: float | None = None,
                         rank_only: bool = False, aggregate: str = "best") -> SearchResult:
        """Who is this face, by its embedding (``vector``: numbers, e.g. a :class:`Face`'s
        ``embedding`` from :meth:`detect` with ``embedding=True``) in the space ``recognizer_id`` (the
        face's ``recognizer_id``): the cuts and ``aggregate`` as :meth:`search`. A vector of another
        space or size than the collection's is the server's 409 ``model_mismatch``. The one result's
        ``face`` is None."""
        values = vector.tolist() if callable(getattr(vector, "tolist", None)) else list(vector)  # numpy too
        try:  # what JSON cannot hold (NaN, infinity, an object) was a raw ValueError or TypeError of the encoder
            json.dumps(values, allow_nan=False)
        except (TypeError, ValueError):
            raise FaceAtlasClientError("the embedding holds what JSON cannot send (NaN, infinity or not a number): "
                                       "give finite numbers", "invalid_argument") from None
        params = _search_options(k, fpir, far, threshold, rank_only, aggregate)
        data = self._call("POST", f"/v1/collections/{_seg(collection)}/search", params=params,
                          json={"embedding": values, "recognizer_id": recognizer_id})
        results = _search_results(data)
        if len(results) != 1:
            raise _not_ours(f"{len(results)} results for one embedding")
        return results[0]

    def verify(self, collection: str, subject_id: str, image: ImageArg, *, far: float | None = None,
               threshold: float | None = None) -> Verification:
        """Is the largest face of ``image`` this subject? Decided at the 1:1 ``far`` (the server's
        default :data:`DEFAULT_FAR`) or at a raw cosine ``threshold`` (-1 to 1); both at once are the
        server's ``validation_error``."""
        params = {k: v for k, v in (("far", far), ("threshold", threshold)) if v is not None}
        data = self._call(
            "POST",
            f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/verify",
            files=dict([_image("image", image)]),
            params=params,
        )
        return _parse(Verification, data, face=Face.of(data.get("face")))

    # -- AR and identity verification -----------------------------------------------------------
    def ar_effects(self, image: ImageArg, effects: list[str], *, image_format: str = "jpeg") -> bytes:
        """The image with ``effects`` applied in order (glasses, hat, mask, smooth, slim, big-eyes,
        blur-background, green-background), encoded as ``image_format`` (jpeg or png)."""
        return self._call("POST", "/v1/ar/effects", files=dict([_image("image", image)]),
                          params={"effect": effects, "format": image_format}, expect="image")

    # -- galleries: subjects changed or merged, collections exported and imported ------------------
    def update_subject(self, collection: str, subject_id: str, *, name: str | None = None,
                       metadata: dict | None = None, idempotency_key: str | None = None) -> Subject:
        """Rename a subject (``name``) or add to its metadata (``metadata`` merged into it); what is
        not given stays."""
        body = {k: v for k, v in (("name", name), ("metadata", metadata)) if v is not None}
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}"
        return _parse(Subject, self._call("PATCH", path, _once(idempotency_key), json=body))

    def merge_subjects(self, collection: str, subject_id: str, into: str, *,
                       idempotency_key: str | None = None) -> Subject:
        """Move every face of ``subject_id`` to ``into`` (one person enrolled twice) and delete
        ``subject_id``; returns ``into`` (its metadata wins)."""
        path = f"/v1/collections/{_seg(collection)}/subjects/{_seg(subject_id)}/merge"
        return _parse(Subject, self._call("POST", path, _once(idempotency_key), json={"into": into}))

    def export_collection(self, collection: str, *, crops: bool = False) -> bytes:
        """The collection as a Parquet file's bytes (subjects, embeddings with their pack identity;
        the stored face crops with ``crops``): :meth:`import_collection` restores it. For a large
        collection, :meth:`export_collection_to` writes it to a file without holding it."""
        return self._call("GET", f"/v1/collections/{_seg(collection)}/export", params={"crops": crops},
                          expect=PARQUET)

    def export_collection_to(self, collection: str, path: str | os.PathLike, *, crops: bool = False) -> Path:
        """Write the collection's Parquet export to ``path`` (a folder: ``<collection>.parquet`` in
        it) as it comes; returns the file written. A failed export leaves no file (nor half of one)."""
        target = Path(path)
        if target.is_dir():
            target = target / f"{collection}.parquet"
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                self._call("GET", f"/v1/collections/{_seg(collection)}/export", params={"crops": crops},
                           expect=PARQUET, sink=out)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target

    def import_collection(self, export: ImageArg, *, name: str | None = None,
                          idempotency_key: str | None = None) -> Collection:
        """Create a collection from an export (a path, its bytes or a binary file object), named
        ``name`` or as exported; it keeps the exported pack identity (its own recognizer's space)."""
        params = {"name": name} if name is not None else None
        return _parse(Collection, self._call("POST", "/v1/collections/import", _once(idempotency_key),
                                             files=dict([_image("file", export)]), params=params))

    # -- video events and camera counts (stored by `faceatlas watch`) -------------------------------
    def list_events(self, *, camera: str | None = None, type: str | None = None,
                    since: str | datetime | None = None, limit: int = 100) -> list[VideoEvent]:
        """The tenant's newest events (at most ``limit``), of one ``camera`` or ``type`` if given,
        emitted at or after ``since`` (ISO 8601; without an offset: UTC). An event's
        ``data["snapshot"]``, when a frame was kept, is its address: :meth:`event_snapshot` reads it."""
        params: dict[str, Any] = {"limit": limit}
        params |= {k: v for k, v in (("camera", camera), ("type", type), ("since", _iso(since))) if v is not None}
        return [_parse(VideoEvent, e) for e in _items(self._call("GET", "/v1/events", params=params), "events")]

    def event_snapshot(self, event_id: str) -> bytes:
        """The JPEG frame kept with an event (cameras with ``snapshots:``); 404 ``not_found`` when none is kept."""
        return self._call("GET", f"/v1/events/{_seg(event_id)}/snapshot", expect="image")

    def camera_counts(self, camera: str, *, since: str | datetime | None = None,
                      until: str | datetime | None = None, label: str | None = None,
                      limit: int | None = None) -> CameraCounts:
        """A camera's per-minute counts per class (``label``: person, car, ...), oldest first, from
        ``since``'s minute on and before ``until``'s; when ``truncated``, ask again with ``since=next_from``."""
        params = {k: v for k, v in (("from", _iso(since)), ("to", _iso(until)), ("class", label),
                                    ("limit", limit)) if v is not None}
        data = self._call("GET", f"/v1/cameras/{_seg(camera)}/counts", params=params)
        counts = tuple(_parse(MinuteCount, c, label=c["class"]) for c in _items(data, "counts"))
        return _parse(CameraCounts, data, counts=counts)

    # -- retail: carts, face pay, refunds, alerts, occupancy, analytics ------------------------------
    def retail_cart(self, store: str, visit_id: int) -> RetailCart:
        path = f"/v1/retail/stores/{_seg(store)}/visits/{_seg(str(visit_id))}/cart"
        return _cart(self._call("GET", path))

    def retail_add_to_cart(self, store: str, visit_id: int, sku: str, quantity: int = 1, *,
                           idempotency_key: str | None = None) -> RetailCart:
        """Put ``quantity`` of ``sku`` into an open visit's cart (negative: put back); returns the cart."""
        path = f"/v1/retail/stores/{_seg(store)}/visits/{_seg(str(visit_id))}/cart"
        return _cart(self._call("POST", path, _once(idempotency_key), json={"sku": sku, "quantity": quantity}))

    def retail_pay(self, store: str, image: ImageArg, *, camera: str, event: str,
                   idempotency_key: str | None = None) -> RetailPayment:
        """Face pay at the checkout ``camera``: the face must be live and match a member who consented
        to face pay; their open visit's cart is charged once per ``event`` (the payment's id: a
        repeat answers ``repeated`` and charges nothing)."""
        path = f"/v1/retail/stores/{_seg(store)}/pay"
        return _parse(RetailPayment, self._call("POST", path, _once(idempotency_key), params={"camera": camera,
                                                "event": event}, files=dict([_image("image", image)])))

    def retail_refund(self, store: str, charge_id: int, *, amount_cents: int | None = None, reason: str = "",
                      key: str | None = None, idempotency_key: str | None = None) -> RetailRefund:
        """Refund a settled charge (``amount_cents``; default: what is left), once per ``key``."""
        body: dict[str, Any] = {"reason": reason} | {k: v for k, v in (("amount_cents", amount_cents),
                                                                        ("key", key)) if v is not None}
        path = f"/v1/retail/stores/{_seg(store)}/charges/{_seg(str(charge_id))}/refund"
        return _parse(RetailRefund, self._call("POST", path, _once(idempotency_key), json=body))

    def retail_alerts(self, store: str, *, open_only: bool = True) -> list[RetailAlert]:
        """The store's staff alerts, oldest first (``open_only=False``: resolved ones too)."""
        data = self._call("GET", f"/v1/retail/stores/{_seg(store)}/alerts", params={"open": open_only})
        return [_parse(RetailAlert, a) for a in _items(data, "alerts")]

    def retail_resolve_alert(self, store: str, alert_id: int, *,
                             idempotency_key: str | None = None) -> RetailAlertResolution:
        path = f"/v1/retail/stores/{_seg(store)}/alerts/{_seg(str(alert_id))}/resolve"
        return _parse(RetailAlertResolution, self._call("POST", path, _once(idempotency_key)))

    def retail_occupancy(self, store: str) -> RetailOccupancy:
        """Who is inside now: the open visits entered within ``window_hours``, members among them."""
        return _parse(RetailOccupancy, self._call("GET", f"/v1/retail/stores/{_seg(store)}/occupancy"))

    def retail_analytics(self, store: str, *, start: date | str | None = None,
                         end: date | str | None = None) -> RetailReport:
        """The store's analytics from ``start`` to ``end`` (days, inclusive; the server's default:
        the last 30 days, today included): visitors, conversion, dwell, zone heat, basket size, demographics."""
        data = self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics", params=_days(start, end))
        return _parse(RetailReport, data, first=data["from"], last=data["to"],
                      sections=tuple(_parse(RetailReportRow, r) for r in _items(data, "sections")))

    def retail_analytics_csv(self, store: str, *, start: date | str | None = None,
                             end: date | str | None = None) -> str:
        """:meth:`retail_analytics` as the server's CSV text: a ``metric,key,value`` header, then
        every row (the summary's included)."""
        params = {**_days(start, end), "format": "csv"}
        return self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics", params=params,
                          expect="text/csv").decode("utf-8")

    def retail_analytics_chart(self, store: str, chart: str = "visits_per_hour", *,
                               start: date | str | None = None, end: date | str | None = None) -> bytes:
        """One chart of the store's analytics as a PNG image's bytes."""
        return self._call("GET", f"/v1/retail/stores/{_seg(store)}/analytics",
                          params={**_days(start, end), "format": "png", "chart": chart}, expect="image")

    # -- account: API keys and the audit trail (admin key) -------------------------------------------
    def list_keys(self) -> list[ApiKey]:
        """The tenant's API keys (prefix, scopes, limits, revocation), never their secrets."""
        return [_parse(ApiKey, k) for k in _items(self._call("GET", "/v1/keys"), "keys")]

    def create_key(self, scopes: list[str], *, name: str = "", rate_per_second: float | None = None,
                   burst: int | None = None) -> IssuedKey:
        """A new key of the tenant (``scopes`` of admin, write, read, detect; the server's default
        limits unless given); its secret ``key`` is answered only this once."""
        body: dict[str, Any] = {"scopes": list(scopes), "name": name}
        body |= {k: v for k, v in (("rate_per_second", rate_per_second), ("burst", burst)) if v is not None}
        return _parse(IssuedKey, self._call("POST", "/v1/keys", json=body))

    def revoke_key(self, prefix: str, *, idempotency_key: str | None = None) -> None:
        """Revoke a key by its prefix (effective on its next call; a revoked key's revocation changes nothing)."""
        self._call("DELETE", f"/v1/keys/{_seg(prefix)}", _once(idempotency_key))

    def rotate_key(self, prefix: str) -> IssuedKey:
        """Revoke a key and issue its replacement, with the same scopes and limits."""
        return _parse(IssuedKey, self._call("POST", f"/v1/keys/{_seg(prefix)}/rotate"))

    def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        """The tenant's audit trail, newest first."""
        return [_parse(AuditEvent, e) for e in _items(self._call("GET", "/v1/audit", params={"limit": limit}),
                                                      "events")]

    # -- identity verification ---------------------------------------------------------------------
    def kyc_session(self, *, retention_days: int | None = None, idempotency_key: str | None = None) -> KycSession:
        """A new verification session: its id, the challenge to perform (chosen by the server), its expiry."""
        body = None if retention_days is None else {"retention_days": retention_days}
        return _parse(KycSession, self._call("POST", "/v1/kyc/sessions", _once(idempotency_key), json=body))

    def kyc_submit(self, session_id: str, document: ImageArg, *, selfie: ImageArg | None = None,
                   frames: list[ImageArg] | None = None, fps: float | None = None,
                   idempotency_key: str | None = None) -> KycSession:
        """Decide the session on the ID document and the selfie: a video (``selfie``) or images (``frames``)."""
        files = [_image("document", document)]
        files += [_image("selfie", selfie)] if selfie is not None else [_image("frame", f) for f in frames or []]
        data = {"fps": str(fps)} if fps is not None else None
        path = f"/v1/kyc/sessions/{_seg(session_id)}/submit"
        return _parse(KycSession, self._call("POST", path, _once(idempotency_key), files=files, data=data))

    def kyc_get(self, session_id: str) -> KycSession:
        return _parse(KycSession, self._call("GET", f"/v1/kyc/sessions/{_seg(session_id)}"))

    def kyc_sessions(self, *, status: str | None = None, limit: int = 100,
                     after: str | None = None) -> KycSessionPage:
        """A page of the tenant's sessions, newest first; pass its ``next`` as ``after`` for the next."""
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        if after:
            params["after"] = after
        data = self._call("GET", "/v1/kyc/sessions", params=params)
        return _parse(KycSessionPage, data, sessions=tuple(_parse(KycSession, s) for s in _items(data, "sessions")),
                      next=data.get("next_cursor"))

    # -- retail (the store's owner tenant) ----------------------------------------------------------
    def retail_products(self, store: str) -> list[RetailProduct]:
        """The products on sale in ``store``, by SKU."""
        path = f"/v1/retail/stores/{_seg(store)}/products"
        data = self._call("GET", path)
        currency = data.get("currency")
        return [_parse(RetailProduct, p, currency=currency) for p in _items(data, "products")]

    def retail_create_product(self, store: str, sku: str, name: str, price_cents: int, *,
                              idempotency_key: str | None = None) -> RetailProduct:
        """Put a product on sale (409 ``already_exists`` when the SKU is on sale already)."""
        body = {"sku": sku, "name": name, "price_cents": price_cents}
        path = f"/v1/retail/stores/{_seg(store)}/products"
        return _parse(RetailProduct, self._call("POST", path, _once(idempotency_key),
                                                json=body))

    def retail_update_product(self, store: str, sku: str, *, name: str | None = None,
                              price_cents: int | None = None, idempotency_key: str | None = None) -> RetailProduct:
        """Rename or reprice a product (carts keep the price their items were picked at)."""
        body = {k: v for k, v in (("name", name), ("price_cents", price_cents)) if v is not None}
        path = f"/v1/retail/stores/{_seg(store)}/products/{_seg(sku)}"
        return _parse(RetailProduct, self._call("PATCH", path, _once(idempotency_key), json=body))

    def retail_delete_product(self, store: str, sku: str, *,
                              idempotency_key: str | None = None) -> RetailProductRemoval:
        """Take a product off sale."""
        path = f"/v1/retail/stores/{_seg(store)}/products/{_seg(sku)}"
        return _parse(RetailProductRemoval, self._call("DELETE", path,
                                                       _once(idempotency_key)))

    def retail_members(self, store: str) -> list[RetailMember]:
        path = f"/v1/retail/stores/{_seg(store)}/members"
        return [_parse(RetailMember, m) for m in self._call("GET", path)["members"]]

    def retail_enrol_member(self, store: str, image: ImageArg, *, name: str, purposes: list[str],
                            granted_by: str | None = None, payment_ref: str | None = None,
                            idempotency_key: str | None = None) -> RetailMember:
        """Enrol a member from a face photo under the consent given (face_pay needs ``payment_ref``)."""
        data = {"name": name, "purposes": ",".join(purposes),  # granted_by: the server's default, the name
                **({"granted_by": granted_by} if granted_by else {}),
                **({"payment_ref": payment_ref} if payment_ref else {})}
        return _parse(RetailMember, self._call("POST", f"/v1/retail/stores/{_seg(store)}/members",
                                               _once(idempotency_key), files=dict([_image("image", image)]),
                                               data=data))

    def retail_withdraw_consent(self, store: str, member_id: str, purposes: list[str] | None = None, *,
                                idempotency_key: str | None = None) -> ConsentWithdrawal:
        """Withdraw the member's consent (``purposes``: only those): their faces go at once once no
        biometric purpose is left; the member and their history stay."""
        body: dict[str, Any] = {"consent": False} | ({"purposes": purposes} if purposes is not None else {})
        path = f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}"
        return _parse(ConsentWithdrawal, self._call("PATCH", path, _once(idempotency_key), json=body))

    def retail_grant_consent(self, store: str, member_id: str, image: ImageArg, *, purposes: list[str],
                             granted_by: str, payment_ref: str | None = None,
                             idempotency_key: str | None = None) -> RetailMember:
        """A new consent of a member, with a new face photo: while the member holds faces it must be
        theirs (matched 1:1 at the store's face pay FAR), else the server's 409 ``face_mismatch``."""
        data = {"purposes": ",".join(purposes), "granted_by": granted_by,
                **({"payment_ref": payment_ref} if payment_ref else {})}
        path = f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}/consent"
        return _parse(RetailMember, self._call("POST", path, _once(idempotency_key),
                                               files=dict([_image("image", image)]), data=data))

    def retail_erase_member(self, store: str, member_id: str, *, idempotency_key: str | None = None) -> RetailErasure:
        """Erase a member: faces, consents; visits and charges stay as anonymous counts. A retry
        with the same ``idempotency_key`` is answered without the member's id (``member`` None)."""
        answer = self._call("DELETE", f"/v1/retail/stores/{_seg(store)}/members/{_seg(member_id)}",
                            _once(idempotency_key))
        return _parse(RetailErasure, answer, member=answer.get("member"))  # None on a replay

    # -- account ---------------------------------------------------------------------------------
    def tenant_settings(self) -> TenantSettings:
        """The tenant's settings (admin key)."""
        return _parse(TenantSettings, self._call("GET", "/v1/settings"))

    def update_tenant_settings(self, *, kyc_retention_days: int | None = None,
                               idempotency_key: str | None = None) -> TenantSettings:
        """Change the tenant's settings (admin key); a shorter KYC retention deletes the images past it."""
        body = {} if kyc_retention_days is None else {"kyc_retention_days": kyc_retention_days}
        return _parse(TenantSettings, self._call("PATCH", "/v1/settings", _once(idempotency_key), json=body))

    def usage(self, *, start: date | str | None = None, end: date | str | None = None) -> Usage:
        """The tenant's calls, faces and errors per day (UTC) and operation, from ``start`` to ``end``
        (days, inclusive: a date, an ISO date or a datetime, whose UTC day counts; either open when not
        given: the server's default is every day)."""
        data = self._call("GET", "/v1/usage", params=_days(start, end))
        return _parse(Usage, data, rows=tuple(_parse(UsageRow, r) for r in _items(data, "rows")))

    def usage_csv(self, *, start: date | str | None = None, end: date | str | None = None) -> str:
        """:meth:`usage` as the server's CSV text (a header line, then tenant, day, operation, calls,
        faces, errors, failed per row)."""
        params = {**_days(start, end), "format": "csv"}
        return self._call("GET", "/v1/usage", params=params, expect="text/csv").decode("utf-8")

    # albums
    def albums(self) -> list[str]:
        """The names of the tenant's photo albums."""
        names = self._call("GET", "/v1/albums")["albums"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise _not_ours("'albums' is not a list of names")
        return list(names)

    def album_add_photo(self, album: str, image: ImageArg, *, keep_crops: bool | None = None,
                        idempotency_key: str | None = None) -> AlbumScan:
        """Add a photo to ``album`` (made by the first photo; ``keep_crops`` then: keep a crop of each
        face, see :meth:`album_face_crop`; None: the album's setting, none for a new album). Asked
        otherwise than the album was made it is 409 ``conflict`` and nothing is added (True of an
        album made without crops, False of one made with them). Its faces join people. A photo the
        album has is skipped."""
        path = f"/v1/albums/{_seg(album)}/photos"
        params = {} if keep_crops is None else {"keep_crops": keep_crops}
        data = self._call("POST", path, _once(idempotency_key), files=dict([_image("image", image)]), params=params)
        return _parse(AlbumScan, data, failed=_failures(data, "failed"))

    def album_people(self, album: str, *, min_faces: int = 1) -> list[AlbumPerson]:
        """The album's people with at least ``min_faces`` faces, most faces first."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people", params={"min_faces": min_faces})
        return [_parse(AlbumPerson, p) for p in _items(data, "people")]

    def album_faces(self, album: str, person: str) -> list[AlbumFace]:
        """A person's faces (by id or name; ``unsorted``: the faces the quality gate kept out), best first."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people/{_seg(person)}/faces")
        return [_parse(AlbumFace, f) for f in _items(data, "faces")]

    def album_timeline(self, album: str, person: str) -> list[AlbumPhoto]:
        """A person's photos by EXIF date (undated last, as added; ``unsorted``: the photos holding a
        face of that pool)."""
        data = self._call("GET", f"/v1/albums/{_seg(album)}/people/{_seg(person)}/timeline")
        return [_parse(AlbumPhoto, p) for p in _items(data, "photos")]

    def album_together(self, album: str, people: list[str]) -> list[AlbumPhoto]:
        """The photos in which every one of ``people`` (ids or names) appears, by EXIF date."""
        names = [people] if isinstance(people, str) else list(people)
        data = self._call("GET", f"/v1/albums/{_seg(album)}/together", params={"people": names})
        return [_parse(AlbumPhoto, p) for p in _items(data, "photos")]

    def album_face_crop(self, album: str, face_id: int) -> bytes:
        """The JPEG crop of a face (albums made with ``keep_crops``; others: 404 ``not_found``)."""
        return self._call("GET", f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/crop", expect="image")

    def album_name_person(self, album: str, person: str, name: str, *,
                          idempotency_key: str | None = None) -> AlbumPerson:
        """Name a person (kept through scans and re-clusters); the name then refers to them too. A
        name holding ``/`` is 422 ``validation_error``, one another person has 409 ``already_exists``."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}"
        return _parse(AlbumPerson, self._call("PATCH", path, _once(idempotency_key), json={"name": name}))

    def album_merge(self, album: str, person: str, absorb: str, *,
                    idempotency_key: str | None = None) -> AlbumPerson:
        """``absorb`` is ``person``: its faces join them (kept so through scans and re-clusters)."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}/merge"
        return _parse(AlbumPerson, self._call("POST", path, _once(idempotency_key), json={"absorb": absorb}))

    def album_move_face(self, album: str, face_id: int, to: str, *,
                        idempotency_key: str | None = None) -> AlbumFace:
        """This face is person ``to`` (not the person it leaves)."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/move"
        return _parse(AlbumFace, self._call("POST", path, _once(idempotency_key), json={"to": to}))

    def album_reject_face(self, album: str, face_id: int, *, idempotency_key: str | None = None) -> AlbumFace:
        """This face is not the person it is with: a person of its own, never put back."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}/reject"
        return _parse(AlbumFace, self._call("POST", path, _once(idempotency_key)))

    def album_split(self, album: str, face_ids: list[int], *, idempotency_key: str | None = None) -> AlbumPerson:
        """These faces are one new person."""
        return _parse(AlbumPerson, self._call("POST", f"/v1/albums/{_seg(album)}/split", _once(idempotency_key),
                                              json={"faces": list(face_ids)}))

    def album_recluster(self, album: str, *, idempotency_key: str | None = None) -> AlbumRecluster:
        """Cluster the whole album again, corrections and names kept."""
        return _parse(AlbumRecluster, self._call("POST", f"/v1/albums/{_seg(album)}/recluster",
                                                 _once(idempotency_key)))

    def album_erase_person(self, album: str, person: str, *, idempotency_key: str | None = None) -> AlbumErasure:
        """Erase a person: every face, vector, crop and constraint of theirs and the photos left with
        no face (copies promoted into a gallery collection are the collection's: delete them there).
        A retry with the same ``idempotency_key`` is answered without the person (``person`` None)."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}"
        answer = self._call("DELETE", path, _once(idempotency_key))
        return _parse(AlbumErasure, answer, person=answer.get("person"))  # None on a replay

    def album_delete_face(self, album: str, face_id: int, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete one face (a person's or one of the unsorted pool), its photo when no face is left
        on it, its person when it was their last face."""
        path = f"/v1/albums/{_seg(album)}/faces/{_seg(str(face_id))}"
        return _parse(AlbumDeletion, self._call("DELETE", path, _once(idempotency_key)))

    def album_delete_photo(self, album: str, photo_id: int, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete a photo (``AlbumPhoto.id``, ``AlbumFace.photo_id``) and every face on it; uploaded
        again, it is added again."""
        path = f"/v1/albums/{_seg(album)}/photos/{_seg(str(photo_id))}"
        return _parse(AlbumDeletion, self._call("DELETE", path, _once(idempotency_key)))

    def album_delete(self, album: str, *, idempotency_key: str | None = None) -> AlbumDeletion:
        """Delete an album whole: its people, faces, vectors, crops and photos (copies promoted into a
        gallery collection are the collection's: delete them there)."""
        return _parse(AlbumDeletion, self._call("DELETE", f"/v1/albums/{_seg(album)}", _once(idempotency_key)))

    def album_promote(self, album: str, person: str, collection: str, subject: str, *,
                      idempotency_key: str | None = None) -> AlbumPromotion:
        """Enrol the person's faces as ``subject`` of the gallery ``collection`` (same pack); promoting
        again enrols only the faces the subject does not hold yet."""
        path = f"/v1/albums/{_seg(album)}/people/{_seg(person)}/promote"
        return _parse(AlbumPromotion, self._call("POST", path, _once(idempotency_key),
                                                 json={"collection": collection, "subject": subject}))
