"""Usage records written off the request path (the bill's source)."""

from __future__ import annotations

import logging
import queue
import threading

from faceatlas.service.accounts import Accounts
from faceatlas.service.db import UsageRecord

log = logging.getLogger("faceatlas.service")


class UsageWriter:
    """Writes usage records from a background thread in small batches; ``flush`` waits for them."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._rows: queue.Queue[UsageRecord | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._loop, name="faceatlas-usage", daemon=True)
        self._thread.start()

    def add(self, row: UsageRecord) -> None:
        with self._idle:
            self._pending += 1
        self._rows.put(row)

    def flush(self, timeout: float = 10.0) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.flush()
        self._rows.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._rows.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 500:
                try:
                    row = self._rows.get(timeout=0.05)
                except queue.Empty:
                    break
                if row is None:
                    self._rows.put(None)
                    break
                batch.append(row)
            try:
                self._accounts.record_usage(batch)
            except Exception:  # a metering outage must not take the API down; it is logged
                log.exception("could not record %d usage rows", len(batch))
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()
