"""``watch`` honours ``FACEATLAS_EVENT_RETENTION_DAYS`` over the events database it writes: only the
server's retention sweep deleted old events and their face snapshots, and a camera box running
``watch`` for weeks with no ``serve`` kept them for ever (22,000 snapshot files a day per camera).
:class:`EventRetention` runs :func:`~faceatlas.video.store.purge_events` at the run's start and every
period (the server's, ``FACEATLAS_RETENTION_SWEEP_SECONDS``) in a daemon thread of its own, 500
events a transaction: the cameras' writes wait at most for one of them (SQLite has one writer), a
run that ends stops it between two, and a sweep that fails (the database locked or gone) is logged
and tried again at the next period, never ending the run."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from faceatlas.db import create_database_engine, utcnow
from faceatlas.settings import RETENTION_SWEEP_SECONDS
from faceatlas.video.store import purge_events

log = logging.getLogger(__name__)


class EventRetention:
    """Delete the events of the database at ``url`` older than ``days`` (with the snapshot files
    they kept) once on :meth:`start`, then every ``period`` seconds until :meth:`close`, in a
    daemon thread. ``removed``: how many events it deleted."""

    CLOSE_WAIT_S = 30.0  # the most :meth:`close` waits for a sweep under way (as the cameras' end)

    def __init__(self, url: str, days: float, period: float = RETENTION_SWEEP_SECONDS) -> None:
        if days <= 0 or period <= 0:
            raise ValueError(f"a retention of {days} days swept every {period} s: both are above 0")
        self.url = url
        self.days = days
        self.period = period
        self.removed = 0
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Delete what is past the retention now; how many events (0 when the sweep failed: logged)."""
        engine = create_database_engine(self.url)
        try:
            deleted = purge_events(engine, utcnow() - timedelta(days=self.days), stop=self._stop)  # ends between chunks
        except Exception:  # the database locked or unreachable: the next period tries again
            log.warning("deleting the video events older than %g days failed; retrying in %gs", self.days,
                        self.period, exc_info=True)
            return 0
        finally:
            engine.dispose()
        if deleted:
            log.info("deleted %d video events older than %g days, with their snapshots", deleted, self.days)
        self.removed += deleted
        return deleted

    def start(self) -> None:
        """Sweep at once, then every ``period`` seconds, in a daemon thread (the run goes on meanwhile)."""
        self._thread = threading.Thread(target=self._run, name="faceatlas-event-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sweep()  # what expired while no watch ran goes first, even if the run ends at once
            while not self._stop.wait(self.period):
                self.sweep()
        finally:
            self._ended.set()

    def close(self) -> int:
        """Stop sweeping, waiting (at most :attr:`CLOSE_WAIT_S`) for a sweep under way; how many
        events were deleted in all. Waited on an Event, not ``Thread.join`` (see ``run_cameras``)."""
        self._stop.set()
        if self._thread is not None and not self._ended.wait(self.CLOSE_WAIT_S):
            log.warning("the sweep of the old video events is still under way; it stops with the process")
        return self.removed
