"""The MoEngage door's HTTP view: parse, check, call one service, answer.

`POST /admin/projects/{projectId}/compat/moengage/push` and the alias
`POST /admin/compat/moengage/push` (the key's project). Admin API keys only, as
`Authorization: Bearer <key>` or MoEngage's `Basic base64(<project id>:<key>)`: the
request's signature is checked with that raw key, so staff sessions cannot call it.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.compat import moengage
from campaigns.models import CampaignStatus
from campaigns.validation import MAX_NAME
from core import access
from core.api import ProjectScopedView, json_body
from core.auth import ApiKeyAuthentication, BasicApiKeyAuthentication, raw_api_key
from core.errors import ApplicationError
from core.idempotency import IDEMPOTENCY_ERRORS, idempotent
from core.schema import NOT_BLANK, error_responses

TargetUserAttributesSerializer = inline_serializer(
    name="MoEngageTargetUserAttributes",
    fields={
        "attribute": serializers.ChoiceField(choices=moengage.USER_ATTRIBUTES),
        "comparisonParameter": serializers.ChoiceField(
            choices=moengage.COMPARISONS, required=False
        ),
        "attributeValue": serializers.ListField(
            child=serializers.RegexField(NOT_BLANK, min_length=1, max_length=255),
            min_length=1,
            max_length=moengage.MAX_USERS,
        ),
    },
    required=False,
)

MoEngagePushRequestSerializer = inline_serializer(
    name="MoEngagePushRequest",
    fields={
        "appId": serializers.UUIDField(help_text="The project id."),
        "campaignName": serializers.RegexField(
            NOT_BLANK,
            min_length=moengage.MIN_CAMPAIGN_NAME,
            max_length=MAX_NAME,
            help_text="Unique per project for All Users and Custom Segment audiences.",
        ),
        "signature": serializers.RegexField(
            "^[0-9a-fA-F]{64}$", help_text="SHA-256 hex of appId|campaignName|apiKey."
        ),
        "requestType": serializers.ChoiceField(choices=moengage.REQUEST_TYPES, required=False),
        "targetPlatform": serializers.ListField(
            child=serializers.ChoiceField(choices=moengage.TARGET_PLATFORMS), min_length=1
        ),
        "targetAudience": serializers.ChoiceField(choices=moengage.AUDIENCES),
        "customSegmentName": serializers.RegexField(
            NOT_BLANK, min_length=1, max_length=MAX_NAME, required=False
        ),
        "targetUserAttributes": TargetUserAttributesSerializer,
        "campaignDelivery": serializers.DictField(
            required=False,
            help_text=(
                '{"type": "soon"} (default), {"type": "later", "date": "MM/DD/YYYY", "time": '
                '"hh:mm AM/PM", "timezone"?} or {"type": "periodic", "time", "repeatAfter" '
                '(days), "endDate"?, "timezone"?}.'
            ),
        ),
        "payload": serializers.DictField(
            help_text="Per platform (ANDROID, IOS, WEB): title, message, imageUrl / imageURL, "
            "defaultAction.value / redirectURL, buttons, kvPairs (docs/api.md)."
        ),
        "campaignTags": serializers.ListField(
            child=serializers.RegexField(NOT_BLANK, min_length=1, max_length=64),
            required=False,
            max_length=20,
        ),
        "conversionGoals": serializers.ListField(
            child=serializers.DictField(), required=False, max_length=5
        ),
        "advancedSettings": serializers.DictField(required=False, help_text="Ignored."),
    },
)

MoEngagePushResultSerializer = inline_serializer(
    name="MoEngagePushResult",
    fields={
        "status": serializers.CharField(help_text='Always "success" (MoEngage\'s shape).'),
        "campaign_id": serializers.UUIDField(),
        "campaign_status": serializers.CharField(
            help_text="The campaign's status now: " + ", ".join(CampaignStatus.values) + "."
        ),
        "created": serializers.BooleanField(),
        "run": serializers.IntegerField(allow_null=True),
        "targeted": serializers.IntegerField(allow_null=True),
        "invalid_user_ids": serializers.ListField(child=serializers.CharField()),
    },
)


class MoEngagePushView(ProjectScopedView):
    authentication_classes = [BasicApiKeyAuthentication, ApiKeyAuthentication]
    failure_codes = {"POST": "MOENGAGE_PUSH_FAILED"}
    permissions = {"POST": access.SEND_CAMPAIGNS}

    @extend_schema(
        request=MoEngagePushRequestSerializer,
        responses={
            200: MoEngagePushResultSerializer,
            **error_responses(400, 401, 403, 404, 409, 429, 500),
            **IDEMPOTENCY_ERRORS,
        },
        summary="MoEngage-compatible send: create and send (or push) a campaign",
    )
    @idempotent
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        api_key = raw_api_key(request)
        if api_key is None:  # the authentication classes take keys only
            raise ApplicationError("An API key is required.", code="UNAUTHENTICATED", status=401)
        body = json_body(request)
        name = moengage.check_signed(body, project=project, api_key=api_key)
        checked = moengage.translate(body, project=project, name=name)
        result = moengage.moengage_push(project=project, request=checked)
        return Response(
            {
                "status": "success",
                "campaign_id": str(result.campaign.pk),
                "campaign_status": result.campaign.status,
                "created": result.created,
                "run": result.run,
                "targeted": result.targeted,
                "invalid_user_ids": result.invalid_user_ids,
            }
        )
