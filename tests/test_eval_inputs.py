"""`faceatlas eval` on inputs that are not what they claim: a pairs CSV naming a file that is no image
(a text file named .jpg, a folder) names it; a `--save-as` name that is no plain file name is refused
before anything is read or written; a one-fold LFW accuracy, its threshold chosen on the very pairs it
is measured on, says it is optimistic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.evaluate import app

runner = CliRunner()
PEOPLE = ("Adam_Sandler", "Ai_Sugiyama")


@pytest.fixture
def dataset(shared: Path, tmp_path: Path) -> Path:
    """Two people of two LFW photos each, a text file named as a photo and a folder named as one."""
    lfw = shared / "data" / "lfw" / "images"
    root = tmp_path / "ds"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for number, photo in enumerate(sorted((lfw / person).glob("*.jpg"))[:2], 1):
            shutil.copy(photo, root / person / f"{number}.jpg")
    (root / PEOPLE[0] / "notes.jpg").write_text("not a photo at all\n")
    (root / "album.jpg").mkdir()
    return root


def _one_line(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def test_a_pairs_csv_left_without_pairs_by_a_non_image_names_it(dataset: Path) -> None:
    a, b = PEOPLE
    csv = dataset / "pairs.csv"
    csv.write_text(f"{a}/1.jpg,{a}/notes.jpg,1\n{a}/1.jpg,{b}/1.jpg,0\n")
    result = runner.invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf"])
    assert result.exit_code == 2, result.output
    lines = _one_line(result.stderr)
    # it said "needs same and different pairs with a face in both photos", naming nothing
    assert len(lines) == 1 and lines[0].startswith("error (bad_request): "), result.stderr
    assert f"{dataset / a / 'notes.jpg'}: not an image (unrecognised format)" in lines[0], lines


def test_a_pairs_csv_naming_a_folder_reports_it_as_no_image_file(dataset: Path) -> None:
    a, b = PEOPLE
    csv = dataset / "pairs.csv"
    csv.write_text(f"{a}/1.jpg,{a}/2.jpg,1\n{b}/1.jpg,{b}/2.jpg,1\n{a}/1.jpg,{b}/1.jpg,0\n{a}/2.jpg,{b}/2.jpg,0\n"
                   f"album.jpg,{a}/1.jpg,0\n{a}/notes.jpg,{b}/2.jpg,0\n")
    result = runner.invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output  # it was "1 images not found next to it, e.g. album.jpg"
    unreadable = json.loads(result.stdout)["unreadable"]
    assert set(unreadable) == {"album.jpg", f"{a}/notes.jpg"}, unreadable
    assert "a folder, not an image file" in unreadable["album.jpg"]
    assert "not an image" in unreadable[f"{a}/notes.jpg"]
    human = runner.invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf"])
    assert "album.jpg" in human.stdout and "notes.jpg" in human.stdout, human.stdout


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../mine", "a\\b", ".hidden"])
def test_save_as_takes_a_plain_file_name_only(dataset: Path, tmp_path: Path, monkeypatch, name: str) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEATLAS_CACHE", str(cache))
    result = runner.invoke(app, ["folder", str(dataset), "--pack", "scrfd-mbf", "--save-as", name])
    assert result.exit_code == 2, result.output
    lines = _one_line(result.stderr)
    assert lines == [f"error (validation_error): invalid calibration name {name!r}: use 1-64 letters, digits, '_', "
                     "'.' or '-', not starting with '.' (a plain file name: no '/' or '\\')"], result.stderr
    assert not cache.exists() or not any(cache.rglob("*")), list(cache.rglob("*"))


@pytest.fixture
def small_pairs(shared: Path, tmp_path: Path) -> Path:
    """The first 5 same and 5 different pairs of LFW's first two folds, as a pairs.txt of 2 folds."""
    lines = (shared / "data" / "lfw" / "pairs.txt").read_text().splitlines()[1:]
    body = [line for fold in range(2) for half in range(2)
            for line in lines[fold * 600 + half * 300:][:5]]
    path = tmp_path / "pairs.txt"
    path.write_text("2\t5\n" + "\n".join(body) + "\n")
    return path


def test_a_one_fold_lfw_accuracy_says_it_is_optimistic(small_pairs: Path, shared: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    args = ["lfw", "--pairs", str(small_pairs), "--images", str(shared / "data" / "lfw" / "images"),
            "--pack", "scrfd-mbf"]
    one = runner.invoke(app, [*args, "--limit-folds", "1", "--json"])
    assert one.exit_code == 0, one.output
    measured = json.loads(one.stdout)
    assert measured["folds"] == 1 and measured["accuracy_cross_validated"] is False
    assert "optimistic" in measured["accuracy_note"] and "same pairs" in measured["accuracy_note"]
    human = runner.invoke(app, [*args, "--limit-folds", "1"])
    assert human.exit_code == 0, human.output
    notes = [line for line in human.stderr.splitlines() if line.startswith("note: the accuracy is optimistic")]
    assert len(notes) == 1, human.stderr
    both = runner.invoke(app, [*args, "--json"])  # 2 folds: each measured at the other's threshold
    assert both.exit_code == 0, both.output
    crossed = json.loads(both.stdout)
    assert crossed["folds"] == 2 and crossed["accuracy_cross_validated"] is True and crossed["accuracy_note"] is None
    assert "optimistic" not in runner.invoke(app, args).stderr


def test_eval_lfw_reads_the_shared_assets_lfw_without_pairs_or_images(small_pairs: Path, shared: Path,
                                                                      tmp_path: Path, monkeypatch) -> None:
    """Every README example of ``eval lfw`` without ``--pairs``/``--images`` was refused "Missing
    option '--pairs'": they default to FACEATLAS_SHARED's data/lfw; without it, the refusal says both."""
    assets = tmp_path / "assets"
    (assets / "data" / "lfw").mkdir(parents=True)
    shutil.copy(small_pairs, assets / "data" / "lfw" / "pairs.txt")
    (assets / "data" / "lfw" / "images").symlink_to(shared / "data" / "lfw" / "images")
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEATLAS_SHARED", str(assets))
    measured = runner.invoke(app, ["lfw", "--pack", "scrfd-mbf", "--json"])
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.stdout)["pairs"] == 20
    monkeypatch.delenv("FACEATLAS_SHARED")
    refused = runner.invoke(app, ["lfw", "--pack", "scrfd-mbf"])
    assert refused.exit_code == 2
    assert _one_line(refused.output) == ["error (validation_error): give --pairs (LFW View-2 pairs.txt) and --images "
                                         "(its image folder), or set FACEATLAS_SHARED to a folder holding "
                                         "data/lfw/pairs.txt and data/lfw/images"]
    monkeypatch.setenv("FACEATLAS_SHARED", str(tmp_path / "nothing"))
    missing = runner.invoke(app, ["lfw", "--pack", "scrfd-mbf"])
    assert missing.exit_code == 2 and "no LFW pairs file at" in missing.output and "give --pairs" in missing.output
