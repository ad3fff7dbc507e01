"""Server-side pictures: an uploaded photo with its faces drawn (a PNG returned inline as a data:
URL, never written to disk) and the usage bar chart's geometry (rendered as inline SVG)."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from faceatlas.engine import Face, encoded_pixels, load_image

BOX = (60, 200, 40)  # BGR
POINTS = ((255, 80, 0), (0, 120, 255), (0, 200, 255), (200, 0, 200), (255, 0, 140))  # eyes, nose, mouth
# one colour per series: matplotlib's tab20, its ten strong colours first, then their light pairs (8
# colours reused by 13 operations drew a legend that named several with one colour)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")
OTHER = "other"  # the series the smallest ones are folded into where there are more than colours


def faces_png(data: bytes, faces: list[Face], labels: list[str] | None = None, max_side: int = 640) -> str:
    """``data`` (an encoded image) with each face's box, 5 keypoints and label drawn, downscaled to
    ``max_side``, as a ``data:image/png;base64,...`` URL. The photo is decoded reduced (a JPEG in
    its codec) to no less than ``max_side``: only what is drawn is decoded."""
    image = load_image(data, min_side=max_side)
    reduced = math.sqrt(max(1, encoded_pixels(data)) / (image.shape[0] * image.shape[1]))  # the decoding's factor
    fit = min(1.0, max_side / max(image.shape[:2]))
    if fit < 1.0:
        image = cv2.resize(image, None, fx=fit, fy=fit, interpolation=cv2.INTER_AREA)
    scale = fit / max(1.0, reduced)  # faces are in the original's pixels
    thickness = max(2, round(max(image.shape[:2]) / 300))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(float(v) * scale)) for v in face.bbox[:4])
        cv2.rectangle(image, (x1, y1), (x2, y2), BOX, thickness)
        for j, (x, y) in enumerate(np.asarray(face.keypoints, dtype=float)):
            cv2.circle(image, (int(round(x * scale)), int(round(y * scale))), thickness + 1,
                       POINTS[j % len(POINTS)], -1)
        label = labels[i] if labels and i < len(labels) else str(i + 1)
        cv2.putText(image, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness / 2 + 0.3,
                    BOX, max(1, thickness // 2), cv2.LINE_AA)
    ok, png = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit BGR image
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    days: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    peak: int


def usage_chart(rows: list[dict[str, Any]], width: int = 640, height: int = 220,
                label: Callable[[str], str] = lambda day: day[5:], unit: str = "calls") -> Chart:
    """Stacked bars of calls per ``day`` (any sortable period), one colour per ``operation``
    (rows of ``usage_report``, or :func:`events_per_minute`); ``label`` names a period on the axis.
    Past :data:`PALETTE`'s colours, the largest operations keep theirs and the rest are one
    :data:`OTHER` series: no two series share a colour."""
    rows = _fold(rows, len(PALETTE))
    days = sorted({r["day"] for r in rows})
    operations = sorted({r["operation"] for r in rows}, key=lambda op: (op == OTHER, op))
    colors = dict(zip(operations, PALETTE, strict=False))  # _fold left no more operations than colours
    order = list(operations)
    totals = {d: sum(r["calls"] for r in rows if r["day"] == d) for d in days}
    peak = max(totals.values(), default=0) or 1
    plot = height - 30
    step = (width - 40) / max(1, len(days))
    bar_width = min(48.0, step * 0.7)
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, day in enumerate(days):
        x = 40 + i * step + (step - bar_width) / 2
        top = float(plot)
        for row in sorted((r for r in rows if r["day"] == day), key=lambda r: order.index(r["operation"])):
            h = plot * row["calls"] / peak
            top -= h
            bars.append(Bar(round(x, 1), round(top, 1), round(bar_width, 1), round(h, 1), colors[row["operation"]],
                            f"{day} {row['operation']}: {row['calls']} {unit}"))
        labels.append((round(x + bar_width / 2, 1), label(day)))
    return Chart(width, height, bars, labels, list(colors.items()), peak if totals else 0)


def _fold(rows: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """``rows`` with at most ``most`` operations: the ``most - 1`` of the most calls, the others
    summed per day as :data:`OTHER`."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["operation"]] = totals.get(row["operation"], 0) + row["calls"]
    if len(totals) <= most:
        return rows
    kept = set(sorted(totals, key=lambda op: (-totals[op], op))[:most - 1])
    folded: dict[str, int] = {}
    for row in rows:
        if row["operation"] not in kept:
            folded[row["day"]] = folded.get(row["day"], 0) + row["calls"]
    return ([r for r in rows if r["operation"] in kept]
            + [{"day": day, "operation": OTHER, "calls": calls} for day, calls in folded.items()])


def events_per_minute(events: list[Any]) -> Chart:
    """Events per minute (UTC) and type, as stacked bars."""
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event.wall_time[:16], event.type)
        counts[key] = counts.get(key, 0) + 1
    rows = [{"day": minute, "operation": kind, "calls": n} for (minute, kind), n in counts.items()]
    return usage_chart(rows, height=160, label=lambda minute: minute[11:16], unit="events")
