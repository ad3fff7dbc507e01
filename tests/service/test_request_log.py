"""The server's log as an operator reads it (found by an operator probe): every answer carries a
request id (``X-Request-ID``), which the access line repeats with its ISO UTC time and latency; the
server's own lines have their time and level; ``FACEATLAS_LOG_FORMAT=json`` writes one JSON object per
line; ``serve`` says at its start which database, index folder, Redis and pack it serves; a misspelt
``FACEATLAS_*`` variable is named on stderr, with the setting it was meant to be."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate
from faceatlas.settings import EngineSettings, ServiceSettings

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
MISSPELT = "FACEATLAS_" + "DATABSE_URL"  # built here: the test of every name the repository reads finds no typo


def _admin(tmp_path: Path) -> tuple[str, str]:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    token = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    engine.dispose()
    return database_url, token


def test_every_answer_has_a_request_id_and_the_log_lines_their_time(service_tools, shared: Path,
                                                                     tmp_path: Path) -> None:
    database_url, token = _admin(tmp_path)
    log = tmp_path / "server.log"
    process, url = service_tools.start(database_url, shared, log, **{MISSPELT: "postgresql://x@db/fa"})
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {token}"}
            kept = http.get("/v1/collections", headers={**auth, "X-Request-ID": "lb-7f3a.2_x"})
            assert kept.status_code == 200 and kept.headers["x-request-id"] == "lb-7f3a.2_x"
            answers = {
                "unauthorized": http.get("/v1/collections"),
                "not_found": http.get("/v1/collections/staff/subjects/jane_log", headers=auth),
                "nul": http.get("/v1/collections/a%00b", headers=auth),
                "health": http.get("/healthz"),
                "too_long": http.get("/healthz", headers={"X-Request-ID": "a" * 65}),
                "odd": http.get("/healthz", headers={"X-Request-ID": "a b\"c"}),
            }
            assert [r.status_code for r in answers.values()] == [401, 404, 400, 200, 200, 200]
            ids = [r.headers.get("x-request-id", "") for r in answers.values()]
            assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == len(ids), ids
    finally:
        service_tools.stop(process)
    text = log.read_text()
    lines = text.splitlines()
    said = [line for line in lines if MISSPELT in line]
    assert said == [f"warning: {MISSPELT} is no FaceAtlas setting (did you mean FACEATLAS_DATABASE_URL?): ignored"]
    # which database, index folder, Redis and pack: one line each, with the time and level
    service = rf"^{TIME} INFO faceatlas\.cli\.service: "
    assert any(re.match(service + re.escape(f"database: {database_url}") + "$", line) for line in lines), text
    assert any(re.match(service + re.escape(f"index folder: {tmp_path / 'indexes'}") + "$", line) for line in lines)
    assert any(re.match(service + r"Redis: no Redis \(", line) for line in lines)
    assert any(re.match(service + "pack: scrfd-mbf$", line) for line in lines)
    assert any(re.match(rf"^{TIME} INFO uvicorn\.error: Uvicorn running on ", line) for line in lines)
    access = rf"^{TIME} INFO faceatlas\.access: 127\.0\.0\.1:\d+ "
    assert any(re.match(access + r'"GET /v1/collections HTTP/1\.1" 200 \d+\.\d ms id=lb-7f3a\.2_x tenant=acme$', line)
               for line in lines), text[-3000:]
    assert any(re.match(access + r'"GET /v1/collections HTTP/1\.1" 401 \d+\.\d ms '
                        rf"id={answers['unauthorized'].headers['x-request-id']}$", line) for line in lines)
    assert any(re.match(access + r'"GET /v1/collections/staff/subjects/\{subject\} HTTP/1\.1" 404 \d+\.\d ms '
                        rf"id={answers['not_found'].headers['x-request-id']} tenant=acme$", line) for line in lines)
    assert "jane_log" not in text
    # one line a call (the start's /readyz probes too), uvicorn's own dropped
    assert len([line for line in lines if "faceatlas.access" in line and "/readyz" not in line]) == 7
    assert not [line for line in lines if line.startswith("INFO:")], text  # uvicorn's bare format is gone


def test_json_log_lines(service_tools, shared: Path, tmp_path: Path) -> None:
    database_url, token = _admin(tmp_path)
    log = tmp_path / "server.log"
    process, url = service_tools.start(database_url, shared, log, FACEATLAS_LOG_FORMAT="json")
    try:
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.post("/v1/collections", json={"name": "staff"}).status_code == 201
            missing = http.delete("/v1/collections/staff/subjects/jane_json")
            assert missing.status_code == 404
            in_url = httpx.get(f"{url}/v1/collections/staff/subjects/jane_json?api_key=fa_0123_secret", timeout=30)
            assert in_url.status_code == 401
    finally:
        service_tools.stop(process)
    text = log.read_text()
    entries = [json.loads(line) for line in text.splitlines()]  # every line one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert all(re.fullmatch(TIME, e["time"]) for e in entries)
    assert {"logger": "faceatlas.cli.service", "level": "INFO", "message": "pack: scrfd-mbf"}.items() <= \
        next(e for e in entries if e["message"].startswith("pack: ")).items()
    access = [e for e in entries if e["logger"] == "faceatlas.access" and e["path"] != "/readyz"]
    assert len(access) == 3, access
    deleted, refused = access[1:]
    assert (deleted["method"], deleted["path"], deleted["status"], deleted["tenant"]) == \
        ("DELETE", "/v1/collections/staff/subjects/{subject}", 404, "acme")
    assert deleted["request_id"] == missing.headers["x-request-id"] and isinstance(deleted["ms"], float)
    assert (refused["path"], refused["status"], refused["tenant"], refused["request_id"]) == \
        ("/v1/collections/staff/subjects/{subject}?api_key=REDACTED", 401, None, in_url.headers["x-request-id"])
    assert "jane_json" not in text and "secret" not in text


def test_the_start_lines_show_no_password() -> None:
    from faceatlas.cli.service import _log_what_serves

    settings = ServiceSettings(database_url="postgresql+psycopg://fa:s3cret@db.internal:5432/fa?password=s3cret",
                               redis_url="redis://:r3dis-pw@cache.internal:6380/2", pack="scrfd-mbf")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("faceatlas.cli.service")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        _log_what_serves(settings, EngineSettings())
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    said = [r.getMessage() for r in records]
    assert said == ["database: postgresql+psycopg://fa:***@db.internal:5432/fa?password=***",
                    "index folder: none (indexes in memory, built from the database)",
                    "Redis: redis://cache.internal:6380/2", "pack: scrfd-mbf"]


def test_uvicorn_s_own_access_line_is_redacted_too() -> None:
    """A call uvicorn answers without the app (503 past FACEATLAS_MAX_CONNECTIONS) is logged by uvicorn,
    from the path as sent: its people's ids and keys are taken out as the app's are."""
    from faceatlas.service.logs import UvicornAccess

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1/collections/s/subjects/jane_x?api_key=fa_01_secret",
                                "1.1", 503), None)
    assert UvicornAccess().filter(record)
    assert record.getMessage() == \
        '127.0.0.1:5 - "GET /v1/collections/s/subjects/{subject}?api_key=REDACTED HTTP/1.1" 503'


def test_a_misspelt_variable_is_named_by_every_command() -> None:
    token, other = "FACEATLAS_" + "METRICS_TOKN", "faceatlas_" + "zzz_unknown"  # built: no typo in the source
    env = {**os.environ, token: "t", other: "1"}
    run = subprocess.run([sys.executable, "-m", "faceatlas.cli", "models", "list"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[:2] == [
        f"warning: {token} is no FaceAtlas setting (did you mean FACEATLAS_METRICS_TOKEN?): ignored",
        f"warning: {other} is no FaceAtlas setting: ignored"], run.stderr
