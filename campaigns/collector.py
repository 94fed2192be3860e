"""What /metrics computes from the database and the broker when it is scraped
(core.metrics.render_metrics runs the collectors HERALD_METRICS_COLLECTORS names;
docs/api.md, "Metrics").

Bounded queries, each through its owner: campaigns by status
(`selectors.campaigns_by_status`, one GROUP BY over push_campaigns), the
longest-overdue live schedule (`scheduling.oldest_due_schedule`: the sweeper's own
filter on the (status, fire_at) index, LIMIT 1) and the broker's queue depth
(`queue.queue_depths`). A part that cannot be read (database or broker down) is left
out of the scrape and logged; the rest is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from campaigns import queue, scheduling, selectors

logger = logging.getLogger("herald.metrics")


class ScrapeTimeCollector(Collector):
    """Gauges computed when /metrics is scraped (core.metrics.render_metrics)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        try:
            by_status = selectors.campaigns_by_status()
            oldest = scheduling.oldest_due_schedule(now=now)
        except DatabaseError:
            logger.warning("metrics: database unreachable", exc_info=True)
        else:
            campaigns = GaugeMetricFamily(
                "herald_campaigns", "Campaigns by status.", labels=["status"]
            )
            for status, count in by_status.items():
                campaigns.add_metric([status], count)
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
