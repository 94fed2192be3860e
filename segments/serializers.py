"""Output shapes of the audience API (and documented input shapes for the schema).

Input is cleaned by the `clean_*` functions in segments.services, which name a
specific error code per field; the *Write serializers only document it.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.schema import NOT_BLANK, DocumentedJSONField
from delivery.models import Platform, Provider, PushToken
from segments import events, services
from segments.models import AppUser, Segment
from segments.rules import rules_error


class RulesErrorSerializer(serializers.Serializer[object]):
    path = serializers.CharField(help_text='The offending node, e.g. "rules.all[2].op".')
    reason = serializers.CharField()


# services.clean_external_id as a pattern: not blank, no control characters; in a
# URL path, no "/" either (it would end the path segment).
EXTERNAL_ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
EXTERNAL_ID_PATH_PATTERN = r"^[^\x00-\x1f\x7f/]*[^\s\x00-\x1f\x7f/][^\x00-\x1f\x7f/]*$"
# Either provider's alphabet (APNs: 64-200 hex digits; FCM: 100-512 of A-Z a-z 0-9 _ - :).
TOKEN_PATTERN = rf"^[A-Za-z0-9_:-]{{64,{services.FCM_TOKEN_MAX}}}$"
RULES_SCHEMA = {
    "type": "object",
    "additionalProperties": {},
    "description": (
        '{"all"|"any": [...]}, {"not": {...}} or {"attr", "op", "value"}; {} = everyone '
        "(docs/api.md, Segments)."
    ),
}
ATTRIBUTES_SCHEMA = {"type": "object", "additionalProperties": {}}


class SegmentSerializer(serializers.ModelSerializer[Segment]):
    project_id = serializers.UUIDField(read_only=True)
    rules_error = serializers.SerializerMethodField(
        help_text="null, or why the stored rules no longer validate (previews and sends "
        "answer 409 INVALID_SEGMENT_RULES until they are fixed)."
    )
    rules = DocumentedJSONField(RULES_SCHEMA, read_only=True)

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

    name = serializers.RegexField(NOT_BLANK, min_length=1, max_length=services.MAX_SEGMENT_NAME)
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_SEGMENT_DESCRIPTION
    )
    rules = DocumentedJSONField(RULES_SCHEMA)


class RulesPreviewRequestSerializer(serializers.Serializer[object]):
    rules = DocumentedJSONField(RULES_SCHEMA)


class SampleUserSerializer(serializers.ModelSerializer[AppUser]):
    attributes = DocumentedJSONField(ATTRIBUTES_SCHEMA, read_only=True)

    class Meta:
        model = AppUser
        fields = ("id", "external_id", "attributes")
        read_only_fields = fields


class PreviewSerializer(serializers.Serializer[object]):
    count = serializers.IntegerField()
    sample = SampleUserSerializer(many=True)


class AppUserSerializer(serializers.ModelSerializer[AppUser]):
    project_id = serializers.UUIDField(read_only=True)
    attributes = DocumentedJSONField(ATTRIBUTES_SCHEMA, read_only=True)

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
    """A token as the API shows it. A web push subscription shows its endpoint (as
    `token`) and its public p256dh key, never its `auth` secret."""

    app_user_id = serializers.UUIDField(read_only=True, allow_null=True)
    external_id = serializers.CharField(
        source="app_user.external_id", read_only=True, allow_null=True, default=None
    )
    p256dh = serializers.SerializerMethodField(
        help_text="Web push: the subscription's public key (base64url); null otherwise."
    )

    def get_p256dh(self, obj: PushToken) -> str | None:
        keys = obj.keys if isinstance(obj.keys, dict) else {}
        value = keys.get("p256dh")
        return str(value) if value is not None else None

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
            "p256dh",
            "created_at",
            "last_registered_at",
            "invalidated_at",
            "invalid_reason",
        )
        read_only_fields = fields


class SubscriptionKeysSerializer(serializers.Serializer[object]):
    p256dh = serializers.RegexField(
        r"^[A-Za-z0-9_-]{87}=?$",
        help_text="base64url of a 65-byte uncompressed P-256 point on the curve.",
    )
    auth = serializers.RegexField(
        r"^[A-Za-z0-9_-]{22}(==)?$", help_text="base64url of 16 random bytes (a secret)."
    )


class SubscriptionSerializer(serializers.Serializer[object]):
    """A browser's PushSubscription.toJSON()."""

    endpoint = serializers.URLField(
        max_length=services.WEBPUSH_ENDPOINT_MAX,
        help_text="The push service's https URL (no credentials); the subscription's id.",
    )
    keys = SubscriptionKeysSerializer()
    expirationTime = serializers.FloatField(
        required=False, allow_null=True, help_text="Accepted and ignored."
    )


class TokenUnregisterSerializer(serializers.Serializer[object]):
    token = serializers.CharField(
        min_length=1,
        max_length=services.WEBPUSH_ENDPOINT_MAX,
        help_text="The token as registered: for web push, the subscription's endpoint.",
    )
    provider = serializers.ChoiceField(
        choices=Provider.choices,
        required=False,
        help_text="Only this provider's token, when the same string exists for two.",
    )


class TokenWriteSerializer(serializers.Serializer[object]):
    token = serializers.RegexField(
        TOKEN_PATTERN,
        min_length=64,
        max_length=services.FCM_TOKEN_MAX,
        required=False,
        help_text=(
            "APNs: 64-200 hexadecimal characters (stored lower-case); FCM: "
            f"{services.FCM_TOKEN_MIN}-{services.FCM_TOKEN_MAX} of A-Z a-z 0-9 _ - :. "
            "Required for apns and fcm; not given for webpush."
        ),
    )
    subscription = SubscriptionSerializer(
        required=False,
        help_text="webpush only (required there): the browser's PushSubscription.toJSON().",
    )
    provider = serializers.ChoiceField(choices=Provider.choices)
    platform = serializers.ChoiceField(
        choices=Platform.choices,
        required=False,
        help_text="apns: ios only; fcm: android, ios or web; webpush: web (the default "
        "there; required for apns and fcm).",
    )
    external_id = serializers.RegexField(
        EXTERNAL_ID_PATTERN,
        min_length=1,
        max_length=services.MAX_EXTERNAL_ID,
        required=False,
        allow_null=True,
        help_text="Owner; omit to keep the current owner, null to detach.",
    )
    locale = serializers.RegexField(
        r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8})*$",
        max_length=35,
        required=False,
        allow_null=True,
        help_text="A language tag such as 'fr-FR'; null: not given.",
    )
    timezone = serializers.CharField(
        min_length=1,
        max_length=64,
        required=False,
        allow_null=True,
        help_text="An IANA time zone such as 'Europe/Paris'; null: not given.",
    )
    app_version = serializers.CharField(
        max_length=services.MAX_APP_VERSION, required=False, allow_null=True, allow_blank=True
    )


# ------------------------------------------------------------------------ events
# Documentation of the events API (segments/events.py cleans the input itself: a bad
# event is refused on its own inside a 200, not with a 400 for the batch).


PROPERTIES_SCHEMA = {
    "type": "object",
    "maxProperties": events.MAX_PROPERTIES,
    "additionalProperties": {
        "oneOf": [
            {"type": "string", "maxLength": events.MAX_PROPERTY_STRING},
            {"type": "number"},
            {"type": "boolean"},
        ],
        "nullable": True,
    },
}


class EventInSerializer(serializers.Serializer[object]):
    event_id = serializers.RegexField(
        EXTERNAL_ID_PATTERN,
        min_length=1,
        max_length=events.MAX_EVENT_ID,
        help_text="Unique per project: a repeat is a duplicate, counted once and not stored.",
    )
    external_id = serializers.RegexField(
        EXTERNAL_ID_PATTERN,
        min_length=1,
        max_length=services.MAX_EXTERNAL_ID,
        required=False,
        allow_null=True,
        help_text="The user (or user_id; at most one). Optional with a delivery_id.",
    )
    user_id = serializers.UUIDField(required=False, allow_null=True, help_text="An app user id.")
    name = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,64}$",
        max_length=events.MAX_NAME,
        help_text="push_opened and push_clicked are reserved (they need delivery_id; "
        "push_clicked needs action_id).",
    )
    properties = DocumentedJSONField(
        PROPERTIES_SCHEMA,
        required=False,
        allow_null=True,
        help_text="Flat: string, number, boolean or null values under names like "
        f"attribute names; at most {events.MAX_PROPERTIES} keys and "
        f"{events.MAX_PROPERTIES_BYTES} bytes of JSON.",
    )
    occurred_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="With a UTC offset; default: when received. At most 5 minutes ahead, "
        "30 days old, and not before the push (delivery_id) was sent.",
    )
    delivery_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=events.MAX_DELIVERY_ID,
        help_text="herald_delivery_id from the push payload: a push this user received.",
    )
    action_id = serializers.RegexField(
        EXTERNAL_ID_PATTERN,
        required=False,
        allow_null=True,
        min_length=1,
        max_length=events.MAX_ACTION_ID,
        help_text="push_clicked only: the button's id.",
    )


class EventsRequestSerializer(serializers.Serializer[object]):
    events = serializers.ListField(
        child=EventInSerializer(), min_length=1, max_length=events.MAX_BATCH
    )


class EventRejectionSerializer(serializers.Serializer[object]):
    index = serializers.IntegerField(help_text="Position of the event in the batch, from 0.")
    event_id = serializers.CharField(
        allow_null=True, help_text="The event's event_id; null when it had no usable one."
    )
    code = serializers.RegexField(r"^[A-Z][A-Z0-9_]*$")
    message = serializers.CharField()


class EventsResultSerializer(serializers.Serializer[object]):
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(
        help_text="Valid events whose event_id was already stored (or repeated in the batch)."
    )
    rejected = EventRejectionSerializer(many=True)
