"""The engine-level doors (detect, compare, liveness, gallery search) on real photos: the rates and cuts
they take, and how they end when stdout is closed or goes away, or the user stops them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app
from faceatlas.engine import get_pack, load_calibration

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceatlas.cli", *args]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "FACEATLAS_THREADS": "1"}


@pytest.fixture(scope="module")
def pair(examples: Path) -> list[str]:
    images = examples / "tests/test_images"
    return [str(images / "obama.jpg"), str(images / "obama2.jpg")]


@pytest.fixture(scope="module")
def searchable(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``gallery search`` of a collection holding one LFW person, up to the cut options."""
    lfw = Path(os.environ.get("FACEATLAS_SHARED", REPO.parent / "shared")) / "data/lfw/images/Aaron_Peirsol"
    db = f"sqlite:///{tmp_path_factory.mktemp('door') / 'g.db'}"
    assert runner.invoke(app, ["gallery", "create", "c", "-p", "scrfd-mbf", "--db", db]).exit_code == 0
    enrolled = runner.invoke(app, ["gallery", "enrol", "c", str(lfw), "--subject", "aaron", "--db", db])
    assert enrolled.exit_code == 0, enrolled.output
    return ["gallery", "search", "c", str(examples / "tests/test_images/obama.jpg"), "--db", db, "--json"]


def test_a_far_is_one_of_the_calibrated_rates_exactly(pair, searchable):
    """`compare --far 9.6e-4` answered "far": 0.00096 at FAR 1e-3's threshold (looser than asked), 1.4e-4
    was decided at 1e-4's, and 0.0015 was refused as "not 2e-3", 1.5 as "not 2e+00": the rate was
    rounded to one significant digit. Now only a calibrated rate is taken; the refusal names the rate
    as typed and the calibrated ones, alike at every door that takes a far."""
    calibration = load_calibration(get_pack("scrfd-mbf"))
    assert calibration is not None
    rates = ", ".join(sorted(calibration.thresholds, key=float))
    for typed in ("9.6e-4", "1.4e-4", "0.0015", "1.5"):
        for door in (["compare", *pair, "-p", "scrfd-mbf", "--json", "--far", typed], [*searchable, "--far", typed]):
            result = runner.invoke(app, door)
            assert result.exit_code == 2, (door, result.output)
            message = json.loads(result.stdout)["message"]
            if typed == "1.5":  # no rate at all: refused before any photo is read, at both doors
                assert message == "far is a rate between 0 and 1 (both excluded), not 1.5", message
                continue
            assert f"far {float(typed)!r} " in message and rates in message, (door, message)
    for typed, key in (("1e-3", "1e-3"), ("0.0001", "1e-4"), ("1.0000000001e-5", "1e-5")):
        result = runner.invoke(app, ["compare", *pair, "-p", "scrfd-mbf", "--json", "--far", typed])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["threshold"] == round(calibration.thresholds[key], 4)


def test_rank_only_goes_with_no_cut(searchable, fast_analyzer, examples):
    """`gallery search --rank-only --threshold 0.9` (or `--far 1e-4`) applied the cut, rank-only ignored,
    while `--rank-only --fpir 1e-3` was refused: all three are refused alike, by the cut's options (the
    API's search shares them) and by ``Gallery.search`` itself."""
    from faceatlas.errors import InvalidArgument
    from faceatlas.gallery import Gallery

    human = [arg for arg in searchable if arg != "--json"]
    for cut in (["--threshold", "0.9"], ["--far", "1e-4"], ["--fpir", "1e-3"]):
        result = runner.invoke(app, [*human, "--rank-only", *cut])
        assert result.exit_code == 2, (cut, result.output)
        lines = _error_lines(result.output)
        assert len(lines) == 1 and "give one of them" in lines[0] and cut[0][2:] in lines[0], (cut, result.output)
    ranked = runner.invoke(app, [*searchable, "--rank-only"])
    assert ranked.exit_code == 0 and json.loads(ranked.stdout)["results"][0]["matches"], ranked.output
    face = fast_analyzer.analyze_one(examples / "tests/test_images/obama.jpg")
    gallery = Gallery.open(searchable[searchable.index("--db") + 1])
    try:
        for cut in ({"threshold": 0.9}, {"far": 1e-4}):
            with pytest.raises(InvalidArgument, match="give one of them"):
                gallery.search("c", face, rank_only=True, **cut)
        assert gallery.search("c", face, rank_only=True)
    finally:
        gallery.close()


def test_a_closed_stdout_is_said_as_a_full_one(examples, shared, pair):
    """`detect --json photo.jpg >&-` ended 0 and said nothing (Python's sys.stdout is None then, and
    print writes into nothing); compare and liveness too. As `> /dev/full`: one line, exit 2."""
    sample = str(shared / "data/antispoof_samples/image_T1.jpg")
    for args in (["detect", "--json", pair[0]], ["detect", pair[0]], ["compare", "--json", *pair],
                 ["liveness", "--json", sample], ["liveness", sample]):
        command = _cli(*args, "-p", "scrfd-mbf")
        closed = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=True, text=True,
                                env=_env(), timeout=120)
        assert closed.returncode == 2, (args, closed.returncode, closed.stderr)
        lines = _error_lines(closed.stderr)
        assert lines == ["error (bad_request): cannot write the standard output: it is closed"], closed.stderr
        with open("/dev/full", "w") as full:
            refused = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, env=_env(), timeout=120)
        assert refused.returncode == 2 and len(_error_lines(refused.stderr)) == 1, refused.stderr


FULL = "error (bad_request): cannot write the standard output: no space left on device"


def test_every_command_says_a_full_stdout_as_ar_drive_and_batch_do(pair, searchable):
    """`detect a.jpg --json > /dev/full`, `compare a b > /dev/full` and `gallery list > /dev/full`
    said "error (error): [Errno 28] No space left on device" (and, stdout buffered, "Exception
    ignored ... OSError" with status 120 after the table) while ar, drive and batch said the
    documented line: every command says that line now, exit 2, from the group's one handler.
    Buffered as in a shell (the flush fails), and unbuffered (PYTHONUNBUFFERED: the print fails)."""
    db = searchable[searchable.index("--db") + 1]
    buffered = {name: value for name, value in _env().items() if name != "PYTHONUNBUFFERED"}
    detect, compare, listed = ["detect", "--json", pair[0], "-p", "scrfd-mbf"], ["compare", *pair, "-p", "scrfd-mbf"], \
        ["gallery", "list", "--db", db]
    for args, env in [(detect, buffered), (["detect", pair[0], "-p", "scrfd-mbf"], buffered), (compare, buffered),
                      (listed, buffered), (["gallery", "list", "c", "--db", db, "--json"], buffered),
                      (searchable, buffered), *[(args, {**buffered, "PYTHONUNBUFFERED": "1"})
                                                for args in (detect, compare, listed)]]:
        with open("/dev/full", "w") as full:
            run = subprocess.run(_cli(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        assert run.returncode == 2, (args, run.returncode, run.stderr)
        assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, (args, run.stderr)
        assert _error_lines(run.stderr) == [FULL], (args, run.stderr)


def test_the_help_to_a_full_stdout_is_said_as_a_command_s_output_is() -> None:
    """`faceatlas --help > /dev/full` (and `faceatlas` alone, which prints it) ended in a traceback,
    status 1: click prints the help before any command's handler runs."""
    for args in (["--help"], [], ["gallery", "--help"]):
        with open("/dev/full", "w") as full:
            run = subprocess.run(_cli(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=_env(), timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, (args, run.returncode, run.stderr)
        assert _error_lines(run.stderr) == [FULL], (args, run.stderr)


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(shared, tmp_path):
    """`detect a b c d | head -1` ended 1 ("some inputs failed": rich's own broken-pipe exit) with the
    progress stopped at 1/4, and `liveness` the same: as `stdout_gone` says, 141 (128 + SIGPIPE), quietly.
    So do the other layers' commands: `models list`, `album people` and `eval folder` (its table, and
    the blank line the engine's progress bar ends with) ended 1 as well, their consoles rich's own;
    `models info --json` (a ``print``, held in the pipe's buffer) 120, "Exception ignored ...
    BrokenPipeError" as the process exited; `faceatlas --help | head` 1 (the help, before any command)."""
    folder = str(shared / "data/lfw/images/Tony_Blair")
    for command in ("detect", "liveness"):
        child = subprocess.Popen(_cli(command, folder, "-p", "scrfd-mbf"), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=_env())
        assert child.stdout is not None and child.stdout.readline()
        child.stdout.close()  # `| head -1`
        _, errors = child.communicate(timeout=120)
        assert child.returncode == 141, (command, child.returncode, errors)
        assert not _error_lines(errors) and "Traceback" not in errors, errors
    lfw = shared / "data/lfw/images"
    dataset = tmp_path / "dataset"  # two people, two photos each: seconds of `eval folder`
    for person in ("Tony_Blair", "Aaron_Peirsol"):
        (dataset / person).mkdir(parents=True)
        for photo in sorted((lfw / person).iterdir())[:2]:
            (dataset / person / photo.name).symlink_to(photo)
    db = f"sqlite:///{tmp_path / 'album.db'}"
    scanned = runner.invoke(app, ["album", "scan", str(dataset), "--db", db, "-p", "scrfd-mbf"])
    assert scanned.exit_code == 0, scanned.output
    env = {name: value for name, value in _env().items() if name != "PYTHONUNBUFFERED"}  # as a shell runs it
    for args in (["models", "list"], ["models", "info", "scrfd-mbf", "--json"], ["album", "people", "--db", db],
                 ["eval", "folder", str(dataset), "-p", "scrfd-mbf"],
                 ["--help"], ["gallery", "--help"], ["album"]):  # the help, printed by click: 1 before
        # these print all their lines at once, at the end: a reader gone before that (`| true`), not after
        # the first line, is the one they always meet
        read, write = os.pipe()
        os.close(read)
        try:
            child = subprocess.run(_cli(*args), stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        finally:
            os.close(write)
        assert child.returncode == 141, (args, child.returncode, child.stderr)
        assert not _error_lines(child.stderr) and "Traceback" not in child.stderr and "Exception" not in child.stderr, (
            args, child.stderr)


@pytest.fixture(scope="module")
def many_photos(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 300 LFW photos (links): minutes of work, stopped long before its end."""
    folder = tmp_path_factory.mktemp("many")
    lfw = shared / "data/lfw/images"
    photos = sorted(photo for person in sorted(lfw.iterdir()) if person.is_dir() for photo in person.iterdir())
    for photo in photos[:300]:
        (folder / photo.name).symlink_to(photo)
    return folder


@pytest.mark.parametrize("command", ["detect", "liveness"])
def test_a_stopped_run_over_a_folder_says_how_far_it_got(many_photos, command):
    """Ctrl-C (or a kill) during `detect`/`liveness` over a folder: status 130, but no `interrupted after
    N of M` line (as `gallery enrol` says), and `liveness --json` printed nothing at all. Now the line
    comes, and --json prints the results done so far, valid JSON."""
    human = subprocess.Popen(_cli(command, str(many_photos), "-p", "scrfd-mbf"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
    assert human.stdout is not None and human.stdout.readline()  # one image said: the run is under way
    human.send_signal(signal.SIGINT)
    _, errors = human.communicate(timeout=120)
    assert human.returncode == 130, (human.returncode, errors)
    assert "interrupted after " in errors and " of 300 images: the results of those are printed above" in errors

    for wait in (4, 15, 40):  # the models loaded and the run under way (a loaded machine takes longer)
        machine = subprocess.Popen(_cli(command, str(many_photos), "-p", "scrfd-mbf", "--json"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        assert machine.stderr is not None and machine.stderr.readline().startswith("pack scrfd-mbf")
        time.sleep(wait)
        machine.send_signal(signal.SIGTERM)
        out, errors = machine.communicate(timeout=120)
        assert machine.returncode == 130, (machine.returncode, errors)
        said = [line for line in errors.splitlines() if line.startswith("interrupted after ")]
        if said:  # else stopped while the models loaded, before the run: again, later
            break
    assert len(said) == 1 and said[0].endswith(" of 300 images: the results of those are the JSON on stdout"), errors
    answer = json.loads(out)
    assert answer["interrupted"] is True and answer["pack"] == "scrfd-mbf"
    assert said[0].startswith(f"interrupted after {len(answer['results'])} of 300"), (said, len(answer["results"]))


def test_liveness_over_a_folder_shows_its_progress_as_detect_does(shared):
    """`liveness` over a folder showed no progress (and held every result to the end); `detect` shows
    a bar on stderr. Both use the one helper now."""
    folder = str(shared / "data/antispoof_samples")
    for command, what in (("detect", "detecting"), ("liveness", "checking liveness")):
        result = runner.invoke(app, [command, folder, "-p", "scrfd-mbf"])
        assert result.exit_code == 0, result.output
        assert what in result.stderr and "3/3" in result.stderr, (command, result.stderr)


def test_a_stopped_evaluation_says_it_was_interrupted(shared):
    """Ctrl-C (or a kill) during `eval folder` (and `eval lfw`, `kyc verify`: every command without a
    word of its own for it) ended with status 130 and nothing at all on stderr: one line now says so."""
    run = subprocess.Popen(_cli("eval", "folder", str(shared / "data/lfw/images"), "-p", "scrfd-mbf"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert run.stderr is not None and run.stderr.readline().startswith("model pack 'scrfd-mbf'")  # loaded
    time.sleep(3)  # embedding 13,000 photos: minutes from its end
    run.send_signal(signal.SIGTERM)
    out, errors = run.communicate(timeout=120)
    assert run.returncode == 130, (run.returncode, errors)
    assert errors.strip().splitlines()[-1] == "interrupted (Ctrl-C or SIGTERM) before the command's end", errors
    assert out == ""  # no report of a part
