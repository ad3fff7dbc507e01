"""Customer analytics over any date range: traffic, unique vs returning visitors, conversion,
dwell time, zone heat, zone tracks and their dwell, basket size, the demographic mix declared by
consenting members, and the aggregated estimated age bands and genders of the faces entering.

Exported as a tidy CSV (metric, key, value) and drawn as PNG charts (matplotlib, Agg).

Small cells are suppressed (:func:`suppress_cells`, k = ``privacy.demographics_min_count``, 5 by
default): an age band or a gender counting fewer than k people is not shown; what it counted is
reported under the key ``suppressed``, so every breakdown still sums to its total. The estimated
demographics are suppressed per stored hour before an hour is added to a report's range, so no
range, and no difference of two ranges, shows a cell of an hour that had fewer than k.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.config import Privacy
from faceatlas.apps.retail.db import (
    Alert,
    Charge,
    Consent,
    DemographicCount,
    Member,
    StoreRecord,
    Visit,
    ZoneTrack,
    ZoneVisitRecord,
)
from faceatlas.apps.retail.observations import AGE_BANDS
from faceatlas.db import day_range, utcnow
from faceatlas.errors import NotFound

SUPPRESSED = "suppressed"  # the key of a breakdown's cells under k, summed
ESTIMATED_AGE_BANDS = (*(label for label, _ in AGE_BANDS), "unknown")  # every cell an hour's faces can have
ESTIMATED_GENDERS = ("female", "male", "unknown")
DWELL_BUCKETS: tuple[tuple[str, float], ...] = (("<5", 5), ("5-10", 10), ("10-20", 20), ("20-30", 30),
                                                ("30-60", 60), ("60+", float("inf")))


@dataclass
class Report:
    """The analytics of visits that entered in ``[start, end)``.

    A visitor is a member, an anonymous id (anonymous tracking on) or, failing both, the visit
    itself. ``returning_visitors`` counts visitors with a visit in range that was a return.

    The demographic breakdowns (``age_mix``, ``gender_mix``, ``estimated_age_mix``,
    ``estimated_gender_mix``) show only cells of at least ``demographics_min_count`` people; the
    rest is summed under :data:`SUPPRESSED`. ``estimated_faces`` counts every face entering."""

    start: datetime
    end: datetime
    visits: int = 0
    member_visits: int = 0
    anonymous_visits: int = 0
    unique_visitors: int = 0
    returning_visitors: int = 0
    new_members: int = 0
    purchases: int = 0
    revenue_cents: int = 0
    refunded_cents: int = 0
    visits_per_hour: dict[int, int] = field(default_factory=dict)
    visits_per_day: dict[str, int] = field(default_factory=dict)
    dwell_minutes: list[float] = field(default_factory=list)
    zone_heat: dict[str, int] = field(default_factory=dict)
    basket_sizes: dict[int, int] = field(default_factory=dict)
    age_mix: dict[str, int] = field(default_factory=dict)
    gender_mix: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    zone_tracks: dict[str, int] = field(default_factory=dict)  # tracks seen by each zone's cameras
    zone_dwell_s: dict[str, float] = field(default_factory=dict)  # their mean dwell, seconds
    estimated_age_mix: dict[str, int] = field(default_factory=dict)  # faces entering, aggregated only
    estimated_gender_mix: dict[str, int] = field(default_factory=dict)
    estimated_faces: int = 0  # every face entering, suppressed cells included
    demographics_min_count: int = Privacy().demographics_min_count  # k of the breakdowns

    @property
    def conversion(self) -> float:
        """Share of visits that ended with a purchase."""
        return self.purchases / self.visits if self.visits else 0.0

    @property
    def dwell_histogram(self) -> dict[str, int]:
        """Closed visits per dwell-time bucket (minutes)."""
        counts = dict.fromkeys((label for label, _ in DWELL_BUCKETS), 0)
        for minutes in self.dwell_minutes:
            counts[next(label for label, upper in DWELL_BUCKETS if minutes < upper)] += 1
        return counts

    @property
    def mean_basket(self) -> float:
        """Mean items per purchase."""
        total = sum(self.basket_sizes.values())
        return sum(k * v for k, v in self.basket_sizes.items()) / total if total else 0.0

    def summary(self) -> dict[str, float | int]:
        """The headline numbers."""
        return {
            "visits": self.visits,
            "member_visits": self.member_visits,
            "anonymous_visits": self.anonymous_visits,
            "unique_visitors": self.unique_visitors,
            "returning_visitors": self.returning_visitors,
            "new_members": self.new_members,
            "purchases": self.purchases,
            "conversion": round(self.conversion, 4),
            "revenue_cents": self.revenue_cents,
            "refunded_cents": self.refunded_cents,
            "mean_basket": round(self.mean_basket, 2),
            "mean_dwell_minutes": round(sum(self.dwell_minutes) / len(self.dwell_minutes), 1)
            if self.dwell_minutes else 0.0,
            "estimated_faces": self.estimated_faces,
            "demographics_min_count": self.demographics_min_count,
        }

    def rows(self) -> list[tuple[str, str, float | int]]:
        """Every figure as (metric, key, value): the CSV body."""
        out: list[tuple[str, str, float | int]] = [("summary", k, v) for k, v in self.summary().items()]
        sections: list[tuple[str, dict]] = [
            ("visits_per_hour", {f"{h:02d}:00": n for h, n in sorted(self.visits_per_hour.items())}),
            ("visits_per_day", self.visits_per_day), ("dwell_minutes", self.dwell_histogram),
            ("zone_heat", self.zone_heat), ("basket_size", dict(sorted(self.basket_sizes.items()))),
            ("age_band", self.age_mix), ("gender", self.gender_mix), ("alerts", self.alerts),
            ("zone_tracks", self.zone_tracks), ("zone_dwell_s", self.zone_dwell_s),
            ("estimated_age_band", self.estimated_age_mix), ("estimated_gender", self.estimated_gender_mix),
        ]
        for metric, values in sections:
            out.extend((metric, str(k), v) for k, v in values.items())
        return out


def suppress_cells(counts: Mapping[str, int], k: int, categories: Iterable[str] = ()) -> dict[str, int]:
    """The cells of ``counts`` that count at least ``k`` people, by key, and the sum of the others
    under :data:`SUPPRESSED` (when it is not 0), so the breakdown keeps its total.

    ``categories``: every cell the breakdown can have (an absent one counts 0). A cell under k is
    never shown, nor named; when a single cell would be under k, its count would be the total less
    the cells shown, so the smallest shown cell is suppressed with it."""
    cells = {**dict.fromkeys(categories, 0), **counts}
    shown = {key: n for key, n in cells.items() if n >= k}
    hidden = [key for key in cells if key not in shown]
    if len(hidden) == 1 and cells[hidden[0]] > 0 and shown:
        del shown[min(shown, key=lambda key: (shown[key], key))]
    out = dict(sorted(shown.items()))
    rest = sum(cells.values()) - sum(shown.values())
    if rest:
        out[SUPPRESSED] = rest
    return out


def compute_report(sessions: sessionmaker[Session], store_id: str, start: datetime, end: datetime, *,
                   min_count: int | None = None) -> Report:
    """Analytics of the visits of ``store_id`` that entered in ``[start, end)`` (naive UTC); the
    demographic cells under ``min_count`` (default: :class:`Privacy`'s) are suppressed."""
    k = min_count if min_count is not None else Privacy().demographics_min_count
    report = Report(start, end, demographics_min_count=k)
    with sessions() as session:
        visits = list(session.scalars(select(Visit).where(Visit.store_id == store_id, Visit.entry_at >= start,
                                                          Visit.entry_at < end)))
        ids = [v.id for v in visits]
        charges = {c.visit_id: c for c in session.scalars(select(Charge).where(
            Charge.visit_id.in_(ids), Charge.status.in_(("charged", "refunded"))))}
        zones = session.execute(select(ZoneVisitRecord.zone, func.count(func.distinct(ZoneVisitRecord.visit_id)))
                                .where(ZoneVisitRecord.visit_id.in_(ids)).group_by(ZoneVisitRecord.zone))
        report.zone_heat = dict(sorted(zones.all()))
        report.new_members = session.scalar(select(func.count()).select_from(Member).where(
            Member.store_id == store_id, Member.enrolled_at >= start, Member.enrolled_at < end)) or 0
        alerts = session.execute(select(Alert.kind, func.count()).where(
            Alert.store_id == store_id, Alert.at >= start, Alert.at < end).group_by(Alert.kind))
        report.alerts = dict(sorted(alerts.all()))
        _demographics(session, report, {v.member_id for v in visits if v.member_id}
                      | {c.member_id for c in charges.values() if c.member_id})  # face pay's receipts
        _observations(session, report, store_id, start, end)
    visitors = {_visitor(v) for v in visits}
    report.visits = len(visits)
    report.member_visits = sum(1 for v in visits if v.member_id)
    report.anonymous_visits = report.visits - report.member_visits
    report.unique_visitors = len(visitors)
    report.returning_visitors = len({_visitor(v) for v in visits if v.is_returning})
    report.visits_per_hour = dict(sorted(Counter(v.entry_at.hour for v in visits).items()))
    report.visits_per_day = dict(sorted(Counter(v.entry_at.date().isoformat() for v in visits).items()))
    report.dwell_minutes = sorted((v.exit_at - v.entry_at).total_seconds() / 60 for v in visits if v.exit_at)
    report.purchases = len(charges)
    report.revenue_cents = sum(c.amount_cents - c.refunded_cents for c in charges.values())
    report.refunded_cents = sum(c.refunded_cents for c in charges.values())
    report.basket_sizes = dict(sorted(Counter(c.items for c in charges.values()).items()))
    return report


def store_report(engine: Engine, tenant: str, store_id: str, first: date, last: date) -> Report:
    """The report of ``store_id`` for the days ``first`` to ``last`` (inclusive), for the tenant
    that owns the store: another tenant's store is :class:`NotFound`, as a missing one."""
    sessions = sessionmaker(engine)
    with sessions() as session:
        store = session.get(StoreRecord, store_id)
    if store is None or store.tenant != tenant:
        raise NotFound(f"store '{store_id}' not found")
    privacy = Privacy.model_validate((store.config or {}).get("privacy") or {})  # the store's saved settings
    start, end = day_range(first, last)
    assert start is not None and end is not None
    return compute_report(sessions, store_id, start, end, min_count=privacy.demographics_min_count)


def list_stores(engine: Engine, tenant: str) -> list[tuple[str, str]]:
    """(id, name) of the tenant's stores, by id."""
    with sessionmaker(engine)() as session:
        return [(r.id, r.name) for r in session.scalars(select(StoreRecord).where(StoreRecord.tenant == tenant)
                                                        .order_by(StoreRecord.id))]


REPORT_DAYS = 30  # the days of a report by default, its last day (today) included


def report_window(first: date | None, last: date | None, today: date | None = None) -> tuple[date, date]:
    """The days of a report, both included: ``last`` defaults to today, ``first`` to the day that
    makes :data:`REPORT_DAYS` days (``last`` and the 29 before it; ``last - 30`` made 31, which the
    console headed "Last 30 days"), or the first calendar day, near it; any calendar dates are valid.
    Today is the UTC date, as visits are counted by UTC day (the server's local date showed no
    visit "today" where its zone was a day ahead of UTC)."""
    last = last or today or utcnow().date()
    return first or last - min(timedelta(days=REPORT_DAYS - 1), last - date.min), last


def _visitor(visit: Visit) -> str:
    if visit.member_id:
        return f"member:{visit.member_id}"
    if visit.anonymous_id:
        return f"anonymous:{visit.anonymous_id}"
    return f"visit:{visit.id}"


def _demographics(session: Session, report: Report, member_ids: set[str]) -> None:
    """Age bands and genders of the visiting members whose consent covers analytics."""
    if not member_ids:
        return
    consenting = {mid for mid, purposes in session.execute(
        select(Consent.member_id, Consent.purposes).where(Consent.member_id.in_(member_ids),
                                                          Consent.withdrawn_at.is_(None)))
        if "analytics" in purposes}
    rows = session.execute(select(Member.age_band, Member.gender).where(Member.id.in_(consenting))).all()
    k = report.demographics_min_count
    report.age_mix = suppress_cells(Counter(age or "undeclared" for age, _ in rows), k)
    report.gender_mix = suppress_cells(Counter(gender or "undeclared" for _, gender in rows), k)


def _observations(session: Session, report: Report, store_id: str, start: datetime, end: datetime) -> None:
    """Zone tracks with their mean dwell, and the estimated demographics counted in range."""
    zones = session.execute(select(ZoneTrack.zone, func.count(), func.avg(ZoneTrack.dwell_s)).where(
        ZoneTrack.store_id == store_id, ZoneTrack.at >= start, ZoneTrack.at < end).group_by(ZoneTrack.zone))
    for zone, count, dwell in sorted(zones.all()):
        report.zone_tracks[zone] = int(count)
        report.zone_dwell_s[zone] = round(float(dwell or 0.0), 2)
    counts = DemographicCount
    in_range = (counts.store_id == store_id, counts.hour >= start.replace(minute=0, second=0, microsecond=0),
                counts.hour < end)
    hours: dict[datetime, tuple[Counter[str], Counter[str]]] = {}
    for hour, band, gender, count in session.execute(select(counts.hour, counts.age_band, counts.gender,
                                                            counts.count).where(*in_range)):
        ages, genders = hours.setdefault(hour, (Counter(), Counter()))
        ages[str(band)] += int(count)
        genders[str(gender)] += int(count)
    k = report.demographics_min_count
    age_mix: Counter[str] = Counter()
    gender_mix: Counter[str] = Counter()
    for ages, genders in hours.values():  # each hour's small cells suppressed before the hour is summed
        age_mix.update(suppress_cells(ages, k, ESTIMATED_AGE_BANDS))
        gender_mix.update(suppress_cells(genders, k, ESTIMATED_GENDERS))
    report.estimated_faces = sum(age_mix.values())
    report.estimated_age_mix = _breakdown(age_mix)
    report.estimated_gender_mix = _breakdown(gender_mix)


def _breakdown(counts: Counter[str]) -> dict[str, int]:
    """Cells by key, :data:`SUPPRESSED` last."""
    return {key: counts[key] for key in sorted(counts, key=lambda key: (key == SUPPRESSED, key)) if counts[key]}


def csv_text(report: Report) -> str:
    """The report as CSV text (metric, key, value)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "key", "value"])
    writer.writerows(report.rows())
    return out.getvalue()


def write_csv(report: Report, path: Path) -> Path:
    """The report as a CSV file (metric, key, value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv_text(report))
    return path


def _chart_specs(report: Report) -> dict[str, tuple[str, str, str, list[str], list[float]]]:
    """Every chart by name: title, x-axis label, y-axis label, bar labels, bar values (one measure
    a chart)."""
    hours = list(range(min(report.visits_per_hour, default=8), max(report.visits_per_hour, default=20) + 1))
    return {
        "visits_per_hour": ("Visits per hour", "hour of entry (UTC)", "visits", [f"{h:02d}" for h in hours],
                            [report.visits_per_hour.get(h, 0) for h in hours]),
        "dwell": ("Visit length", "minutes in the store", "visits", list(report.dwell_histogram),
                  list(report.dwell_histogram.values())),
        "zone_heat": ("Visits per zone", "zone", "visits", list(report.zone_heat), list(report.zone_heat.values())),
        "zone_tracks": ("Shoppers seen per zone", "zone", "tracks", list(report.zone_tracks),
                        list(report.zone_tracks.values())),
        "zone_dwell": ("Mean dwell per zone", "zone", "seconds per track", list(report.zone_dwell_s),
                       list(report.zone_dwell_s.values())),
        "basket_size": ("Items per purchase", "items", "purchases", [str(k) for k in report.basket_sizes],
                        list(report.basket_sizes.values())),
        "age_band": ("Members by declared age band", "age band", "members", list(report.age_mix),
                     list(report.age_mix.values())),
        "gender": ("Members by declared gender", "gender", "members", list(report.gender_mix),
                   list(report.gender_mix.values())),
        "estimated_age_band": ("Faces entering by estimated age band", "age band", "faces",
                               list(report.estimated_age_mix), list(report.estimated_age_mix.values())),
        "estimated_gender": ("Faces entering by estimated gender", "gender", "faces",
                             list(report.estimated_gender_mix), list(report.estimated_gender_mix.values())),
    }


CHARTS = ("visits_per_hour", "dwell", "zone_heat", "zone_tracks", "zone_dwell", "basket_size", "age_band", "gender",
          "estimated_age_band", "estimated_gender")
COUNT_CHARTS = frozenset(CHARTS) - {"zone_dwell"}  # counts: integer ticks only


def _days_title(start: datetime, end: datetime) -> str:
    """The days a report's ``[start, end)`` covers, as a person reads them: its last day inclusive
    ("2026-12-06", or "2026-11-07 to 2026-12-06"); a chart of today said "2026-12-06 to 2026-12-07"."""
    last = end - timedelta(microseconds=1) if end > start else end
    if last.date() == start.date():
        return f"{start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d} to {last:%Y-%m-%d}"


NO_DATA = "no data for this range"  # what a chart with nothing to show says, in place of its bars


def chart_png(report: Report, name: str) -> bytes:
    """One chart of the report (a name of :data:`CHARTS`) as PNG bytes: labelled axes, integer
    ticks on counts; a chart of no category at all (no zone, no purchase) says :data:`NO_DATA`,
    with no numeric axis (it showed an empty plot with x ticks -0.04 to 0.04)."""
    import matplotlib.pyplot as plt

    figure = _chart_figure(report, name)
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(figure)


class ChartCache:
    """Charts (PNG) already drawn, by the tenant, the store, the chart and a digest of everything
    the chart draws (its days, labels and values): a dashboard view drew its charts on every view
    (~100 ms each) though the figures had not changed. The same figures of another store or
    tenant are another entry, never shared; changed figures are another key, so nothing stale is
    served. The least recently used beyond ``size`` are dropped. Owned by the service's state."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._drawn: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, tenant: str, store_id: str, report: Report, name: str) -> bytes:
        """:func:`chart_png` of ``report`` (of ``tenant``'s store ``store_id``), drawn only when not kept."""
        drawn = repr((_days_title(report.start, report.end), _chart_specs(report)[name]))
        key = (tenant, store_id, name, hashlib.sha256(drawn.encode()).hexdigest())
        with self._lock:
            if key in self._drawn:
                self._drawn.move_to_end(key)
                return self._drawn[key]
        png = chart_png(report, name)  # drawn outside the lock: another store's view does not wait on it
        with self._lock:
            self._drawn[key] = png
            while len(self._drawn) > self.size:
                self._drawn.popitem(last=False)
        return png


def _chart_figure(report: Report, name: str) -> Any:
    """The matplotlib figure of :func:`chart_png` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    title, x_label, y_label, labels, values = _chart_specs(report)[name]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.set_title(f"{title} — {_days_title(report.start, report.end)}", fontsize=10)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if not labels:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(0.5, 0.5, NO_DATA, transform=axes.transAxes, ha="center", va="center", color="#5f6368")
        figure.tight_layout()
        return figure
    axes.bar(labels, values, color=["#9aa0a6" if label == SUPPRESSED else "#3b7dd8" for label in labels])
    if name in COUNT_CHARTS:
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(bottom=0, top=max(1, max(values, default=0)))
    axes.tick_params(axis="x", labelrotation=45 if len(labels) > 8 else 0)
    figure.tight_layout()
    return figure


def draw_charts(report: Report, out_dir: Path, *, prefix: str = "retail") -> list[Path]:
    """PNG files of every chart (:data:`CHARTS`), one measure each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CHARTS:
        path = out_dir / f"{prefix}_{name}.png"
        path.write_bytes(chart_png(report, name))
        paths.append(path)
    return paths
