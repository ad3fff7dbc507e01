"""`faceatlas batch` run as a user runs it: the CLI in a process of its own, with its own Ray."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK = "scrfd-mbf"
# as root, a mode-000 folder is listed anyway: without these capabilities it is not
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _people(shared: Path, root: Path, count: int, photos: int) -> list[Path]:
    """``count`` folders of LFW people with ``photos`` photos each, under ``root``."""
    folders = []
    for person in sorted((shared / "data" / "lfw" / "images").glob("A*")):
        if len(folders) == count:
            return folders
        if len(found := sorted(person.glob("*.jpg"))) >= photos:
            (root / person.name).mkdir(parents=True)
            for photo in found[:photos]:
                shutil.copy(photo, root / person.name / photo.name)
            folders.append(root / person.name)
    raise AssertionError(f"LFW has {count} people with {photos} photos")


def _batch(*args: str, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-m", "faceatlas.cli", "batch", *args, "--pack", PACK,
                           "--json"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_small_job_shows_no_ray_warning(shared, tmp_path):
    """A job of 16 images or fewer (one block) on more workers than blocks printed Ray Data's
    "UserWarning: The minimum number of concurrent actors ... override_num_blocks" on stderr,
    where docs/batch.md says Ray's warnings are not shown."""
    _people(shared, tmp_path / "small", 3, 2)
    done = _batch("embed", "small", "--out", "small_out", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["images"] == 6
    assert "UserWarning" not in done.stderr and "override_num_blocks" not in done.stderr, done.stderr[-3000:]


def test_a_folder_that_cannot_be_listed_is_a_failed_input_of_the_job(shared, tmp_path):
    """`batch enrol nb/people ppl`, one person's folder mode 000, said "9 images ... exit 0": the
    folder and its photos were skipped silently, in no errors list. The folder is a failed input:
    a row of _errors.csv, counted, exit 1 (some inputs failed); SOURCE itself unlisted is refused."""
    assert shutil.which("setpriv"), "setpriv (util-linux) runs the job without root's read-anything"
    folders = _people(shared, tmp_path / "people", 3, 3)
    closed = folders[1]
    closed.chmod(0)
    try:
        done = _batch("enrol", "people", "ppl", "--db", f"sqlite:///{tmp_path / 'g.db'}", "--workers", "1",
                      "--work", "work", cwd=tmp_path, prefix=tuple(NO_OVERRIDE))
        refused = _batch("embed", str(closed), "--out", "none", cwd=tmp_path, prefix=tuple(NO_OVERRIDE))
    finally:
        closed.chmod(0o755)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr[-3000:])
    report = json.loads(done.stdout)
    assert (report["images"], report["errors"], report["details"]["enrolled"]) == (7, 1, 6), report
    with open(tmp_path / "work" / "_errors.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"image_id": str(closed), "error": "bad_request",
                     "message": "a folder that cannot be listed: permission denied (none of its images is in "
                                "the job)"}], rows
    said = " ".join((refused.stdout + refused.stderr).split())  # --json: the error as JSON on stdout
    assert refused.returncode == 2 and not (tmp_path / "none").exists(), said
    assert f"no image could be listed: {closed} is a folder that cannot be listed: permission denied" in said, said
