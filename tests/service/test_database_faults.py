"""The database failing, as an operator meets it: an unexpected database error's traceback holds
no statement parameter (a subject's name, metadata, embedding, face crop); a PostgreSQL that hangs
(its processes stopped: a network black hole) fails calls within the connect timeout, ``/readyz``
within its own bound, and leaves ``/healthz`` answering at once; an outage is logged once as it
starts and once as it ends, naming no credential."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from faceatlas.db import create_database_engine
from faceatlas.service import create_app
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))

_FAIL_PG = ["CREATE FUNCTION probe_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'probe'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER probe_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION probe_fail()"]


def test_no_engine_writes_a_statement_s_parameters_into_its_errors(db_url: str) -> None:
    """An error's text (what a traceback in a log shows) names the statement, not its values."""
    engine = create_database_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe_people (name VARCHAR(40) PRIMARY KEY)"))
        connection.execute(text("INSERT INTO probe_people VALUES (:name)"), {"name": "Erika"})
    with pytest.raises(Exception) as failure, engine.begin() as connection:
        connection.execute(text("INSERT INTO probe_people VALUES (:name), (:other)"),
                           {"name": "Max Mustermann", "other": "Max Mustermann"})
    engine.dispose()
    said = str(failure.value)  # PostgreSQL's own DETAIL (the key) comes before the statement: not ours
    assert "INSERT INTO probe_people" in said and "Mustermann" not in said.split("[SQL:")[1], said


@pytest.fixture
def pg_url(new_database, tmp_path: Path) -> Iterator[str]:
    with new_database("postgresql", tmp_path) as url:
        yield url


def test_an_unexpected_database_error_logs_no_parameter(pg_url: str, fast_analyzer, examples: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Inserts that fail on the database (a trigger raising: any fault that is no OperationalError
    nor a conflict) answer 500, and the logged traceback names the statement but none of its values
    (it held the name, the metadata, the embedding and the JPEG crop)."""
    db_url = pg_url
    engine = create_database_engine(db_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    settings = ServiceSettings(database_url=db_url, index_dir=tmp_path / "idx", pack="scrfd-mbf", workers=1)
    image = (examples / "examples" / "obama-240p.jpg").read_bytes()
    with TestClient(create_app(settings, analyzer=fast_analyzer), headers={"Authorization": f"Bearer {token}"},
                    raise_server_exceptions=False) as http:
        assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
        assert http.post("/v1/collections/staff/subjects", json={"id": "emp-1"}).status_code == 201
        with engine.begin() as connection:
            connection.execute(text(_FAIL_PG[0]))
            for table in ("subjects", "faces"):
                connection.execute(text(_FAIL_PG[1].format(table=table)))
        with caplog.at_level(logging.ERROR):
            made = http.post("/v1/collections/staff/subjects", json={
                "id": "emp-9999", "name": "Erika Mustermann", "metadata": {"passport": "C01X00T47"}})
            enrolled = http.post("/v1/collections/staff/subjects/emp-1/faces",
                                 files={"image": ("o.jpg", image, "image/jpeg")})
    engine.dispose()
    assert (made.status_code, enrolled.status_code) == (500, 500), (made.text, enrolled.text)
    logged = caplog.text
    assert "INSERT INTO subjects" in logged and "INSERT INTO faces" in logged, logged[-3000:]  # the tracebacks
    for value in ("Erika", "C01X00T47", "emp-9999", "Binary(", "JFIF", "\\xff\\xd8"):
        assert value not in logged, value


# -- a PostgreSQL of this module's own, whose processes are stopped ------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server started for this module alone (``.ci/start-postgres.sh`` with a data
    folder and port of its own): its URL and data folder. Stopped (and resumed first) at the end."""
    if not os.environ.get("FACEATLAS_TEST_PG_URL") or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip('needs PostgreSQL (run: eval "$(bash .ci/start-postgres.sh)")')
    data = Path(tempfile.mkdtemp(prefix="faceatlas-hang-pg-")) / "data"
    data.parent.chmod(0o755)
    port = _free_port()
    env = {**os.environ, "FACEATLAS_PG_DATA": str(data), "FACEATLAS_PG_PORT": str(port), "FACEATLAS_PG_DB": "hang"}
    started = subprocess.run(["bash", str(REPO / ".ci" / "start-postgres.sh")], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().split("=", 1)[1]
    try:
        yield url, data
    finally:
        _resume(data)
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *stop] if os.getuid() == 0 else stop,
                       capture_output=True, timeout=60)
        shutil.rmtree(data.parent, ignore_errors=True)


def _processes(data: Path) -> list[int]:
    """The postmaster of ``data`` and its children."""
    postmaster = int((data / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True).stdout
    return [postmaster, *(int(pid) for pid in children.split())]


def _pause(data: Path) -> None:
    for pid in _processes(data):
        os.kill(pid, signal.SIGSTOP)


def _resume(data: Path) -> None:
    for pid in _processes(data):
        os.kill(pid, signal.SIGCONT)


def test_a_hung_postgresql_fails_calls_within_the_connect_timeout(private_postgres: tuple[str, Path], service_tools,
                                                                 shared: Path, tmp_path: Path) -> None:
    """The postmaster and its backends stopped (SIGSTOP): calls answer 503 database_unavailable
    within the connect timeout (they hung ~130 s, or until it came back), ``/readyz`` 503 within
    its bound and never piling up (45 probes filled the threadpool), ``/healthz`` and ``/metrics`` at
    once; the outage is logged once as it starts and once as it ends, without a traceback."""
    url, data = private_postgres
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=500, burst=500).token
    engine.dispose()
    password_url = make_url(url).set(password="s3cret-pw").render_as_string(hide_password=False)  # trust auth
    log = tmp_path / "server.log"
    process, base = service_tools.start(password_url, shared, log, FACEATLAS_DB_CONNECT_TIMEOUT="2",
                                        FACEATLAS_KEY_CACHE_SECONDS="0")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            assert http.get("/v1/collections").status_code == 200  # a pooled connection waits
            _pause(data)
            try:
                with concurrent.futures.ThreadPoolExecutor(60) as pool:
                    probes = [pool.submit(httpx.get, f"{base}/readyz", timeout=30) for _ in range(45)]
                    time.sleep(0.5)
                    for path in ("/healthz", "/metrics"):
                        began = time.monotonic()
                        assert http.get(path, timeout=5).status_code == 200
                        assert time.monotonic() - began < 1.0, path
                    began = time.monotonic()
                    refused = http.get("/v1/collections")
                    took = time.monotonic() - began
                    answers = [probe.result() for probe in probes]
                assert (refused.status_code, refused.json()["error"]["code"]) == (503, "database_unavailable")
                assert took < 8, took  # a pooled connection's check (2 s) and a new connection (2 s)
                assert {a.status_code for a in answers} == {503}
                began = time.monotonic()
                assert http.get("/readyz", timeout=30).status_code == 503
                assert time.monotonic() - began < 4
            finally:
                _resume(data)
            deadline = time.monotonic() + 20
            while http.get("/v1/collections").status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                time.sleep(0.2)
            assert http.get("/readyz").status_code == 200
    finally:
        service_tools.stop(process)
    logged = log.read_text()
    fails = [line for line in logged.splitlines() if "the database (" in line and ") fails (" in line]
    back = [line for line in logged.splitlines() if "the database (" in line and line.endswith(") answers again")]
    assert len(fails) == 1 and len(back) == 1, logged[-4000:]
    assert f"127.0.0.1:{make_url(url).port}/hang" in fails[0]
    assert "s3cret-pw" not in logged and "Traceback" not in logged, logged[-4000:]


def test_a_locked_sqlite_is_no_outage_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every OperationalError was an outage begun ("the database fails ... until it is back") and
    ended: SQLite's busy timeout under write contention (a deadlock, a serialization failure on
    PostgreSQL) logged a pair per contended call, though the database answered all along. A
    database that cannot be opened is still one."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from faceatlas.service.errors import DatabaseOutage

    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = create_database_engine(url, busy_s=0.2)
    outage = DatabaseOutage(url)
    outage.watch(engine)
    caplog.set_level(logging.WARNING, logger="faceatlas")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    for _ in range(2):
        holder = sqlite3.connect(tmp_path / "x.db")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"), engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        holder.rollback()
        holder.close()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    assert not [r for r in caplog.records if "the database" in r.getMessage()], caplog.text
    (tmp_path / "gone").mkdir()
    missing = create_database_engine(f"sqlite:///{tmp_path / 'gone'}", busy_s=0.2)  # a folder: unable to open
    outage.watch(missing)
    with pytest.raises(OperationalError), missing.connect() as connection:
        connection.execute(text("SELECT 1"))
    missing.dispose()
    assert [r.getMessage() for r in caplog.records if "fails" in r.getMessage()], caplog.text
