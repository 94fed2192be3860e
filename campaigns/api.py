"""Campaign HTTP API (DESIGN.md, "HTTP API"). Thin: parse, call one service, serialize.

Every view serves both the project route (`/admin/projects/{projectId}/push/...`)
and the short alias (`/admin/push/...`), where the project comes from the key.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import analytics, selectors, services, testpush
from campaigns.models import CampaignStatus
from campaigns.serializers import (
    AnalyticsSerializer,
    AudienceSerializer,
    CampaignPageSerializer,
    CampaignPreviewRequestSerializer,
    CampaignPreviewSerializer,
    CampaignSerializer,
    CampaignWriteSerializer,
    DeliveryPageSerializer,
    DeliverySerializer,
    ExplicitPushRequestSerializer,
    ExplicitPushResultSerializer,
    RunPageSerializer,
    RunSerializer,
    TestPushRequestSerializer,
    TestPushResultSerializer,
)
from campaigns.validation import (
    MAX_RUN_NUMBER,
    MAX_TAG,
    parse_run_number,
    schedules,
    validate_create,
    validate_explicit_push,
    validate_preview,
    validate_update,
)
from core import access
from core.api import ProjectScopedView, json_body
from core.idempotency import IDEMPOTENCY_ERRORS, idempotent
from core.pagination import CURSOR_PARAMETER, LIMIT_PARAMETER, parse_limit
from core.schema import NOT_BLANK, error_responses
from delivery.models import PushDelivery

# What any campaign operation may answer; an operation adds its own (413, 502 ...).
# 403: client-scoped keys; 429: rate limit; 500: the view's failure code.
ERRORS = error_responses(400, 401, 403, 404, 409, 429, 500)
# Operations that take an Idempotency-Key (create, send, push, test push).
KEYED_ERRORS = {**ERRORS, **IDEMPOTENCY_ERRORS}


class CampaignView(ProjectScopedView):
    @staticmethod
    def campaign_id(kwargs: dict[str, Any]) -> uuid.UUID:
        return ProjectScopedView.path_uuid(
            kwargs, "campaign_id", code="INVALID_CAMPAIGN_ID", field="campaignId"
        )


class CampaignListView(CampaignView):
    failure_codes = {"GET": "LIST_FAILED", "POST": "CREATE_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS, "POST": access.ADD_CAMPAIGNS}
    lists = True

    @extend_schema(
        parameters=[
            CURSOR_PARAMETER,
            LIMIT_PARAMETER,
            OpenApiParameter(
                "status", str, enum=CampaignStatus.values, description="Only this status."
            ),
            OpenApiParameter(
                "tag",
                {"type": "string", "minLength": 1, "maxLength": MAX_TAG, "pattern": NOT_BLANK},
                description="Only campaigns having this tag (exact, case-sensitive).",
            ),
        ],
        responses={200: CampaignPageSerializer, **ERRORS},
        summary="List campaigns, newest first",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        rows, next_cursor = selectors.campaign_page(
            project=project,
            cursor=request.query_params.get("cursor"),
            limit=parse_limit(request.query_params.get("limit")),
            status=request.query_params.get("status"),
            tag=request.query_params.get("tag"),
        )
        return Response({"results": CampaignSerializer(rows, many=True).data, "next": next_cursor})

    @extend_schema(
        request=CampaignWriteSerializer,
        responses={201: CampaignSerializer, **KEYED_ERRORS},
        summary="Create a campaign (draft, or scheduled when scheduled_at is given)",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        fields = validate_create(json_body(request))
        if schedules(fields, update=False):
            self.require(request, access.SEND_CAMPAIGNS, project)
        campaign = services.campaign_create(project=project, fields=fields)
        return Response(CampaignSerializer(campaign).data, status=201)


class CampaignDetailView(CampaignView):
    failure_codes = {"GET": "FETCH_FAILED", "PATCH": "UPDATE_FAILED", "DELETE": "DELETE_FAILED"}
    permissions = {
        "GET": access.VIEW_CAMPAIGNS,
        "PATCH": access.CHANGE_CAMPAIGNS,
        "DELETE": access.DELETE_CAMPAIGNS,
    }

    @extend_schema(responses={200: CampaignSerializer, **ERRORS}, summary="Fetch a campaign")
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = selectors.campaign_get(project=project, campaign_id=self.campaign_id(kwargs))
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(
        request=CampaignWriteSerializer,
        responses={200: CampaignSerializer, **ERRORS, **error_responses(502)},
        summary="Update a draft or scheduled campaign",
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign_id = self.campaign_id(kwargs)
        fields = validate_update(json_body(request))
        if schedules(fields, update=True):
            self.require(request, access.SEND_CAMPAIGNS, project)
        campaign = services.campaign_update(project=project, campaign_id=campaign_id, fields=fields)
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(responses={204: None, **ERRORS}, summary="Delete a draft or scheduled campaign")
    def delete(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        services.campaign_delete(project=project, campaign_id=self.campaign_id(kwargs))
        return Response(status=204)


class CampaignSendView(CampaignView):
    failure_codes = {"POST": "SEND_FAILED"}
    permissions = {"POST": access.SEND_CAMPAIGNS}

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, **KEYED_ERRORS},
        summary="Send now (draft or failed -> sending)",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = services.campaign_send(project=project, campaign_id=self.campaign_id(kwargs))
        return Response(CampaignSerializer(campaign).data)


class CampaignCancelView(CampaignView):
    failure_codes = {"POST": "CANCEL_FAILED"}
    permissions = {"POST": access.SEND_CAMPAIGNS}

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, **ERRORS},
        summary="Cancel a scheduled or sending campaign",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = services.campaign_cancel(project=project, campaign_id=self.campaign_id(kwargs))
        return Response(CampaignSerializer(campaign).data)


class CampaignDeliveriesView(CampaignView):
    failure_codes = {"GET": "LIST_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS}
    lists = True

    @extend_schema(
        parameters=[
            CURSOR_PARAMETER,
            LIMIT_PARAMETER,
            OpenApiParameter(
                "status", str, enum=PushDelivery.Status.values, description="Only this status."
            ),
            OpenApiParameter(
                "run",
                {"type": "integer", "minimum": 1, "maximum": MAX_RUN_NUMBER},
                description="Only this run (its number).",
            ),
        ],
        responses={200: DeliveryPageSerializer, **ERRORS},
        summary="Per-token delivery results",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = selectors.campaign_get(project=project, campaign_id=self.campaign_id(kwargs))
        rows, next_cursor = selectors.delivery_page(
            campaign=campaign,
            cursor=request.query_params.get("cursor"),
            limit=parse_limit(request.query_params.get("limit")),
            status=request.query_params.get("status"),
            run=parse_run_number(request.query_params.get("run")),
        )
        return Response({"results": DeliverySerializer(rows, many=True).data, "next": next_cursor})


class CampaignRunsView(CampaignView):
    failure_codes = {"GET": "LIST_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS}
    lists = True

    @extend_schema(responses={200: RunPageSerializer, **ERRORS}, summary="Runs with stats")
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = selectors.campaign_get(project=project, campaign_id=self.campaign_id(kwargs))
        runs = selectors.campaign_runs(campaign=campaign)
        return Response({"results": RunSerializer(runs, many=True).data})


class TestPushView(CampaignView):
    failure_codes = {"POST": "PUSH_TEST_FAILED"}
    permissions = {"POST": access.SEND_CAMPAIGNS}

    @extend_schema(
        request=TestPushRequestSerializer,
        responses={200: TestPushResultSerializer, **KEYED_ERRORS, **error_responses(502)},
        summary="Send one test push now (app_user_id, or device_token + provider)",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        fields = testpush.validate_test_push(json_body(request))
        return Response(testpush.test_push_send(project=project, fields=fields))


class CampaignPushView(CampaignView):
    failure_codes = {"POST": "EXPLICIT_PUSH_FAILED"}
    permissions = {"POST": access.SEND_CAMPAIGNS}

    @extend_schema(
        request=ExplicitPushRequestSerializer,
        responses={200: ExplicitPushResultSerializer, **KEYED_ERRORS, **error_responses(413)},
        summary="Push a new run to listed devices or users (at most 1000)",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign_id = self.campaign_id(kwargs)
        explicit = validate_explicit_push(json_body(request))
        pushed = services.campaign_push_explicit(
            project=project,
            campaign_id=campaign_id,
            device_ids=explicit.device_ids,
            user_ids=explicit.user_ids,
            overrides=explicit.overrides,
        )
        return Response(
            {
                "invalid_device_ids": pushed.invalid_device_ids,
                "run": pushed.run,
                "targeted": pushed.targeted,
            }
        )


class CampaignPreviewView(CampaignView):
    failure_codes = {"POST": "PREVIEW_FAILED"}
    permissions = {"POST": access.VIEW_CAMPAIGNS}

    @extend_schema(
        request=CampaignPreviewRequestSerializer,
        responses={200: CampaignPreviewSerializer, **ERRORS},
        summary="The campaign's notification and payloads for a sample user",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign_id = self.campaign_id(kwargs)
        sample = validate_preview(json_body(request))
        return Response(
            services.campaign_preview(
                project=project,
                campaign_id=campaign_id,
                external_id=sample.external_id,
                attributes=sample.attributes,
                language=sample.language,
            )
        )


class CampaignAudienceView(CampaignView):
    failure_codes = {"GET": "FETCH_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS}

    @extend_schema(
        responses={200: AudienceSerializer, **ERRORS}, summary="Audience size now, by provider"
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        return Response(
            services.campaign_audience(project=project, campaign_id=self.campaign_id(kwargs))
        )


class CampaignAnalyticsView(CampaignView):
    failure_codes = {"GET": "FETCH_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS}

    @extend_schema(
        responses={200: AnalyticsSerializer, **ERRORS},
        summary="Opens, clicks, conversions and rates over all runs",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = selectors.campaign_get(project=project, campaign_id=self.campaign_id(kwargs))
        return Response(AnalyticsSerializer(analytics.campaign_analytics(campaign)).data)


class RunAnalyticsView(CampaignView):
    failure_codes = {"GET": "FETCH_FAILED"}
    permissions = {"GET": access.VIEW_CAMPAIGNS}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "number",
                {"type": "integer", "minimum": 1, "maximum": MAX_RUN_NUMBER},
                OpenApiParameter.PATH,
                description="The run's number; an unknown run answers 404 NOT_FOUND.",
            )
        ],
        responses={200: AnalyticsSerializer, **ERRORS},
        summary="Opens, clicks, conversions and rates of one run",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        campaign = selectors.campaign_get(project=project, campaign_id=self.campaign_id(kwargs))
        run = selectors.campaign_run_get(campaign=campaign, number=kwargs["number"])
        return Response(AnalyticsSerializer(analytics.campaign_analytics(campaign, run)).data)
