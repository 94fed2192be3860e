"""Template helpers of the console's campaign page (admin/campaigns/pushcampaign/)."""

from __future__ import annotations

from django import template

from campaigns import services
from campaigns.models import PushCampaign

register = template.Library()


@register.simple_tag
def campaign_tools(campaign: PushCampaign | None) -> dict[str, bool]:
    """Which state buttons apply, from the services' own status lists (the service
    still decides: a button shown on a stale page gets the service's refusal)."""
    if campaign is None:
        return {"can_send": False, "can_cancel": False}
    return {
        "can_send": campaign.status in services.SENDABLE,
        "can_cancel": campaign.status in services.CANCELLABLE,
    }
