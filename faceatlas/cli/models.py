"""`faceatlas models list|info|fetch|int8`: what packs exist, where their files are, fetch them, make int8 copies."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from faceatlas.cli.errors import Output, WholeTable, emit_json, json_text
from faceatlas.cli.files import stage_progress
from faceatlas.engine import (
    PACKS,
    candidate_paths,
    fetch,
    get_pack,
    load_calibration,
    locate,
    make_int8,
    model_status,
    verify_sha256,
)

app = typer.Typer(help="Model packs: list, inspect, download, make int8 copies.", no_args_is_help=True)
console = Output()
err = Console(stderr=True)


@app.command("list")
def list_packs(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every known pack, whether its files are on this machine, and its embedding size."""
    rows = [
        {
            "name": p.name,
            "version": p.version,
            "embedding_size": p.embedding_size,
            "available": (state := p.state()) == "ready",
            "state": state,
            "calibrated": load_calibration(p) is not None,
            "description": p.description,
        }
        for p in PACKS.values()
    ]
    if as_json:
        print(json_text(rows))
        return
    table = WholeTable(title="model packs")
    for column in ("name", "version", "dim", "on disk", "calibrated", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["version"]),
            str(row["embedding_size"]),
            {"ready": "yes", "missing": "no"}.get(str(row["state"]), "[red]corrupt[/red]"),
            "yes" if row["calibrated"] else "no",
            str(row["description"]),
        )
    console.print(table)


@app.command()
def info(pack: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A pack's files (path found, sha256, source URL, licence) and its calibration."""
    chosen = get_pack(pack)
    files = []
    for model in chosen.files:
        found = model_status(model)
        path = found.path
        files.append(
            {
                "name": model.name,
                "found": str(path) if path else None,
                "state": found.state,
                "sha256": model.sha256,
                "sha256_found": found.sha256,
                "url": model.url,
                "archive_member": model.archive_member,
                "package": model.package,
                "license": model.license,
                "looked_in": [] if path or model.package else [str(p) for p in candidate_paths(model)],
            }
        )
    calibration = load_calibration(chosen)
    out = {
        "name": chosen.name,
        "version": chosen.version,
        "recognizer_id": chosen.recognizer_id,
        "description": chosen.description,
        "notes": list(chosen.notes),
        "files": files,
        "thresholds": calibration.thresholds if calibration else None,
    }
    if as_json:
        print(json_text(out))
        return
    console.print(f"[bold]{chosen.name}[/bold] v{chosen.version} — {chosen.description}")
    console.print(f"embedding space: {chosen.recognizer_id}")
    for note in chosen.notes:
        console.print(f"[yellow]{note}[/yellow]")
    for f in files:
        status = (f"[green]{f['found']}[/green]" if f["state"] == "ready" else "[red]missing[/red]"
                  if f["state"] == "missing" else f"[red]corrupt: {f['found']} has sha256 {f['sha256_found']}; "
                  f"delete it and run `faceatlas models fetch {chosen.name}`[/red]")
        source = f["url"] or (f"Python package {f['package']}" if f["package"] else "none public (place it by hand)")
        member = f" (member {f['archive_member']})" if f["archive_member"] else ""
        console.print(
            f"- {f['name']}: {status}\n  sha256 {f['sha256'] or '-'}\n  source {source}{member}"
            f"\n  licence {f['license']}"
        )
    if calibration:
        thresholds = ", ".join(f"FAR {k}: {v:.4f}" for k, v in sorted(calibration.thresholds.items(), reverse=True))
        console.print(f"calibration: {thresholds}")
    else:
        console.print("calibration: none (run `faceatlas eval lfw`)")


@app.command("fetch")
def fetch_pack(pack: str, as_json: Annotated[bool, typer.Option(
        "--json", help="machine-readable JSON on stdout (models info's name; each file's name, found, state, "
        "downloaded)")] = False) -> None:
    """Download every missing file of a pack into the user cache, checking sha256 (refused offline)."""
    chosen = get_pack(pack)
    files = []
    for model in chosen.files:  # a FaceAtlasError (offline, download failed) is the CLI's one-line error
        path = locate(model)
        if path is not None:
            verify_sha256(model, path)
            files.append({"name": model.name, "found": str(path), "state": "ready", "downloaded": False})
            if not as_json:
                console.print(f"{model.name}: already at {path}")
            continue
        if model.url is None and not model.package:  # attribute models: no public download, placed by hand
            files.append({"name": model.name, "found": None, "state": "missing", "downloaded": False})
            if not as_json:
                console.print(f"[yellow]{model.name}: not found and not downloadable; place it by hand "
                              f"(`faceatlas models info {chosen.name}` says where)[/yellow]")
            continue
        fetched = fetch(model, pack=chosen.name)
        files.append({"name": model.name, "found": str(fetched), "state": "ready", "downloaded": True})
        if not as_json:
            console.print(f"{model.name}: downloaded to {fetched}")
    if as_json:  # once every file is there (an error midway is the JSON error, as any command's)
        emit_json({"name": chosen.name, "files": files})


@app.command("int8")
def int8(
    pack: Annotated[str | None, typer.Argument(help="model pack (default: FACEATLAS_PACK or the default pack)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")] = False,
) -> None:
    """Make a pack's int8 copies now, with their progress (FACEATLAS_RUNTIME=int8 makes them on first
    use otherwise: minutes, once; cached in FACEATLAS_CACHE/derived); copies already made are kept."""
    with stage_progress(err, disable=as_json) as report:
        copies = make_int8(pack, progress=report)
    if as_json:
        print(json_text([copy.to_dict() for copy in copies]))
        return
    for copy in copies:
        console.print(f"{copy.source}: {'made' if copy.made else 'already made'}, at {copy.path}", soft_wrap=True)
