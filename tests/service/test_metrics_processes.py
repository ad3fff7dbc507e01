"""``faceatlas serve --processes 2``: ``/metrics`` is the sum of every process's counters,
whichever process answers the scrape (each process showed its own: two counter sets alternated,
and Prometheus saw resets and wrong rates)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate

CALLS = 30


def _served_calls(exposition: str) -> float:
    """The API calls counted, but for ``other`` (the scrapes and health checks themselves)."""
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               if family.name == "faceatlas_requests" for sample in family.samples
               if sample.name == "faceatlas_requests_total" and sample.labels["operation"] != "other")


@pytest.mark.slow  # two processes loading their engines: 15 s or more; CI runs it with the slow set
def test_metrics_of_serve_processes_2_sum_every_process(redis_server, new_database, shared: Path, service_tools,
                                                        tmp_path: Path) -> None:
    with new_database("postgresql", tmp_path) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        token = accounts.create_key("acme", ["read"], rate_per_second=1000, burst=1000).token
        port, log = service_tools.free_port(), tmp_path / "serve.log"
        env = {**os.environ, "FACEATLAS_DATABASE_URL": database_url, "FACEATLAS_PACK": "scrfd-mbf",
               "FACEATLAS_MODEL_DIR": str(shared / "models"), "FACEATLAS_THREADS": "1",
               "FACEATLAS_REDIS_URL": redis_server.url, "FACEATLAS_INDEX_DIR": str(tmp_path / "indexes")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        server = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port),
                                   "--processes", "2"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        folder = None
        try:
            deadline = time.monotonic() + 180
            while log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
                assert server.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            assert log.read_text().count("Application startup complete") == 2, log.read_text()[-3000:]
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
            folder = next((Path(v.split(b"=", 1)[1].decode()) for v in environ
                           if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")), None)
            url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
            for _ in range(CALLS):  # a connection each: the kernel hands them to either process
                assert httpx.get(f"{url}/v1/collections", headers=headers).status_code == 200
            scrapes = [_served_calls(httpx.get(f"{url}/metrics").text) for _ in range(20)]
            assert scrapes == [CALLS] * 20
            assert folder is not None and folder.is_dir()  # the processes' metrics folder, made by the parent
        finally:
            server.terminate()
            try:
                server.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            engine.dispose()
        assert server.returncode == 0, log.read_text()[-3000:]
        assert folder is not None and not folder.exists()  # the parent removed the metrics folder
