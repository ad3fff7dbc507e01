"""dlib's ResNet converted to ONNX by `engine.dlib_onnx` (read from dlib's .dat, rebuilt layer by
layer): same embeddings as dlib on the same chips, cached with its sha256, and the fast
public-domain pack `yunet-dlib` (YuNet + the converted ResNet) built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceatlas.engine import FaceAnalyzer, get_pack
from faceatlas.engine.dlib_onnx import build_model, derived_path, dlib_onnx_model, read_layers
from faceatlas.engine.models import file_sha256, record_path, resolve
from faceatlas.engine.packs import DLIB_RESNET, DLIB_SHAPE_5
from faceatlas.engine.recognizers import DlibChipONNX
from faceatlas.errors import ModelMissing
from faceatlas.settings import EngineSettings
from tests.lfw_pairs import decide_known_pairs

PACK = "yunet-dlib"


@pytest.fixture(scope="module")
def dat_file() -> Path:
    return resolve(DLIB_RESNET, download=False)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dlib-onnx-cache")


def test_the_dat_file_reads_as_dlibs_face_resnet(dat_file: Path) -> None:
    layers = read_layers(dat_file)
    kinds = [layer.kind for layer in layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    stem, fc = layers[2], layers[-1]
    assert stem.weights.shape == (32, 3, 7, 7) and stem.stride == (2, 2) and stem.padding == (0, 0)
    assert fc.weights.shape == (256, 128)
    assert layers[1].mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)


def test_a_file_that_is_not_the_network_is_refused_clearly(dat_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dat_file.read_bytes()[: 3_000_000])  # the first few layers only
    with pytest.raises(ModelMissing, match="truncated"):
        read_layers(cut)
    head = tmp_path / "head.dat"
    data = dat_file.read_bytes()
    head.write_bytes(data[: data.index(b"con_4", 50_000) - 2])  # whole records: the stem and a half block
    with pytest.raises(ModelMissing, match="not dlib's face ResNet"):
        build_model(read_layers(head))


def test_embeddings_equal_dlibs_on_the_same_lfw_chips(dlib_analyzer: FaceAnalyzer, dat_file: Path,
                                                      onnx_cache: Path, shared: Path) -> None:
    photos = sorted((shared / "data" / "lfw" / "images").rglob("*.jpg"))[::700][:10]
    images = [dlib_analyzer.load(p) for p in photos]
    chips = []
    for image in images:
        found = dlib_analyzer.detector.detect(image)
        assert len(found) >= 1
        chips.append(dlib_analyzer.recognizer.align(image, found, 0))
    theirs = dlib_analyzer.recognizer.embed_aligned(chips)
    converted = DlibChipONNX(dlib_onnx_model(dat_file, onnx_cache), resolve(DLIB_SHAPE_5, download=False))
    ours = converted.embed_aligned(chips)
    cosine = (theirs * ours).sum(axis=1)
    assert len(cosine) == 10 and 1.0 - cosine.min() < 1e-4, cosine


def test_the_onnx_file_is_made_once_and_checked_by_its_sha256(dat_file: Path, onnx_cache: Path) -> None:
    path = dlib_onnx_model(dat_file, onnx_cache)
    assert path == derived_path(onnx_cache)
    record = json.loads(record_path(path).read_text())
    assert record["sha256"] == file_sha256(path) and record["source_sha256"] == file_sha256(dat_file)
    made = path.stat().st_mtime_ns
    assert dlib_onnx_model(dat_file, onnx_cache).stat().st_mtime_ns == made  # reused
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # tampered: made again
    assert file_sha256(dlib_onnx_model(dat_file, onnx_cache)) == record["sha256"]


@pytest.mark.parametrize("record", ["[]", "null", "42", '"text"', "{broken"])
def test_a_record_that_is_not_a_json_object_is_stale(dat_file: Path, tmp_path: Path, record: str) -> None:
    """A record that parses but is no object crashed the load (AttributeError): the file is made again."""
    path = dlib_onnx_model(dat_file, tmp_path)
    record_path(path).write_text(record)
    assert dlib_onnx_model(dat_file, tmp_path) == path
    remade = json.loads(record_path(path).read_text())
    assert remade["sha256"] == file_sha256(path) and remade["source_sha256"] == file_sha256(dat_file)


@pytest.fixture(scope="module")
def fast(shared: Path, onnx_cache: Path) -> FaceAnalyzer:
    return FaceAnalyzer(PACK, settings=EngineSettings(cache=onnx_cache), announce_license=False)


def test_the_pack_is_public_domain_or_permissive_and_its_own_space() -> None:
    pack = get_pack(PACK)
    for model in pack.core_files + [spec.file for spec in pack.liveness]:
        assert model.license.startswith(("MIT", "Apache-2.0", "dlib models: public domain")), model.license
    assert pack.recognizer_id != get_pack("dlib").recognizer_id  # other chips (YuNet's keypoints)
    assert pack.recognizer_id.endswith("+onnx")


def test_real_lfw_pairs_are_decided_right_at_far_1e4(fast: FaceAnalyzer, shared: Path) -> None:
    face, same, different = decide_known_pairs(fast, shared)
    assert same.match is True and len(face.embedding) == 128
    for other in different:
        assert other.match is False and same.similarity > other.similarity + 0.1
    assert np.isclose(np.linalg.norm(face.embedding), 1.0, atol=1e-5)


def test_its_vectors_are_the_dlib_packs_on_the_same_faces(fast: FaceAnalyzer, dlib_analyzer: FaceAnalyzer,
                                                         shared: Path) -> None:
    """dlib's landmarks placed in YuNet's box give dlib's own chip: the vectors barely move."""
    photos = sorted((shared / "data" / "lfw" / "images").rglob("*.jpg"))[5::900][:8]
    ours = [f[0].embedding for f in fast.analyze_many(photos, max_faces=1)]
    theirs = [f[0].embedding for f in dlib_analyzer.analyze_many(photos, max_faces=1)]
    cosine = np.array([float(np.dot(a, b)) for a, b in zip(ours, theirs, strict=True)])
    assert len(cosine) == 8 and cosine.min() > 0.99, cosine
