"""Campaign analytics: the one function the API, the console and the dashboard read.

Numbers come from the run counters (campaign_runs: targeted, sent, failed - live while
a run sends, exact once it settles) and the engagement rollup
(campaign_engagement_buckets: opens, clicks, conversions bumped at ingestion; the
sent/failed breakdown counted when a run settles). Never from raw events or the
delivery rows: a request costs three small aggregate queries whatever the campaign's
size (docs/decisions.md, "Engagement and conversions").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, F, Min, Q, QuerySet, Sum, When
from django.db.models.functions import Trunc

from campaigns.engagement import minute_of
from campaigns.models import CampaignRun, EngagementBucket, EngagementMetric, PushCampaign
from delivery.models import Platform, Provider

Metric = EngagementMetric
# Per-minute points for the first MINUTE_SPAN after a run's start, per hour after.
MINUTE_SPAN = timedelta(hours=3)
SERIES_METRICS = ("sent", "opened", "clicked", "converted")
BREAKDOWN_METRICS = SERIES_METRICS


def _rate(count: int, sent: int) -> float:
    return round(count / sent, 6) if sent else 0.0


def primary_goal_index(campaign: PushCampaign) -> int | None:
    return next((i for i, goal in enumerate(campaign.goals or ()) if goal.get("primary")), None)


def _run_totals(campaign: PushCampaign, run: CampaignRun | None) -> dict[str, Any]:
    if run is not None:
        return {
            "targeted": run.targeted,
            "sent": run.sent,
            "failed": run.failed,
            "invalid_tokens": run.invalid_tokens,
            "runs": 1,
            "started_at": run.started_at,
        }
    agg = CampaignRun.objects.filter(campaign=campaign).aggregate(
        targeted=Sum("targeted"),
        sent=Sum("sent"),
        failed=Sum("failed"),
        invalid_tokens=Sum("invalid_tokens"),
        runs=Count("id"),
        started_at=Min("started_at"),
    )
    return {key: (value or 0) if key != "started_at" else value for key, value in agg.items()}


def _series(
    buckets: QuerySet[EngagementBucket], *, primary: int | None, minute_until: datetime | None
) -> list[dict[str, Any]]:
    wanted = Q(metric__in=(Metric.SENT, Metric.OPENED, Metric.CLICKED))
    if primary is not None:
        wanted |= Q(metric=Metric.CONVERTED, key=str(primary))
    hour = Trunc("minute", "hour")
    bucket = (
        hour
        if minute_until is None
        else Case(When(minute__lt=minute_until, then=F("minute")), default=hour)
    )
    points: dict[datetime, dict[str, int]] = {}
    for t, metric, n in (
        buckets.filter(wanted)
        .annotate(t=bucket)
        .values_list("t", "metric")
        .annotate(n=Sum("count"))
        .values_list("t", "metric", "n")
    ):
        points.setdefault(t, dict.fromkeys(SERIES_METRICS, 0))[metric] = n
    return [{"t": t, **counts} for t, counts in sorted(points.items())]


def campaign_analytics(campaign: PushCampaign, run: CampaignRun | None = None) -> dict[str, Any]:
    """Targeted/sent/failed, opens, clicks (per action), conversions (per goal), rates,
    by provider and platform, and a time series, for one run or all of them (sums).

    Rates are per sent push (0..1); a silent campaign or run has no open rate (None).
    Series: one run's points are per minute for its first three hours and per hour
    after (`minute_until` says where); all runs of a campaign with several runs are
    per hour throughout, so no point of one run overlaps a finer one of another.
    While a run is still sending, `totals` are its live counters, and the per-provider,
    per-platform and per-minute `sent` counts appear when it settles.
    """
    totals_row = _run_totals(campaign, run)
    buckets = EngagementBucket.objects.filter(campaign=campaign).order_by()
    if run is not None:
        buckets = buckets.filter(run=run.number)
    primary = primary_goal_index(campaign)

    by_provider = {p: dict.fromkeys(BREAKDOWN_METRICS, 0) for p in Provider.values}
    by_platform = {p: dict.fromkeys(BREAKDOWN_METRICS, 0) for p in Platform.values}
    counted = dict.fromkeys(("opened", "clicked"), 0)
    actions = {action["id"]: 0 for action in campaign.actions or ()}
    per_goal: dict[int, int] = {}
    for metric, key, provider, platform, n in (
        buckets.values_list("metric", "key", "provider", "platform")
        .annotate(n=Sum("count"))
        .values_list("metric", "key", "provider", "platform", "n")
    ):
        if metric == Metric.ACTION:
            actions[key] = actions.get(key, 0) + n
            continue
        if metric == Metric.CONVERTED:
            index = int(key)
            per_goal[index] = per_goal.get(index, 0) + n
            if index != primary:
                continue
        elif metric in counted:
            counted[metric] += n
        if metric in BREAKDOWN_METRICS:
            by_provider.setdefault(provider, dict.fromkeys(BREAKDOWN_METRICS, 0))[metric] += n
            by_platform.setdefault(platform, dict.fromkeys(BREAKDOWN_METRICS, 0))[metric] += n

    sent = totals_row["sent"]
    converted = per_goal.get(primary, 0) if primary is not None else 0
    silent = run.silent if run is not None else campaign.silent
    single = run is not None or totals_row["runs"] == 1
    minute_until = (
        minute_of(totals_row["started_at"]) + MINUTE_SPAN
        if single and totals_row["started_at"] is not None
        else None
    )
    points = _series(buckets, primary=primary, minute_until=minute_until)
    return {
        "campaign_id": campaign.pk,
        "run": run.number if run is not None else None,
        "silent": silent,
        "totals": {
            "targeted": totals_row["targeted"],
            "sent": sent,
            "failed": totals_row["failed"],
            "invalid_tokens": totals_row["invalid_tokens"],
            "opened": counted["opened"],
            "clicked": counted["clicked"],
            "converted": converted,
        },
        "rates": {
            "open_rate": None if silent else _rate(counted["opened"], sent),
            "click_rate": _rate(counted["clicked"], sent),
            "conversion_rate": _rate(converted, sent),
        },
        "clicks_by_action": actions,
        "goals": [
            {
                "index": index,
                "name": goal["name"],
                "event": goal["event"],
                "primary": bool(goal.get("primary")),
                "window_hours": goal["window_hours"],
                "converted": per_goal.get(index, 0),
                "rate": _rate(per_goal.get(index, 0), sent),
            }
            for index, goal in enumerate(campaign.goals or ())
        ],
        "by_provider": by_provider,
        "by_platform": by_platform,
        "series": {
            "resolution": "hour" if minute_until is None else "minute",
            "minute_until": minute_until,
            "points": points,
        },
    }
