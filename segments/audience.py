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
from segments.models import AppUser, Segment


def resolve_audience(
    *,
    project: Project,
    segment: Segment | None = None,
    targeting: dict[str, Any] | None = None,
    platforms: list[str] | None = None,
) -> QuerySet[PushToken]:
    """Active tokens of `project` matching segment AND targeting AND platforms."""
    tokens = PushToken.objects.filter(project=project, active=True)
    if platforms:
        tokens = tokens.filter(platform__in=platforms)
    if segment is not None:
        from segments.rules import compile_rules  # the rule engine (segments issue)

        members = AppUser.objects.filter(project=project).filter(
            compile_rules(segment.rules, now=timezone.now())
        )
        tokens = tokens.filter(app_user__in=members.values("id"))
    if targeting:
        from segments.rules import targeting_filter

        tokens = targeting_filter(tokens, targeting, project=project, now=timezone.now())
    return tokens
