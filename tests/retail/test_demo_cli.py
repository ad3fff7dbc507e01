"""`faceatlas demo retail` end to end on a tiny day."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from faceatlas.cli.main import app


def test_demo_retail_writes_analytics(shared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEATLAS_SHARED", str(shared))
    result = CliRunner().invoke(app, ["demo", "retail", "--members", "3", "--visits", "6", "--seed", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Store analytics" in result.output and "Staff alerts" in result.output
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["visits"] == 6 and truth["new_members"] == 3
    assert (tmp_path / "retail_analytics.csv").is_file() and (tmp_path / "retail_visits_per_hour.png").is_file()
