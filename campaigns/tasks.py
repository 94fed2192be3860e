"""Celery tasks: ids in, one service call, idempotent (STYLE.md, "Tasks")."""

from __future__ import annotations

import uuid

from celery import shared_task

from campaigns import queue, sending, services


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


@shared_task(name=queue.FIRE_SCHEDULED_TASK)
def fire_scheduled_campaign_task(campaign_id: str, version: int) -> bool:
    return services.campaign_fire_scheduled(campaign_id=uuid.UUID(campaign_id), version=version)


@shared_task(name="campaigns.sweep")
def sweep_campaigns_task() -> dict[str, int]:
    """Periodic (django-celery-beat): fire due schedules, re-drive stalled runs."""
    return {**services.campaigns_sweep_scheduled(), **sending.runs_sweep_stalled()}
