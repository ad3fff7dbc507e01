"""What a new user trips on: every failing command is one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app

runner = CliRunner()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def test_watch_missing_file_is_one_line_and_non_zero(shared, tmp_path):
    result = runner.invoke(app, ["watch", str(tmp_path / "nosuch.mp4"), "--events", str(tmp_path / "ev.jsonl")])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert len(_error_lines(result.output)) == 1 and "nosuch.mp4" in _error_lines(result.output)[0]
    assert not (tmp_path / "ev.jsonl").exists()


def test_watch_unknown_collection_is_one_line_and_non_zero(shared, tmp_path):
    video = shared / "data/videos/one-by-one-person-detection.mp4"
    gallery = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", "--db", gallery]).exit_code == 0
    result = runner.invoke(app, ["watch", str(video), "--collection", "nosuch", "--gallery", gallery])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "not_found" in lines[0] and "nosuch" in lines[0], result.output


def test_watch_reads_a_gallery_it_never_makes(shared, tmp_path):
    """`watch clip.mp4 --collection staff --gallery sqlite:///.../typo_dir/gallry.db` said "collection
    'staff' not found" but left typo_dir/gallry.db made (an empty database of 64 KB), by --gallery and
    by cams.yaml's `gallery:` alike: a gallery that is not there is said to be missing, and none is made."""
    video = shared / "data/videos/one-by-one-person-detection.mp4"
    missing = tmp_path / "typo_dir" / "gallry.db"
    config = tmp_path / "cams.yaml"
    config.write_text(f"gallery: sqlite:///{missing}\ncollection: staff\ncameras:\n  - {{name: door, source: {video}, "
                      f"snapshots: {tmp_path / 'snaps'}}}\n")
    for args in (["watch", str(video), "--collection", "staff", "--gallery", f"sqlite:///{missing}"],
                 ["watch", "--config", str(config)]):
        result = runner.invoke(app, [*args, "--events", str(tmp_path / "ev.jsonl")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert _error_lines(result.output) == [
            f"error (not_found): no gallery database at {missing} (`faceatlas gallery create NAME` makes one there)"
        ], result.output
        assert not (tmp_path / "typo_dir").exists() and not (tmp_path / "snaps").exists()
        assert not (tmp_path / "ev.jsonl").exists()


def test_watch_file_that_is_no_video_is_one_line_and_non_zero(shared, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    result = runner.invoke(app, ["watch", str(not_a_video), "-p", "scrfd-mbf", "--no-persons"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "notes.mp4" in lines[0], result.output


def test_enrol_folder_enrols_the_good_and_names_each_reject(shared, tmp_path):
    lfw = shared / "data/lfw/images/Aaron_Peirsol"
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(lfw.iterdir())[:2]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "truncated.jpg").write_bytes(sorted(lfw.iterdir())[0].read_bytes()[:200])
    cv2.imwrite(str(folder / "blank.png"), np.zeros((240, 240, 3), np.uint8))
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", *db]).exit_code == 0

    result = runner.invoke(app, ["gallery", "enrol", "people", str(folder), "--subject", "aaron", *db])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert "enrolled 2 faces of 1 subjects; 2 rejected" in result.output
    rejected = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("rejected")}
    assert set(rejected) == {f"{folder / 'truncated.jpg'}:", f"{folder / 'blank.png'}:"}, result.output
    assert "truncated_image" in rejected[f"{folder / 'truncated.jpg'}:"]
    assert "no_face" in rejected[f"{folder / 'blank.png'}:"]
    listed = runner.invoke(app, ["gallery", "list", "people", "--json", *db])
    assert [(s["external_id"], s["faces"]) for s in json.loads(listed.stdout)["items"]] == [("aaron", 2)]


def test_remote_server_down_is_one_line(examples):
    photo = examples / "tests/test_images/obama.jpg"
    result = runner.invoke(app, ["remote", "detect", str(photo), "--server", "http://127.0.0.1:9", "--key", "fa_x"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "cannot reach the server at http://127.0.0.1:9" in lines[0], result.output
    assert lines[0].startswith("error (server_unreachable): ")
    # a URL without its scheme was "cannot reach the server": it is a usage error that says the form
    bare = runner.invoke(app, ["remote", "detect", str(photo), "--server", "127.0.0.1:9", "--key", "fa_x"])
    assert bare.exit_code == 2 and _error_lines(bare.output)[0].startswith(
        "error (usage): invalid server URL '127.0.0.1:9' (give http(s)://host[:port])"), bare.output


def test_remote_missing_file_is_one_line(tmp_path):
    missing = tmp_path / "nosuch.jpg"
    result = runner.invoke(app, ["remote", "compare", str(missing), str(missing), "--server", "http://127.0.0.1:9",
                                 "--key", "fa_x"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # said as the local commands say it (`faceatlas compare`: file_not_found), not bad_request
    assert _error_lines(result.output) == [f"error (file_not_found): {missing}: no such file"], result.output


def test_models_fetch_offline_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_OFFLINE", "1")
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(tmp_path / "models"))
    result = runner.invoke(app, ["models", "fetch", "scrfd-mbf"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Download failed" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "model_missing" in lines[0] and "FACEATLAS_OFFLINE" in lines[0], result.output
    assert not list((tmp_path / "cache").rglob("*.onnx*"))


def test_the_suite_ignores_faceatlas_settings_of_the_shell(tmp_path):
    """A user with FACEATLAS_OFFLINE (or another pack, database, cache) in the shell can run the tests."""
    shell = {**os.environ, "FACEATLAS_OFFLINE": "1", "faceatlas_pack": "nosuch", "FACEATLAS_CACHE": "/nonexistent",
             "FACEATLAS_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    test = "tests/test_models.py::test_download_checks_sha256_and_renames_atomically"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", test],
                         cwd=Path(__file__).resolve().parents[1], env=shell, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_gallery_database_down_is_one_line(tmp_path):
    result = runner.invoke(app, ["gallery", "list", "--db", "postgresql://nobody@127.0.0.1:9/none"])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error") and "cannot open the gallery database" in lines[0]


@pytest.mark.parametrize(("where", "bug"), [("open", TypeError("a bug")), ("list_collections", ValueError("a bug"))])
def test_a_bug_in_a_gallery_command_is_not_said_to_be_the_user_s_fault(tmp_path, monkeypatch, where, bug):
    """Any exception opening the gallery was `database_unavailable` and any ValueError in a gallery
    command `validation_error`, exit 2: a bug read as the user's database or input. Only the
    database's and the file system's errors are said as the database's; a bug is its traceback."""
    from faceatlas.gallery import Gallery

    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", db]).exit_code == 0

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(Gallery, where, broken)
    result = runner.invoke(app, ["gallery", "list", "--db", db])
    assert result.exception is bug, result.output
    assert "database_unavailable" not in result.output and "validation_error" not in result.output, result.output


def test_a_gallery_read_of_a_missing_database_file_is_not_an_empty_gallery(tmp_path, examples):
    """`gallery list --db typo.db` made the file (and its folders) and listed no collections, exit 0:
    a read names the missing database and makes nothing; `gallery create` makes it."""
    typo = tmp_path / "nested" / "typo.db"
    photo = examples / "examples" / "two_people.jpg"  # a source the batch job takes: the database is what it lacks
    for command in (["gallery", "list"], ["gallery", "export", "people", str(tmp_path / "people.parquet")],
                    ["batch", "search", str(photo), "people", "--out", str(tmp_path / "out")]):
        result = runner.invoke(app, [*command, "--db", str(typo)])
        assert result.exit_code == 2, result.output
        assert f"error (not_found): no gallery database at {typo}" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "nested").exists()
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", str(typo)]).exit_code == 0
    listed = runner.invoke(app, ["gallery", "list", "--json", "--db", str(typo)])
    assert listed.exit_code == 0 and [c["name"] for c in json.loads(listed.stdout)] == ["people"], listed.output


def test_drive_missing_source_is_one_line(shared, tmp_path):
    result = runner.invoke(app, ["drive", str(tmp_path / "nosuch.mp4")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error") and "nosuch.mp4" in lines[0], lines



def test_delete_names_what_is_missing_before_asking_and_asks_with_the_face_count(tmp_path):
    """`gallery delete typo` asked "delete collection 'typo' and all its faces?" and only after a
    "y" said there was no such collection; `admin tenant delete` did the same. What is not there is
    the error, with no question; what is there is asked about with its size."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    for command in (["gallery", "delete", "typo", "--db", db],
                    ["gallery", "delete", "people", "--subject", "nobody", "--db", db],
                    ["admin", "tenant", "delete", "nobody", "--db", db]):
        result = runner.invoke(app, command, input="")  # a question would read EOF and abort
        assert result.exit_code == 2 and "?" not in result.output, result.output
        assert _error_lines(result.output)[0].startswith("error (not_found): "), result.output
    kept = runner.invoke(app, ["gallery", "delete", "people", "--db", db], input="n\n")
    assert kept.exit_code == 1 and "delete collection 'people' and its 0 faces?" in kept.output, kept.output
    listed = runner.invoke(app, ["gallery", "list", "--json", "--db", db])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["people"]


def test_a_question_answered_no_says_aborted_and_exits_1(tmp_path):
    """README's exit statuses: a [y/N] question answered no is 1 and "Aborted.", nothing changed.
    `admin tenant delete` said "Aborted.", `gallery delete` (and `album erase`) nothing at all."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["admin", "tenant", "create", "acme", "--db", db]).exit_code == 0
    for command in (["gallery", "delete", "people", "--db", db], ["admin", "tenant", "delete", "acme", "--db", db]):
        declined = runner.invoke(app, command, input="n\n")
        assert declined.exit_code == 1 and declined.output.rstrip().endswith("Aborted."), declined.output
    listed = runner.invoke(app, ["gallery", "list", "--json", "--db", db])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["people"]
    tenants = runner.invoke(app, ["admin", "tenant", "list", "--db", db])
    assert "acme" in tenants.output, tenants.output
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "answered no" in readme and "`--yes`" in readme


def test_two_cuts_at_once_are_refused_before_any_work(tmp_path):
    # --far with --fpir was decided by the far alone, silently (the first of threshold, far, fpir)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"never read")
    for args in (["gallery", "search", "c", str(photo), "--far", "1e-3", "--fpir", "1e-2"],
                 ["gallery", "search", "c", str(photo), "--threshold", "0.5", "--far", "1e-3"],
                 ["gallery", "search", "c", str(photo), "--rank-only", "--fpir", "1e-2"],
                 ["batch", "search", str(tmp_path), "c", "--out", str(tmp_path / "o"), "--threshold", "0.5",
                  "--fpir", "1e-2"],
                 ["remote", "search", "c", str(photo), "--far", "1e-3", "--fpir", "1e-2", "--server",
                  "http://127.0.0.1:9", "--key", "fa_x"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert len(_error_lines(result.output)) == 1 and "give one of them" in result.output, (args, result.output)
        assert "images" not in result.output  # no progress bar first
    assert not (tmp_path / "o").exists()


def _analysed(monkeypatch) -> list[object]:
    """The images the engine analyses from now on (FaceAnalyzer.largest and .analyze, still run)."""
    from faceatlas.engine import FaceAnalyzer

    analysed: list[object] = []
    largest, analyze = FaceAnalyzer.largest, FaceAnalyzer.analyze
    monkeypatch.setattr(FaceAnalyzer, "largest", lambda self, image, **kw: analysed.append(image)
                        or largest(self, image, **kw))
    monkeypatch.setattr(FaceAnalyzer, "analyze", lambda self, image, **kw: analysed.append(image)
                        or analyze(self, image, **kw))
    return analysed


def _refused_first(args: list[str], said: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output)
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1 and "validation_error" in lines[0] and said in lines[0], (args, result.output)


def test_compare_at_a_far_not_calibrated_is_refused_before_any_image_is_analysed(examples, tmp_path, monkeypatch):
    """`compare a b --far 0.5` (a rate the pack's calibration has no threshold for) was refused only
    after both images were analysed (a missing second image was the error said); as the API's
    compare, the rate is checked first."""
    analysed = _analysed(monkeypatch)
    _refused_first(["compare", str(examples / "tests/test_images/obama.jpg"), str(tmp_path / "missing.jpg"),
                    "-p", "scrfd-mbf", "--far", "0.5"], "far 0.5 is not one of the calibrated rates")
    assert analysed == []


def test_a_far_or_k_a_search_cannot_take_is_refused_before_any_image_is_analysed(examples, tmp_path, monkeypatch):
    """`gallery search c img --far 0.5` was refused only after the query was analysed; `-k 1000` was
    taken (the API allows 1 to 100), `-k 0` refused after the analysis. As the API, they are refused
    first: a missing query image would otherwise be the error, and no face is analysed."""
    from faceatlas.gallery import SEARCH_K_MAX

    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", *db]).exit_code == 0
    analysed = _analysed(monkeypatch)
    search = ["gallery", "search", "people", str(tmp_path / "missing.jpg"), *db]
    k_is = f"k is the number of subjects to return, a whole number from 1 to {SEARCH_K_MAX}, not"
    for args, said in (([*search, "--far", "0.5"], "far 0.5 is not one of the calibrated rates"),
                       ([*search, "--all-faces", "--far", "0.5"], "far 0.5 is not one of the calibrated rates"),
                       ([*search, "-k", str(SEARCH_K_MAX + 1)], f"{k_is} {SEARCH_K_MAX + 1}"),
                       ([*search, "-k", "0"], f"{k_is} 0")):
        _refused_first(args, said)
    assert analysed == []
    photo = examples / "tests/test_images/obama.jpg"
    answered = runner.invoke(app, ["gallery", "search", "people", str(photo), "-k", str(SEARCH_K_MAX), "--json", *db])
    assert answered.exit_code == 0 and json.loads(answered.stdout)["faces_in_image"] == 1, answered.output


def test_a_tenant_no_one_could_name_again_is_refused_before_a_database_is_made(tmp_path):
    # `--tenant ""` (an unset shell variable) kept collections in a blank tenant space
    database = tmp_path / "g.db"
    for tenant in ("", "  ", "x" * 201, "a\tb"):
        result = runner.invoke(app, ["gallery", "create", "c", "--tenant", tenant, "--db", f"sqlite:///{database}"])
        assert result.exit_code == 2, (tenant, result.output)
        assert _error_lines(result.output) == [line for line in result.output.splitlines() if "tenant space" in line]
        assert len(_error_lines(result.output)) == 1, result.output
    assert not database.exists()


def test_a_photo_whose_name_is_not_utf8_is_enrolled(tmp_path, shared):
    """`gallery enrol C 'weird/caf\\xe9.jpg'` failed with "'utf-8' codec can't encode character"
    without naming the file, midway through a tree of people."""
    folder = tmp_path / "weird"
    folder.mkdir()
    photo = shared / "data" / "face_recognition_examples" / "examples" / "obama_small.jpg"
    odd = os.fsencode(str(folder)) + b"/caf\xe9.jpg"
    with open(odd, "wb") as handle:
        handle.write(photo.read_bytes())
    database = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "c", "--db", database, "--pack", "scrfd-mbf"]).exit_code == 0
    result = runner.invoke(app, ["gallery", "enrol", "c", str(folder), "--subject", "obama", "--db", database])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_json_output_does_not_skip_the_question_before_deleting(tmp_path):
    """`gallery delete Staff --json` deleted without asking and without --yes."""
    database = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "c", "--db", database, "-p", "scrfd-mbf"]).exit_code == 0
    refused = runner.invoke(app, ["gallery", "delete", "c", "--db", database, "--json"])
    assert refused.exit_code == 2 and json.loads(refused.stdout)["error"] == "usage", refused.output
    assert "give --yes" in json.loads(refused.stdout)["message"]
    listed = runner.invoke(app, ["gallery", "list", "--db", database, "--json"])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["c"]
    done = runner.invoke(app, ["gallery", "delete", "c", "--db", database, "--json", "--yes"])
    assert done.exit_code == 0 and json.loads(done.stdout)["deleted"] == "collection 'c'"


def test_enrol_run_again_skips_what_it_enrolled_and_checks_every_folder_name_first(tmp_path, shared):
    """A second `gallery enrol` of the same tree enrolled every face twice (and a run again after a
    Ctrl-C duplicated what the first had done); a folder 'Zoe Smith' was refused after the folders
    before it were enrolled."""
    photos = shared / "data" / "face_recognition_examples" / "examples"
    tree = tmp_path / "people"
    for person, photo in (("Bob", "obama_small.jpg"), ("Zed", "lin-manuel-miranda.png")):
        (tree / person).mkdir(parents=True)
        (tree / person / photo).write_bytes((photos / photo).read_bytes())
    database = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "c", "--db", database, "-p", "scrfd-mbf"]).exit_code == 0

    def enrol(*extra: str) -> dict:
        result = runner.invoke(app, ["gallery", "enrol", "c", str(tree), "--db", database, "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert (enrol()["added"], enrol()["added"], enrol()["skipped"]) == (2, 0, 2)
    assert enrol("--again")["added"] == 2
    (tree / "Zoe Smith").mkdir()
    (tree / "Zoe Smith" / "z.jpg").write_bytes((photos / "obama_small.jpg").read_bytes())
    (tree / "Ann").mkdir()
    (tree / "Ann" / "a.jpg").write_bytes((photos / "obama_small.jpg").read_bytes())
    refused = runner.invoke(app, ["gallery", "enrol", "c", str(tree), "--db", database])
    assert refused.exit_code == 2 and "Zoe Smith" in refused.output
    listed = runner.invoke(app, ["gallery", "list", "--db", database, "--json"])
    assert json.loads(listed.stdout)[0]["subjects"] == 2  # Ann, before Zoe, was not enrolled


def test_a_read_of_an_empty_or_foreign_file_or_an_unknown_url_is_one_line_and_writes_nothing(tmp_path):
    """`counts --db` on an empty file made it an SQLite database (a read that wrote); `--db notaurl://x`
    was a NoSuchModuleError traceback."""
    empty, photo = tmp_path / "empty.db", tmp_path / "photo.jpg"
    empty.write_bytes(b"")
    photo.write_bytes(b"\xff\xd8\xff\xe0 not a database")
    for args, says in ((["counts", "cam", "--db", f"sqlite:///{empty}"], "an empty file"),
                       (["gallery", "list", "--db", str(photo)], "not an SQLite database"),
                       (["counts", "cam", "--db", "notaurl://x"], "no database URL"),
                       # a scheme whose driver is not installed was a ModuleNotFoundError traceback
                       (["counts", "cam", "--db", "mysql://u@127.0.0.1:1/x"], "no database URL this install opens"),
                       # a port that is no number was a ValueError traceback (its password never said)
                       (["admin", "tenant", "list", "--db", "postgresql+psycopg://fa:pw1@127.0.0.1:notaport/x"],
                        "fa:***@127.0.0.1:notaport/x is no database URL"),
                       (["admin", "tenant", "list", "--db", "postgresql+psycopg://fa:pw1/@x@127.0.0.1:54x/x"],
                        "fa:***@127.0.0.1:54x/x is no database URL")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output and "pw1" not in result.output, result.output
        assert len(_error_lines(result.output)) == 1 and says in result.output, result.output
    assert empty.stat().st_size == 0 and photo.read_bytes().endswith(b"not a database")


def test_ctrl_c_while_the_command_loads_ends_with_130_not_a_traceback(monkeypatch):
    """An interrupt during the first second or two (the CLI's imports) printed a KeyboardInterrupt
    traceback: the console script imported the CLI before any handler could run."""
    import types

    import pytest

    from faceatlas.cli import run

    class Loading(types.ModuleType):
        def __getattr__(self, name: str):
            raise KeyboardInterrupt  # as a Ctrl-C inside `from faceatlas.cli.main import app`

    monkeypatch.setitem(sys.modules, "faceatlas.cli.main", Loading("faceatlas.cli.main"))
    import signal

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as ended:
            run()
    finally:  # run() is a process's entry: it leaves both signals ignored for the exit, not for this test run
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert ended.value.code == 130


def test_eval_json_errors_are_one_json_object_on_stdout(shared, tmp_path):
    """`eval lfw|folder --json` said their errors in plain text on stderr, with nothing on stdout."""
    lfw = shared / "data" / "lfw"
    commands = [
        ["eval", "lfw", "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw / "images"), "-p", "nosuch", "--json"],
        ["eval", "folder", str(tmp_path), "-p", "nosuch", "--json"],
        ["eval", "folder", str(tmp_path), "-p", "scrfd-mbf", "--json"],  # an empty folder: nothing to measure
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        error = json.loads(result.stdout)
        assert set(error) == {"error", "message"}, result.stdout
    assert json.loads(runner.invoke(app, commands[0]).stdout)["error"] == "unknown_pack"


def test_a_kill_as_a_finished_command_exits_leaves_its_status_and_its_output() -> None:
    """SIGTERM acts as Ctrl-C while a command runs; once it is done (an enrolment saved, its
    summary printed), a kill during the exit must not turn the status into 143 (or 130) and lose the
    buffered summary: a script would take the saved enrolment for undone and enrol again."""
    late_kill = ("import os, signal, sys\nfrom faceatlas.cli import run\nsys.argv = ['faceatlas', 'models', 'list']\n"
                 "try:\n    run()\nfinally:\n    os.kill(os.getpid(), signal.SIGTERM)\n"
                 "    os.kill(os.getpid(), signal.SIGINT)\n    print('exited after the kills', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", late_kill], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scrfd-mbf" in done.stdout and done.stdout.rstrip().endswith("exited after the kills")
    assert "Traceback" not in done.stderr


def test_a_stopped_enrolment_says_how_far_it_got_and_that_it_is_kept(shared: Path, tmp_path: Path) -> None:
    """A kill (or Ctrl-C) during a folder's enrolment ended with the progress bar alone: nothing said
    what was kept or how to go on. Now one line does, and the same command again continues."""
    import signal
    import sqlite3
    import time

    lfw = shared / "data" / "lfw" / "images"
    people = tmp_path / "people"
    people.mkdir()
    for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:40]:
        (people / person.name).symlink_to(person, target_is_directory=True)
    db = tmp_path / "g.db"
    env = {**os.environ, "FACEATLAS_THREADS": "1"}
    command = [sys.executable, "-m", "faceatlas.cli", "gallery"]
    subprocess.run([*command, "create", "people", "-p", "scrfd-mbf", "--db", str(db)], check=True, env=env,
                   capture_output=True, timeout=120)
    enrolling = subprocess.Popen([*command, "enrol", "people", str(people), "--db", str(db)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    faces = 0
    while faces == 0 and time.monotonic() < deadline and enrolling.poll() is None:
        time.sleep(0.2)
        with sqlite3.connect(db) as connection:
            faces = connection.execute("SELECT count(*) FROM faces").fetchone()[0]
    enrolling.send_signal(signal.SIGTERM)
    out, errors = enrolling.communicate(timeout=60)
    assert faces > 0 and enrolling.returncode == 130, (enrolling.returncode, errors[-2000:])
    assert "interrupted after " in errors and "the faces enrolled before the stop are kept" in errors
    again = subprocess.run([*command, "enrol", "people", str(people), "--db", str(db)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode in (0, 1) and "skipped (enrolled to their subject before" in " ".join(again.stdout.split())


def test_eval_lfw_output_that_cannot_hold_a_calibration_is_refused_before_the_work(shared, tmp_path):
    """`eval lfw --output -` wrote a file named '-', and a folder was a traceback after the evaluation."""
    lfw = shared / "data" / "lfw"
    base = ["eval", "lfw", "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw / "images"), "-p", "nosuch"]
    work = tmp_path / "work"
    work.mkdir()
    here = os.getcwd()
    os.chdir(work)
    try:
        dash = runner.invoke(app, [*base, "--output", "-"])
    finally:
        os.chdir(here)
    assert dash.exit_code == 2
    assert "error (validation_error)" in dash.stderr and "'-' (stdout)" in dash.stderr, dash.stderr
    assert not any(work.iterdir())
    folder = runner.invoke(app, [*base, "--output", str(tmp_path)])
    assert folder.exit_code == 2
    assert f"{tmp_path} is a folder" in folder.stderr.replace("\n", ""), folder.stderr


def test_an_empty_subject_never_deletes_the_whole_collection(tmp_path):
    """`gallery delete people -s "" -y` (a script's unset variable) deleted the whole collection: the
    empty subject read as no subject. It is refused as `enrol -s ""` refuses it; nothing is deleted."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "people", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    for subject in ("", "  "):
        for extra in ([], ["--json"]):
            result = runner.invoke(app, ["gallery", "delete", "people", "-s", subject, "-y", "--db", db, *extra])
            assert result.exit_code == 2, result.output
            said = json.loads(result.stdout)["error"] if extra else _error_lines(result.output)[0]
            assert "validation_error" in said, result.output
    listed = runner.invoke(app, ["gallery", "list", "--json", "--db", db])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["people"]


def test_an_empty_database_option_is_refused_not_read_as_the_default(tmp_path, monkeypatch):
    """`--db "$DB"` with DB unset used the default database (~/.local/share/faceatlas): `gallery create`
    wrote there, and `admin tenant delete` deleted there. Every command's --db refuses it."""
    default = tmp_path / "default.db"
    monkeypatch.setenv("FACEATLAS_DATABASE_URL", f"sqlite:///{default}")
    commands = (["gallery", "create", "c", "-p", "scrfd-mbf"], ["gallery", "list"], ["gallery", "delete", "c", "-y"],
                ["gallery", "import", str(tmp_path / "x.parquet")], ["album", "people"],
                ["admin", "tenant", "list"], ["admin", "tenant", "delete", "acme", "-y"], ["counts", "cam"],
                ["batch", "search", str(tmp_path), "c", "--out", str(tmp_path / "out")])
    for command in commands:
        for empty in ("", " "):
            result = runner.invoke(app, [*command, "--db", empty])
            assert result.exit_code == 2 and "Traceback" not in result.output, (command, result.output)
            assert _error_lines(result.output) == [line for line in result.output.splitlines() if line.strip()]
            assert "error (validation_error): --db is empty" in result.output, (command, result.output)
    json_result = runner.invoke(app, ["gallery", "list", "--db", "", "--json"])
    assert json.loads(json_result.stdout)["error"] == "validation_error"
    assert not default.exists() and not (tmp_path / "out").exists()


def test_a_page_size_is_bounded_as_the_api_bounds_it(tmp_path):
    """`gallery list C --limit 9223372036854775807` was an OverflowError traceback (SQLite) or
    database_unavailable (PostgreSQL); the API takes 1 to 1000."""
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    for limit in ("9223372036854775807", "1001", "0", "-1"):
        for collection in (["c"], []):
            result = runner.invoke(app, ["gallery", "list", *collection, "--limit", limit, "--db", db])
            assert result.exit_code == 2 and "Traceback" not in result.output, result.output
            assert _error_lines(result.output)[0].startswith("error (validation_error): limit"), result.output
    assert runner.invoke(app, ["gallery", "list", "c", "--limit", "1000", "--db", db]).exit_code == 0


def test_names_are_shown_as_written_not_read_as_markup(tmp_path, examples):
    """A subject named `[/]` (the API takes any name) made `gallery list C` and `gallery search` fail
    with a MarkupError; `[red]x[/red]` was shown red, as `x`."""
    from faceatlas.gallery import Gallery

    db = tmp_path / "g.db"
    photo = examples / "examples" / "obama_small.jpg"
    assert runner.invoke(app, ["gallery", "create", "m", "-p", "scrfd-mbf", "--db", str(db)]).exit_code == 0
    names = {"mk": "[/]", "red": "[red]x[/red]", "bold": "[bold]b"}
    for subject, name in names.items():
        enrolled = runner.invoke(app, ["gallery", "enrol", "m", str(photo), "-s", subject, "--name", name,
                                       "--db", str(db)])
        assert enrolled.exit_code == 0, enrolled.output
    with Gallery.open(str(db)) as gallery:
        assert {s.name for s in gallery.list_subjects("m").items} == set(names.values())
    wide = {"COLUMNS": "200"}
    listed = runner.invoke(app, ["gallery", "list", "m", "--db", str(db)], env=wide)
    searched = runner.invoke(app, ["gallery", "search", "m", str(photo), "--rank-only", "--db", str(db)], env=wide)
    renamed = runner.invoke(app, ["gallery", "rename", "m", "red", "--name", "[/red]", "--db", str(db)], env=wide)
    for result in (listed, searched):
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        assert all(name in result.output for name in names.values()), result.output
    assert renamed.exit_code == 0 and "([/red])" in renamed.output, renamed.output


def test_enrol_with_a_name_renames_an_existing_subject_as_the_console_does(tmp_path, examples):
    """`gallery enrol -s alice --name X` gave the name to a new subject only: an existing alice kept
    her name without a word, where the console's enrol form renamed her. One rule in the gallery's
    enrolment now: the name given renames, and the run says so; no --name keeps the name held."""
    from faceatlas.gallery import Gallery

    db = ["--db", str(tmp_path / "g.db")]
    photos = examples / "tests" / "test_images"
    assert runner.invoke(app, ["gallery", "create", "m", "-p", "scrfd-mbf", *db]).exit_code == 0
    first = runner.invoke(app, ["gallery", "enrol", "m", str(photos / "obama.jpg"), "-s", "alice", "--name",
                                "Alice A", *db])
    assert first.exit_code == 0 and "renamed" not in first.output, first.output
    again = runner.invoke(app, ["gallery", "enrol", "m", str(photos / "obama2.jpg"), "-s", "alice", "--name",
                                "Alice B", *db, "--json"])
    assert again.exit_code == 0, again.output
    with Gallery.open(str(tmp_path / "g.db")) as gallery:
        assert gallery.get_subject("m", "alice").name == "Alice B"  # it stayed "Alice A"
    assert json.loads(again.stdout)["renamed"] == ["alice"]
    worded = runner.invoke(app, ["gallery", "enrol", "m", str(photos / "obama3.jpg"), "-s", "alice", "--name",
                                 "Alice C", *db], env={"COLUMNS": "200"})
    assert worded.exit_code == 0 and "renamed alice to 'Alice C'" in worded.output, worded.output
    kept = runner.invoke(app, ["gallery", "enrol", "m", str(photos / "obama.jpg"), "-s", "alice", "--again", *db])
    assert kept.exit_code == 0 and "renamed" not in kept.output, kept.output
    with Gallery.open(str(tmp_path / "g.db")) as gallery:
        alice = gallery.get_subject("m", "alice")
    assert alice.name == "Alice C" and alice.faces == 4
    # a run again over photos enrolled before (all skipped) with a name: renamed all the same (it was kept)
    skipped = runner.invoke(app, ["gallery", "enrol", "m", str(photos / "obama.jpg"), "-s", "alice", "--name",
                                  "Alice D", *db], env={"COLUMNS": "200"})
    assert skipped.exit_code == 0 and "renamed alice to 'Alice D'" in skipped.output, skipped.output
    with Gallery.open(str(tmp_path / "g.db")) as gallery:
        alice = gallery.get_subject("m", "alice")
    assert alice.name == "Alice D" and alice.faces == 4


def test_an_export_too_deep_or_holding_nul_is_refused_in_one_line(tmp_path):
    """An export whose header nests 100,000 levels was a RecursionError traceback (exit 1); a NUL in
    a face's source was `database_unavailable` on PostgreSQL and stored on SQLite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from faceatlas.engine import get_pack
    from faceatlas.gallery import Gallery

    db, path = tmp_path / "g.db", tmp_path / "c.parquet"
    with Gallery.open(str(db)) as gallery:
        gallery.create_collection("c", "scrfd-mbf")
        gallery.add_embeddings("c", "ada", np.ones((1, 128)), recognizer_id=get_pack("scrfd-mbf").recognizer_id,
                               sources=["ada.jpg"])
        gallery.export("c", path)
    table = pq.read_table(path)
    deep = tmp_path / "deep.parquet"
    pq.write_table(table.replace_schema_metadata({b"faceatlas.gallery": b"[" * 100_000 + b"]" * 100_000}), deep)
    nul = tmp_path / "nul.parquet"
    sources = table.column("source").to_pylist()
    pq.write_table(table.set_column(table.schema.get_field_index("source"), "source",
                                    pa.array(["a\x00b"] * len(sources), pa.string())), nul)
    for file, code in ((deep, "bad_request"), (nul, "validation_error")):
        result = runner.invoke(app, ["gallery", "import", str(file), "--name", "copy", "--db", str(db)])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert _error_lines(result.output)[0].startswith(f"error ({code})"), result.output
    listed = runner.invoke(app, ["gallery", "list", "--json", "--db", str(db)])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["c"]


def test_a_failed_gallery_import_makes_no_database(tmp_path):
    """`gallery import nope.parquet --db .../db3/x.db` said "no such file" (exit 2) but made db3/ and
    x.db (a file that is no Parquet export too): the file is checked before the database is opened."""
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("not parquet")
    for file, said in ((tmp_path / "nope.parquet", "no such file"), (not_parquet, "is not a FaceAtlas collection")):
        folder = tmp_path / "db3"
        result = runner.invoke(app, ["gallery", "import", str(file), "--db", f"sqlite:///{folder / 'x.db'}"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        code = "file_not_found" if said == "no such file" else "bad_request"  # as every command's missing file
        assert _error_lines(result.output)[0].startswith(f"error ({code})") and said in result.output, \
            result.output
        assert not folder.exists(), sorted(p.name for p in folder.iterdir())
        as_json = runner.invoke(app, ["gallery", "import", str(file), "--db", str(folder / "x.db"), "--json"])
        assert as_json.exit_code == 2 and json.loads(as_json.stdout)["error"] == code, as_json.output
        assert not folder.exists()


def test_gallery_import_of_a_folder_says_it_is_a_folder(tmp_path):
    """`gallery import somefolder` said "somefolder: no such file" of a folder that is there."""
    folder = tmp_path / "somefolder"
    folder.mkdir()
    db = tmp_path / "g.db"
    result = runner.invoke(app, ["gallery", "import", str(folder), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error (bad_request): {folder}: a folder, not a Parquet export: give the "
                                     "export's file"), result.output
    assert not db.exists()


def test_a_corrupt_avif_is_one_failed_input_and_the_others_are_kept(examples, tmp_path):
    """A corrupt AVIF (PIL's RuntimeError) was a traceback that lost the other files' results."""
    from PIL import features

    if not features.check_module("avif"):
        pytest.skip("this Pillow decodes no AVIF")
    from tests.bad_images import corrupt_avif

    obama = examples / "tests" / "test_images" / "obama.jpg"
    bad = tmp_path / "bad.avif"
    bad.write_bytes(corrupt_avif(obama))
    result = runner.invoke(app, ["detect", str(obama), str(bad), "-p", "scrfd-mbf", "--json"])
    assert result.exit_code == 1, result.output  # some inputs failed, the others answered
    first, second = json.loads(result.stdout)["results"]
    assert len(first["faces"]) == 1
    assert second["image"] == str(bad) and second["error"] == "invalid_image", second


def test_eval_save_as_a_name_no_calibration_can_have_is_refused_before_the_work(shared, tmp_path):
    """`eval folder|lfw --save-as "my cal"` said the name was invalid only after the whole evaluation
    (minutes): now before anything loads (``-p nosuch`` would be the error otherwise)."""
    lfw = shared / "data" / "lfw"
    for command in (["eval", "lfw", "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw / "images")],
                    ["eval", "folder", str(tmp_path)]):
        result = runner.invoke(app, [*command, "-p", "nosuch", "--save-as", "my cal"])
        assert result.exit_code == 2, result.output
        assert "error (validation_error)" in result.stderr and "invalid calibration name 'my cal'" in result.stderr, \
            result.stderr


def test_detect_never_draws_over_an_input_photo(examples, tmp_path):
    """`detect out/copy.jpg --draw out/copy.jpg` wrote the annotated copy over the photo (through a
    link too): refused before the models load (``-p nosuch`` would be the error otherwise)."""
    photo = tmp_path / "copy.jpg"
    photo.write_bytes((examples / "tests" / "test_images" / "obama.jpg").read_bytes())
    before = photo.read_bytes()
    link = tmp_path / "link.jpg"
    link.symlink_to(photo)
    for draw in (photo, link, tmp_path / "." / "copy.jpg"):
        result = runner.invoke(app, ["detect", str(photo), "--draw", str(draw), "-p", "nosuch"])
        assert result.exit_code == 2, result.output
        stderr = " ".join(result.stderr.split())
        assert "error (validation_error)" in stderr and "is the input image" in stderr, stderr
    assert photo.read_bytes() == before


def test_gallery_refusals_are_error_lines_and_an_export_appears_whole(examples, tmp_path):
    """`gallery reembed` of a collection without crops printed its refusal on stdout (and its report
    with --json); `gallery export` to a missing folder was `error (error): [Errno 2] Failed to open
    local file`; `gallery enrol` into an unknown collection drew its progress bar first."""
    database = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    photo = examples / "tests" / "test_images" / "obama.jpg"
    assert runner.invoke(app, ["gallery", "create", "staff", "-p", "scrfd-mbf", *database]).exit_code == 0
    enrolled = runner.invoke(app, ["gallery", "enrol", "staff", str(photo), "--subject", "obama", *database])
    assert enrolled.exit_code == 0, enrolled.output
    refused = runner.invoke(app, ["gallery", "reembed", "staff", "--pack", "yunet-frfeature", *database])
    assert refused.exit_code == 2 and refused.stdout == "", refused.output
    assert refused.stderr.startswith("error (conflict): not migrated: 1 faces have no stored crop"), refused.stderr
    as_json = runner.invoke(app, ["gallery", "reembed", "staff", "--pack", "yunet-frfeature", *database, "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["error"] == "conflict", as_json.output
    for target, said in ((tmp_path / "missing" / "x.parquet", "no such folder"), (tmp_path, "a folder, not a file")):
        failed = runner.invoke(app, ["gallery", "export", "staff", str(target), *database])
        assert failed.exit_code == 2 and failed.stderr.startswith(f"error (bad_request): {target}: {said}"), \
            failed.output
    written = tmp_path / "staff.parquet"
    assert runner.invoke(app, ["gallery", "export", "staff", str(written), *database]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.db", "staff.parquet"]  # no partial file beside it
    unknown = runner.invoke(app, ["gallery", "enrol", "nosuch", str(photo), "--subject", "x", "-p", "scrfd-mbf",
                                  *database])
    assert unknown.exit_code == 2 and "not_found" in unknown.output and "enrolling" not in unknown.output


def test_models_list_says_nothing_on_stderr(shared):
    """`faceatlas models list` printed face_recognition_models' "pkg_resources is deprecated"
    warning (two lines of another package's source) on every run."""
    done = subprocess.run([sys.executable, "-m", "faceatlas.cli", "models", "list", "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0 and json.loads(done.stdout), done.stderr
    assert done.stderr == "", done.stderr


def test_an_index_folder_that_is_a_file_is_refused_before_anything_is_enrolled(tmp_path, shared, monkeypatch):
    """FACEATLAS_INDEX_DIR naming a file: `gallery create` and `enrol` went on (the faces in the
    database, no index written) and the first search failed with "error (error): ...: file exists"."""
    a_file = tmp_path / "indexes"
    a_file.write_text("not a folder")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(a_file))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    created = CliRunner().invoke(app, ["gallery", "create", "c", "--pack", "scrfd-mbf", "--db", db])
    assert created.exit_code == 2, created.output
    assert created.output.strip().splitlines()[-1] == (
        f"error (bad_request): the index folder {a_file} is a file, not a folder: give the folder of the "
        "gallery's indexes")
    monkeypatch.setenv("FACEATLAS_INDEX_DIR", str(a_file / "below"))
    under = CliRunner().invoke(app, ["gallery", "list", "--db", db])
    assert under.exit_code == 2 and f"is under {a_file}, a file, not a folder" in under.output, under.output


def test_gallery_enrol_records_a_photo_by_the_path_it_was_reached_by_as_batch_enrol_does(tmp_path, shared):
    """`gallery enrol` recorded a linked photo by its target, `batch enrol` by the link (the path the
    user gave): one photo had two names, and neither door skipped what the other had enrolled."""
    photo = sorted((shared / "data" / "lfw" / "images" / "George_W_Bush").glob("*.jpg"))[0]
    person = tmp_path / "people" / "george"
    person.mkdir(parents=True)
    (person / "one.jpg").symlink_to(photo)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    enrolled = runner.invoke(app, ["gallery", "enrol", "c", str(tmp_path / "people" / "." / "george" / ".."),
                                   "--db", db])
    assert enrolled.exit_code == 0, enrolled.output
    from faceatlas.gallery import Gallery

    with Gallery.open(db) as gallery:
        assert [f.source for f in gallery.list_faces("c").items] == [str(person / "one.jpg")]


def test_the_operator_s_default_space_is_no_service_tenant(tmp_path):
    """A probe created the service tenant `default`: its key was served the events of every `watch`
    run without a tenant and the stores opened without one (it repriced a store's product to one
    cent), and `admin tenant delete default` erased them all. The id is reserved."""
    db = str(tmp_path / "g.db")
    for tenant in ("default", "Default", "DEFAULT"):
        refused = runner.invoke(app, ["admin", "tenant", "create", tenant, "--db", db])
        assert refused.exit_code == 2, refused.output
        assert refused.output.strip() == (
            f"error (validation_error): tenant id '{tenant}' is reserved: 'default' is the operator's own space "
            "(the CLI's galleries, `watch` runs and stores that name no tenant); choose another id")
    assert runner.invoke(app, ["admin", "tenant", "create", "default-shop", "--db", db]).exit_code == 0


def test_a_ctrl_c_that_python_swallows_in_a_finalizer_is_delivered_again(monkeypatch):
    """`album scan` stopped by SIGTERM ran to its end, status 0, when the interrupt landed in
    SQLAlchemy's weakref cleanup ("Exception ignored in ... KeyboardInterrupt"): the command's
    unraisable hook sends it again, and it is raised in the command's own code."""
    import sys
    import time
    import weakref

    from faceatlas.cli import _interrupt_again

    monkeypatch.setattr(sys, "unraisablehook", _interrupt_again(sys.unraisablehook))

    class Held:
        pass

    def cleanup(_ref: object) -> None:
        raise KeyboardInterrupt

    held = Held()
    ref = weakref.ref(held, cleanup)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        del held
        while time.monotonic() - began < 5:
            pass
    assert ref() is None and time.monotonic() - began < 4  # raised at once, not after the 5 s loop


def test_gallery_export_writes_only_a_parquet_file(tmp_path, shared):
    """`gallery export c photo.png` replaced the user's photo with Parquet, whatever its suffix: a path
    not ending in .parquet is refused in one line, the file there as it was; an earlier export is
    replaced."""
    photo = sorted((shared / "data" / "lfw" / "images" / "Serena_Williams").glob("*.jpg"))[0]
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", *db]).exit_code == 0
    assert runner.invoke(app, ["gallery", "enrol", "c", str(photo), "-s", "serena", *db]).exit_code == 0
    kept = tmp_path / "serena.png"
    cv2.imwrite(str(kept), cv2.imread(str(photo)))
    before = kept.read_bytes()
    for target in (kept, tmp_path / "serena.jpg", tmp_path / "export"):
        refused = runner.invoke(app, ["gallery", "export", "c", str(target), *db])
        assert refused.exit_code == 2, refused.output
        assert refused.output.strip() == (f"error (validation_error): {target}: an export is a Parquet file: give "
                                          "a path ending in .parquet (a file already there is replaced only when "
                                          "it is one)"), refused.output
    assert kept.read_bytes() == before and not (tmp_path / "export").exists()
    written = tmp_path / "c.parquet"
    for _ in range(2):  # the second replaces the first
        done = runner.invoke(app, ["gallery", "export", "c", str(written), *db, "--json"])
        assert done.exit_code == 0 and json.loads(done.stdout)["faces"] == 1, done.output


def test_gallery_export_replaces_only_an_earlier_export(tmp_path, shared):
    """`gallery export c fake.parquet` replaced whatever file ended in .parquet: a JPEG named so, a
    user's own Parquet file, a link (by a regular file). Each is refused in one line naming it, left as
    it was; an earlier export is still replaced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    photo = sorted((shared / "data" / "lfw" / "images" / "Serena_Williams").glob("*.jpg"))[0]
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", *db]).exit_code == 0
    assert runner.invoke(app, ["gallery", "enrol", "c", str(photo), "-s", "serena", *db]).exit_code == 0
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(photo.read_bytes())
    own = tmp_path / "own.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), own)
    target = tmp_path / "target.parquet"
    target.write_bytes(b"the link's target")
    link = tmp_path / "link.parquet"
    link.symlink_to(target)
    before = {path: path.read_bytes() for path in (fake, own, target)}
    for path, said in ((fake, "is not a FaceAtlas export"), (own, "is not a FaceAtlas export"),
                       (link, "is a link, not a FaceAtlas export")):
        refused = runner.invoke(app, ["gallery", "export", "c", str(path), *db])
        assert refused.exit_code == 2, refused.output
        assert refused.output.strip() == (f"error (validation_error): {path} {said}: an export replaces only an "
                                          "earlier export, so nothing was written (give another path, or move "
                                          "that file away first)"), refused.output
    assert {path: path.read_bytes() for path in before} == before and link.is_symlink()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    written = tmp_path / "c.parquet"
    for _ in range(2):  # an earlier export is replaced
        done = runner.invoke(app, ["gallery", "export", "c", str(written), *db])
        assert done.exit_code == 0, done.output


def test_the_gallery_commands_leave_an_app_s_space_to_its_app(tmp_path, shared):
    """`gallery delete faces --subject p5 --tenant app:albums:default:default --yes` deleted an album's
    person (its next `album recluster` failed not_found), `gallery enrol --tenant app:albums:...` put
    foreign faces in it, `gallery list` showed it. An app's space is refused by every gallery command,
    naming the app's own command; the space is left as it was."""
    from faceatlas.engine import FaceAnalyzer
    from faceatlas.gallery import Gallery

    photos = sorted((shared / "data" / "lfw" / "images" / "Colin_Powell").glob("*.jpg"))[:2]
    database = f"sqlite:///{tmp_path / 'g.db'}"
    analyzer = FaceAnalyzer("scrfd-mbf")
    spaces = {"app:albums:default:default": "an album's gallery space, kept by the app: use `faceatlas album ...`",
              # `faceatlas retail` has only `retail run`: a store's members are the API's or the console's
              "app:retail:shop1": "a store's gallery space, kept by the app: use the store's members API "
                                  "(/v1/retail/stores/{store}/members) or the console's store page",
              "app:later:x": "an app's gallery space, kept by the app: use that app's own commands"}
    with Gallery.open(database, create=True) as gallery:
        for space in spaces:
            held = gallery.for_tenant(space)
            held.create_collection("faces", analyzer)
            assert held.enrol_images("faces", "p5", [str(photos[0])], analyzer).added
    commands = [["list"], ["list", "faces"], ["delete", "faces", "--subject", "p5", "--yes"],
                ["delete", "faces", "--yes"], ["enrol", "faces", str(photos[1]), "--subject", "p5"],
                ["create", "other"], ["rename", "faces", "p5", "p6"], ["export", "faces", str(tmp_path / "f.parquet")],
                ["search", "faces", str(photos[1])], ["reembed", "faces", "--pack", "dlib"]]
    for space, said in spaces.items():
        for command in commands:
            refused = runner.invoke(app, ["gallery", *command, "--db", database, "--tenant", space])
            assert refused.exit_code == 2, (command, refused.output)
            assert refused.output.strip() == f"error (validation_error): {space} is {said}", (command, refused.output)
    with Gallery.open(database) as gallery:
        for space in spaces:
            held = gallery.for_tenant(space)
            assert [c.name for c in held.list_collections()] == ["faces"]
            assert [(s.external_id, s.faces) for s in held.list_subjects("faces").items] == [("p5", 1)]
    assert not (tmp_path / "f.parquet").exists()
    served = runner.invoke(app, ["gallery", "list", "--db", database, "--tenant", "svc:acme", "--json"])
    assert served.exit_code == 0 and json.loads(served.stdout) == [], served.output  # a service tenant's space is


def test_gallery_enrol_refuses_its_arguments_before_drawing_its_progress(tmp_path, shared):
    """`gallery enrol DIR --subject "  "` drew "enrolling 0/11" before its validation error (the same with
    --min-quality 2 and a --name of two lines): every argument is checked before the bar."""
    folder = shared / "data" / "lfw" / "images" / "George_W_Bush"
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", *db]).exit_code == 0
    for wrong, said in ((["--subject", "  "], "a subject id is 1 to 200 characters"),
                        (["--subject", "bush", "--min-quality", "2"], "min_quality is a face quality from 0 to 1"),
                        (["--subject", "bush", "--name", "George\nBush"], "a name is at most 300 characters")):
        refused = runner.invoke(app, ["gallery", "enrol", "c", str(folder), *wrong, *db])
        assert refused.exit_code == 2, refused.output
        assert "enrolling" not in refused.output and refused.stdout == "", refused.output
        lines = refused.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error (validation_error): {said}"), refused.output
    listed = runner.invoke(app, ["gallery", "list", "--json", *db])
    assert json.loads(listed.stdout)[0]["faces"] == 0


@pytest.mark.parametrize("command", [
    ["detect", "{missing}.jpg"],
    ["liveness", "{missing}.jpg"],
    ["compare", "{photo}", "{missing}.jpg"],
    ["gallery", "enrol", "staff", "{missing}.jpg", "--subject", "x", "--db", "{tmp}/g.db"],
    ["kyc", "verify", "-d", "{missing}.jpg", "-s", "{missing}.mp4", "-c", "blink", "--db", "{tmp}/k.db"],
    ["eval", "folder", "{missing}"],
    ["eval", "lfw", "--pairs", "{missing}.txt", "--images", "{tmp}"],
    ["batch", "embed", "{missing}", "-o", "{tmp}/out"],
    ["album", "scan", "{missing}", "--db", "{tmp}/a.db"],
    ["watch", "{missing}.mp4"],
    ["drive", "{missing}.mp4"],
    ["retail", "run", "{missing}.yaml"],
    ["remote", "detect", "{missing}.jpg", "--server", "http://127.0.0.1:9", "--key", "fa_x"],
])
def test_a_missing_input_file_is_file_not_found_in_every_command(command, tmp_path, examples):
    """A file named that is not there was `invalid_image` (detect, compare, remote), `bad_request`
    (gallery enrol, watch, kyc, eval, drive, retail), `validation_error` (batch) or `usage` (album
    scan, typer's exists=True) by command: a script could not tell it by one code. Now every command
    says `file_not_found`, naming the file, exit 2."""
    given = {"missing": str(tmp_path / "nosuch"), "photo": str(examples / "tests/test_images/obama.jpg"),
             "tmp": str(tmp_path)}
    args = [part.format(**given) for part in command]
    result = runner.invoke(app, args)  # one line on stderr
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.output)
    assert line.startswith("error (file_not_found): ") and str(tmp_path / "nosuch") in line, result.output
    if command[0] in ("watch", "retail"):  # no --json
        return
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    answer = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    error = answer["results"][0] if "results" in answer else answer  # detect, liveness: one result per image
    assert error["error"] == "file_not_found" and str(tmp_path / "nosuch") in error["message"], result.output


def test_detect_reads_an_image_from_standard_input(examples):
    """`detect - < photo.jpg` was `invalid_image: -: no such file`: `-` is standard input's bytes,
    decoded as a file's; `-` for two images is refused (standard input is read once)."""
    photo = examples / "tests/test_images/obama.jpg"
    result = runner.invoke(app, ["detect", "-", "--json"], input=photo.read_bytes())
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)["results"]
    assert found["image"] == "-" and len(found["faces"]) == 1
    compared = runner.invoke(app, ["compare", str(photo), "-", "--json"], input=photo.read_bytes())
    assert compared.exit_code == 0 and json.loads(compared.stdout)["match"] is True, compared.output
    twice = runner.invoke(app, ["compare", "-", "-", "--json"], input=photo.read_bytes())
    assert twice.exit_code == 2 and json.loads(twice.stdout)["error"] == "usage", twice.output


@pytest.mark.parametrize("command", [["detect", "-", "--json"],
                                     ["remote", "detect", "-", "--server", "http://127.0.0.1:9", "--key", "fa_x"]])
def test_an_image_from_a_closed_standard_input_is_one_error(command: list[str]) -> None:
    """`faceatlas remote detect - <&-` was a traceback (Python's sys.stdin is None when the process
    starts with it closed); it is the local `detect -`'s one line, and no connection is tried."""
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", *command], capture_output=True, text=True,
                         timeout=120, preexec_fn=lambda: os.close(0))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    shown = run.stdout + run.stderr
    assert "standard input is closed" in shown and "bad_request" in shown, shown
