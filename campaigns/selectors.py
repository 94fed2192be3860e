"""Campaign reads: querysets with the joins their callers need."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db.models import F, Prefetch, Q, QuerySet

from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from core.errors import InvalidInput, NotFound
from core.models import Project
from core.pagination import decode_cursor, encode_cursor
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
    if status:
        if status not in CampaignStatus.values:
            raise InvalidInput(
                f"status must be one of {', '.join(CampaignStatus.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    position = decode_cursor(cursor, arity=2)
    if position is not None:
        try:
            created_at = datetime.fromisoformat(str(position[0]))
            if created_at.tzinfo is None:
                raise ValueError("naive cursor time")
            # Converting now, not in the query: an extreme offset overflows here.
            created_at = created_at.astimezone(UTC)
            last_id = uuid.UUID(str(position[1]))
        except (ValueError, OverflowError) as exc:
            raise InvalidInput("cursor is not valid.", details={"field": "cursor"}) from exc
        qs = qs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id))
    rows = list(qs.order_by("-created_at", "-id")[: limit + 1])
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([last.created_at.isoformat(), str(last.id)])
    return rows, next_cursor


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
    if status:
        if status not in PushDelivery.Status.values:
            raise InvalidInput(
                f"status must be one of {', '.join(PushDelivery.Status.values)}.",
                details={"field": "status"},
            )
        qs = qs.filter(status=status)
    if run is not None:
        qs = qs.filter(run=run)
    position = decode_cursor(cursor, arity=1)
    if position is not None:
        if not isinstance(position[0], int):
            raise InvalidInput("cursor is not valid.", details={"field": "cursor"})
        qs = qs.filter(id__gt=position[0])
    rows = list(qs.order_by("id")[: limit + 1])
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].id])
    return rows, next_cursor


def campaign_runs(*, campaign: PushCampaign) -> QuerySet[CampaignRun]:
    return CampaignRun.objects.filter(campaign=campaign).order_by("-number")
