"""Output shapes (and the documented input shape for the OpenAPI schema).

Input is validated by campaigns.validation, which names a specific error code per
field; `CampaignWriteSerializer` only documents that input for drf-spectacular.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from campaigns.models import (
    LOCAL_TIME_MISSED_CHOICES,
    CampaignRun,
    CampaignStatus,
    PushCampaign,
    empty_stats,
)
from campaigns.validation import WRITABLE_FIELDS
from delivery.models import Platform, Provider, PushDelivery


class CampaignSerializer(serializers.ModelSerializer[PushCampaign]):
    project_id = serializers.UUIDField(read_only=True)
    segment_id = serializers.UUIDField(read_only=True, allow_null=True)
    stats = serializers.SerializerMethodField()

    def get_stats(self, campaign: PushCampaign) -> dict[str, int]:
        """Live counters of the current run while sending; the exact snapshot after."""
        if campaign.status == CampaignStatus.SENDING and campaign.current_run:
            run = CampaignRun.objects.filter(
                campaign_id=campaign.pk, number=campaign.current_run
            ).first()
            if run is not None:
                return run.stats
        return {**empty_stats(), **campaign.stats}  # runs before `unknown` lack it

    class Meta:
        model = PushCampaign
        # Every writable field plus the bookkeeping ones, in the validator's order.
        fields = (
            "id",
            "project_id",
            "status",
            "stats",
            *WRITABLE_FIELDS,
            "fire_at",
            "current_run",
            "last_error",
            "created_at",
            "updated_at",
            "sent_at",
            "completed_at",
        )
        read_only_fields = fields


class CampaignPageSerializer(serializers.Serializer[object]):
    results = CampaignSerializer(many=True)
    next = serializers.CharField(allow_null=True)


def _content_fields() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """The content options a campaign and a test push share (fresh fields each call)."""
    return {
        "localizations": serializers.DictField(child=serializers.DictField(), required=False),
        "image_url": serializers.URLField(required=False),
        "url": serializers.CharField(required=False),
        "actions": serializers.ListField(
            child=serializers.DictField(), required=False, max_length=3
        ),
        "sound": serializers.CharField(required=False),
        "badge": serializers.IntegerField(required=False, allow_null=True, min_value=0),
        "collapse_key": serializers.CharField(required=False, max_length=64),
        "priority": serializers.ChoiceField(choices=PushCampaign.Priority.choices, required=False),
        "ttl_seconds": serializers.IntegerField(required=False, allow_null=True, min_value=0),
    }


# Documentation of the create/PATCH body for the OpenAPI schema; input is validated
# by campaigns.validation. A dict, because a declared field named "data" would
# shadow Serializer.data on a class.
CampaignWriteSerializer = inline_serializer(
    name="CampaignWrite",
    fields={
        "title": serializers.CharField(max_length=500),
        "body": serializers.CharField(max_length=4000),
        "name": serializers.CharField(max_length=200, required=False),
        "data": serializers.DictField(required=False),
        "segment_id": serializers.UUIDField(required=False, allow_null=True),
        "scheduled_at": serializers.DateTimeField(required=False, allow_null=True),
        **_content_fields(),
        "platforms": serializers.ListField(
            child=serializers.ChoiceField(choices=Platform.choices), required=False
        ),
        "targeting": serializers.DictField(required=False),
        "tags": serializers.ListField(child=serializers.CharField(), required=False),
        "recurrence": serializers.DictField(required=False, allow_null=True),
        "end_at": serializers.DateTimeField(required=False, allow_null=True),
        "quiet_hours": serializers.DictField(required=False, allow_null=True),
        "deliver_in_user_timezone": serializers.BooleanField(required=False),
        "local_time_missed": serializers.ChoiceField(
            choices=LOCAL_TIME_MISSED_CHOICES, required=False
        ),
        "throttle_per_minute": serializers.IntegerField(
            required=False, allow_null=True, min_value=1
        ),
    },
)


class DeliverySerializer(serializers.ModelSerializer[PushDelivery]):
    token_id = serializers.IntegerField(read_only=True)
    token = serializers.CharField(source="token.token", read_only=True)
    platform = serializers.ChoiceField(
        choices=Platform.choices, source="token.platform", read_only=True
    )
    app_user_id = serializers.UUIDField(read_only=True, allow_null=True)
    external_id = serializers.CharField(
        source="app_user.external_id", read_only=True, allow_null=True, default=None
    )
    provider_message_id = serializers.CharField(source="provider_msg_id", read_only=True)

    class Meta:
        model = PushDelivery
        fields = (
            "id",
            "run",
            "token_id",
            "token",
            "provider",
            "platform",
            "app_user_id",
            "external_id",
            "status",
            "error_message",
            "provider_message_id",
            "attempts",
            "created_at",
            "sent_at",
        )
        read_only_fields = fields


class DeliveryPageSerializer(serializers.Serializer[object]):
    results = DeliverySerializer(many=True)
    next = serializers.CharField(allow_null=True)


class RunSerializer(serializers.ModelSerializer[CampaignRun]):
    class Meta:
        model = CampaignRun
        fields = ("number", "trigger", "status", "stats", "error", "started_at", "completed_at")
        read_only_fields = fields


class RunPageSerializer(serializers.Serializer[object]):
    results = RunSerializer(many=True)


# The test push and explicit push bodies hold a "data" key, so they are dicts too.
TestPushRequestSerializer = inline_serializer(
    name="TestPushRequest",
    fields={
        "title": serializers.CharField(max_length=500),
        "body": serializers.CharField(max_length=4000),
        "app_user_id": serializers.UUIDField(
            required=False, help_text="Send to this user's most recent active token."
        ),
        "device_token": serializers.CharField(
            required=False, max_length=512, help_text="Or to this token (needs provider)."
        ),
        "provider": serializers.ChoiceField(choices=Provider.choices, required=False),
        "platform": serializers.ChoiceField(
            choices=Platform.choices,
            required=False,
            help_text="Default: ios for apns, android for fcm.",
        ),
        "data": serializers.DictField(required=False),
        **_content_fields(),
    },
)


class TestPushResultSerializer(serializers.Serializer[object]):
    delivery_id = serializers.IntegerField()
    provider = serializers.ChoiceField(choices=Provider.choices)
    provider_message_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=PushDelivery.Status.choices)


ExplicitPushRequestSerializer = inline_serializer(
    name="ExplicitPushRequest",
    fields={
        "device_ids": serializers.ListField(
            child=serializers.CharField(max_length=512),
            required=False,
            help_text="Token row ids or token strings.",
        ),
        "user_ids": serializers.ListField(
            child=serializers.CharField(max_length=512),
            required=False,
            help_text="External ids: all their active tokens. At most 1000 entries in all.",
        ),
        "data": serializers.DictField(
            required=False, help_text="Replaces the campaign's data for this run."
        ),
    },
)


class ExplicitPushResultSerializer(serializers.Serializer[object]):
    invalid_device_ids = serializers.ListField(child=serializers.CharField())
    run = serializers.IntegerField(
        allow_null=True, help_text="The new run's number; null when nothing was reachable."
    )
    targeted = serializers.IntegerField()


class AudienceSerializer(serializers.Serializer[object]):
    """Active tokens a campaign would reach now; every provider and platform is a key."""

    total = serializers.IntegerField()
    by_provider = serializers.DictField(child=serializers.IntegerField())
    by_platform = serializers.DictField(child=serializers.IntegerField())
