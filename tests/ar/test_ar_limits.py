"""Images MediaPipe cannot take: at 32,767 pixels a side its OpenCV remap asserts and the whole
process aborts (a 157-byte 40000 x 2 PNG sent to POST /v1/ar/effects stopped the server). AR
refuses such an image (image_too_large); the Face Mesh of drive and AR reduces a tall strip
within the limit. Each case runs in a child process: before, it was killed by SIGABRT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

CASES = """
import json, sys
import cv2
from faceatlas.apps.ar import apply_effects
from faceatlas.apps.drive import FaceMeshTracker
from faceatlas.errors import FaceAtlasError

answers = {}
for name in ("wide.png", "tall.png"):
    try:
        apply_effects(sys.argv[1] + "/" + name, ["blur-background", "glasses"])
        answers[name] = "applied"
    except FaceAtlasError as refused:
        answers[name] = f"{refused.code}: {refused}"
tracker = FaceMeshTracker()
answers["tall mesh"] = len(tracker.find(cv2.imread(sys.argv[1] + "/strip.png")))
tracker.close()
print(json.dumps(answers))
"""


def test_images_past_mediapipe_s_sides_are_refused_or_reduced_not_a_crash(tmp_path: Path, examples: Path) -> None:
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((2, 40000, 3), 200, np.uint8))
    face = cv2.imread(str(examples / "examples" / "obama-240p.jpg"))
    tall = np.full((33000, face.shape[1], 3), 128, np.uint8)
    tall[:face.shape[0]] = face  # a face at the top of a 33,000-pixel strip
    cv2.imwrite(str(tmp_path / "tall.png"), tall)
    cv2.imwrite(str(tmp_path / "strip.png"), tall)
    done = subprocess.run([sys.executable, "-c", CASES, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["wide.png"] == ("image_too_large: AR effects take images of at most 32,766 pixels a side "
                                   "(MediaPipe's limit), not 40000 x 2")
    assert answers["tall.png"].startswith("image_too_large:") and "not 427 x 33000" in answers["tall.png"]
    assert answers["tall mesh"] in (0, 1)  # reduced within the limit (424 x 32766), not an abort
