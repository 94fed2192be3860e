"""Output shapes of the audience API (and documented input shapes for the schema).

Input is cleaned by the `clean_*` functions in segments.services, which name a
specific error code per field; the *Write serializers only document it.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from delivery.models import Platform, Provider, PushToken
from segments.models import AppUser, Segment
from segments.rules import rules_error


class RulesErrorSerializer(serializers.Serializer[object]):
    path = serializers.CharField(help_text='The offending node, e.g. "rules.all[2].op".')
    reason = serializers.CharField()


class SegmentSerializer(serializers.ModelSerializer[Segment]):
    project_id = serializers.UUIDField(read_only=True)
    rules_error = serializers.SerializerMethodField(
        help_text="null, or why the stored rules no longer validate (previews and sends "
        "answer 409 INVALID_SEGMENT_RULES until they are fixed)."
    )

    class Meta:
        model = Segment
        fields = (
            "id",
            "project_id",
            "name",
            "description",
            "rules",
            "member_count",
            "evaluated_at",
            "rules_error",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(RulesErrorSerializer(allow_null=True))
    def get_rules_error(self, segment: Segment) -> dict[str, str] | None:
        return rules_error(segment.rules)


class SegmentPageSerializer(serializers.Serializer[object]):
    results = SegmentSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class SegmentWriteSerializer(serializers.Serializer[object]):
    """Documentation of the create/PATCH body; rules use the grammar in segments.rules."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    rules = serializers.JSONField(
        help_text='{"all"|"any": [...]}, {"not": {...}} or {"attr", "op", "value"}; {} = everyone'
    )


class RulesPreviewRequestSerializer(serializers.Serializer[object]):
    rules = serializers.JSONField()


class SampleUserSerializer(serializers.ModelSerializer[AppUser]):
    class Meta:
        model = AppUser
        fields = ("id", "external_id", "attributes")
        read_only_fields = fields


class PreviewSerializer(serializers.Serializer[object]):
    count = serializers.IntegerField()
    sample = SampleUserSerializer(many=True)


class AppUserSerializer(serializers.ModelSerializer[AppUser]):
    project_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = AppUser
        fields = ("id", "project_id", "external_id", "attributes", "created_at", "last_seen_at")
        read_only_fields = fields


class AppUserWriteSerializer(serializers.Serializer[object]):
    attributes = serializers.DictField(
        required=False,
        help_text="Merged into the user's attributes; null removes a key.",
    )


class TokenSerializer(serializers.ModelSerializer[PushToken]):
    app_user_id = serializers.UUIDField(read_only=True, allow_null=True)
    external_id = serializers.CharField(
        source="app_user.external_id", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = PushToken
        fields = (
            "id",
            "token",
            "provider",
            "platform",
            "active",
            "app_user_id",
            "external_id",
            "locale",
            "timezone",
            "app_version",
            "created_at",
            "last_registered_at",
            "invalidated_at",
            "invalid_reason",
        )
        read_only_fields = fields


class TokenWriteSerializer(serializers.Serializer[object]):
    token = serializers.CharField()
    provider = serializers.ChoiceField(choices=Provider.choices)
    platform = serializers.ChoiceField(choices=Platform.choices)
    external_id = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Owner; omit to keep the current owner, null to detach.",
    )
    locale = serializers.CharField(required=False)
    timezone = serializers.CharField(required=False)
    app_version = serializers.CharField(required=False)
