"""`faceatlas kyc verify`: an ID document image against a selfie video, with the active
challenge the person was asked to do; one audited session in the database, one decision."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from faceatlas.apps.drive import quiet_mediapipe
from faceatlas.apps.kyc import REASON_WORDS, KycConfig, KycService, parse_challenge
from faceatlas.cli.errors import Output, json_text, writing_stdout
from faceatlas.cli.files import input_bytes, one_stdin
from faceatlas.cli.options import database_option
from faceatlas.db import create_database_engine, default_database_url
from faceatlas.engine import FaceAnalyzer

app = typer.Typer(help="Remote identity verification: ID document vs selfie, active + passive liveness.",
                  no_args_is_help=True)
console = Output()
err = Console(stderr=True)  # the spinner: a terminal's only (rich draws none into a pipe or a file)


@app.command()
def verify(
    document: Annotated[Path, typer.Option("--document", "-d", help="the ID document image (- : standard input)")],
    selfie: Annotated[Path, typer.Option("--selfie", "-s", help="the selfie video (mp4, webm, mov; - : standard "
                                                                "input)")],
    challenge: Annotated[str, typer.Option("--challenge", "-c", help="the actions asked, in order: blink, left, "
                                           "right, up, smile (or open_mouth), comma-separated")],
    far: Annotated[float | None, typer.Option(help="false-accept rate of the document-selfie match "
                                                   f"(default: {KycConfig().far:g})")] = None,
    tenant: Annotated[str, typer.Option(help="whose sessions and replay history")] = "default",
    pack: Annotated[str | None, typer.Option("--pack", "-p", help="model pack (default: FACEATLAS_PACK)")] = None,
    db: Annotated[str | None, typer.Option("--db", callback=database_option,
                                           help="database URL (default: FACEATLAS_DATABASE_URL)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the whole session as JSON")] = False,
) -> None:
    """Decide one verification; exit 0 when accepted, 1 when refused (the reasons are printed)."""
    actions = parse_challenge(challenge)
    one_stdin([document, selfie])
    quiet_mediapipe(native=True)  # MediaPipe's start-up lines on stderr: of no use to whoever runs this
    config = KycConfig() if far is None else KycConfig(far=far)  # the layer's default FAR, unless given
    service = KycService(create_database_engine(db or default_database_url()),
                         FaceAnalyzer(pack, announce_license=False), config)
    with err.status("deciding: decoding the selfie; face, liveness, challenge and match checks"):
        info = service.verify(tenant, input_bytes(document), actions, video=input_bytes(selfie))
    decided = (f"session {info.id} was decided all the same ({'accepted' if info.accepted else 'refused'}) and is "
               "kept: its selfie cannot be used again")
    with writing_stdout(done=decided):  # a stdout that cannot be written (> /dev/full): one line, exit 2
        if as_json:
            print(json_text(info.to_dict()))
        else:
            details = info.details
            match = details.get("match", {})
            liveness = details.get("liveness", {})
            console.print(f"session {info.id}: [bold]{'ACCEPTED' if info.accepted else 'REFUSED'}[/bold]"
                          + (f" ({', '.join(info.reasons)})" if info.reasons else ""), soft_wrap=True)
            console.print(f"  match similarity {_similarity(match, info.reasons)} "
                          f"(threshold {details.get('thresholds', {}).get('match')} "
                          f"at FAR {config.far:g}); liveness {_or_unchecked(liveness.get('score'))}; challenge: "
                          f"{details.get('challenge_result', {}).get('detail', '-')}", soft_wrap=True)
    raise typer.Exit(0 if info.accepted else 1)


def _or_unchecked(score: Any) -> str:
    """A score, or "not checked" where the session never reached its check (no face: it printed "None")."""
    return "not checked" if score is None else str(score)


def _similarity(match: dict[str, Any], reasons: Sequence[str]) -> str:
    """The match's similarity, or in words why there is none (it printed "None"): the reason that
    kept the faces from being compared."""
    if match.get("similarity") is not None:
        return str(match["similarity"])
    for reason in ("document_no_face", "selfie_no_face", "low_quality"):
        if reason in reasons:
            return f"none: {REASON_WORDS[reason]}"
    return "none: not compared"
