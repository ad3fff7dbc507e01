"""The video events table and the per-minute counts table (SQLAlchemy 2), with their own MetaData so
that they never mix with the gallery's or the service's tables and migrations. Created with
``create_all`` when missing."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import JSON, Float, Index, Integer, MetaData, String, delete, func, inspect, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from faceatlas.db import create_database_engine, rowcount
from faceatlas.engine.persons import COCO_CLASSES, ROAD_CLASSES
from faceatlas.errors import InvalidArgument, NotFound
from faceatlas.gallery import check_limit, name_forms
from faceatlas.video.events import EVENT_TYPES, Event, EventType

# the classes of the stored counts: a track's label, "face" for face tracks (a camera without the
# person detector counts faces), else its COCO class
COUNTED_CLASSES: frozenset[str] = frozenset({"face", *COCO_CLASSES})


class VideoBase(DeclarativeBase):
    metadata = MetaData()


class EventRow(VideoBase):
    """One stored event; ``id`` is the event's idempotency key, so a replay inserts nothing twice."""

    __tablename__ = "video_events"
    __table_args__ = (Index("ix_video_events_tenant_time", "tenant", "wall_time"),
                      Index("ix_video_events_camera_type", "camera", "type"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default")
    type: Mapped[str] = mapped_column(String(32))
    camera: Mapped[str] = mapped_column(String(200))
    frame: Mapped[int] = mapped_column(Integer)
    video_time: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[str] = mapped_column(String(40))
    track_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    data: Mapped[dict] = mapped_column(JSON)

    @classmethod
    def of(cls, event: Event, tenant: str = "default") -> EventRow:
        return cls(tenant=tenant, **event.to_dict())

    def to_event(self) -> Event:
        return Event(cast(EventType, self.type), self.camera, self.frame, self.video_time, self.track_id, self.kind,
                     dict(self.data), self.id, self.wall_time)


class CountRow(VideoBase):
    """One camera's counts of one class in one minute (UTC, ``YYYY-MM-DDTHH:MM``), from a ``counts``
    event: ``counts`` maps a measure (``seen``, ``in:<line>``, ``out:<line>``, ``zone:<zone>:max``,
    ``zone:<zone>:mean``) to its value; ``heatmap`` is the occupancy grid (rows x columns)."""

    __tablename__ = "video_counts"
    __table_args__ = (Index("ix_video_counts_camera_minute", "tenant", "camera", "minute"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the event's id and the class
    tenant: Mapped[str] = mapped_column(String(64), default="default")
    camera: Mapped[str] = mapped_column(String(200))
    minute: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(32))
    counts: Mapped[dict] = mapped_column(JSON)
    heatmap: Mapped[list | None] = mapped_column(JSON, nullable=True)
    frame_size: Mapped[list | None] = mapped_column(JSON, nullable=True)

    @classmethod
    def of(cls, event: Event, tenant: str = "default") -> list[CountRow]:
        """The rows of a ``counts`` event, one per class; the rows of one minute and class (runs) are
        summed when read (:func:`list_counts`).

        A row is its run's: a recording's minute (``recorded``: its camera has a ``start_time``) has
        one id per tenant, camera, minute, class and recording start (``start``), so that a second
        run of the same recording replaces its rows (it doubled every count) while two recordings of
        the camera whose minutes overlap (segments: one from 10:00:00, the next from 10:00:30) keep
        a row each and add up (one id per minute replaced the first with the second without a
        word); a live camera's minutes are its events' own (a restart within a minute adds up).
        Rows of the run, not one merged row per minute, because only they let a re-run replace its
        own share; no column is added: the id says it (no migration for the existing tables)."""
        rows = []
        for label, measures in event.data.get("classes", {}).items():
            counts = {k: v for k, v in measures.items() if k != "heatmap"}
            key = _recording_key(tenant, event, label, with_start=True) if event.data.get("recorded") \
                else f"{event.id}:{label}"[:64]
            rows.append(cls(id=key, tenant=tenant, camera=event.camera,
                            minute=event.data["minute"], label=label, counts=counts, heatmap=measures.get("heatmap"),
                            frame_size=event.data.get("frame_size")))
        return rows

    @staticmethod
    def superseded(event: Event, tenant: str = "default") -> list[str]:
        """The ids of the rows that a recording's ``counts`` event replaces besides its own: those its
        minute and classes had before recordings were told apart by their start (one per tenant,
        camera, minute and class; written by the same recording, or by the latest segment of that
        minute, which they had replaced). Deleted when the event is stored, so that running an old
        recording again does not count it twice. Also, for a service tenant (an id: no colon), the ids
        its rows had when an older ``watch`` stored them under its space ``svc:<id>``
        (:func:`adopt_space_rows` moves them, their ids hashed with the old name)."""
        if not event.data.get("recorded"):
            return []
        labels = list(event.data.get("classes", {}))
        ids = [_recording_key(tenant, event, label, with_start=False) for label in labels] \
            if event.data.get("start") else []
        if ":" not in tenant:
            ids += [_recording_key(f"svc:{tenant}", event, label, with_start=with_start)
                    for label in labels for with_start in (True, False)]
        return ids


def _recording_key(tenant: str, event: Event, label: str, *, with_start: bool) -> str:
    """The row id of a recording's minute and class (``with_start`` False: the id before recordings
    were told apart by their start, also that of an event written then, which has no ``start``)."""
    parts = [tenant, event.camera, event.data["minute"], label]
    if with_start and event.data.get("start"):
        parts.append(str(event.data["start"]))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class MinuteCounts:
    """A camera's counts of one class in one minute (see :class:`CountRow`)."""

    camera: str
    minute: str
    label: str
    counts: dict[str, Any]
    heatmap: list[list[int]] | None = None
    frame_size: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera, "minute": self.minute, "class": self.label, "counts": self.counts}


@dataclass(frozen=True)
class CountPage:
    """Per-minute counts of a time range, oldest first: at most ``limit`` minutes (each with every class
    asked for). ``truncated``: the range holds more minutes; ``next_from`` is the first one left out
    (ask again from it for the rest)."""

    rows: list[MinuteCounts]
    truncated: bool = False
    next_from: str | None = None


COUNT_PAGE_MINUTES = 1_440  # minutes per page: a day


def utc_time(value: str, name: str = "time") -> datetime:
    """``value`` (ISO 8601, as :meth:`datetime.fromisoformat` reads it: ``2026-12-04T10:00Z``,
    ``...+01:00``, a space for the ``T``, a date alone) as a naive UTC time; a time without an offset
    is UTC. Anything else is :class:`InvalidArgument`. The one parser of the stores' time bounds."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{name} is not an ISO 8601 time: {value[:40]!r}") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # valid ISO 8601 that UTC cannot hold (0001-01-01T00:00+01:00)
            raise InvalidArgument(f"{name} is out of range: {value[:40]!r} in UTC is before 0001-01-01 or after "
                                  "9999-12-31") from None
    return moment


def utc_minute(value: str, name: str = "time") -> str:
    """``value`` (see :func:`utc_time`) as the UTC minute it falls in, ``YYYY-MM-DDTHH:MM``."""
    return utc_time(value, name).isoformat(timespec="minutes")


def _wall_time_bound(moment: datetime) -> str:
    """The least text of an event's wall time at or after ``moment`` (naive UTC). Wall times are
    stored as ISO 8601 UTC with their offset (``...T10:01:30.500+00:00``; retail's clock writes
    microseconds or no fraction); the bound has no offset and no trailing zero of the fraction
    (``...T10:01:30.5``), so that, compared as text, a wall time of the same instant in any of
    these forms extends it (``+`` and ``.`` sort before the digits) and is never below it."""
    return moment.isoformat(timespec="microseconds").rstrip("0").rstrip(".")


def list_counts(engine: Engine, tenant: str, camera: str, *, since: str | None = None, until: str | None = None,
                label: str | None = None, limit: int = COUNT_PAGE_MINUTES) -> CountPage:
    """The camera's per-minute counts from the minute of ``since`` to before the minute of ``until``
    (ISO 8601, see :func:`utc_minute`; an offset is converted to UTC, none means UTC), oldest first, of
    one class or all; several rows of one minute and class (two runs) are summed. At most ``limit``
    minutes: a longer range is ``truncated`` (see :class:`CountPage`)."""
    for value in (camera, label):
        if value is not None and "\x00" in value:
            raise InvalidArgument("count filters cannot contain NUL characters")
    if limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}")
    if label is not None and label not in COUNTED_CLASSES:  # a typo ("cars") would read as "none counted"
        raise InvalidArgument(f"unknown class {label[:32]!r}: face or a COCO name such as {', '.join(ROAD_CLASSES)}")
    # a camera's name is kept composed (check_camera_name): either form finds it, and one kept before in another
    where = [CountRow.tenant == tenant, CountRow.camera.in_(name_forms(camera))]
    first = None if since is None else utc_minute(since, "from")
    last = None if until is None else utc_minute(until, "to")
    if first is not None and last is not None and first > last:  # else an empty series: "nothing was seen"
        raise InvalidArgument(f"the minutes run from {first} to {last}: 'from' is after 'to'")
    if first is not None:
        where.append(CountRow.minute >= first)
    if last is not None:
        where.append(CountRow.minute < last)
    if label is not None:
        where.append(CountRow.label == label)
    found: dict[tuple[str, str], MinuteCounts] = {}
    with Session(engine) as session:
        # the limit counts minutes, before the rows of a minute (classes, runs) are read and merged
        minutes = list(session.scalars(select(CountRow.minute).where(*where).distinct()
                                       .order_by(CountRow.minute).limit(limit + 1)))
        next_from = minutes[limit] if len(minutes) > limit else None
        if next_from is not None:
            where.append(CountRow.minute < next_from)
        for row in session.scalars(select(CountRow).where(*where).order_by(CountRow.minute, CountRow.label)):
            key = (row.minute, row.label)
            before = found.get(key)
            counts, heatmap = dict(row.counts), row.heatmap
            if before is not None:
                counts = {k: _merged(k, before.counts.get(k), counts.get(k)) for k in {*before.counts, *counts}}
                if before.heatmap is not None and heatmap is not None:
                    heatmap = [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(before.heatmap, heatmap)]
            found[key] = MinuteCounts(camera, row.minute, row.label, counts, heatmap, row.frame_size)
    return CountPage(list(found.values()), next_from is not None, next_from)


def _merged(measure: str, first: float | None, second: float | None) -> float:
    """One minute's ``measure`` of two runs (a live camera restarted within it; None: a run without
    it): events and crossings add up; a zone's most is the larger, its mean the two runs' mean."""
    if first is None or second is None:
        return first if second is None else second  # type: ignore[return-value]
    if measure.endswith(":max"):
        return max(first, second)
    if measure.endswith(":mean"):
        return round((first + second) / 2, 2)
    return first + second


def count_cameras(engine: Engine, tenant: str) -> list[str]:
    """The cameras of ``tenant`` that stored per-minute counts, sorted."""
    with Session(engine) as session:
        return list(session.scalars(select(CountRow.camera).where(CountRow.tenant == tenant).distinct()
                                    .order_by(CountRow.camera)))


def open_events_db(url: str, *, busy_s: float = 30.0) -> Engine:
    """An engine on ``url`` with the events table created if missing (``busy_s``: an SQLite lock's
    wait), and rows of an older FaceAtlas under a service space's name adopted (:func:`adopt_space_rows`)."""
    engine = create_database_engine(url, busy_s=busy_s)
    with engine.begin() as connection:
        VideoBase.metadata.create_all(connection)
        adopt_space_rows(connection)
    return engine


def adopt_space_rows(connection: Connection) -> int:
    """Put the events and minute counts that a ``watch`` of a FaceAtlas before 2026-12-05 stored
    under a service tenant's gallery space (``tenant: svc:acme`` in cams.yaml stored ``svc:acme``)
    under the tenant (``acme``), where everything since stores, lists, and erases them: they were
    listed by nobody, and deleting the subject they name, or the tenant, left them and their face
    snapshots. Run where the tables are opened (the server's start, ``watch``, erasures, `counts`):
    one scan of the tenant column. A table that is not there is skipped. Returns how many rows were moved (0 after the
    first run)."""
    moved, there = 0, set(inspect(connection).get_table_names())
    for row in (EventRow, CountRow):
        if row.__tablename__ not in there:
            continue
        column = row.tenant
        # exactly 'svc:' and more (not a range: under a PostgreSQL collation other than C, ';' sorts
        # before ':' and the range held nothing; not LIKE: SQLite's ignores case)
        older = (func.substr(column, 1, 4) == "svc:", func.length(column) > 4)
        # read first: the update, even of no row, took the write lock over a scan of the whole table at
        # every subject's erasure (90 ms with a camera-day of events, every other writer waiting)
        if connection.scalar(select(row.id).where(*older).limit(1)) is None:
            continue
        moved += rowcount(connection.execute(update(row).where(*older).values(tenant=func.substr(column, 5))))
    return moved


def list_events(engine: Engine, tenant: str, *, camera: str | None = None, type: str | None = None,
                since: str | None = None, limit: int = 100) -> list[Event]:
    """The tenant's newest stored events, newest first; ``since``: those emitted at or after it (ISO 8601,
    see :func:`utc_time`; an offset is converted to UTC, none means UTC). An unknown ``type``, a
    camera with a NUL character, a ``since`` that is not a time or a ``limit`` outside 1 to
    :data:`~faceatlas.gallery.PAGE_MAX` (SQLite read a negative one as every row) is
    :class:`InvalidArgument`."""
    check_limit(limit)
    if type is not None and type not in EVENT_TYPES:
        raise InvalidArgument(f"unknown event type {type[:40]!r}; one of {', '.join(EVENT_TYPES)}")
    if camera is not None and "\x00" in camera:
        raise InvalidArgument("event filters cannot contain NUL characters")
    bound = None if since is None else _wall_time_bound(utc_time(since, "since"))
    query = select(EventRow).where(EventRow.tenant == tenant)
    if camera is not None:
        query = query.where(EventRow.camera.in_(name_forms(camera)))
    if type is not None:
        query = query.where(EventRow.type == type)
    if bound is not None:
        query = query.where(EventRow.wall_time >= bound)
    with Session(engine) as session:
        return [row.to_event() for row in session.scalars(query.order_by(EventRow.wall_time.desc()).limit(limit))]


def event_snapshot(engine: Engine, tenant: str, event_id: str) -> bytes:
    """The JPEG that the pipeline kept with the tenant's event ``event_id`` (faces blurred as the
    camera's ``blur_unlisted`` asked). :class:`NotFound` when the event is another tenant's or
    unknown, kept no snapshot, or its file is gone (deleted by the operator's retention)."""
    with Session(engine) as session:
        row = session.scalars(select(EventRow).where(EventRow.tenant == tenant, EventRow.id == event_id[:32])).first()
    kept = row.data.get("snapshot") if row is not None else None
    path = Path(kept) if isinstance(kept, str) else None
    if path is None or path.suffix.lower() != ".jpg" or not path.is_file():
        raise NotFound(f"no snapshot for event {event_id[:32]!r}")
    return path.read_bytes()


def erase_tenant_events(engine: Engine, tenant: str) -> int:
    """Erase every stored event and minute count of ``tenant`` with the snapshot files its events
    kept (the frames: deleted first, where this process can reach them; a file already gone is
    fine), the rows after them in one transaction, so running this again after a crash finishes
    the job. A file that an event of another tenant names too is kept: it is that event's picture
    (snapshots were named ``<camera>_<frame>_<track>_<type>.jpg`` before they were named by their
    event, and two runs of a camera, of two tenants sharing a snapshots folder, wrote one file).
    Creates the tables when missing. Returns how many events were deleted."""
    with engine.begin() as connection:
        VideoBase.metadata.create_all(connection)
        adopt_space_rows(connection)
    with Session(engine) as session:
        kept = {row.get("snapshot") for row in session.scalars(select(EventRow.data).where(EventRow.tenant == tenant))}
        paths = sorted(s for s in kept if isinstance(s, str) and Path(s).suffix.lower() == ".jpg")
        shared = _snapshots_of_others(session, tenant, paths)
    for snapshot in paths:
        if snapshot not in shared:
            Path(snapshot).unlink(missing_ok=True)
    with Session(engine) as session, session.begin():
        session.execute(delete(CountRow).where(CountRow.tenant == tenant))
        return rowcount(session.execute(delete(EventRow).where(EventRow.tenant == tenant)))


def erase_subject_events(engine: Engine, tenant: str, subjects: Iterable[str], chunk: int = 500) -> int:
    """Erase the stored events of ``tenant`` that name one of ``subjects`` (gallery subject ids: the
    ``subject`` an event is about, ``identified``, ``watchlist_hit``, ``track_ended`` and the events
    of a track linked to an identified face, or the ``previous`` identity of an ``identified`` or
    ``identity_lost`` event), with the snapshot files they kept (the person's face): deleting a
    gallery subject, or its collection, deletes every trace of it. Events do not record the
    collection, so an event naming the same id matched in another collection of the tenant goes
    too. A snapshot file that a kept event (of any tenant) names too is kept: it is that event's
    picture. Files first, then the rows in one transaction, so a run again after a crash finishes
    the job (as :func:`erase_tenant_events`); the per-minute counts name nobody and stay. A database
    without the events table holds none (no table is made in a database that only holds a gallery).
    One pass over the tenant's events that name anybody, whatever the number of ``subjects`` (a
    collection's 100,000 ids were 200 scans). Returns how many events were deleted."""
    wanted = {s for s in subjects if s}
    if not wanted or not inspect(engine).has_table(EventRow.__tablename__):
        return 0
    with engine.begin() as connection:  # an older watch's rows of a service tenant: erased with the others
        adopt_space_rows(connection)
    subject, previous = EventRow.data["subject"].as_string(), EventRow.data["previous"].as_string()
    doomed: dict[str, Any] = {}
    # a few subjects (a subject's erasure): the database picks their events out; many (a collection's),
    # one pass over the events that name anybody. Every event was read and its JSON parsed here for
    # one subject: 2.7 s per erasure with one camera-day of events (565,000), a minute after a month.
    names = (or_(subject.in_(sorted(wanted)), previous.in_(sorted(wanted))) if len(wanted) <= chunk
             else or_(subject.is_not(None), previous.is_not(None)))
    with Session(engine) as session:
        query = select(EventRow.id, EventRow.data).where(EventRow.tenant == tenant, names)
        doomed.update((event_id, data.get("snapshot")) for event_id, data in session.execute(query)
                      if any(isinstance(data.get(key), str) and data[key] in wanted for key in ("subject", "previous")))
        paths = sorted({s for s in doomed.values() if isinstance(s, str) and Path(s).suffix.lower() == ".jpg"})
        shared = _snapshots_kept(session, set(doomed), paths, chunk)
    for snapshot in paths:
        if snapshot not in shared:
            Path(snapshot).unlink(missing_ok=True)
    ids = sorted(doomed)  # the tenant's (picked above): by their primary key alone, which SQLite's
    with Session(engine) as session, session.begin():  # planner otherwise left for the tenant's index,
        return sum(rowcount(session.execute(  # scanning all its events per chunk (1.2 s for 200,000)
            delete(EventRow).where(EventRow.id.in_(ids[start:start + chunk])))) for start in range(0, len(ids), chunk))


def purge_events(engine: Engine, before: datetime, chunk: int = 500, stop: threading.Event | None = None) -> int:
    """Delete the stored events of every tenant emitted before ``before`` (naive UTC) with the
    snapshot files they kept (faces), but a file that a kept event names too (the retention of
    ``FACEATLAS_EVENT_RETENTION_DAYS``: events and their face snapshots were kept for ever, 22,000
    files a day per camera). Files first, then the rows, ``chunk`` events at a time. The per-minute
    counts name nobody and stay. A database without the events table holds none (none is made).
    ``stop`` set ends it between two chunks (a watch run that ends waited for a months-long backlog
    with Ctrl-C held). Returns how many events were deleted."""
    if not inspect(engine).has_table(EventRow.__tablename__):
        return 0
    bound, deleted = _wall_time_bound(before), 0
    while stop is None or not stop.is_set():
        with Session(engine) as session:
            rows = session.execute(select(EventRow.id, EventRow.data).where(EventRow.wall_time < bound)
                                   .order_by(EventRow.wall_time).limit(chunk)).all()
            if not rows:
                return deleted
            doomed = {event_id: (data or {}).get("snapshot") for event_id, data in rows}
            paths = sorted({s for s in doomed.values() if isinstance(s, str) and Path(s).suffix.lower() == ".jpg"})
            shared = _snapshots_kept(session, set(doomed), paths, chunk)
        for snapshot in paths:
            if snapshot not in shared:
                Path(snapshot).unlink(missing_ok=True)
        with Session(engine) as session, session.begin():
            deleted += rowcount(session.execute(delete(EventRow).where(EventRow.id.in_(sorted(doomed)))))
    return deleted


def _snapshots_kept(session: Session, erased: set[str], paths: list[str], chunk: int) -> set[str]:
    """Those of ``paths`` that an event not among ``erased`` (ids, of any tenant) names as its snapshot."""
    named = EventRow.data["snapshot"].as_string()
    found: set[str] = set()
    for start in range(0, len(paths), chunk):
        rows = session.execute(select(EventRow.id, named).where(named.in_(paths[start:start + chunk])))
        found.update(path for event_id, path in rows if event_id not in erased)
    return found


def _snapshots_of_others(session: Session, tenant: str, paths: list[str], chunk: int = 500) -> set[str]:
    """Those of ``paths`` that an event of a tenant other than ``tenant`` names as its snapshot."""
    named = EventRow.data["snapshot"].as_string()
    found: set[str] = set()
    for start in range(0, len(paths), chunk):
        found.update(session.scalars(select(named).where(EventRow.tenant != tenant,
                                                         named.in_(paths[start:start + chunk])).distinct()))
    return found
