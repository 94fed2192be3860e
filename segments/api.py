"""Audience HTTP API: segments (admin) and device registration (apps).

Thin views: parse, clean (segments.services.clean_*), call one service or selector,
serialize. Registration views set `allow_client_keys`, so the client-scoped keys
shipped inside apps may call them and nothing else; admin keys and staff may too.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core import access
from core.api import ProjectScopedView, json_body
from core.errors import InvalidInput
from core.idempotency import IDEMPOTENCY_ERRORS, idempotent
from core.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, parse_limit
from core.schema import error_responses
from delivery.models import Provider
from segments import selectors, services
from segments.events import events_ingest
from segments.rules import stored_rules, validate_rules
from segments.serializers import (
    EXTERNAL_ID_PATH_PATTERN,
    AppUserSerializer,
    AppUserWriteSerializer,
    EventsRequestSerializer,
    EventsResultSerializer,
    PreviewSerializer,
    RulesPreviewRequestSerializer,
    SegmentPageSerializer,
    SegmentSerializer,
    SegmentWriteSerializer,
    TokenSerializer,
    TokenUnregisterSerializer,
    TokenWriteSerializer,
)

# What any audience operation may answer; 429: rate limit; 500: the view's failure code.
ERRORS = error_responses(400, 401, 403, 404, 429, 500)
# Previews of a saved segment: 409 INVALID_SEGMENT_RULES when its rules no longer validate.
PREVIEW_ERRORS = {**ERRORS, **error_responses(409)}
EXTERNAL_ID = OpenApiParameter(
    "external_id",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": services.MAX_EXTERNAL_ID,
        "pattern": EXTERNAL_ID_PATH_PATTERN,
    },
    OpenApiParameter.PATH,
    description="The app's own user id (400 INVALID_EXTERNAL_ID when malformed).",
)
TOKEN = OpenApiParameter(
    "token",
    {"type": "string", "minLength": 1, "maxLength": services.FCM_TOKEN_MAX},
    OpenApiParameter.PATH,
    description="The device token string (404 when this project has no such token).",
)


class SegmentView(ProjectScopedView):
    @staticmethod
    def segment_id(kwargs: dict[str, Any]) -> uuid.UUID:
        return ProjectScopedView.path_uuid(
            kwargs, "segment_id", code="INVALID_SEGMENT_ID", field="segmentId"
        )


def _preview_response(preview: selectors.Preview) -> Response:
    return Response(PreviewSerializer({"count": preview.count, "sample": preview.sample}).data)


# ---------------------------------------------------------------------- segments


class SegmentListView(SegmentView):
    failure_codes = {"GET": "LIST_FAILED", "POST": "CREATE_FAILED"}
    permissions = {"GET": access.VIEW_SEGMENTS, "POST": access.ADD_SEGMENTS}
    lists = True

    @extend_schema(
        parameters=[CURSOR_PARAMETER, LIMIT_PARAMETER],
        responses={200: SegmentPageSerializer, **ERRORS},
        summary="List segments, newest first",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        rows, next_cursor = selectors.segment_page(
            project=project,
            cursor=request.query_params.get("cursor"),
            limit=parse_limit(request.query_params.get("limit")),
        )
        return Response({"results": SegmentSerializer(rows, many=True).data, "next": next_cursor})

    @extend_schema(
        request=SegmentWriteSerializer,
        responses={201: SegmentSerializer, **ERRORS},
        summary="Create a segment (rules are validated; errors name the rule path)",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        fields = services.clean_segment_fields(json_body(request), partial=False)
        segment = services.segment_create(project=project, fields=fields)
        return Response(SegmentSerializer(segment).data, status=201)


class SegmentDetailView(SegmentView):
    failure_codes = {"GET": "FETCH_FAILED", "PATCH": "UPDATE_FAILED", "DELETE": "DELETE_FAILED"}
    permissions = {
        "GET": access.VIEW_SEGMENTS,
        "PATCH": access.CHANGE_SEGMENTS,
        "DELETE": access.DELETE_SEGMENTS,
    }

    @extend_schema(responses={200: SegmentSerializer, **ERRORS}, summary="Fetch a segment")
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        segment = selectors.segment_get(project=project, segment_id=self.segment_id(kwargs))
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        request=SegmentWriteSerializer,
        responses={200: SegmentSerializer, **ERRORS},
        summary="Update a segment (a rules change clears the cached member count)",
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        segment_id = self.segment_id(kwargs)
        fields = services.clean_segment_fields(json_body(request), partial=True)
        segment = services.segment_update(project=project, segment_id=segment_id, fields=fields)
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        responses={204: None, **ERRORS, **error_responses(409)},
        summary="Delete a segment (409 SEGMENT_IN_USE while a campaign uses it)",
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        services.segment_delete(project=project, segment_id=self.segment_id(kwargs))
        return Response(status=204)


class SegmentPreviewView(SegmentView):
    failure_codes = {"POST": "PREVIEW_FAILED"}
    permissions = {"POST": access.VIEW_SEGMENTS}

    @extend_schema(
        request=None,
        responses={200: PreviewSerializer, **PREVIEW_ERRORS},
        summary="Members of a saved segment now: count and a sample of 10",
        operation_id="admin_projects_segments_preview",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        segment = selectors.segment_get(project=project, segment_id=self.segment_id(kwargs))
        rules = stored_rules(segment)  # 409 INVALID_SEGMENT_RULES if they no longer validate
        return _preview_response(selectors.segment_preview(project=project, rules=rules))


class RulesPreviewView(SegmentView):
    failure_codes = {"POST": "PREVIEW_FAILED"}
    permissions = {"POST": access.VIEW_SEGMENTS}

    @extend_schema(
        request=RulesPreviewRequestSerializer,
        responses={200: PreviewSerializer, **ERRORS},
        summary="Members of an unsaved rule: count and a sample of 10",
        operation_id="admin_projects_segments_preview_rules",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        body = json_body(request, allowed=("rules",))
        if body.get("rules") is None:
            message = "rules is required."
            raise InvalidInput(message, code="MISSING_RULES", details={"field": "rules"})
        rules = validate_rules(body["rules"])
        return _preview_response(selectors.segment_preview(project=project, rules=rules))


# ------------------------------------------------------------------ registration


class RegistrationView(ProjectScopedView):
    allow_client_keys = True


class AppUserView(RegistrationView):
    failure_codes = {"PUT": "UPSERT_FAILED"}
    permissions = {"PUT": access.REGISTER_DEVICES}

    @extend_schema(
        parameters=[EXTERNAL_ID],
        request=AppUserWriteSerializer,
        responses={200: AppUserSerializer, 201: AppUserSerializer, **ERRORS},
        summary="Create or update an app user and merge its attributes",
    )
    def put(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        external_id = services.clean_external_id(kwargs.get("external_id"), field="externalId")
        body = json_body(request, allowed=("attributes",))
        attributes = services.clean_attributes(body.get("attributes", {}))
        user, created = services.app_user_upsert(
            project=project, external_id=external_id, attributes=attributes
        )
        return Response(AppUserSerializer(user).data, status=201 if created else 200)


class TokenListView(RegistrationView):
    failure_codes = {"POST": "REGISTER_FAILED"}
    permissions = {"POST": access.REGISTER_DEVICES}

    @extend_schema(
        request=TokenWriteSerializer,
        responses={200: TokenSerializer, 201: TokenSerializer, **ERRORS, **IDEMPOTENCY_ERRORS},
        summary="Register or refresh a device token (idempotent; reactivates it)",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        registration = services.clean_token_registration(json_body(request))
        token, created = services.token_register(project=project, registration=registration)
        token.refresh_from_db()  # the serializer reads the owner's external_id
        return Response(TokenSerializer(token).data, status=201 if created else 200)


class TokenDetailView(RegistrationView):
    failure_codes = {"DELETE": "UNREGISTER_FAILED"}
    permissions = {"DELETE": access.REGISTER_DEVICES}

    @extend_schema(
        parameters=[
            TOKEN,
            OpenApiParameter(
                "provider",
                str,
                enum=Provider.values,
                description="Only this provider's token, when the same string exists for both.",
            ),
        ],
        responses={204: None, **ERRORS},
        summary="Unregister a device token (active false, reason 'unregistered')",
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        provider = request.query_params.get("provider")
        services.token_unregister(
            project=project,
            token=str(kwargs.get("token")),
            provider=services.clean_provider(provider) if provider is not None else None,
        )
        return Response(status=204)


class TokenUnregisterView(RegistrationView):
    """The unregister route for tokens that cannot be a path segment: a web push
    subscription's endpoint holds ``/``. Same service and answers as DELETE."""

    failure_codes = {"POST": "UNREGISTER_FAILED"}
    permissions = {"POST": access.REGISTER_DEVICES}

    @extend_schema(
        request=TokenUnregisterSerializer,
        responses={204: None, **ERRORS},
        summary="Unregister a token given in the body (web push endpoints)",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        body = json_body(request, allowed=("token", "provider"))
        token = body.get("token")
        if token is None or token == "":
            raise InvalidInput(
                "token is required.", code="MISSING_TOKEN", details={"field": "token"}
            )
        if not isinstance(token, str) or len(token) > services.WEBPUSH_ENDPOINT_MAX:
            raise InvalidInput(
                f"token must be a string of at most {services.WEBPUSH_ENDPOINT_MAX} characters.",
                code="INVALID_TOKEN_FORMAT",
                details={"field": "token"},
            )
        provider = body.get("provider")
        services.token_unregister(
            project=project,
            token=token,
            provider=services.clean_provider(provider) if provider is not None else None,
        )
        return Response(status=204)


class EventListView(RegistrationView):
    """App events (docs/api.md, "Events"). No Idempotency-Key: the event_ids already
    make a retried batch count once, and a replayed answer would say less than the
    fresh one (which events were duplicates)."""

    failure_codes = {"POST": "INGEST_FAILED"}
    permissions = {"POST": access.REGISTER_DEVICES}

    @extend_schema(
        request=EventsRequestSerializer,
        responses={200: EventsResultSerializer, **ERRORS, **error_responses(413)},
        summary="Report app events (up to 1000): opens, clicks, goal events",
        description=(
            "Idempotent by event_id. Bad events are refused one by one in `rejected` "
            "(index, code); the others are stored. A wrong envelope (events missing, "
            "not a list, empty, over 1000) is 400 and stores nothing."
        ),
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        body = json_body(request, allowed=("events",))
        result = events_ingest(project=project, events=body.get("events"))
        return Response(
            EventsResultSerializer(
                {
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "rejected": result.rejected,
                }
            ).data
        )
