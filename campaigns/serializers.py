"""Output shapes (and the documented input shape for the OpenAPI schema).

Input is validated by campaigns.validation, which names a specific error code per
field; `CampaignWriteSerializer` only documents that input for drf-spectacular.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from campaigns import validation as v
from campaigns.models import LOCAL_TIME_MISSED_CHOICES, CampaignRun, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.services import MAX_EXPLICIT_DEVICES
from campaigns.validation import INPUT_ONLY_FIELDS, WRITABLE_FIELDS
from core.schema import NOT_BLANK, DocumentedJSONField
from delivery.models import Platform, Provider, PushDelivery
from segments.serializers import EXTERNAL_ID_PATTERN, SubscriptionSerializer
from segments.services import MAX_EXTERNAL_ID

# What campaigns.validation accepts, as JSON Schema patterns (searched, so anchored).
HTTP_URL_OR_EMPTY = r"^(?:[Hh][Tt][Tt][Pp][Ss]?:[\s\S]+)?$"
URL_OR_EMPTY = r"^(?:[A-Za-z][A-Za-z0-9+.-]*:[\s\S]+)?$"
HH_MM = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
QUIET_HOURS_ACTIONS = [("defer", "defer"), ("skip", "skip")]


def _text(max_length: int, **kwargs: Any) -> serializers.RegexField:
    """A string the validators refuse when blank (MISSING_TITLE, VALIDATION_ERROR ...)."""
    return serializers.RegexField(NOT_BLANK, min_length=1, max_length=max_length, **kwargs)


class LocalizationSerializer(serializers.Serializer[object]):
    """One language's texts, image and button titles; each falls back on its own (to
    the base language's, then the campaign's) when absent."""

    title = serializers.CharField(required=False, max_length=v.MAX_TITLE)
    body = serializers.CharField(required=False, max_length=v.MAX_BODY)
    image_url = serializers.RegexField(
        HTTP_URL_OR_EMPTY, required=False, allow_blank=True, max_length=v.MAX_URL
    )
    actions = serializers.DictField(
        child=_text(v.MAX_ACTION_TITLE),
        required=False,
        help_text=f"Button titles by action id (at most {v.MAX_ACTIONS}); each id must be one "
        "of the campaign's actions.",
    )


class ActionSerializer(serializers.Serializer[object]):
    id = _text(v.MAX_ACTION_ID)
    title = _text(v.MAX_ACTION_TITLE)
    url = serializers.RegexField(
        URL_OR_EMPTY, required=False, allow_null=True, allow_blank=True, max_length=v.MAX_URL
    )
    icon = serializers.RegexField(
        HTTP_URL_OR_EMPTY,
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=v.MAX_URL,
        help_text="An http(s) image URL: the web button's icon; apps read it from `actions`.",
    )


class QuietHoursSerializer(serializers.Serializer[object]):
    start = serializers.RegexField(HH_MM, help_text="HH:MM, in the user's time zone.")
    end = serializers.RegexField(HH_MM, help_text="HH:MM; must differ from start.")
    action = serializers.ChoiceField(
        choices=QUIET_HOURS_ACTIONS, required=False, help_text="Default defer."
    )


class GoalSerializer(serializers.Serializer[object]):
    """A conversion goal (docs/api.md, "Conversion goals")."""

    name = _text(v.MAX_GOAL_NAME)
    event = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$", help_text="The event name.")
    filter = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="A segment rule tree over the event's properties; null: any event.",
    )
    window_hours = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=v.MAX_GOAL_WINDOW_HOURS,
        help_text=f"Attribution window after the push was sent. Default "
        f"{v.DEFAULT_GOAL_WINDOW_HOURS}.",
    )
    primary = serializers.BooleanField(
        required=False, help_text="Exactly one goal is primary; a lone goal is by default."
    )


GOALS_HELP = (
    f"At most {v.MAX_GOALS} conversion goals, exactly one primary; counted per user once "
    "per goal per run (docs/api.md)."
)
LOCALIZATIONS_HELP = (
    "Keyed by language tag ('fr', 'pt-BR'); each entry has title, body, image_url and/or "
    'actions (button titles by action id, {"buy": "Acheter"}).'
)
IMAGE_URL_HELP = 'An http(s) URL, or "" for no image (what a campaign without one answers).'
ICON_HELP = (
    'An http(s) URL, or "": the web notification icon (web push and FCM web). Not '
    "Android's icon, which is a drawable resource in the app."
)
WEB_BADGE_HELP = (
    'An http(s) URL, or "": the monochrome image web browsers show for the '
    "notification in the status bar (web push and FCM web; `badge` is the iOS count)."
)
TAG_HELP = (
    "The web and Android notification tag: a newer notification with the same tag "
    "replaces the shown one. Empty: collapse_key (Android: collapse_key, else the "
    "campaign id)."
)
VIBRATE_HELP = (
    f"Vibration pattern in milliseconds (vibrate, pause, ...), at most {v.MAX_VIBRATE} items "
    f"of 0..{v.MAX_VIBRATE_MS}: web vibrate, Android vibrate_timings."
)
REQUIRE_INTERACTION_HELP = "Web: the notification stays until the user acts on it."
RENOTIFY_HELP = (
    "Web: alert again when this notification replaces one with the same tag; needs "
    "tag or collapse_key."
)
URL_HELP = 'An absolute URL or app deep link, or "" for none.'
TARGETING_HELP = (
    'Include/exclude lists {"include": [...], "exclude": [...]} under countries, languages, '
    "platforms, app_versions, segments, users; user_data {include: {...}, exclude: {...}}; "
    "subscribed_age {from, to} in days. Also accepted (stored and answered in the form "
    'above): the Ocamba form {"items": [...], "op": "include" | "exclude"} per list key, '
    'and user_data {"<attribute>": {"items": [...], "op": ...}} (docs/api.md).'
)
SILENT_HELP = (
    "A data-only (background) push: no alert, sound or badge; APNs content-available "
    "with apns-push-type background and priority 5, FCM data-only. Cannot have sound, "
    "badge, image_url, icon, web_badge, actions, vibrate, require_interaction, renotify, "
    "tag, nor localized image_url or actions. A new silent campaign's priority defaults "
    "to normal."
)
TEXT_HELP = 'May hold placeholders such as {{ first_name | default: "there" }} (docs/api.md).'
RECURRENCE_HELP = (
    'One of {"cron", "timezone"?}, {"every_seconds"} (>= 10) or {"every_days", "at"?, '
    '"timezone"?} (docs/scheduling.md); null: one-shot.'
)


class CampaignSerializer(serializers.ModelSerializer[PushCampaign]):
    project_id = serializers.UUIDField(read_only=True)
    segment_id = serializers.UUIDField(read_only=True, allow_null=True)
    stats = serializers.SerializerMethodField()
    # JSON and URL columns, answered as stored and documented by their shape.
    localizations = DocumentedJSONField(
        serializers.DictField(child=LocalizationSerializer()),
        read_only=True,
        help_text=LOCALIZATIONS_HELP,
    )
    image_url = serializers.CharField(read_only=True, help_text=IMAGE_URL_HELP)
    icon = serializers.CharField(read_only=True, help_text=ICON_HELP)
    web_badge = serializers.CharField(read_only=True, help_text=WEB_BADGE_HELP)
    url = serializers.CharField(read_only=True, help_text=URL_HELP)
    actions = DocumentedJSONField(ActionSerializer(many=True), read_only=True)
    vibrate = DocumentedJSONField(
        {"type": "array", "items": {"type": "integer"}}, read_only=True, help_text=VIBRATE_HELP
    )
    require_interaction = serializers.BooleanField(
        read_only=True, help_text=REQUIRE_INTERACTION_HELP
    )
    renotify = serializers.BooleanField(read_only=True, help_text=RENOTIFY_HELP)
    tag = serializers.CharField(read_only=True, help_text=TAG_HELP)
    platforms = DocumentedJSONField(
        serializers.ListField(child=serializers.ChoiceField(choices=Platform.choices)),
        read_only=True,
        help_text="Empty: every platform.",
    )
    targeting = DocumentedJSONField(
        {"type": "object", "additionalProperties": {}}, read_only=True, help_text=TARGETING_HELP
    )
    tags = DocumentedJSONField({"type": "array", "items": {"type": "string"}}, read_only=True)
    goals = DocumentedJSONField(GoalSerializer(many=True), read_only=True, help_text=GOALS_HELP)
    recurrence = DocumentedJSONField(
        {"type": "object", "additionalProperties": {}},
        read_only=True,
        allow_null=True,
        help_text=RECURRENCE_HELP,
    )
    quiet_hours = DocumentedJSONField(QuietHoursSerializer(), read_only=True, allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here: a class attribute named "data" would shadow Serializer.data.
        fields["data"] = DocumentedJSONField(
            {"type": "object", "additionalProperties": {}}, read_only=True
        )
        return fields

    def get_stats(self, campaign: PushCampaign) -> dict[str, int]:
        return campaign_stats(campaign)

    class Meta:
        model = PushCampaign
        # Every writable field plus the bookkeeping ones, in the validator's order
        # (segment_name is answered as the segment_id it names).
        fields = (
            "id",
            "project_id",
            "status",
            "stats",
            *(f for f in WRITABLE_FIELDS if f not in INPUT_ONLY_FIELDS),
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
        "localizations": serializers.DictField(
            child=LocalizationSerializer(), required=False, help_text=LOCALIZATIONS_HELP
        ),
        "image_url": serializers.RegexField(
            HTTP_URL_OR_EMPTY,
            required=False,
            allow_blank=True,
            max_length=v.MAX_URL,
            help_text=IMAGE_URL_HELP,
        ),
        "icon": serializers.RegexField(
            HTTP_URL_OR_EMPTY,
            required=False,
            allow_blank=True,
            max_length=v.MAX_URL,
            help_text=ICON_HELP,
        ),
        "web_badge": serializers.RegexField(
            HTTP_URL_OR_EMPTY,
            required=False,
            allow_blank=True,
            max_length=v.MAX_URL,
            help_text=WEB_BADGE_HELP,
        ),
        "url": serializers.RegexField(
            URL_OR_EMPTY, required=False, allow_blank=True, max_length=v.MAX_URL, help_text=URL_HELP
        ),
        "actions": serializers.ListField(
            child=ActionSerializer(), required=False, max_length=v.MAX_ACTIONS
        ),
        "sound": serializers.CharField(required=False, allow_blank=True, max_length=200),
        "badge": serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=99999
        ),
        "vibrate": serializers.ListField(
            child=serializers.IntegerField(min_value=0, max_value=v.MAX_VIBRATE_MS),
            required=False,
            max_length=v.MAX_VIBRATE,
            help_text=VIBRATE_HELP,
        ),
        "require_interaction": serializers.BooleanField(
            required=False, help_text=REQUIRE_INTERACTION_HELP
        ),
        "renotify": serializers.BooleanField(required=False, help_text=RENOTIFY_HELP),
        "tag": serializers.CharField(
            required=False, allow_blank=True, max_length=v.MAX_TAG, help_text=TAG_HELP
        ),
        "collapse_key": serializers.CharField(
            required=False, allow_blank=True, max_length=64, help_text="Default: the campaign id."
        ),
        "priority": serializers.ChoiceField(choices=PushCampaign.Priority.choices, required=False),
        "ttl_seconds": serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=v.MAX_TTL_SECONDS
        ),
        "silent": serializers.BooleanField(required=False, help_text=SILENT_HELP),
    }


# Documentation of the create/PATCH body for the OpenAPI schema; input is validated
# by campaigns.validation. A dict, because a declared field named "data" would
# shadow Serializer.data on a class.
CampaignWriteSerializer = inline_serializer(
    name="CampaignWrite",
    fields={
        "title": _text(v.MAX_TITLE, help_text=TEXT_HELP),
        "body": _text(v.MAX_BODY, help_text=TEXT_HELP),
        "name": _text(v.MAX_NAME, required=False, help_text="Default: the title."),
        "data": serializers.DictField(required=False, help_text="The key 'aps' is reserved."),
        "segment_id": serializers.UUIDField(required=False, allow_null=True),
        "segment_name": _text(
            v.MAX_NAME,
            required=False,
            help_text=(
                "Instead of segment_id: the segment of this project with exactly this name "
                "(INVALID_SEGMENT_ID when none, AMBIGUOUS_SEGMENT_NAME when several)."
            ),
        ),
        "scheduled_at": serializers.DateTimeField(required=False, allow_null=True),
        **_content_fields(),
        "platforms": serializers.ListField(
            child=serializers.ChoiceField(choices=Platform.choices), required=False
        ),
        "targeting": serializers.DictField(required=False, help_text=TARGETING_HELP),
        "tags": serializers.ListField(child=_text(64), required=False, max_length=v.MAX_TAGS),
        "goals": serializers.ListField(
            child=GoalSerializer(), required=False, max_length=v.MAX_GOALS, help_text=GOALS_HELP
        ),
        "recurrence": serializers.DictField(
            required=False, allow_null=True, help_text=RECURRENCE_HELP
        ),
        "end_at": serializers.DateTimeField(required=False, allow_null=True),
        "quiet_hours": QuietHoursSerializer(required=False, allow_null=True),
        "deliver_in_user_timezone": serializers.BooleanField(required=False),
        "local_time_missed": serializers.ChoiceField(
            choices=LOCAL_TIME_MISSED_CHOICES, required=False
        ),
        "throttle_per_minute": serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=1_000_000
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
    silent = serializers.BooleanField(
        read_only=True, help_text="The run's pushes were silent (data-only)."
    )

    class Meta:
        model = CampaignRun
        fields = (
            "number",
            "trigger",
            "status",
            "silent",
            "stats",
            "error",
            "started_at",
            "completed_at",
        )
        read_only_fields = fields


class RunPageSerializer(serializers.Serializer[object]):
    results = RunSerializer(many=True)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": v.MAX_DEVICE_ID, "pattern": NOT_BLANK},
            {"type": "integer", "minimum": 1},
        ]
    }
)
class DeviceIdField(serializers.Field[Any, Any, Any, Any]):
    """A token string or a token row id (documentation only)."""


# The test push and explicit push bodies hold a "data" key, so they are dicts too.
TestPushRequestSerializer = inline_serializer(
    name="TestPushRequest",
    fields={
        "title": _text(v.MAX_TITLE),
        "body": _text(v.MAX_BODY),
        "app_user_id": serializers.UUIDField(
            required=False, help_text="Send to this user's most recent active token."
        ),
        "device_token": _text(
            v.MAX_DEVICE_ID,
            required=False,
            help_text="Or to this token (needs provider); for webpush, the endpoint of a "
            "subscription registered before.",
        ),
        "provider": serializers.ChoiceField(choices=Provider.choices, required=False),
        "platform": serializers.ChoiceField(
            choices=Platform.choices,
            required=False,
            help_text="Default: ios for apns, android for fcm, web for webpush.",
        ),
        "subscription": SubscriptionSerializer(
            required=False,
            help_text="Or to this browser (web push): its PushSubscription.toJSON(), "
            "registered as the registration API would.",
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
            child=DeviceIdField(),
            required=False,
            max_length=MAX_EXPLICIT_DEVICES,
            help_text="Token row ids (integers) or token strings.",
        ),
        "user_ids": serializers.ListField(
            child=serializers.RegexField(
                EXTERNAL_ID_PATTERN, min_length=1, max_length=MAX_EXTERNAL_ID
            ),
            required=False,
            max_length=MAX_EXPLICIT_DEVICES,
            help_text=(
                "External ids (as registered): all their active tokens. At most "
                f"{MAX_EXPLICIT_DEVICES} entries in both lists together (else 413)."
            ),
        ),
        "data": serializers.DictField(
            required=False, help_text="Replaces the campaign's data for this run."
        ),
        "title": _text(
            v.MAX_TITLE,
            required=False,
            help_text="Replaces the campaign's title (and its localized titles) for this run.",
        ),
        "body": _text(
            v.MAX_BODY,
            required=False,
            help_text="Replaces the campaign's body (and its localized bodies) for this run.",
        ),
        "silent": serializers.BooleanField(
            required=False, help_text="Replaces the campaign's silent flag for this run."
        ),
    },
)


class ExplicitPushResultSerializer(serializers.Serializer[object]):
    invalid_device_ids = serializers.ListField(child=serializers.CharField())
    run = serializers.IntegerField(
        allow_null=True, help_text="The new run's number; null when nothing was reachable."
    )
    targeted = serializers.IntegerField()


class CampaignPreviewRequestSerializer(serializers.Serializer[object]):
    """The sample user: a registered one (external_id) or made-up attributes, or neither."""

    external_id = serializers.RegexField(
        EXTERNAL_ID_PATTERN, min_length=1, max_length=MAX_EXTERNAL_ID, required=False
    )
    attributes = serializers.DictField(
        required=False, help_text="As on registration (flat; not with external_id)."
    )
    language = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=v.MAX_LANGUAGE_TAG,
        help_text="Default: the user's language attribute.",
    )


class CampaignPreviewSerializer(serializers.Serializer[object]):
    """The notification one user gets, its payloads and their sizes as sent."""

    language = serializers.CharField()
    silent = serializers.BooleanField()
    placeholders = serializers.ListField(
        child=serializers.CharField(), help_text="Value names the texts' placeholders use."
    )
    title = serializers.CharField(help_text="After localization and placeholders.")
    body = serializers.CharField()
    image_url = serializers.CharField(help_text="After localization.")
    url = serializers.CharField()
    actions = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text="{id, title, icon?}, titles after localization.",
    )
    sizes = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Bytes as sent (with the longest delivery id): apns, fcm_android, fcm_ios, "
        "fcm_web, and webpush (the JSON before encryption) unless the campaign's platforms "
        "leave web out.",
    )
    limits = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Each size's limit: 4096, webpush 3993 (4096 once encrypted).",
    )
    largest = serializers.IntegerField(help_text="The largest APNs or FCM size.")
    limit = serializers.IntegerField(help_text="APNs' and FCM's limit, 4096.")
    too_large = serializers.ListField(
        child=serializers.DictField(), help_text="{provider, language, size, limit}"
    )
    payloads = serializers.DictField(
        help_text="apns {headers, payload}; fcm_android, fcm_ios, fcm_web: the FCM message; "
        "webpush {headers, payload}: what the service worker receives."
    )


class AudienceSerializer(serializers.Serializer[object]):
    """Active tokens a campaign would reach now; every provider and platform is a key."""

    total = serializers.IntegerField()
    by_provider = serializers.DictField(child=serializers.IntegerField())
    by_platform = serializers.DictField(child=serializers.IntegerField())


# --- analytics (campaigns/analytics.py computes it; these document its shape) ------


class AnalyticsTotalsSerializer(serializers.Serializer[object]):
    targeted = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    invalid_tokens = serializers.IntegerField()
    opened = serializers.IntegerField(help_text="Deliveries opened (a click counts as an open).")
    clicked = serializers.IntegerField(help_text="Deliveries clicked (any action).")
    converted = serializers.IntegerField(help_text="Users converted for the primary goal.")


class AnalyticsRatesSerializer(serializers.Serializer[object]):
    open_rate = serializers.FloatField(allow_null=True, help_text="Per sent; null when silent.")
    click_rate = serializers.FloatField()
    conversion_rate = serializers.FloatField()


class AnalyticsGoalSerializer(serializers.Serializer[object]):
    index = serializers.IntegerField()
    name = serializers.CharField()
    event = serializers.CharField()
    primary = serializers.BooleanField()
    window_hours = serializers.IntegerField()
    converted = serializers.IntegerField()
    rate = serializers.FloatField()


class AnalyticsBreakdownSerializer(serializers.Serializer[object]):
    sent = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    converted = serializers.IntegerField()


class AnalyticsPointSerializer(AnalyticsBreakdownSerializer):
    t = serializers.DateTimeField(help_text="Start of the minute (or hour) bucket, UTC.")


class AnalyticsSeriesSerializer(serializers.Serializer[object]):
    resolution = serializers.ChoiceField(
        choices=[("minute", "minute"), ("hour", "hour")],
        help_text="minute: per minute before minute_until, per hour from it; hour: all hourly.",
    )
    minute_until = serializers.DateTimeField(allow_null=True)
    points = AnalyticsPointSerializer(many=True)


def _breakdown(choices: list[str]) -> Any:
    return inline_serializer(
        name=f"AnalyticsBy{'Provider' if 'apns' in choices else 'Platform'}",
        fields={choice: AnalyticsBreakdownSerializer() for choice in choices},
    )


class AnalyticsSerializer(serializers.Serializer[object]):
    campaign_id = serializers.UUIDField()
    run = serializers.IntegerField(allow_null=True, help_text="null: all runs (sums).")
    silent = serializers.BooleanField()
    totals = AnalyticsTotalsSerializer()
    rates = AnalyticsRatesSerializer()
    clicks_by_action = serializers.DictField(child=serializers.IntegerField())
    goals = AnalyticsGoalSerializer(many=True)
    by_provider = _breakdown(Provider.values)
    by_platform = _breakdown(Platform.values)
    series = AnalyticsSeriesSerializer()
