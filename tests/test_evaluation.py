"""LFW evaluation: the protocol arithmetic on constructed scores, a real 1-fold run, the shipped calibration."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from typer.testing import CliRunner

from faceatlas.cli.evaluate import app
from faceatlas.engine.evaluation import (
    all_vs_all,
    best_threshold,
    far_points,
    far_thresholds,
    kfold_accuracy,
    read_pairs,
    roc_points,
)
from faceatlas.errors import InvalidSetting


def test_read_pairs_parses_view2_layout(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2\t1\nAda\t1\t2\nAda\t1\tBob\t3\nCy\t4\t12\nBob\t2\tCy\t1\n")
    pairs = read_pairs(path)
    assert [(p.a, p.b, p.same, p.fold) for p in pairs] == [
        ("Ada/Ada_0001.jpg", "Ada/Ada_0002.jpg", True, 0),
        ("Ada/Ada_0001.jpg", "Bob/Bob_0003.jpg", False, 0),
        ("Cy/Cy_0004.jpg", "Cy/Cy_0012.jpg", True, 1),
        ("Bob/Bob_0002.jpg", "Cy/Cy_0001.jpg", False, 1),
    ]
    assert len(read_pairs(path, limit_folds=1)) == 2


def test_separable_scores_give_perfect_accuracy_and_tar():
    rng = np.random.default_rng(0)
    same = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    scores = np.where(same, rng.uniform(0.6, 1.0, same.size), rng.uniform(-0.2, 0.4, same.size))
    folds = np.repeat(np.arange(10), 60)
    accuracies, thresholds = kfold_accuracy(scores, same, folds)
    assert accuracies.tolist() == [1.0] * 10
    assert np.all((thresholds > 0.4) & (thresholds < 0.6))
    points = far_points(scores[same].astype(np.float32), scores[~same].astype(np.float32), [1e-2])
    assert points[0].tar == 1.0 and points[0].achieved_far <= 1e-2
    far, tar, auc = roc_points(scores, same)
    assert auc == pytest.approx(1.0) and far[0] == 0.0 and tar[-1] == 1.0


def test_kfold_uses_threshold_of_the_other_folds():
    # every fold: 9 clean pairs and one genuine pair scored like an impostor -> 90% in each fold
    same = np.tile(np.r_[np.ones(5, bool), np.zeros(5, bool)], 10)
    scores = np.where(same, 0.8, 0.1)
    scores[::10] = 0.05  # the first genuine pair of each fold, below every impostor
    accuracies, thresholds = kfold_accuracy(scores, same, np.repeat(np.arange(10), 10))
    assert accuracies == pytest.approx([0.9] * 10)
    assert thresholds == pytest.approx([0.45] * 10)


def test_best_threshold_midpoint_and_ties():
    threshold, accuracy = best_threshold(np.array([0.9, 0.7, 0.7, 0.2]), np.array([True, True, False, False]))
    # the tie at 0.7 cannot be split: accept both (3/4) or neither (3/4); the first cut wins
    assert accuracy == 0.75 and threshold == pytest.approx(0.8)


def test_far_threshold_is_the_percentile_of_impostors():
    impostor = (np.arange(10_000) / 10_000).astype(np.float32)
    rng = np.random.default_rng(1)
    rng.shuffle(impostor)
    thresholds = far_thresholds(impostor, [1e-2, 1e-3])
    assert thresholds[1e-2] == pytest.approx(np.percentile(impostor, 99), abs=1e-3)
    assert thresholds[1e-3] == pytest.approx(np.percentile(impostor, 99.9), abs=1e-3)
    assert (impostor >= np.float32(thresholds[1e-2])).sum() == 100
    assert (impostor >= np.float32(thresholds[1e-3])).sum() == 10


def test_far_threshold_with_ties_never_exceeds_the_far():
    impostor = np.r_[np.full(50, 0.5), np.linspace(-0.5, 0.4, 950)].astype(np.float32)
    point = far_points(np.array([0.45, 0.5, 0.9], np.float32), impostor, [1e-2])[0]
    assert point.threshold > 0.5 and point.achieved_far == 0.0 and point.tar == pytest.approx(1 / 3)
    unresolved = far_points(np.array([0.9], np.float32), impostor, [1e-6])[0]
    assert not unresolved.resolvable and unresolved.threshold > impostor.max()


def test_all_vs_all_matches_brute_force():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(7, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = np.array([0, 0, 1, 1, 1, 2, 3])
    genuine, impostor = all_vs_all(emb, ids, block=3)
    pairs = list(combinations(range(7), 2))
    assert sorted(genuine) == pytest.approx(sorted(emb[i] @ emb[j] for i, j in pairs if ids[i] == ids[j]))
    assert sorted(impostor) == pytest.approx(sorted(emb[i] @ emb[j] for i, j in pairs if ids[i] != ids[j]))
    assert len(genuine) == 4 and len(impostor) == 17


def test_lfw_one_fold_real_run(shared, tmp_path, monkeypatch):
    from faceatlas.engine import FaceAnalyzer

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    shipped = FaceAnalyzer("scrfd-mbf").calibration
    result = CliRunner().invoke(app, [
        "lfw", "--pairs", str(shared / "data/lfw/pairs.txt"), "--images", str(shared / "data/lfw/images"),
        "--pack", "scrfd-mbf", "--limit-folds", "1", "--json", "--plot", str(tmp_path / "roc.png"),
        "--save-as", "onefold",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["pairs"] == 600 and payload["accuracy"] >= 0.97
    assert payload["far"][0]["tar"] >= 0.95
    assert (tmp_path / "roc.png").stat().st_size > 10_000
    # a named calibration: only the FARs its impostor pairs support, used only once selected
    assert FaceAnalyzer("scrfd-mbf").calibration == shipped
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "onefold")
    mine = FaceAnalyzer("scrfd-mbf").calibration
    assert mine is not None and mine != shipped
    impostors = int(mine.metrics["impostor_pairs"])
    assert set(mine.thresholds) == {k for k in ("1e-3", "1e-4", "1e-5", "1e-6") if impostors * float(k) >= 10}
    assert "1e-6" not in mine.thresholds and "1e-3" in mine.thresholds
    # and the template tail (photo vs 2-photo template) for searches by mean template, as far as its pairs go
    templates = int(mine.metrics["template_impostor_pairs"])
    assert mine.template_tail and min(float(k) for k in mine.template_tail) >= 10 / templates


def test_shipped_calibration_verifies_obama_not_biden(examples, tmp_path, monkeypatch):
    from faceatlas.engine import FaceAnalyzer

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path))  # no user calibration: the shipped one is used
    analyzer = FaceAnalyzer("scrfd-mbf")
    assert analyzer.calibration is not None and "lfw_accuracy" in analyzer.calibration.metrics
    images = examples / "tests/test_images"
    obama, obama2, biden = (analyzer.analyze_one(images / f) for f in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    assert analyzer.verify(obama, obama2, far=1e-4).match
    assert not analyzer.verify(obama, biden, far=1e-4).match


def test_a_small_evaluation_never_replaces_the_thresholds(shared, tmp_path, monkeypatch):
    """Issue 16.1: 4 LFW pairs wrote FAR 1e-6 = 0.154 over the shipped 0.575; now nothing is written
    unless asked, a named calibration holds only what its pairs support, and is used only when selected."""
    from faceatlas.engine import FaceAnalyzer

    monkeypatch.setenv("FACEATLAS_CACHE", str(tmp_path / "cache"))
    lines = (shared / "data/lfw/pairs.txt").read_text().splitlines()
    small = tmp_path / "pairs.txt"
    small.write_text("\n".join(["1\t2", *lines[1:3], *lines[301:303]]) + "\n")  # 2 same + 2 different
    args = ["lfw", "--pairs", str(small), "--images", str(shared / "data/lfw/images"), "--pack", "scrfd-mbf"]
    shipped = FaceAnalyzer("scrfd-mbf").calibration
    assert shipped is not None

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "too few" in result.output
    assert not (tmp_path / "cache").exists()  # nothing written by default
    assert FaceAnalyzer("scrfd-mbf").calibration == shipped

    refused = CliRunner().invoke(app, [*args, "--save-as", "mine"])
    assert refused.exit_code == 2 and "impostor pairs support no FAR" in refused.output
    assert not (tmp_path / "cache").exists()

    # selected but absent (never written, a typo, a wiped cache): said, not replaced by the shipped one
    monkeypatch.setenv("FACEATLAS_CALIBRATION", "mine")
    with pytest.raises(InvalidSetting, match="FACEATLAS_CALIBRATION='mine': no calibration of that name"):
        FaceAnalyzer("scrfd-mbf")

