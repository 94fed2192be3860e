"""Campaign reads: querysets with the joins their callers need."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db.models import Q, QuerySet

from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from core.errors import InvalidInput, NotFound
from core.models import Project
from core.pagination import decode_cursor, encode_cursor
from delivery.models import PushDelivery


def campaign_get(*, project: Project, campaign_id: uuid.UUID) -> PushCampaign:
    try:
        return PushCampaign.objects.select_related("segment").get(pk=campaign_id, project=project)
    except PushCampaign.DoesNotExist as exc:
        raise NotFound("Campaign not found.") from exc


def campaign_page(
    *, project: Project, cursor: str | None, limit: int, status: str | None = None
) -> tuple[list[PushCampaign], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    qs: QuerySet[PushCampaign] = PushCampaign.objects.filter(project=project).select_related(
        "segment"
    )
    if status is not None:
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
    if status is not None:
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
