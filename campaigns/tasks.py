"""Celery tasks: ids in, one service call, idempotent (STYLE.md, "Tasks")."""

from __future__ import annotations

import uuid

from celery import shared_task

from campaigns import queue, runs, scheduling, sending
from core.models import SWEEP_HEARTBEAT
from core.services import heartbeat


@shared_task(name=queue.FAN_OUT_TASK)
def fan_out_campaign_task(campaign_id: str, run: int) -> None:
    sending.run_fan_out(campaign_id=uuid.UUID(campaign_id), run=run)


@shared_task(name=queue.SEND_BATCH_TASK)
def send_campaign_batch_task(
    campaign_id: str, run: int, first_token_id: int, last_token_id: int
) -> None:
    sending.run_batch(
        campaign_id=uuid.UUID(campaign_id),
        run=run,
        first_token_id=first_token_id,
        last_token_id=last_token_id,
    )


@shared_task(name=queue.CLOSE_RUN_TASK)
def close_run_task(campaign_id: str, run: int) -> int:
    """After a cancel: close the run's waiting rows and settle its numbers."""
    return runs.run_close(campaign_id=uuid.UUID(campaign_id), run=run)


@shared_task(name=queue.FIRE_SCHEDULED_TASK)
def fire_scheduled_campaign_task(campaign_id: str, version: int) -> bool:
    try:
        return scheduling.campaign_fire_scheduled(
            campaign_id=uuid.UUID(campaign_id), version=version
        )
    except queue.EnqueueFailed:
        return False  # the campaign is failed with the reason; nothing to retry here


@shared_task(name=scheduling.WAKE_RECURRING_TASK)
def wake_recurring_campaign_task(campaign_id: str) -> bool:
    """Beat's entry for a recurring campaign: fire it if due (the DB decides)."""
    try:
        return scheduling.campaign_wake(campaign_id=uuid.UUID(campaign_id))
    except queue.EnqueueFailed:
        return False


@shared_task(name="campaigns.sweep")
def sweep_campaigns_task() -> dict[str, int]:
    """Periodic (django-celery-beat): fire due schedules, re-drive stalled runs. Its
    heartbeat tells /readyz that beat and a worker are both alive."""
    result = {**scheduling.campaigns_sweep_scheduled(), **sending.runs_sweep_stalled()}
    heartbeat(SWEEP_HEARTBEAT)
    return result
