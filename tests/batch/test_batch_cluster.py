"""A batch job on a Ray cluster it did not start (`--ray-address`): a head started with `ray start`
in its own processes, the job connecting to it by address, the same output as a local run."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceatlas.batch import BatchOptions, embed, face_table

pytestmark = pytest.mark.slow  # a Ray head of its own: ~30 s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def ray_head(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``ray start --head --block`` on a free loopback port with token authentication (Ray's default
    from 2.59 on), its token given to this process as a user gives it to a job; the head's process
    group is stopped afterwards."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.5)
        else:
            raise AssertionError("the Ray head did not open its port within 60 s")
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_embed_on_a_cluster_by_address_equals_a_local_run(ray_head: str, shared: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for photo in sorted((shared / "data" / "lfw" / "images").glob("*/*.jpg"))[:: 900][:6]:
        shutil.copy(photo, source / photo.name)
    remote = embed(str(source), str(tmp_path / "remote.parquet"),
                   BatchOptions(workers=1, pack="scrfd-mbf", batch_size=4, ray_address=ray_head))
    local = embed(str(source), str(tmp_path / "local.parquet"), BatchOptions(workers=1, pack="scrfd-mbf", batch_size=4))

    assert remote.images == local.images == 6 and remote.errors == 0 and remote.faces == local.faces >= 6
    ours, theirs = (face_table(str(tmp_path / f"{name}.parquet")).sort_by([("image_id", "ascending"),
                                                                             ("face", "ascending")])
                    for name in ("remote", "local"))
    assert ours.column("image_id").to_pylist() == theirs.column("image_id").to_pylist()
    assert np.allclose(np.array(ours.column("embedding").to_pylist()), np.array(theirs.column("embedding").to_pylist()),
                       atol=1e-5)
