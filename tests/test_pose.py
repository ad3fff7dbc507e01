"""Head pose from the 5 keypoints on real faces whose pose was labelled by eye, for the dlib pack and
the SCRFD pack: each must fall inside its label, and the two packs must agree with each other."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceatlas.engine import Face, FaceAnalyzer, get_pack

PACKS = ("dlib", "scrfd-mbf")

# (image, which face, yaw range, pitch range, label). yaw > 0: nose towards the image's right;
# pitch > 0: looking up. Labels by eye on the photos; ranges are generous (the 5-point pose is coarse).
FRONTAL = (-15.0, 15.0)
LABELS = [
    ("lfw/images/Luc_Montagnier/Luc_Montagnier_0001.jpg", "centre", FRONTAL, FRONTAL, "frontal"),
    ("lfw/images/Lachlan_Murdoch/Lachlan_Murdoch_0001.jpg", "centre", FRONTAL, FRONTAL, "frontal"),
    ("lfw/images/Simon_Yam/Simon_Yam_0001.jpg", "centre", FRONTAL, FRONTAL, "frontal, smiling"),
    # A broad smile lifts the mouth corners: it read as 28 degrees of pitch down before.
    ("lfw/images/Mary_Lou_Retton/Mary_Lou_Retton_0001.jpg", "centre", (-5.0, 25.0), FRONTAL,
     "near-frontal, a little towards the image's right, broad smile"),
    # Biden in obama_and_biden.jpg (the face on the image's left): near-frontal, grinning, head a
    # little down. It read as pitch -43 (scrfd) and -13 (dlib) before; the issue saw +36.
    ("face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg", "left", FRONTAL, (-20.0, 5.0),
     "near-frontal, smiling, head a little down"),
    ("lfw/images/Daniel_Comisso_Urdaneta/Daniel_Comisso_Urdaneta_0001.jpg", "centre", (10.0, 60.0), (-20.0, 20.0),
     "turned: nose towards the image's right"),
    ("lfw/images/Max_Mosley/Max_Mosley_0001.jpg", "centre", (10.0, 60.0), (-20.0, 25.0),
     "turned: nose towards the image's right"),
    ("lfw/images/Kenneth_Cooper/Kenneth_Cooper_0001.jpg", "centre", (-60.0, -10.0), (-20.0, 20.0),
     "turned: nose towards the image's left"),
    ("lfw/images/Melina_Kanakaredes/Melina_Kanakaredes_0001.jpg", "centre", (-60.0, -10.0), (-20.0, 20.0),
     "turned: nose towards the image's left"),
    ("lfw/images/Sally_Ride/Sally_Ride_0001.jpg", "centre", (-5.0, 35.0), (10.0, 45.0), "head tilted back, laughing"),
]


@pytest.fixture(scope="module")
def analyzers(shared: Path) -> dict[str, FaceAnalyzer]:
    available = {name: FaceAnalyzer(name, announce_license=False) for name in PACKS if get_pack(name).is_available()}
    if not available:
        pytest.skip("neither the dlib nor the scrfd-mbf model files are present")
    return available


def labelled_face(analyzer: FaceAnalyzer, image: np.ndarray, which: str) -> Face:
    faces = analyzer.analyze(image, embed=False)
    centres = [((f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2) for f in faces]
    height, width = image.shape[:2]
    target = (width / 2, height / 2) if which == "centre" else (width * 0.4, height * 0.35)
    assert faces, "no face found"
    return faces[int(np.argmin([np.hypot(x - target[0], y - target[1]) for x, y in centres]))]


@pytest.mark.parametrize("path, which, yaw_range, pitch_range, label", LABELS, ids=[Path(r[0]).stem for r in LABELS])
def test_pose_matches_labels_and_packs_agree(
    analyzers: dict[str, FaceAnalyzer], shared: Path, path: str, which: str,
    yaw_range: tuple[float, float], pitch_range: tuple[float, float], label: str,
) -> None:
    image = cv2.imread(str(shared / "data" / path))
    assert image is not None
    poses = {name: labelled_face(analyzer, image, which).pose for name, analyzer in analyzers.items()}
    for name, pose in poses.items():
        assert pose is not None
        assert yaw_range[0] < pose.yaw < yaw_range[1], f"{name}: yaw {pose.yaw:.1f} for {label}"
        assert pitch_range[0] < pose.pitch < pitch_range[1], f"{name}: pitch {pose.pitch:.1f} for {label}"
    if len(poses) == 2:
        a, b = poses.values()
        assert a is not None and b is not None
        # the same face, the same convention: within the coarseness of a 5-point pose, and never
        # of opposite signs where the label gives a sign
        assert abs(a.yaw - b.yaw) < 12 and abs(a.pitch - b.pitch) < 12, f"dlib {a} vs scrfd {b}"
        for low, high, x, y in ((*yaw_range, a.yaw, b.yaw), (*pitch_range, a.pitch, b.pitch)):
            if low >= 0 or high <= 0:
                assert np.sign(x) == np.sign(y)
