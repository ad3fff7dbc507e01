"""The API with two tenants and their keys, on SQLite and on PostgreSQL: in-process (``api``: a
``TestClient`` over the app, for route behaviour) and as a real uvicorn server on loopback
(``server``: for what needs sockets and a process: body limits while streaming, overload, fuzzing)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from faceatlas.client import FaceAtlasClient
from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    accounts: Accounts
    database_url: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@dataclass
class InProcess:
    """The app in this process (``TestClient``): same ``keys``/``accounts``/``client()`` as :class:`Server`."""

    app: object
    http: TestClient
    keys: dict[str, str]
    accounts: Accounts
    database_url: str
    url: str = "http://testserver"

    def client(self, key: str | None = None) -> nullcontext[TestClient]:
        """A client with ``key``'s bearer header (the app runs already: entering it starts nothing)."""
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return nullcontext(TestClient(self.app, headers=headers))

    def api_client(self, key: str) -> FaceAtlasClient:
        """The Python client (faceatlas.client) over this app."""
        return FaceAtlasClient(self.url, self.keys.get(key, key), http=self.http)

    def own_tenant(self) -> tuple[str, FaceAtlasClient]:
        """A tenant for one test (its keys, usage, audit trail, collections, stores and KYC sessions
        are no other test's) and its admin client."""
        tenant = f"own-{uuid.uuid4().hex[:12]}"
        self.accounts.create_tenant(tenant)
        return tenant, self.api_client(self.accounts.create_key(tenant, ["admin"], rate_per_second=500,
                                                                burst=500).token)


def _tenants(accounts: Accounts) -> dict[str, str]:
    """The tenants acme and globex and their keys, by name."""
    accounts.create_tenant("acme", "Acme Retail")
    accounts.create_tenant("globex", "Globex")
    return {
        "acme_admin": accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token,
        "acme_write": accounts.create_key("acme", ["write"], rate_per_second=500, burst=500).token,
        "acme_read": accounts.create_key("acme", ["read"], rate_per_second=500, burst=500).token,
        "acme_detect": accounts.create_key("acme", ["detect"], rate_per_second=500, burst=500).token,
        "acme_slow": accounts.create_key("acme", ["detect"], rate_per_second=0.2, burst=2).token,
        "globex_admin": accounts.create_key("globex", ["admin"], rate_per_second=500, burst=500).token,
    }


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def api(request, new_database, fast_analyzer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """``create_app`` in this process over a fresh database and the session's scrfd-mbf analyzer."""
    folder = tmp_path_factory.mktemp("api")
    with new_database(request.param, folder) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        keys = _tenants(accounts)
        settings = ServiceSettings(
            database_url=database_url, index_dir=folder / "indexes", pack="scrfd-mbf", workers=1,
            max_upload_bytes=3_000_000,
        )
        app = create_app(settings, analyzer=fast_analyzer)
        with TestClient(app) as http:
            yield InProcess(app, http, keys, accounts, database_url)
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_taken(log_text: str) -> bool:
    """The server's log says its port was taken: by ``serve``'s own check, or by uvicorn's bind after
    the models loaded (another process took the free port picked meanwhile)."""
    return "is in use (another server?)" in log_text or "address already in use" in log_text.lower()


def start_server(database_url: str, shared: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``faceatlas serve`` in a child process; returns it once /readyz answers from it. A free
    port picked here may be taken by another process before the child binds it: then the child
    exits saying so and is started again on another port (3 tries)."""
    environment = {
        **os.environ,
        "FACEATLAS_DATABASE_URL": database_url,
        "FACEATLAS_PACK": "scrfd-mbf",
        "FACEATLAS_MODEL_DIR": str(shared / "models"),
        "FACEATLAS_THREADS": "1",
        "FACEATLAS_INDEX_DIR": str(log.parent / "indexes"),
        **env,
    }
    tries = 3
    for attempt in range(1, tries + 1):
        port = _free_port()
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "faceatlas.cli", "serve", "--port", str(port)],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        # uvicorn says this once its socket listens: a 200 before it is another process's, on a port taken
        listening = f"Uvicorn running on {url}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                text = log.read_text()
                if attempt < tries and _port_taken(text):
                    break  # another port
                raise RuntimeError(f"server exited: {text[-3000:]}")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and listening in log.read_text() and process.poll() is None:
                return process, url
            time.sleep(0.3)
        else:
            process.kill()
            process.wait(timeout=15)
            raise RuntimeError(f"server not ready: {log.read_text()[-3000:]}")
    raise AssertionError("unreachable: the last try returns or raises")


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


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request, new_database, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server over a database of its own (the security tests load these fixtures again:
    each instance must not meet the other's tenants)."""
    folder = tmp_path_factory.mktemp("server")
    with new_database(request.param, folder) as database_url:
        engine = create_database_engine(database_url)
        migrate(engine)
        accounts = Accounts(engine)
        keys = _tenants(accounts)
        process, url = start_server(database_url, shared, folder / "server.log", FACEATLAS_MAX_UPLOAD_BYTES="3000000")
        yield Server(url, keys, accounts, database_url)
        stop_server(process)
        engine.dispose()


# -- Redis: the shared state of many processes -----------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` of this test session on loopback (no persistence: a restart empties it)."""

    binary: str
    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


def _redis_binary() -> str:
    import shutil

    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        pytest.skip("no redis-server: apt-get install redis-server (.ci/run does)")
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` (Debian package; .ci/run installs it) on a free loopback port."""
    server = RedisServer(_redis_binary(), tmp_path_factory.mktemp("redis"), _free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def unstarted_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of this test on a free loopback port, not started yet (``.start()``): a
    Redis that comes up after the servers that use it; stopped after the test."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(_redis_binary(), folder, _free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_tools() -> SimpleNamespace:
    """``start``/``stop`` a ``faceatlas serve`` child process and pick a ``free_port``, for tests
    that manage their own servers (tests do not import conftest modules)."""
    return SimpleNamespace(start=start_server, stop=stop_server, free_port=_free_port)


@dataclass
class AdminApp:
    """The app over a database of its own with one tenant, ``acme``, and its admin key (``token``),
    sent by ``http``; ``state`` says where the shared state lives: this process's ``memory`` or ``redis``."""
    http: TestClient
    accounts: Accounts
    database_url: str
    state: str
    token: str


@pytest.fixture(scope="session")
def admin_app(redis_server, new_database, fast_analyzer):
    """Opens an :class:`AdminApp` over a new ``backend`` database ("sqlite"/"postgresql") in ``folder``,
    with its shared state in ``state`` ("memory"/"redis": the Redis is emptied first)."""
    @contextmanager
    def _open(backend: str, state: str, folder: Path) -> Iterator[AdminApp]:
        redis_server.flush()
        with new_database(backend, folder) as url:
            engine = create_database_engine(url)
            migrate(engine)
            accounts = Accounts(engine)
            accounts.create_tenant("acme")
            admin = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
            settings = ServiceSettings(database_url=url, index_dir=folder / "indexes", pack="scrfd-mbf", workers=1,
                                       redis_url=redis_server.url if state == "redis" else None)
            with TestClient(create_app(settings, analyzer=fast_analyzer),
                            headers={"Authorization": f"Bearer {admin}"}) as http:
                yield AdminApp(http, accounts, url, state, admin)
            engine.dispose()
    return _open
