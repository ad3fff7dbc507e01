"""A real uvicorn server on loopback, on SQLite and on PostgreSQL, with two tenants and their keys."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    accounts: Accounts
    database_url: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(database_url: str, shared: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``faceatlas serve`` in a child process; returns it once /readyz answers."""
    port = _free_port()
    environment = {
        **os.environ,
        "FACEATLAS_DATABASE_URL": database_url,
        "FACEATLAS_PACK": "scrfd-mbf",
        "FACEATLAS_MODEL_DIR": str(shared / "models"),
        "FACEATLAS_THREADS": "1",
        "FACEATLAS_INDEX_DIR": str(log.parent / "indexes"),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server not ready: {log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def launch():
    """``launch(database_url, shared, log, **env)`` starts an extra server; stopped at session end."""
    started: list[subprocess.Popen] = []

    def _launch(database_url: str, shared: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
        process, url = start_server(database_url, shared, log, **env)
        started.append(process)
        return process, url

    yield _launch
    for process in started:
        stop_server(process)


@pytest.fixture(scope="session")
def server(session_db_url: str, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database_url = session_db_url
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme", "Acme Retail")
    accounts.create_tenant("globex", "Globex")
    keys = {
        "acme_admin": accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token,
        "acme_write": accounts.create_key("acme", ["write"], rate_per_second=500, burst=500).token,
        "acme_read": accounts.create_key("acme", ["read"], rate_per_second=500, burst=500).token,
        "acme_detect": accounts.create_key("acme", ["detect"], rate_per_second=500, burst=500).token,
        "acme_slow": accounts.create_key("acme", ["detect"], rate_per_second=0.2, burst=2).token,
        "globex_admin": accounts.create_key("globex", ["admin"], rate_per_second=500, burst=500).token,
    }
    log = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_server(database_url, shared, log, FACEATLAS_MAX_UPLOAD_BYTES="3000000")
    yield Server(url, keys, accounts, database_url)
    stop_server(process)
    engine.dispose()
