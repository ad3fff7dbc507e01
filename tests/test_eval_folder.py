"""`faceatlas eval folder`: evaluate and calibrate on the user's own per-person folders or pairs CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceatlas.cli.evaluate import app
from faceatlas.errors import InvalidSetting


@pytest.fixture(scope="module")
def dataset(shared, tmp_path_factory) -> Path:
    """40 LFW people with 3+ photos (3 each) and 40 with one: 160 photos, 12,720 pairs
    (120 genuine, 12,600 impostor): enough to state FAR 1e-3, not 1e-4."""
    root = tmp_path_factory.mktemp("mine")
    people = sorted(p for p in (shared / "data/lfw/images").iterdir() if p.is_dir())
    many = [p for p in people if len(list(p.glob("*.jpg"))) >= 3][:40]
    single = [p for p in people if len(list(p.glob("*.jpg"))) == 1][:40]
    for person, count in [*((p, 3) for p in many), *((p, 1) for p in single)]:
        (root / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:count]:
            (root / person.name / photo.name).symlink_to(photo)
    return root


def test_folder_states_only_what_its_pairs_support_and_saves_a_calibration(dataset, tmp_path, monkeypatch):
    from faceatlas.engine import FaceAnalyzer

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    plot = tmp_path / "plots.png"
    # already selected in the shell: the evaluation, which measures, does not need it to exist yet
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mine")
    result = CliRunner().invoke(app, ["folder", str(dataset), "--pack", "scrfd-mbf", "--plot", str(plot),
                                      "--save-as", "mine"])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("FACEATLAS_CALIBRATION")
    output = " ".join(result.output.split())
    assert "not enough impostor pairs to state FAR 1e-4, 1e-5, 1e-6" in output
    assert "FNIR @ FPIR 1e-2" in output and "FNIR @ FPIR 1e-3" in output and "TAR @ FAR 1e-3" in output
    assert plot.stat().st_size > 20_000
    # the saved calibration holds FAR 1e-3 only (12,600 impostor pairs), with the tail for open-set
    # cuts and the measurements, and is used once selected
    assert FaceAnalyzer("scrfd-mbf").calibration.thresholds.keys() == {"1e-3", "1e-4", "1e-5", "1e-6"}
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mine")
    mine = FaceAnalyzer("scrfd-mbf").calibration
    assert mine is not None and set(mine.thresholds) == {"1e-3"} and mine.tail and mine.template_tail
    metrics = mine.metrics
    assert metrics["images"] == 160 and 10_000 <= metrics["impostor_pairs"] < 100_000
    assert metrics["tar_at_far_1e-3"] >= 0.9
    assert metrics["fnir_at_fpir_1e-2"] <= 0.2 and metrics["fnir_at_fpir_1e-3"] <= 0.3
    assert min(float(k) for k in mine.tail) >= 10 / metrics["impostor_pairs"]
    # a name no calibration has (a typo) ran on the shipped thresholds without a word
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mien")
    with pytest.raises(InvalidSetting, match=r"FACEATLAS_CALIBRATION='mien': no calibration.*scrfd-mbf\.mine\.json"):
        FaceAnalyzer("scrfd-mbf")


def test_pairs_csv_and_bad_datasets(dataset, tmp_path):
    people = sorted(p for p in dataset.iterdir() if len(list(p.iterdir())) == 3)[:4]
    rows = ["image_a,image_b,same"]
    for person in people:
        a, b, _ = sorted(person.iterdir())
        rows.append(f"{person.name}/{a.name},{person.name}/{b.name},1")
    for first, second in zip(people, people[1:]):
        rows.append(f"{first.name}/{sorted(first.iterdir())[0].name},{second.name}/{sorted(second.iterdir())[0].name},0")
    csv = dataset / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    try:
        result = CliRunner().invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout[result.stdout.index("{"):])
        assert report["genuine_pairs"] == 4 and report["impostor_pairs"] == 3
        assert report["identification"] is None and not any(p["resolvable"] for p in report["far"])
        refused = CliRunner().invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf", "--save-as", "x"])
        assert refused.exit_code == 2 and "support no FAR" in refused.output
    finally:
        csv.unlink()
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,b.jpg,maybe\n")
    result = CliRunner().invoke(app, ["folder", str(bad), "--pack", "scrfd-mbf"])
    assert result.exit_code == 2 and "bad_request" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["folder", str(empty), "--pack", "scrfd-mbf"])
    assert result.exit_code == 2 and "no per-person folders" in " ".join(result.output.split())


def test_a_folder_too_small_for_any_far_is_reported_not_refused(examples, tmp_path):
    """Nine photos of five people (32 impostor pairs) failed with "the calibration of pack scrfd-mbf
    holds no threshold" and no plot: the 1:1 report says how many pairs each FAR needs, 1:N is left
    out, the plot is written."""
    plot = tmp_path / "roc.png"
    result = CliRunner().invoke(app, ["folder", str(examples / "examples" / "knn_examples" / "train"),
                                      "--pack", "scrfd-mbf", "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["impostor_pairs"] == 32 and report["identification"] is None
    assert not any(p["resolvable"] for p in report["far"]) and plot.is_file()


def test_a_truncated_photo_is_counted_out_and_named_not_the_end_of_the_evaluation(examples, tmp_path):
    """One truncated JPEG among 19 photos ended `eval folder` with exit 2 and no result (photos
    without a face were only counted)."""
    import shutil

    root = tmp_path / "mine"
    shutil.copytree(examples / "examples" / "knn_examples" / "train", root)
    good = next(root.rglob("*.jpg"))
    (good.parent / "broken.jpg").write_bytes(good.read_bytes()[:700])
    result = CliRunner().invoke(app, ["folder", str(root), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    broken = f"{good.parent.name}/broken.jpg"
    assert list(report["unreadable"]) == [broken] and report["unreadable"][broken].startswith("truncated_image")
    assert broken not in report["no_face"] and report["impostor_pairs"] == 32
    table = CliRunner().invoke(app, ["folder", str(root), "--pack", "scrfd-mbf"])
    assert table.exit_code == 0 and "unreadable" in table.output, table.output


def strict_json(text: str) -> object:
    """JSON as a strict parser reads it (Python's ``json.loads`` takes NaN and Infinity, no other does)."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_of_a_gallery_without_non_mated_searches_is_json(shared, tmp_path):
    """Five people and no distractor: `eval folder --json` printed `"achieved_fpir": NaN` (no non-mated
    search reaches any FPIR), which no JSON parser reads."""
    people = sorted(p for p in (shared / "data/lfw/images").iterdir() if p.is_dir()
                    and len(list(p.glob("*.jpg"))) >= 4)[:5]
    for person in people:
        (tmp_path / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:4]:
            (tmp_path / person.name / photo.name).symlink_to(photo)
    result = CliRunner().invoke(app, ["folder", str(tmp_path), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert isinstance(report, dict) and report["identification"]["distractors"] == 0
    assert all(p["achieved_fpir"] is None for p in report["identification"]["points"])
    from faceatlas.cli.errors import json_text

    assert strict_json(json_text({"far": [float("inf"), -float("inf")], "auc": float("nan")})) == {
        "far": [None, None], "auc": None}  # what every other --json prints goes the same way


def _small_pairs(shared: Path, root: Path) -> list[str]:
    """Two LFW people with two photos each under ``root`` (``ok/<person>/<photo>``), and the rows of
    a CSV of their pairs (2 genuine, 1 impostor), paths relative to ``root``."""
    people = [p for p in sorted((shared / "data/lfw/images").iterdir()) if len(list(p.glob("*.jpg"))) >= 2][:2]
    keys = []
    for person in people:
        (root / "ok" / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            (root / "ok" / person.name / photo.name).symlink_to(photo)
            keys.append(f"ok/{person.name}/{photo.name}")
    return [f"{keys[0]},{keys[1]},1", f"{keys[2]},{keys[3]},1", f"{keys[0]},{keys[2]},0"]


def test_a_pairs_csv_with_a_byte_order_mark_is_read(shared, tmp_path):
    """A CSV saved with a UTF-8 byte-order mark (Excel's "CSV UTF-8") had its first image read as
    '\\ufeffok/...' and not found."""
    rows = _small_pairs(shared, tmp_path)
    csv = tmp_path / "pairs.csv"
    csv.write_bytes("\ufeff".encode() + "\n".join(rows).encode() + b"\n")
    result = CliRunner().invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["genuine_pairs"] == 2 and report["impostor_pairs"] == 1


def test_a_pairs_csv_that_is_not_utf8_text_is_one_line_not_a_traceback(shared, tmp_path):
    """A CSV in Latin-1 or UTF-16, or an image given as the CSV, was a UnicodeDecodeError traceback (exit 1)."""
    rows = _small_pairs(shared, tmp_path)
    text = "\n".join([*rows, "ok/José/x.jpg,ok/María/y.jpg,0"]) + "\n"
    photo = tmp_path / "photo.csv"
    photo.write_bytes(next((tmp_path / "ok").rglob("*.jpg")).read_bytes())
    for name, data in [("latin1.csv", text.encode("latin-1")), ("utf16.csv", text.encode("utf-16")),
                       ("photo.csv", photo.read_bytes())]:
        csv = tmp_path / name
        csv.write_bytes(data)
        result = CliRunner().invoke(app, ["folder", str(csv), "--pack", "scrfd-mbf"])
        assert result.exit_code == 2, (name, result.output)
        output = " ".join(result.output.split())
        assert "error (bad_request)" in output and "not UTF-8 text" in output, (name, output)
        assert "Traceback" not in output


def test_saving_over_a_calibration_needs_replace_and_a_missing_default_far_names_the_calibration(
        dataset, shared, tmp_path, monkeypatch):
    """`eval folder A --save-as mine` then `eval folder B --save-as mine` replaced the first without a
    word; B's smaller set left FAR 1e-3 only, and `compare` (no --far) then failed with "far 0.0001 is
    not one of the calibrated rates", naming a --far never given (FaceAnalyzer.verify alike)."""
    from faceatlas.cli.main import app as main_app
    from faceatlas.engine import FaceAnalyzer, get_pack, save_calibration, user_calibration_path
    from faceatlas.engine.calibration import Calibration
    from faceatlas.errors import FarNotCalibrated

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    pack = get_pack("scrfd-mbf")
    first = Calibration(pack="scrfd-mbf", recognizer_id=pack.recognizer_id, thresholds={"1e-3": 0.3, "1e-4": 0.4},
                        source="faceatlas eval folder A, 2025-01-02",
                        metrics={"genuine_pairs": 900, "impostor_pairs": 450_000})
    path = save_calibration(first, user_calibration_path(pack, "mine"))
    before = path.read_bytes()
    refused = CliRunner().invoke(app, ["folder", str(dataset), "--pack", "scrfd-mbf", "--save-as", "mine"])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "already_exists" in said, said
    assert "calibration 'mine' of pack scrfd-mbf exists: FAR 1e-4, 1e-3 from 900 genuine / 450,000 impostor" in said
    assert "--replace" in said and "TAR @ FAR" not in said  # refused before the evaluation
    assert path.read_bytes() == before

    replaced = CliRunner().invoke(app, ["folder", str(dataset), "--pack", "scrfd-mbf", "--save-as", "mine",
                                        "--replace"])
    said = " ".join(replaced.output.split())
    assert replaced.exit_code == 0, said
    assert ("calibration 'mine' replaced: it was FAR 1e-4, 1e-3 from 900 genuine / 450,000 impostor pairs "
            "(faceatlas eval folder A, 2025-01-02); it is now FAR 1e-3 from 120 genuine / 12,") in said, said
    assert path.read_bytes() != before and "name" not in json.loads(path.read_text())

    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mine")
    images = shared / "data/lfw/images"
    person = next(p for p in sorted(images.iterdir()) if len(list(p.glob("*.jpg"))) >= 2)
    a, b = sorted(person.glob("*.jpg"))[:2]
    compared = CliRunner().invoke(main_app, ["compare", str(a), str(b), "-p", "scrfd-mbf"])
    said = " ".join(compared.output.split())
    assert compared.exit_code == 2 and "0.0001" not in said, said
    clear = ("calibration 'mine' of pack scrfd-mbf has thresholds at FAR 1e-3 only: FAR 1e-4 (the default) needs "
             "at least 100,000 impostor pairs, it was made from 12,")
    assert clear in said and "--far 1e-3" in said and "FACEATLAS_CALIBRATION" in said, said
    assert CliRunner().invoke(main_app, ["compare", str(a), str(b), "-p", "scrfd-mbf", "--far", "1e-3"]).exit_code == 0
    analyzer = FaceAnalyzer("scrfd-mbf")
    faces = [analyzer.analyze(image, max_faces=1)[0] for image in (a, b)]
    with pytest.raises(FarNotCalibrated) as raised:
        analyzer.verify(*faces)
    assert clear in " ".join(str(raised.value).split())
    with pytest.raises(FarNotCalibrated, match=r"far 0\.5 is not one of the calibrated rates of calibration 'mine'"):
        analyzer.verify(*faces, far=0.5)
    assert analyzer.verify(*faces, far=1e-3).match is not None


def test_a_save_the_set_cannot_back_keeps_the_report_and_the_plot(examples, tmp_path, monkeypatch):
    """Nine photos (32 impostor pairs) with --plot and --save-as: the refusal "32 impostor pairs support
    no FAR threshold" was all that came out (exit 2): the computed report and plot were thrown away."""
    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    train = examples / "examples" / "knn_examples" / "train"
    plot = tmp_path / "roc.png"
    result = CliRunner().invoke(app, ["folder", str(train), "--pack", "scrfd-mbf", "--plot", str(plot),
                                      "--save-as", "tiny"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert "TAR @ FAR 1e-3" in said and "ROC and DET plots written to" in said and plot.is_file()
    assert said.rindex("32 impostor pairs support no FAR threshold") > said.index("TAR @ FAR 1e-3")
    plot.unlink()
    as_json = CliRunner().invoke(app, ["folder", str(train), "--pack", "scrfd-mbf", "--plot", str(plot),
                                       "--save-as", "tiny", "--json"])
    assert as_json.exit_code == 2 and "support no FAR threshold" in as_json.output
    report = json.loads(as_json.stdout)
    assert report["impostor_pairs"] == 32 and report["written"] == [] and plot.is_file()
    assert not (tmp_path / "cache" / "calibration").exists() or not any((tmp_path / "cache" / "calibration").iterdir())


def test_a_photo_that_may_not_be_read_is_counted_out_and_named(examples, tmp_path):
    """A photo whose mode forbids reading it (PermissionError) ended `eval folder` with exit 2 and no
    report; it is counted out with why, as a truncated one is. Root reads any file: the command runs
    without the capabilities that let it (setpriv, util-linux)."""
    import os
    import shutil
    import subprocess
    import sys

    root = tmp_path / "mine"
    shutil.copytree(examples / "examples" / "knn_examples" / "train", root)
    extra = sorted(root.rglob("*.jpg"))[0]
    locked = extra.parent / "locked.jpg"
    shutil.copyfile(extra, locked)
    locked.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "root reads any file: setpriv (util-linux) is needed to test a permission error"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    env = {**os.environ, "FACEATLAS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(__file__).parents[1])}
    ran = subprocess.run([*prefix, sys.executable, "-m", "faceatlas.cli", "eval", "folder", str(root),
                          "--pack", "scrfd-mbf", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout)
    key = f"{locked.parent.name}/locked.jpg"
    assert list(report["unreadable"]) == [key], report["unreadable"]
    assert report["unreadable"][key] == f"invalid_image: {locked}: cannot be read (permission denied)"
    assert key not in report["no_face"] and report["images"] == 10 and report["impostor_pairs"] == 32


def test_a_selected_calibration_without_the_default_far_says_which_and_how_to_choose(tmp_path, monkeypatch):
    """A user calibration with FAR 1e-3 only: a verification at the default FAR said "far 0.0001 is
    not one of the calibrated rates of pack scrfd-mbf: 1e-3", naming neither the calibration nor a way out."""
    from faceatlas.engine import Cut, get_pack, load_calibration, save_calibration, user_calibration_path
    from faceatlas.engine.calibration import Calibration
    from faceatlas.errors import FarNotCalibrated

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path))
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mine")
    pack = get_pack("scrfd-mbf")
    save_calibration(Calibration(pack="scrfd-mbf", recognizer_id=pack.recognizer_id, thresholds={"1e-3": 0.34},
                                 metrics={"impostor_pairs": 16_110}), user_calibration_path(pack, "mine"))
    mine = load_calibration(pack)
    assert mine is not None
    with pytest.raises(FarNotCalibrated) as raised:
        Cut.verifying().check(mine)
    assert str(raised.value).startswith(
        "calibration 'mine' of pack scrfd-mbf has thresholds at FAR 1e-3 only: FAR 1e-4 (the default) needs at "
        "least 100,000 impostor pairs, it was made from 16,110; give far 1e-3 (--far 1e-3), or select another "
        "calibration with FACEATLAS_CALIBRATION"), raised.value
    with pytest.raises(FarNotCalibrated, match=r"^calibration 'mine' .* FAR 1e-5 needs at least 1,000,000"):
        mine.threshold(1e-5)
    assert mine.name == "mine"
