"""`faceatlas remote ...`: the same operations against a FaceAtlas server, through faceatlas.client."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from faceatlas.cli.errors import coded, fail, json_text, os_error
from faceatlas.cli.files import STDIN, one_stdin, stdin_stream
from faceatlas.client import FaceAtlasApiError, FaceAtlasClient, FaceAtlasClientError, FaceAtlasTransportError
from faceatlas.engine import DEFAULT_FAR, DEFAULT_FPIR, Cut
from faceatlas.errors import (
    CommandLineError,
    FaceAtlasError,
    FileMissing,
    InvalidImage,
    InvalidInput,
    NotFound,
)

app = typer.Typer(help="Talk to a remote FaceAtlas server (FACEATLAS_SERVER, FACEATLAS_API_KEY, FACEATLAS_TIMEOUT).",
                  no_args_is_help=True)

Server = Annotated[str, typer.Option("--server", envvar="FACEATLAS_SERVER", help="base URL of the server")]
Key = Annotated[str, typer.Option("--key", envvar="FACEATLAS_API_KEY", help="API key (fa_...)")]
Timeout = Annotated[float, typer.Option("--timeout", envvar="FACEATLAS_TIMEOUT", metavar="SECONDS",
                                        help="seconds a call may take in all, from sending to the last byte "
                                             "of the answer")]
Json = Annotated[bool, typer.Option("--json", help="errors as one JSON object on stdout too (answers are JSON)")]
Once = Annotated[str | None, typer.Option(
    "--idempotency-key", help="sent as Idempotency-Key: a call again with the key of one that got no answer acts "
                              "once [default: a new random key, named in the error when no answer came]")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
TIMEOUT = 60.0  # the client's default


def _json(answer: Any) -> Any:
    """The JSON the server sent for a client answer (a dataclass with ``raw``, or a list of them)."""
    if isinstance(answer, list):
        return [_json(item) for item in answer]
    return getattr(answer, "raw", answer)


def _unreadable(exc: OSError) -> FaceAtlasError:
    """An image file the client could not read, said as the local commands say it (``file_not_found``:
    ``PATH: no such file``; ``invalid_image``: ``PATH: a folder, not an image file``)."""
    if exc.filename is not None and isinstance(exc, FileNotFoundError):
        return FileMissing(f"{os.fsdecode(exc.filename)}: no such file")
    if exc.filename is not None and isinstance(exc, IsADirectoryError):
        return InvalidImage(f"{os.fsdecode(exc.filename)}: a folder, not an image file")
    error = os_error(exc)
    return InvalidImage(str(error)) if isinstance(error, InvalidInput) else error


def _image(path: Path) -> Path | IO[bytes]:
    """An image argument as the client sends it: ``-`` is the bytes of standard input (the server
    decodes them, as a file's), any other the file."""
    return stdin_stream() if str(path) == STDIN else path


def _naming(message: str, parts: dict[str, Path]) -> str:
    """The server's message with each image part it names (``image_a`` of a compare) followed by its file."""
    if not parts:
        return message
    pattern = r"\b(" + "|".join(map(re.escape, parts)) + r")\b"
    return re.sub(pattern, lambda m: f"{m.group(1)} ({parts[m.group(1)]})", message)


def _run(server: str, key: str, call: Callable[[FaceAtlasClient], Any], as_json: bool = False, *,
         timeout: float = TIMEOUT, write_key: str | None = None, parts: dict[str, Path] | None = None,
         text: bool = False) -> None:
    """Call the server and print its JSON answer (``text``: the text it answered, as is); any
    failure is one line on stderr, ``error (code): message`` as every command says it (the
    server's own code when it answered; ``parts``: the image files sent, named where the server
    names their part), or one JSON object on stdout with ``--json``; exit 2. ``write_key``: the
    Idempotency-Key a write was sent with, named when no answer came, a 5xx or an answer not of
    FaceAtlas (a proxy's page) did (the write may have been applied: a retry with it acts once)."""
    try:
        opened = FaceAtlasClient(server, key, timeout=timeout)
    except FaceAtlasClientError as exc:  # the URL, the key or the timeout as given: the command line's
        fail(CommandLineError(str(exc)), as_json)
    again = (f"; it may have been applied: run it again with --idempotency-key {write_key} to apply it once"
             if write_key else "")
    try:
        with opened as client:
            answer = call(client)
    except FaceAtlasApiError as exc:  # the server (or a proxy before it) answered with an error
        wait = f" (retry in {exc.retry_after:g} s)" if exc.retry_after is not None else ""
        unsure = again if exc.status >= 500 else ""  # a 5xx (a proxy's 502 too) may follow the write
        message = _naming(exc.message, parts or {})
        fail(coded(exc.code, f"the server answered {exc.status}: {message}{wait}{unsure}"), as_json)
    except FaceAtlasTransportError as exc:  # refused, unreachable, timed out, broken connection
        fail(coded(exc.code, f"{exc}{again}"), as_json)
    except FaceAtlasClientError as exc:  # what the client cannot send, or an answer not of FaceAtlas
        unsure = again if exc.code == "unexpected_answer" else ""  # something answered: after the write?
        fail(coded(exc.code, f"{exc}{unsure}"), as_json)
    except OSError as exc:  # an image file that cannot be read
        fail(_unreadable(exc), as_json)
    if text:
        print(answer, end="")
    else:
        print(json_text(_json(answer), indent=2))


def _cut(as_json: bool, *, verifying: bool = False, **given: Any) -> dict[str, float]:
    """The cut a call states (``Cut.stated``), refused here as the server refuses it (two at once,
    a rate out of (0, 1), NaN); ``verifying``: a 1:1 verification's (``Cut.verifying``)."""
    try:
        return (Cut.verifying(**given) if verifying else Cut.given(**given)).stated()
    except FaceAtlasError as exc:
        fail(exc, as_json)


def _ask(target: str, held: int, server: str, yes: bool) -> None:
    """The question before a delete (declined: "Aborted.", exit 1, as `gallery delete`)."""
    if not yes:
        typer.confirm(f"delete {target} and its {held} faces on {server}?", abort=True, err=True)


def _check_asks(target: str, yes: bool, as_json: bool) -> None:
    if not yes and as_json:  # nothing to ask in
        fail(CommandLineError(f"--json cannot ask before deleting {target}: give --yes"), as_json)


@app.command()
def detect(image: Path, server: Server, key: Key, liveness: bool = False, timeout: Timeout = TIMEOUT,
           as_json: Json = False) -> None:
    """Faces in an image."""
    _run(server, key, lambda c: c.detect(_image(image), liveness=liveness), as_json, timeout=timeout)


@app.command()
def compare(image_a: Path, image_b: Path, server: Server, key: Key, far: float = DEFAULT_FAR,
            timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """1:1 comparison with a FAR-calibrated verdict."""
    _cut(as_json, far=far)
    one_stdin([image_a, image_b])
    _run(server, key, lambda c: c.compare(_image(image_a), _image(image_b), far=far), as_json, timeout=timeout,
         parts={"image_a": image_a, "image_b": image_b})


@app.command()
def liveness(image: Path, server: Server, key: Key, timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """Passive liveness of the largest face: real or spoof."""
    _run(server, key, lambda c: c.liveness(_image(image)), as_json, timeout=timeout)


@app.command()
def enrol(collection: str, subject: str, image: Path, server: Server, key: Key, idempotency_key: Once = None,
          timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """Enrol the largest face of an image to a subject (made when new)."""
    once = idempotency_key or uuid.uuid4().hex
    _run(server, key, lambda c: c.enrol(collection, subject, _image(image), idempotency_key=once), as_json,
         timeout=timeout, write_key=once)


@app.command()
def search(
    collection: str, image: Path, server: Server, key: Key,
    k: Annotated[int, typer.Option("-k", "--k", help="subjects to return")] = 5,
    fpir: Annotated[float | None, typer.Option(help="false positive identification rate (share of strangers named) "
                                                    f"[default: {DEFAULT_FPIR:g}]")] = None,
    far: Annotated[float | None, typer.Option(help="1:1 false-accept rate per comparison (instead of --fpir)")]
    = None,
    rank_only: Annotated[bool, typer.Option("--rank-only", help="rank without deciding (strangers included)")]
    = False,
    timeout: Timeout = TIMEOUT,
    as_json: Json = False,
) -> None:
    """1:N search of a collection: who, or unknown (at --fpir 1e-3 for the collection's size by default)."""
    _cut(as_json, far=far, fpir=fpir, rank_only=rank_only)  # refused here as the server refuses it
    _run(server, key, lambda c: c.search(collection, _image(image), k=k, fpir=fpir, far=far, rank_only=rank_only).raw,
         as_json, timeout=timeout)  # the server's whole answer: its results, its cut, faces_in_image


@app.command()
def verify(
    collection: str, subject: str, image: Path, server: Server, key: Key,
    far: Annotated[float | None, typer.Option(help=f"1:1 false-accept rate [default: {DEFAULT_FAR:g}]")] = None,
    threshold: Annotated[float | None, typer.Option(help="raw cosine cut-off, -1 to 1 (instead of --far)")] = None,
    timeout: Timeout = TIMEOUT,
    as_json: Json = False,
) -> None:
    """1:1 against an enrolled subject: is the largest face of the image this subject?"""
    _cut(as_json, verifying=True, far=far, threshold=threshold)
    _run(server, key, lambda c: c.verify(collection, subject, _image(image), far=far, threshold=threshold), as_json,
         timeout=timeout)


@app.command()
def collections(server: Server, key: Key, timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """The tenant's collections, with their pack and sizes."""
    _run(server, key, lambda c: c.list_collections(), as_json, timeout=timeout)


@app.command("collection-create")
def collection_create(
    name: str, server: Server, key: Key,
    keep_crops: Annotated[bool, typer.Option("--keep-crops", help="store a source crop of each face (allows "
                                                                  "re-embedding; stores face images)")] = False,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="a collection of that name in the server's "
                                                              "embedding space with the same --keep-crops is no "
                                                              "error: its answer, \"existed\": true, exit 0")] = False,
    idempotency_key: Once = None, timeout: Timeout = TIMEOUT, as_json: Json = False,
) -> None:
    """Create a collection bound to the server's model pack."""
    once = idempotency_key or uuid.uuid4().hex

    def call(client: FaceAtlasClient) -> dict[str, Any]:  # the server decides what "the same" is (its pack)
        made = client.create_collection(name, keep_crops=keep_crops, exist_ok=exist_ok, idempotency_key=once)
        return made.raw

    _run(server, key, call, as_json, timeout=timeout, write_key=once)


@app.command("collection-delete")
def collection_delete(name: str, server: Server, key: Key, yes: Yes = False, idempotency_key: Once = None,
                      timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """Delete a collection with every subject and face in it (asks first; --yes asks nothing)."""
    target = f"collection '{name}'"
    _check_asks(target, yes, as_json)
    once = idempotency_key or uuid.uuid4().hex

    def call(client: FaceAtlasClient) -> dict[str, Any]:
        held = client.get_collection(name).faces  # what is not there is an error before any question
        _ask(target, held, server, yes)
        client.delete_collection(name, idempotency_key=once)
        return {"deleted": target, "faces": held}

    _run(server, key, call, as_json, timeout=timeout, write_key=once)


@app.command()
def subjects(
    collection: str, server: Server, key: Key,
    limit: Annotated[int, typer.Option(help="subjects per page")] = 100,
    after: Annotated[str | None, typer.Option(help="the cursor of the next page (the answer's next)")] = None,
    timeout: Timeout = TIMEOUT, as_json: Json = False,
) -> None:
    """A collection's subjects, page by page (pass the answer's next as --after)."""
    _run(server, key, lambda c: c.list_subjects(collection, limit=limit, after=after), as_json, timeout=timeout)


@app.command("subject-delete")
def subject_delete(collection: str, subject: str, server: Server, key: Key, yes: Yes = False,
                   missing_ok: Annotated[bool, typer.Option(
                       "--missing-ok", help="a subject (or collection) that is not there is no error: "
                                            "\"missing\": true, exit 0")] = False,
                   idempotency_key: Once = None, timeout: Timeout = TIMEOUT, as_json: Json = False) -> None:
    """Delete a subject and every face of theirs (asks first; --yes asks nothing)."""
    target = f"subject '{subject}' of '{collection}'"
    _check_asks(target, yes, as_json)
    once = idempotency_key or uuid.uuid4().hex

    def call(client: FaceAtlasClient) -> dict[str, Any]:
        try:
            held = client.get_subject(collection, subject).faces  # what is not there is an error before any question
            _ask(target, held, server, yes)
            client.delete_subject(collection, subject, idempotency_key=once)
        except FaceAtlasApiError as exc:  # the server's not_found, the one error --missing-ok is for
            if not missing_ok or exc.code != NotFound.code:
                raise
            return {"deleted": target, "faces": 0, "missing": True}
        return {"deleted": target, "faces": held, **({"missing": False} if missing_ok else {})}

    _run(server, key, call, as_json, timeout=timeout, write_key=once)


@app.command()
def usage(
    server: Server, key: Key,
    start: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="first day (UTC)")] = None,
    end: Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="last day (UTC), inclusive")]
    = None,
    csv: Annotated[bool, typer.Option("--csv", help="the server's CSV (for billing) instead of JSON")] = False,
    timeout: Timeout = TIMEOUT, as_json: Json = False,
) -> None:
    """The tenant's usage per day and operation."""
    first, last = (start.date() if start else None), (end.date() if end else None)
    if csv:
        _run(server, key, lambda c: c.usage_csv(start=first, end=last), as_json, timeout=timeout, text=True)
    else:
        _run(server, key, lambda c: c.usage(start=first, end=last), as_json, timeout=timeout)
