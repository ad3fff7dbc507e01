"""One error tree for every layer of FaceAtlas.

Every error raised on purpose is a :class:`FaceAtlasError` with a stable ``code`` (what clients
and scripts match on) and the HTTP ``status`` the service answers with. Doors map errors by
these two attributes only: the CLI prints ``code`` and exits 2, the service answers
``{"error": {"code", "message"}}`` with ``status`` (and ``Retry-After`` when ``retry_after`` is
set). An error without its own class is a fault of the server: ``FaceAtlasError`` itself is 500.
An error whose message is for whoever runs the server (a model file's path and sha256, the folders
searched, a download URL, a setting's name) has a ``client_message``: the service sends that in
its place, with the same code, and writes the message to the server log; the CLI prints the message.

    FaceAtlasError                      error                 500
    ├── InvalidInput                    bad_request           400
    │   ├── InvalidImage                invalid_image         400
    │   │   ├── EmptyImage              empty_image           400
    │   │   ├── TruncatedImage          truncated_image       400
    │   │   └── ImageTooLarge           image_too_large       413
    │   ├── InvalidArgument             validation_error      422
    │   │   ├── FarNotCalibrated        validation_error      422
    │   │   ├── IdempotencyKeyReused    idempotency_key_reused 422
    │   │   └── UnknownEffect           unknown_effect        422
    │   ├── UnknownPack                 unknown_pack          400
    │   ├── UrlFetchDisabled            url_fetch_disabled    400
    │   ├── FetchFailed                 fetch_failed          400
    │   ├── PayloadTooLarge             payload_too_large     413
    │   ├── UnsupportedMediaType        unsupported_media_type 415
    │   ├── FileMissing                 file_not_found        400
    │   └── CommandLineError            usage                 400
    ├── FaceError
    │   ├── NoFace                      no_face               422
    │   ├── TooManyFaces                too_many_faces        422
    │   └── LowQuality                  low_quality           422
    ├── NotFound                        not_found             404
    ├── Conflict                        conflict              409
    │   ├── AlreadyExists               already_exists        409
    │   ├── ModelMismatch               model_mismatch        409
    │   ├── NotCalibrated               not_calibrated        409
    │   ├── KeyRevoked                  key_revoked           409
    │   ├── KeyLimitReached             key_limit             409
    │   ├── IdempotencyInFlight         idempotency_in_flight 409
    │   └── SessionExpired              session_expired       410
    ├── AccessError
    │   ├── Unauthorized                unauthorized          401
    │   ├── Forbidden                   forbidden             403
    │   └── ConsentRequired             consent_required      403
    ├── LimitExceeded
    │   ├── RateLimited                 rate_limited          429
    │   ├── QuotaExceeded               quota_exceeded        429
    │   ├── Overloaded                  overloaded            503
    │   ├── StateUnavailable            state_unavailable     503
    │   ├── DatabaseUnavailable         database_unavailable  503
    │   ├── VectorStoreUnavailable      vector_store_unavailable 503
    │   └── StorageUnavailable          storage_unavailable   503
    ├── InvalidSetting                  invalid_setting       500
    ├── CamerasFailed                   cameras_failed        500
    └── ModelError                      model_error           500
        ├── ModelMissing                model_missing         503
        ├── RuntimeUnavailable          runtime_unavailable   422
        ├── ProviderMissing             provider_missing      503
        └── ModelIntegrityError         model_integrity       500

Layers raise these, or subclasses of them kept beside the layer's code when they carry that
layer's fields; each is drawn here too (its code is a contract as these are):

    faceatlas.apps.retail.members       NoUsableFace(NoFace)            no_face          422
                                        FaceMismatch(Conflict)          face_mismatch    409
    faceatlas.apps.retail.store         UnknownShopper(Conflict)        unknown_shopper  409
    faceatlas.batch.jobs                ClusterUnavailable(LimitExceeded) cluster_unavailable 503
    faceatlas.gallery.index.milvus      CollectionMissing(VectorStoreUnavailable) vector_store_unavailable 503
    faceatlas.service.console.sessions  LoginRequired(Unauthorized)     unauthorized     401

A layer that needs a new kind of failure adds a class here or subclasses one (and draws it above),
never a bare ``ValueError``.

Beside the tree, :class:`Rejection`: one input of many that failed while the others were answered
(its source, code and message), which every door gives as ``{"source", "error", "message"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AccessError",
    "AlreadyExists",
    "CamerasFailed",
    "CommandLineError",
    "Conflict",
    "DatabaseUnavailable",
    "ConsentRequired",
    "EmptyImage",
    "FaceAtlasError",
    "FaceError",
    "FarNotCalibrated",
    "FetchFailed",
    "FileMissing",
    "Forbidden",
    "IdempotencyInFlight",
    "IdempotencyKeyReused",
    "ImageTooLarge",
    "InvalidArgument",
    "InvalidImage",
    "InvalidInput",
    "InvalidSetting",
    "KeyLimitReached",
    "KeyRevoked",
    "LimitExceeded",
    "LowQuality",
    "ModelError",
    "ModelIntegrityError",
    "ModelMismatch",
    "ModelMissing",
    "NoFace",
    "NotCalibrated",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ProviderMissing",
    "QuotaExceeded",
    "RateLimited",
    "RuntimeUnavailable",
    "SessionExpired",
    "StateUnavailable",
    "StorageUnavailable",
    "TooManyFaces",
    "TruncatedImage",
    "Unauthorized",
    "UnknownEffect",
    "UnknownPack",
    "UnsupportedMediaType",
    "UrlFetchDisabled",
    "VectorStoreUnavailable",
]


class FaceAtlasError(Exception):
    """Base class of every error FaceAtlas raises on purpose; by itself a server fault (500)."""

    code = "error"
    status = 500
    # what the service answers instead of the message, when the message is for the server's operator
    # (None: the message is the caller's)
    client_message: str | None = None

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)
        self.retry_after = retry_after


# -- the caller's input ----------------------------------------------------------------------------
class InvalidInput(FaceAtlasError):
    """The request or the input data cannot be used as given."""

    code = "bad_request"
    status = 400


class CommandLineError(InvalidInput):
    """The command line does not parse: a missing argument, an unknown option, a value out of range
    (the CLI's own parser; raised by no layer)."""

    code = "usage"


class FileMissing(InvalidInput):
    """A file or folder named on the command line (an image, a video, a store's or cameras' YAML, a
    folder of photos, a batch job's source) is not there: every command says it with this code and
    the path, whatever it reads from it (it was ``invalid_image``, ``bad_request``,
    ``validation_error`` or ``usage`` by command). 400 as the input it names: a path is the CLI's
    and the remote client's (an HTTP API is never given one)."""

    code = "file_not_found"


class InvalidImage(InvalidInput):
    """The input is not an image FaceAtlas can decode."""

    code = "invalid_image"


class EmptyImage(InvalidImage):
    """The input has zero bytes or zero pixels."""

    code = "empty_image"


class TruncatedImage(InvalidImage):
    """The image header is valid but the pixel data ends early."""

    code = "truncated_image"


class ImageTooLarge(InvalidImage):
    """The image has more pixels than the configured limit (checked before decoding)."""

    code = "image_too_large"
    status = 413


class InvalidArgument(InvalidInput):
    """A parameter is well-formed but not acceptable (out of range, inconsistent, unknown value)."""

    code = "validation_error"
    status = 422


class FarNotCalibrated(InvalidArgument):
    """A false-accept rate that the pack's calibration has no threshold for."""


class IdempotencyKeyReused(InvalidArgument):
    """An ``Idempotency-Key`` already used for another call (another method, path, query or body)."""

    code = "idempotency_key_reused"


class UnknownPack(InvalidInput):
    """No model pack has the requested name."""

    code = "unknown_pack"


class UnknownEffect(InvalidArgument):
    """No AR effect has the requested name (an argument's unknown value: 422, as every other)."""

    code = "unknown_effect"


class UrlFetchDisabled(InvalidInput):
    """Fetching images by URL is off, or the URL's origin (scheme, host, port) is not allowed."""

    code = "url_fetch_disabled"


class FetchFailed(InvalidInput):
    """An allowed image URL could not be fetched: connection refused or reset, the deadline for
    the whole fetch passed, or the origin answered anything but 200."""

    code = "fetch_failed"


class PayloadTooLarge(InvalidInput):
    """The request body or a fetched image exceeds the size limit."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(InvalidInput):
    """The request body is in a format the endpoint does not take."""

    code = "unsupported_media_type"
    status = 415


# -- faces -----------------------------------------------------------------------------------------
class FaceError(FaceAtlasError):
    """The image decoded, but its faces do not fit the operation."""

    code = "face_error"
    status = 422


class NoFace(FaceError):
    """An operation that needs a face found none."""

    code = "no_face"


class TooManyFaces(FaceError):
    """An operation that needs exactly one face found several."""

    code = "too_many_faces"


class LowQuality(FaceError):
    """An operation that needs a face of a minimum quality found none good enough (an enrolment's
    ``min_quality``)."""

    code = "low_quality"


# -- records ---------------------------------------------------------------------------------------
class NotFound(FaceAtlasError):
    """A collection, subject, face, key, product or transaction does not exist (for this tenant)."""

    code = "not_found"
    status = 404


class Conflict(FaceAtlasError):
    """The operation conflicts with the state of what it acts on."""

    code = "conflict"
    status = 409


class AlreadyExists(Conflict):
    """A collection, subject or tenant with this name or id already exists."""

    code = "already_exists"


class ModelMismatch(Conflict):
    """Embeddings of two different models (embedding spaces) were mixed."""

    code = "model_mismatch"


class NotCalibrated(Conflict):
    """A FAR-based threshold was asked of a pack that has no calibration."""

    code = "not_calibrated"


class KeyRevoked(Conflict):
    """The API key is revoked (or was rotated already): it cannot be rotated again."""

    code = "key_revoked"


class KeyLimitReached(Conflict):
    """A new key would pass the tenant's ceiling on active keys or on their summed rate."""

    code = "key_limit"


class IdempotencyInFlight(Conflict):
    """A write call with the same ``Idempotency-Key`` is still running; retry once it answered."""

    code = "idempotency_in_flight"


class SessionExpired(Conflict):
    """A verification session was submitted after its expiry (create a new one)."""

    code = "session_expired"
    status = 410


# -- access ----------------------------------------------------------------------------------------
class AccessError(FaceAtlasError):
    """The caller may not do this."""

    code = "forbidden"
    status = 403


class Unauthorized(AccessError):
    """No valid API key was given."""

    code = "unauthorized"
    status = 401


class Forbidden(AccessError):
    """The key is valid but lacks the scope (or the tenant) this needs."""

    code = "forbidden"


class ConsentRequired(AccessError):
    """Biometric processing of this person needs a consent that was not given (or was withdrawn)."""

    code = "consent_required"


# -- limits ----------------------------------------------------------------------------------------
class LimitExceeded(FaceAtlasError):
    """A limit was reached; ``retry_after`` says when trying again makes sense."""

    code = "limit_exceeded"
    status = 429


class RateLimited(LimitExceeded):
    """The key's request rate is above its limit."""

    code = "rate_limited"


class QuotaExceeded(LimitExceeded):
    """The tenant's monthly quota is used up."""

    code = "quota_exceeded"


class Overloaded(LimitExceeded):
    """The inference queue is full; the server refuses new work at once."""

    code = "overloaded"
    status = 503


class StateUnavailable(LimitExceeded):
    """The shared state of the service processes (Redis: rates, quotas, idempotency keys) cannot
    be reached: a metered call is refused rather than served unmetered."""

    code = "state_unavailable"
    status = 503


class DatabaseUnavailable(LimitExceeded):
    """The database (the record: bill, keys, galleries) cannot be reached: the call is refused,
    nothing written, and an answer that could not be billed is not sent."""

    code = "database_unavailable"
    status = 503


class VectorStoreUnavailable(LimitExceeded):
    """The vector store of the galleries (Milvus, ``FACEATLAS_VECTOR_BACKEND=milvus``) cannot be
    reached, is not installed, or did not confirm an erasure: the call is refused. The message
    names the Milvus address, collection names (other tenants' ids among them) and Milvus's own
    words: for the operator (the server log); a client is told only that the store is unavailable."""

    code = "vector_store_unavailable"
    status = 503
    client_message = ("the vector store of this server is unavailable; try again later (its operator finds the "
                      "details in the server log)")


class StorageUnavailable(LimitExceeded):
    """Storage FaceAtlas writes to cannot be used: the object storage of a batch job's source or
    output (``s3://``, ``gs://``, ...: no such bucket, credentials it refuses, or an endpoint that
    does not answer), or a gallery's index folder (``FACEATLAS_INDEX_DIR``) that a delete can
    neither write nor clear (read-only): refused before the delete commits (nothing deleted), or
    said after it (the index scrub pending). The message names no path (the server log does)."""

    code = "storage_unavailable"
    status = 503


class InvalidSetting(FaceAtlasError):
    """A ``FACEATLAS_*`` setting the operator gave is out of its rules (a number that is not
    one, a provider that does not exist, a calibration of that name nowhere): a fault of the
    installation, said with the variable's name, never run with a default in its place."""

    code = "invalid_setting"
    client_message = "a setting of this server is invalid (its operator finds the details in the server log)"


class CamerasFailed(FaceAtlasError):
    """Some cameras of a run that runs several at once failed (a source that stopped being readable,
    an output that could not be written, a collection removed) while the others ran to their end:
    ``failures``, each failed camera's name and its own error (in the cameras' order), and
    ``stats``, what each camera that ended did (their events were written). Raised once every camera
    has ended; a use case that reports the run (``faceatlas watch``, ``retail run``) keeps both in
    its report, and its door says every camera's summary and then one line per failed camera (a
    camera's failure was raised alone, and the others' summaries were lost)."""

    code = "cameras_failed"

    def __init__(self, failures: dict[str, FaceAtlasError], stats: list[Any] | None = None) -> None:
        said = "; ".join(f"camera {name!r}: {' '.join(str(error).split())}" for name, error in failures.items())
        super().__init__(said or "a camera failed")
        self.failures = dict(failures)
        self.stats = list(stats or [])


# -- models (server side) --------------------------------------------------------------------------
class ModelError(FaceAtlasError):
    """A model file cannot be used: a fault of the installation, not of the request."""

    code = "model_error"
    client_message: str | None = ("a model file this server needs cannot be used (its operator finds the details "
                                  "in the server log)")


class ModelMissing(ModelError):
    """A model file is not on disk and could not be downloaded."""

    code = "model_missing"
    status = 503
    client_message = "a model file this server needs is missing (its operator finds the details in the server log)"


class RuntimeUnavailable(ModelError):
    """The pack has no variant for the requested runtime (int8 of a recogniser ONNX Runtime cannot run)."""

    code = "runtime_unavailable"
    status = 422
    client_message = None  # a pack and a runtime named: nothing of the server's files


class ProviderMissing(ModelError):
    """The inference backend the settings ask for (``FACEATLAS_PROVIDER=openvino``) is not installed."""

    code = "provider_missing"
    status = 503
    client_message = None  # a package to install (MediaPipe for AR effects): nothing of the server's files


class ModelIntegrityError(ModelError):
    """A model file on disk or downloaded does not match its published sha256."""

    code = "model_integrity"
    client_message = "a model file of this server is corrupt (its operator finds the details in the server log)"


# -- one input of many that failed ----------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """One input of many that failed, the others answered: an image (or one of its faces) that an
    enrolment or a scan refused, or that ``detect`` or ``liveness`` could not answer for. Its
    ``source`` (a path, an upload's name, or ``image#N``: the N-th image given, from 0), the error
    tree's ``code`` of why (``no_face``,
    ``too_many_faces``, ``low_quality``, ``invalid_image`` and its kinds...) and a ``message`` for
    people. Doors read ``code`` and ``message``; ``reason`` is the text they show and
    :meth:`to_dict` the JSON object they give (the CLI's ``--json``, the API's answers). Here,
    beside the tree whose codes it carries, so that a door with no gallery (``detect``,
    ``liveness``) gives the same object without importing one (it is
    :class:`faceatlas.gallery.Rejection` too)."""

    source: str
    code: str
    message: str

    @classmethod
    def of(cls, source: str, error: FaceAtlasError) -> Rejection:
        """The rejection of ``source`` for ``error`` (its code and message)."""
        return cls(source, error.code, str(error))

    def to_dict(self) -> dict[str, str]:
        """``{"source", "error", "message"}``: every door's shape of one input that failed (the
        ``error`` a code of the tree, as in ``{"error", "message"}`` error bodies). It was three:
        detect's ``{"image", "error", "message"}``, enrol's ``{"source", "reason": "code: why"}``
        and a scan's ``["source", "code: why"]`` pairs."""
        return {"source": self.source, "error": self.code, "message": self.message}

    @property
    def reason(self) -> str:
        """``code: message`` (``low_quality (0.31 < 0.50)``: a measure, in brackets)."""
        if self.code == LowQuality.code:
            return f"{self.code} ({self.message})"
        return f"{self.code}: {self.message}"
