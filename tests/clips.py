"""Cutting real clips for tests: the first seconds of a video, the same packets (so the same pixels)."""

from __future__ import annotations

import http.server
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import av
import numpy as np


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


def as_mpegts(source: Path, target: Path) -> Path:
    """The video of ``source`` remuxed as MPEG-TS (what a camera's HTTP stream sends: no index)."""
    with av.open(str(source)) as clip, av.open(str(target), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(clip.streams.video[0])
        for packet in clip.demux(clip.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


@contextmanager
def http_server(folder: Path, *, length: bool = True, hang_up: dict[str, int] | None = None) -> Iterator[str]:
    """A real HTTP server in a thread serving the files of ``folder``: as a web server serves a
    file (Content-Length, byte ranges: an MP4 is read with seeks), or, ``length`` False, as a
    stream of no length (HTTP/1.0, the body ends when the connection closes). ``hang_up``: file
    name -> byte offset where the server hangs up on that file, its Content-Length still saying
    the whole file (a server that went down mid-file: the reader fails with an I/O error)."""

    class Files(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = (folder / self.path.lstrip("/")).read_bytes()
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            first = int(wanted.group(1)) if wanted and length else 0
            last = int(wanted.group(2) or len(data) - 1) if wanted and length else len(data) - 1
            self.send_response(206 if wanted and length else 200)
            self.send_header("Content-Type", "video/mp4" if length else "video/mp2t")
            if length:
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(last + 1 - first))
                if wanted:
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self.end_headers()
            end = min(last + 1, (hang_up or {}).get(self.path.lstrip("/"), len(data)))
            with suppress(ConnectionError):  # the reader sought elsewhere and hung up
                self.wfile.write(data[first:end])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sideways(frames: list[np.ndarray], target: Path, fps: int = 25, rotation: int = -90) -> Path:
    """``frames`` as a phone stores a portrait video: each turned a quarter the other way, with a
    display rotation of ``rotation`` degrees (counterclockwise, PyAV's ``VideoFrame.rotation``)
    that turns it back for a player. H.264 (MPEG-4 where libx264 is missing) in ``target``."""
    stored = [np.ascontiguousarray(np.rot90(frame, -rotation // 90)) for frame in frames]
    height, width = stored[0].shape[:2]
    with av.open(str(target), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - a build without x264
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(rotation)
        for image in stored:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(target)) as check:  # the flag is in the file: a reader that ignores it sees the frames sideways
        assert (next(check.decode(video=0)).rotation - rotation) % 360 == 0
    return target
