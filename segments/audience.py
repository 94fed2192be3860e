"""Who a campaign reaches, resolved fresh at send time (one function for it).

Returns active push tokens as a queryset, so callers can count it, group it by
provider, or stream it in keyset-paginated chunks without loading it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from core.models import Project
from delivery.models import PushToken
from segments.models import Segment
from segments.rules import stored_rules
from segments.targeting import targeting_filter


def resolve_audience(
    *,
    project: Project,
    segment: Segment | None = None,
    targeting: dict[str, Any] | None = None,
    platforms: list[str] | None = None,
) -> QuerySet[PushToken]:
    """Active tokens of `project` matching segment AND targeting AND platforms.

    The segment's rules and the user-level targeting become one users subquery
    (see `targeting_filter`), evaluated at one instant.

    Raises InvalidInput subclasses, and only those, for what was stored but cannot be
    honoured: StoredRulesInvalid (a segment's rules no longer validate, 409) and
    UnknownTargetingSegments (a targeted segment deleted since, 409). Retrying cannot
    cure either; the campaign layer fails the run with the message.
    """
    tokens = PushToken.objects.filter(project=project, active=True)
    if platforms:
        tokens = tokens.filter(platform__in=platforms)
    if segment is None and not targeting:
        return tokens
    return targeting_filter(
        tokens,
        targeting or {},
        project=project,
        now=timezone.now(),
        segment_rules=stored_rules(segment) if segment is not None else None,
    )
