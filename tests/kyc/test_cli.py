"""`faceatlas kyc verify`: one session decided from files; exit 0 accepted, 1 refused, 2 an error."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from faceatlas.cli.main import app

from .conftest import MIRANDA, still
from .media import encode_mp4, moved_still


def test_kyc_verify_refuses_a_moved_photo(tmp_path: Path, shared: Path, miranda_card: bytes) -> None:
    document, selfie = tmp_path / "id.jpg", tmp_path / "selfie.mp4"
    document.write_bytes(miranda_card)
    selfie.write_bytes(encode_mp4(moved_still(still(shared / MIRANDA), seconds=1.2, fps=10, size=(480, 360)), 10))
    args = ["kyc", "verify", "--document", str(document), "--selfie", str(selfie), "--pack", "scrfd-mbf",
            "--db", f"sqlite:///{tmp_path / 'kyc.db'}"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--challenge", "blink,left", "--json"])
    assert result.exit_code == 1, result.output
    session = json.loads(result.stdout)
    assert session["challenge"] == ["blink", "turn_left"] and session["status"] == "rejected"
    assert "challenge_failed" in session["reasons"] and session["details"]["match"]["match"]
    # the liveness threshold it was decided at is stated (docs/kyc.md), not null for the default's
    from faceatlas.engine import REAL_THRESHOLD

    assert session["details"]["thresholds"]["liveness"] == REAL_THRESHOLD
    assert session["details"]["liveness"]["threshold"] == REAL_THRESHOLD
    again = runner.invoke(app, [*args, "--challenge", "blink"])  # the same file again: a replay
    assert again.exit_code == 1 and "replay" in again.stdout
    wrong = runner.invoke(app, [*args, "--challenge", "wink"])
    assert wrong.exit_code == 2 and "validation_error" in wrong.output
    for tenant in ("", " ", "x" * 201, "a\nb"):  # were kept as given: a session nobody could name again
        refused = runner.invoke(app, [*args, "--challenge", "blink", "--tenant", tenant])
        assert refused.exit_code == 2 and "validation_error" in refused.output and "tenant" in refused.output, tenant


def test_kyc_verify_to_a_full_stdout_is_one_line(tmp_path: Path, shared: Path, miranda_card: bytes) -> None:
    """`kyc verify ... > /dev/full` said "error (error): [Errno 28] No space left on device": it says
    what could not be written, as every other command (exit 2)."""
    document, selfie = tmp_path / "id.jpg", tmp_path / "selfie.mp4"
    document.write_bytes(miranda_card)
    selfie.write_bytes(encode_mp4(moved_still(still(shared / MIRANDA), seconds=1.2, fps=10, size=(480, 360)), 10))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "kyc", "verify", "--document", str(document),
                              "--selfie", str(selfie), "--pack", "scrfd-mbf", "--challenge", "blink",
                              "--db", f"sqlite:///{tmp_path / 'kyc.db'}"],
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    assert run.returncode == 2, run.stderr[-2000:]
    said = "error (bad_request): cannot write the standard output: no space left on device; session "
    # and nothing else: MediaPipe's start-up lines ("INFO: Created TensorFlow Lite XNNPACK delegate",
    # absl's "WARNING: All log messages before ...", "W0000 ... inference_feedback_manager.cc") came first.
    # The session was decided and kept all the same (a run again is refused as a replay): it says so
    assert run.stderr.strip().startswith(said) and "\n" not in run.stderr.strip(), run.stderr[-2000:]
    assert "was decided all the same (refused) and is kept: its selfie cannot be used again" in run.stderr


def test_a_refused_kyc_verify_leaves_no_session(tmp_path: Path, miranda_card: bytes) -> None:
    """A selfie that does not decode, or a FAR the pack has no threshold for, left a pending session
    in the audit for each try, later listed to reviewers as expired."""
    document, junk = tmp_path / "id.jpg", tmp_path / "junk.mp4"
    document.write_bytes(miranda_card)
    junk.write_bytes(b"not a video at all" * 100)
    database = tmp_path / "kyc.db"
    base = ["kyc", "verify", "--document", str(document), "--selfie", str(junk), "--pack", "scrfd-mbf",
            "--db", f"sqlite:///{database}", "--challenge", "blink"]
    runner = CliRunner()
    for extra in ([], ["--far", "1e-9"]):
        refused = runner.invoke(app, [*base, *extra])
        assert refused.exit_code == 2, refused.output
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM kyc_sessions").fetchone() == (0,)


def test_kyc_verify_states_the_threshold_when_the_selfie_has_no_face(tmp_path: Path, shared: Path) -> None:
    """Found by a probe: a selfie without a face printed "match similarity None (threshold None at
    FAR 1e-06)" and the details' `thresholds.match` was null, though the pack's calibration knows it."""
    from faceatlas.engine import FaceAnalyzer

    from .media import clip

    document, selfie = tmp_path / "id.jpg", tmp_path / "selfie.mp4"
    document.write_bytes(sorted((shared / "data/lfw/images/Tony_Blair").glob("*.jpg"))[0].read_bytes())
    selfie.write_bytes(encode_mp4(clip(shared / "data/videos/one-by-one-person-detection.mp4", 0, 40), 20))
    threshold = round(FaceAnalyzer("scrfd-mbf", announce_license=False).threshold(1e-6), 4)
    runner = CliRunner()
    for tenant, extra in (("a", []), ("b", ["--json"])):  # two tenants: the same selfie is no replay
        result = runner.invoke(app, ["kyc", "verify", "--document", str(document), "--selfie", str(selfie),
                                     "--pack", "scrfd-mbf", "--db", f"sqlite:///{tmp_path / 'kyc.db'}",
                                     "--challenge", "blink,left", "--tenant", tenant, *extra])
        assert result.exit_code == 1, result.output
        if extra:
            session = json.loads(result.stdout)
            assert "selfie_no_face" in session["reasons"] and "match" not in session["details"]
            assert session["details"]["thresholds"]["match"] == threshold
        else:
            flat = " ".join(result.stdout.split())
            assert f"match similarity none: no face on the selfie (threshold {threshold} at FAR 1e-06)" in flat, flat
            assert "liveness not checked;" in flat and "None" not in flat, flat


def test_kyc_verify_decides_at_the_layers_far_unless_one_is_given(tmp_path: Path, monkeypatch) -> None:
    """`kyc verify` hard-coded --far 1e-6 beside `KycConfig().far`: a change of the layer's default
    left the CLI deciding at the old rate. No --far: the layer's config, as the layer builds it."""
    from dataclasses import dataclass

    from faceatlas.apps.kyc import KycConfig
    from faceatlas.cli import kyc
    from faceatlas.errors import InvalidArgument

    @dataclass(frozen=True)
    class Looser(KycConfig):  # a layer whose default FAR is another
        far: float = 1e-3

    decided: list[float] = []

    class Recorder:  # the session's use case, recording the config it was built with
        def __init__(self, engine, analyzer, config: KycConfig) -> None:
            decided.append(config.far)
            raise InvalidArgument("recorded")

    runner = CliRunner()
    monkeypatch.setattr(kyc, "KycConfig", Looser)
    monkeypatch.setattr(kyc, "KycService", Recorder)
    base = ["kyc", "verify", "--document", str(tmp_path / "id.jpg"), "--selfie", str(tmp_path / "s.mp4"),
            "--challenge", "blink", "--pack", "scrfd-mbf", "--db", f"sqlite:///{tmp_path / 'kyc.db'}"]
    for extra in ([], ["--far", "1e-5"]):
        assert runner.invoke(app, [*base, *extra]).exit_code == 2
    assert decided == [1e-3, 1e-5]


def test_kyc_verify_help_states_the_layers_far() -> None:
    """The help of --far states the default the layer decides at (``KycConfig().far``)."""
    from faceatlas.apps.kyc import KycConfig

    shown = " ".join(CliRunner().invoke(app, ["kyc", "verify", "--help"]).output.replace("│", " ").split())
    assert f"false-accept rate of the document-selfie match (default: {KycConfig().far:g})" in shown, shown
