"""FACEATLAS_PROVIDER=openvino: OpenVINO runs the detector and recogniser behind the session
interface, finds the same faces and computes the same embeddings as ONNX Runtime (so the
recogniser's id does not change), serves several threads at once, and says so when it is absent."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.runtime import OpenVINOSession
from faceatlas.errors import InvalidSetting
from faceatlas.settings import EngineSettings

LFW = ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg",
       "Jong_Thae_Hwa/Jong_Thae_Hwa_0002.jpg")
GROUP = "face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg"
COSINE = 0.9999  # measured: 0.99999982 or closer on these photos (float32 kernels differ in rounding only)


@pytest.fixture(scope="module")
def photos(shared: Path) -> list[np.ndarray]:
    paths = [shared / "data" / "lfw" / "images" / name for name in LFW] + [shared / "data" / GROUP]
    return [cv2.imread(str(p)) for p in paths]


@pytest.mark.parametrize("pack", ["scrfd-mbf", "yunet-frfeature"])
def test_openvino_finds_the_same_faces_and_embeddings(pack: str, photos: list[np.ndarray]) -> None:
    ort_analyzer = FaceAnalyzer(pack, settings=EngineSettings(), announce_license=False)
    ov_analyzer = FaceAnalyzer(pack, settings=EngineSettings(provider="openvino"), announce_license=False)
    assert isinstance(ov_analyzer.recognizer.session, OpenVINOSession)  # type: ignore[attr-defined]
    # float32 arithmetic, not OpenVINO's bfloat16 default on CPUs with AVX-512 BF16 / AMX
    assert str(ov_analyzer.recognizer.session.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    if pack == "scrfd-mbf":
        assert isinstance(ov_analyzer.detector.session, OpenVINOSession)  # type: ignore[attr-defined]
    assert ov_analyzer.pack.recognizer_id == ort_analyzer.pack.recognizer_id
    counted = 0
    for ours, theirs in zip(ort_analyzer.analyze_many(photos), ov_analyzer.analyze_many(photos), strict=True):
        assert len(ours) == len(theirs) >= 1
        for a, b in zip(ours, theirs, strict=True):
            assert np.abs(np.asarray(a.bbox) - np.asarray(b.bbox)).max() < 0.5  # pixels
            assert abs(a.det_score - b.det_score) < 1e-3
            assert float(a.embedding @ b.embedding) > COSINE
            counted += 1
    assert counted >= 6  # three LFW faces and the group photo's three
    first, second, stranger = ov_analyzer.analyze_many(photos[:3])
    assert ov_analyzer.verify(first[0], second[0]).match is True
    assert ov_analyzer.verify(first[0], stranger[0]).match is False


def test_one_openvino_session_serves_several_threads(shared: Path, photos: list[np.ndarray]) -> None:
    analyzer = FaceAnalyzer("scrfd-mbf", settings=EngineSettings(provider="openvino"), announce_license=False)
    crops = [analyzer.recognizer.align(p, analyzer.detector.detect(p), 0) for p in photos[:3]]
    expected = analyzer.embed_aligned(crops)
    results: list[np.ndarray] = []

    def embed() -> None:
        for _ in range(5):
            results.append(analyzer.embed_aligned(crops))

    workers = [threading.Thread(target=embed) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 15
    assert all(np.allclose(r, expected, atol=1e-6) for r in results)


def test_provider_setting_is_checked() -> None:
    assert EngineSettings().provider == "onnxruntime"
    with pytest.raises(InvalidSetting, match="FACEATLAS_PROVIDER='tensorrt': Input should be 'onnxruntime' or"):
        EngineSettings(provider="tensorrt")


def test_a_missing_openvino_is_a_provider_missing_error(shared: Path) -> None:
    """A Python where ``import openvino`` fails (the package hidden, as when the extra is not
    installed): the analyzer refuses with provider_missing and says how to install it."""
    script = (
        "import sys; sys.modules['openvino'] = None\n"
        "from faceatlas.engine import FaceAnalyzer\n"
        "from faceatlas.errors import ProviderMissing\n"
        "from faceatlas.settings import EngineSettings\n"
        "try:\n"
        "    FaceAnalyzer('scrfd-mbf', settings=EngineSettings(provider='openvino'), announce_license=False)\n"
        "except ProviderMissing as exc:\n"
        "    print(exc.code, exc.status, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.startswith("provider_missing 503 ")
    assert "faceatlas[openvino]" in done.stdout
