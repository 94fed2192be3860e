"""A run of a campaign, from audience to final stats (the campaign side of delivery).

* fan-out: resolve the audience fresh, stream its tokens in keyset-paginated
  chunks, insert one queued push_deliveries row per token (conflict-ignoring, so a
  repeated fan-out adds nothing) and enqueue one batch task per chunk, identified
  by its token-id range.
* batches: claim, send and record through delivery.services (which guarantees a
  row is never sent twice) and bump the run's counters with F().
* finish, fail, stats: campaigns.runs, the run lifecycle's one owner.
* sweep: runs that stopped making progress (worker killed, broker flushed) are
  re-driven a bounded number of times; so, at once, are runs whose claims a dead
  worker let expire; runs that are over get their waiting rows closed and settle.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from campaigns import metrics, queue, runs
from campaigns.content import RunOverrides, campaign_content
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from core.errors import InvalidInput
from delivery.models import PushDelivery
from delivery.policy import DeliveryPolicy, local_due, zone
from delivery.services import (
    BatchOutcome,
    NewDelivery,
    deliveries_create,
    deliveries_create_from_tokens,
    deliveries_expire_claims,
    deliveries_expire_orphaned_claims,
    deliveries_send,
    deliveries_skip,
    providers_without_credentials,
)
from segments.audience import resolve_audience

logger = logging.getLogger("herald.sending")

Status = PushDelivery.Status
# A throttled batch looks again this often (a twelfth of a minute's allowance each time).
THROTTLE_TICK = timedelta(seconds=5)
# A batch waits in-process for rows due this soon; later ones get a new (ETA) task.
SHORT_WAIT_SECONDS = 2.0
# ... but hands its worker back after this long.
MAX_TASK_SECONDS = 60.0


def _is_active(campaign_id: uuid.UUID, run: int) -> bool:
    return PushCampaign.objects.filter(runs.run_sending(run), pk=campaign_id).exists()


def _active_campaign(campaign_id: uuid.UUID, run: int) -> PushCampaign | None:
    """The campaign if it is still sending `run`; else None (stale task)."""
    return (
        PushCampaign.objects.select_related("project", "segment")
        .filter(runs.run_sending(run), pk=campaign_id)
        .first()
    )


class _RowPlanner:
    """When each new row may be sent: its user's local time, a throttle slot, or now.

    Local-time delivery puts each row at the campaign's wall-clock time in the user's
    time zone (attribute `timezone`, else the token's, else the project default);
    a throttled campaign spaces rows evenly at 60/rate seconds so sends are spread
    over each minute (the engine still enforces the rate from claim times).
    """

    def __init__(self, campaign: PushCampaign, run: int) -> None:
        self.now = timezone.now()
        self.default_tz = campaign.project.default_timezone or "UTC"
        self.wall_clock = (
            datetime.fromisoformat(campaign.local_wall_clock)
            if campaign.deliver_in_user_timezone and campaign.local_wall_clock
            else None
        )
        self.missed = campaign.local_time_missed
        rate = _rate(campaign)
        self.spacing = timedelta(seconds=60 / rate) if rate else None
        self.index = runs.run_rows(campaign.pk, run).count() if self.spacing is not None else 0

    @property
    def needed(self) -> bool:
        """False when every row is simply due now (no local time, no throttle)."""
        return self.wall_clock is not None or self.spacing is not None

    def row(
        self,
        token_id: int,
        app_user_id: uuid.UUID | None,
        provider: str,
        token_tz: str,
        user_tz: str | None,
    ) -> NewDelivery:
        not_before: datetime | None = None
        if self.wall_clock is not None:
            tz = zone(user_tz or token_tz, self.default_tz)
            not_before = local_due(self.wall_clock, tz, now=self.now, missed=self.missed)
            if not_before is None:
                return NewDelivery(token_id, app_user_id, provider, skip_reason="local time passed")
        if self.spacing is not None:
            slot = self.now + self.spacing * self.index
            not_before = max(not_before or slot, slot)
        self.index += 1
        return NewDelivery(token_id, app_user_id, provider, not_before=not_before)


def _rate(campaign: PushCampaign) -> int | None:
    return campaign.throttle_per_minute or campaign.project.default_throttle_per_minute


def _policy(campaign: PushCampaign, run: int, started: datetime) -> DeliveryPolicy:
    """The engine's per-row rules for the run; the TTL counts from the run's start."""
    project = campaign.project
    deadline = campaign.end_at
    if campaign.ttl_seconds is not None and not campaign.deliver_in_user_timezone:
        expires = started + timedelta(seconds=campaign.ttl_seconds)
        deadline = expires if deadline is None else min(deadline, expires)
    rate = _rate(campaign)

    def lock_run() -> None:
        list(
            CampaignRun.objects.select_for_update()
            .filter(campaign_id=campaign.pk, number=run)
            .values_list("id", flat=True)
        )

    return DeliveryPolicy(
        deadline=deadline,
        quiet_hours=campaign.quiet_hours or project.default_quiet_hours,
        default_timezone=project.default_timezone or "UTC",
        frequency_cap_per_day=project.frequency_cap_per_day,
        rate_per_minute=rate,
        rate_scope=(campaign.pk, run) if rate else None,
        rate_lock=lock_run if rate else None,
    )


def _enqueue_batch(
    campaign_id: uuid.UUID,
    run: int,
    first_token_id: int,
    last_token_id: int,
    rows: list[NewDelivery] | None = None,
    *,
    not_before: datetime | None = None,
) -> None:
    """Enqueue a batch, with an ETA when its first row is not due yet.

    Rows due beyond the ETA window are left to the sweeper, so no task sleeps in the
    broker longer than its redelivery window.
    """
    if rows is not None:
        due = [r.not_before for r in rows if not r.skip_reason]
        if not due:
            return  # every row was created already skipped
        not_before = None if any(d is None for d in due) else min(d for d in due if d)
    now = timezone.now()
    if not_before is not None and not_before > now:
        if not_before - now > timedelta(seconds=settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS):
            return
        queue.enqueue_batch(campaign_id, run, first_token_id, last_token_id, eta=not_before)
        return
    queue.enqueue_batch(campaign_id, run, first_token_id, last_token_id)


def run_fan_out(*, campaign_id: uuid.UUID, run: int) -> None:
    """Create the run's delivery rows and enqueue their batches. Idempotent.

    What retrying cannot cure (input that no longer validates: stored segment rules,
    a deleted targeting segment) fails the run at once with the reason; any other
    error is noted on the run and raised, and the sweeper re-drives the run a
    bounded number of times (DESIGN.md: nothing wedges).
    """
    campaign = _active_campaign(campaign_id, run)
    if campaign is None:
        return
    try:
        with metrics.FANOUT_SECONDS.time():
            _fan_out(campaign, run)
    except InvalidInput as exc:
        runs.run_fail(campaign_id=campaign_id, run=run, reason=exc.message)
    except Exception as exc:
        runs.run_record_error(campaign_id, run, f"Fan-out: {type(exc).__name__}: {exc}")
        raise


def _fan_out(campaign: PushCampaign, run: int) -> None:
    campaign_id = campaign.pk
    audience = resolve_audience(
        project=campaign.project,
        segment=campaign.segment,
        targeting=campaign.targeting,
        platforms=campaign.platforms,
    )
    providers = list(audience.order_by().values_list("provider", flat=True).distinct())
    missing = providers_without_credentials(campaign.project, providers)
    if missing:
        runs.run_fail(campaign_id=campaign_id, run=run, reason=" ".join(missing))
        return
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(
        targeted=audience.count(), last_progress_at=timezone.now()
    )
    chunk = settings.HERALD_FANOUT_CHUNK_SIZE
    plan = _RowPlanner(campaign, run)
    last_id = 0
    while True:
        window = audience.filter(id__gt=last_id).order_by("id")[:chunk]
        if not plan.needed:
            # Every row due now: tokens go straight into rows inside the database.
            if not _is_active(campaign_id, run):
                return  # cancelled meanwhile: the rows made so far get skipped
            span = deliveries_create_from_tokens(campaign_id=campaign_id, run=run, tokens=window)
            if span is None:
                break
            first_id, last_id = span
            _enqueue_batch(campaign_id, run, first_id, last_id)
            runs.run_progress(campaign_id, run)
            continue
        tokens = list(
            window.annotate(
                user_tz=KeyTextTransform("timezone", "app_user__attributes")
            ).values_list("id", "app_user_id", "provider", "timezone", "user_tz")
        )
        if not tokens:
            break
        if not _is_active(campaign_id, run):
            return  # cancelled meanwhile: the rows made so far get skipped
        rows = [plan.row(*token) for token in tokens]
        deliveries_create(campaign_id=campaign_id, run=run, tokens=rows)
        last_id = tokens[-1][0]
        _enqueue_batch(campaign_id, run, tokens[0][0], last_id, rows)
        skipped = sum(1 for row in rows if row.skip_reason)  # e.g. local time passed
        runs.run_progress(campaign_id, run, BatchOutcome(skipped=skipped) if skipped else None)
    CampaignRun.objects.filter(campaign_id=campaign_id, number=run).update(
        targeted=runs.run_rows(campaign_id, run).count(),
        fanout_done=True,
        last_progress_at=timezone.now(),
    )
    runs.run_maybe_finish(campaign_id=campaign_id, run=run)


def run_batch(*, campaign_id: uuid.UUID, run: int, first_token_id: int, last_token_id: int) -> None:
    """Send the queued rows of one chunk (token-id range), a sub-chunk at a time.

    Safe to run twice at once or again after a crash: rows are claimed before
    sending. Rows waiting for a retry get a new wake-up at their retry time. An
    error is noted on the run (the operator sees it) and raised.
    """
    try:
        _send_range(campaign_id, run, first_token_id, last_token_id)
    except Exception as exc:
        runs.run_record_error(campaign_id, run, f"Batch: {type(exc).__name__}: {exc}")
        raise


def _send_range(campaign_id: uuid.UUID, run: int, first_token_id: int, last_token_id: int) -> None:
    rows = runs.run_rows(campaign_id, run).filter(
        token_id__gte=first_token_id, token_id__lte=last_token_id
    )
    campaign = _active_campaign(campaign_id, run)
    if campaign is None:
        skipped = deliveries_skip(rows=rows, reason="campaign no longer sending")
        if skipped:
            runs.run_progress(campaign_id, run, BatchOutcome(skipped=skipped))
        runs.run_maybe_finish(campaign_id=campaign_id, run=run)
        return
    run_row = CampaignRun.objects.filter(campaign_id=campaign_id, number=run).first()
    if run_row is None:
        return
    content = campaign_content(campaign, RunOverrides.of(run_row))
    policy = _policy(campaign, run, run_row.started_at)
    size = settings.HERALD_SEND_CHUNK_SIZE
    started = time.monotonic()
    waiting = rows.filter(status=Status.QUEUED, claim__isnull=True)
    while True:
        now = timezone.now()
        due = waiting.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        due = due.order_by("token_id")  # the batch's range, on delivery_run_queued
        outcome = deliveries_send(
            project=campaign.project, content=content, rows=due[:size], policy=policy
        )
        if outcome.attempted or outcome.skipped:
            runs.run_progress(campaign_id, run, outcome)
        if not _is_active(campaign_id, run):
            break
        next_due = _next_due(waiting, now, throttled=outcome.throttled)
        if next_due is None:
            break  # nothing left here (or another task holds it)
        if (outcome.attempted or outcome.skipped) and not outcome.throttled:
            continue
        # Rows are waiting for their time (throttle slot, local time, retry). A short
        # wait is cheaper here than a new task; a long one goes back to the broker.
        pause = (next_due - timezone.now()).total_seconds()
        if pause > SHORT_WAIT_SECONDS or time.monotonic() - started > MAX_TASK_SECONDS:
            _enqueue_batch(campaign_id, run, first_token_id, last_token_id, not_before=next_due)
            break
        time.sleep(max(0.1, pause))
    runs.run_maybe_finish(campaign_id=campaign_id, run=run)


def _next_due(
    waiting: QuerySet[PushDelivery], now: datetime, *, throttled: bool
) -> datetime | None:
    """When the next waiting row may go: now, its not_before, or the throttle tick."""
    if not waiting.exists():
        return None
    if waiting.filter(not_before__isnull=True).exists():
        next_due = now
    else:
        next_due = waiting.aggregate(at=Min("not_before"))["at"] or now
    if throttled:
        next_due = max(next_due, now + THROTTLE_TICK)
    return next_due


def _close_expired_claims() -> Q:
    """Close the claims dead workers let expire; their runs are re-driven now."""
    expired_runs = Q(pk__in=[])
    for expired in deliveries_expire_claims():
        if expired.campaign_id is None:
            continue
        logger.warning(
            "Dead worker's claim on %s run %d: %d unknown, %d to re-send, %d unsent",
            expired.campaign_id,
            expired.run,
            expired.unknown,
            expired.resent,
            expired.released,
        )
        runs.run_progress(expired.campaign_id, expired.run, BatchOutcome(unknown=expired.unknown))
        expired_runs |= Q(campaign_id=expired.campaign_id, number=expired.run)
    return expired_runs


def runs_sweep_stalled() -> dict[str, int]:
    """Re-drive sending runs with no progress for HERALD_STALL_SECONDS, and at once
    the runs of claims whose lease expired (delivery.services); close and settle runs
    that are over but still have waiting rows.

    An unfinished fan-out is enqueued again (it is idempotent); queued rows get
    their batch tasks again (claims make duplicates harmless). A run whose tasks keep
    raising is re-driven at most HERALD_MAX_REDRIVES times without progress, then
    failed with the last error.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.HERALD_STALL_SECONDS)
    redriven = gave_up = 0
    expired_runs = _close_expired_claims()
    stalled = CampaignRun.objects.filter(status=CampaignRun.Status.SENDING).filter(
        Q(last_progress_at__lt=cutoff)
        | Q(last_progress_at__isnull=True, started_at__lt=cutoff)
        | expired_runs
    )
    for run_row in stalled.select_related("campaign"):
        campaign, run = run_row.campaign, run_row.number
        _expire_claims(campaign.pk, run)
        current = campaign.status == CampaignStatus.SENDING and campaign.current_run == run
        if not current and run_row.trigger != CampaignRun.Trigger.EXPLICIT:
            reason = "The campaign is no longer sending this run."
            runs.run_fail(campaign_id=campaign.pk, run=run, reason=reason)
            continue
        if run_row.error and run_row.redrives >= settings.HERALD_MAX_REDRIVES:
            reason = (
                f"Stopped after {run_row.redrives} attempts without progress. "
                f"Last error: {run_row.error}"
            )
            runs.run_fail(campaign_id=campaign.pk, run=run, reason=reason)
            gave_up += 1
            continue
        try:
            if not run_row.fanout_done:
                queue.enqueue_fan_out(campaign.pk, run)
                enqueued = 1
            else:
                enqueued = _enqueue_due_batches(campaign.pk, run)
        except queue.EnqueueFailed:
            break  # broker down; the next sweep tries again
        runs.run_redriven(campaign.pk, run, counts=enqueued > 0)
        runs.run_maybe_finish(campaign_id=campaign.pk, run=run)
        redriven += 1
    # Runs that are over (cancelled, failed) but not settled: their batch tasks may
    # be lost or their close never enqueued; close their waiting rows and settle.
    closed = 0
    over = CampaignRun.objects.filter(settled_at__isnull=True).exclude(
        status=CampaignRun.Status.SENDING
    )
    for campaign_id, run in over.values_list("campaign_id", "number"):
        _expire_claims(campaign_id, run)
        closed += runs.run_close(campaign_id=campaign_id, run=run)
    return {"redriven": redriven, "gave_up": gave_up, "closed": closed}


def _expire_claims(campaign_id: uuid.UUID, run: int) -> None:
    """Rows claimed without a claim row (left by code before delivery_claims)."""
    orphaned = deliveries_expire_orphaned_claims(rows=runs.run_rows(campaign_id, run))
    if orphaned:
        logger.warning("Closed %d unknown deliveries of %s run %d", orphaned, campaign_id, run)
        runs.run_progress(campaign_id, run, BatchOutcome(unknown=orphaned))


def _enqueue_due_batches(campaign_id: uuid.UUID, run: int) -> int:
    """Batches for the run's queued rows that are due within the ETA window; returns
    how many were enqueued."""
    horizon = timezone.now() + timedelta(seconds=settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS)
    rows = (
        runs.run_rows(campaign_id, run)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=horizon))
        .filter(status=Status.QUEUED, claim__isnull=True)
        .order_by("token_id")
        .values_list("token_id", "not_before")
    )
    size = settings.HERALD_FANOUT_CHUNK_SIZE
    chunk: list[tuple[int, datetime | None]] = []
    enqueued = 0

    def flush() -> None:
        due = [d for _, d in chunk]
        not_before = None if any(d is None for d in due) else min(d for d in due if d)
        _enqueue_batch(campaign_id, run, chunk[0][0], chunk[-1][0], not_before=not_before)

    for row in rows.iterator(chunk_size=size):
        chunk.append(row)
        if len(chunk) == size:
            flush()
            enqueued += 1
            chunk = []
    if chunk:
        flush()
        enqueued += 1
    return enqueued
