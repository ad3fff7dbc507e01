"""Usage days are UTC days: the CLI's usage report names the days it covers as the rows count them."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from faceatlas.cli.main import app as cli
from faceatlas.db import create_database_engine
from faceatlas.service.accounts import Accounts
from faceatlas.service.db import UsageRecord, migrate


@pytest.fixture
def local_zone_on_another_day(monkeypatch: pytest.MonkeyPatch):
    """A local time zone whose date is not the UTC date now: UTC+14 from 10:00 UTC, else UTC-12."""
    now = datetime.now(UTC)
    monkeypatch.setenv("TZ", "Pacific/Kiritimati" if now.hour >= 10 else "Etc/GMT+12")
    time.tzset()
    assert datetime.now().date() != now.date()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_usage_table_names_the_utc_day_or_the_given_last_day(tmp_path, local_zone_on_another_day) -> None:
    """``admin usage``'s title was "usage to" the local date (the day after the UTC day, in the
    evening of UTC+14), whatever ``--to`` was: a table of UTC days titled with a day none of its rows
    could be of, and with another day than the one asked for. It names ``--to``, else today in UTC."""
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    engine = create_database_engine(url)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.create_tenant("acme")
    accounts.record_usage([UsageRecord(tenant_id="acme", operation="detect", faces=1, status=200,
                                       at=datetime(2026, 11, 30, 23, 30))])
    env = {"COLUMNS": "200", "TZ": os.environ["TZ"]}
    today = CliRunner().invoke(cli, ["admin", "usage", "--db", url], env=env)
    assert today.exit_code == 0, today.output
    assert f"usage to {datetime.now(UTC).date()} (UTC days)" in today.stdout, today.stdout
    assert "2026-11-30" in today.stdout  # the row's UTC day
    asked = CliRunner().invoke(cli, ["admin", "usage", "--db", url, "--from", "2026-11-01", "--to", "2026-11-30"],
                               env=env)
    assert asked.exit_code == 0, asked.output
    assert "usage 2026-11-01 to 2026-11-30 (UTC days)" in asked.stdout and "detect" in asked.stdout, asked.stdout
    engine.dispose()
