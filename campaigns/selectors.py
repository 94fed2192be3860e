"""Campaign reads: querysets with the joins their callers need."""

from __future__ import annotations

import uuid

from django.db.models import F, Prefetch, QuerySet

from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from core.errors import InvalidInput, NotFound
from core.models import Project
from core.pagination import BY_ROW_ID, NEWEST_FIRST, keyset_page
from delivery.models import PushDelivery


def with_current_run(campaigns: QuerySet[PushCampaign]) -> QuerySet[PushCampaign]:
    """Prefetch each campaign's current run (`campaigns.runs.campaign_stats` reads it),
    so a page of campaigns costs one query for all their numbers."""
    return campaigns.prefetch_related(
        Prefetch(
            "runs",
            queryset=CampaignRun.objects.filter(number=F("campaign__current_run")),
            to_attr="current_runs",
        )
    )


def campaign_get(*, project: Project, campaign_id: uuid.UUID) -> PushCampaign:
    try:
        return with_current_run(PushCampaign.objects.select_related("segment")).get(
            pk=campaign_id, project=project
        )
    except PushCampaign.DoesNotExist as exc:
        raise NotFound("Campaign not found.") from exc


def campaign_page(
    *, project: Project, cursor: str | None, limit: int, status: str | None = None
) -> tuple[list[PushCampaign], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    qs: QuerySet[PushCampaign] = with_current_run(
        PushCampaign.objects.filter(project=project).select_related("segment")
    )
    if status is not None:
        if status not in CampaignStatus.values:
            raise InvalidInput(
                f"status must be one of {', '.join(CampaignStatus.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    return keyset_page(qs, keys=NEWEST_FIRST, cursor=cursor, limit=limit, descending=True)


def delivery_page(
    *,
    campaign: PushCampaign,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    run: int | None = None,
) -> tuple[list[PushDelivery], str | None]:
    """Per-token results in id order, keyset-paginated."""
    qs = PushDelivery.objects.filter(campaign=campaign).select_related("token", "app_user")
    if status is not None:
        if status not in PushDelivery.Status.values:
            raise InvalidInput(
                f"status must be one of {', '.join(PushDelivery.Status.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    if run is not None:
        qs = qs.filter(run=run)
    return keyset_page(qs, keys=BY_ROW_ID, cursor=cursor, limit=limit)


def campaign_runs(*, campaign: PushCampaign) -> QuerySet[CampaignRun]:
    return CampaignRun.objects.filter(campaign=campaign).order_by("-number")
