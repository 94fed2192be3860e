"""Wake-ups handed to the broker. The database decides; these only wake workers.

Tasks are sent by name so services need not import the task modules (and the
tasks, which call services, do not import back into an import cycle). Any broker
failure surfaces as `EnqueueFailed`, which services turn into a `failed` campaign.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from kombu.exceptions import KombuError

from config.celery import app

logger = logging.getLogger("herald.queue")

FAN_OUT_TASK = "campaigns.fan_out_campaign"
FIRE_SCHEDULED_TASK = "campaigns.fire_scheduled_campaign"
SEND_BATCH_TASK = "campaigns.send_campaign_batch"
CLOSE_RUN_TASK = "campaigns.close_run"


class EnqueueFailed(Exception):
    """The broker refused or could not be reached."""


def _send(name: str, args: list[object], eta: datetime | None = None) -> None:
    try:
        app.send_task(name, args=args, eta=eta)
    except (KombuError, OSError) as exc:
        logger.warning("Could not enqueue %s%s: %s", name, args, exc)
        raise EnqueueFailed(str(exc) or type(exc).__name__) from exc


def enqueue_fan_out(campaign_id: uuid.UUID, run: int) -> None:
    _send(FAN_OUT_TASK, [str(campaign_id), run])


def enqueue_fire(campaign_id: uuid.UUID, version: int, eta: datetime) -> None:
    _send(FIRE_SCHEDULED_TASK, [str(campaign_id), version], eta=eta)


def enqueue_batch(
    campaign_id: uuid.UUID,
    run: int,
    first_token_id: int,
    last_token_id: int,
    eta: datetime | None = None,
) -> None:
    _send(SEND_BATCH_TASK, [str(campaign_id), run, first_token_id, last_token_id], eta=eta)


def enqueue_close_run(campaign_id: uuid.UUID, run: int) -> None:
    _send(CLOSE_RUN_TASK, [str(campaign_id), run])


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in the broker's task queue(s), by queue name: on Redis the
    length of the queue's lists (LLEN, summed over kombu's priority lists), on the
    embedded filesystem broker the message files in its folder. Tasks a worker has
    already taken (prefetched, or holding an ETA) are not waiting and not counted.
    None when the broker cannot be reached."""
    names = [app.conf.task_default_queue]
    conn: Any  # a pooled kombu Connection (celery-types says Producer)
    try:
        with app.pool.acquire(block=True, timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            return {name: int(channel.queue_declare(queue=name).message_count) for name in names}
    except (KombuError, OSError) as exc:
        logger.warning("Could not read the broker's queue depth: %s", exc)
        return None
