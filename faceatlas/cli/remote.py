"""`faceatlas remote ...`: the same operations against a FaceAtlas server, through faceatlas.client."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from faceatlas.cli.errors import coded, fail, json_text, os_error
from faceatlas.client import FaceAtlasApiError, FaceAtlasClient, FaceAtlasClientError, FaceAtlasTransportError
from faceatlas.engine import DEFAULT_FAR, DEFAULT_FPIR, Cut
from faceatlas.errors import CommandLineError, FaceAtlasError

app = typer.Typer(help="Talk to a remote FaceAtlas server (FACEATLAS_SERVER, FACEATLAS_API_KEY).",
                  no_args_is_help=True)

Server = Annotated[str, typer.Option("--server", envvar="FACEATLAS_SERVER", help="base URL of the server")]
Key = Annotated[str, typer.Option("--key", envvar="FACEATLAS_API_KEY", help="API key (fa_...)")]
Json = Annotated[bool, typer.Option("--json", help="errors as one JSON object on stdout too (answers are JSON)")]


def _json(answer: Any) -> Any:
    """The JSON the server sent for a client answer (a dataclass with ``raw``, or a list of them)."""
    if isinstance(answer, list):
        return [_json(item) for item in answer]
    return getattr(answer, "raw", answer)


def _run(server: str, key: str, call, as_json: bool = False, *,  # noqa: ANN001 - a function of the client
         write_key: str | None = None) -> None:
    """Call the server and print its JSON answer; any failure is one line on stderr, ``error
    (code): message`` as every command says it (the server's own code when it answered), or one
    JSON object on stdout with ``--json``; exit 2. ``write_key``: the Idempotency-Key a write was
    sent with, named when no answer came, a 5xx or an answer not of FaceAtlas (a proxy's page) did
    (the write may have been applied: a retry with it acts once)."""
    try:
        opened = FaceAtlasClient(server, key)
    except FaceAtlasClientError as exc:  # the URL or the key as given: the command line's
        fail(CommandLineError(str(exc)), as_json)
    again = (f"; it may have been applied: run it again with --idempotency-key {write_key} to apply it once"
             if write_key else "")
    try:
        with opened as client:
            answer = call(client)
    except FaceAtlasApiError as exc:  # the server (or a proxy before it) answered with an error
        wait = f" (retry in {exc.retry_after:g} s)" if exc.retry_after is not None else ""
        unsure = again if exc.status >= 500 else ""  # a 5xx (a proxy's 502 too) may follow the write
        fail(coded(exc.code, f"the server answered {exc.status}: {exc.message}{wait}{unsure}"), as_json)
    except FaceAtlasTransportError as exc:  # refused, unreachable, timed out, broken connection
        fail(coded(exc.code, f"{exc}{again}"), as_json)
    except FaceAtlasClientError as exc:  # what the client cannot send, or an answer not of FaceAtlas
        unsure = again if exc.code == "unexpected_answer" else ""  # something answered: after the write?
        fail(coded(exc.code, f"{exc}{unsure}"), as_json)
    except OSError as exc:
        fail(os_error(exc), as_json)
    print(json_text(_json(answer), indent=2))


@app.command()
def detect(image: Path, server: Server, key: Key, liveness: bool = False, as_json: Json = False) -> None:
    """Faces in an image."""
    _run(server, key, lambda c: c.detect(image, liveness=liveness), as_json)


@app.command()
def compare(image_a: Path, image_b: Path, server: Server, key: Key, far: float = DEFAULT_FAR,
            as_json: Json = False) -> None:
    """1:1 comparison with a FAR-calibrated verdict."""
    _run(server, key, lambda c: c.compare(image_a, image_b, far=far), as_json)


@app.command()
def enrol(
    collection: str, subject: str, image: Path, server: Server, key: Key,
    idempotency_key: Annotated[str | None, typer.Option(
        help="sent as Idempotency-Key: a call again with the key of one that got no answer enrols once "
             "[default: a new random key, named in the error when no answer came]")] = None,
    as_json: Json = False,
) -> None:
    """Enrol the largest face of an image to a subject."""
    once = idempotency_key or uuid.uuid4().hex
    _run(server, key, lambda c: c.enrol(collection, subject, image, idempotency_key=once), as_json, write_key=once)


@app.command()
def search(
    collection: str, image: Path, server: Server, key: Key, k: int = 5,
    fpir: Annotated[float | None, typer.Option(help="false positive identification rate (share of strangers named) "
                                                    f"[default: {DEFAULT_FPIR:g}]")] = None,
    far: Annotated[float | None, typer.Option(help="1:1 false-accept rate per comparison (instead of --fpir)")]
    = None,
    rank_only: Annotated[bool, typer.Option("--rank-only", help="rank without deciding (strangers included)")]
    = False,
    as_json: Json = False,
) -> None:
    """1:N search of a collection: who, or unknown (at --fpir 1e-3 for the collection's size by default)."""
    try:  # the cut the server answers with, refused here as there when two are given
        cut = Cut.given(far=far, fpir=fpir, rank_only=rank_only).stated()
    except FaceAtlasError as exc:
        fail(exc, as_json)
    _run(server, key, lambda c: {"results": _json(c.search(collection, image, k=k, fpir=fpir, far=far,
                                                            rank_only=rank_only)), **cut}, as_json)


@app.command()
def usage(server: Server, key: Key, as_json: Json = False) -> None:
    """The tenant's usage per day and operation."""
    _run(server, key, lambda c: c.usage(), as_json)
