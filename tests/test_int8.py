"""The int8 runtime: a quantised recogniser derived from the float file, cached with its sha256,
its own embedding space (refused by a float collection) and its own calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceatlas.engine import FaceAnalyzer, ModelMismatch, get_pack, make_int8
from faceatlas.engine.detectors import SCRFD
from faceatlas.engine.models import ModelFile, file_sha256, record_path
from faceatlas.engine.quantize import (
    CALIBRATING,
    DETECTOR_CALIBRATION_PHOTOS,
    DETECTOR_RECIPE,
    DETECTOR_TAKES,
    QUANTISING,
    READING,
    Progress,
    cached_int8,
    derived_path,
    int8_detector,
    int8_model,
)
from faceatlas.engine.recognizers import arcface_blob
from faceatlas.engine.runtime import cpu_flags, has_int8_dot
from faceatlas.errors import RuntimeUnavailable
from faceatlas.gallery import Gallery
from faceatlas.settings import EngineSettings

# Making the int8 file (ONNX Runtime's calibrator over 256 crops, one at a time, with a histogram of
# each of 99 tensors) takes 1.5-2 minutes here: these run in CI's slow step, not the default suite.
SLOW = pytest.mark.slow


def few_crops(analyzer: FaceAnalyzer, shared: Path, count: int = 8,
              report: Progress | None = None) -> list[np.ndarray]:
    """Aligned crops of the first ``count`` LFW photos: enough to calibrate a quick int8 copy (seconds,
    not the minutes of the 256 crops a pack's own copy is made from)."""
    crops = []
    for done, photo in enumerate(sorted((shared / "data" / "lfw" / "images").rglob("*.jpg"))[:count], 1):
        image = analyzer.load(photo)
        crops.append(analyzer.recognizer.align(image, analyzer.detector.detect(image), 0))
        if report is not None:
            report(READING, done, count)
    return crops


def quick_int8(model: ModelFile, source: Path, analyzer: FaceAnalyzer, shared: Path,
               settings: EngineSettings) -> Path:
    """The int8 copy of the recogniser ``model`` (float file ``source``) calibrated on a few crops."""
    return int8_model(model, source, lambda report: few_crops(analyzer, shared, report=report),
                      lambda crops: arcface_blob(crops, 112, 127.5, 127.5), settings)


def test_making_an_int8_copy_prints_nothing_on_stdout(fast_analyzer: FaceAnalyzer, shared: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime's calibrator print()s its progress: on stdout it broke `--json` the first time."""
    settings = EngineSettings(cache=tmp_path / "cache", shared=shared)
    model = fast_analyzer.pack.recognizer.file
    made = quick_int8(model, shared / "models" / model.name, fast_analyzer, shared, settings)
    assert made == derived_path(model, settings) and made.is_file()
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "Collecting tensor data" in captured.err  # still shown, on stderr


def test_the_int8_copy_of_an_unpinned_file_follows_that_file(fast_analyzer: FaceAnalyzer, shared: Path,
                                                             tmp_path: Path) -> None:
    """No published sha256 (InsightFace's files): the copy was keyed on None, so a float file replaced
    by another network kept being served the old network's int8 copy."""
    settings = EngineSettings(cache=tmp_path / "cache", shared=shared)
    source = tmp_path / "models" / "w600k_mbf.onnx"
    source.parent.mkdir()
    source.write_bytes((shared / "models" / "recognition" / "mobilefacenet_128d.onnx").read_bytes())
    model = ModelFile("insightface/w600k_mbf.onnx", None, None, "test")
    made = quick_int8(model, source, fast_analyzer, shared, settings)
    assert json.loads(record_path(made).read_text())["source_sha256"] == file_sha256(source)
    first = made.read_bytes()
    assert quick_int8(model, source, fast_analyzer, shared, settings).read_bytes() == first  # reused
    source.write_bytes((shared / "models" / "faceplugin" / "fr_feature.onnx").read_bytes())  # another network
    assert cached_int8(model, settings, source) is None
    again = quick_int8(model, source, fast_analyzer, shared, settings)
    assert again.read_bytes() != first
    assert json.loads(record_path(again).read_text())["source_sha256"] == file_sha256(source)
    assert cached_int8(model, settings, source) == again


def test_an_int8_record_that_is_not_a_json_object_is_stale(fast_analyzer: FaceAnalyzer, shared: Path,
                                                           tmp_path: Path) -> None:
    settings = EngineSettings(cache=tmp_path / "cache", shared=shared)
    model = fast_analyzer.pack.recognizer.file
    made = quick_int8(model, shared / "models" / model.name, fast_analyzer, shared, settings)
    for record in ("[]", "null", "42"):
        record_path(made).write_text(record)
        assert cached_int8(model, settings) is None  # made again, not an AttributeError
    assert quick_int8(model, shared / "models" / model.name, fast_analyzer, shared, settings) == made
    assert json.loads(record_path(made).read_text())["sha256"] == file_sha256(made)


@pytest.fixture(scope="module")
def int8_settings(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> EngineSettings:
    return EngineSettings(cache=tmp_path_factory.mktemp("int8-cache"), shared=shared, runtime="int8")


@pytest.fixture(scope="module")
def int8_analyzer(int8_settings: EngineSettings) -> FaceAnalyzer:
    return FaceAnalyzer("scrfd-mbf", settings=int8_settings, announce_license=False)


@SLOW
def test_int8_file_is_derived_once_and_cached_with_its_sha256(int8_analyzer: FaceAnalyzer,
                                                              int8_settings: EngineSettings) -> None:
    model = int8_analyzer.pack.recognizer.file
    path = derived_path(model, int8_settings)
    record = json.loads(record_path(path).read_text())
    assert record["sha256"] == file_sha256(path)
    assert record["source_sha256"] == model.sha256 and record["calibration_crops"] > 200
    made = path.stat().st_mtime_ns
    again = FaceAnalyzer("scrfd-mbf", settings=int8_settings, announce_license=False)
    assert path.stat().st_mtime_ns == made  # the second load reuses the file
    assert again.pack.recognizer_id == int8_analyzer.pack.recognizer_id
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert cached_int8(model, int8_settings) is None  # a changed file is not trusted (made again)
    path.write_bytes(original)
    assert cached_int8(model, int8_settings) == path


@SLOW
def test_int8_is_its_own_embedding_space(int8_analyzer: FaceAnalyzer, fast_analyzer: FaceAnalyzer,
                                         examples: Path, tmp_path: Path) -> None:
    assert int8_analyzer.pack.recognizer_id == fast_analyzer.pack.recognizer_id + "+int8"
    assert int8_analyzer.calibration is not None
    assert int8_analyzer.calibration.recognizer_id == int8_analyzer.pack.recognizer_id
    photo = examples / "examples" / "knn_examples" / "test" / "obama1.jpg"
    floating, quantised = fast_analyzer.analyze_one(photo), int8_analyzer.analyze_one(photo)
    assert float(floating.embedding @ quantised.embedding) > 0.95  # close, yet another space
    with Gallery.open(f"sqlite:///{tmp_path / 'g.db'}", tenant="t", index_dir=tmp_path / "idx") as gallery:
        gallery.create_collection("people", fast_analyzer)
        gallery.add_embeddings("people", "obama", floating.embedding[None], recognizer_id=floating.recognizer_id)
        assert gallery.search("people", floating, k=1)[0].external_id == "obama"
        with pytest.raises(ModelMismatch):
            gallery.search("people", quantised, k=1)
        with pytest.raises(ModelMismatch):
            gallery.add_embeddings("people", "obama", quantised.embedding[None], recognizer_id=quantised.recognizer_id)


@SLOW
def test_lfw_pairs_decided_with_the_int8_calibration(int8_analyzer: FaceAnalyzer, shared: Path) -> None:
    images = shared / "data" / "lfw" / "images"
    names = ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg",
             "Jong_Thae_Hwa/Jong_Thae_Hwa_0002.jpg")  # pairs.txt lines 2 and 306
    first, second, stranger = (int8_analyzer.analyze_one(images / name) for name in names)
    same, other = int8_analyzer.verify(first, second), int8_analyzer.verify(first, stranger)
    assert same.match is True and other.match is False
    assert int8_analyzer.calibration is not None
    assert same.threshold == int8_analyzer.calibration.threshold(1e-4)


def test_dlib_has_no_int8_variant() -> None:
    with pytest.raises(RuntimeUnavailable):
        get_pack("dlib", runtime="int8")
    assert get_pack("scrfd-mbf", runtime="float").recognizer_id == get_pack("scrfd-mbf").recognizer_id


@SLOW
def test_int8_recogniser_stays_on_onnxruntime_under_openvino(int8_settings: EngineSettings,
                                                               int8_analyzer: FaceAnalyzer, shared: Path) -> None:
    """FACEATLAS_PROVIDER=openvino moves the detector, not the int8 recogniser (OpenVINO's int8
    arithmetic gives other vectors under the same ``+int8`` id): the vectors stay those of int8."""
    from faceatlas.engine.runtime import OpenVINOSession

    mixed = FaceAnalyzer("scrfd-mbf", settings=int8_settings.model_copy(update={"provider": "openvino",
                                                                                 "int8_detector": "off"}),
                         announce_license=False)
    assert isinstance(mixed.detector.session, OpenVINOSession)  # type: ignore[attr-defined]
    assert not isinstance(mixed.recognizer.session, OpenVINOSession)  # type: ignore[attr-defined]
    photo = shared / "data" / "lfw" / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    image = mixed.load(photo)
    crop = mixed.recognizer.align(image, mixed.detector.detect(image), 0)
    assert np.array_equal(mixed.embed_aligned([crop]), int8_analyzer.embed_aligned([crop]))
    # end to end the keypoints differ by ~1e-4 px between the detectors' backends, which int8 rounding
    # turns into a cosine of 0.999 (float: 0.9999998, tests/test_openvino.py)
    assert float(mixed.analyze_one(photo).embedding @ int8_analyzer.analyze_one(photo).embedding) > 0.995


MAKER = """
import logging
import sys
from pathlib import Path

from faceatlas.engine import FaceAnalyzer
from faceatlas.engine.packs import MOBILEFACENET_128D
from faceatlas.settings import EngineSettings
from tests.test_int8 import quick_int8

logging.basicConfig(level=logging.INFO, format="%(message)s")  # the int8 maker says itself at INFO
shared, cache = Path(sys.argv[1]), Path(sys.argv[2])
analyzer = FaceAnalyzer("scrfd-mbf", announce_license=False)
print(quick_int8(MOBILEFACENET_128D, shared / "models" / MOBILEFACENET_128D.name, analyzer, shared,
                 EngineSettings(cache=cache, shared=shared)))
"""


def test_two_processes_make_the_int8_copy_once(shared: Path, tmp_path: Path) -> None:
    """Two processes started together (service workers) each made the same int8 copy; the second now
    waits for the first and loads its file."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", MAKER, str(shared), str(tmp_path / "cache")]
    runs = [subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    made = Path(outputs[0][0].strip())
    assert Path(outputs[1][0].strip()) == made and made.is_file()
    assert sum("making the int8 copy" in err for _, err in outputs) == 1, [err[-2000:] for _, err in outputs]
    assert json.loads(record_path(made).read_text())["sha256"] == file_sha256(made)


def test_a_calibration_folder_that_is_not_one_of_photos_says_so(shared: Path, tmp_path: Path) -> None:
    """FACEATLAS_INT8_IMAGES=/nonexistent (or a folder with no photo) ended as "no face found in the
    int8 calibration photos": no photo was ever looked at."""
    from faceatlas.engine.quantize import calibration_photos
    from faceatlas.errors import ModelMissing

    photo = shared / "data/face_recognition_examples/examples/obama-720p.jpg"
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes((shared / "data/face_recognition_examples/examples/short_hamilton_clip.mp4")
                                      .read_bytes())
    for folder, says in ((tmp_path / "nonexistent", "does not exist"), (photo, "is not a folder"),
                         (videos, "no photos")):
        with pytest.raises(ModelMissing, match=says) as caught:
            calibration_photos(EngineSettings(int8_images=folder))
        assert str(folder) in str(caught.value) and "no face found" not in str(caught.value)
    assert len(calibration_photos(EngineSettings(int8_images=photo.parent))) >= 5


def test_int8_dot_instructions_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    """The int8 detector is chosen by the CPU: VNNI / AMX on x86, SDOT on Arm; not plain AVX2."""
    cases = {"processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni\n": True,
             "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma\n": False,
             "processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n": True,
             "processor\t: 0\nFeatures\t: fp asimd asimddp sha2\n": True,
             "processor\t: 0\nFeatures\t: fp asimd\n": False}
    for text, expected in cases.items():
        info = tmp_path / "cpuinfo"
        info.write_text(text)
        assert has_int8_dot(cpu_flags(info)) is expected, text
    assert cpu_flags(tmp_path / "absent") == frozenset() and not has_int8_dot(frozenset())


GROUP_PHOTOS = ("examples/two_people.jpg", "examples/knn_examples/test/obama_and_biden.jpg",
                "examples/knn_examples/test/kit_with_rose.jpg")


def test_int8_detector_finds_the_float_detectors_faces(fast_analyzer: FaceAnalyzer, shared: Path, examples: Path,
                                                       tmp_path: Path) -> None:
    """SCRFD quantised (calibrated here on 8 photos, the pack's own copy on 32) finds every face the
    float detector finds on the group photos, at the same place (keypoints within 3 px), and the
    copy is made once: a second call reuses the cached file."""
    settings = EngineSettings(cache=tmp_path / "cache", shared=shared)
    model = fast_analyzer.pack.detector.file
    source = shared / "models" / model.name
    photos = [fast_analyzer.load(p) for p in sorted((shared / "data" / "lfw" / "images").rglob("*.jpg"))[:6]]
    groups = [fast_analyzer.load(examples / name) for name in GROUP_PHOTOS]
    path = int8_detector(model, source, lambda _: photos + groups[:2], settings)
    record = json.loads(record_path(path).read_text())
    assert record["recipe"] == DETECTOR_RECIPE and record["calibration_crops"] == 8
    assert record["sha256"] == file_sha256(path) and path.read_bytes() != source.read_bytes()
    made = path.stat().st_mtime_ns
    assert int8_detector(model, source, lambda _: [], settings) == path and path.stat().st_mtime_ns == made
    quantised = SCRFD(path, threads=2)
    total = 0
    for image in groups:
        floating, found = fast_analyzer.detector.detect(image), quantised.detect(image)
        assert len(found) == len(floating) > 0
        total += len(found)
        for box, points in zip(floating.boxes, floating.keypoints):
            centre = (box[:2] + box[2:]) / 2
            nearest = int(np.argmin(np.linalg.norm((found.boxes[:, :2] + found.boxes[:, 2:]) / 2 - centre, axis=1)))
            assert float(np.abs(found.keypoints[nearest] - points).max()) < 3.0
    assert total == 7  # 2 + 3 + 2 faces


def test_the_int8_detector_is_chosen_by_runtime_and_setting(shared: Path, tmp_path: Path) -> None:
    """Only with runtime int8, only SCRFD, and ``off`` / ``on`` override the CPU's answer (auto)."""
    base = EngineSettings(cache=tmp_path / "cache", shared=shared)

    def chosen(pack: str, runtime: str, choice: str) -> bool:
        analyzer = FaceAnalyzer.__new__(FaceAnalyzer)  # the choice alone, without loading models
        analyzer.settings = base.model_copy(update={"int8_detector": choice})
        analyzer.pack = get_pack(pack, analyzer.settings, runtime=runtime)  # type: ignore[arg-type]
        return analyzer.int8_detector

    assert chosen("scrfd-mbf", "int8", "on") and not chosen("scrfd-mbf", "int8", "off")
    assert chosen("scrfd-mbf", "int8", "auto") is has_int8_dot()
    assert not chosen("scrfd-mbf", "float", "on")
    assert not chosen("yunet-frfeature", "int8", "on")  # YuNet runs in OpenCV


def few_photos(shared: Path, folder: Path, count: int = 4) -> Path:
    """A calibration folder (FACEATLAS_INT8_IMAGES) of ``count`` LFW photos: an int8 copy in seconds."""
    folder.mkdir()
    for photo in sorted((shared / "data" / "lfw" / "images").rglob("*_0001.jpg"))[:count]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    return folder


def test_making_an_int8_copy_reports_its_progress_stage_by_stage(shared: Path, tmp_path: Path) -> None:
    """Making the int8 file took minutes with nothing said (a user took it for a hang): ``progress``
    hears each stage, photos read, calibration, quantisation, each counted from 0 up to its total;
    a copy already made is used without a word."""
    settings = EngineSettings(cache=tmp_path / "cache", shared=shared, int8_images=few_photos(shared, tmp_path / "p"),
                              int8_detector="off")
    heard: list[tuple[str, int, int]] = []
    copies = make_int8("scrfd-mbf", settings, progress=lambda *event: heard.append(event))
    model = get_pack("scrfd-mbf").recognizer.file
    assert [(c.source, c.path, c.made) for c in copies] == [(model.name, derived_path(model, settings), True)]
    assert copies[0].path.is_file() and json.loads(record_path(copies[0].path).read_text())["calibration_crops"] == 4
    assert list(dict.fromkeys(stage for stage, _, _ in heard)) == [READING, CALIBRATING, QUANTISING]  # in order
    for stage in (READING, CALIBRATING, QUANTISING):
        counts = [(done, total) for said, done, total in heard if said == stage]
        total = counts[0][1]
        assert all(of == total for _, of in counts) and total > 0
        assert [done for done, _ in counts] == sorted({done for done, _ in counts}), (stage, counts)  # increasing
        assert counts[0][0] == 0 and counts[-1][0] == total, (stage, counts)
    assert [done for said, done, _ in heard if said == READING] == [0, 1, 2, 3, 4]
    heard.clear()
    again = make_int8("scrfd-mbf", settings, progress=lambda *event: heard.append(event))
    assert [(c.path, c.made) for c in again] == [(copies[0].path, False)] and heard == []


def _cli_env(settings: dict[str, str]) -> dict[str, str]:
    import os

    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "FACEATLAS_THREADS": "1", **settings}


def test_a_command_that_makes_the_int8_copy_on_first_use_says_so(shared: Path, examples: Path,
                                                               tmp_path: Path) -> None:
    """`FACEATLAS_RUNTIME=int8 faceatlas detect --json photo`: the first use makes the int8 file, and
    said nothing meanwhile; now stderr says it is made once, how long it takes, where it is cached and
    how far it is, and stdout stays the JSON alone. Once made, nothing more is said."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    env = _cli_env({"FACEATLAS_RUNTIME": "int8", "FACEATLAS_INT8_DETECTOR": "off", "FACEATLAS_CACHE": str(cache),
                    "FACEATLAS_INT8_IMAGES": str(few_photos(shared, tmp_path / "p"))})
    command = [sys.executable, "-m", "faceatlas.cli", "detect", "--json", "-p", "scrfd-mbf",
               str(examples / "tests/test_images/obama.jpg")]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(json.loads(first.stdout)["results"][0]["faces"]) == 1
    path = derived_path(get_pack("scrfd-mbf").recognizer.file, EngineSettings(cache=cache))
    said = " ".join(first.stderr.split())  # rich wraps nothing (soft_wrap), yet lines are joined to be sure
    assert "making the int8 copy of recognition/mobilefacenet_128d.onnx, once: up to a few minutes" in said
    assert f"cached at {path}" in said and path.is_file()
    assert f"{READING} 4/4" in said and f"{QUANTISING} 1/1" in said
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0 and "int8" not in second.stderr, second.stderr


def test_models_int8_makes_the_copy_under_a_progress_bar(shared: Path, tmp_path: Path) -> None:
    """`faceatlas models int8 PACK` makes the int8 copies now, a progress bar per stage on stderr,
    and says where they are; run again, that they are made already."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    env = _cli_env({"FACEATLAS_INT8_DETECTOR": "off", "FACEATLAS_CACHE": str(cache),
                    "FACEATLAS_INT8_IMAGES": str(few_photos(shared, tmp_path / "p"))})
    command = [sys.executable, "-m", "faceatlas.cli", "models", "int8", "scrfd-mbf"]
    made = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    path = derived_path(get_pack("scrfd-mbf").recognizer.file, EngineSettings(cache=cache))
    assert " ".join(made.stdout.split()) == f"recognition/mobilefacenet_128d.onnx: made, at {path}"
    assert "making the int8 copy" in made.stderr and "cached at" in made.stderr
    bars = [line.split() for line in made.stderr.splitlines() if "━" in line]  # the bars, as they ended
    assert [(b[0], b[-2]) for b in bars] == [("reading", "4/4"), ("calibrating", "1/1"), ("quantising", "1/1")]
    again = subprocess.run([*command, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout) == [{"source": "recognition/mobilefacenet_128d.onnx", "path": str(path),
                                         "made": False}]
    assert "making" not in again.stderr


def test_the_int8_detector_s_making_says_its_own_photos_and_time_once_each(shared: Path, examples: Path,
                                                                        tmp_path: Path) -> None:
    """`FACEATLAS_INT8_DETECTOR=on FACEATLAS_RUNTIME=int8 faceatlas detect --json photo`: the detector's
    banner said the recogniser's "about 3 on 2 CPU cores for 256 photos" (it calibrates on 32, in
    seconds), and once ONNX Runtime's quantiser had logged through the root logger (configuring it),
    every line after was said again in the root's format: `INFO:faceatlas.int8:int8 copy of
    insightface/det_500m.onnx: quantising 1/1`, and the recogniser's whole making."""
    import subprocess
    import sys

    photos = few_photos(shared, tmp_path / "p", count=DETECTOR_CALIBRATION_PHOTOS)  # the pack calibrates on 32
    env = _cli_env({"FACEATLAS_RUNTIME": "int8", "FACEATLAS_INT8_DETECTOR": "on",
                    "FACEATLAS_CACHE": str(tmp_path / "cache"), "FACEATLAS_INT8_IMAGES": str(photos)})
    command = [sys.executable, "-m", "faceatlas.cli", "detect", "--json", "-p", "scrfd-mbf",
               str(examples / "tests/test_images/obama.jpg")]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(json.loads(run.stdout)["results"][0]["faces"]) == 1
    lines = run.stderr.splitlines()
    detector = "insightface/det_500m.onnx"
    banner = [line for line in lines if line.startswith(f"making the int8 copy of {detector}, once:")]
    assert len(banner) == 1 and f"for {DETECTOR_CALIBRATION_PHOTOS} photos" in banner[0], run.stderr
    assert DETECTOR_TAKES in banner[0] and "256" not in banner[0] and "minutes" not in banner[0], banner
    assert f"int8 copy of {detector}: {READING} 32/32" in lines, run.stderr
    rooted = [line for line in lines if line.startswith(("INFO:", "WARNING:", "DEBUG:"))]
    assert rooted == [], run.stderr  # said once, in the command's own format
    for line in (f"int8 copy of {detector}: {QUANTISING} 1/1",
                 f"int8 copy of recognition/mobilefacenet_128d.onnx: {QUANTISING} 1/1"):
        assert lines.count(line) == 1, (line, run.stderr)
    assert sum("making the int8 copy" in line for line in lines) == 2, run.stderr
