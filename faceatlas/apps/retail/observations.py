"""What the store's cameras observe besides visits and payments: zone tracks and their dwell,
aggregated demographics, staff alerts raised by a camera, live occupancy, and a member
recognised on a track after it entered.

Demographics are counts per hour, estimated age band and gender: no row names a visit, a track
or a person (a member's own declared age band and gender stay on the member, under consent).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.db import Alert, DemographicCount, Member, Visit, ZoneTrack
from faceatlas.db import rowcount

# Estimated age bands (years, lower bound inclusive); the label of the last band ends with "+".
AGE_BANDS: tuple[tuple[str, float], ...] = (("0-17", 18), ("18-29", 30), ("30-44", 45), ("45-59", 60),
                                            ("60+", float("inf")))


def age_band(age: float | None) -> str:
    """The band of an estimated age in years ("unknown" without one)."""
    if age is None:
        return "unknown"
    return next(label for label, upper in AGE_BANDS if age < upper)


class Observations:
    """The observation records of one store."""

    def __init__(self, store_id: str, sessions: sessionmaker[Session], *, max_visit_hours: float = 12.0) -> None:
        self.store_id = store_id
        self._sessions = sessions
        self.max_visit_hours = max_visit_hours  # the store's privacy.max_visit_hours: a visit open longer was abandoned

    def zone_track(self, camera: str, zone: str, track: str, event_id: str, dwell_s: float, at: datetime,
                   visit_id: int | None = None) -> None:
        """Record that ``track`` stayed ``dwell_s`` seconds in ``zone``, leaving at ``at`` (once per
        ``event_id``)."""
        try:
            with self._sessions.begin() as session:
                if session.scalar(select(ZoneTrack.id).where(ZoneTrack.event_id == event_id)) is None:
                    session.add(ZoneTrack(store_id=self.store_id, zone=zone, camera=camera, track=track,
                                          event_id=event_id, dwell_s=dwell_s, visit_id=visit_id, at=at))
        except IntegrityError:  # the same event recorded by another process meanwhile
            pass

    def zone_tracks(self, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """Zone tracks that left in ``[start, end)``, oldest first."""
        with self._sessions() as session:
            query = select(ZoneTrack).where(ZoneTrack.store_id == self.store_id)
            if start is not None:
                query = query.where(ZoneTrack.at >= start)
            if end is not None:
                query = query.where(ZoneTrack.at < end)
            return [{"zone": z.zone, "camera": z.camera, "track": z.track, "dwell_s": z.dwell_s,
                     "visit_id": z.visit_id, "at": z.at.isoformat()}
                    for z in session.scalars(query.order_by(ZoneTrack.at, ZoneTrack.id))]

    def demographic(self, at: datetime, age: float | None, gender: str | None) -> None:
        """Add one face seen at ``at`` to the hour's count of its estimated age band and gender."""
        hour = at.replace(minute=0, second=0, microsecond=0)
        band, sex = age_band(age), gender or "unknown"
        for _ in range(3):  # a concurrent first insert of the same bucket: count again
            try:
                with self._sessions.begin() as session:
                    key = (DemographicCount.store_id == self.store_id, DemographicCount.hour == hour,
                           DemographicCount.age_band == band, DemographicCount.gender == sex)
                    if not rowcount(session.execute(update(DemographicCount).where(*key)
                                                    .values(count=DemographicCount.count + 1))):
                        session.add(DemographicCount(store_id=self.store_id, hour=hour, age_band=band,
                                                     gender=sex, count=1))
                return
            except IntegrityError:
                continue

    def alert(self, kind: str, camera: str, event_id: str, at: datetime, details: dict[str, Any] | None = None,
              visit_id: int | None = None) -> int:
        """Raise a staff alert (once per ``event_id``); returns its id."""
        with self._sessions() as session:
            existing = session.scalar(select(Alert.id).where(Alert.event_id == event_id))
        if existing is not None:
            return existing
        with self._sessions.begin() as session:
            alert = Alert(store_id=self.store_id, kind=kind, camera=camera, event_id=event_id, visit_id=visit_id,
                          details=details or {}, at=at)
            session.add(alert)
            session.flush()
            return alert.id

    def recognised(self, track: str, member_id: str, at: datetime) -> int | None:
        """Name the member on the open, still anonymous visit of ``track`` (a face recognised after
        the entry was counted); returns the visit id, None when no such visit or no such member."""
        with self._sessions.begin() as session:
            member = session.scalar(select(Member.id).where(Member.id == member_id, Member.store_id == self.store_id))
            visit = session.scalar(select(Visit).where(Visit.store_id == self.store_id, Visit.track == track,
                                                       Visit.exit_event_id.is_(None), Visit.member_id.is_(None)))
            if member is None or visit is None:
                return None
            visit.member_id = member
            visit.anonymous_id = None
            visit.is_returning = bool(session.scalar(select(func.count()).select_from(Visit).where(
                Visit.member_id == member, Visit.id != visit.id, Visit.entry_at < at)))
            return visit.id

    def open_visits(self, since: datetime) -> list[dict[str, Any]]:
        """The visits that entered since ``since`` and have not left, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(Visit).where(Visit.store_id == self.store_id, Visit.exit_event_id.is_(None),
                                                       Visit.entry_at >= since).order_by(Visit.entry_at, Visit.id))
            return [{"visit_id": v.id, "track": v.track, "member": v.member_id is not None,
                     "camera": v.entry_camera, "entry_at": v.entry_at.isoformat()} for v in rows]

    def occupancy(self, now: datetime, window_hours: float | None = None) -> dict[str, Any]:
        """Live occupancy: the open visits of the last ``window_hours`` (default: the store's
        ``privacy.max_visit_hours``, after which a visit is closed as abandoned: older ones were
        missed exits), how many of them are members'."""
        window_hours = self.max_visit_hours if window_hours is None else window_hours
        visits = self.open_visits(now - timedelta(hours=window_hours))
        return {"store": self.store_id, "at": now.isoformat(), "inside": len(visits),
                "members_inside": sum(1 for v in visits if v["member"]), "window_hours": window_hours}
