"""Token-bucket rate limits per API key (in process; one bucket per key and process)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``take(key, rate, burst)`` spends one token or says how long until one is available."""

    def __init__(self, clock=time.monotonic) -> None:  # noqa: ANN001 - a callable returning seconds
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key: int, rate: float, burst: int, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens (at most ``burst``): 0.0 when the call may proceed, else the
        seconds to wait (the Retry-After)."""
        cost = min(float(cost), float(burst))
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(burst), now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / rate if rate > 0 else 3600.0
