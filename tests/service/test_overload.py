"""Under overload the bounded queue answers 503 with Retry-After; nothing crashes, memory stays put."""

from __future__ import annotations

import asyncio

import httpx

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def _burst(url: str, key: str, photo: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        calls = [client.post("/v1/detect", files={"image": ("p.jpg", photo, "image/jpeg")}) for _ in range(count)]
        return await asyncio.gather(*calls)


def test_overload_is_refused_with_503_and_the_server_survives(shared, examples, tmp_path, launch):
    url = f"sqlite:///{tmp_path / 'overload.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("load")
    key = accounts.create_key("load", ["detect"], rate_per_second=10_000, burst=10_000).token
    process, base = launch(url, shared, tmp_path / "server.log", FACEATLAS_WORKERS="1", FACEATLAS_QUEUE_SIZE="2")
    try:
        photo = (examples / "examples" / "obama-720p.jpg").read_bytes()
        asyncio.run(_burst(base, key, photo, 4))  # warm up
        before = _rss_kib(process.pid)
        rounds = [asyncio.run(_burst(base, key, photo, 24)) for _ in range(3)]
        after = _rss_kib(process.pid)
        statuses = [r.status_code for responses in rounds for r in responses]
        refused = [r for responses in rounds for r in responses if r.status_code == 503]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 3 and refused
        assert all(r.json()["error"]["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1 for r in refused)
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert after - before < 150_000, f"RSS grew by {after - before} KiB over 72 requests"
        metrics = httpx.get(f"{base}/metrics").text
        assert 'faceatlas_rejected_total{reason="overloaded"}' in metrics
    finally:
        engine.dispose()
