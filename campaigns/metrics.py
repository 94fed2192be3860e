"""Campaign metrics: fan-out and run durations (observed by the processes that do the
work), and the values /metrics computes when it is scraped (docs/api.md, "Metrics").

`ScrapeTimeCollector` reads the database and the broker at scrape time, with bounded
queries: campaigns by status (a GROUP BY over the (status, fire_at) index of
push_campaigns), the longest-overdue live schedule (the same index, LIMIT 1, the
sweeper's own filter: `scheduling.oldest_due_schedule`) and the broker's queue
depth (`queue.queue_depths`). A part that cannot be read (database or broker down)
is left out of the scrape and logged; the rest is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from campaigns import queue, scheduling
from campaigns.models import CampaignStatus, PushCampaign

logger = logging.getLogger("herald.metrics")

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


class ScrapeTimeCollector(Collector):
    """Gauges computed when /metrics is scraped (core.metrics.render_metrics)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        try:
            by_status = dict(
                PushCampaign.objects.order_by()
                .values_list("status")
                .annotate(n=Count("pk"))
                .values_list("status", "n")
            )
            oldest = scheduling.oldest_due_schedule(now=now)
        except DatabaseError:
            logger.warning("metrics: database unreachable", exc_info=True)
        else:
            campaigns = GaugeMetricFamily(
                "herald_campaigns", "Campaigns by status.", labels=["status"]
            )
            for status in CampaignStatus.values:
                campaigns.add_metric([status], by_status.get(status, 0))
            yield campaigns
            yield GaugeMetricFamily(
                "herald_schedule_lag_seconds",
                "Age of the oldest scheduled campaign that is due but not fired (0: none): "
                "how far the sweeper is behind.",
                value=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
            )
        depths = queue.queue_depths()
        if depths is not None:
            depth = GaugeMetricFamily(
                "herald_broker_queue_depth",
                "Task messages waiting in the broker, by queue.",
                labels=["queue"],
            )
            for name, count in depths.items():
                depth.add_metric([name], count)
            yield depth
