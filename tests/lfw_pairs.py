"""Four real LFW photos with a known answer, decided by any pack's shipped calibration."""

from __future__ import annotations

from pathlib import Path

from faceatlas.engine import Face, FaceAnalyzer, Verdict

PHOTOS = ("Abdullah_Gul/Abdullah_Gul_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0006.jpg",
          "Colin_Powell/Colin_Powell_0040.jpg", "Aaron_Peirsol/Aaron_Peirsol_0001.jpg")


def decide_known_pairs(analyzer: FaceAnalyzer, shared: Path, far: float = 1e-4) -> tuple[Face, Verdict, list[Verdict]]:
    """The first face, the verdict on the same person's two photos and those on two other people."""
    lfw = shared / "data" / "lfw" / "images"
    gul_a, gul_b, powell, aaron = (faces[0] for faces in analyzer.analyze_many([lfw / p for p in PHOTOS], max_faces=1))
    assert analyzer.calibration is not None and analyzer.calibration.pack == analyzer.pack.name
    return gul_a, analyzer.verify(gul_a, gul_b, far=far), [analyzer.verify(gul_a, o, far=far) for o in (powell, aaron)]
