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
PALETTE = ("#1f6feb", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0a7ea4", "#57606a")


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
    (rows of ``usage_report``, or :func:`events_per_minute`); ``label`` names a period on the axis."""
    days = sorted({r["day"] for r in rows})
    operations = sorted({r["operation"] for r in rows})
    colors = {op: PALETTE[i % len(PALETTE)] for i, op in enumerate(operations)}
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
        for row in sorted((r for r in rows if r["day"] == day), key=lambda r: r["operation"]):
            h = plot * row["calls"] / peak
            top -= h
            bars.append(Bar(round(x, 1), round(top, 1), round(bar_width, 1), round(h, 1), colors[row["operation"]],
                            f"{day} {row['operation']}: {row['calls']} {unit}"))
        labels.append((round(x + bar_width / 2, 1), label(day)))
    return Chart(width, height, bars, labels, list(colors.items()), peak if totals else 0)


def events_per_minute(events: list[Any]) -> Chart:
    """Events per minute (UTC) and type, as stacked bars."""
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event.wall_time[:16], event.type)
        counts[key] = counts.get(key, 0) + 1
    rows = [{"day": minute, "operation": kind, "calls": n} for (minute, kind), n in counts.items()]
    return usage_chart(rows, height=160, label=lambda minute: minute[11:16], unit="events")
