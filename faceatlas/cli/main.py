"""The `faceatlas` command line: a thin door onto the engine (and the layers above it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError
from typer.core import TyperGroup

from faceatlas.cli.errors import (
    Output,
    UsageError,
    WholeTable,
    database_error,
    exit_for_failures,
    fail,
    flush_stdout,
    interrupted,
    is_usage_error,
    json_text,
    os_error,
    print_error,
    stdout_gone,
    stdout_unwritable,
    usage_error,
    watching_stdout,
)
from faceatlas.cli.files import expand_images, image_source, one_stdin, progress, show_int8_notices
from faceatlas.engine import (
    DEFAULT_FAR,
    FaceAnalyzer,
    FaceAtlasError,
    NoFace,
    Pack,
    check_drawing_path,
    draw_faces,
    get_pack,
    save_image,
)
from faceatlas.errors import InvalidArgument, Rejection
from faceatlas.settings import warn_unknown_variables

# The commands of the other layers, by name: (module, attribute: one command's function, or a Typer
# of sub-commands, the line `faceatlas --help` shows for it). Each module is imported when its command
# runs, so a command does not pay for the others' imports: importing the CLI took 0.6 s instead of 3 s
# when every layer (the service, albums, KYC, video, batch) was imported up front (`detect`: 1.7 s, was
# 4.2), and `faceatlas --help` lists them from these lines (0.9 s, was 4.4 s importing them all); a
# test holds each line equal to its command's own help.
_ELSEWHERE_COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("faceatlas.cli.service", "serve",
              "Run the REST API (OpenAPI schema at /openapi.json; Swagger UI at /docs with FACEATLAS_DOCS=1)."),
    "watch": ("faceatlas.cli.watch", "watch",
              "Watch video sources: track faces and persons, recognise, count, and emit events."),
    "counts": ("faceatlas.cli.watch", "counts",
               "Per-minute counts of a camera per class: a table (or JSON), and optionally PNG charts."),
    "drive": ("faceatlas.cli.drive", "drive",
              "Monitor the driver: eyes, blinks, PERCLOS, yawns, head pose, gaze, presence; alerts as events."),
    "ar": ("faceatlas.cli.ar", "ar",
           "Apply AR face effects (stickers, smoothing, warps, background) to every frame; print a summary."),
}
_ELSEWHERE_GROUPS: dict[str, tuple[str, str, str]] = {
    "models": ("faceatlas.cli.models", "app", "Model packs: list, inspect, download, make int8 copies."),
    "admin": ("faceatlas.cli.service", "admin", "Tenants, API keys and usage (run on the server's database)."),
    "remote": ("faceatlas.cli.remote", "app",
               "Talk to a remote FaceAtlas server (FACEATLAS_SERVER, FACEATLAS_API_KEY, FACEATLAS_TIMEOUT)."),
    "eval": ("faceatlas.cli.evaluate", "app", "Evaluate a model pack and calibrate its thresholds."),
    "gallery": ("faceatlas.cli.gallery", "app", "Face galleries: enrol known people and identify faces against them."),
    "demo": ("faceatlas.cli.demo", "app", "Demonstrations of the vertical apps on real faces."),
    "album": ("faceatlas.cli.album", "app", "Photo albums: group a library's faces into people and correct them."),
    "retail": ("faceatlas.cli.retail", "app", "The Store of the Future on real cameras."),
    "kyc": ("faceatlas.cli.kyc", "app",
            "Remote identity verification: ID document vs selfie, active + passive liveness."),
    "batch": ("faceatlas.cli.batch", "app",
              "Batch jobs on Ray: embed, enrol, search and dedupe folders, globs, manifests or object storage"
              " of images."),
}
_ELSEWHERE = _ELSEWHERE_COMMANDS | _ELSEWHERE_GROUPS


def _command_elsewhere(name: str) -> Any:
    """The click command ``name`` of :data:`_ELSEWHERE`, its module imported now."""
    module, attribute, _ = _ELSEWHERE[name]
    target = getattr(importlib.import_module(module), attribute)
    command: Any
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group even when it has one command (`kyc verify`)
    else:  # one command's function: a Typer of one command is that command
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


_LISTING = "faceatlas.listing"  # set in the context's meta while the group's help lists its commands


class _Listed(click.Command):
    """A command of :data:`_ELSEWHERE` as the group's help lists it: its name and its line."""


class _Commands(TyperGroup):
    """The command group: a :class:`FaceAtlasError` that escapes any command (or an ``OSError``: a
    file that cannot be read or written; a database that cannot be used; a command line that does
    not parse) is one line on stderr and exit 2, never a traceback; a standard output that cannot
    be written, ``cannot write the standard output: REASON`` (:func:`watching_stdout`), for every
    command. The other layers' commands
    (:data:`_ELSEWHERE`) are loaded when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        own = [name for name in super().list_commands(ctx) if name not in _ELSEWHERE]
        return [*_ELSEWHERE_COMMANDS, *own, *_ELSEWHERE_GROUPS]  # as help listed them: commands, then groups

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in _ELSEWHERE and cmd_name not in self.commands:
            if ctx.meta.get(_LISTING):  # the help's list of commands: the line, not the module
                return _Listed(cmd_name, help=_ELSEWHERE[cmd_name][2])
            self.commands[cmd_name] = _command_elsewhere(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta[_LISTING] = False

    def invoke(self, ctx: Any) -> Any:
        as_json = "--json" in [*getattr(ctx, "_protected_args", []), *ctx.args]
        warn_unknown_variables()  # a misspelt FACEATLAS_* variable is ignored: said on stderr, each once
        show_int8_notices()  # a first use of int8 makes its file for minutes: said, not a silent hang
        with watching_stdout() as stdout:
            try:
                done = super().invoke(ctx)
            except typer.Exit:  # the command's status (1: some inputs failed), once what it printed is out
                flush_stdout()
                raise
            except UsageError as exc:
                if not is_usage_error(exc):
                    raise  # a group called bare: its help, as click shows it
                fail(usage_error(exc), as_json, exc.exit_code)
            except FaceAtlasError as exc:
                _fail(exc, as_json)
            except DBAPIError as exc:
                _fail(database_error(exc), as_json)
            except BrokenPipeError:  # the reader went away (`| head`): nothing to say, and nowhere to say it
                stdout_gone()
            except KeyboardInterrupt:  # a command that says nothing of its own stop (eval, kyc verify) was silent
                flush_stdout()
                err.print("interrupted (Ctrl-C or SIGTERM) before the command's end", soft_wrap=True)
                raise typer.Exit(130) from None
            except OSError as exc:
                if stdout.raised(exc):  # `> /dev/full`: said as writing_stdout says it, whichever command printed
                    stdout_unwritable(exc)
                _fail(os_error(exc), as_json)
            flush_stdout()  # its `print`s, held in a pipe's buffer: a reader gone is 141 now, not 120 at exit
            return done


app = typer.Typer(help="FaceAtlas: face detection, recognition, liveness and galleries.", no_args_is_help=True,
                  cls=_Commands)
console = Output()
err = Console(stderr=True)

PackOption = Annotated[
    str | None, typer.Option("--pack", "-p", help="model pack (default: FACEATLAS_PACK or yunet-frfeature)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="also print the pack's licences")]


def _analyzer(pack: str | None, as_json: bool, verbose: bool = False) -> FaceAnalyzer:
    """The analyzer for ``pack``; says on stderr, in one line, which pack it runs (its licences
    with ``verbose``; they are always in `faceatlas models info PACK`)."""
    try:
        chosen = get_pack(pack)
        text = " ".join(chosen.licenses + list(chosen.notes))
        restricted = [w for w in ("non-commercial", "unknown") if w in text]
        note = f"; licence: {', '.join(restricted)} (see `faceatlas models info {chosen.name}`)" if restricted else ""
        err.print(f"[dim]pack {chosen.name} v{chosen.version}{note}[/dim]", soft_wrap=True)
        if verbose:
            err.print(f"[dim]{escape(chosen.description)}[/dim]", soft_wrap=True)
            for line in chosen.licenses + list(chosen.notes):
                err.print(f"[dim]licence: {escape(line)}[/dim]", soft_wrap=True)
        return FaceAnalyzer(chosen, announce_license=False)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
        raise


def _fail(exc: FaceAtlasError, as_json: bool) -> NoReturn:
    fail(exc, as_json)


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="image files or folders of images")],
    pack: PackOption = None,
    liveness: Annotated[bool, typer.Option(help="add a passive liveness score per face")] = False,
    attributes: Annotated[bool, typer.Option(help="add age, gender and emotion per face")] = False,
    draw: Annotated[Path | None, typer.Option(help="write an annotated image (one input only)")] = None,
    embedding: Annotated[bool, typer.Option(help="include embeddings in --json output")] = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Detect faces: box, score, 5 keypoints, quality and pose for each (- reads an image from stdin)."""
    one_stdin(images)
    paths = expand_images(images)
    if draw is not None and len(paths) > 1:
        raise InvalidArgument(f"--draw writes one annotated image: give one image, not {len(paths)}")
    if draw is not None:
        check_drawing_path(draw, paths, "--draw")  # not over the photo read, before the models load
    analyzer = _analyzer(pack, as_json, verbose)
    if attributes:
        _note_attribute_licences(analyzer.pack)
    results = _each_image(paths, "detecting", lambda path: _detect_one(
        analyzer, path, liveness=liveness, attributes=attributes, draw=draw, embedding=embedding, as_json=as_json),
        analyzer.pack.name, as_json)
    exit_for_failures([r["error"] for r in results if "error" in r], len(results))


def _each_image(paths: list[Path], what: str, one: Callable[[Path], dict[str, Any]], pack: str,
                as_json: bool) -> list[dict[str, Any]]:
    """``one`` result per image, under a progress bar on stderr (``what``: its description), each
    said by ``one`` as it is done; with ``as_json`` all of them as one JSON object at the end. Ctrl-C
    (or SIGTERM) prints the results done so far (``as_json``: the object, with ``"interrupted":
    true``) and `interrupted after N of M images`, status 130 (detect said nothing of how far it
    got; `liveness --json` printed nothing at all)."""
    results: list[dict[str, Any]] = []
    try:
        with progress(err, disable=len(paths) < 2) as bar:
            task = bar.add_task(what, total=len(paths))
            for path in paths:
                results.append(one(path))
                bar.advance(task)
    except KeyboardInterrupt:
        if as_json:
            print(json_text({"pack": pack, "results": results, "interrupted": True}), flush=True)
        interrupted(len(results), len(paths), "images", "the results of those are " +
                    ("the JSON on stdout" if as_json else "printed above"))
    if as_json:
        print(json_text({"pack": pack, "results": results}))
    return results


def _failed_row(path: Path, exc: FaceAtlasError) -> dict[str, Any]:
    """The row of an image that failed: ``{"source", "error", "message"}``, every door's object of
    one input that failed (:meth:`Rejection.to_dict`; it was ``{"image", "error", "message"}`` here
    only), and its ``image`` as every row of ``results`` names it."""
    return {"image": str(path), **Rejection.of(str(path), exc).to_dict()}


def _note_attribute_licences(pack: Pack) -> None:
    """One line on stderr naming the attribute models' licences when one of them restricts use."""
    text = " ".join(pack.attribute_licenses)
    if "unknown" in text:
        err.print(f"[dim]attributes: the age model's licence is unknown (see `faceatlas models info {pack.name}`)"
                  "[/dim]", soft_wrap=True)


def _detect_one(analyzer: FaceAnalyzer, path: Path, *, liveness: bool, attributes: bool, draw: Path | None,
                embedding: bool, as_json: bool) -> dict[str, Any]:
    try:
        image = analyzer.load(image_source(path))
        faces = analyzer.analyze(image, liveness=liveness, attributes=attributes)
    except FaceAtlasError as exc:
        if not as_json:
            print_error(exc, about=str(path))  # one line per input that failed, naming it
        return _failed_row(path, exc)
    if draw is not None:
        save_image(draw, draw_faces(image, faces))
    if not as_json:
        _print_faces(path, faces, liveness, attributes)
    return {"image": str(path), "faces": [f.to_dict(with_embedding=embedding) for f in faces]}


def _print_faces(path: Path, faces: list, liveness: bool, attributes: bool = False) -> None:
    table = WholeTable(title=f"{path} — {len(faces)} face(s)")
    extra = (["liveness"] if liveness else []) + (["gender", "age", "emotion"] if attributes else [])
    for column in ("#", "box", "score", "quality", "yaw/pitch/roll", *extra):
        table.add_column(column)
    for i, face in enumerate(faces, 1):
        pose = face.pose
        row = [
            str(i),
            " ".join(f"{v:.0f}" for v in face.bbox),
            f"{face.det_score:.2f}",
            f"{face.quality:.2f}",
            f"{pose.yaw:.0f}/{pose.pitch:.0f}/{pose.roll:.0f}",
        ]
        if liveness:
            row.append(f"{face.liveness.score:.2f}")
        if attributes:
            found = face.attributes
            row += [f"{found.gender} {found.gender_score:.2f}" if found.gender else "-",
                    f"{found.age:.0f}" if found.age is not None else "-", found.emotion or "-"]
        table.add_row(*row)
    console.print(table)


@app.command()
def compare(
    image_a: Path,
    image_b: Path,
    pack: PackOption = None,
    far: Annotated[float, typer.Option(help="false-accept rate of the decision threshold")] = DEFAULT_FAR,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Compare the largest face of two images: similarity and a FAR-calibrated verdict (- reads one from stdin)."""
    one_stdin([image_a, image_b])
    analyzer = _analyzer(pack, as_json, verbose)
    try:  # the API's use case: the largest face of each, and how many faces each holds (the far checked first)
        verdict, counts = analyzer.verify_images(image_source(image_a), image_source(image_b), far=far)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
    result = verdict.to_dict()
    result.update(pack=analyzer.pack.name, faces_in_image_a=counts[0], faces_in_image_b=counts[1])
    if as_json:
        print(json_text(result))
        return
    console.print(_verdict_text(result, far, analyzer.pack.uncalibrated))
    for image, found in zip((image_a, image_b), counts):  # a group photo's largest face, compared unsaid
        if found > 1:
            err.print(f"{escape(str(image))} holds {found} faces: its largest was compared", soft_wrap=True)


def _verdict_text(result: dict[str, Any], far: float, uncalibrated: str) -> str:
    """One line: the similarity, the verdict at the asked FAR, and the strictest FAR it would match at
    (``uncalibrated``: what a pack without a calibration says instead)."""
    similarity, threshold, level = result["similarity"], result["threshold"], result.get("match_at_far")
    if result["match"] is None:
        return f"similarity {similarity:.4f} — no verdict: {escape(uncalibrated)}"
    at = f"at FAR {far:.0e} (threshold {threshold:.4f})"
    if result["match"]:
        text = f"similarity {similarity:.4f} — [green]same person[/green] {at}"
        return text + (f"; it would match even at FAR {level:.0e}" if level is not None and level < far else "")
    text = f"similarity {similarity:.4f} — [red]no match[/red] {at}"
    return text + (f"; the similarity would match at FAR {level:.0e}" if level is not None else
                   "; no calibrated FAR would match")


@app.command()
def liveness(
    images: Annotated[list[Path], typer.Argument(help="image files or folders of images")],
    pack: PackOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Passive liveness (MiniFASNet) of the largest face in each image (- reads an image from stdin)."""
    one_stdin(images)
    paths = expand_images(images)
    analyzer = _analyzer(pack, as_json, verbose)
    rows = _each_image(paths, "checking liveness", lambda path: _liveness_one(analyzer, path, as_json),
                       analyzer.pack.name, as_json)
    exit_for_failures([r["error"] for r in rows if "error" in r], len(rows))


def _liveness_one(analyzer: FaceAnalyzer, path: Path, as_json: bool) -> dict[str, Any]:
    """The liveness of the largest face of the image at ``path``, said at once unless ``as_json``."""
    try:  # the API's use case: the largest face, analysed with its liveness
        faces, found = analyzer.largest(image_source(path), liveness=True, embed=False)
        if not faces or faces[0].liveness is None:
            raise NoFace("no face found for the liveness check")
    except FaceAtlasError as exc:
        if not as_json:
            print_error(exc, about=str(path))
        return _failed_row(path, exc)
    row = {"image": str(path), **faces[0].liveness.to_dict(), "face": faces[0].to_dict(), "faces_in_image": found}
    if not as_json:
        label = "[green]real[/green]" if row["real"] else "[red]spoof[/red]"
        which = f", the largest of {found} faces" if found > 1 else ""
        console.print(f"{escape(row['image'])}: {label} (real score {row['score']:.3f}{which})")
    return row
