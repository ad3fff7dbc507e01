"""What stops or holds a server's start, checked on real parts: two servers that would count rates
and quotas apart on one database (SQLite file, PostgreSQL schema; a killed holder frees it), a
Redis that refuses the server's credentials or database, a Redis URL that does not parse, a
Redis unreachable at start (``serve`` waits for it; an app whose Redis is gone says so in
``/readyz``, and a refused call names no internal address), a setting every server process would
fail on (said once, before the start), a start that failed in the processes (never exit 0), a port
out of range."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from uvicorn.config import STARTUP_FAILURE

from faceatlas.cli.main import app as cli
from faceatlas.db import create_database_engine
from faceatlas.errors import InvalidArgument, InvalidSetting
from faceatlas.service import check_address, create_app, redis_state
from faceatlas.service.accounts import Accounts
from faceatlas.service.app import create_worker_app
from faceatlas.service.db import migrate
from faceatlas.service.lease import ServerLease
from faceatlas.service.redis_state import RedisState
from faceatlas.settings import ServiceSettings

DATABASE = "d" * 32  # the id of the database whose state these RedisState objects keep


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, new_database, tmp_path: Path) -> Iterator[str]:
    with new_database(request.param, tmp_path) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(shared: Path, folder: Path, **env: str) -> dict[str, str]:
    return {**os.environ, "FACEATLAS_MODEL_DIR": str(shared / "models"), "FACEATLAS_THREADS": "1",
            "FACEATLAS_INDEX_DIR": str(folder / "indexes"), **env}


def _serve(args: list[str], shared: Path, folder: Path, timeout: float = 60,
           **env: str) -> subprocess.CompletedProcess[str]:
    """``faceatlas serve --pack scrfd-mbf ARGS`` in a child process, once it ended: its own
    session, so that one still running after ``timeout`` is killed with every process it started."""
    child = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", "serve", "--pack", "scrfd-mbf", *args],
                             env=_environment(shared, folder, **env), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        pytest.fail(f"serve {' '.join(args)} still ran after {timeout} s: {err[-3000:]}")
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def _redis(deployment: str, seen: list[bool] | None = None):
    """A server's ``redis_identity``: the deployment id of its Redis (noting whether it was alone)."""
    def identity(alone: bool) -> str:
        if seen is not None:
            seen.append(alone)
        return deployment
    return identity


def test_a_server_without_redis_is_alone_on_its_database(database: str, new_database, tmp_path: Path) -> None:
    alone = ServerLease.take(database)
    with pytest.raises(InvalidSetting, match="another FaceAtlas server serves this database"):
        ServerLease.take(database)
    with pytest.raises(InvalidSetting, match="without FACEATLAS_REDIS_URL serves this database"):
        ServerLease.take(database, redis_identity=_redis("one"))
    (tmp_path / "other").mkdir()
    with new_database("postgresql" if "postgresql" in database else "sqlite", tmp_path / "other") as other:
        ServerLease.take(other).release()  # another database (or schema): not in the way
    alone.release()
    seen: list[bool] = []
    with_redis = [ServerLease.take(database, redis_identity=_redis("one", seen)) for _ in range(2)]
    assert seen == [True, False]  # the first alone (it may make the deployment id), the second beside it
    with pytest.raises(InvalidSetting, match="another FaceAtlas server"):
        ServerLease.take(database)
    with pytest.raises(InvalidSetting, match="count rates and quotas in another Redis"):
        ServerLease.take(database, redis_identity=_redis("two"))  # another Redis (or database number)
    for lease in with_redis:
        lease.release()
    ServerLease.take(database, redis_identity=_redis("two")).release()  # alone now: any Redis
    ServerLease.take(database).release()


def test_a_link_to_the_sqlite_file_is_the_same_database(tmp_path: Path) -> None:
    real = tmp_path / "data" / "service.db"
    real.parent.mkdir()
    holder = ServerLease.take(f"sqlite:///{real}")
    (tmp_path / "alias.db").symlink_to(real)
    os.link(real, tmp_path / "hard.db")
    try:
        for other in (f"sqlite:///{tmp_path / 'alias.db'}", f"sqlite:///{tmp_path / 'hard.db'}",
                      str(tmp_path / "data" / ".." / "data" / "service.db")):
            with pytest.raises(InvalidSetting, match="another FaceAtlas server"):
                ServerLease.take(other)
    finally:
        holder.release()
    as_uri = f"sqlite:///file:{real}?uri=true"  # an SQLite URI filename: the same file (was: "file:/...: no such file")
    holder = ServerLease.take(as_uri)
    try:
        with pytest.raises(InvalidSetting, match="another FaceAtlas server"):
            ServerLease.take(str(real))
        ServerLease.take("sqlite:///file:shared?mode=memory&uri=true").release()  # in memory: nothing to hold
    finally:
        holder.release()
    assert not Path("file:").exists()


def test_a_killed_server_frees_its_database_at_once(database: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom faceatlas.service.lease import ServerLease\n"
         "ServerLease.take(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)", database],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InvalidSetting):
            ServerLease.take(database)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    deadline = time.monotonic() + 10  # PostgreSQL ends the killed session's backend within moments
    while True:
        try:
            ServerLease.take(database).release()
            break
        except InvalidSetting:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_beside_a_server_without_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    lease = ServerLease.take(database)
    try:
        result = CliRunner().invoke(cli, ["serve", "--db", database, "--pack", "scrfd-mbf", "--port",
                                          str(_free_port())])
    finally:
        lease.release()
    assert result.exit_code == 2
    assert result.output.startswith("error (invalid_setting): another FaceAtlas server serves this database")
    assert "Traceback" not in result.output


def test_a_redis_of_another_deployment_is_refused_and_a_restarted_one_is_waited_for(
        redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment id in Redis: made by a server alone on its database; a server beside others
    finding none waits for their heartbeat to put it back (Redis restarted empty), and is refused
    when none comes (the others count in another Redis)."""
    monkeypatch.setattr(redis_state, "HEARTBEAT_SECONDS", 0.2)
    redis_server.flush()
    client = redis.Redis.from_url(redis_server.url)
    made = redis_state.deployment(client, DATABASE, alone=True)
    assert redis_state.deployment(client, DATABASE, alone=False) == made
    running = RedisState(ServiceSettings(database_url="sqlite://", redis_url=redis_server.url), lambda tenant: 0,
                         DATABASE)
    try:
        redis_server.flush()  # restarted empty: the running server's heartbeat puts the id back
        assert redis_state.deployment(client, DATABASE, alone=False) == made
    finally:
        running.close()
    redis_server.flush()
    started = time.monotonic()
    with pytest.raises(InvalidSetting, match="use another Redis"):
        redis_state.deployment(client, DATABASE, alone=False)
    assert time.monotonic() - started >= redis_state.restart_grace()


@pytest.fixture
def password(redis_server) -> Iterator[str]:
    """The test Redis with a password for the length of a test."""
    redis_server.flush()
    redis.Redis.from_url(redis_server.url).config_set("requirepass", "s3cret-pw")
    yield "s3cret-pw"
    redis.Redis.from_url(redis_server.url, password="s3cret-pw").config_set("requirepass", "")


def test_a_redis_refusing_the_server_stops_the_start_with_a_clear_line(redis_server, password: str,
                                                                        tmp_path: Path) -> None:
    port = redis_server.port
    for url, expected in ((f"redis://127.0.0.1:{port}/0", "refused this server's credentials"),
                          (f"redis://:wrong-pw@127.0.0.1:{port}/0", "refused this server's credentials"),
                          (f"redis://:{password}@127.0.0.1:{port}/99", "DB index is out of range")):
        state = RedisState(ServiceSettings(database_url="sqlite://", redis_url=url), lambda tenant: 0, DATABASE)
        try:
            with pytest.raises(InvalidSetting, match=expected) as refused:
                state.check()
        finally:
            state.close()
        assert "pw" not in str(refused.value) and f"127.0.0.1:{port}" in str(refused.value)
    result = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 's.db'}", "--pack", "scrfd-mbf",
                                      "--port", "0"],
                                env={"FACEATLAS_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert result.exit_code == 2 and result.output.startswith("error (invalid_setting): FACEATLAS_REDIS_URL: Redis at")
    good = RedisState(ServiceSettings(database_url="sqlite://", redis_url=f"redis://:{password}@127.0.0.1:{port}/0"),
                      lambda tenant: 0, DATABASE)
    try:
        good.check()
    finally:
        good.close()


def test_tls_asked_of_a_plain_redis_stops_the_start_with_a_clear_line(redis_server) -> None:
    """rediss:// to a Redis without TLS timed out on the handshake and was waited for for ever as
    "cannot be reached yet"; it is a setting to change, said at start."""
    redis_server.flush()
    state = RedisState(ServiceSettings(database_url="sqlite://", redis_url=f"rediss://127.0.0.1:{redis_server.port}/0"),
                       lambda tenant: 0, DATABASE)
    try:
        with pytest.raises(InvalidSetting, match="speaks no TLS .* use redis://"):
            state.check()
    finally:
        state.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:pw@localhost:abc/0", "port is a number"),
    ("redis://:pw@localhost:70000/0", "port is a number"),
    ("redis://:pw@/0", "names its host"),
    ("redis://:pw@localhost:6379/zero", "database is a number"),
    ("http://localhost:6379/0", "starts with redis://"),
])
def test_a_redis_url_that_does_not_parse_is_refused_without_its_password(url: str, expected: str) -> None:
    with pytest.raises(InvalidSetting, match=expected) as refused:
        ServiceSettings(database_url="sqlite://", redis_url=url)
    assert "pw" not in str(refused.value)
    with pytest.raises(InvalidSetting, match="socket_timeout"):  # an option of the query: at the client
        RedisState(ServiceSettings(database_url="sqlite://", redis_url="redis://:pw@localhost:6379/0?socket_timeout=x"),
                   lambda tenant: 0, DATABASE)


def test_a_redis_unreachable_at_start_is_waited_for_and_named_nowhere(new_database, fast_analyzer, examples: Path,
                                                                       tmp_path: Path) -> None:
    port = _free_port()
    with new_database("sqlite", tmp_path) as url:
        engine = create_database_engine(url)
        migrate(engine)
        accounts = Accounts(engine)
        accounts.create_tenant("acme")
        token = accounts.create_key("acme", ["detect"]).token
        settings = ServiceSettings(database_url=url, index_dir=tmp_path / "idx", pack="scrfd-mbf", workers=1,
                                   redis_url=f"redis://127.0.0.1:{port}/0")
        image = {"image": ("o.jpg", (examples / "examples" / "obama-240p.jpg").read_bytes(), "image/jpeg")}
        with TestClient(create_app(settings, analyzer=fast_analyzer),
                        headers={"Authorization": f"Bearer {token}"}) as http:
            ready = http.get("/readyz")
            assert (ready.status_code, ready.text) == (503, "the shared state (Redis) cannot be reached")
            refused = http.post("/v1/detect", files=image)
            assert (refused.status_code, refused.json()["error"]["code"]) == (503, "state_unavailable")
            assert refused.headers["retry-after"] == "1"
            assert str(port) not in refused.text and "127.0.0.1" not in refused.text
            assert http.get("/healthz").status_code == 200
        engine.dispose()


def test_serve_on_a_port_in_use_says_so_before_loading_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        database = f"sqlite:///{tmp_path / 'service.db'}"
        in_use = CliRunner().invoke(cli, ["serve", "--db", database, "--port", str(port)])
        no_host = CliRunner().invoke(cli, ["serve", "--db", database, "--host", "no-such-host.invalid"])
    assert (in_use.exit_code, in_use.output.strip()) == (2, f"error (validation_error): port {port} on 127.0.0.1 "
                                                            "is in use (another server?); choose another with --port")
    assert no_host.exit_code == 2 and "--host 'no-such-host.invalid' is no address" in no_host.output
    assert not (tmp_path / "service.db").exists()  # refused before anything was made


@pytest.mark.slow  # 15 s of waiting for Redis; CI runs it with the slow set
def test_serve_waits_for_a_redis_that_comes_up_after_it(unstarted_redis, shared: Path, tmp_path: Path) -> None:
    """A Redis unreachable at start is waited for (docs/deploy.md), also by a server alone on a
    fresh database, which must make the database's deployment id in it: it gave up after ~5 s
    ("cannot be reached to start beside the other servers of this database", exit 2), with no other
    server there. It starts once Redis answers, and is then ready."""
    log = tmp_path / "serve.log"
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "faceatlas.cli", "serve", "--pack", "scrfd-mbf", "--db",
         f"sqlite:///{tmp_path / 'service.db'}", "--port", str(port)],
        env=_environment(shared, tmp_path, FACEATLAS_REDIS_URL=unstarted_redis.url), stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "cannot be reached yet" not in log.read_text():
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(restart := redis_state.restart_grace() + 3)  # past the 5 s after which it gave up
        assert child.poll() is None, f"serve gave up within {restart} s: {log.read_text()[-3000:]}"
        assert "waits for it" in log.read_text()
        unstarted_redis.start()
        deadline = time.monotonic() + 90
        while True:
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        said = log.read_text()
        assert "answers: the server starts" in said and "Traceback" not in said and "other servers" not in said
    finally:
        with suppress(ProcessLookupError):  # gone already
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize(("variable", "value"), [("FACEATLAS_URL_ALLOWLIST", "a.example,ftp://files.example"),
                                                 ("FACEATLAS_CALIBRATION", "nosuch")])
def test_a_setting_every_process_would_fail_on_stops_serve_before_it_starts(
        variable: str, value: str, processes: int, redis_server, shared: Path, tmp_path: Path) -> None:
    """Each was found only by the app of each server process: a bad allow-list entry was a
    traceback (exit 1), with --processes 2 processes restarted for ever; an unknown calibration
    failed the app's startup (exit 3), with --processes 2 a traceback per process and exit 0.
    One line, exit 2, nothing made."""
    database = tmp_path / "service.db"
    env = {variable: value, **({"FACEATLAS_REDIS_URL": redis_server.url} if processes > 1 else {})}
    done = _serve(["--db", f"sqlite:///{database}", "--port", str(_free_port()), "--processes", str(processes)],
                  shared, tmp_path, timeout=45, **env)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error (invalid_setting): {variable}"), done.stderr[-3000:]
    assert not database.exists()


@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: 11 s, in CI's slow set
def test_serve_whose_processes_fail_to_start_exits_2(processes: int, redis_server, shared: Path,
                                                     tmp_path: Path) -> None:
    """A failure only the app's own start meets (here a Milvus that does not answer: the vector
    backend is opened by each process): uvicorn's supervisor stops once a process fails to start,
    and serve exited 0 (one process: uvicorn's 3). Exit 2 and a last line saying so."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    env = {"FACEATLAS_VECTOR_BACKEND": "milvus", "FACEATLAS_MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
           "FACEATLAS_MILVUS_TIMEOUT": "1"}
    if processes > 1:
        env["FACEATLAS_REDIS_URL"] = redis_server.url
    done = _serve(["--db", url, "--port", str(port := _free_port()), "--processes", str(processes)],
                  shared, tmp_path, timeout=90, **env)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error (error): ") and "failed to start" in last and f"127.0.0.1:{port}" in last, last
    # why, in one line per process (it was Starlette's traceback)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "error (vector_store_unavailable): no Milvus server could be reached" in done.stderr, done.stderr[-3000:]


@pytest.mark.slow  # 8 s; CI runs it with the slow set
def test_a_server_process_whose_app_cannot_be_built_stops_its_supervisor(shared: Path, tmp_path: Path) -> None:
    """The app factory of ``serve --processes N`` (and of a deployment running uvicorn or gunicorn on
    it, without serve's checks) raised, which uvicorn's supervisor took for a crash: it started the
    process again, for ever, a traceback each time. It fails the start (uvicorn's status 3), which
    stops the supervisor, and says why in one line."""
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "faceatlas.service.app:create_worker_app", "--workers", "2",
         "--port", str(_free_port())],
        env=_environment(shared, tmp_path, FACEATLAS_DATABASE_URL=f"sqlite:///{tmp_path / 'service.db'}",
                         FACEATLAS_URL_ALLOWLIST="ftp://files.example"),
        capture_output=True, text=True, timeout=60, start_new_session=True)
    assert "error (invalid_setting): FACEATLAS_URL_ALLOWLIST" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "failed to start, stopping the parent process" in done.stderr


def test_a_worker_app_that_cannot_be_built_exits_with_uvicorns_startup_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEATLAS_WORKERS", "0")
    with pytest.raises(SystemExit) as stopped:
        create_worker_app()
    assert stopped.value.code == STARTUP_FAILURE


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_on_a_port_out_of_range_names_the_port(port: str, shared: Path, tmp_path: Path) -> None:
    """--port 70000 loaded the models, then failed in uvicorn with an OverflowError traceback;
    --port -1 blamed --host."""
    done = _serve(["--db", f"sqlite:///{tmp_path / 'service.db'}", "--port", port], shared, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("error (usage): Invalid value for '--port'") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "service.db").exists()
    with pytest.raises(InvalidArgument, match=f"^--port is 0 to 65535 .*, not {port}$"):
        check_address("127.0.0.1", int(port))


def test_an_index_folder_that_is_a_file_stops_serve_before_it_starts(shared: Path, tmp_path: Path) -> None:
    """FACEATLAS_INDEX_DIR naming a file: each process's start failed with a traceback."""
    a_file = tmp_path / "indexes"
    a_file.write_text("")
    done = _serve(["--db", f"sqlite:///{tmp_path / 'service.db'}", "--port", "0"], shared, tmp_path,
                  FACEATLAS_INDEX_DIR=str(a_file))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error (bad_request): the index folder {a_file} is a file, not a folder: give the folder of the "
        "gallery's indexes")
    assert not (tmp_path / "service.db").exists()


def test_a_missing_liveness_model_stops_serve_before_it_starts(shared: Path, tmp_path: Path) -> None:
    """Every file of the pack is checked before the port is bound, not only the detector and
    recogniser: without a liveness model the server started, /readyz said ready, and liveness and
    KYC calls answered 503 model_missing."""
    models = tmp_path / "models"
    missing = "antispoof/2.7_80x80_MiniFASNetV2.onnx"
    for source in (shared / "models").rglob("*"):  # the shared models, but that one, linked
        if source.is_file() and source.relative_to(shared / "models").as_posix() != missing:
            (models / source.relative_to(shared / "models")).parent.mkdir(parents=True, exist_ok=True)
            (models / source.relative_to(shared / "models")).symlink_to(source)
    done = _serve(["--db", f"sqlite:///{tmp_path / 'service.db'}", "--port", "0"], shared, tmp_path,
                  FACEATLAS_MODEL_DIR=str(models), FACEATLAS_OFFLINE="1", FACEATLAS_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error (model_missing): ") and "MiniFASNetV2" in last, done.stderr[-3000:]
    assert "Uvicorn running" not in done.stderr


def test_an_index_folder_that_cannot_be_made_stops_serve_before_it_starts(shared: Path, tmp_path: Path) -> None:
    """FACEATLAS_INDEX_DIR where no folder can be made (under /proc): the server started, said it was
    ready, and every search was a 500 (FileNotFoundError in the log)."""
    done = _serve(["--db", f"sqlite:///{tmp_path / 'service.db'}", "--port", "0"], shared, tmp_path,
                  FACEATLAS_INDEX_DIR="/proc/faceatlas-indexes")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error (bad_request): the index folder /proc/faceatlas-indexes cannot be made or written ("), done.stderr
    assert not (tmp_path / "service.db").exists()


def test_a_servers_log_says_what_the_retention_sweep_deleted(shared: Path, tmp_path: Path) -> None:
    """FaceAtlas's INFO lines went nowhere under uvicorn (only its warnings reached stderr): a sweep
    that deleted expired KYC reference images at the server's start said nothing to the operator."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from faceatlas.apps.kyc import migrate as migrate_kyc
    from faceatlas.apps.kyc.db import KycReference, KycSession
    from faceatlas.db import utcnow

    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(url)
    migrate_kyc(engine)
    decided = utcnow() - timedelta(days=3)
    with Session(engine) as session, session.begin():
        session.add(KycSession(id="a" * 32, tenant="svc:acme", challenge=["blink"], status="rejected",
                               created_at=decided, expires_at=decided, decided_at=decided, reasons=[], details={},
                               retention_days=2))
        session.flush()
        for kind in ("document", "selfie"):
            session.add(KycReference(session_id="a" * 32, kind=kind, image=b"\xff\xd8",
                                     expires_at=decided + timedelta(days=2)))
    engine.dispose()
    log = tmp_path / "serve.log"
    child = subprocess.Popen(
        [sys.executable, "-m", "faceatlas.cli", "serve", "--pack", "scrfd-mbf", "--db", url, "--port",
         str(_free_port())], env=_environment(shared, tmp_path), stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "deleted 2 expired KYC reference images" not in log.read_text() and time.monotonic() < deadline:
            assert child.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert "deleted 2 expired KYC reference images" in log.read_text(), log.read_text()[-3000:]
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(60)


def test_serve_bounds_the_connections_it_holds(launch, shared, tmp_path: Path) -> None:
    """Findings 5 and 6 of the noisy-tenant probe: ``serve`` set no connection limit, and uploads
    trickled a byte at a time stayed open, 300 of them (bounded only by the process's file
    descriptors). With FACEATLAS_MAX_CONNECTIONS=3, a request while 3 requests trickled in are held
    is answered 503 at once by uvicorn; once they go, the server answers again."""
    database_url = f"sqlite:///{tmp_path / 'conn.db'}"
    migrate(create_database_engine(database_url))
    _, url = launch(database_url, shared, tmp_path / "server.log", FACEATLAS_MAX_CONNECTIONS="3")
    host, port = url.removeprefix("http://").split(":")
    trickled = []
    try:
        for _ in range(3):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: {host}\r\n".encode())  # and never the rest
            trickled.append(sock)
        time.sleep(0.5)
        refused = httpx.get(f"{url}/readyz", timeout=10)
        assert refused.status_code == 503
    finally:
        for sock in trickled:
            sock.close()
    deadline = time.monotonic() + 10
    while (answer := httpx.get(f"{url}/readyz", timeout=10)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer.status_code == 200
