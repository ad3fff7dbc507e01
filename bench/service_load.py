"""Load test of `faceatlas serve`: search-by-image and compare at rising concurrency, micro-batching
on vs off, against the raw engine on the same images in the same run.

    FACEATLAS_MODEL_DIR=../shared/models python bench/service_load.py [--seconds 6] [--levels 1,2,4,8,16,32]
    FACEATLAS_MODEL_DIR=../shared/models python bench/service_load.py --per-request [--requests 30]

Prints req/s, p50/p99 latency and refusals (503/429) per level, the service/raw-engine ratio at
saturation, and the server's memory before and after. The load client shares the machine's cores
with the server, as a caveat for absolute numbers.

``--per-request``: one caller, the app in this process (no sockets): the median and p90 latency of
requests whose cost is not the models' (a search by embedding, a console page, a store dashboard
with today's charts, an album's people, a store's members), to compare one version of the service
with another on the same machine (run it with each version's package first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from faceatlas.db import create_database_engine
from faceatlas.engine import FaceAnalyzer
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate

SHARED = Path(os.environ.get("FACEATLAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
console = Console()


def lfw_images(count: int) -> list[Path]:
    people = sorted((SHARED / "data" / "lfw" / "images").iterdir())
    return [sorted(p.iterdir())[0] for p in people[:count]]


def raw_engine_rate(analyzer: FaceAnalyzer, images: list[bytes], seconds: float) -> float:
    """Images/s of one in-process analyzer (all cores) on the same images."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        analyzer.analyze(images[done % len(images)])
        done += 1
    return done / (time.perf_counter() - start)


def start_server(database: str, workdir: Path, batching: bool, pack: str,
                 threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FACEATLAS_DATABASE_URL": database, "FACEATLAS_PACK": pack,
           "FACEATLAS_THREADS": str(threads or ""), "FACEATLAS_WORKERS": "2", "FACEATLAS_QUEUE_SIZE": "16",
           "FACEATLAS_BATCHING": "1" if batching else "0", "FACEATLAS_INDEX_DIR": str(workdir / "indexes")}
    log = (workdir / f"server-{batching}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


async def run_level(url: str, key: str, operation: str, images: list[bytes], concurrency: int,
                    seconds: float) -> dict:
    latencies: list[float] = []
    refused = 0
    deadline = time.perf_counter() + seconds

    async def user(worker: int, client: httpx.AsyncClient) -> None:
        nonlocal refused
        i = worker
        while time.perf_counter() < deadline:
            image = images[i % len(images)]
            i += concurrency
            started = time.perf_counter()
            if operation == "search":
                response = await client.post("/v1/collections/bench/search", params={"k": 5},
                                             files={"image": ("q.jpg", image, "image/jpeg")})
            else:
                other = images[(i + 1) % len(images)]
                response = await client.post("/v1/compare", files={"image_a": ("a.jpg", image, "image/jpeg"),
                                                                   "image_b": ("b.jpg", other, "image/jpeg")})
            if response.status_code in (429, 503):
                refused += 1
                await asyncio.sleep(float(response.headers.get("retry-after", 1)) / 10)
            elif response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(user(w, client) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    images_per_call = 1 if operation == "search" else 2
    return {"rps": len(latencies) / elapsed, "images_s": len(latencies) * images_per_call / elapsed,
            "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan"),
            "refused": refused}


def per_request(pack: str, requests: int) -> None:
    """Latency of one caller's requests, in process, each after one unmeasured warm-up request."""
    import re

    from fastapi.testclient import TestClient

    from faceatlas.apps.retail import Camera, Entry, RetailStore, StoreConfig
    from faceatlas.db import utcnow
    from faceatlas.service import create_app
    from faceatlas.settings import ServiceSettings

    workdir = Path(tempfile.mkdtemp(prefix="faceatlas-requests-"))
    database = f"sqlite:///{workdir / 'requests.db'}"
    engine = create_database_engine(database)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("bench")
    key = accounts.create_key("bench", ["admin"], rate_per_second=1e6, burst=1_000_000).token
    analyzer = FaceAnalyzer(pack)
    image = lfw_images(1)[0].read_bytes()
    app = create_app(ServiceSettings(database_url=database, index_dir=workdir / "indexes", pack=pack, workers=1),
                     analyzer=analyzer)
    config = StoreConfig(id="bench-store", tenant="bench", cameras=[Camera(id="door", role="door")])
    with RetailStore.open(config, analyzer, database, index_dir=workdir / "indexes") as store:
        for track in range(20):
            store.entry(Entry("door", utcnow(), track=f"t{track}"))
    with TestClient(app) as http:
        api = {"Authorization": f"Bearer {key}"}
        http.post("/v1/collections", json={"name": "bench"}, headers=api).raise_for_status()
        http.post("/v1/collections/bench/subjects/one/faces", files={"image": ("e.jpg", image)},
                  headers=api).raise_for_status()
        face = http.post("/v1/detect", params={"embedding": "true"}, files={"image": ("e.jpg", image)},
                         headers=api).json()["faces"][0]
        body = {"embedding": face["embedding"], "recognizer_id": face["recognizer_id"]}
        http.post("/v1/albums/bench/photos", files={"image": ("e.jpg", image)}, headers=api).raise_for_status()
        person = http.get("/v1/albums/bench/people", headers=api).json()["people"][0]["id"]
        token = re.search(r'name="csrf" value="([^"]+)"', http.get("/console/login").text)
        assert token is not None
        http.post("/console/login", data={"key": key, "csrf": token.group(1)}, follow_redirects=False)
        calls = {
            "search by embedding": lambda: http.post("/v1/collections/bench/search", json=body, headers=api),
            "console page (galleries)": lambda: http.get("/console/galleries"),
            "store dashboard (2 charts)": lambda: http.get("/console/store/bench-store"),
            "album people": lambda: http.get("/v1/albums/bench/people", headers=api),
            "album person's faces": lambda: http.get(f"/v1/albums/bench/people/{person}/faces", headers=api),
            "store members": lambda: http.get("/v1/retail/stores/bench-store/members", headers=api),
            "store occupancy": lambda: http.get("/v1/retail/stores/bench-store/occupancy", headers=api),
        }
        table = Table(title=f"per request, one caller, in process ({requests} requests each)")
        for column in ("request", "p50 ms", "p90 ms"):
            table.add_column(column, justify="right")
        for name, call in calls.items():
            call().raise_for_status()
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                call().raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            table.add_row(name, f"{statistics.median(times):.1f}", f"{times[int(0.9 * (len(times) - 1))]:.1f}")
        console.print(table)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--pack", default="scrfd-mbf", help="FACEATLAS_PROVIDER picks ONNX Runtime or OpenVINO")
    parser.add_argument("--threads", type=int, default=1,
                        help="the server's FACEATLAS_THREADS per worker (0: unset, i.e. every core)")
    parser.add_argument("--per-request", action="store_true",
                        help="instead: one caller's latency of requests that load no model (see above)")
    parser.add_argument("--requests", type=int, default=30, help="requests of each kind with --per-request")
    args = parser.parse_args()
    if args.per_request:
        per_request(args.pack, args.requests)
        return
    levels = [int(v) for v in args.levels.split(",")]
    paths = lfw_images(args.identities)
    images = [p.read_bytes() for p in paths]
    analyzer = FaceAnalyzer(args.pack)
    analyzer.analyze(images[0])
    workdir = Path(tempfile.mkdtemp(prefix="faceatlas-load-"))
    summary = []
    for batching in (True, False):
        database = f"sqlite:///{workdir / f'load-{batching}.db'}"
        engine = create_database_engine(database)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("bench")
        key = accounts.create_key("bench", ["write"], rate_per_second=1e6, burst=1_000_000).token
        process, url = start_server(database, workdir, batching, args.pack, args.threads)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
                client.post("/v1/collections", json={"name": "bench"})
                for path, image in zip(paths, images):
                    client.post(f"/v1/collections/bench/subjects/{path.parent.name}/faces",
                                files={"image": ("e.jpg", image, "image/jpeg")})
            memory_before = rss_mib(process.pid)
            for operation in ("search", "compare"):
                table = Table(title=f"{operation} — micro-batching {'on' if batching else 'off'}")
                for column in ("concurrency", "req/s", "images/s", "vs raw", "p50 ms", "p99 ms", "refused"):
                    table.add_column(column, justify="right")
                # the raw engine is measured right before and after each series (this machine is shared)
                raw_before = raw_engine_rate(analyzer, images, args.seconds)
                best = 0.0
                rows = []
                for level in levels:
                    row = asyncio.run(run_level(url, key, operation, images, level, args.seconds))
                    best = max(best, row["images_s"])
                    rows.append((level, row))
                raw = (raw_before + raw_engine_rate(analyzer, images, args.seconds)) / 2
                for level, row in rows:
                    table.add_row(str(level), f"{row['rps']:.1f}", f"{row['images_s']:.1f}",
                                  f"{row['images_s'] / raw:.0%}", f"{row['p50']:.0f}", f"{row['p99']:.0f}",
                                  str(row["refused"]))
                console.print(table)
                summary.append((operation, batching, best, raw))
            console.print(f"server RSS {memory_before:.0f} MiB before load, {rss_mib(process.pid):.0f} MiB after")
        finally:
            process.terminate()
            process.wait(timeout=20)
            engine.dispose()
    table = Table(title="saturation throughput vs the raw engine measured around each series")
    for column in ("operation", "micro-batching", "service images/s", "raw images/s", "ratio"):
        table.add_column(column, justify="right")
    for operation, batching, best, raw in summary:
        table.add_row(operation, "on" if batching else "off", f"{best:.1f}", f"{raw:.1f}", f"{best / raw:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
