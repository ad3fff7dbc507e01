"""The command line in scripts and cron jobs: what goes to stdout under ``--json`` (JSON, and only
JSON, errors and interruptions included), tables whole in a file, questions on stderr."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()
LONG = "lin-manuel-miranda-a-very-long-collection-name-that-goes-on-and-on-past-eighty-columns-x"


def test_key_create_json_says_its_errors_as_json_on_stdout(tmp_path):
    """`admin key create --json` said an unknown tenant or scope as text on stderr, stdout empty
    (its admin call's guard said the error before the group could see --json)."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["admin", "tenant", "create", "acme", "--db", db]).exit_code == 0
    for args, code in ((["ghost", "--scope", "read"], "not_found"), (["acme", "--scope", "bogus"], None)):
        result = runner.invoke(app, ["admin", "key", "create", *args, "--db", db, "--json"])
        assert result.exit_code == 2, result.output
        said = json.loads(result.stdout)
        assert set(said) == {"error", "message"} and said["error"] == (code or said["error"]), said
        assert "error (" not in result.stderr, result.stderr
    made = runner.invoke(app, ["admin", "key", "create", "acme", "--scope", "read", "--db", db, "--json"])
    assert made.exit_code == 0 and json.loads(made.stdout)["tenant"] == "acme", made.output


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """``faceatlas ARGS`` with its standard output a terminal (a pseudo-terminal, as `docker exec -t`)."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", *args], stdout=child,
                               stderr=subprocess.PIPE, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    process.communicate(timeout=120)
    return process.returncode, b"".join(chunks).decode()


def test_json_is_plain_on_a_terminal(tmp_path):
    """`gallery list --json` (and album's, batch's: rich's print_json) was styled JSON on a terminal,
    ``^[[1m{^[[0m``: `docker exec -t ... --json > out.json` wrote no JSON; NO_COLOR did not stop it."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    for extra in ({}, {"NO_COLOR": "1"}):
        env = {**os.environ, "TERM": "xterm-256color", **extra}
        env.pop("FORCE_COLOR", None)
        status, out = _on_a_terminal(["gallery", "list", "--json", "--db", db], env)
        assert status == 0 and "\x1b" not in out, repr(out)
        assert [c["name"] for c in json.loads(out)] == ["staff"]
    source = Path(__file__).resolve().parents[1] / "faceatlas" / "cli"
    assert not [p.name for p in source.glob("*.py") if ".print_json(" in p.read_text()]  # one emitter: emit_json


def _photo(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    return folder


def test_an_interrupted_album_scan_says_so_in_json(tmp_path, monkeypatch):
    """`album scan --json` stopped (Ctrl-C, SIGTERM) left stdout empty, status 130, where `detect --json`
    prints its results so far with "interrupted": true."""
    from faceatlas.cli import album as album_cli

    def stopped(self, listing, *, on_progress=None):
        on_progress(3, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(album_cli.Album, "scan", stopped)
    result = runner.invoke(app, ["album", "scan", str(_photo(tmp_path / "photos")), "--pack", "scrfd-mbf",
                                 "--db", f"sqlite:///{tmp_path / 'a.db'}", "--json"])
    assert result.exit_code == 130, result.output
    said = json.loads(result.stdout)
    assert said["interrupted"] is True and (said["done"], said["total"]) == (3, 10), said
    assert "interrupted after 3 of 10 photos" in result.stderr


def test_an_interrupted_gallery_enrol_says_what_it_enrolled_in_json(tmp_path, monkeypatch):
    from faceatlas.gallery import Gallery

    def stopped(self, *args, **kwargs):
        raise KeyboardInterrupt

    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    monkeypatch.setattr(Gallery, "enrol_images", stopped)
    photos = _photo(tmp_path / "photos")
    result = runner.invoke(app, ["gallery", "enrol", "staff", str(photos / "a.jpg"), "-s", "x", "--db", db, "--json"])
    assert result.exit_code == 130, result.output
    said = json.loads(result.stdout)
    assert said["interrupted"] is True and said["added"] == 0 and (said["done"], said["total"]) == (0, 1), said


def test_tables_into_a_file_keep_ids_whole(tmp_path, monkeypatch):
    """A table into a file or a pipe was cut at rich's 80 columns ("lin-manuel-miranda-a-very-long-…"),
    or at COLUMNS: an id there matched nothing."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", LONG, "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    for columns in (None, "40"):
        if columns:
            monkeypatch.setenv("COLUMNS", columns)
        listed = runner.invoke(app, ["gallery", "list", "--db", db])
        assert listed.exit_code == 0 and LONG in listed.stdout and "…" not in listed.stdout, listed.stdout


def test_a_question_goes_to_stderr(tmp_path):
    """The [y/N] question was printed on stdout, among a command's results."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["admin", "tenant", "create", "acme", "--db", db]).exit_code == 0
    for command, asked in ((["gallery", "delete", "people", "--db", db], "delete collection 'people'"),
                           (["admin", "tenant", "delete", "acme", "--db", db], "delete tenant acme")):
        declined = runner.invoke(app, command, input="n\n")
        assert declined.exit_code == 1 and asked in declined.stderr, declined.output
        assert asked not in declined.stdout, declined.stdout
    source = Path(__file__).resolve().parents[1] / "faceatlas" / "cli"
    asks = [line for p in source.glob("*.py") for line in p.read_text().splitlines() if "typer.confirm(" in line]
    assert asks and all("err=True" in line for line in asks), asks  # remote's and album's too


def test_watch_says_an_error_without_a_blank_line_first(tmp_path):
    result = runner.invoke(app, ["watch", str(tmp_path / "nosuch.mp4"), "--events", str(tmp_path / "ev.jsonl")])
    assert result.exit_code == 2 and result.stderr.startswith("error ("), repr(result.stderr)


def _json(args: list[str], code: int = 0) -> dict:
    """``faceatlas ARGS`` (with --json): its stdout as JSON, and only JSON, exit ``code``."""
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_admin_tenant_commands_say_the_tenant_in_json(tmp_path):
    """`admin tenant create/update/delete` printed sentences only, no --json (a scripting probe)."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    made = _json(["admin", "tenant", "create", "acme", "--name", "Acme", "--quota", "100", "--max-rate", "50",
                  "--db", db, "--json"])
    assert made == {"id": "acme", "name": "Acme", "monthly_quota": 100, "max_key_rate": 50.0}, made
    again = _json(["admin", "tenant", "create", "acme", "--db", db, "--json"], 2)
    assert set(again) == {"error", "message"}, again
    changed = _json(["admin", "tenant", "update", "acme", "--unlimited", "--default-max-rate", "--name", "A",
                     "--db", db, "--json"])
    assert changed == {"id": "acme", "name": "A", "monthly_quota": None, "max_key_rate": None}, changed
    assert _json(["admin", "tenant", "list", "--db", db, "--json"]) == [changed]  # the same fields as the list's
    ghost = _json(["admin", "tenant", "update", "ghost", "--quota", "1", "--db", db, "--json"], 2)
    assert ghost["error"] == "not_found", ghost
    asked = _json(["admin", "tenant", "delete", "acme", "--db", db, "--json"], 2)  # nothing to ask in: --yes
    assert "--yes" in asked["message"], asked
    deleted = _json(["admin", "tenant", "delete", "acme", "--yes", "--db", db, "--json"])
    assert deleted["id"] == "acme" and deleted["deleted"] is True, deleted
    assert {k: deleted[k] for k in ("collections", "albums", "kyc_sessions", "stores", "events")} == dict.fromkeys(
        ("collections", "albums", "kyc_sessions", "stores", "events"), 0), deleted
    assert _json(["admin", "tenant", "delete", "acme", "--yes", "--db", db, "--json"], 2)["error"] == "not_found"


def test_admin_key_revoke_and_rotate_in_json(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["admin", "tenant", "create", "acme", "--db", db]).exit_code == 0
    issued = _json(["admin", "key", "create", "acme", "--scope", "read", "--scope", "detect", "--db", db, "--json"])
    rotated = _json(["admin", "key", "rotate", issued["prefix"], "--db", db, "--json"])
    assert set(rotated) == {"key", "prefix", "tenant", "scopes", "replaces"}, rotated  # key create's fields
    assert rotated["replaces"] == issued["prefix"] and rotated["prefix"] != issued["prefix"], rotated
    assert (rotated["tenant"], sorted(rotated["scopes"])) == ("acme", ["detect", "read"]), rotated
    assert _json(["admin", "key", "rotate", issued["prefix"], "--db", db, "--json"], 2)["error"] == "key_revoked"
    revoked = _json(["admin", "key", "revoke", rotated["key"], "--db", db, "--json"])  # the pasted key: its prefix
    assert revoked == {"prefix": rotated["prefix"], "revoked": True, "already_revoked": False}, revoked
    again = _json(["admin", "key", "revoke", rotated["prefix"], "--db", db, "--json"])
    assert again["already_revoked"] is True, again
    assert _json(["admin", "key", "revoke", "fa_nosuch", "--db", db, "--json"], 2)["error"] == "not_found"
    listed = {k["prefix"]: k["revoked"] for k in _json(["admin", "key", "list", "acme", "--db", db, "--json"])}
    assert listed == {issued["prefix"]: True, rotated["prefix"]: True}, listed


def test_admin_usage_in_json(tmp_path):
    """`admin usage` was a table or CSV: --json is the API's GET /v1/usage answer, tenant and rows."""
    from faceatlas.db import create_database_engine
    from faceatlas.service.db import UsageRecord
    from faceatlas.service.tenants import operator_accounts

    db = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["admin", "tenant", "create", "acme", "--db", db]).exit_code == 0
    operator_accounts(create_database_engine(db), None).record_usage(
        [UsageRecord(tenant_id="acme", operation="detect", faces=2, status=200) for _ in range(3)]
        + [UsageRecord(tenant_id="acme", operation="detect", status=503)])
    said = _json(["admin", "usage", "--tenant", "acme", "--db", db, "--json"])
    assert said["tenant"] == "acme" and len(said["rows"]) == 1, said
    row = said["rows"][0]
    assert set(row) == {"tenant", "day", "operation", "calls", "faces", "errors", "failed"}, row  # the CSV's columns
    assert (row["operation"], row["calls"], row["faces"], row["failed"]) == ("detect", 3, 6, 1), row
    assert _json(["admin", "usage", "--db", db, "--json"])["tenant"] is None
    assert _json(["admin", "usage", "--tenant", "ghost", "--db", db, "--json"], 2)["error"] == "not_found"
    assert "error" in _json(["admin", "usage", "--csv", "--db", db, "--json"], 2)


def test_counts_in_json(tmp_path):
    """`counts --json` was "No such option": the API's counts answer, camera and each minute's class and counts."""
    from faceatlas.video.events import Event
    from faceatlas.video.sinks import DatabaseSink

    db = f"sqlite:///{tmp_path / 'v.db'}"
    sink = DatabaseSink(db)
    sink.emit(Event("counts", "gate", 1, 1.0, data={"minute": "2026-12-04T10:00", "frame_size": [8, 8],
                                                    "classes": {"car": {"seen": 3, "in:lane1": 2}}}))
    sink.close()
    said = _json(["counts", "gate", "--db", db, "--json"])
    assert said == {"camera": "gate", "counts": [{"camera": "gate", "minute": "2026-12-04T10:00", "class": "car",
                                                  "counts": {"seen": 3, "in:lane1": 2}}]}, said
    assert _json(["counts", "gate", "--db", db, "--class", "bus", "--json"], 2)["error"] == "not_found"


def test_models_fetch_in_json(tmp_path, monkeypatch):
    """`models fetch` said each file in a sentence: --json is models info's name and each file's name,
    found (its path), state and whether this run downloaded it."""
    from faceatlas.cli import models as models_cli

    locate, fetch = models_cli.locate, models_cli.fetch
    monkeypatch.setattr(models_cli, "locate", lambda model: None)
    monkeypatch.setattr(models_cli, "fetch", lambda model, pack: tmp_path / model.name)
    said = _json(["models", "fetch", "scrfd-mbf", "--json"])
    assert said["name"] == "scrfd-mbf" and said["files"], said
    for file in said["files"]:
        assert set(file) == {"name", "found", "state", "downloaded"}, file
        assert file["state"] in ("ready", "missing") and file["downloaded"] == (file["state"] == "ready"), file
    monkeypatch.setattr(models_cli, "locate", locate)  # offline, nothing on disk: the download's error, as JSON
    monkeypatch.setattr(models_cli, "fetch", fetch)
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(tmp_path / "models"))
    assert _json(["models", "fetch", "scrfd-mbf", "--json"], 2)["error"] == "model_missing"
