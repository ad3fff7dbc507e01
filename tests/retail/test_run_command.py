"""`faceatlas retail run store.yaml` as a command, on a real YAML file naming the three cameras of
the acceptance test (tests/retail/test_store_run.py): the door on the first 22 s of
one-by-one-person-detection.mp4 (one person in and out), the zone camera on
store-aisle-detection.gif and the checkout on the Hamilton clip. The command ends when every file
has ended (a bounded run; a SIGINT would stop it too, as the `--json` summary is printed on the
way out); the member enrolled beforehand pays for the mug in their cart once, the door counts the
person who came in as one visit, and a second run of the checkout clip charges nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from faceatlas.apps.retail import ConsentRecord, Entry, Pick, RetailStore, StoreConfig
from faceatlas.apps.retail.db import Charge, LedgerEntry, Visit
from tests.clips import first_seconds
from tests.retail.test_store_run import ENTRIES, EXITS, FPS, SEGMENT_S, TOLERANCE_S

RUN_LIMIT_S = 420.0  # the run takes ~1-2 min on two shared cores; past this it is stopped (SIGINT) and fails

def _store_yaml(till: Path, events: Path, door: Path | None = None, aisle: Path | None = None) -> str:
    """The store's YAML as an operator writes it; a camera without a file is in the store but not run."""
    def source(path: Path | None) -> str:
        return f', source: "{path}"' if path else ""
    return f"""\
id: cli-video-store
name: Corner shop (CLI)
cameras:
  - {{id: door, role: door{source(door)}, line: "0,386,768,170", stride: 2, faces: false}}
  - {{id: aisle, role: zone, zone: ceramics{source(aisle)}, stride: 2, faces: false}}
  - {{id: till, role: checkout{source(till)}, stride: 4, persons: false}}
products:
  - {{sku: mug, name: Mug, price_cents: 1250}}
events: "{events}"
"""


def _retail_run(config: Path, folder: Path) -> dict[str, Any]:
    """``faceatlas retail run CONFIG --json`` in a child process, as an operator types it; its summary."""
    command = [sys.executable, "-m", "faceatlas.cli", "retail", "run", str(config), "--database",
               f"sqlite:///{folder / 'store.db'}", "--index-dir", str(folder / "idx"), "--pack", "scrfd-mbf",
               "--json"]
    environment = {**os.environ, "FACEATLAS_THREADS": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=environment) as process:
        try:
            out, err = process.communicate(timeout=RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # Ctrl-C: tracks ended, events flushed, summary printed
            out, err = process.communicate(timeout=60)
            pytest.fail(f"`retail run` still running after {RUN_LIMIT_S:.0f} s: {err[-2000:]}")
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_retail_run_yaml_with_three_cameras(shared: Path, fast_analyzer: Any, tmp_path: Path) -> None:
    videos = shared / "data" / "videos"
    examples = shared / "data" / "face_recognition_examples" / "examples"
    door = first_seconds(videos / "one-by-one-person-detection.mp4", tmp_path / "door.mp4", SEGMENT_S)
    config = tmp_path / "store.yaml"
    till = examples / "short_hamilton_clip.mp4"
    config.write_text(_store_yaml(till, tmp_path / "events.jsonl", door, videos / "store-aisle-detection.gif"))
    loaded = StoreConfig.load(config)  # the file is YAML (not JSON under another name)
    assert not config.read_text().lstrip().startswith("{") and [c.role for c in loaded.cameras] == [
        "door", "zone", "checkout"]

    # a member with a visit and a mug in their cart before the run (as the acceptance test sets it up)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with RetailStore.open(loaded, fast_analyzer, url, index_dir=tmp_path / "idx") as store:
        photo = examples / "lin-manuel-miranda.png"
        member = store.members.enrol("Lin", [photo], ConsentRecord(("face_pay",), granted_by="Lin"),
                                     payment_ref="card-lin").id
        before = datetime.utcnow() - timedelta(minutes=5)
        visit = store.entry(Entry("door", before, embedding=store.analyzer.analyze_one(photo).as_embedding(),
                                  track="kiosk:1"))
        store.pick(Pick("aisle", before + timedelta(minutes=1), "mug", track="kiosk:1"))

    first = _retail_run(config, tmp_path)
    assert first["errors"] == 0 and first["charged"] == 1 and first["outcomes"].get("charged") == 1
    assert "stranger_at_checkout" not in first["alerts"] and "spoof" not in first["alerts"]
    people = sum(1 for frame in EXITS if frame / FPS < SEGMENT_S)
    assert first["entries"] + first["inferred_entries"] == people
    assert 3 <= first["zone_tracks"] <= 6
    door_camera = next(c for c in first["cameras"] if c["camera"] == "door")
    assert door_camera["line_counts"]["door"]["out"] == people
    sent = (tmp_path / "events.jsonl").read_text()
    assert sent.count('"track_ended"') == first["events"]["track_ended"]

    with RetailStore.open(loaded, fast_analyzer, url, index_dir=tmp_path / "idx") as store, \
            store.sessions() as session:
        charge = session.scalars(select(Charge)).one()
        assert (charge.member_id, charge.visit_id, charge.amount_cents) == (member, visit, 1250)
        assert session.scalar(select(func.sum(LedgerEntry.amount_cents))) == 1250
        walked = list(session.scalars(select(Visit).where(Visit.entry_camera == "door", Visit.track != "kiosk:1")))
        assert len(walked) == people
        for person in walked:  # in at ~6 s into the clip, out at ~19 s
            assert person.exit_at is not None and person.member_id is None
            assert abs((person.exit_at - person.entry_at).total_seconds()
                       - (EXITS[0] - ENTRIES[0]) / FPS) < 2 * TOLERANCE_S

    # the checkout clip alone, run again: the member's visit is paid and closed, nothing is charged twice
    till_only = tmp_path / "till.yaml"
    till_only.write_text(_store_yaml(till, tmp_path / "till-events.jsonl"))
    second = _retail_run(till_only, tmp_path)
    assert second["charged"] == 0 and "charged" not in second["outcomes"] and second["errors"] == 0
    with RetailStore.open(loaded, fast_analyzer, url, index_dir=tmp_path / "idx") as store, \
            store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Charge)) == 1
