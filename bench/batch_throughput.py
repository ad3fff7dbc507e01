"""Batch throughput: ``faceatlas batch embed`` on Ray (1 and 2 workers) vs a plain single-process
loop over ``FaceAnalyzer.analyze_many``, in the same run, on N images (LFW photos repeated under
distinct names: N symbolic links in a temporary folder).

Every row does the same work per image: read the file's bytes, decode, detect, align, embed. The
plain loops hold one analyzer (one intra-op thread; all cores' threads on one image at a time;
all cores as lanes of images side by side, ``FACEATLAS_PARALLEL_IMAGES``, the default) and call
``analyze_many`` on batches of ``--batch-size`` images; the Ray rows run the whole job (a local Ray
started for it, Ray Data reading, one analyzer per actor with one thread, a Parquet part per batch,
perceptual hash, done-manifest). ``job s`` includes starting Ray and the actors; ``pipeline s``
starts after ``ray.init`` (it includes starting the actors and loading their models). On a shared,
loaded machine wall time says little, so the table also gives CPU time per image (user + system of
this process and every process below it: Ray's GCS, raylet, workers and actors; Linux /proc),
measured around the job only: Ray's overhead per image is the Ray job's CPU ms/img minus the plain
1-thread loop's, and ``img/s per core`` = 1 / CPU s per image is the rate a dedicated core sustains.

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

from faceatlas.batch import BatchOptions, embed, ray_session
from faceatlas.engine import FaceAnalyzer
from faceatlas.settings import EngineSettings


def make_source(lfw: Path, n: int, folder: Path) -> list[Path]:
    photos = sorted(lfw.glob("*/*.jpg"))
    links = []
    for number in range(n):
        link = folder / f"{number:06d}_{photos[number % len(photos)].name}"
        link.symlink_to(photos[number % len(photos)])
        links.append(link)
    return links


def plain_loop(paths: list[Path], pack: str, threads: int | None, lanes: int | None,
               batch_size: int) -> tuple[float, int, int]:
    """Seconds, faces and lanes of one analyzer's ``analyze_many`` over ``paths`` in batches."""
    settings = EngineSettings(parallel_images=lanes)
    analyzer = FaceAnalyzer(pack, threads=threads, announce_license=False, settings=settings)
    analyzer.analyze_many([p.read_bytes() for p in paths[:batch_size]])  # warm (and make the lanes' twin)
    faces, start = 0, time.perf_counter()
    for first in range(0, len(paths), batch_size):
        batch = [p.read_bytes() for p in paths[first:first + batch_size]]
        faces += sum(len(f) for f in analyzer.analyze_many(batch))
    return time.perf_counter() - start, faces, analyzer.lane_count(batch_size)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system, with reaped children) of ``root`` and every process below it:
    the driver, Ray's GCS and raylet, its workers and actors (Linux ``/proc``)."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, (parent, _) in stats.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    return sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--pack", default="scrfd-mbf")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    console = Console(width=180)
    me = os.getpid()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "images"
        source.mkdir()
        paths = make_source(args.shared / "data" / "lfw" / "images", args.n, source)
        for threads, lanes in ((1, None), (None, 1), (None, None)):  # 1 thread; all cores on one image; lanes
            cpu = tree_cpu_seconds(me)
            seconds, faces, used = plain_loop(paths, args.pack, threads, lanes, args.batch_size)
            cpu = tree_cpu_seconds(me) - cpu
            label = f"plain analyze_many, 1 process, {threads or os.cpu_count()} thread(s), {used} lane(s)"
            rows.append((label, seconds, seconds, faces, cpu))
            console.print(f"{label}: {args.n / seconds:.1f} img/s, {cpu / args.n * 1000:.1f} CPU ms/img")
        for workers in args.workers:
            start = time.perf_counter()
            with ray_session(workers, None):
                cpu = tree_cpu_seconds(me)
                report = embed(str(source), f"{tmp}/out{workers}",
                               BatchOptions(workers=workers, pack=args.pack, batch_size=args.batch_size))
                cpu = tree_cpu_seconds(me) - cpu
            job = time.perf_counter() - start
            label = f"faceatlas batch embed, Ray, {workers} worker(s)"
            rows.append((label, job, report.seconds, report.faces, cpu))
            console.print(f"{label}: {report.images_per_second:.1f} img/s, job {job:.1f} s, "
                          f"{cpu / args.n * 1000:.1f} CPU ms/img, {report.errors} errors")
    plain_cpu = rows[0][4] / args.n
    table = Table(title=f"{args.n} images (LFW repeated), pack {args.pack}, batch {args.batch_size}, "
                        f"{os.cpu_count()} cores")
    for column in ("run", "job s", "pipeline s", "img/s", "faces", "CPU ms/img", "Ray CPU overhead ms/img",
                   "img/s per core (CPU)"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for label, job, pipeline, faces, cpu in rows:
        per_image = cpu / args.n
        overhead = f"{(per_image - plain_cpu) * 1000:.1f}" if "Ray" in label else ""
        table.add_row(label, f"{job:.1f}", f"{pipeline:.1f}", f"{args.n / pipeline:.1f}", str(faces),
                      f"{per_image * 1000:.1f}", overhead, f"{1 / per_image:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
