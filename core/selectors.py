"""Reads of core's tables that more than one door needs (the audit trail's API and console)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import QuerySet

from core.models import AuditEvent
from core.pagination import Key, aware_datetime, keyset_page, row_id

# Newest first on (at, id): id breaks ties between events of the same microsecond.
AUDIT_ORDER = (Key("at", aware_datetime, datetime.isoformat), Key("id", row_id, int))


def audit_events(
    *,
    project_id: uuid.UUID | None = None,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events matching every filter given (exact matches; `since` inclusive,
    `until` exclusive), newest first. A project's events read the (project_id, at)
    index."""
    given = {
        "project_id": project_id,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "at__gte": since,
        "at__lt": until,
    }
    wanted = {lookup: value for lookup, value in given.items() if value is not None}
    return AuditEvent.objects.filter(**wanted).order_by("-at", "-id")


def audit_event_page(
    events: QuerySet[AuditEvent], *, cursor: str | None, limit: int
) -> tuple[list[AuditEvent], str | None]:
    """One page of `events` (from `audit_events`), keyset-paginated like every list."""
    return keyset_page(events, keys=AUDIT_ORDER, cursor=cursor, limit=limit, descending=True)
