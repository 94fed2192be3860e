"""Building the events ingestion hands to campaigns' listener, from real rows."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from campaigns.models import CampaignRun, PushCampaign
from delivery.models import PushDelivery
from segments.events import DeliveryRef, IngestedEvent
from segments.models import AppUser
from tests.factories import CampaignRunFactory, PushDeliveryFactory, PushTokenFactory

_ids = itertools.count(1)


def user_of(delivery: PushDelivery) -> AppUser:
    assert delivery.app_user is not None
    return delivery.app_user


def ref(delivery: PushDelivery) -> DeliveryRef:
    return DeliveryRef(
        id=delivery.pk,
        campaign_id=delivery.campaign_id,
        run=delivery.run,
        provider=delivery.provider,
        platform=delivery.token.platform,
        sent_at=delivery.sent_at,
    )


def event(
    user: AppUser,
    name: str,
    at: datetime,
    *,
    delivery: PushDelivery | None = None,
    action: str = "",
    properties: dict[str, Any] | None = None,
) -> IngestedEvent:
    return IngestedEvent(
        id=next(_ids),
        project_id=user.project_id,
        app_user_id=user.pk,
        name=name,
        properties=properties or {},
        occurred_at=at,
        action_id=action,
        delivery=None if delivery is None else ref(delivery),
    )


def opened(delivery: PushDelivery, at: datetime) -> IngestedEvent:
    assert delivery.app_user is not None
    return event(delivery.app_user, "push_opened", at, delivery=delivery)


def clicked(delivery: PushDelivery, at: datetime, action: str) -> IngestedEvent:
    assert delivery.app_user is not None
    return event(delivery.app_user, "push_clicked", at, delivery=delivery, action=action)


def sent_delivery(
    campaign: PushCampaign,
    *,
    run: int = 1,
    sent_at: datetime,
    user: AppUser | None = None,
    provider: str = "apns",
    platform: str = "ios",
    status: str = PushDelivery.Status.SENT,
) -> PushDelivery:
    """A delivery row of `campaign`'s run (the run row is created if missing)."""
    if not CampaignRun.objects.filter(campaign=campaign, number=run).exists():
        CampaignRunFactory(campaign=campaign, number=run)
    token_kwargs: dict[str, Any] = {
        "project": campaign.project,
        "provider": provider,
        "platform": platform,
    }
    if user is not None:
        token_kwargs["app_user"] = user
    token = PushTokenFactory(**token_kwargs)
    return PushDeliveryFactory(
        campaign=campaign,
        run=run,
        token=token,
        status=status,
        sent_at=sent_at if status == PushDelivery.Status.SENT else None,
    )
