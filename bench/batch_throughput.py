"""Batch throughput: ``faceatlas batch embed`` on Ray (1 and 2 workers) vs a plain single-process
loop over ``FaceAnalyzer.analyze_many``, in the same run, on N images (LFW photos repeated under
distinct names: N symbolic links in a temporary folder).

Every row does the same work per image: read the file's bytes, decode, detect, align, embed. The
plain loops hold one analyzer (one intra-op thread, then all cores' threads) and call
``analyze_many`` on batches of ``--batch-size`` images; the Ray rows run the whole job (a local Ray
started for it, Ray Data reading, one analyzer per actor with one thread, a Parquet part per batch,
perceptual hash, done-manifest). ``job s`` includes starting Ray and the actors; ``img/s`` is
over the job's pipeline (after ``ray.init``: it includes starting the actors and loading their
models); ``warm`` is the rate once the first parts are written. Ray's overhead per image is
1 / warm rate of 1 worker - 1 / rate of the plain 1-thread loop; its fixed cost is the job's
seconds beyond N / warm rate (starting Ray, the actors, their models).

    FACEATLAS_MODEL_DIR=../shared/models python bench/batch_throughput.py --shared ../shared --n 1000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from faceatlas.batch import BatchOptions, embed
from faceatlas.engine import FaceAnalyzer


def make_source(lfw: Path, n: int, folder: Path) -> list[Path]:
    photos = sorted(lfw.glob("*/*.jpg"))
    links = []
    for number in range(n):
        link = folder / f"{number:06d}_{photos[number % len(photos)].name}"
        link.symlink_to(photos[number % len(photos)])
        links.append(link)
    return links


def plain_loop(paths: list[Path], pack: str, threads: int | None, batch_size: int) -> tuple[float, int]:
    analyzer = FaceAnalyzer(pack, threads=threads, announce_license=False)
    analyzer.analyze_many([paths[0].read_bytes()])  # warm
    faces, start = 0, time.perf_counter()
    for first in range(0, len(paths), batch_size):
        batch = [p.read_bytes() for p in paths[first:first + batch_size]]
        faces += sum(len(f) for f in analyzer.analyze_many(batch))
    return time.perf_counter() - start, faces


def recorder(ticks: list[tuple[float, int]]):
    """A progress callback that notes (time, images done)."""
    return lambda done, total: ticks.append((time.perf_counter(), done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    console = Console(width=180)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "images"
        source.mkdir()
        paths = make_source(args.shared / "data" / "lfw" / "images", args.n, source)
        for threads in (1, None):
            seconds, faces = plain_loop(paths, args.pack, threads, args.batch_size)
            label = f"plain analyze_many, 1 process, {threads or os.cpu_count()} thread(s)"
            rows.append((label, seconds, seconds, faces, args.n / seconds))
            console.print(f"{label}: {args.n / seconds:.1f} img/s")
        for workers in args.workers:
            ticks: list[tuple[float, int]] = []
            start = time.perf_counter()
            report = embed(str(source), f"{tmp}/out{workers}",
                           BatchOptions(workers=workers, pack=args.pack, batch_size=args.batch_size),
                           recorder(ticks))
            job = time.perf_counter() - start
            label = f"faceatlas batch embed, Ray, {workers} worker(s)"
            (t0, d0), (t1, d1) = ticks[min(2, len(ticks) - 2)], ticks[-1]  # from the third part on: warm actors
            steady = (d1 - d0) / (t1 - t0)
            rows.append((label, job, report.seconds, report.faces, steady))
            console.print(f"{label}: {report.images_per_second:.1f} img/s over the pipeline, {steady:.1f} img/s "
                          f"warm, job {job:.1f} s, {report.errors} errors")
    plain_one = rows[0][4]
    table = Table(title=f"{args.n} images (LFW repeated), pack {args.pack}, batch {args.batch_size}, "
                        f"{os.cpu_count()} cores")
    for column in ("run", "job s", "pipeline s", "img/s (pipeline)", "img/s (warm)", "faces",
                   "Ray overhead ms/img (warm)", "Ray fixed cost s"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for label, job, pipeline, faces, steady in rows:
        ray = "Ray" in label
        overhead = f"{(1 / steady - 1 / plain_one) * 1000:.1f}" if "1 worker" in label else ""
        fixed = f"{job - args.n / steady:.1f}" if ray else ""
        table.add_row(label, f"{job:.1f}", f"{pipeline:.1f}", f"{args.n / pipeline:.1f}", f"{steady:.1f}",
                      str(faces), overhead, fixed)
    console.print(table)


if __name__ == "__main__":
    main()
