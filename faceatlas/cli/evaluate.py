"""`faceatlas eval`: measure a pack on a benchmark and calibrate its FAR thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from faceatlas.engine import (
    FaceAnalyzer,
    FaceAtlasError,
    LFWReport,
    evaluate_lfw,
    far_key,
    get_pack,
    plot_roc,
    save_calibration,
    save_user_calibration,
)

app = typer.Typer(help="Evaluate a model pack and calibrate its thresholds.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@app.callback()
def evaluate() -> None:
    """Evaluate a model pack and calibrate its thresholds."""


def report_table(report: LFWReport) -> Table:
    """A rich table of accuracy and TAR/threshold per FAR."""
    table = Table(title=f"LFW, pack {report.pack} ({report.recognizer_id})")
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
    pairs: Annotated[Path, typer.Option(help="LFW View-2 pairs.txt", exists=True, dir_okay=False)],
    images: Annotated[Path, typer.Option(help="LFW image folder (<Name>/<Name>_NNNN.jpg)", exists=True,
                                         file_okay=False)],
    pack: Annotated[str | None, typer.Option(
        "--pack", "-p", help="model pack (default: FACEATLAS_PACK or yunet-frfeature)")] = None,
    limit_folds: Annotated[int | None, typer.Option(min=1, max=10, help="use only the first N folds (quick run)")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="write the ROC plot (PNG) here")] = None,
    save_as: Annotated[str | None, typer.Option(
        "--save-as", help="save the thresholds the data supports as the pack's calibration NAME; it is used only "
                          "once selected with FACEATLAS_CALIBRATION=NAME (the shipped one stays the default)")] = None,
    output: Annotated[Path | None, typer.Option(help="also write the calibration JSON to this path")] = None,
    cache: Annotated[Path | None, typer.Option(help="embedding cache (.npz), reused when it matches")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")] = False,
) -> None:
    """LFW verification: 10-fold accuracy, ROC, and TAR at FAR 1e-3..1e-6 from all-vs-all pairs."""
    try:
        analyzer = FaceAnalyzer(get_pack(pack))
        report = evaluate_lfw(analyzer, pairs, images, limit_folds=limit_folds, cache=cache, progress=not as_json)
    except (FaceAtlasError, FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    written: list[str] = []
    try:
        if save_as is not None:
            written.append(str(save_user_calibration(report, save_as, analyzer)))
    except FaceAtlasError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if output is not None:
        written.append(str(save_calibration(report.calibration(), output)))
    if plot is not None:
        plot_roc(report, plot)
    if as_json:
        print(json.dumps({**report.to_dict(), "written": written, "plot": str(plot) if plot else None}, indent=2))
        return
    console.print(report_table(report))
    unsupported = [far_key(p.far) for p in report.points if not p.resolvable]
    if unsupported:
        err.print(f"[yellow]{report.n_impostor:,} impostor pairs are too few for FAR {', '.join(unsupported)}: "
                  "those thresholds are shown, never written[/yellow]")
    for path in written:
        err.print(f"calibration written to {path}" + (f" (use it with FACEATLAS_CALIBRATION={save_as})"
                                                      if save_as and path == written[0] else ""))
    if plot is not None:
        err.print(f"ROC plot written to {plot}")
