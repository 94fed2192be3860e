"""System checks for the delivery settings (`manage.py check`, runserver, migrate).

A claimed sub-batch must be answered (or time out) well within the claim lease:
otherwise the sweeper takes rows still in flight for a dead worker's and closes
them as interrupted (docs/decisions.md, "Delivery engine").
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


def slowest_sub_batch_seconds() -> float:
    """Worst case for one sub-batch: every request of the least concurrent provider
    waits its full timeout, one wave of `concurrency` requests after another."""
    concurrency = max(1, min(settings.HERALD_APNS_CONCURRENCY, settings.HERALD_FCM_CONCURRENCY))
    waves = math.ceil(settings.HERALD_SEND_CHUNK_SIZE / concurrency)
    return waves * settings.HERALD_PROVIDER_TIMEOUT_SECONDS


@register()
def claim_lease_covers_a_sub_batch(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    slowest = slowest_sub_batch_seconds()
    if slowest < settings.HERALD_CLAIM_LEASE_SECONDS:
        return []
    return [
        Warning(
            f"HERALD_CLAIM_LEASE_SECONDS ({settings.HERALD_CLAIM_LEASE_SECONDS}) does not "
            f"cover the slowest sub-batch ({slowest:.0f} s: HERALD_SEND_CHUNK_SIZE / provider "
            "concurrency x HERALD_PROVIDER_TIMEOUT_SECONDS).",
            hint="Raise the lease, or lower the send chunk or the timeout; otherwise rows "
            "still being sent by a slow provider can be closed as interrupted.",
            id="delivery.W001",
        )
    ]
