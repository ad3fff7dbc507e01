"""`faceatlas eval`: measure a pack on a benchmark and calibrate its FAR thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from faceatlas.cli.errors import Output, WholeTable, fail, json_text, os_error, print_error
from faceatlas.engine import (
    IMPOSTORS_PER_FAR,
    DatasetReport,
    FaceAnalyzer,
    FaceAtlasError,
    LFWReport,
    Runtime,
    SavedCalibration,
    check_dataset_outputs,
    check_lfw_outputs,
    evaluate_dataset,
    evaluate_lfw,
    far_key,
    lfw_inputs,
    measuring_analyzer,
    plot_dataset,
    plot_roc,
    save_calibration,
    save_user_calibration,
)

app = typer.Typer(help="Evaluate a model pack and calibrate its thresholds.", no_args_is_help=True)
console = Output()
err = Console(stderr=True)
RuntimeOption = Annotated[Runtime | None, typer.Option(
    "--runtime", help="float, or int8 (a quantised recogniser made once and cached; default: FACEATLAS_RUNTIME)")]
ReplaceOption = Annotated[bool, typer.Option(
    "--replace", help="let --save-as write over a calibration of that name (refused without it, saying what it "
                      "holds; once written, what it held and what replaced it are said)")]
FlipOption = Annotated[bool | None, typer.Option(
    "--flip/--no-flip", help="flip test-time augmentation: each crop embedded with its mirror, the two summed (its "
                             "own embedding space and calibration; default: FACEATLAS_FLIP)")]


@app.callback()
def evaluate() -> None:
    """Evaluate a model pack and calibrate its thresholds."""


def report_table(report: LFWReport) -> Table:
    """A rich table of accuracy and TAR/threshold per FAR."""
    table = WholeTable(title=f"LFW, pack {report.pack} ({report.recognizer_id})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_row(f"{report.folds}-fold accuracy", f"{report.accuracy:.4f} ± {report.accuracy_std:.4f}",
                  f"{report.fold_thresholds.mean():.4f}")
    table.add_row("pairs AUC", f"{report.auc:.5f}", "")
    for p in report.points:
        note = "" if p.resolvable else " (too few impostors)"
        table.add_row(f"TAR @ FAR {far_key(p.far)}", f"{p.tar:.4f}{note}", f"{p.threshold:.4f}")
    table.add_row("images / pairs", f"{report.n_images} / {report.n_pairs}", "")
    table.add_row("genuine / impostor pairs", f"{report.n_genuine:,} / {report.n_impostor:,}", "")
    table.add_row("detector fallbacks (central box)", str(report.fallbacks), "")
    return table


@app.command()
def lfw(
    pairs: Annotated[Path | None, typer.Option(
        help="LFW View-2 pairs.txt (default: FACEATLAS_SHARED/data/lfw/pairs.txt)", dir_okay=False)]
    = None,
    images: Annotated[Path | None, typer.Option(
        help="LFW image folder, <Name>/<Name>_NNNN.jpg (default: FACEATLAS_SHARED/data/lfw/images)",
        file_okay=False)] = None,
    pack: Annotated[str | None, typer.Option(
        "--pack", "-p", help="model pack (default: FACEATLAS_PACK or yunet-frfeature)")] = None,
    limit_folds: Annotated[int | None, typer.Option(min=1, max=10, help="use only the first N folds (quick run)")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="write the ROC plot (PNG) here")] = None,
    save_as: Annotated[str | None, typer.Option(
        "--save-as", help="save the thresholds the data supports as the pack's calibration NAME; it is used only "
                          "once selected with FACEATLAS_CALIBRATION=NAME (the shipped one stays the default)")] = None,
    output: Annotated[Path | None, typer.Option(help="also write the calibration JSON to this path")] = None,
    cache: Annotated[Path | None, typer.Option(help="embedding cache file (npz, at exactly this path), reused only if "
                                          "made by this pack from these very images; else rebuilt")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")] = False,
    runtime: RuntimeOption = None,
    flip: FlipOption = None,
    replace: ReplaceOption = False,
) -> None:
    """LFW verification: 10-fold accuracy, ROC, and TAR at FAR 1e-3..1e-6 from all-vs-all pairs."""
    try:
        # before the models load and the minutes of evaluation: no output over an input, each writable,
        # no calibration of the --save-as name unless --replace
        pairs, images = lfw_inputs(pairs, images)
        chosen = check_lfw_outputs(pairs, images, limit_folds=limit_folds, output=output, plot=plot, cache=cache,
                                   save_as=save_as, pack=pack, runtime=runtime, flip=flip, replace=replace)
        analyzer = measuring_analyzer(chosen)
        report = evaluate_lfw(analyzer, pairs, images, limit_folds=limit_folds, cache=cache, progress=not as_json)
    except FaceAtlasError as exc:
        fail(exc, as_json)
    if report.cache_note:
        err.print(f"[yellow]{escape(report.cache_note)}[/yellow]", soft_wrap=True)
    saved, unsaved = save_as_asked(report, save_as, analyzer, replace)
    written = [str(saved.path)] if saved is not None else []
    if output is not None:
        try:
            written.append(str(save_calibration(report.calibration(), output)))
        except OSError as exc:
            unsaved = unsaved or os_error(exc)
    unwritten = None  # checked writable before the work, yet failing now: said after the results
    if plot is not None:
        try:
            plot_roc(report, plot)
        except OSError as exc:
            unwritten, plot = os_error(exc), None
    if as_json:
        print(json_text({**report.to_dict(), "written": written, "replaced": replaced_of(saved),
                         "plot": str(plot) if plot else None}, indent=2))
        fail_last(unwritten, unsaved)
        return
    console.print(report_table(report))
    if report.accuracy_note:
        err.print(f"[yellow]note: {escape(report.accuracy_note)}[/yellow]", soft_wrap=True)
    unsupported = [far_key(p.far) for p in report.points if not p.resolvable]
    if unsupported:
        err.print(f"[yellow]{report.n_impostor:,} impostor pairs are too few for FAR {', '.join(unsupported)}: "
                  "those thresholds are shown, never written[/yellow]")
    say_saved(saved)
    for path in written[1 if saved is not None else 0:]:
        err.print(f"calibration written to {path}")
    if plot is not None:
        err.print(f"ROC plot written to {plot}")
    fail_last(unwritten, unsaved)


def save_as_asked(report: LFWReport | DatasetReport, save_as: str | None, analyzer: FaceAnalyzer,
                  replace: bool) -> tuple[SavedCalibration | None, FaceAtlasError | None]:
    """The --save-as calibration saved, or the error that refused it, said after the report and the
    plot (computed: a set too small for any FAR lost both to the refusal)."""
    if save_as is None:
        return None, None
    try:
        return save_user_calibration(report, save_as, analyzer, replace=replace), None
    except FaceAtlasError as exc:
        return None, exc


def replaced_of(saved: SavedCalibration | None) -> str | None:
    """What the saved calibration replaced, for --json (None: nothing)."""
    return saved.replaced.summary() if saved is not None and saved.replaced is not None else None


def say_saved(saved: SavedCalibration | None) -> None:
    if saved is None:
        return
    err.print(f"calibration written to {saved.path} (use it with FACEATLAS_CALIBRATION={saved.calibration.name})")
    note = saved.note()
    if note:
        err.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True)


def fail_last(*problems: FaceAtlasError | None) -> None:
    """Once the results are out: each problem said on stderr, the command ending on the last (exit 2)."""
    found = [problem for problem in problems if problem is not None]
    for problem in found[:-1]:
        print_error(problem)
    if found:
        fail(found[-1])


def dataset_table(report: DatasetReport) -> Table:
    """TAR per FAR with the trials behind it, and FNIR per FPIR."""
    table = WholeTable(title=f"{report.source}, pack {report.pack} ({report.recognizer_id})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("trials", justify="right")
    for p in report.points:
        if p.resolvable:
            table.add_row(f"TAR @ FAR {far_key(p.far)}", f"{p.tar:.4f}", f"{p.threshold:.4f}",
                          f"{report.n_genuine:,} genuine / {report.n_impostor:,} impostor")
        else:
            table.add_row(f"TAR @ FAR {far_key(p.far)}", "not stated", "",
                          f"{report.n_impostor:,} impostor pairs of {IMPOSTORS_PER_FAR / p.far:,.0f} needed")
    found = report.identification
    if found is not None:
        for q in found.points:
            trials = (f"{found.mated:,} mated / {found.non_mated:,} non-mated searches, "
                      f"gallery of {found.gallery_size:,}")
            reached = f" (reached {q.achieved_fpir:.4f})" if q.supported else " (too few non-mated searches to check)"
            table.add_row(f"FNIR @ FPIR {far_key(q.fpir)}", f"{q.fnir:.4f}{reached}", f"{q.threshold:.4f}", trials)
    table.add_row("images / identities / without a face", f"{report.n_images} / {report.n_identities} / "
                  f"{len(report.no_face)}", "", "")
    if report.unreadable:  # counted out of the measure, named so they can be fixed
        table.add_row("unreadable photos", str(len(report.unreadable)),
                      "", "; ".join(f"{k} ({v.split(':')[0]})" for k, v in list(report.unreadable.items())[:5]))
    return table


@app.command()
def folder(
    dataset: Annotated[Path, typer.Argument(help="per-person folders (DATASET/<person>/<photo>) or a CSV of pairs "
                                                 "'image_a,image_b,same' (paths relative to the CSV, same 0/1)")],
    pack: Annotated[str | None, typer.Option("--pack", "-p",
                                             help="model pack (default: FACEATLAS_PACK or the default pack)")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="write the ROC and DET plots (PNG) here")] = None,
    save_as: Annotated[str | None, typer.Option(
        "--save-as", help="save the thresholds the data supports as the pack's calibration NAME (used once "
                          "selected with FACEATLAS_CALIBRATION=NAME)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")] = False,
    runtime: RuntimeOption = None,
    flip: FlipOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Your own data: TAR at FAR 1e-3..1e-6 with the trials behind each, FNIR at FPIR 1e-2/1e-3 (1:N),
    ROC and DET plots, and the thresholds as a calibration your collections can use."""
    try:
        # before the models load and the minutes of evaluation: the plot not over a photo, each output
        # writable, no calibration of the --save-as name unless --replace
        chosen = check_dataset_outputs(dataset, plot=plot, save_as=save_as, pack=pack, runtime=runtime, flip=flip,
                                       replace=replace)
        analyzer = measuring_analyzer(chosen)
        report = evaluate_dataset(analyzer, dataset, progress=not as_json)
    except FaceAtlasError as exc:
        fail(exc, as_json)
    saved, unsaved = save_as_asked(report, save_as, analyzer, replace)
    written = [str(saved.path)] if saved is not None else []
    unwritten = None  # checked writable before the work, yet failing now: said after the results
    if plot is not None:
        try:
            plot_dataset(report, plot)
        except OSError as exc:
            unwritten, plot = os_error(exc), None
    if as_json:
        print(json_text({**report.to_dict(), "written": written, "replaced": replaced_of(saved),
                         "plot": str(plot) if plot else None}, indent=2))
        fail_last(unwritten, unsaved)
        return
    console.print(dataset_table(report))
    unstated = [far_key(p.far) for p in report.points if not p.resolvable]
    if unstated:
        err.print(f"[yellow]not enough impostor pairs to state FAR {', '.join(unstated)} "
                  f"({report.n_impostor:,} pairs; FAR 1e-k needs {IMPOSTORS_PER_FAR} x 10^k)[/yellow]")
    say_saved(saved)
    if plot is not None:
        err.print(f"ROC and DET plots written to {plot}")
    fail_last(unwritten, unsaved)
