"""A campaign run's lifecycle and its numbers: the one owner (DESIGN.md).

Every door (API, admin, scheduling, the sending tasks, the sweeper) starts, fails,
cancels, finishes and counts runs through this module; nothing else writes a run's
status or a campaign's `sending`/`failed` transition.

* begin: one conditional UPDATE gives the run the campaign's next run number and
  (but for an explicit push) moves the campaign to `sending` with it as its
  current run; the run row is created in the same transaction. Launch then
  enqueues the run's first task after commit and fails the run if the broker
  refuses. An explicit push's run is the campaign's but not its current run: it
  never changes the campaign's status (docs/decisions.md, "Explicit pushes").
* progress: batches bump the run's counters with F() (live numbers while sending);
  bumps stop once the run is settled.
* settle: once no row of the run is queued (and its fan-out is done, for a run still
  sending) the counters are recounted exactly from the rows and frozen
  (`settled_at`), the analytics' sent/failed breakdown is counted once
  (campaigns.engagement.record_run_sends); a sending run then becomes `sent` and
  its campaign moves on.
* fail / cancel: the campaign and run leave `sending`; the run's waiting rows are
  closed as skipped and its numbers settle like any other run's.

Lock order: a transaction that locks a campaign row and its run row locks the
campaign (push_campaigns) first. Counter bumps touch the run row alone, each in its
own statement, so they never hold a lock another writer waits on while waiting.

A campaign's `stats` are its current run's numbers (live while sending, exact once
settled); `campaign_stats` is the one function the API, admin and console read.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from campaigns import engagement, metrics, queue, scheduling
from campaigns.content import RunOverrides
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign, empty_stats
from delivery.models import PushDelivery
from delivery.services import BatchOutcome, deliveries_skip

logger = logging.getLogger("herald.runs")

Status = PushDelivery.Status
COUNTERS = ("sent", "failed", "invalid_tokens", "skipped", "unknown")


def run_rows(campaign_id: uuid.UUID, run: int) -> QuerySet[PushDelivery]:
    """The delivery rows of one run of a campaign."""
    return PushDelivery.objects.filter(campaign_id=campaign_id, run=run)


def run_begin(
    *,
    campaign_id: uuid.UUID,
    allowed: Q,
    trigger: str,
    now: datetime,
    overrides: RunOverrides | None = None,
    targeted: int = 0,
    fanout_done: bool = False,
) -> PushCampaign | None:
    """Start the campaign's next run, if the campaign matches `allowed` (the
    caller's statuses and conditions). Must run inside the caller's transaction.

    Returns the campaign, its `last_run_number` the new run's number, or None when
    the conditional UPDATE did not match (another request won, or the status
    forbids). An explicit run (`overrides` apply to it alone) leaves the campaign's
    status, current run and dates as they are.
    """
    changes: dict[str, Any] = {"last_run_number": F("last_run_number") + 1, "updated_at": now}
    if trigger != CampaignRun.Trigger.EXPLICIT:
        changes.update(
            status=CampaignStatus.SENDING,
            current_run=F("last_run_number") + 1,
            sent_at=now,
            completed_at=None,
            last_error="",
        )
    won = PushCampaign.objects.filter(allowed, pk=campaign_id).update(**changes)
    if not won:
        return None
    campaign = PushCampaign.objects.select_related("project").get(pk=campaign_id)
    scheduled = trigger in (CampaignRun.Trigger.SCHEDULE, CampaignRun.Trigger.RECURRENCE)
    overrides = overrides or RunOverrides()
    CampaignRun.objects.create(
        campaign=campaign,
        number=campaign.last_run_number,
        trigger=trigger,
        occurrence=campaign.scheduled_at if scheduled else None,
        data_override=overrides.data,
        title_override=overrides.title,
        body_override=overrides.body,
        silent=campaign.silent if overrides.silent is None else overrides.silent,
        targeted=targeted,
        fanout_done=fanout_done,
        last_progress_at=now,
    )
    return campaign


def run_launch(campaign: PushCampaign, enqueue: Callable[[], None] | None = None) -> None:
    """Enqueue the first task of the run `run_begin` just started (its fan-out,
    unless `enqueue` says otherwise). If the broker refuses, the run (and the
    campaign, if it is its current run) is failed with the reason and
    queue.EnqueueFailed propagates to the caller."""
    run = campaign.last_run_number
    try:
        if enqueue is None:
            queue.enqueue_fan_out(campaign.id, run)
        else:
            enqueue()
    except queue.EnqueueFailed as exc:
        run_fail(campaign_id=campaign.id, run=run, reason=f"Could not start the send: {exc}")
        raise


def run_sending(run: int) -> Q:
    """Campaigns (a filter) that are sending `run`: as their current run, or as an
    explicit push's run that is still sending (the campaign's status says nothing
    about those)."""
    return Q(status=CampaignStatus.SENDING, current_run=run) | Q(
        runs__number=run,
        runs__trigger=CampaignRun.Trigger.EXPLICIT,
        runs__status=CampaignRun.Status.SENDING,
    )


def run_progress(campaign_id: uuid.UUID, run: int, outcome: BatchOutcome | None = None) -> None:
    """Record that the run moved: bump its live counters by `outcome`.

    A real outcome also clears the count of fruitless re-drives. Once the run is
    settled its counters are exact and bumps are dropped (a batch finishing after
    the recount would otherwise count its rows twice).
    """
    changes: dict[str, Any] = {"last_progress_at": timezone.now()}
    if outcome is not None:
        for name in COUNTERS:
            value = getattr(outcome, name)
            if value:
                changes[name] = F(name) + value
        if len(changes) > 1:
            changes["redrives"] = 0
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run, settled_at__isnull=True).update(
        **changes
    )


def run_redriven(campaign_id: uuid.UUID, run: int, *, counts: bool) -> None:
    """The sweeper re-drove the run; `counts` when it enqueued work again (a re-drive
    that found nothing due, e.g. rows waiting for their local time, is not counted)."""
    changes: dict[str, Any] = {"last_progress_at": timezone.now()}
    if counts:
        changes["redrives"] = F("redrives") + 1
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(**changes)


def run_record_error(campaign_id: uuid.UUID, run: int, error: str) -> None:
    """Note an error a run's task raised (it may be retried): the operator sees it
    as the campaign's last_error while the sweeper re-drives the run."""
    error = error[:500]
    with transaction.atomic():
        PushCampaign.objects.filter(
            pk=campaign_id, current_run=run, status=CampaignStatus.SENDING
        ).update(last_error=error)
        CampaignRun.objects.filter(
            campaign_id=campaign_id, number=run, status=CampaignRun.Status.SENDING
        ).update(error=error)


def run_fail(*, campaign_id: uuid.UUID, run: int, reason: str) -> None:
    """sending -> failed for the run and (if it is still its current run) the
    campaign, with the reason; then close the run's waiting rows and settle it."""
    reason = reason[:500]
    now = timezone.now()
    with transaction.atomic():
        PushCampaign.objects.filter(
            pk=campaign_id, status=CampaignStatus.SENDING, current_run=run
        ).update(status=CampaignStatus.FAILED, last_error=reason, updated_at=now)
        CampaignRun.objects.filter(
            campaign_id=campaign_id, number=run, status=CampaignRun.Status.SENDING
        ).update(status=CampaignRun.Status.FAILED, error=reason, completed_at=now)
    logger.warning("Run %d of %s failed: %s", run, campaign_id, reason)
    run_close(campaign_id=campaign_id, run=run)


def run_cancel(*, campaign_id: uuid.UUID, now: datetime) -> bool:
    """The sending run of a campaign just cancelled (inside the caller's
    transaction, which holds the campaign row) becomes `cancelled`; returns whether
    there was one. Its waiting rows are closed afterwards by `run_close` (a task, or
    the sweeper)."""
    return bool(
        CampaignRun.objects.filter(
            campaign_id=campaign_id, status=CampaignRun.Status.SENDING
        ).update(status=CampaignRun.Status.CANCELLED, completed_at=now)
    )


def run_close(*, campaign_id: uuid.UUID, run: int) -> int:
    """Close the waiting (queued, unclaimed) rows of a run that is no longer
    sending, then settle its numbers. Idempotent; returns how many rows it closed.

    Rows a batch holds right now are left to it: it writes their results and
    settles the run when it is done.
    """
    state = (
        CampaignRun.objects.filter(campaign_id=campaign_id, number=run)
        .values_list("status", flat=True)
        .first()
    )
    if state is None or state == CampaignRun.Status.SENDING:
        return 0
    reason = "campaign cancelled" if state == CampaignRun.Status.CANCELLED else "run failed"
    closed = deliveries_skip(rows=run_rows(campaign_id, run), reason=reason)
    run_maybe_finish(campaign_id=campaign_id, run=run)
    return closed


def run_stats(campaign_id: uuid.UUID, run: int) -> dict[str, int]:
    """Exact stats of a run, counted from its rows."""
    counts = dict(
        run_rows(campaign_id, run)
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
        "unknown": counts.get(Status.UNKNOWN, 0),
        "pending": counts.get(Status.QUEUED, 0),
    }


def run_maybe_finish(*, campaign_id: uuid.UUID, run: int) -> bool:
    """Settle the run if every row of it is final: exact stats, frozen; a sending
    run becomes `sent` and its campaign `sent` (or, recurring, `scheduled` again).

    Returns whether this call moved the run to `sent`.
    """
    run_row = (
        CampaignRun.objects.filter(campaign_id=campaign_id, number=run)
        .values("pk", "status", "fanout_done", "started_at", "trigger")
        .first()
    )
    if run_row is None or (
        not run_row["fanout_done"] and run_row["status"] == CampaignRun.Status.SENDING
    ):
        return False
    if run_rows(campaign_id, run).filter(status=Status.QUEUED).exists():
        return False
    stats = run_stats(campaign_id, run)
    now = timezone.now()
    rearm = False
    with transaction.atomic():
        # Campaign row first, then the run row (the module's lock order).
        campaign = PushCampaign.objects.select_for_update().filter(pk=campaign_id).first()
        CampaignRun.objects.filter(pk=run_row["pk"]).update(
            settled_at=now,
            **{name: stats[name] for name in ("targeted", *COUNTERS)},
        )
        # The breakdown analytics read (sent/failed per minute, provider, platform).
        engagement.record_run_sends(
            campaign_id=campaign_id, run=run, rows=run_rows(campaign_id, run)
        )
        finished = CampaignRun.objects.filter(
            pk=run_row["pk"], status=CampaignRun.Status.SENDING
        ).update(status=CampaignRun.Status.SENT, completed_at=now)
        moves = (
            campaign is not None
            and campaign.current_run == run
            and campaign.status == CampaignStatus.SENDING
        )
        if moves:
            assert campaign is not None
            after = scheduling.campaign_after_run(campaign=campaign, now=now)
            PushCampaign.objects.filter(pk=campaign_id).update(updated_at=now, **after)
            rearm = after["status"] == CampaignStatus.SCHEDULED
    if moves:
        scheduling.sync_periodic_task(campaign_id)
    if rearm:
        try:
            scheduling.arm_if_due(campaign_id)
        except queue.EnqueueFailed:
            logger.warning("Could not arm %s; the sweeper will fire it", campaign_id)
    if finished:
        elapsed = (now - run_row["started_at"]).total_seconds()
        metrics.RUN_SECONDS.labels(run_row["trigger"]).observe(max(0.0, elapsed))
    return bool(finished)


def current_run(campaign: PushCampaign) -> CampaignRun | None:
    """The campaign's current run (prefetched by `with_current_run`, else queried)."""
    if not campaign.current_run:
        return None
    prefetched = getattr(campaign, "current_runs", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return CampaignRun.objects.filter(campaign_id=campaign.pk, number=campaign.current_run).first()


def campaign_stats(campaign: PushCampaign) -> dict[str, int]:
    """The campaign's numbers: its current run's live counts while sending, its
    final counts once the run is over; zeros before the first run."""
    run = current_run(campaign)
    return run.stats if run is not None else empty_stats()
