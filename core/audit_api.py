"""The audit trail over HTTP: `GET /admin/projects/{id}/audit` (docs/api.md, "Audit trail").

A thin view: parse the filters (a bad value is 400 VALIDATION_ERROR naming it), read
`core.selectors.audit_events`, answer a page. Admin keys read their own project's
trail; client keys get 403 and another project's key 404, as everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core import access
from core.api import ProjectScopedView
from core.errors import InvalidInput
from core.models import AuditEvent
from core.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, aware_datetime, parse_limit
from core.schema import DocumentedJSONField, error_responses
from core.selectors import audit_event_page, audit_events

ACTION_PATTERN = r"^[a-z_]+(\.[a-z_]+)+$"
OBJECT_TYPE_PATTERN = r"^[a-z_]+$"
MAX_ACTOR = 200
MAX_ACTION = 64
MAX_OBJECT = 64


def _text(params: Mapping[str, str], name: str, *, limit: int, pattern: str | None) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    # NUL cannot be stored in (or compared with) PostgreSQL text: refused, not a 500.
    malformed = "\x00" in value or bool(pattern and not re.fullmatch(pattern, value))
    if not value or len(value) > limit or malformed:
        shape = f", matching {pattern}" if pattern else ""
        raise InvalidInput(f"{name} must be 1-{limit} characters{shape}.", details={"field": name})
    return value


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return aware_datetime(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"{name} must be an ISO-8601 time with a UTC offset, e.g. 2026-01-31T09:00:00Z.",
            details={"field": name},
        ) from exc


def audit_filters(params: Mapping[str, str]) -> dict[str, Any]:
    """The selector's filters from the query string; VALIDATION_ERROR on a bad one."""
    filters: dict[str, Any] = {
        "actor": _text(params, "actor", limit=MAX_ACTOR, pattern=None),
        "action": _text(params, "action", limit=MAX_ACTION, pattern=ACTION_PATTERN),
        "object_type": _text(params, "object_type", limit=MAX_OBJECT, pattern=OBJECT_TYPE_PATTERN),
        "object_id": _text(params, "object_id", limit=MAX_OBJECT, pattern=None),
        "since": _time(params, "since"),
        "until": _time(params, "until"),
    }
    if filters["since"] and filters["until"] and filters["since"] >= filters["until"]:
        raise InvalidInput("until must be later than since.", details={"field": "until"})
    return filters


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    changes = DocumentedJSONField(
        {"type": "object", "additionalProperties": True},
        help_text="Changed field names (`fields`) and small facts; never a secret's value.",
    )

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "at",
            "project_id",
            "actor_kind",
            "actor",
            "actor_user_id",
            "via",
            "ip",
            "user_agent",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
        )
        read_only_fields = fields


class AuditEventPageSerializer(serializers.Serializer[object]):
    results = AuditEventSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Cursor of the next page; null: none.")


def _parameter(name: str, schema: dict[str, Any], description: str) -> OpenApiParameter:
    return OpenApiParameter(name, schema, description=description)


FILTERS = [
    _parameter(
        "actor",
        {"type": "string", "minLength": 1, "maxLength": MAX_ACTOR},
        "Only this actor (exact): a username, `hk_<prefix>_…`, a command name, `scheduler`.",
    ),
    _parameter(
        "action",
        {"type": "string", "minLength": 1, "maxLength": MAX_ACTION, "pattern": ACTION_PATTERN},
        "Only this action (exact), e.g. `campaign.sent`.",
    ),
    _parameter(
        "object_type",
        {"type": "string", "minLength": 1, "maxLength": MAX_OBJECT, "pattern": OBJECT_TYPE_PATTERN},
        "Only events about this kind of object, e.g. `pushcampaign`, `segment`, `apikey`.",
    ),
    _parameter(
        "object_id",
        {"type": "string", "minLength": 1, "maxLength": MAX_OBJECT},
        "Only events about this object id (with object_type to be unambiguous).",
    ),
    _parameter(
        "since",
        {"type": "string", "format": "date-time"},
        "Events at or after this time (ISO-8601 with an offset).",
    ),
    _parameter(
        "until",
        {"type": "string", "format": "date-time"},
        "Events before this time (ISO-8601 with an offset); later than since.",
    ),
]


class AuditEventListView(ProjectScopedView):
    failure_codes = {"GET": "LIST_FAILED"}
    permissions = {"GET": access.VIEW_AUDIT}
    lists = True

    @extend_schema(
        parameters=[*FILTERS, CURSOR_PARAMETER, LIMIT_PARAMETER],
        responses={200: AuditEventPageSerializer, **error_responses(400, 401, 403, 404, 429, 500)},
        summary="The project's audit trail, newest first",
        description=(
            "Every state change and operator action on the project (campaigns, segments, "
            "credentials, API keys), with who did it, through which door, from where. "
            "Admin keys and the project's admins; a read-only or client key, or a "
            "staff user with another role, is 403."
        ),
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        params = request.query_params
        events = audit_events(project_id=project.pk, **audit_filters(params))
        rows, next_cursor = audit_event_page(
            events, cursor=params.get("cursor"), limit=parse_limit(params.get("limit"))
        )
        return Response(
            {"results": AuditEventSerializer(rows, many=True).data, "next": next_cursor}
        )
