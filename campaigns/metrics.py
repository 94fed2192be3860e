"""Campaign metrics observed by the processes that do the work: fan-out and run
durations (docs/api.md, "Metrics"). What /metrics computes when it is scraped is in
campaigns/collector.py. Imports nothing from campaigns (runs and sending import it).
"""

from __future__ import annotations

from prometheus_client import Histogram

FANOUT_SECONDS = Histogram(
    "herald_fanout_duration_seconds",
    "Duration of one fan-out task: audience resolved, delivery rows created, batches enqueued.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
RUN_SECONDS = Histogram(
    "herald_run_duration_seconds",
    "Duration of a campaign run from its start until it was sent (every row final), "
    "by trigger (send, schedule, recurrence, explicit).",
    ["trigger"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)
