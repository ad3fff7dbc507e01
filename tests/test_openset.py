"""Open-set identification: thresholds at a stated FPIR for the gallery's size, and the gallery,
CLI and API deciding "who, or nobody" with them."""

from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np
import pytest

from faceatlas.engine import Calibration, Cut, Embedding, get_pack
from faceatlas.engine.calibration import load_calibration, per_comparison_far
from faceatlas.engine.evaluation import far_thresholds, impostor_tail, template_impostors
from faceatlas.engine.identification import identification_report, run_searches
from faceatlas.engine.vectors import l2_normalize
from faceatlas.errors import FarNotCalibrated, InvalidArgument
from faceatlas.gallery import Gallery


def _calibration(impostor: np.ndarray) -> Calibration:
    return Calibration("p", "r", {}, tail=impostor_tail(impostor))


def test_per_comparison_far_is_the_fpir_shared_by_the_gallery():
    assert per_comparison_far(1e-3, 1) == pytest.approx(1e-3)
    assert per_comparison_far(1e-3, 1000) == pytest.approx(1.0005e-6, rel=1e-3)
    # n independent comparisons at that FAR name a stranger at the stated rate
    far = per_comparison_far(1e-2, 250)
    assert 1 - (1 - far) ** 250 == pytest.approx(1e-2)


def test_far_threshold_interpolates_the_tail_and_extrapolates_strict():
    impostor = np.random.default_rng(0).normal(0.0, 0.1, 2_000_000).astype(np.float32)
    calibration = _calibration(impostor)
    exact = far_thresholds(impostor, [3e-4, 1e-5])
    assert calibration.far_threshold(3e-4) == pytest.approx(exact[3e-4], abs=2e-3)  # between grid points
    lowest = min(float(k) for k in calibration.tail)
    assert lowest >= 10 / len(impostor)  # the tail stops where the data stops supporting a FAR
    # beyond the data: a Gaussian tail falls faster than the extrapolation, so the threshold errs strict
    true_1e8 = 0.1 * 5.612  # the 1e-8 upper quantile of N(0, 0.1)
    assert calibration.far_threshold(1e-8) >= true_1e8
    # thresholds only tighten as the FAR falls, and an FPIR tightens with the gallery
    fars = [1e-2, 1e-3, 1e-5, 1e-7, 1e-9]
    assert np.all(np.diff([calibration.far_threshold(f) for f in fars]) > 0)
    sizes = [1, 10, 1_000, 100_000]
    assert np.all(np.diff([calibration.fpir_threshold(1e-3, n) for n in sizes]) > 0)
    for bad in (1.5, 0.0, float("nan")):  # no rate at all: a bad argument, not a rate the calibration lacks
        with pytest.raises(InvalidArgument, match="a rate between 0 and 1") as refused:
            calibration.fpir_threshold(bad, 10)
        assert not isinstance(refused.value, FarNotCalibrated)


def test_a_calibration_without_a_tail_reads_its_standard_thresholds():
    shipped = load_calibration(get_pack("scrfd-mbf"))
    assert shipped is not None and shipped.tail
    calibration = dataclasses.replace(shipped, tail={})  # as calibrations made before the tail
    assert calibration.far_threshold(1e-4) == pytest.approx(calibration.thresholds["1e-4"], abs=1e-6)
    assert calibration.fpir_threshold(1e-3, 10) == pytest.approx(calibration.far_threshold(1e-4), abs=1e-3)


def test_cut_order_threshold_far_fpir_rank():
    calibration = load_calibration(get_pack("scrfd-mbf"))
    assert Cut(threshold=0.3, far=1e-4, fpir=1e-3).similarity(calibration, 5) == 0.3
    assert Cut(far=1e-4, fpir=1e-3).similarity(calibration, 5) == calibration.threshold(1e-4)
    assert Cut(fpir=1e-3).similarity(calibration, 500) == calibration.fpir_threshold(1e-3, 500)
    assert Cut().similarity(calibration) is None and not Cut().decides


def test_identification_on_synthetic_identities_reaches_the_stated_fpir():
    """Well-separated synthetic identities: FPIR reached ~ stated, and nobody enrolled is missed."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3000, 64))
    identities = np.repeat(np.arange(3000), 2)
    faces = centres[identities] + rng.normal(scale=0.3, size=(6000, 64))
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    ids = identities.copy()
    impostor = (faces[:2000] @ faces[2000:4000].T).ravel().astype(np.float32)
    report = identification_report(faces, ids, _calibration(impostor), 500, fpirs=(1e-2,))
    [point] = report.points
    assert point.supported and report.non_mated == 5000  # 2,500 identities not enrolled, 2 images each
    assert point.achieved_fpir <= 2e-2
    assert point.fnir < 0.01 and report.rank1 > 0.99
    searches = run_searches(faces, ids, 10, seed=1)
    assert len(searches.mated) == 10 and len(searches.non_mated) == 6000 - 20


def test_gallery_search_cut_tightens_with_the_collection(tmp_path):
    """The default cut of a search is the FPIR for the collection's size: a score that names a
    subject in a small collection is 'unknown' in a large one."""
    pack = get_pack("scrfd-mbf")
    calibration = load_calibration(pack)
    assert calibration is not None
    rid, dim = pack.recognizer_id, 128
    rng = np.random.default_rng(0)
    target = rng.normal(size=dim)
    target /= np.linalg.norm(target)
    small, large = calibration.fpir_threshold(1e-3, 1), calibration.fpir_threshold(1e-3, 400)
    score = (small + large) / 2
    orthogonal = rng.normal(size=dim)
    orthogonal -= (orthogonal @ target) * target
    orthogonal /= np.linalg.norm(orthogonal)
    probe = score * target + np.sqrt(1 - score**2) * orthogonal
    with Gallery.open(f"sqlite:///{tmp_path}/g.db") as gallery:
        gallery.create_collection("c", pack)
        gallery.add_embeddings("c", "alice", target[None], recognizer_id=rid)
        [match] = gallery.search("c", Embedding(probe, rid), k=1)
        assert match.external_id == "alice" and match.similarity == pytest.approx(score, abs=1e-4)
        others = rng.normal(size=(399, dim))
        others -= np.outer(others @ target, target)  # strangers far from alice and the probe
        for start in range(0, 399, 100):
            for i, vector in enumerate(others[start:start + 100], start):
                gallery.add_embeddings("c", f"p{i}", vector[None], recognizer_id=rid)
        assert gallery.search("c", Embedding(probe, rid), k=1) == []  # unknown at FPIR 1e-3 over 400 faces
        assert gallery.search("c", Embedding(probe, rid), k=1, far=1e-3)[0].external_id == "alice"
        assert gallery.search("c", Embedding(probe, rid), k=1, rank_only=True)[0].external_id == "alice"


def test_template_impostors_score_every_image_against_other_peoples_templates():
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(7, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = np.array([0, 0, 1, 1, 1, 2, 3])  # identities 0 and 1 have 2 photos or more: two templates
    scores = template_impostors(emb, ids, photos=2, block=3)
    templates = {i: l2_normalize(emb[np.flatnonzero(ids == i)[:2]].mean(axis=0))[0] for i in (0, 1)}
    expected = [float(emb[r] @ t) for i, t in templates.items() for r in range(7) if ids[r] != i]
    assert len(scores) == len(expected) == 5 + 4
    assert sorted(scores) == pytest.approx(sorted(expected), abs=1e-6)


def test_template_searches_read_the_template_tail_of_the_shipped_calibration():
    """LFW: a template of 2 photos sits nearer to strangers' photos than one photo does, so a
    search scoring subjects by their mean template needs a higher threshold for the same FPIR."""
    shipped_files = sorted(resources.files("faceatlas.engine").joinpath("calibrations").iterdir(),
                           key=lambda f: f.name)
    names = [f.name.removesuffix(".json") for f in shipped_files if f.name.endswith(".json")]
    assert {"scrfd-mbf", "yunet-frfeature", "scrfd-fusion"} <= set(names)
    for name in names:
        base, *variant = name.split(".")
        pack = get_pack(base, runtime="int8" if "int8" in variant else "float", flip="flip" in variant)
        shipped = load_calibration(pack)
        assert shipped is not None and shipped.template_tail, name
        assert min(float(k) for k in shipped.template_tail) >= 10 / 12e6  # 1,559 templates x 7,701 photos
        span = shipped.thresholds["1e-6"] - shipped.thresholds["1e-3"]  # the pack's own scale (dlib's is narrow)
        for size in (10, 100):  # FAR 1e-4, 1e-5: both tails measured there (lifts: 4-17 % of the span)
            lift = shipped.fpir_threshold(1e-3, size, templates=True) - shipped.fpir_threshold(1e-3, size)
            assert lift > 0.03 * span, (name, size, lift, span)
        for size in (1_000, 100_000):  # beyond the template tail: never below the photos' tail
            assert shipped.fpir_threshold(1e-3, size, templates=True) >= shipped.fpir_threshold(1e-3, size)
        older = dataclasses.replace(shipped, template_tail={})  # a calibration made before template tails
        assert older.fpir_threshold(1e-3, 50, templates=True) == older.fpir_threshold(1e-3, 50)


def test_mean_aggregate_searches_cut_at_the_template_threshold_for_the_subject_count(tmp_path):
    pack = get_pack("scrfd-mbf")
    shipped = load_calibration(pack)
    assert shipped is not None
    lifted = {k: v + 0.05 for k, v in shipped.tail.items()}
    calibration = dataclasses.replace(shipped, template_tail=lifted)
    rid, dim = pack.recognizer_id, 128
    rng = np.random.default_rng(1)
    target = rng.normal(size=dim)
    target /= np.linalg.norm(target)
    photo = calibration.fpir_threshold(1e-3, 2)  # best face: the collection's 2 faces
    template = calibration.fpir_threshold(1e-3, 1, templates=True)  # mean template: its 1 subject
    assert template > photo + 0.02
    score = (photo + template) / 2
    orthogonal = rng.normal(size=dim)
    orthogonal -= (orthogonal @ target) * target
    orthogonal /= np.linalg.norm(orthogonal)
    probe = Embedding(score * target + np.sqrt(1 - score**2) * orthogonal, rid)
    with Gallery.open(f"sqlite:///{tmp_path}/g.db") as gallery:
        gallery.create_collection("c", pack)
        gallery.add_embeddings("c", "alice", np.stack([target, target]), recognizer_id=rid)
        [best] = gallery.search("c", probe, k=1, calibration=calibration)
        assert best.external_id == "alice" and best.similarity == pytest.approx(score, abs=1e-4)
        assert gallery.search("c", probe, k=1, aggregate="mean", calibration=calibration) == []
        assert gallery.search("c", probe, k=1, aggregate="mean", calibration=calibration,
                              far=1e-3)[0].external_id == "alice"  # a 1:1 FAR is not read on the template tail


def test_a_cut_read_below_the_measured_tail_is_logged_once(tmp_path, caplog):
    """The shipped scrfd-mbf tail reaches ~3e-7 per comparison: FPIR 1e-3 over a handful of faces
    is measured, over 10,000 faces (1e-7 per comparison) it is extrapolated, and the gallery says
    so in its log once for that collection size, not on every search."""
    pack = get_pack("scrfd-mbf")
    calibration = load_calibration(pack)
    assert calibration is not None
    lowest = calibration.lowest_far()
    assert 1e-7 < lowest < 1e-5
    assert not calibration.extrapolates(1e-3, 10) and calibration.extrapolates(1e-3, 10_000)
    rid = pack.recognizer_id
    vectors = l2_normalize(np.random.default_rng(1).normal(size=(3, 128)))
    with Gallery.open(f"sqlite:///{tmp_path}/g.db") as gallery:
        gallery.create_collection("c", pack)
        for i, vector in enumerate(vectors):
            gallery.add_embeddings("c", f"p{i}", vector[None], recognizer_id=rid)
        with caplog.at_level("WARNING", logger="faceatlas"):
            gallery.search("c", Embedding(vectors[0], rid), k=1)
            assert "extrapolated" not in caplog.text  # 3 faces: inside the measured tail
            gallery.search("c", Embedding(vectors[0], rid), k=1, fpir=1e-6)
            gallery.search("c", Embedding(vectors[1], rid), k=1, fpir=1e-6)
        assert caplog.text.count("extrapolated below the calibration's lowest measured FAR") == 1
