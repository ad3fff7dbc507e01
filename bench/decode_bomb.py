"""A small file that decodes to a huge image (issue 15, item 6): latency and peak memory of one
analysis, full-size decoding (the old behaviour, ``work_pixels`` off) beside reduced decoding
(the default), each in a fresh process so peak RSS is its own.

    python bench/decode_bomb.py [--pack scrfd-mbf] [--side 6300]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

CHILD = """
import json, resource, sys, time
from faceatlas.engine import FaceAnalyzer
from faceatlas.settings import EngineSettings
path, pack, work = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = EngineSettings(work_pixels=work)
analyzer = FaceAnalyzer(pack, settings=settings, announce_license=False)
analyzer.analyze(path)  # warm-up on the same file (models loaded, first-run costs paid)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
runs = 3
for _ in range(runs):
    faces = analyzer.analyze(open(path, "rb").read())
seconds = (time.perf_counter() - started) / runs
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "faces": len(faces)}))
"""


def bomb(side: int, kind: str, face: Path | None) -> bytes:
    """A ``side`` x ``side`` image that compresses to little: flat grey with one real face pasted."""
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    if face is not None:
        portrait = Image.open(face).convert("RGB")
        size = (side // 6, side // 6 * portrait.height // portrait.width)
        canvas.paste(portrait.resize(size), (side // 3, side // 3))
    out = io.BytesIO()
    if kind == "PNG":
        canvas.save(out, format=kind, optimize=True)
    else:
        canvas.save(out, format=kind, quality=90)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--face", type=Path,
                        default=Path("../shared/data/face_recognition_examples/tests/test_images/obama.jpg"))
    args = parser.parse_args()
    table = Table("file", "size", "decoding", "seconds / image", "peak RSS (MB)", "faces")
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("PNG", "JPEG"):
            data = bomb(args.side, kind, args.face if args.face.is_file() else None)
            path = Path(folder) / f"bomb.{kind.lower()}"
            path.write_bytes(data)
            for label, work in (("full size (before)", 10**12), ("reduced (default)", 16_000_000)):
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), args.pack, str(work)],
                                     capture_output=True, text=True, check=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                table.add_row(f"{args.side}x{args.side} {kind}", f"{len(data) / 1024:.0f} kB", label,
                              f"{result['seconds']:.2f}", f"{result['peak_mb']:.0f}", str(result["faces"]))
    Console().print(table)


if __name__ == "__main__":
    main()
