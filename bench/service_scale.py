"""`faceatlas serve --processes N` at saturation, and what the shared state in Redis costs per call.

    eval "$(bash .ci/start-postgres.sh)"
    FACEATLAS_MODEL_DIR=../shared/models python bench/service_scale.py [--seconds 8] [--processes 1,2,4]

1. Throughput: detect calls (one LFW image each) from a concurrency of 4 per process + 4, against
   `faceatlas serve --processes N` (uvicorn's supervisor, one engine per process, FACEATLAS_THREADS=1,
   shared state in a redis-server this script starts) over PostgreSQL (a schema of
   ``FACEATLAS_TEST_PG_URL`` or ``--db``, dropped at the end); beside it the raw engine in this
   process (all cores) measured right before and after each series.
2. Overhead of the shared state per metered call — the key lookup, the token bucket, the quota
   spend and its settle — in memory (:class:`MemoryState`) vs Redis (:class:`RedisState`), p50/p99
   over ``--calls`` calls; and the end-to-end latency of a cheap metered call (GET /v1/collections)
   on one process with and without Redis.

The load client shares the machine's cores with the servers: absolute numbers are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, make_url, text

from faceatlas.db import create_database_engine
from faceatlas.engine import FaceAnalyzer
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import database_identity, migrate
from faceatlas.service.redis_state import RedisState
from faceatlas.service.shared_state import MemoryState, SharedState
from faceatlas.settings import ServiceSettings

SHARED = Path(os.environ.get("FACEATLAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_server(database: str, workdir: Path, processes: int, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FACEATLAS_DATABASE_URL": database, "FACEATLAS_PACK": "scrfd-mbf",
           "FACEATLAS_THREADS": "1", "FACEATLAS_WORKERS": "1", "FACEATLAS_QUEUE_SIZE": "64",
           "FACEATLAS_INDEX_DIR": str(workdir / "indexes"), "FACEATLAS_REDIS_URL": redis_url or ""}
    log = (workdir / f"server-{processes}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port),
                                "--processes", str(processes)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # each process accepts connections once its engine loaded: wait until all N said so
        started = (workdir / f"server-{processes}.log").read_text().count("Application startup complete")
        try:
            if started >= processes and httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server did not start: {(workdir / f'server-{processes}.log').read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def raw_engine_rate(analyzer: FaceAnalyzer, images: list[bytes], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        analyzer.analyze(images[done % len(images)])
        done += 1
    return done / (time.perf_counter() - start)


async def saturate(url: str, key: str, images: list[bytes], concurrency: int, seconds: float) -> tuple[float, int]:
    served = refused = 0
    deadline = time.perf_counter() + seconds

    async def user(worker: int, client: httpx.AsyncClient) -> None:
        nonlocal served, refused
        i = worker
        while time.perf_counter() < deadline:
            response = await client.post("/v1/detect", files={"image": ("q.jpg", images[i % len(images)],
                                                                         "image/jpeg")})
            i += concurrency
            if response.status_code == 200:
                served += 1
            elif response.status_code in (429, 503):
                refused += 1
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(user(w, client) for w in range(concurrency)))
        return served / (time.perf_counter() - started), refused


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(0.99 * (len(samples) - 1))] * 1000


def state_overhead(state: SharedState, accounts: Accounts, token: str, calls: int,
                   lookup: bool = True) -> tuple[float, float]:
    """p50/p99 ms of one metered call's state operations: key lookup (unless not ``lookup``),
    bucket, quota, settle."""
    times = []
    known = accounts.authenticate(token)
    for _ in range(calls):
        started = time.perf_counter()
        principal = state.principal(token, accounts.authenticate) if lookup else known
        assert principal is not None
        state.take(principal.key_id, principal.rate_per_second, principal.burst)
        state.spend(principal.tenant_id, None)
        state.settle(principal.tenant_id, True)
        times.append(time.perf_counter() - started)
    return percentiles(times)


def call_latency(url: str, key: str, calls: int) -> tuple[float, float]:
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for _ in range(calls):
            started = time.perf_counter()
            assert client.get("/v1/collections").status_code == 200
            times.append(time.perf_counter() - started)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--processes", default="1,2,4", help="'' measures the per-call overhead only")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--db", default=os.environ.get("FACEATLAS_TEST_PG_URL"), help="a PostgreSQL URL")
    args = parser.parse_args()
    if not args.db:
        sys.exit('needs PostgreSQL: eval "$(bash .ci/start-postgres.sh)" or --db URL')
    people = sorted((SHARED / "data" / "lfw" / "images").iterdir())[:200]
    images = [sorted(p.iterdir())[0].read_bytes() for p in people]
    analyzer = FaceAnalyzer("scrfd-mbf")
    analyzer.analyze(images[0])
    workdir = Path(tempfile.mkdtemp(prefix="faceatlas-scale-"))
    redis_process, redis_url = start_redis(workdir)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.db, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    database = make_url(args.db).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    engine = create_database_engine(database)
    try:
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("bench")
        key = accounts.create_key("bench", ["write"], rate_per_second=1e6, burst=1_000_000).token

        table = Table(title="detect at saturation: `faceatlas serve --processes N` (Redis + PostgreSQL)")
        for column in ("processes", "concurrency", "images/s", "vs 1 process", "raw engine images/s", "vs raw",
                       "refused"):
            table.add_column(column, justify="right")
        first = None
        for n in [int(v) for v in args.processes.split(",") if v]:
            server, url = start_server(database, workdir, n, redis_url)
            try:
                asyncio.run(saturate(url, key, images, 2, 2.0))  # warm every process
                raw_before = raw_engine_rate(analyzer, images, args.seconds / 2)
                rate, refused = asyncio.run(saturate(url, key, images, 4 * n + 4, args.seconds))
                raw = (raw_before + raw_engine_rate(analyzer, images, args.seconds / 2)) / 2
            finally:
                stop(server)
            first = first or rate
            table.add_row(str(n), str(4 * n + 4), f"{rate:.1f}", f"{rate / first:.2f}x", f"{raw:.1f}",
                          f"{rate / raw:.0%}", str(refused))
        if first is not None:
            console.print(table)

        overhead = Table(title=f"shared state per metered call (key lookup + bucket + quota + settle), "
                         f"{args.calls} calls; in memory the key is read from PostgreSQL on every call")
        for column in ("state", "p50 ms", "p99 ms"):
            overhead.add_column(column, justify="right")
        settings = ServiceSettings(database_url=database, redis_url=redis_url)
        states: list[tuple[str, SharedState]] = [("in memory (one process)", MemoryState(accounts.calls_this_month,
                                                                                          settings)),
                                                 ("Redis", RedisState(settings, accounts.calls_this_month,
                                                                             database_identity(accounts.engine)))]
        for name, state in states:
            p50, p99 = state_overhead(state, accounts, key, args.calls)
            overhead.add_row(name, f"{p50:.3f}", f"{p99:.3f}")
            p50, p99 = state_overhead(state, accounts, key, args.calls, lookup=False)
            overhead.add_row(f"{name}, without the key lookup", f"{p50:.3f}", f"{p99:.3f}")
            state.close()
        for name, redis_for_server in (("GET /v1/collections, 1 process, in memory", None),
                                       ("GET /v1/collections, 1 process, Redis", redis_url)):
            server, url = start_server(database, workdir, 1, redis_for_server)
            try:
                call_latency(url, key, 50)
                p50, p99 = call_latency(url, key, min(args.calls, 500))
            finally:
                stop(server)
            overhead.add_row(name, f"{p50:.3f}", f"{p99:.3f}")
        console.print(overhead)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        redis_process.kill()


if __name__ == "__main__":
    main()
