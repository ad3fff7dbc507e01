"""A small file that decodes to a huge image (issue 15, item 6): latency and peak memory of one
analysis and of 8 at once (images per second), full-size decoding (the old behaviour,
``work_pixels`` off) beside reduced decoding (the default), each in a fresh process so peak RSS
is its own.

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
from concurrent.futures import ThreadPoolExecutor
from faceatlas.engine import FaceAnalyzer
from faceatlas.settings import EngineSettings
path, pack, work, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
settings = EngineSettings(work_pixels=work)
analyzer = FaceAnalyzer(pack, settings=settings, announce_license=False)
analyzer.analyze(path)  # warm-up on the same file (models loaded, first-run costs paid)
data = open(path, "rb").read()
runs = 3 * clients
started = time.perf_counter()
with ThreadPoolExecutor(clients) as pool:  # clients at once, as the service's workers would take them
    faces = list(pool.map(lambda _: analyzer.analyze(data), range(runs)))[-1]
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"per_image": seconds / runs, "throughput": runs / seconds, "peak_mb": peak / 1024,
                  "faces": len(faces)}))
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
    parser.add_argument("--clients", type=int, default=8, help="concurrent analyses in the second run")
    parser.add_argument("--face", type=Path,
                        default=Path("../shared/data/face_recognition_examples/tests/test_images/obama.jpg"))
    args = parser.parse_args()
    table = Table("file", "size", "decoding", "clients", "images / s", "peak RSS (MB)", "faces")
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("PNG", "JPEG"):
            data = bomb(args.side, kind, args.face if args.face.is_file() else None)
            path = Path(folder) / f"bomb.{kind.lower()}"
            path.write_bytes(data)
            for clients in (1, args.clients):
                for label, work in (("full size (before)", 10**12), ("reduced (default)", 16_000_000)):
                    out = subprocess.run([sys.executable, "-c", CHILD, str(path), args.pack, str(work), str(clients)],
                                         capture_output=True, text=True, check=True).stdout
                    result = json.loads(out.strip().splitlines()[-1])
                    table.add_row(f"{args.side}x{args.side} {kind}", f"{len(data) / 1024:.0f} kB", label,
                                  str(clients), f"{result['throughput']:.2f}", f"{result['peak_mb']:.0f}",
                                  str(result["faces"]))
    Console().print(table)


if __name__ == "__main__":
    main()
