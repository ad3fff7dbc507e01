"""`faceatlas eval`: its embedding cache and its output paths, on a dozen real LFW pairs.

A cache is used only for the vectors of the very files it was made from (pack, runtime, images
folder, each file's size and mtime); one that does not match, or cannot be read, is rebuilt and
said. No output (--output, --plot, --cache, --save-as) may be an input, and each is checked
writable before the models load. The DET plot draws no FNMR it cannot measure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceatlas.cli.evaluate import app

SAME = 6  # same-person lines and different-person lines of the small pairs file


@pytest.fixture()
def small_lfw(shared, tmp_path) -> tuple[Path, Path]:
    """A 12-pair View-2 file (6 same, 6 different) and a copy of the 19 images it uses."""
    lines = (shared / "data/lfw/pairs.txt").read_text().splitlines()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join([f"1\t{SAME}", *lines[1:1 + SAME], *lines[301:301 + SAME]]) + "\n")
    images = tmp_path / "images"
    for line in pairs.read_text().splitlines()[1:]:
        cols = line.split()
        keys = ([(cols[0], cols[1]), (cols[0], cols[2])] if len(cols) == 3
                else [(cols[0], cols[1]), (cols[2], cols[3])])
        for name, number in keys:
            key = f"{name}/{name}_{int(number):04d}.jpg"
            (images / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / "data/lfw/images" / key, images / key)
    assert len(list(images.glob("*/*.jpg"))) == 19
    return pairs, images


def _run(*args: str):
    return CliRunner().invoke(app, [*args])


def _lfw(pairs: Path, images: Path, *more: str):
    return _run("lfw", "--pairs", str(pairs), "--images", str(images), "--pack", "scrfd-mbf", "--json", *more)


def _accuracy(result) -> float:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])["accuracy"]


def test_a_stale_or_corrupt_cache_is_rebuilt_never_used(small_lfw, shared, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    pairs, images = small_lfw
    cache = tmp_path / "emb.npz"
    first = _lfw(pairs, images, "--cache", str(cache))
    assert _accuracy(first) >= 0.9 and cache.is_file()

    # the same-person pairs' second photos replaced by another person's photo
    other = shared / "data/lfw/images/Mikhail_Gorbachev/Mikhail_Gorbachev_0001.jpg"  # in no pair of the file
    for line in pairs.read_text().splitlines()[1:1 + SAME]:
        name, _, second = line.split()
        shutil.copyfile(other, images / name / f"{name}_{int(second):04d}.jpg")
    fresh = _accuracy(_lfw(pairs, images))
    assert fresh < 0.8
    stale = _lfw(pairs, images, "--cache", str(cache))
    assert _accuracy(stale) == fresh  # it was 1.0: the vectors of the photos that were there before
    assert "rebuilt" in stale.stderr and "changed" in stale.stderr and "Traceback" not in stale.output
    assert len([ln for ln in stale.stderr.splitlines() if "rebuilt" in ln]) == 1
    # the rebuilt cache matches the photos now: used, nothing said
    again = _lfw(pairs, images, "--cache", str(cache))
    assert _accuracy(again) == fresh and "rebuilt" not in again.stderr

    # a truncated npz, a text file, a pickle: rebuilt (one line), never a traceback, never unpickled
    whole = cache.read_bytes()
    for broken in (whole[: len(whole) // 2], b"not a cache\n", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94."):
        cache.write_bytes(broken)
        result = _lfw(pairs, images, "--cache", str(cache))
        assert _accuracy(result) == fresh, result.output
        assert "rebuilt" in result.stderr and "Traceback" not in result.output and result.exception is None
        assert np.load(cache, allow_pickle=False)["embeddings"].shape[0] == 19


def test_cache_path_is_used_as_given_and_a_folder_is_refused(small_lfw, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    pairs, images = small_lfw
    plain = tmp_path / "mini" / "nocache"
    assert _accuracy(_lfw(pairs, images, "--cache", str(plain))) >= 0.9
    assert plain.is_file() and not plain.with_name("nocache.npz").exists()
    made = plain.stat().st_mtime_ns
    reused = _lfw(pairs, images, "--cache", str(plain))
    assert _accuracy(reused) >= 0.9 and "rebuilt" not in reused.stderr
    assert plain.stat().st_mtime_ns == made  # read, not written again

    folder = tmp_path / "somefolder"
    folder.mkdir()
    refused = _lfw(pairs, images, "--cache", str(folder))
    assert refused.exit_code == 2 and "folder" in refused.output
    assert not (tmp_path / "somefolder.npz").exists()


def test_outputs_that_are_inputs_are_refused_before_any_work(small_lfw, shared, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    pairs, images = small_lfw
    text = pairs.read_text()
    photo = next(images.glob("*/*.jpg"))
    photo_bytes = photo.read_bytes()
    # no model files: a refusal that names the output came before the models were looked for
    monkeypatch.setenv("FACEATLAS_MODEL_DIR", str(tmp_path / "no-models"))
    args = ["lfw", "--pairs", str(pairs), "--images", str(images), "--pack", "scrfd-mbf"]
    for option, path, said in [("--output", pairs, "pairs"), ("--cache", pairs, "pairs"),
                               ("--plot", photo, "image"), ("--cache", photo, "image"),
                               ("--output", photo, ".json"), ("--output", photo.with_suffix(".json"), "image"),
                               ("--plot", tmp_path / "roc.jpeg.txt", "suffix")]:
        result = _run(*args, option, str(path))
        assert result.exit_code == 2, (option, path, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error (") and said in lines[0], (option, path, lines)
    # a pairs file named .json is no place for the calibration either
    named = pairs.with_suffix(".json")
    shutil.copyfile(pairs, named)
    result = _run("lfw", "--pairs", str(named), "--images", str(images), "--pack", "scrfd-mbf", "--output", str(named))
    assert result.exit_code == 2 and "is the pairs file" in result.output
    assert named.read_text() == text
    both = _run(*args, "--output", str(tmp_path / "a.json"), "--cache", str(tmp_path / "a.json"))
    assert both.exit_code == 2 and "one file" in both.output
    assert pairs.read_text() == text and photo.read_bytes() == photo_bytes

    # eval folder: a photo of the dataset (here a link to the shared photo) is no place for the plot
    dataset = tmp_path / "ds"
    for person in ("Akhmed_Zakayev", "Anders_Fogh_Rasmussen"):
        (dataset / person).mkdir(parents=True)
        for found in sorted((images / person).iterdir()):
            (dataset / person / found.name).symlink_to(found)
    target = next((dataset / "Akhmed_Zakayev").iterdir())  # a .jpg, which matplotlib writes
    kept = target.read_bytes()
    for plot in (target, dataset / "Akhmed_Zakayev" / "x.png"):
        result = _run("folder", str(dataset), "--pack", "scrfd-mbf", "--plot", str(plot))
        assert result.exit_code == 2 and result.output.startswith("error (") and "dataset" in result.output, \
            result.output
    assert target.read_bytes() == kept and not (dataset / "Akhmed_Zakayev" / "x.png").exists()


def test_outputs_that_cannot_be_written_are_refused_before_the_work(small_lfw, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    pairs, images = small_lfw
    # the calibration JSON was written, then the plot failed: one error line, what was written unsaid
    written = tmp_path / "ok.json"
    result = _run("lfw", "--pairs", str(pairs), "--images", str(images), "--pack", "scrfd-mbf",
                  "--output", str(written), "--plot", "/proc/x.png")
    assert result.exit_code == 2 and result.output.startswith("error (") and "--plot" in result.output, result.output
    assert not written.exists()
    dataset = tmp_path / "ds"
    for person in ("Akhmed_Zakayev", "Anders_Fogh_Rasmussen"):
        shutil.copytree(images / person, dataset / person)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    for plot in ("/proc/x.png", str(a_file / "x.png"), str(tmp_path)):
        result = _run("folder", str(dataset), "--pack", "scrfd-mbf", "--save-as", "t1", "--plot", plot)
        assert result.exit_code == 2, (plot, result.output)
        assert result.output.startswith("error (") and "--plot" in result.output, result.output
        assert not (tmp_path / "cache").exists()  # no calibration saved
    for option, path in [("--output", "/proc/x.json"), ("--cache", "/proc/x.npz"),
                         ("--output", str(a_file / "c.json"))]:
        result = _run("lfw", "--pairs", str(pairs), "--images", str(images), "--pack", "scrfd-mbf", option, path)
        assert result.exit_code == 2 and option in result.output and "cannot be written" in result.output, \
            result.output


def test_det_plot_draws_no_fnmr_below_what_the_pairs_measure(shared, fast_analyzer, tmp_path):
    import matplotlib

    from faceatlas.engine.dataset import det_curve, evaluate_dataset, plot_dataset

    dataset = tmp_path / "ds"
    people = ["Akhmed_Zakayev", "Anders_Fogh_Rasmussen", "Abel_Pacheco", "Amber_Tamblyn"]
    for person in people:
        (dataset / person).mkdir(parents=True)
        for photo in sorted((shared / "data/lfw/images" / person).glob("*.jpg"))[:3]:
            (dataset / person / photo.name).symlink_to(photo)
    report = evaluate_dataset(fast_analyzer, dataset, progress=False)
    fmr, fnmr, floor = det_curve(report)
    assert floor == pytest.approx(1 / report.n_genuine)
    assert (report.curve[1] == 1.0).any()  # FNMR 0 somewhere: it was drawn as 1e-5
    assert fnmr.min() >= floor and len(fmr) == len(fnmr)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot = plot_dataset(report, tmp_path / "det.svg")
    svg = plot.read_text()
    assert f"1/{report.n_genuine}" in svg and "lowest measurable" in svg
