"""Provider request latencies, tallied in process for the metrics.

Senders call `record` once per request (a bisect and two additions under a lock,
about a microsecond); the delivery engine drains the tally into the
`herald_provider_request_seconds` histogram with each result flush
(delivery/metrics.py). Observing each request straight into prometheus-client's
multiprocess histogram costs 4-10 us of the worker's CPU per push (docs/decisions.md,
"Metrics"), which the send path would feel. Pure: no Django, no prometheus-client.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

# Upper bounds (seconds) of the histogram's buckets; +Inf follows. A request that
# times out lands at the provider timeout (10 s by default).
BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Tally:
    """Per-provider bucket counts and sums since the last drain. `record` runs on the
    delivery loop's thread, `drain` on the task's, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def record(self, provider: str, seconds: float) -> None:
        index = bisect_left(BOUNDS, seconds)  # `le` buckets: a bound includes itself
        with self._lock:
            counts = self._counts.get(provider)
            if counts is None:
                counts = self._counts[provider] = [0] * (len(BOUNDS) + 1)
                self._sums[provider] = 0.0
            counts[index] += 1
            self._sums[provider] += seconds

    def drain(self) -> dict[str, tuple[list[int], float]]:
        """{provider: (counts per bucket, +Inf last; sum of seconds)} since the last
        drain; the tally starts again from zero."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = {}, {}
        return {provider: (counts[provider], sums[provider]) for provider in counts}

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._counts, self._sums = {}, {}


_tally = _Tally()
record = _tally.record
drain = _tally.drain
# A pool child starts with nothing tallied (its parent's requests are the parent's)
# and a lock no other thread can be holding.
os.register_at_fork(after_in_child=_tally._reset_after_fork)
