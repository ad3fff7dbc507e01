"""Hidden (dot) folders and files beside person folders are no people: every walk of a folder for
photos leaves them out (`gallery enrol` made `.thumbs` a subject, `eval folder` an identity, while
batch jobs skipped them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app

PEOPLE = ("Adam_Sandler", "Ai_Sugiyama")


@pytest.fixture
def folder(shared: Path, tmp_path: Path) -> Path:
    """Two person folders of four LFW photos each, a `.thumbs` folder of four more people's photos
    and a macOS `._` twin of one photo."""
    lfw = shared / "data" / "lfw" / "images"
    root = tmp_path / "ev"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:4]:
            shutil.copy(photo, root / person / photo.name)
    (root / ".thumbs").mkdir()
    for photo in sorted((lfw / "George_W_Bush").glob("*.jpg"))[:4]:
        shutil.copy(photo, root / ".thumbs" / photo.name)
    first = sorted((root / PEOPLE[0]).iterdir())[0]
    shutil.copy(first, first.parent / f"._{first.name}")
    return root


def test_gallery_enrol_and_eval_folder_leave_hidden_folders_out(folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", f"sqlite:///{tmp_path / 'g.db'}"]
    assert runner.invoke(app, ["gallery", "create", "gint", "-p", "scrfd-mbf", *db]).exit_code == 0
    enrolled = runner.invoke(app, ["gallery", "enrol", "gint", str(folder), "--json", *db])
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.stdout)["subjects"] == 2
    listed = runner.invoke(app, ["gallery", "list", "gint", "--json", *db])
    assert "Adam_Sandler" in listed.stdout and ".thumbs" not in listed.stdout and "._" not in listed.stdout
    measured = runner.invoke(app, ["eval", "folder", str(folder), "--pack", "scrfd-mbf", "--json"])
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.stdout)
    assert report["identities"] == 2 and report["images"] == 8


def test_album_scan_and_batch_leave_hidden_files_out(folder: Path) -> None:
    from faceatlas.apps.albums import find_photos
    from faceatlas.batch.source import resolve_source

    found = find_photos(folder)
    assert len(found) == 8 and not any(part.startswith(".") for p in found for part in p.relative_to(folder).parts)
    assert sorted(Path(p).name for p in resolve_source(str(folder)).paths) == sorted(p.name for p in found)
