"""A whole API key pasted where its prefix belongs (``DELETE /v1/keys/fa_<prefix>_<secret>``,
``faceatlas admin key revoke <key>``): the key is revoked by its prefix, and its secret is
neither answered, nor printed, nor written to the server's access log."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from faceatlas.cli.main import app as cli
from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import migrate


def _secret(token: str) -> str:
    return token.split("_", 2)[2]


def test_redact_path_keeps_the_prefix_of_a_key_and_nothing_of_its_secret() -> None:
    from faceatlas.service.redact import redact_path

    assert redact_path("/v1/keys/fa_03c455927639_WnZc-x_Y") == "/v1/keys/fa_03c455927639_[redacted]"
    assert redact_path("/v1/keys/fa_03c455927639_WnZc/rotate") == "/v1/keys/fa_03c455927639_[redacted]/rotate"
    assert redact_path("/v1/keys/03c455927639") == "/v1/keys/03c455927639"


def test_a_whole_key_in_the_path_is_revoked_and_never_answered_or_logged(service_tools, shared: Path,
                                                                          tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    admin = accounts.create_key("acme", ["admin"], rate_per_second=100, burst=100).token
    leaked = accounts.create_key("acme", ["read"], name="leaked")
    log = tmp_path / "server.log"
    process, url = service_tools.start(database_url, shared, log)
    try:
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            assert http.get("/v1/collections", headers={"Authorization": f"Bearer {leaked.token}"}).status_code == 200
            answer = http.delete(f"/v1/keys/{leaked.token}")
            assert answer.status_code == 204, answer.text
            assert http.get("/v1/collections", headers={"Authorization": f"Bearer {leaked.token}"}).status_code == 401
            unknown = f"fa_0123456789ab_{_secret(leaked.token)[::-1]}"
            missing = http.delete(f"/v1/keys/{unknown}")
            assert missing.status_code == 404 and "0123456789ab" in missing.json()["error"]["message"]
            assert _secret(unknown) not in missing.text
            rotated = http.post(f"/v1/keys/{unknown}/rotate")
            assert rotated.status_code == 404 and _secret(unknown) not in rotated.text
    finally:
        service_tools.stop(process)
        engine.dispose()
    text = log.read_text()
    assert f"DELETE /v1/keys/fa_{leaked.prefix}_[redacted]" in text, text[-3000:]
    assert "/v1/keys/fa_0123456789ab_[redacted]/rotate" in text
    assert _secret(leaked.token) not in text and _secret(unknown) not in text
    audit = [r.target for r in accounts.audit_log("acme") if r.action == "key.revoke"]
    assert audit == [f"key:{leaked.prefix}"]


def test_admin_key_revoke_takes_a_whole_key_and_never_prints_its_secret(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_database_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    leaked = accounts.create_key("acme", ["read"])
    runner = CliRunner()
    done = runner.invoke(cli, ["admin", "key", "revoke", leaked.token, "--db", database_url])
    assert done.exit_code == 0, done.output
    assert leaked.prefix in done.stdout and _secret(leaked.token) not in done.output
    assert accounts.authenticate(leaked.token) is None
    unknown = f"fa_0123456789ab_{_secret(leaked.token)[::-1]}"
    refused = runner.invoke(cli, ["admin", "key", "revoke", unknown, "--db", database_url])
    assert refused.exit_code == 2 and "0123456789ab" in refused.stderr
    assert _secret(unknown) not in refused.output
    engine.dispose()
