"""What the gallery accepts as names, subject ids, metadata, page cursors and page sizes: one rule
each, used by every entry point (the gallery's own writes, and the service for ids in URL paths and
bodies). Breaking a rule is :class:`InvalidArgument` (422), before anything is stored.

Every string the gallery stores (ids, names, metadata keys and values at any depth, an import's
pack identity, a face's source) passes :func:`check_stored`: text that UTF-8 can hold (no lone
surrogate, half of an emoji that a JSON ``"\\ud83d"`` makes) and without NUL (PostgreSQL's text
refuses it). Stored, such a string broke every later read that showed it."""

from __future__ import annotations

import json
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.errors import InvalidArgument, InvalidInput

__all__ = [
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "METADATA_MAX_BYTES",
    "METADATA_MAX_DEPTH",
    "PAGE_MAX",
    "NAME_MAX_LENGTH",
    "ROW_ID_MAX",
    "SEARCH_K_MAX",
    "check_gallery_space",
    "check_id",
    "check_k",
    "check_limit",
    "check_min_quality",
    "check_metadata",
    "check_row_id",
    "check_stored",
    "check_tenant",
    "check_text",
    "name_forms",
    "name_key",
    "parse_cursor",
]

# At least one character that is not a dot: "." and ".." are path segments that URL clients resolve
# away (`/collections/..` is `/`), so a collection or subject by that name could not be reached.
ID_PATTERN = r"^[A-Za-z0-9_.\-]*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$"
ID_MAX_LENGTH = 200
NAME_MAX_LENGTH = 300  # a display name (a subject's, an album person's): check_text's default
METADATA_MAX_DEPTH = 16
METADATA_MAX_BYTES = 64 * 1024
_ID = re.compile(ID_PATTERN)
# What a one-line name may not hold: the control characters (C0, DEL and C1, where NEL U+0085 is a
# line break and CSI U+009B a terminal escape), the line and paragraph separators (U+2028, U+2029)
# and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069: an unclosed one
# reverses the rest of the line that shows the name).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ROW_ID_MAX = 2**63 - 1  # the largest key a BIGINT (and SQLite's INTEGER) holds
PAGE_MAX = 1000  # the most items one page of a listing holds
SEARCH_K_MAX = 100  # the most subjects (matches per face) one search returns: the API's bound and the CLI's


def check_stored(value: str, what: str = "text") -> str:
    """``value`` when the gallery can store it: encodable as UTF-8 (no lone surrogate: a JSON
    ``"\\ud83d"`` escape is half an emoji, accepted by JSON parsers, then refused by every answer
    and export that showed it) and without NUL (PostgreSQL's text refuses it, SQLite kept it)."""
    if "\x00" in value:
        raise InvalidArgument(f"a {what} holds a NUL character (got {_shown(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"a {what} is not UTF-8 text: it holds a lone surrogate {value[exc.start]!r} "
                              f"(half of a character such as an emoji; got {_shown(value)})") from exc
    return value


def _shown(value: str) -> str:
    """``value`` as an error message shows it: its repr (escapes, never a raw surrogate), cut short."""
    return repr(value[:40]) + ("..." if len(value) > 40 else "")


def check_id(value: object, what: str = "subject id") -> str:
    """``value`` when it is a valid collection name or subject id: 1 to 200 of ``A-Z a-z 0-9 _ . -``,
    not dots alone."""
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX_LENGTH or not _ID.fullmatch(value):
        shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
        article = "an" if what[:1] in "aeiou" else "a"
        raise InvalidArgument(
            f"{article} {what} is 1 to {ID_MAX_LENGTH} characters of A-Z, a-z, 0-9, '_', '.', '-', not dots alone"
            f" (got {shown})"
        )
    return value


def check_row_id(value: int, what: str = "face id") -> int:
    """``value`` when it can be a stored row's id (a face id): 1 to :data:`ROW_ID_MAX`. Beyond
    that the database would fail on it (an error, not an answer), so it is refused here."""
    if not 0 < value <= ROW_ID_MAX:
        raise InvalidArgument(f"a {what} is 1 to {ROW_ID_MAX} (got {value})"[:120])
    return value


def check_text(value: str | None, what: str = "name", max_length: int = NAME_MAX_LENGTH) -> str | None:
    """A free-text field (a subject's display name, a product's, a camera's) as kept: in Unicode's
    composed form (NFC, see :func:`name_key`) without its surrounding blanks (as a tenant's name and
    an album person's: "  Ann " is "Ann"; blanks alone are ""), when it is at most ``max_length``
    characters, none of them a control character (NUL, a line break, an escape, a C1 control, a line
    or paragraph separator, a bidi override or isolate: a name is one line that a terminal or a log
    shows as it is; a trailing line break is refused too, not stripped away)."""
    if value is None:
        return None
    # measured as kept and as given: NFC may lengthen a name (U+FB2C is 3 characters) or shorten it,
    # and a caller may store either form; each must fit the column
    composed = name_key(value)
    if max(len(composed), len(value)) > max_length or _CONTROL.search(composed):
        raise InvalidArgument(f"a {what} is at most {max_length} characters without control characters")
    return check_stored(composed.strip(), what)


def name_key(value: str) -> str:
    """``value`` as names compare: in Unicode's composed form, NFC. "José" typed with a precomposed
    é (U+00E9) or as e and a combining accent (U+0301, as macOS file names and some input methods
    give it) looks the same, so it is the same name: kept names are NFC, and a lookup by name
    compares the NFC of both sides (a name kept before may be in another form)."""
    return unicodedata.normalize("NFC", value)


def name_forms(value: str) -> set[str]:
    """The spellings a lookup by the name (or name-like id) ``value`` matches in a column, where it is
    compared as stored: as given, composed (NFC, as names are kept) and decomposed (NFD, as macOS
    file names give it: one kept before names were composed)."""
    return {value, name_key(value), unicodedata.normalize("NFD", value)}


def check_tenant(value: str) -> str:
    """``value`` when it can name a tenant space: 1 to :data:`ID_MAX_LENGTH` characters (its column's
    width), not blank, none a control character (a space named by a typo of the shell, ``--tenant ""``,
    would hold data that no one could name again)."""
    if not value.strip() or len(value) > ID_MAX_LENGTH or _CONTROL.search(value):
        raise InvalidArgument(f"a tenant space is 1 to {ID_MAX_LENGTH} characters, not blank, without control "
                              f"characters (got {value[:40]!r}{'...' if len(value) > 40 else ''})")
    return check_stored(value, "tenant space")


SERVICE_SPACE_PREFIX = "svc:"


def service_space(tenant_id: str) -> str:
    """The gallery space of the HTTP service's tenant ``tenant_id``: ``svc:<id>`` (its collections,
    KYC sessions and albums). Service tenant ids have no colon, so this space meets neither the
    CLI's tenants nor the apps' (``app:<app>:<name>``). Named here, below every door, so that a
    layer given a space (``watch``'s ``tenant:``) tells whose it is without the service."""
    return f"{SERVICE_SPACE_PREFIX}{tenant_id}"


def space_owner(space: str) -> str | None:
    """The service tenant whose gallery space is ``space`` (``svc:<id>``), or None for any other
    space (the CLI's ``default``, an app's ``app:...``)."""
    owner = space.removeprefix(SERVICE_SPACE_PREFIX)
    return owner if space.startswith(SERVICE_SPACE_PREFIX) and owner else None


APP_SPACE_PREFIX = "app:"
# The apps that keep a gallery space of their own (``app:<app>:<name>``): whose it is, and what
# changes it (its own tables hold the faces' ids: a change made past it breaks them). A store's
# members are enrolled and erased over the API or on the console's store page: `faceatlas retail`
# only runs the store's cameras (the refusal sent people to a `retail ...` that has no such command).
_APP_SPACES = {"albums": ("an album's", "`faceatlas album ...`"),
               "retail": ("a store's", "the store's members API (/v1/retail/stores/{store}/members) or the "
                                       "console's store page")}


def check_gallery_space(space: str) -> str:
    """``space`` when the gallery's own commands may read or change it: any space but an app's
    (``app:<app>:...``). An album's or a store's space is kept by its app, whose tables name the
    faces and subjects in it: ``gallery delete --tenant app:albums:...`` deleted a person's subject
    and the album's next recluster was ``not_found``; an enrolment put foreign faces into it.
    Refused with :class:`InvalidArgument` naming what the app changes it with."""
    if not space.startswith(APP_SPACE_PREFIX):
        return space
    app = space.removeprefix(APP_SPACE_PREFIX).split(":", 1)[0]
    whose, use = _APP_SPACES.get(app, ("an app's", "that app's own commands"))
    shown = space if len(space) <= 60 else space[:57] + "..."
    raise InvalidArgument(f"{shown} is {whose} gallery space, kept by the app: use {use}")


def check_min_quality(min_quality: float) -> float:
    """``min_quality`` when it is a face quality, 0 to 1 (NaN is not)."""
    if not 0.0 <= min_quality <= 1.0:  # also NaN
        raise InvalidArgument(f"min_quality is a face quality from 0 to 1, not {min_quality:g}")
    return min_quality


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata as given (``{}`` for None) when it is JSON of at most ``METADATA_MAX_DEPTH``
    levels and ``METADATA_MAX_BYTES`` bytes (its JSON encoded as UTF-8, characters other than
    ASCII unescaped: a CJK character is 3 bytes, not the 6 of ``\\uXXXX``) whose keys and string
    values, at any depth, pass :func:`check_stored` (no NUL, no lone surrogate)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidArgument("metadata is a JSON object")
    _check_depth(metadata, 1)
    try:
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadata must be plain JSON: {exc}") from exc
    if len(text.encode()) > METADATA_MAX_BYTES or "\\u0000" in text:
        raise InvalidArgument(f"metadata is at most {METADATA_MAX_BYTES} bytes of JSON (UTF-8) without NUL")
    return metadata


def _check_depth(value: object, depth: int) -> None:
    """The nesting of ``value`` (a dict or list at ``depth``), and every string in it."""
    if depth > METADATA_MAX_DEPTH:
        raise InvalidArgument(f"metadata nests at most {METADATA_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str):  # another key is refused as not plain JSON
                check_stored(key, "metadata key")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if isinstance(child, dict | list):
            _check_depth(child, depth + 1)
        elif isinstance(child, str):
            check_stored(child, "metadata value")


def check_limit(limit: int) -> int:
    """``limit`` when it is a page size: 1 to :data:`PAGE_MAX` items (more was an overflow of the
    database's integer, or one answer of every row)."""
    if isinstance(limit, bool) or not 1 <= limit <= PAGE_MAX:
        raise InvalidArgument(f"limit is the number of items per page, 1 to {PAGE_MAX}, not {limit}"[:120])
    return limit


def check_k(k: object, what: str = "subjects to return") -> int:
    """``k`` when it is a search's number of matches: a whole number, 1 to :data:`SEARCH_K_MAX` (the
    API refused more, the CLI's ``-k`` took any number; 2.5 reached faiss as a float)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= SEARCH_K_MAX:
        raise InvalidArgument(f"k is the number of {what}, a whole number from 1 to {SEARCH_K_MAX}, not {k!r}"[:160])
    return int(k)


def parse_cursor(after: str | int | None) -> int | None:
    """A page cursor (the ``next`` of the previous page) as a row id; a cursor past every row
    id is a valid cursor of an empty page, anything but digits is :class:`InvalidArgument`."""
    if after is None or after == "":
        return None
    text = str(after)
    if not text.isascii() or not text.isdigit():
        raise InvalidArgument(f"'after' is the 'next' cursor of a previous page (digits), got {text[:40]!r}")
    return ROW_ID_MAX if len(text) > 19 else min(int(text), ROW_ID_MAX)


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` cannot be a folder (made if missing): ``"is a file"``, ``"is under F, a file"``
    (the nearest that exists is a file F), or None (it is a folder, or can be made)."""
    for folder in (path, *path.parents):
        if folder.exists():
            if folder.is_dir():
                return None
            return "is a file" if folder == path else f"is under {folder}, a file"
    return None


def check_index_dir(index_dir: Path | None, what: str = "the index folder", *, make: bool = False) -> None:
    """:class:`InvalidInput` when the gallery's index folder cannot be one: a file, or under a file
    (``FACEATLAS_INDEX_DIR`` naming a file: enrolments went on without their index, and the first
    search failed on "file exists"). ``what`` names where it was given (``--index-dir``). ``make``
    (a server's start): the folder is made, and a file written and removed there, so one that cannot
    be (``/proc/x``, read-only) is said now (the server started ready, and every search was a 500)."""
    where = None if index_dir is None else not_a_folder(index_dir)
    if where is not None:
        raise InvalidInput(f"{what} {index_dir} {where}, not a folder: give the folder of the gallery's indexes")
    if make and index_dir is not None:
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=index_dir):
                pass
        except OSError as exc:
            raise InvalidInput(f"{what} {index_dir} cannot be made or written ({exc.strerror or exc}): give a "
                               "folder this server can write") from None
