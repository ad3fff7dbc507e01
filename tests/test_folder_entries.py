"""A folder given to a command that reads each photo in it (detect, gallery enrol, eval folder) may
hold entries named as photos that are no file to read: a dangling link, a FIFO. Each is named with
why ("a dangling link", "not a regular file"), as a photo that does not decode is, never skipped
without a word, and a FIFO is never opened (reading one waits for a writer that never comes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceatlas.engine import load_image
from faceatlas.errors import InvalidImage

REPO = Path(__file__).resolve().parents[1]
PEOPLE = ("Adam_Sandler", "Ai_Sugiyama")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, with a time limit: one that opened a FIFO would wait forever."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "faceatlas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": path, "FACEATLAS_THREADS": "1"}, timeout=180)


def _odd_entries(folder: Path) -> tuple[Path, Path]:
    """A dangling link and a FIFO in ``folder``, both named as photos."""
    dangling = folder / "moved.jpg"
    dangling.symlink_to(folder / "gone" / "moved.jpg")
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    return dangling, fifo


@pytest.fixture
def folder(shared: Path, tmp_path: Path) -> Path:
    """Per-person folders of three LFW photos each, the first also holding a dangling link and a FIFO."""
    lfw = shared / "data" / "lfw" / "images"
    root = tmp_path / "people"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / person / photo.name)
    _odd_entries(root / PEOPLE[0])
    return root


def test_a_fifo_or_dangling_link_named_is_refused_without_being_opened(tmp_path: Path) -> None:
    dangling, fifo = _odd_entries(tmp_path)
    with pytest.raises(InvalidImage, match="not a regular file but a FIFO"):  # it said "no such file"
        load_image(fifo)
    with pytest.raises(InvalidImage, match="a dangling link"):
        load_image(dangling)


def test_detect_on_a_folder_names_its_dangling_link_and_fifo(folder: Path) -> None:
    person = folder / PEOPLE[0]
    result = _cli("detect", str(person), "-p", "scrfd-mbf", "--json", cwd=folder)
    assert result.returncode == 1, result.stderr  # two entries failed, the photos answered
    results = {Path(r["image"]).name: r for r in json.loads(result.stdout)["results"]}
    assert set(results) == {p.name for p in person.iterdir()}, results  # skipped without a word before
    assert results["moved.jpg"]["error"] == "invalid_image" and "a dangling link" in results["moved.jpg"]["message"]
    assert results["pipe.jpg"]["error"] == "invalid_image" and "not a regular file" in results["pipe.jpg"]["message"]
    assert sum("faces" in r for r in results.values()) == 3
    human = _cli("detect", str(person), "-p", "scrfd-mbf", cwd=folder)
    lines = [line for line in human.stderr.splitlines() if line.startswith("error")]
    assert lines == [f"error (invalid_image): {person / 'moved.jpg'}: a dangling link (to "
                     f"{person / 'gone' / 'moved.jpg'}, nothing there to read): not an image file",
                     f"error (invalid_image): {person / 'pipe.jpg'}: not a regular file but a FIFO (named pipe): "
                     "not read"], human.stderr


def test_gallery_enrol_and_eval_folder_name_a_dangling_link_and_a_fifo(folder: Path, tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert _cli("gallery", "create", "odd", "-p", "scrfd-mbf", *db, cwd=tmp_path).returncode == 0
    enrolled = _cli("gallery", "enrol", "odd", str(folder), "--json", *db, cwd=tmp_path)
    assert enrolled.returncode == 1, enrolled.stderr  # some enrolled, some rejected
    rejected = {Path(r["source"]).name: f"{r['error']}: {r['message']}"
                for r in json.loads(enrolled.stdout)["rejected"]}
    assert set(rejected) == {"moved.jpg", "pipe.jpg"}, rejected
    assert "a dangling link" in rejected["moved.jpg"] and "not a regular file" in rejected["pipe.jpg"]

    measured = _cli("eval", "folder", str(folder), "--pack", "scrfd-mbf", "--json", cwd=tmp_path)
    assert measured.returncode == 0, measured.stderr
    report = json.loads(measured.stdout)
    unreadable = report["unreadable"]
    assert set(unreadable) == {f"{PEOPLE[0]}/moved.jpg", f"{PEOPLE[0]}/pipe.jpg"}, report
    assert "a dangling link" in unreadable[f"{PEOPLE[0]}/moved.jpg"]
    assert "not a regular file" in unreadable[f"{PEOPLE[0]}/pipe.jpg"]
    assert report["images"] == 8 and report["identities"] == 2
