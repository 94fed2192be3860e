"""Campaign reads: querysets with the joins their callers need."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Max, Min, Prefetch, QuerySet
from django.db.models.functions import Coalesce, Trunc

from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats, current_run, run_rows
from campaigns.validation import MAX_RUN_NUMBER, clean_tag
from core.errors import InvalidInput, NotFound
from core.models import Project
from core.pagination import BY_ROW_ID, NEWEST_FIRST, keyset_page
from delivery.models import Platform, Provider, PushDelivery

Status = PushDelivery.Status
# Rows a provider answered for (or may have): what the timeline plots.
ATTEMPTED = (Status.SENT, Status.FAILED, Status.INVALID_TOKEN, Status.UNKNOWN)
# Final rows whose error_message is a reason worth listing.
FINAL_WITH_REASON = (Status.FAILED, Status.INVALID_TOKEN, Status.SKIPPED, Status.UNKNOWN)


def with_current_run(campaigns: QuerySet[PushCampaign]) -> QuerySet[PushCampaign]:
    """Prefetch each campaign's current run (`campaigns.runs.campaign_stats` reads it),
    so a page of campaigns costs one query for all their numbers."""
    return campaigns.prefetch_related(
        Prefetch(
            "runs",
            queryset=CampaignRun.objects.filter(number=F("campaign__current_run")),
            to_attr="current_runs",
        )
    )


def campaigns_by_status() -> dict[str, int]:
    """How many campaigns (all projects) are in each status, every status named.

    One GROUP BY over push_campaigns (a row per campaign, not per device): ~19 ms at
    50,000 campaigns, by a sequential or an index-only scan of the (status, fire_at)
    index, whichever the planner finds cheaper (docs/decisions.md, "Metrics")."""
    counts = dict(
        PushCampaign.objects.order_by()
        .values_list("status")
        .annotate(n=Count("status"))
        .values_list("status", "n")
    )
    return {status: counts.get(status, 0) for status in CampaignStatus.values}


def campaign_get(*, project: Project, campaign_id: uuid.UUID) -> PushCampaign:
    try:
        return with_current_run(PushCampaign.objects.select_related("segment")).get(
            pk=campaign_id, project=project
        )
    except PushCampaign.DoesNotExist as exc:
        raise NotFound("Campaign not found.") from exc


def campaign_page(
    *,
    project: Project,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    tag: str | None = None,
) -> tuple[list[PushCampaign], str | None]:
    """Newest first, keyset-paginated on (created_at, id); `tag`: only campaigns
    having that tag."""
    qs: QuerySet[PushCampaign] = with_current_run(
        PushCampaign.objects.filter(project=project).select_related("segment")
    )
    if status is not None:
        if status not in CampaignStatus.values:
            raise InvalidInput(
                f"status must be one of {', '.join(CampaignStatus.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    if tag is not None:
        qs = with_tag(qs, clean_tag("tag", tag))
    return keyset_page(qs, keys=NEWEST_FIRST, cursor=cursor, limit=limit, descending=True)


def with_tag(campaigns: QuerySet[PushCampaign], tag: str) -> QuerySet[PushCampaign]:
    """Campaigns whose `tags` list holds `tag`. PostgreSQL: JSON containment (`@>`);
    SQLite has no JSON contains lookup, so an EXISTS over json_each(tags)."""
    if connection.vendor == "postgresql":
        return campaigns.filter(tags__contains=[tag])
    # Fixed SQL; the tag is a parameter.
    return campaigns.extra(
        where=['EXISTS (SELECT 1 FROM json_each("push_campaigns"."tags") WHERE value = %s)'],
        params=[tag],
    )


# The console's tag filter lists the tags of the newest TAGS_SCAN campaigns (one
# index-ordered query), at most TAGS_LISTED of them, the most used.
TAGS_SCAN = 1000
TAGS_LISTED = 50


def tags_in_use(
    *,
    project: Project | None = None,
    project_ids: list[Any] | None = None,
    scan: int = TAGS_SCAN,
    limit: int = TAGS_LISTED,
) -> list[str]:
    """The tags the newest `scan` campaigns carry (of `project`, of `project_ids` — a
    console user's projects — or of all projects): the `limit` most used, in
    alphabetical order. Bounded whatever the number of campaigns; a tag only older
    campaigns carry can still be filtered on (`with_tag`)."""
    campaigns = PushCampaign.objects.order_by("-created_at", "-id")
    if project is not None:
        campaigns = campaigns.filter(project=project)
    if project_ids is not None:
        campaigns = campaigns.filter(project__in=project_ids)
    counts = Counter(
        tag
        for tags in campaigns.values_list("tags", flat=True)[:scan]
        if isinstance(tags, list)
        for tag in tags
        if isinstance(tag, str)
    )
    most_used = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return sorted(tag for tag, _ in most_used)


def campaign_run_get(*, campaign: PushCampaign, number: str | int) -> CampaignRun:
    """One run of the campaign by its number (a path segment); NOT_FOUND otherwise."""
    text = str(number)
    if text.isascii() and text.isdigit() and len(text) <= 10 and 1 <= int(text) <= MAX_RUN_NUMBER:
        run = CampaignRun.objects.filter(campaign=campaign, number=int(text)).first()
        if run is not None:
            return run
    raise NotFound("Run not found.")


def delivery_page(
    *,
    campaign: PushCampaign,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    run: int | None = None,
) -> tuple[list[PushDelivery], str | None]:
    """Per-token results in id order, keyset-paginated."""
    qs = PushDelivery.objects.filter(campaign=campaign).select_related("token", "app_user")
    if status is not None:
        if status not in PushDelivery.Status.values:
            raise InvalidInput(
                f"status must be one of {', '.join(PushDelivery.Status.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    if run is not None:
        qs = qs.filter(run=run)
    return keyset_page(qs, keys=BY_ROW_ID, cursor=cursor, limit=limit)


def campaign_runs(*, campaign: PushCampaign) -> QuerySet[CampaignRun]:
    return CampaignRun.objects.filter(campaign=campaign).order_by("-number")


# --- per-run results (the console's campaign page; an API could answer the same) ------

# How many error reasons a breakdown lists (the most frequent first).
TOP_REASONS = 10
# Timeline resolution by the run's span: the finest unit that keeps it under ~200 points.
_TIMELINE_UNITS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(minutes=3), "second"),
    (timedelta(hours=3), "minute"),
    (timedelta(days=8), "hour"),
)


def _timeline_unit(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "second"
    span = last - first
    return next((unit for limit, unit in _TIMELINE_UNITS if span <= limit), "day")


def run_breakdown(*, campaign_id: uuid.UUID, run: int) -> dict[str, Any]:
    """One run's results counted from its rows: by status, provider, platform and
    error reason, and attempts over time (per status).

    Aggregate queries only (GROUP BY on the run's rows, found through the
    (campaign, run, id) index), so the work is one scan of the run whatever its size
    and the answer is bounded: statuses, providers and platforms are fixed sets,
    reasons are the TOP_REASONS most frequent, the timeline at most ~200 buckets.
    The status counts sum to the run's rows (`campaigns.runs.run_stats` counts the
    same rows the same way).
    """
    rows = run_rows(campaign_id, run).order_by()
    by_status = dict.fromkeys(PushDelivery.Status.values, 0)
    for status, n in rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"):
        by_status[status] = n
    by_provider = dict.fromkeys(Provider.values, 0)
    for provider, n in (
        rows.values_list("provider").annotate(n=Count("id")).values_list("provider", "n")
    ):
        by_provider[provider] = n
    by_platform = dict.fromkeys(Platform.values, 0)
    for platform, n in (
        rows.values_list("token__platform")
        .annotate(n=Count("id"))
        .values_list("token__platform", "n")
    ):
        by_platform[platform] = n
    reasons = [
        {"reason": reason, "status": status, "count": n}
        for reason, status, n in rows.exclude(error_message="")
        .filter(status__in=FINAL_WITH_REASON)
        .values_list("error_message", "status")
        .annotate(n=Count("id"))
        .order_by("-n", "error_message")
        .values_list("error_message", "status", "n")[:TOP_REASONS]
    ]
    attempted = rows.filter(status__in=ATTEMPTED).annotate(at=Coalesce("sent_at", "claimed_at"))
    span = attempted.aggregate(first=Min("at"), last=Max("at"))
    unit = _timeline_unit(span["first"], span["last"])
    buckets: dict[datetime, dict[str, int]] = {}
    for bucket, status, n in (
        attempted.exclude(at=None)
        .annotate(bucket=Trunc("at", unit))
        .values_list("bucket", "status")
        .annotate(n=Count("id"))
        .order_by("bucket")
        .values_list("bucket", "status", "n")
    ):
        buckets.setdefault(bucket, dict.fromkeys(ATTEMPTED, 0))[status] = n
    return {
        "run": run,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_provider": by_provider,
        "by_platform": by_platform,
        "reasons": reasons,
        "timeline": {
            "unit": unit,
            "points": [{"at": at, **counts} for at, counts in buckets.items()],
        },
    }


def campaign_progress(*, campaign: PushCampaign, now: datetime) -> dict[str, Any]:
    """The campaign's live numbers (`campaign_stats`, what the API's `stats` are)
    plus how far along its current run is: percent done, the average rate since the
    run started and, while sending, the time left at that rate.

    Reads the campaign's current run row only (its counters are bumped by the
    batches while sending), so it is cheap enough to poll.
    """
    stats = campaign_stats(campaign)
    run = current_run(campaign)
    done = stats["targeted"] - stats["pending"]
    sending = campaign.status == CampaignStatus.SENDING
    rate: float | None = None
    eta: int | None = None
    if run is not None:
        elapsed = ((run.completed_at or now) - run.started_at).total_seconds()
        if elapsed > 0 and done:
            rate = round(done / elapsed, 1)
        if sending and rate:
            eta = round(stats["pending"] / (done / elapsed))
    return {
        "status": campaign.status,
        "sending": sending,
        "run": None
        if run is None
        else {
            "number": run.number,
            "trigger": run.trigger,
            "status": run.status,
            "fanout_done": run.fanout_done,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "error": run.error,
        },
        "stats": stats,
        "done": done,
        "percent": round(100 * done / stats["targeted"], 1) if stats["targeted"] else 0.0,
        "rate_per_second": rate,
        "eta_seconds": eta,
    }
