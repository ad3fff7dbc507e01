"""Cutting real clips for tests: the first seconds of a video, the same packets (so the same pixels)."""

from __future__ import annotations

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
