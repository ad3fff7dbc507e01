"""Store configuration: cameras and their roles (and video sources), products and prices,
privacy settings, and the sinks that receive the store's alerts.

Loaded from YAML or JSON (``StoreConfig.load``); validated with pydantic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from faceatlas.engine import DEFAULT_FPIR, REAL_THRESHOLD
from faceatlas.errors import FaceAtlasError, FileMissing, InvalidArgument, InvalidInput, NotFound
from faceatlas.gallery import check_text, name_key
from faceatlas.video import (
    EVENTS_STDOUT,
    CameraConfig,
    LineSpec,
    MqttConfig,
    WebhookConfig,
    camera_from_settings,
    checked_settings,
)

CameraRole = Literal["entrance", "exit", "door", "zone", "checkout"]
DOT_SEGMENTS = (".", "..")
MAX_PRICE_CENTS = 10_000_000  # 100,000.00 in the store's currency: a cart total still fits a 32-bit column
PRICE_RULE = f"price_cents must be an integer from 0 to {MAX_PRICE_CENTS}"
CURRENCY_RULE = "currency must be a code of 3 upper-case letters (ISO 4217, such as EUR or USD)"


def valid_price(value: object) -> bool:
    """The one price rule of the catalogue, the API and the store file: an integer (not a bool, a
    float or a numeric text) from 0 to :data:`MAX_PRICE_CENTS`."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_PRICE_CENTS


def _as_stored(info: ValidationInfo) -> bool:
    """True when validating what was stored before a rule (context ``{"stored": True}``): it still loads."""
    return bool(info.context and info.context.get("stored"))


def not_dots(value: str, info: ValidationInfo) -> str:
    """``value`` unless it is ``.`` or ``..``: path segments that a URL client resolves away (a
    browser does so for ``%2E`` and ``%2E%2E`` too), so no link could reach a store or product by
    that id (the console's Save on SKU ``..`` posted to the store's own page). What was stored
    before this rule (validated with the context ``{"stored": True}``) still loads."""
    if value in DOT_SEGMENTS and not _as_stored(info):
        raise ValueError(f"an id cannot be {value!r}: a URL resolves it away (as it does '%2E')")
    return value


SKU_MAX_LENGTH = 100
PRODUCT_NAME_MAX_LENGTH = 400


def check_sku(sku: str) -> str:
    """``sku`` as kept, the one SKU rule of the catalogue, the API, the console and the store file:
    1 to 100 printable characters, no '/', no surrounding spaces, not '.' or '..' (no link could
    reach the product, see :func:`not_dots`), composed (NFC) by the gallery's rule for names
    (:func:`~faceatlas.gallery.check_text`): "Jos\u00e9" and "Jose\u0301" look the same, so they
    are one SKU."""
    if (not isinstance(sku, str) or not 1 <= len(sku) <= SKU_MAX_LENGTH or sku != sku.strip()
            or not sku.isprintable() or "/" in sku or sku in DOT_SEGMENTS):
        raise InvalidArgument(f"a SKU is 1-{SKU_MAX_LENGTH} printable characters, no '/', no surrounding spaces, "
                              "not '.' or '..'")
    return check_text(sku, "SKU", max_length=SKU_MAX_LENGTH) or ""


def check_product_name(name: str) -> str:
    """``name`` as kept, the one rule of a product's name: the gallery's rule for a name
    (:func:`~faceatlas.gallery.check_text`: composed, NFC; stripped; no control character), 1 to
    400 characters, not blank."""
    kept = check_text(name, "product name", max_length=PRODUCT_NAME_MAX_LENGTH) if isinstance(name, str) else None
    if not kept:
        raise InvalidArgument(f"a product name is 1-{PRODUCT_NAME_MAX_LENGTH} characters, not only spaces")
    return kept


def _rule(check: Any) -> Any:
    """A pydantic validator of ``check`` (a rule raising :class:`InvalidArgument`), skipped for what
    was stored before the rule (context ``{"stored": True}``): it still loads as it was."""
    def validate(value: Any, info: ValidationInfo) -> Any:
        if _as_stored(info):
            return value
        try:
            return check(value)
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
    return validate


# An id that is one segment of a URL (/v1/stores/{id}, the console's pages) and fits its columns:
# 1 to 100 characters, no '/', no control character, not '.' or '..'.
RetailId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^/\x00-\x1f\x7f]+$"),
                     AfterValidator(not_dots)]


class _Section(BaseModel):
    """A part of a store file: a name it does not know (a typo such as ``privcy``, a setting of
    another part) is refused when read from a file (``StoreConfig.load``), not dropped; a store
    saved by an earlier version (its database record) still loads."""

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get("from_file") and isinstance(data, dict):
            unknown = set(map(str, data)) - set(cls.model_fields)
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)} (known: {', '.join(cls.model_fields)})")
        return data


class Camera(_Section):
    """One camera of the store; zone cameras name the zone (shelf aisle) they watch.

    A ``door`` camera is both entrance and exit. ``source`` (a file, a stream URL, a webcam
    index) is what `faceatlas retail run` reads; ``line`` ("x1,y1,x2,y2", pixels) is the door's
    counting line of an entrance, exit or door camera (one that names a source must have it, else
    it counts nothing): crossing it "in" (the video layer's
    convention, see docs/retail.md) enters the store, "out" leaves it. ``stride``, ``faces`` and
    ``persons`` are the video pipeline's settings for this camera; ``video`` passes any other
    setting of :class:`faceatlas.video.CameraConfig` (``track_timeout``, ``recognition``...)."""

    id: RetailId
    role: CameraRole
    zone: RetailId | None = None
    source: str | None = None
    line: str | None = None
    stride: int = Field(default=2, ge=1)
    faces: bool = True
    persons: bool = True
    video: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _zone_named(self, info: ValidationInfo) -> Camera:
        if self.role == "zone" and not self.zone:
            raise ValueError(f"zone camera '{self.id}' needs a zone name")
        if self.line is not None and self.role not in ("entrance", "exit", "door"):
            raise ValueError(f"camera '{self.id}': only entrance, exit and door cameras have a line")
        if not _as_stored(info):
            # the line and the video: settings are checked as the file is read, naming it (a bad line or
            # setting was found once the run had started, after the store was made with its pack)
            try:
                video = self.video_config(self.source if self.source is not None else "0")
            except FaceAtlasError as exc:
                raise ValueError(str(exc)) from None
            if self.source is not None and self.role in ("entrance", "exit", "door") and not video.lines:
                # a door camera's visits are its line's crossings: without one the run counted 0 entries, silently
                article = "a" if self.role == "door" else "an"
                raise ValueError(f"camera '{self.id}': {article} {self.role} camera needs a counting line to count "
                                 'visits (line: "x1,y1,x2,y2", pixels)')
        return self

    def video_config(self, source: str) -> CameraConfig:
        """The video layer's settings of this camera reading ``source``: ``video:`` is read as a
        cams.yaml camera is (zones, a calibration, start_time as text...); the store camera's own
        settings are not among its names (the door's line: no other line on a door)."""
        where = f"camera '{self.id}'"
        given: dict[str, Any] = {"source": str(source), "name": self.id, "stride": self.stride,
                                 "faces": self.faces, "persons": self.persons}
        if self.line:
            try:
                given["lines"] = [LineSpec.parse(self.line, "door")]
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}: line: {exc}") from None
        where += ": video"
        try:
            return camera_from_settings(self.video, where, **given)
        except InvalidArgument as exc:  # a setting out of its rules (a zone's edges crossing)
            if str(exc).startswith(where):
                raise
            raise InvalidArgument(f"{where}: {exc}") from None


class Product(_Section):
    """A product on sale; prices are integer minor units (cents) to keep money exact."""

    sku: Annotated[RetailId, AfterValidator(_rule(check_sku))]
    name: Annotated[str, StringConstraints(min_length=1, max_length=PRODUCT_NAME_MAX_LENGTH),
                    AfterValidator(_rule(check_product_name))]
    price_cents: int  # the price rule is _price's (valid_price)

    @field_validator("price_cents", mode="before")
    @classmethod
    def _price(cls, value: Any, info: ValidationInfo) -> Any:
        """The catalogue's price rule (:func:`valid_price`): a store file's 99999999999, ``true``,
        ``"1250"`` or ``12.0`` was stored as a price that `Catalogue.create` and the API refuse."""
        if not _as_stored(info) and not valid_price(value):
            raise ValueError(PRICE_RULE)
        return value


class Privacy(_Section):
    """What the store may keep about people.

    ``anonymous_tracking`` keeps a short-lived face vector of non-members so that a returning
    anonymous visitor is counted once within ``anonymous_retention_hours``; off by default.
    ``keep_face_crops`` stores enrolment crops in the gallery (off: only vectors are kept).
    A visit still open ``max_visit_hours`` after its entry (its exit never seen) is closed as
    ``abandoned`` at the next entry: face pay's link to the member goes with it, and a cart with
    items raises an ``abandoned_cart`` alert.
    ``demographics_min_count`` (k, default 5): a demographic cell (an age band or a gender, of an
    hour's faces entering or of the members visiting in a report) counting fewer people is
    suppressed in every report, CSV, chart and API answer (see :func:`suppress_cells`).
    """

    anonymous_tracking: bool = False
    anonymous_retention_hours: float = Field(default=24.0, gt=0)
    max_visit_hours: float = Field(default=12.0, gt=0)
    keep_face_crops: bool = False
    demographics_min_count: int = Field(default=5, ge=1)


class Recognition(_Section):
    """Decision thresholds of the pack calibration: the open-set rate (FPIR, for the number of
    members' faces) at which a visitor is recognised, the per-comparison false-accept rate of face
    pay (1e-6: at most 1e-3 of strangers charged up to 1,000 members' faces), and the least
    MiniFASNet real-face score accepted at the exit."""

    visit_fpir: float = Field(default=DEFAULT_FPIR, gt=0, lt=1)
    pay_far: float = Field(default=1e-6, gt=0, lt=1)  # a rate: 2 failed every exit, at pay time
    min_liveness: float = Field(default=REAL_THRESHOLD, ge=0, le=1)  # the engine's one liveness rule


class StoreConfig(_Section):
    """A store: its id, the platform tenant that owns it (the API shows its analytics to that
    tenant only), currency, cameras, catalogue and settings."""

    id: RetailId
    name: Annotated[str, StringConstraints(max_length=400)] = ""
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "default"  # its column's width
    currency: str = "EUR"
    cameras: list[Camera]
    products: list[Product] = Field(default_factory=list)  # seeds the catalogue (see products.py)
    privacy: Privacy = Privacy()
    recognition: Recognition = Recognition()
    # where `retail run` sends the video events and the store's alerts (the video layer's sinks)
    events: str | None = None
    webhook: dict[str, Any] | None = None
    mqtt: dict[str, Any] | None = None

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str, info: ValidationInfo) -> str:
        """A currency code as charges and the payment backend carry it (a 3-letter column): a
        store file's ``"dollars!!"`` was stored and charged in."""
        if not _as_stored(info) and not (len(value) == 3 and value.isascii() and value.isupper() and value.isalpha()):
            raise ValueError(CURRENCY_RULE)
        return value

    @field_validator("events")
    @classmethod
    def _events_file(cls, value: str | None) -> str | None:
        """A file: `retail run` prints its summary on stdout, so '-' (stdout elsewhere) is refused
        (a file named "-" was created)."""
        if value is not None and value.strip() == EVENTS_STDOUT:
            raise ValueError("'-' (standard output) is where `retail run` prints its summary: give a file for "
                             "the events")
        return value

    @model_validator(mode="after")
    def _sinks(self) -> StoreConfig:
        """The alert sinks' settings, checked as `faceatlas watch` checks them (an ftp:// webhook, a
        setting of another name or type failed on every event of the run, or at its start)."""
        for kind, raw, what in ((WebhookConfig, self.webhook, "webhook"), (MqttConfig, self.mqtt, "mqtt")):
            if raw is not None:
                try:
                    checked_settings(kind, raw, what)
                except InvalidInput as exc:
                    raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _unique_ids(self, info: ValidationInfo) -> StoreConfig:
        # "Jos\u00e9" and "Jose\u0301" look the same: one id; a store saved before this rule with
        # both (distinct as written then) still loads, its ids compared as written
        same = (lambda text: text) if _as_stored(info) else name_key
        for label, ids in (("camera", [c.id for c in self.cameras]), ("product", [p.sku for p in self.products])):
            if len(ids) != len(set(map(same, ids))):
                raise ValueError(f"duplicate {label} ids in store '{self.id}'")
        return self

    @classmethod
    def load(cls, path: Path | str) -> StoreConfig:
        """Read a store from a ``.yaml``/``.yml`` or ``.json`` file; one that cannot be read, does
        not parse or is not a valid store is :class:`InvalidInput` saying what and where, in one line."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise FileMissing(f"{path}: no such store file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: cannot be read as a YAML or JSON file ({exc})") from exc
        try:
            raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidInput(f"{path}: does not parse: {problem}{where}") from exc
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: does not parse: {exc}") from exc
        try:
            return cls.model_validate(raw, context={"from_file": True})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the store'}: {e['msg']}" for e in exc.errors()[:5])
            more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
            raise InvalidInput(f"{path}: not a valid store: {problems}{more}") from exc

    def camera(self, camera_id: str) -> Camera:
        """The camera ``camera_id`` (:class:`NotFound` when the store has none by that id)."""
        for camera in self.cameras:  # as names compare (NFC): the video layer keeps a camera's name composed
            if name_key(camera.id) == name_key(camera_id):
                return camera
        raise NotFound(f"store '{self.id}' has no camera '{camera_id}'")

    def product(self, sku: str) -> Product:
        """The product ``sku`` (:class:`NotFound` when unknown)."""
        for product in self.products:
            if name_key(product.sku) == name_key(sku):
                return product
        raise NotFound(f"store '{self.id}' sells no product '{sku}'")

    @property
    def zones(self) -> list[str]:
        """Zone names in camera order, without duplicates."""
        return list(dict.fromkeys(c.zone for c in self.cameras if c.role == "zone" and c.zone))
