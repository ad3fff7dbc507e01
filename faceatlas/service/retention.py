"""What the service keeps only for a while is deleted once its time passes, whatever the traffic:
a sweep at the service's start and every ``retention_sweep_seconds`` after it, in a background
thread of each process (the deletions are conditional and idempotent: processes sweeping
together delete each row once).

Each job is a layer's own expiry function (``KycService.purge``: verification reference images
past their retention, selfie fingerprints past the replay window; ``purge_anonymous_visitors``:
stores' anonymous visitors past ``anonymous_retention_hours``; ``Gallery.sweep_indexes``: the
index files of this machine's folder that deletes through other folders left holding erased
vectors), which also runs on that layer's traffic; the sweep only makes sure it runs without any."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class RetentionSweep:
    """Run ``jobs`` (a name -> a function deleting what is past its retention, returning how many
    it deleted) once on :meth:`start`, then every ``period`` seconds until :meth:`close`. A job
    that fails (the database down) is logged and runs again at the next period."""

    def __init__(self, jobs: Mapping[str, Callable[[], int]], period: float) -> None:
        if period <= 0:
            raise ValueError(f"a sweep's period is above 0 seconds, not {period}")
        self.jobs = dict(jobs)
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> dict[str, int]:
        """Run every job once now; what each deleted (a job that failed is left out)."""
        deleted = {}
        for name, job in self.jobs.items():
            try:
                deleted[name] = job()
            except Exception:  # the database down: the next period tries again
                log.warning("deleting expired %s failed; retrying in %ss", name, self.period, exc_info=True)
                continue
            if deleted[name]:
                log.info("deleted %d expired %s", deleted[name], name)
        return deleted

    def start(self) -> None:
        """Sweep once now (what expired while the service was down goes before it serves), then
        every ``period`` seconds in a daemon thread."""
        self.sweep()
        self._thread = threading.Thread(target=self._run, name="faceatlas-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sweep()

    def close(self) -> None:
        """Stop sweeping; waits for a sweep under way (before the database is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
