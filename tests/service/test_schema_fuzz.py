"""Schemathesis fuzzes every operation of the OpenAPI schema (bounded): no answer may be a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # about 70 s on 2 cores: CI runs it with the slow set
def test_no_server_error_for_schema_generated_requests(server, tmp_path):
    server.accounts.create_tenant("fuzz", "Fuzz tenant")
    key = server.accounts.create_key("fuzz", ["admin"], rate_per_second=10_000, burst=10_000).token
    command = [
        str(Path(sys.executable).parent / "schemathesis"),  # the test environment's, activated or not
        "run",
        f"{server.url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "10",
        "--seed",
        "7",
        "--request-timeout",
        "30",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
