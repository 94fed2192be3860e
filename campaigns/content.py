"""Campaign -> PushContent (the pure payload builders' input), and the size check."""

from __future__ import annotations

from typing import Any

from campaigns.models import PushCampaign
from core.errors import InvalidInput
from delivery.payloads import Action, PushContent, payload_size_report


def campaign_content(
    campaign: PushCampaign, *, data_override: dict[str, Any] | None = None
) -> PushContent:
    """The content of a campaign's pushes; an explicit push may replace its data."""
    return PushContent(
        title=campaign.title,
        body=campaign.body,
        data=data_override if data_override is not None else campaign.data or {},
        localizations=campaign.localizations or {},
        image_url=campaign.image_url,
        url=campaign.url,
        actions=tuple(
            Action(id=a["id"], title=a["title"], url=a.get("url", ""))
            for a in campaign.actions or ()
        ),
        sound=campaign.sound,
        badge=campaign.badge,
        collapse_key=campaign.collapse_key,
        collapse_id_default=f"c-{campaign.id}",
        priority=campaign.priority,
        ttl_seconds=campaign.ttl_seconds,
        campaign_id=str(campaign.id),
    )


def check_payload_size(
    campaign: PushCampaign, *, data_override: dict[str, Any] | None = None
) -> None:
    """Refuse content whose built APNs or FCM payload would exceed 4096 bytes."""
    report = payload_size_report(campaign_content(campaign, data_override=data_override))
    if report:
        worst = max(report, key=lambda r: r.size)
        raise InvalidInput(
            f"The {worst.provider} payload would be {worst.size} bytes; "
            f"the limit is {worst.limit}. Shorten the text or data.",
            code="PAYLOAD_TOO_LARGE",
            details={
                "limit": worst.limit,
                "payloads": [
                    {"provider": r.provider, "language": r.language or None, "size": r.size}
                    for r in report
                ],
            },
        )
