"""`faceatlas batch ...`: embed, enrol, search and dedupe many images on Ray (this machine's
cores by default, a cluster with --ray-address). Needs ``pip install 'faceatlas[batch]'``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceatlas.batch import DEFAULT_BATCH_SIZE, DEFAULT_MAX_DISTANCE, BatchOptions, BatchReport, image_table
from faceatlas.batch import dedupe as dedupe_job
from faceatlas.batch import embed as embed_job
from faceatlas.batch import enrol as enrol_job
from faceatlas.batch import search as search_job
from faceatlas.cli.errors import Output, emit_json, exit_for_failures, interrupted
from faceatlas.cli.options import database_option
from faceatlas.engine import DEFAULT_FPIR, Cut
from faceatlas.gallery import Gallery

app = typer.Typer(help="Batch jobs on Ray: embed, enrol, search and dedupe folders, globs, manifests or "
                       "object storage of images.", no_args_is_help=True)
console = Output()
err = Console(stderr=True)

SourceArg = Annotated[str, typer.Argument(help="a folder, a glob, a manifest .csv (path[,subject]) or a URL "
                                               "(s3://..., any fsspec protocol)")]
WorkersOption = Annotated[int | None, typer.Option("--workers", "-w", help="Ray actors, one analyzer each "
                                                                         "(default: the cores)")]
AddressOption = Annotated[str | None, typer.Option("--ray-address", help="a running Ray cluster (default: "
                                                                          "start Ray here for the job)")]
PackOption = Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: FACEATLAS_PACK, or "
                                                                     "the collection's)")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="images per actor call and output part")]
DbOption = Annotated[str | None, typer.Option("--db", callback=database_option,
                                              help="gallery database URL (default: "
                                                   "FACEATLAS_DATABASE_URL or ~/.local/share/faceatlas)")]
TenantOption = Annotated[str, typer.Option("--tenant", help="tenant space of the gallery")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]


@contextmanager
def _progress(as_json: bool, kept: str | Callable[[], str],
              written: str | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with images/s (of this run, from its first image on: Ray's start included, as
    the summary's first figure) and time left, fed by the job's callback. What
    Ray prints meanwhile (its processes' warnings) goes to stderr: stdout holds only the result.
    Ctrl-C or SIGTERM: `interrupted after N of M images: <kept>` (``kept`` said when stopped, where
    it depends on how far the job got) and status 130; N counts the images in ``written``'s
    done-manifest when it holds more than the bar heard of (the workers write their parts before
    the driver hears of them: it said 8 where 16 were written). ``as_json``: no bar, and that
    much is said on stdout as well, as one JSON object (:func:`interrupted`)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err, disable=as_json)
    task = bar.add_task("images", total=None, rate="")
    state: dict[str, float] = {}

    def update(done: int, total: int) -> None:
        now = time.perf_counter()
        if "start" not in state:  # shown from the job's first word on: a job refused before has no bar
            bar.start()
        state.setdefault("start", now)
        state.setdefault("first", done)
        elapsed = now - state["start"]
        rate = (done - state["first"]) / elapsed if elapsed > 0 else 0.0
        bar.update(task, completed=done, total=total, rate=f"{rate:.1f} img/s" if rate else "")
        state["done"], state["total"] = done, total

    try:
        with redirect_stdout(sys.stderr):
            try:
                yield update
            finally:
                bar.stop()
    except KeyboardInterrupt:
        done = int(state.get("done", 0))
        if written is not None:
            with suppress(Exception):  # nothing written yet (no output), or a part being written: the bar's count
                done = max(done, image_table(written).num_rows)
        interrupted(done, int(state.get("total", 0)) or None, "images", kept if isinstance(kept, str) else kept(),
                    as_json)


def _resumed(out: str) -> str:
    return f"the images done are kept in {out}; the same command again does the rest"


def _options(workers: int | None, ray_address: str | None, pack: str | None, batch_size: int) -> BatchOptions:
    return BatchOptions(workers=workers, ray_address=ray_address, pack=pack, batch_size=batch_size)


def _show(report: BatchReport, as_json: bool, what: str, *, faces: bool = True) -> None:
    """The report, then the exit status as `gallery enrol`'s, of the job (every run of it: SOURCE's
    images in the output): 0 every image read, 1 some failed (listed in the errors CSV), 2 every
    one failed. The line says this run's counts, then the job's when earlier runs did some; its
    images/s, over the whole run (as the progress bar's) and once Ray had started. A stdout that
    cannot be written is one line on stderr, exit 2 (:func:`writing_stdout`)."""
    from faceatlas.cli.errors import writing_stdout  # here: the rest of this module is edited elsewhere

    with writing_stdout():
        if as_json:
            emit_json(report.to_dict(), indent=2)
        else:
            if report.processed:
                rate = (f" ({report.overall_images_per_second:.1f} img/s, {report.images_per_second:.1f} after Ray's "
                        f"start, on {report.workers} worker{'s' if report.workers != 1 else ''})"
                        if report.workers else "")  # no worker: every image was refused before Ray (missing files)
                now = (f"{report.processed} processed now{rate}: "
                       f"{f'{report.run_faces} faces, ' if faces else ''}{report.run_errors} failed")
            else:
                now = "nothing left to do"
            before = (f"; {report.skipped} done before (all runs: {f'{report.faces} faces, ' if faces else ''}"
                      f"{report.errors} failed)" if report.skipped else "")
            listed = report.files.get("errors")
            where = (f"; the failed images are listed in {listed}" if listed else
                     "; the failed images' list went with the temporary folder (keep it with --work DIR)"
                     ) if report.errors else ""
            console.print(escape(f"{report.images} images: {now}{before}{what}{where}"), soft_wrap=True)
            for name, path in report.files.items():
                console.print(f"  {name}: {escape(str(path))}", soft_wrap=True)
    exit_for_failures(report.errors, report.images)


@app.command()
def embed(source: SourceArg, out: Annotated[str, typer.Option("--out", "-o", help="output Parquet dataset "
                                                                                   "(a folder; resumable)")],
          workers: WorkersOption = None, ray_address: AddressOption = None, pack: PackOption = None,
          batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE, as_json: JsonOption = False) -> None:
    """Every face of every image: box, keypoints, quality, pose, embedding, pack (Parquet)."""
    options = _options(workers, ray_address, pack, batch_size)  # refused before a progress bar shows
    with _progress(as_json, _resumed(out), out) as update:
        report = embed_job(source, out, options, update)
    _show(report, as_json, "")


@app.command()
def enrol(source: SourceArg, collection: str, workers: WorkersOption = None, ray_address: AddressOption = None,
          pack: PackOption = None, batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE, db: DbOption = None,
          tenant: TenantOption = "default",
          work: Annotated[str | None, typer.Option("--work", help="keep the embedded faces here (resumable); "
                                                                  "default: a temporary folder")] = None,
          all_faces: Annotated[bool, typer.Option("--all-faces", help="every face, not the largest")] = False,
          min_quality: Annotated[float, typer.Option("--min-quality")] = 0.0, as_json: JsonOption = False) -> None:
    """Enrol per-person folders (SOURCE/<subject>/*.jpg) or a manifest with a subject column."""
    options = _options(workers, ray_address, pack, batch_size)
    # the database and the collection are made when missing (a first install has neither), as `gallery enrol`:
    # by the job, once it has checked what it was given (a job refused makes no database)
    enrolled = [0]  # the faces enrolled so far: they are enrolled on this machine once every image is embedded

    def kept() -> str:
        resumes = (f" ({work} keeps the faces embedded)" if work else
                   " (embedding again: --work DIR keeps the faces embedded)")
        if not enrolled[0]:
            return f"no face is enrolled yet; the same command again resumes{resumes}"
        return f"the {enrolled[0]} faces enrolled before the stop are kept; the same command again enrols the rest"

    with _progress(as_json, kept, work) as update:
        report = enrol_job(source, collection, lambda: Gallery.open(db, tenant=tenant), options, update,
                           work=work, all_faces=all_faces, min_quality=min_quality,
                           on_enrolled=lambda count: enrolled.__setitem__(0, count))
    details = report.details
    _show(report, as_json, f"; {details['enrolled']} faces enrolled into {details['subjects']} subjects, "
                           f"{details['already_enrolled']} already enrolled, {details['no_subject']} without subject")


@app.command()
def search(source: SourceArg, collection: str,
           out: Annotated[str, typer.Option("--out", "-o", help="output folder: faces/ and matches.parquet")],
           workers: WorkersOption = None, ray_address: AddressOption = None, pack: PackOption = None,
           batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE, db: DbOption = None, tenant: TenantOption = "default",
           k: Annotated[int, typer.Option("--k", help="matches per face")] = 1,
           fpir: Annotated[float | None, typer.Option("--fpir", help="open-set false positive identification rate "
                                                                    f"[default: {DEFAULT_FPIR:g}]")] = None,
           threshold: Annotated[float | None, typer.Option("--threshold", help="raw cosine cut instead")] = None,
           as_json: JsonOption = False) -> None:
    """1:N for every face of SOURCE in COLLECTION (nobody below the open-set cut)."""
    cut = Cut.given(threshold=threshold, fpir=fpir)  # refused before a progress bar shows
    options = _options(workers, ray_address, pack, batch_size)
    # the gallery opened by the job, once it checked the rest
    with _progress(as_json, _resumed(out), f"{out}/faces") as update:
        report = search_job(source, collection, lambda: Gallery.open(db, tenant=tenant, create=False), out,
                            options, update, cut=cut, k=k)
    details = report.details
    _show(report, as_json, f"; {details['identified_faces']} faces identified, {details['unknown_faces']} "
                           f"unknown at {details['cut']}")


@app.command()
def dedupe(source: SourceArg,
           out: Annotated[str, typer.Option("--out", "-o", help="output folder: images/ and duplicates.csv")],
           workers: WorkersOption = None, ray_address: AddressOption = None,
           batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
           max_distance: Annotated[int, typer.Option("--max-distance", help="bits of 64 the perceptual hashes "
                                                                            "may differ by")] = DEFAULT_MAX_DISTANCE,
           as_json: JsonOption = False) -> None:
    """Near-duplicate photos (resized, re-encoded copies) by perceptual hash."""
    options = _options(workers, ray_address, None, batch_size)
    with _progress(as_json, _resumed(out), f"{out}/images") as update:
        report = dedupe_job(source, out, options, update,
                            max_distance=max_distance)
    _show(report, as_json, f"; {report.details['groups']} groups of near-duplicates "
                           f"({report.details['duplicate_images']} extra copies)", faces=False)
