"""Template helpers of the console's campaign page (admin/campaigns/pushcampaign/)."""

from __future__ import annotations

from django import template

from campaigns import services
from campaigns.models import PushCampaign
from core import access

register = template.Library()


@register.simple_tag(takes_context=True)
def campaign_tools(context: template.Context, campaign: PushCampaign | None) -> dict[str, bool]:
    """Which buttons apply: by state, from the services' own status lists (the service
    still decides: a button shown on a stale page gets the service's refusal), and by
    the user's role in the campaign's project (core/access.py)."""
    if campaign is None:
        return {"may_send": False, "can_send": False, "can_cancel": False}
    user = context["request"].user
    return {
        "may_send": access.principal_may(user, access.SEND_CAMPAIGNS, campaign),
        "can_send": campaign.status in services.SENDABLE,
        "can_cancel": campaign.status in services.CANCELLABLE,
    }
