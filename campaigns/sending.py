"""A run of a campaign, from audience to final stats (the campaign side of delivery).

* fan-out: resolve the audience fresh, stream its tokens in keyset-paginated
  chunks, insert one queued push_deliveries row per token (conflict-ignoring, so a
  repeated fan-out adds nothing) and enqueue one batch task per chunk, identified
  by its token-id range.
* batches: claim, send and record through delivery.services (which guarantees a
  row is never sent twice) and bump the run's counters with F().
* finish: once the fan-out is done and nothing is queued, the run's stats are
  recounted exactly from its rows and the run and campaign move to `sent` by
  conditional UPDATEs.
* sweep: runs that stopped making progress (worker killed, broker flushed) are
  re-driven; claims whose lease expired are closed as interrupted.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from campaigns import queue
from campaigns.content import campaign_content
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from delivery.models import PushDelivery
from delivery.services import (
    BatchOutcome,
    deliveries_create,
    deliveries_expire_claims,
    deliveries_send,
    deliveries_skip,
    providers_without_credentials,
)
from segments.audience import resolve_audience

logger = logging.getLogger("herald.sending")

Status = PushDelivery.Status


def _rows(campaign_id: uuid.UUID, run: int) -> QuerySet[PushDelivery]:
    return PushDelivery.objects.filter(campaign_id=campaign_id, run=run)


def _is_active(campaign_id: uuid.UUID, run: int) -> bool:
    return PushCampaign.objects.filter(
        pk=campaign_id, status=CampaignStatus.SENDING, current_run=run
    ).exists()


def _active_campaign(campaign_id: uuid.UUID, run: int) -> PushCampaign | None:
    """The campaign if `run` is its current, still-sending run; else None (stale task)."""
    return (
        PushCampaign.objects.select_related("project", "segment")
        .filter(pk=campaign_id, status=CampaignStatus.SENDING, current_run=run)
        .first()
    )


def _touch(campaign_id: uuid.UUID, run: int, outcome: BatchOutcome | None = None) -> None:
    changes = {}
    if outcome is not None:
        for name in ("sent", "failed", "invalid_tokens", "skipped"):
            value = getattr(outcome, name)
            if value:
                changes[name] = F(name) + value
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(
        last_progress_at=timezone.now(), **changes
    )


def _fail_run(campaign: PushCampaign, run: int, reason: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        PushCampaign.objects.filter(
            pk=campaign.pk, status=CampaignStatus.SENDING, current_run=run
        ).update(status=CampaignStatus.FAILED, last_error=reason[:500], updated_at=now)
        CampaignRun.objects.filter(
            campaign_id=campaign.pk, number=run, status=CampaignRun.Status.SENDING
        ).update(status=CampaignRun.Status.FAILED, error=reason[:500], completed_at=now)


def run_fan_out(*, campaign_id: uuid.UUID, run: int) -> None:
    """Create the run's delivery rows and enqueue their batches. Idempotent."""
    campaign = _active_campaign(campaign_id, run)
    if campaign is None:
        return
    audience = resolve_audience(
        project=campaign.project,
        segment=campaign.segment,
        targeting=campaign.targeting,
        platforms=campaign.platforms,
    )
    providers = list(audience.order_by().values_list("provider", flat=True).distinct())
    missing = providers_without_credentials(campaign.project, providers)
    if missing:
        _fail_run(campaign, run, " ".join(missing))
        return
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(
        targeted=audience.count(), last_progress_at=timezone.now()
    )
    chunk = settings.HERALD_FANOUT_CHUNK_SIZE
    last_id = 0
    while True:
        tokens = list(
            audience.filter(id__gt=last_id)
            .order_by("id")
            .values_list("id", "app_user_id", "provider")[:chunk]
        )
        if not tokens:
            break
        if not _is_active(campaign_id, run):
            return  # cancelled meanwhile: the rows made so far get skipped
        deliveries_create(campaign_id=campaign_id, run=run, tokens=tokens)
        last_id = tokens[-1][0]
        queue.enqueue_batch(campaign_id, run, tokens[0][0], last_id)
        _touch(campaign_id, run)
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(
        targeted=_rows(campaign_id, run).count(),
        fanout_done=True,
        last_progress_at=timezone.now(),
    )
    run_maybe_finish(campaign_id=campaign_id, run=run)


def run_batch(*, campaign_id: uuid.UUID, run: int, first_token_id: int, last_token_id: int) -> None:
    """Send the queued rows of one chunk (token-id range), a sub-chunk at a time.

    Safe to run twice at once or again after a crash: rows are claimed before
    sending. Rows waiting for a retry get a new wake-up at their retry time.
    """
    rows = _rows(campaign_id, run).filter(token_id__gte=first_token_id, token_id__lte=last_token_id)
    campaign = _active_campaign(campaign_id, run)
    if campaign is None:
        skipped = deliveries_skip(rows=rows, reason="campaign no longer sending")
        if skipped:
            _touch(campaign_id, run, BatchOutcome(skipped=skipped))
        run_maybe_finish(campaign_id=campaign_id, run=run)
        return
    content = campaign_content(campaign)
    size = settings.HERALD_SEND_CHUNK_SIZE
    while True:
        now = timezone.now()
        due = rows.filter(
            Q(retry_at__isnull=True) | Q(retry_at__lte=now),
            status=Status.QUEUED,
            claim__isnull=True,
        ).order_by("id")[:size]
        outcome = deliveries_send(project=campaign.project, content=content, rows=due)
        if not outcome.attempted:
            break
        _touch(campaign_id, run, outcome)
        if not _is_active(campaign_id, run):
            break
    next_retry = rows.filter(status=Status.QUEUED, claim__isnull=True).aggregate(
        at=Min("retry_at")
    )["at"]
    if next_retry is not None and _is_active(campaign_id, run):
        queue.enqueue_batch(campaign_id, run, first_token_id, last_token_id, eta=next_retry)
    run_maybe_finish(campaign_id=campaign_id, run=run)


def run_stats(campaign_id: uuid.UUID, run: int) -> dict[str, int]:
    """Exact stats of a run, counted from its rows."""
    counts = dict(
        _rows(campaign_id, run)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "targeted": sum(counts.values()),
        "sent": counts.get(Status.SENT, 0),
        "failed": counts.get(Status.FAILED, 0),
        "invalid_tokens": counts.get(Status.INVALID_TOKEN, 0),
        "skipped": counts.get(Status.SKIPPED, 0),
        "pending": counts.get(Status.QUEUED, 0),
    }


def run_maybe_finish(*, campaign_id: uuid.UUID, run: int) -> bool:
    """If every row of the run is final, record exact stats and mark it sent."""
    run_row = CampaignRun.objects.filter(campaign_id=campaign_id, number=run).first()
    if run_row is None or (
        not run_row.fanout_done and run_row.status == CampaignRun.Status.SENDING
    ):
        return False
    if _rows(campaign_id, run).filter(status=Status.QUEUED).exists():
        return False
    stats = run_stats(campaign_id, run)
    now = timezone.now()
    with transaction.atomic():
        CampaignRun.objects.filter(pk=run_row.pk).update(
            targeted=stats["targeted"],
            sent=stats["sent"],
            failed=stats["failed"],
            invalid_tokens=stats["invalid_tokens"],
            skipped=stats["skipped"],
        )
        finished = CampaignRun.objects.filter(
            pk=run_row.pk, status=CampaignRun.Status.SENDING
        ).update(status=CampaignRun.Status.SENT, completed_at=now)
        PushCampaign.objects.filter(pk=campaign_id, current_run=run).update(stats=stats)
        PushCampaign.objects.filter(
            pk=campaign_id, current_run=run, status=CampaignStatus.SENDING
        ).update(status=CampaignStatus.SENT, completed_at=now, updated_at=now)
    return bool(finished)


def runs_sweep_stalled() -> dict[str, int]:
    """Re-drive sending runs with no progress for HERALD_STALL_SECONDS.

    Expired claims are closed as interrupted; an unfinished fan-out is enqueued
    again (it is idempotent); queued rows get their batch tasks again (claims make
    duplicates harmless). Rows of cancelled campaigns are skipped.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.HERALD_STALL_SECONDS)
    redriven = 0
    stalled = CampaignRun.objects.filter(status=CampaignRun.Status.SENDING).filter(
        Q(last_progress_at__lt=cutoff) | Q(last_progress_at__isnull=True, started_at__lt=cutoff)
    )
    for run_row in stalled.select_related("campaign"):
        campaign, run = run_row.campaign, run_row.number
        rows = _rows(campaign.pk, run)
        expired = deliveries_expire_claims(rows=rows)
        if expired:
            logger.warning(
                "Closed %d interrupted deliveries of %s run %d", expired, campaign.pk, run
            )
            _touch(campaign.pk, run, BatchOutcome(failed=expired))
        if campaign.status != CampaignStatus.SENDING or campaign.current_run != run:
            skipped = deliveries_skip(rows=rows, reason="campaign no longer sending")
            CampaignRun.objects.filter(pk=run_row.pk, status=CampaignRun.Status.SENDING).update(
                status=CampaignRun.Status.CANCELLED
                if campaign.status == CampaignStatus.CANCELLED
                else CampaignRun.Status.FAILED,
                completed_at=now,
            )
            _touch(campaign.pk, run, BatchOutcome(skipped=skipped))
            run_maybe_finish(campaign_id=campaign.pk, run=run)
            continue
        try:
            if not run_row.fanout_done:
                queue.enqueue_fan_out(campaign.pk, run)
            else:
                _enqueue_queued_batches(campaign.pk, run)
        except queue.EnqueueFailed:
            break  # broker down; the next sweep tries again
        _touch(campaign.pk, run)
        run_maybe_finish(campaign_id=campaign.pk, run=run)
        redriven += 1
    # Cancelled runs whose batch tasks were lost still close their queued rows.
    leftover = PushDelivery.objects.filter(
        status=Status.QUEUED, claim__isnull=True, campaign__status=CampaignStatus.CANCELLED
    )
    skipped_cancelled = deliveries_skip(rows=leftover, reason="campaign cancelled")
    return {"redriven": redriven, "skipped_cancelled": skipped_cancelled}


def _enqueue_queued_batches(campaign_id: uuid.UUID, run: int) -> None:
    token_ids = (
        _rows(campaign_id, run)
        .filter(status=Status.QUEUED, claim__isnull=True)
        .order_by("token_id")
        .values_list("token_id", flat=True)
    )
    chunk: list[int] = []
    for token_id in token_ids.iterator(chunk_size=settings.HERALD_FANOUT_CHUNK_SIZE):
        chunk.append(token_id)
        if len(chunk) == settings.HERALD_FANOUT_CHUNK_SIZE:
            queue.enqueue_batch(campaign_id, run, chunk[0], chunk[-1])
            chunk = []
    if chunk:
        queue.enqueue_batch(campaign_id, run, chunk[0], chunk[-1])
