"""The command line in scripts and cron jobs: what goes to stdout under ``--json`` (JSON, and only
JSON, errors and interruptions included), tables whole in a file, questions on stderr."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    assert made == {"tenant": "acme", "name": "Acme", "monthly_quota": 100, "max_key_rate": 50.0,
                    "kyc_retention_days": 0}, made
    again = _json(["admin", "tenant", "create", "acme", "--db", db, "--json"], 2)
    assert set(again) == {"error", "message"}, again
    changed = _json(["admin", "tenant", "update", "acme", "--unlimited", "--default-max-rate", "--name", "A",
                     "--db", db, "--json"])
    assert changed == {"tenant": "acme", "name": "A", "monthly_quota": None, "max_key_rate": None,
                       "kyc_retention_days": 0}, changed
    assert _json(["admin", "tenant", "list", "--db", db, "--json"]) == [changed]  # the same fields as the list's
    ghost = _json(["admin", "tenant", "update", "ghost", "--quota", "1", "--db", db, "--json"], 2)
    assert ghost["error"] == "not_found", ghost
    asked = _json(["admin", "tenant", "delete", "acme", "--db", db, "--json"], 2)  # nothing to ask in: --yes
    assert "--yes" in asked["message"], asked
    deleted = _json(["admin", "tenant", "delete", "acme", "--yes", "--db", db, "--json"])
    assert deleted["tenant"] == "acme" and deleted["deleted"] is True, deleted
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
                                                  "counts": {"seen": 3, "in:lane1": 2}}],
                    "truncated": False, "next_from": None}, said  # the API's answer's keys: one shape
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


def _photo_of_no_face(folder: Path) -> Path:
    """A decodable photo without a face (a grey square): the input that gives no answer."""
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "blank.jpg"), np.full((200, 200, 3), 128, np.uint8))
    return folder / "blank.jpg"


def test_a_table_on_a_narrow_terminal_folds_a_long_id_whole(examples, tmp_path):
    """On a terminal narrower than the table (COLUMNS=40), rich cut an id to `lin-manuel-…`: its
    column folds now, every character of the id printed over the lines of its cell."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    enrolled = runner.invoke(app, ["gallery", "enrol", "staff", str(examples / "examples/obama_small.jpg"),
                                   "-s", LONG, "--name", "Lin Manuel Miranda of a long name", "--db", db])
    assert enrolled.exit_code == 0, enrolled.output
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "40", "NO_COLOR": "1"}
    status, out = _on_a_terminal(["gallery", "list", "staff", "--db", db], env)
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert status == 0 and len(rows) > 1 and "…" not in out, out
    assert "".join(row[1].strip() for row in rows) == LONG, out  # the subject column, cell line by cell line
    named = " ".join(row[2].strip() for row in rows).split()
    assert named == ["Lin", "Manuel", "Miranda", "of", "a", "long", "name"], out


def test_a_table_on_stderr_keeps_a_long_camera_name_whole(shared, tmp_path, monkeypatch):
    """`watch`'s summary goes to stderr, 80 columns (or COLUMNS) into a file: a long camera name was
    cut there (`lin-manuel-…`); it folds now, whole over its cell's lines."""
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.setenv("COLUMNS", "40")
    video = tmp_path / f"{LONG}.gif"
    video.symlink_to(shared / "data/videos/store-aisle-detection.gif")
    result = runner.invoke(app, ["watch", str(video), "-p", "scrfd-mbf", "--no-persons", "--stride", "4",
                                 "--events", str(tmp_path / "events.jsonl")])
    assert result.exit_code == 0, result.output
    table = result.stderr.split("faceatlas watch", 1)[1].split("events", 1)[0]
    cells = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    assert cells and "…" not in table and LONG in "".join(cells), result.stderr


def test_no_face_is_exit_1_not_an_error(examples, tmp_path):
    """A photo without a face was exit 2 in compare, liveness and gallery search, as a database that
    cannot be reached is; detect answers it (0, `faces: []`). It is 1 now (the command ran, an input
    gave no answer), its JSON error body as before; an error is still 2."""
    blank, photo = _photo_of_no_face(tmp_path / "in"), str(examples / "examples/obama_small.jpg")
    detected = _json(["detect", str(blank), "-p", "scrfd-mbf", "--json"])
    assert detected["results"][0]["faces"] == [], detected
    compared = _json(["compare", photo, str(blank), "-p", "scrfd-mbf", "--json"], 1)
    assert compared["error"] == "no_face" and set(compared) == {"error", "message"}, compared
    said = runner.invoke(app, ["compare", photo, str(blank), "-p", "scrfd-mbf"])
    assert said.exit_code == 1 and said.stderr.splitlines()[-1].startswith("error (no_face): "), said.output
    live = _json(["liveness", str(blank), "-p", "scrfd-mbf", "--json"], 1)
    assert live["results"][0]["error"] == "no_face", live
    not_an_image = tmp_path / "in" / "notes.jpg"
    not_an_image.write_text("not an image")
    assert _json(["liveness", str(not_an_image), "-p", "scrfd-mbf", "--json"], 2)["results"][0]["error"]
    # nothing answered and one an error: 2 (a script must not go on as if the other's result stood); with an answer: 1
    _json(["liveness", str(blank), str(not_an_image), "-p", "scrfd-mbf", "--json"], 2)
    _json(["liveness", photo, str(not_an_image), "-p", "scrfd-mbf", "--json"], 1)
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    searched = _json(["gallery", "search", "staff", str(blank), "--db", db, "--json"], 1)
    assert searched["error"] == "no_face" and set(searched) == {"error", "message"}, searched
    enrolled = _json(["gallery", "enrol", "staff", str(blank), "-s", "x", "--db", db, "--json"], 1)
    assert enrolled["added"] == 0 and enrolled["rejected"][0]["error"] == "no_face", enrolled
    assert _json(["gallery", "enrol", "staff", str(not_an_image), "-s", "x", "--db", db, "--json"], 2)["added"] == 0
    outage = _json(["gallery", "search", "staff", str(blank), "--db", str(tmp_path / "nosuch.db"), "--json"], 2)
    assert outage["error"] == "not_found", outage  # an error is 2, as before


def test_gallery_create_exist_ok_and_delete_missing_ok(tmp_path):
    """An "ensure" step run twice: `gallery create` was 2 already_exists and `gallery delete` 2
    not_found the second time; --exist-ok and --missing-ok make it 0, said. Other settings than
    the existing collection's (another pack, crops) are still an error."""
    db = str(tmp_path / "g.db")
    create = ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]
    made = _json([*create, "--exist-ok", "--json"])
    assert made["name"] == "staff" and made["existed"] is False, made
    assert _json([*create, "--json"], 2)["error"] == "already_exists"  # without the flag: as before
    again = _json([*create, "--exist-ok", "--json"])
    assert again["existed"] is True and again["pack_name"] == "scrfd-mbf", again
    said = runner.invoke(app, [*create, "--exist-ok"])
    assert said.exit_code == 0 and "collection staff exists (pack scrfd-mbf)" in said.stdout, said.output
    for other in (["-p", "yunet-frfeature"], ["--keep-crops"]):
        differs = _json([*create, *other, "--exist-ok", "--json"], 2)
        assert differs["error"] == "already_exists" and "other settings" in differs["message"], differs
    delete = ["gallery", "delete", "staff", "--yes", "--db", db]
    assert _json([*delete, "-s", "ghost", "--json"], 2)["error"] == "not_found"  # without the flag: as before
    missing = _json([*delete, "-s", "ghost", "--missing-ok", "--json"])
    assert missing == {"deleted": "subject 'ghost' of 'staff'", "faces": 0, "missing": True}, missing
    assert _json([*delete, "--missing-ok", "--json"]) == {"deleted": "collection 'staff'", "faces": 0,
                                                         "missing": False}
    gone = runner.invoke(app, [*delete, "--missing-ok"])
    assert gone.exit_code == 0 and "collection 'staff' is not there: nothing deleted" in gone.stdout, gone.output
    assert _json([*delete, "-s", "ghost", "--missing-ok", "--json"])["missing"] is True  # nor its collection
    nowhere = ["gallery", "delete", "staff", "--yes", "--db", str(tmp_path / "nosuch.db")]
    assert _json([*nowhere, "--missing-ok", "--json"])["missing"] is True  # nor its database (no file made)
    assert _json([*nowhere, "--json"], 2)["error"] == "not_found" and not (tmp_path / "nosuch.db").exists()


def test_admin_tenant_create_exist_ok(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    create = ["admin", "tenant", "create", "acme", "--name", "Acme", "--quota", "100", "--db", db]
    assert _json([*create, "--exist-ok", "--json"])["existed"] is False
    again = _json([*create, "--exist-ok", "--json"])
    assert again == {"tenant": "acme", "name": "Acme", "monthly_quota": 100, "max_key_rate": None,
                     "kyc_retention_days": 0, "existed": True}
    said = runner.invoke(app, [*create, "--exist-ok"])
    assert said.exit_code == 0 and said.stdout.startswith("tenant acme exists (quota 100"), said.output
    assert _json([*create, "--json"], 2)["error"] == "already_exists"  # without the flag: as before
    differs = _json(["admin", "tenant", "create", "acme", "--name", "Acme", "--quota", "5", "--db", db,
                     "--exist-ok", "--json"], 2)
    assert differs["error"] == "already_exists" and "quota 100, not 5" in differs["message"], differs
    assert runner.invoke(app, ["admin", "tenant", "delete", "acme", "--yes", "--db", db]).exit_code == 0
    deleted = _json([*create, "--exist-ok", "--json"], 2)  # a deleted tenant's id is not given again
    assert deleted["error"] == "already_exists" and "was deleted" in deleted["message"], deleted


def test_every_database_option_answers_to_db_and_watch_takes_db_and_o(shared, tmp_path, monkeypatch):
    """`watch` named its gallery database `--gallery` where every other command says `--db`, and its
    `--output` had no `-o` (drive's and ar's have)."""
    import typer

    from faceatlas.cli.main import _ELSEWHERE
    from faceatlas.cli.options import database_option

    group = typer.main.get_command(app)
    ctx = typer.Context(group)  # typer's own click (typer._click since typer 0.2x), not the click package

    def commands(command: Any, path: str) -> list[tuple[str, Any]]:
        if hasattr(command, "list_commands"):  # a group
            return [found for name in command.list_commands(ctx)
                    for found in commands(command.get_command(ctx, name), f"{path} {name}")]
        return [(path, command)]

    for name in _ELSEWHERE:  # the other layers' commands, loaded
        assert group.get_command(ctx, name) is not None
    options = [(path, option) for path, command in commands(group, "faceatlas") for option in command.params
               if getattr(option.callback, "__wrapped__", None) is database_option and "--events-db" not in option.opts]
    assert len(options) > 30 and not [(path, option.opts) for path, option in options if "--db" not in option.opts]
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    video = shared / "data/videos/store-aisle-detection.gif"
    result = runner.invoke(app, ["watch", str(video), "--collection", "staff", "--db", db, "--no-persons",
                                 "--stride", "4", "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 0 and (tmp_path / "out.mp4").stat().st_size > 0, result.output
    unknown = runner.invoke(app, ["watch", str(video), "--collection", "nosuch", "--db", db])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error (not_found): "), unknown.output


def test_watch_says_an_error_without_a_blank_line_first_into_a_pipe(tmp_path):
    """The same of a real process, its stderr a pipe (a cron job's log)."""
    result = subprocess.run([sys.executable, "-m", "faceatlas.cli", "watch", str(tmp_path / "nosuch.mp4")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error (file_not_found): "), repr(result.stderr)


def test_gallery_search_and_kyc_verify_read_standard_input(examples, tmp_path, shared):
    """`-` was read from standard input by detect, liveness, compare and remote only: `gallery search
    staff -` said `-: no such file`, as `kyc verify -d -` did; both read it now (one of kyc's two)."""
    photo = examples / "examples/obama_small.jpg"
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["gallery", "enrol", "staff", str(photo), "-s", "obama", "--db", db]).exit_code == 0
    found = runner.invoke(app, ["gallery", "search", "staff", "-", "--db", db, "--json"], input=photo.read_bytes())
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"][0]["matches"][0]["external_id"] == "obama", found.stdout
    both = runner.invoke(app, ["kyc", "verify", "-d", "-", "-s", "-", "-c", "blink", "--db",
                               f"sqlite:///{tmp_path / 'k.db'}", "--json"])
    assert both.exit_code == 2 and "standard input" in both.output, both.output
    from tests.kyc.conftest import MIRANDA, still
    from tests.kyc.media import encode_mp4, moved_still

    selfie = tmp_path / "selfie.mp4"
    selfie.write_bytes(encode_mp4(moved_still(still(shared / MIRANDA), seconds=1.2, fps=10, size=(480, 360)), 10))
    card = (shared / MIRANDA).read_bytes()
    decided = runner.invoke(app, ["kyc", "verify", "-d", "-", "-s", str(selfie), "-c", "blink", "-p", "scrfd-mbf",
                                  "--db", f"sqlite:///{tmp_path / 'k.db'}", "--json"], input=card)
    assert decided.exit_code in (0, 1) and json.loads(decided.stdout)["status"] in ("accepted", "rejected"), \
        decided.output
