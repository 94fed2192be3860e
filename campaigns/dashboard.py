"""Dashboard reads: what is sending, what is due, how sends went (the console home).

Selectors, so the API or the metrics can answer the same numbers (DESIGN.md, "Every
number shown is computed by the same function"). Every query is bounded whatever the
size of push_deliveries:

- campaigns sending / due: the (status, fire_at) index, LIMITed; a sending
  campaign's numbers are `campaigns.runs.campaign_stats`, the API's `stats`.
- sends per day, success rate, tokens retired: sums of the runs' counters
  (campaign_runs: one row per send, not per device) over the window, bucketed by the
  day the run started; exact once a run settles, live while it sends. Test pushes
  (no campaign) are not counted.
- provider errors: the newest failed / invalid-token rows among the last
  ERROR_SCAN_ROWS deliveries, a primary-key range (push_deliveries has no index on
  status alone, and rare errors must not turn into a table scan).
- engagement of recent campaigns: the ENGAGEMENT_LIMIT campaigns sent last (the
  sent_at indexes), each with `campaigns.analytics.campaign_analytics` (the API's
  /analytics: a few aggregate queries over rollups, whatever the campaign's size),
  so a fixed number of small queries; the aggregate rates are sums of those numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate

from campaigns.analytics import campaign_analytics
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.selectors import with_current_run
from core.models import Project
from delivery.models import PushDelivery

WINDOW_DAYS = 14
DUE_WITHIN = timedelta(hours=24)
LIST_LIMIT = 10
ERROR_LIMIT = 8
ERROR_SCAN_ROWS = 50_000
ENGAGEMENT_LIMIT = 10
# Counters of a run summed per day (CampaignRun field names).
DAY_COUNTERS = ("targeted", "sent", "failed", "invalid_tokens", "skipped", "unknown")


@dataclass(frozen=True)
class SendingCampaign:
    campaign: PushCampaign
    stats: dict[str, int]  # campaign_stats: the API's numbers


@dataclass(frozen=True)
class DaySends:
    day: date
    targeted: int = 0
    sent: int = 0
    failed: int = 0
    invalid_tokens: int = 0
    skipped: int = 0
    unknown: int = 0


@dataclass(frozen=True)
class SendSummary:
    """Totals over the window: attempted = every push that reached a provider's
    answer (sent, failed, invalid token, unknown); skipped ones never left."""

    sent: int
    attempted: int
    tokens_retired: int

    @property
    def success_rate(self) -> float | None:
        return self.sent / self.attempted if self.attempted else None


def _of_project(qs: QuerySet[PushCampaign], project: Project | None) -> QuerySet[PushCampaign]:
    return qs if project is None else qs.filter(project=project)


def campaigns_sending(
    *, project: Project | None, limit: int = LIST_LIMIT
) -> tuple[list[SendingCampaign], int]:
    """The campaigns sending now (newest send first, at most `limit`) with their
    numbers, and how many are sending in all."""
    sending = _of_project(PushCampaign.objects.filter(status=CampaignStatus.SENDING), project)
    page = with_current_run(sending.select_related("project")).order_by("-sent_at", "-id")[:limit]
    return [SendingCampaign(c, campaign_stats(c)) for c in page], sending.count()


def campaigns_due(
    *,
    project: Project | None,
    now: datetime,
    within: timedelta = DUE_WITHIN,
    limit: int = LIST_LIMIT,
) -> tuple[list[PushCampaign], int]:
    """Scheduled campaigns whose next run starts before now + `within` (a late one
    too: the sweeper is about to fire it), soonest first, and how many there are."""
    due = _of_project(
        PushCampaign.objects.filter(status=CampaignStatus.SCHEDULED, fire_at__lte=now + within),
        project,
    )
    page = due.select_related("project", "segment").order_by("fire_at", "id")[:limit]
    return list(page), due.count()


def _runs_since(project: Project | None, start: datetime) -> QuerySet[CampaignRun]:
    runs = CampaignRun.objects.filter(started_at__gte=start)
    return runs if project is None else runs.filter(campaign__project=project)


def window_start(now: datetime, zone: tzinfo, days: int = WINDOW_DAYS) -> datetime:
    """Midnight in `zone` at the start of the window's first day (today is the last)."""
    first = now.astimezone(zone).date() - timedelta(days=days - 1)
    return datetime.combine(first, time.min, tzinfo=zone)


def sends_per_day(
    *, project: Project | None, now: datetime, zone: tzinfo, days: int = WINDOW_DAYS
) -> list[DaySends]:
    """One entry per day of the window (oldest first, empty days included), in
    `zone`'s days: the counters of the runs that started that day."""
    start = window_start(now, zone, days)
    rows = (
        _runs_since(project, start)
        .annotate(day=TruncDate("started_at", tzinfo=zone))
        .order_by()
        .values("day")
        .annotate(**{name: Sum(name) for name in DAY_COUNTERS})
    )
    by_day: dict[date, dict[str, Any]] = {row["day"]: dict(row) for row in rows}
    first = start.date()
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row: dict[str, Any] = by_day.get(day, {})
        result.append(DaySends(day, **{name: int(row.get(name) or 0) for name in DAY_COUNTERS}))
    return result


def send_summary(days: list[DaySends]) -> SendSummary:
    """Totals of `sends_per_day`'s entries (the same window, the same counters)."""
    sent = sum(d.sent for d in days)
    attempted = sent + sum(d.failed + d.invalid_tokens + d.unknown for d in days)
    return SendSummary(
        sent=sent, attempted=attempted, tokens_retired=sum(d.invalid_tokens for d in days)
    )


def recent_provider_errors(
    *, project: Project | None, limit: int = ERROR_LIMIT, scan: int = ERROR_SCAN_ROWS
) -> list[PushDelivery]:
    """The newest deliveries a provider refused (failed or invalid token), among the
    last `scan` deliveries, newest first."""
    newest = PushDelivery.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is None:
        return []
    refused = PushDelivery.objects.filter(
        id__gt=newest - scan,
        status__in=(PushDelivery.Status.FAILED, PushDelivery.Status.INVALID_TOKEN),
    )
    if project is not None:
        refused = refused.filter(token__project=project)
    return list(
        refused.select_related("campaign", "app_user", "token__project").order_by("-id")[:limit]
    )


@dataclass(frozen=True)
class CampaignEngagement:
    campaign: PushCampaign
    analytics: dict[str, Any]  # campaign_analytics: the API's /analytics


@dataclass(frozen=True)
class EngagementSummary:
    """Rates over several campaigns: the sums of their analytics' counts per sent
    push. Silent campaigns have no open rate, so opens are over the others' sends;
    campaigns without a goal convert nobody, so conversions are over the sends of
    those with one."""

    campaigns: int
    sent: int
    opened: int
    clicked: int
    converted: int
    sent_with_alert: int  # sent by campaigns that are not silent
    sent_with_goal: int  # sent by campaigns that have a conversion goal

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent_with_alert if self.sent_with_alert else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.sent_with_goal if self.sent_with_goal else None


def recent_engagement(
    *, project: Project | None, limit: int = ENGAGEMENT_LIMIT
) -> list[CampaignEngagement]:
    """The `limit` campaigns that sent most recently (newest first), each with its
    `campaign_analytics` over all its runs."""
    sent = _of_project(PushCampaign.objects.filter(sent_at__isnull=False), project)
    page = sent.select_related("project").order_by("-sent_at", "-id")[:limit]
    return [CampaignEngagement(c, campaign_analytics(c)) for c in page]


def engagement_summary(rows: list[CampaignEngagement]) -> EngagementSummary:
    """`recent_engagement`'s campaigns taken together."""

    def total(key: str, *, with_alert: bool = False, with_goal: bool = False) -> int:
        return sum(
            r.analytics["totals"][key]
            for r in rows
            if not (with_alert and r.analytics["silent"])
            and not (with_goal and not r.analytics["goals"])
        )

    return EngagementSummary(
        campaigns=len(rows),
        sent=total("sent"),
        opened=total("opened", with_alert=True),
        clicked=total("clicked"),
        converted=total("converted"),
        sent_with_alert=total("sent", with_alert=True),
        sent_with_goal=total("sent", with_goal=True),
    )
