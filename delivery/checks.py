"""System checks for the delivery settings (`manage.py check`, runserver, migrate).

A sending task renews its claim's lease every HERALD_CLAIM_RENEW_SECONDS, however
slow the provider; the sweeper takes a claim not renewed for
HERALD_CLAIM_LEASE_SECONDS for a dead worker's. The lease must therefore outlast a
renewal that comes late (a flush waiting on the database, a busy CPU): at least two
renewal intervals, or a live worker's in-flight rows could be closed as unknown
(docs/decisions.md, "Delivery engine").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

RENEWALS_PER_LEASE = 2


@register()
def claim_lease_outlasts_renewals(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    renew = settings.HERALD_CLAIM_RENEW_SECONDS
    if renew > 0 and RENEWALS_PER_LEASE * renew <= settings.HERALD_CLAIM_LEASE_SECONDS:
        return []
    return [
        Warning(
            f"HERALD_CLAIM_LEASE_SECONDS ({settings.HERALD_CLAIM_LEASE_SECONDS}) is shorter "
            f"than {RENEWALS_PER_LEASE} x HERALD_CLAIM_RENEW_SECONDS ({renew:g}), or the "
            "renewal interval is not positive.",
            hint="Raise the lease or renew more often; otherwise one late renewal lets "
            "the sweeper close a live worker's in-flight rows as unknown.",
            id="delivery.W001",
        )
    ]
