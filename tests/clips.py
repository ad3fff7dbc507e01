"""Cutting real clips for tests: the first seconds of a video, the same packets (so the same pixels)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av


def first_seconds(source: Path, target: Path, seconds: float, *, faststart: bool = False) -> Path:
    """The first ``seconds`` of ``source``, remuxed into ``target`` (no re-encoding);
    ``faststart``: the index first, for reading over HTTP."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(source)) as src, av.open(str(target), "w", options=options) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * stream.time_base >= seconds:
                break
            packet.stream = out
            dst.mux(packet)
    return target


def interrupted_run(args: list[str], output: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """``faceatlas ARGS`` in a process of its own, sent SIGINT (Ctrl-C) half a second after it began
    writing ``output`` (at its first frame): its exit status, stdout and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "faceatlas.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace",
                               # Ctrl-C reaches Python even from a shell that started this run in the background
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not output.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
