"""Campaign input validation: raw JSON object -> clean field values, or one clear error.

Hand-written rather than a DRF serializer because the contract names a specific
error code per field (MISSING_TITLE, INVALID_SEGMENT_ID, ...) and must refuse wrong
types that DRF would coerce (a number as a title). Errors are raised in a fixed
field order so a request with several problems always gets the same answer.
The API layer, the admin form and the management commands call this; services
receive only clean values. `campaign_segment` and `check_campaign` are the checks that
need the project or the stored row (segment ownership, end_at against the stored
schedule, the payload size), for the service and the admin form to share.

Every collection has a documented limit (docs/api.md, "Limits") checked before its
items are looked at, and every check is linear in the input: a request never holds
a core for more than a moment (DESIGN.md). Bodies are at most 1 MiB, which would
otherwise allow ~37,000 localizations.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

from croniter import croniter
from django.utils import timezone

from campaigns.content import RunOverrides, check_payload_size
from campaigns.models import PushCampaign
from core.api import refuse_unknown_fields
from core.errors import InvalidInput
from core.models import Project
from delivery.payloads import MAX_PAYLOAD_BYTES, encode_json, normalize_language
from delivery.templating import TemplateSyntaxError, compile_text
from segments.models import Segment
from segments.rules import validate_property_rules
from segments.services import (
    MAX_ATTRIBUTE_STRING,
    MAX_ATTRIBUTES,
    MAX_LIST_ITEMS,
    clean_attributes,
    clean_external_id,
)

MAX_TITLE = 500
MAX_BODY = 4000
MAX_NAME = 200
MAX_URL = 2000
MAX_ACTIONS = 3
MAX_ACTION_ID = 64
MAX_ACTION_TITLE = 100
MAX_VIBRATE = 10  # pulses and pauses: browsers and Android take longer patterns, no one needs them
MAX_VIBRATE_MS = 10_000
MAX_TAGS = 20
MAX_TAG = 64
MAX_GOALS = 5
MAX_GOAL_NAME = 100
DEFAULT_GOAL_WINDOW_HOURS = 36
MAX_GOAL_WINDOW_HOURS = 720  # 30 days: events older than that are refused at ingestion
# An event name, as ingestion accepts it (contract: issue 11).
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
GOAL_KEYS = ("name", "event", "filter", "window_hours", "primary")
MAX_TTL_SECONDS = 28 * 24 * 3600  # FCM's and Apple's practical maximum
MIN_RECURRENCE_SECONDS = 10
MAX_DEVICE_ID = 512  # a token string (the token column's width) or a token row id
MAX_RUN_NUMBER = 2**31 - 1  # the run columns are PositiveIntegerField
# Languages are BCP 47 tags: there are a few hundred in use, never thousands.
MAX_LOCALIZATIONS = 300
# RFC 5646 section 4.4.1: 35 characters hold language-extlang-script-region-variant.
MAX_LANGUAGE_TAG = 35
# BCP 47 (RFC 5646) syntax, with "_" accepted for "-" as Android and Java write it:
# language, extlang, script, region, variants, extensions, private use. Grandfathered
# tags ("i-klingon") and private-use-only tags ("x-foo") are not languages a device
# reports.
LANGUAGE_RE = re.compile(
    r"[a-z]{2,3}"
    r"(?:[-_][a-z]{3}){0,3}"
    r"(?:[-_][a-z]{4})?"
    r"(?:[-_](?:[a-z]{2}|[0-9]{3}))?"
    r"(?:[-_](?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"
    r"(?:[-_][0-9a-wyz](?:[-_][a-z0-9]{2,8})+)*"
    r"(?:[-_]x(?:[-_][a-z0-9]{1,8})+)?",
    re.ASCII | re.IGNORECASE,
)
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
PLATFORMS = ("ios", "android", "web")
# targeting list -> most items per include/exclude list. Each item becomes a query
# parameter (a language three conditions, a segment its whole rule tree).
TARGETING_LISTS: dict[str, int] = {
    "countries": 300,
    "languages": MAX_LOCALIZATIONS,
    "platforms": len(PLATFORMS),
    "app_versions": 1000,
    "segments": 100,
    "users": 1000,
}
MAX_TARGETING_ITEM = 255  # characters per list item: the longest external id
MAX_USER_DATA_KEY = 64  # characters: the longest attribute name
MAX_AMBIGUOUS_SEGMENTS = 10  # segment ids an AMBIGUOUS_SEGMENT_NAME answer lists

# Writable fields in the order errors are reported.
WRITABLE_FIELDS = (
    "title",
    "body",
    "name",
    "data",
    "segment_id",
    "segment_name",
    "scheduled_at",
    "localizations",
    "image_url",
    "icon",
    "web_badge",
    "url",
    "actions",
    "sound",
    "badge",
    "vibrate",
    "require_interaction",
    "renotify",
    "tag",
    "collapse_key",
    "priority",
    "ttl_seconds",
    "platforms",
    "targeting",
    "tags",
    "goals",
    "recurrence",
    "end_at",
    "quiet_hours",
    "deliver_in_user_timezone",
    "local_time_missed",
    "throttle_per_minute",
    "silent",
)
# Accepted on input, answered as another field (segment_name -> segment_id).
INPUT_ONLY_FIELDS = ("segment_name",)
# What a silent (data-only) push cannot carry: each only changes a visible notification.
SILENT_EXCLUDES = (
    "sound",
    "badge",
    "image_url",
    "icon",
    "web_badge",
    "actions",
    "vibrate",
    "require_interaction",
    "renotify",
    "tag",
)
# What a localization may hold; image_url and actions are display-only, like above.
LOCALIZATION_KEYS = ("title", "body", "image_url", "actions")
READ_ONLY_FIELDS = (
    "id",
    "project_id",
    "status",
    "stats",
    "created_at",
    "updated_at",
    "sent_at",
    "completed_at",
    "current_run",
    "last_error",
    "fire_at",
)


def _invalid(field: str, message: str, code: str = "VALIDATION_ERROR") -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field})


def _string(field: str, value: Any, *, max_length: int, allow_blank: bool = True) -> str:
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be a string.")
    if len(value) > max_length:
        raise _invalid(field, f"{field} must be at most {max_length} characters.")
    if not allow_blank and not value.strip():
        raise _invalid(field, f"{field} must not be blank.")
    return value


def _integer(field: str, value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, f"{field} must be an integer.")
    if not minimum <= value <= maximum:
        raise _invalid(field, f"{field} must be between {minimum} and {maximum}.")
    return value


def parse_datetime_field(field: str, value: Any, *, code: str) -> datetime:
    """ISO-8601 with an explicit offset ("Z" or "+02:00"); naive times are ambiguous."""
    if not isinstance(value, str) or len(value) > 64:
        raise _invalid(field, f"{field} must be an ISO-8601 string.", code)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _invalid(field, f"{field} is not a valid ISO-8601 date-time.", code) from exc
    if parsed.tzinfo is None:
        raise _invalid(field, f"{field} must include a UTC offset, e.g. 'Z' or '+02:00'.", code)
    try:
        parsed.astimezone(zoneinfo.ZoneInfo("UTC"))
    except OverflowError as exc:  # e.g. 9999-12-31T23:59-23:59 is past year 9999 in UTC
        raise _invalid(field, f"{field} is out of range.", code) from exc
    # Kept in the offset it was written in: local-time delivery uses its wall clock.
    return parsed


def _text(field: str, value: Any, *, max_length: int) -> str:
    """Push text: a string whose placeholders (delivery/templating.py) are well formed."""
    text = _string(field, value, max_length=max_length)
    try:
        compile_text(text)
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"{field}: {exc.message}",
            code="INVALID_PLACEHOLDER",
            details={"field": field, "position": exc.position, "problem": exc.problem},
        ) from exc
    return text


def _title(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _invalid("title", "title is required.", "MISSING_TITLE")
    return _text("title", value, max_length=MAX_TITLE)


def _body(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _invalid("body", "body is required.", "MISSING_BODY")
    return _text("body", value, max_length=MAX_BODY)


def _name(value: Any) -> str:
    return _string("name", value, max_length=MAX_NAME, allow_blank=False)


def _data(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("data", "data must be a JSON object.", "INVALID_DATA")
    if "aps" in value:
        raise _invalid("data", "data must not contain the reserved key 'aps'.", "INVALID_DATA")
    try:
        size = len(encode_json(value))
    except ValueError as exc:  # NaN, Infinity or a lone surrogate (the admin's JSON parser)
        raise _invalid("data", "data must be plain JSON text.", "INVALID_DATA") from exc
    if size > MAX_PAYLOAD_BYTES:
        # No payload can carry it, and refusing it here keeps the per-language size
        # check from encoding a large blob once per localization.
        raise InvalidInput(
            f"data is {size} bytes of JSON; a payload is at most {MAX_PAYLOAD_BYTES} bytes. "
            "Shorten the data.",
            code="PAYLOAD_TOO_LARGE",
            details={"field": "data", "limit": MAX_PAYLOAD_BYTES, "size": size},
        )
    return value


def _segment_id(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid("segment_id", "segment_id must be a UUID or null.", "INVALID_SEGMENT_ID")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise _invalid(
            "segment_id", "segment_id must be a UUID or null.", "INVALID_SEGMENT_ID"
        ) from exc


def _segment_name(value: Any) -> str:
    """A segment named exactly so (case-sensitive), resolved by `campaign_segment`."""
    return _string("segment_name", value, max_length=MAX_NAME, allow_blank=False)


def _check_one_segment_reference(payload: Mapping[str, Any]) -> None:
    if "segment_id" in payload and "segment_name" in payload:
        raise _invalid("segment_name", "Give segment_id or segment_name, not both.")


def _scheduled_at(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime_field("scheduled_at", value, code="INVALID_SCHEDULED_AT")
    if parsed <= timezone.now():
        raise _invalid("scheduled_at", "scheduled_at is in the past.", "SCHEDULED_AT_IN_PAST")
    return parsed


def _localizations(value: Any) -> dict[str, dict[str, Any]]:
    """`{"fr": {"title", "body", "image_url", "actions": {id: title}}}`, each entry any
    non-empty subset. Whether the action ids are the campaign's is `check_content`'s
    (a PATCH may give the localizations alone)."""
    if not isinstance(value, dict):
        raise _invalid("localizations", "localizations must be an object keyed by language.")
    if len(value) > MAX_LOCALIZATIONS:
        raise _invalid(
            "localizations",
            f"At most {MAX_LOCALIZATIONS} localizations (one per language); got {len(value)}.",
        )
    clean: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}  # normalized tag -> the key that used it first
    for language, texts in value.items():
        where = f"localizations.{language}"
        if len(language) > MAX_LANGUAGE_TAG or not LANGUAGE_RE.fullmatch(language):
            raise _invalid(where, f"'{language}' is not a language code such as 'fr' or 'pt-BR'.")
        first = seen.setdefault(normalize_language(language), language)
        if first != language:
            raise _invalid(where, f"'{language}' is the same language as '{first}'.")
        if not isinstance(texts, dict) or not texts:
            raise _invalid(
                where, f"{where} must be an object with title, body, image_url and/or actions."
            )
        unknown = set(texts) - set(LOCALIZATION_KEYS)
        if unknown:
            raise _invalid(where, f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        entry: dict[str, Any] = {}
        if "title" in texts:
            entry["title"] = _text(f"{where}.title", texts["title"], max_length=MAX_TITLE)
        if "body" in texts:
            entry["body"] = _text(f"{where}.body", texts["body"], max_length=MAX_BODY)
        if "image_url" in texts:
            entry["image_url"] = _url_like(f"{where}.image_url", texts["image_url"], web_only=True)
        if "actions" in texts:
            entry["actions"] = _localized_actions(f"{where}.actions", texts["actions"])
        clean[language] = entry
    return clean


def _localized_actions(where: str, value: Any) -> dict[str, str]:
    """Button titles by action id (`{"buy": "Acheter"}`); at most one per button."""
    if not isinstance(value, dict):
        raise _invalid(where, f"{where} must be an object of button titles by action id.")
    if len(value) > MAX_ACTIONS:
        raise _invalid(where, f"{where} has more than {MAX_ACTIONS} button titles.")
    return {
        action_id: _string(
            f"{where}.{action_id}", title, max_length=MAX_ACTION_TITLE, allow_blank=False
        )
        for action_id, title in value.items()
    }


def _url_like(field: str, value: Any, *, web_only: bool) -> str:
    text = _string(field, value, max_length=MAX_URL)
    if not text:
        return text
    scheme, sep, rest = text.partition(":")
    if not sep or not rest or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", scheme):
        raise _invalid(field, f"{field} must be an absolute URL.")
    if web_only and scheme.lower() not in {"http", "https"}:
        raise _invalid(field, f"{field} must be an http(s) URL.")
    return text


def _web_url(field: str) -> Callable[[Any], str]:
    """An http(s) URL or "" (images the device or browser downloads)."""

    def check(value: Any) -> str:
        return _url_like(field, value, web_only=True)

    return check


def _url(value: Any) -> str:
    return _url_like("url", value, web_only=False)


def _actions(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _invalid("actions", "actions must be a list of {id, title, url, icon}.")
    if len(value) > MAX_ACTIONS:
        raise _invalid("actions", f"At most {MAX_ACTIONS} actions.")
    clean = []
    seen: set[str] = set()
    for i, action in enumerate(value):
        where = f"actions[{i}]"
        if not isinstance(action, dict):
            raise _invalid(where, f"{where} must be an object.")
        unknown = set(action) - {"id", "title", "url", "icon"}
        if unknown:
            raise _invalid(where, f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        action_id = _string(
            f"{where}.id", action.get("id"), max_length=MAX_ACTION_ID, allow_blank=False
        )
        if action_id in seen:
            raise _invalid(where, f"Duplicate action id '{action_id}'.")
        seen.add(action_id)
        entry = {
            "id": action_id,
            "title": _string(
                f"{where}.title",
                action.get("title"),
                max_length=MAX_ACTION_TITLE,
                allow_blank=False,
            ),
        }
        if action.get("url"):
            entry["url"] = _url_like(f"{where}.url", action["url"], web_only=False)
        if action.get("icon"):
            entry["icon"] = _url_like(f"{where}.icon", action["icon"], web_only=True)
        clean.append(entry)
    return clean


def _sound(value: Any) -> str:
    return _string("sound", value, max_length=200)


def _badge(value: Any) -> int | None:
    return None if value is None else _integer("badge", value, minimum=0, maximum=99999)


def _vibrate(value: Any) -> list[int]:
    """A vibration pattern: vibrate, pause, vibrate... in milliseconds."""
    if not isinstance(value, list):
        raise _invalid("vibrate", "vibrate must be a list of milliseconds, e.g. [200, 100, 200].")
    if len(value) > MAX_VIBRATE:
        raise _invalid("vibrate", f"vibrate has more than {MAX_VIBRATE} items.")
    return [
        _integer(f"vibrate[{i}]", ms, minimum=0, maximum=MAX_VIBRATE_MS)
        for i, ms in enumerate(value)
    ]


def _tag(value: Any) -> str:
    return _string("tag", value, max_length=MAX_TAG)


def _collapse_key(value: Any) -> str:
    return _string("collapse_key", value, max_length=64)


def _priority(value: Any) -> str:
    if value not in ("high", "normal"):
        raise _invalid("priority", "priority must be 'high' or 'normal'.")
    return str(value)


def _ttl_seconds(value: Any) -> int | None:
    if value is None:
        return None
    return _integer("ttl_seconds", value, minimum=0, maximum=MAX_TTL_SECONDS)


def _platforms(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise _invalid("platforms", "platforms must be a list of 'ios', 'android', 'web'.")
    lowered = [p.lower() for p in value]
    bad = [p for p in lowered if p not in PLATFORMS]
    if bad:
        raise _invalid("platforms", f"Unknown platform(s): {', '.join(bad)}.")
    return sorted(set(lowered), key=PLATFORMS.index)


def _string_list(
    field: str, value: Any, *, max_items: int, max_length: int | None = None
) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(field, f"{field} must be a list of strings.")
    if len(value) > max_items:
        raise _invalid(field, f"{field} has more than {max_items} items.")
    if max_length is not None and any(len(v) > max_length for v in value):
        raise _invalid(field, f"{field} items must be at most {max_length} characters.")
    return value


# Targeting comes in two shapes (docs/api.md, "Targeting"): Herald's own
# `{"include": [...], "exclude": [...]}` per key, and the Ocamba push-task form
# `{"items": [...], "op": "include" | "exclude"}` (for user_data, one such object per
# attribute). `_targeting` is the one normaliser: every door (API, console, MCP tools,
# audience estimate) calls it, and only Herald's form is stored and answered.
TARGETING_SIDES = ("include", "exclude")
OCAMBA_RULE_KEYS = ("items", "op")


def _unsupported_targeting_keys(keys: list[str]) -> InvalidInput:
    supported = [*TARGETING_LISTS, "user_data", "subscribed_age"]
    return InvalidInput(
        f"targeting has keys Herald does not support: {', '.join(keys)}. "
        f"Supported keys: {', '.join(supported)}.",
        details={"field": "targeting", "unsupported": keys, "supported": supported},
    )


def _ocamba_side(where: str, rule: Mapping[str, Any]) -> str:
    """The side (`include` / `exclude`) an Ocamba `{"items", "op"}` object names."""
    if "op" not in rule:
        raise _invalid(f"{where}.op", f'{where}.op is required: "include" or "exclude".')
    if rule["op"] not in TARGETING_SIDES:
        raise _invalid(f"{where}.op", f'{where}.op must be "include" or "exclude".')
    if "items" not in rule:
        raise _invalid(f"{where}.items", f"{where}.items is required: a list.")
    return cast(str, rule["op"])


def _targeting_list(where: str, rule: Any, *, max_items: int) -> dict[str, list[str]]:
    """One list key in either form -> `{"include": [...]}` and/or `{"exclude": [...]}`."""
    shape = (
        f'{where} must be {{"include": [...], "exclude": [...]}} or '
        f'{{"items": [...], "op": "include" | "exclude"}}.'
    )
    if not isinstance(rule, dict) or not rule:
        raise _invalid(where, shape)
    ocamba = set(rule) & set(OCAMBA_RULE_KEYS)
    if ocamba and set(rule) & set(TARGETING_SIDES):
        raise _invalid(
            where,
            f"{where} mixes Herald's include/exclude with the Ocamba form's items/op; "
            "use one form.",
        )
    if set(rule) - {*TARGETING_SIDES, *OCAMBA_RULE_KEYS}:
        raise _invalid(where, shape)
    if ocamba:
        side = _ocamba_side(where, rule)
        items = _string_list(
            f"{where}.items", rule["items"], max_items=max_items, max_length=MAX_TARGETING_ITEM
        )
        return {side: items}
    return {
        k: _string_list(f"{where}.{k}", v, max_items=max_items, max_length=MAX_TARGETING_ITEM)
        for k, v in rule.items()
    }


def _is_ocamba_entry(value: Any) -> bool:
    """A user_data attribute in the Ocamba form: an object of `items` and `op` only."""
    return (
        isinstance(value, dict)
        and bool(set(value) & set(OCAMBA_RULE_KEYS))
        and not set(value) - set(OCAMBA_RULE_KEYS)
    )


def _targeting_user_data(rule: Any) -> dict[str, Any]:
    """user_data in either form -> `{"include": {attr: value(s)}, "exclude": {...}}`.

    Herald's form has the keys `include` / `exclude` mapping attributes to values;
    the Ocamba form has one key per attribute whose value is `{"items", "op"}`.
    """
    where = "targeting.user_data"
    if not isinstance(rule, dict) or not rule:
        raise _invalid(
            where,
            f'{where} must be {{"include": {{...}}, "exclude": {{...}}}} or '
            f'{{"<attribute>": {{"items": [...], "op": "include" | "exclude"}}, ...}}.',
        )
    herald = [k for k, v in rule.items() if k in TARGETING_SIDES and not _is_ocamba_entry(v)]
    if not herald:
        return _ocamba_user_data(where, rule)
    if len(herald) != len(rule):
        raise _invalid(
            where,
            f"{where} mixes Herald's include/exclude objects with Ocamba-form attributes "
            '({"items", "op"}); use one form.',
        )
    for k, v in rule.items():
        _user_data_side(f"{where}.{k}", v)
    return rule


def _ocamba_user_data(where: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    if len(rule) > 2 * MAX_ATTRIBUTES:
        raise _invalid(where, f"{where} has more than {2 * MAX_ATTRIBUTES} keys.")
    sides: dict[str, dict[str, Any]] = {side: {} for side in TARGETING_SIDES}
    for key, entry in rule.items():
        entry_where = f"{where}.{key}"
        if not key or len(key) > MAX_USER_DATA_KEY:
            raise _invalid(where, f"{where} keys must be 1-{MAX_USER_DATA_KEY} characters.")
        if not _is_ocamba_entry(entry):
            raise _invalid(
                entry_where,
                f'{entry_where} must be {{"items": [...], "op": "include" | "exclude"}}.',
            )
        side = _ocamba_side(entry_where, entry)
        if not isinstance(entry["items"], list):
            raise _invalid(f"{entry_where}.items", f"{entry_where}.items must be a list.")
        _user_data_value(f"{entry_where}.items", entry["items"])
        sides[side][key] = entry["items"]
    for side, mapping in sides.items():
        if len(mapping) > MAX_ATTRIBUTES:
            raise _invalid(f"{where}", f"{where} has more than {MAX_ATTRIBUTES} {side} keys.")
    return {side: mapping for side, mapping in sides.items() if mapping}


def _targeting(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("targeting", "targeting must be an object.")
    allowed = (*TARGETING_LISTS, "user_data", "subscribed_age")
    unknown = set(value) - set(allowed)
    if unknown:
        raise _unsupported_targeting_keys(sorted(unknown))
    clean: dict[str, Any] = {}
    for key, max_items in TARGETING_LISTS.items():
        if key in value:
            clean[key] = _targeting_list(f"targeting.{key}", value[key], max_items=max_items)
    if "user_data" in value:
        clean["user_data"] = _targeting_user_data(value["user_data"])
    if "subscribed_age" in value:
        rule = value["subscribed_age"]
        where = "targeting.subscribed_age"
        if not isinstance(rule, dict) or set(rule) - {"from", "to"} or not rule:
            raise _invalid(where, f'{where} must be {{"from": days, "to": days}}.')
        ages = {k: _integer(f"{where}.{k}", v, minimum=0, maximum=36500) for k, v in rule.items()}
        if "from" in ages and "to" in ages and ages["from"] > ages["to"]:
            raise _invalid(where, f"{where}.from must not exceed .to.")
        clean["subscribed_age"] = ages
    return clean


def _user_data_side(where: str, value: Any) -> None:
    """``{attribute: value or [values]}``, bounded like the attributes it matches."""
    if not isinstance(value, dict):
        raise _invalid(where, f"{where} must map keys to values.")
    if len(value) > MAX_ATTRIBUTES:
        raise _invalid(where, f"{where} has more than {MAX_ATTRIBUTES} keys.")
    for key, wanted in value.items():
        if not key or len(key) > MAX_USER_DATA_KEY:
            raise _invalid(where, f"{where} keys must be 1-{MAX_USER_DATA_KEY} characters.")
        _user_data_value(f"{where}.{key}", wanted)


def _user_data_value(field: str, wanted: Any) -> None:
    """A value or a list of values, bounded like the attributes it matches."""
    values = wanted if isinstance(wanted, list) else [wanted]
    if len(values) > MAX_LIST_ITEMS:
        raise _invalid(field, f"{field} has more than {MAX_LIST_ITEMS} items.")
    for item in values:
        if isinstance(item, dict | list) or (
            isinstance(item, str) and len(item) > MAX_ATTRIBUTE_STRING
        ):
            raise _invalid(
                field,
                f"{field} must be a value (string of at most {MAX_ATTRIBUTE_STRING} "
                "characters, number, boolean or null) or a list of them.",
            )


def clean_tag(field: str, value: Any) -> str:
    """One tag: a non-blank string of at most MAX_TAG characters (also the list's
    `?tag=` filter)."""
    return _string(field, value, max_length=MAX_TAG, allow_blank=False)


def _tags(value: Any) -> list[str]:
    tags = _string_list("tags", value, max_items=MAX_TAGS)
    for tag in tags:
        clean_tag("tags", tag)
    return list(dict.fromkeys(tags))


def _goal(i: int, goal: Any) -> dict[str, Any]:
    where = f"goals[{i}]"
    if not isinstance(goal, dict):
        raise _invalid(where, f"{where} must be an object {{name, event, filter, window_hours}}.")
    unknown = set(goal) - set(GOAL_KEYS)
    if unknown:
        raise _invalid(where, f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
    name = _string(f"{where}.name", goal.get("name"), max_length=MAX_GOAL_NAME, allow_blank=False)
    event = goal.get("event")
    if not isinstance(event, str) or not EVENT_NAME_RE.fullmatch(event):
        raise _invalid(
            f"{where}.event",
            f"{where}.event must be an event name (1-64 letters, digits, _ . : -).",
        )
    rules = goal.get("filter")
    if rules is not None:
        try:
            rules = validate_property_rules(rules, path=f"{where}.filter") or None
        except InvalidInput as exc:
            path = str(exc.details.get("path", f"{where}.filter"))
            raise InvalidInput(
                exc.message, code=exc.code, details={"field": f"{where}.filter", "path": path}
            ) from exc
    window = _integer(
        f"{where}.window_hours",
        goal.get("window_hours", DEFAULT_GOAL_WINDOW_HOURS),
        minimum=1,
        maximum=MAX_GOAL_WINDOW_HOURS,
    )
    primary = goal.get("primary")
    if primary is not None and not isinstance(primary, bool):
        raise _invalid(f"{where}.primary", f"{where}.primary must be true or false.")
    return {
        "name": name,
        "event": event,
        "filter": rules,
        "window_hours": window,
        "primary": primary,
    }


def clean_stored_goal(index: int, goal: Any) -> dict[str, Any]:
    """A goal as stored on a campaign, checked again by the rules it was saved under
    (InvalidInput when it no longer passes them: data edited outside the API, or
    rules tightened since)."""
    return _goal(index, goal)


def _goals(value: Any) -> list[dict[str, Any]]:
    """Conversion goals: at most MAX_GOALS, exactly one primary (a lone goal is primary
    unless it says otherwise); the filter is a segment rule over the event's properties."""
    if not isinstance(value, list):
        raise _invalid("goals", "goals must be a list of {name, event, filter, window_hours}.")
    if len(value) > MAX_GOALS:
        raise _invalid("goals", f"At most {MAX_GOALS} goals; got {len(value)}.")
    goals = [_goal(i, goal) for i, goal in enumerate(value)]
    if len(goals) == 1 and goals[0]["primary"] is None:
        goals[0]["primary"] = True
    for goal in goals:
        goal["primary"] = bool(goal["primary"])
    primaries = sum(goal["primary"] for goal in goals)
    if goals and primaries != 1:
        raise _invalid(
            "goals", f'Exactly one goal must be primary ("primary": true); got {primaries}.'
        )
    return goals


def _timezone(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _invalid(field, f"{field} must be an IANA time zone such as 'Europe/Paris'.")
    try:
        zoneinfo.ZoneInfo(value)
    # OSError: a tzdata directory such as 'America' is not a zone (IsADirectoryError).
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise _invalid(field, f"Unknown time zone '{value}'.") from exc
    return value


def _recurrence(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("recurrence", "recurrence must be an object or null.")
    kinds = [k for k in ("cron", "every_seconds", "every_days") if k in value]
    if len(kinds) != 1:
        raise _invalid(
            "recurrence", "recurrence needs exactly one of 'cron', 'every_seconds', 'every_days'."
        )
    kind = kinds[0]
    allowed = {
        "cron": {"cron", "timezone"},
        "every_seconds": {"every_seconds"},
        "every_days": {"every_days", "at", "timezone"},
    }[kind]
    unknown = set(value) - allowed
    if unknown:
        raise _invalid("recurrence", f"recurrence has unknown keys: {', '.join(sorted(unknown))}.")
    clean: dict[str, Any] = {}
    if kind == "cron":
        expr = _string("recurrence.cron", value["cron"], max_length=200, allow_blank=False)
        if len(expr.split()) != 5 or not croniter.is_valid(expr):
            raise _invalid("recurrence.cron", f"'{expr}' is not a 5-field cron expression.")
        clean["cron"] = expr
    elif kind == "every_seconds":
        clean["every_seconds"] = _integer(
            "recurrence.every_seconds",
            value["every_seconds"],
            minimum=MIN_RECURRENCE_SECONDS,
            maximum=366 * 86400,
        )
    else:
        clean["every_days"] = _integer(
            "recurrence.every_days", value["every_days"], minimum=1, maximum=366
        )
        at = value.get("at", "00:00")
        if not isinstance(at, str) or not HHMM_RE.match(at):
            raise _invalid("recurrence.at", "recurrence.at must be 'HH:MM' (24-hour).")
        clean["at"] = at
    if "timezone" in value:
        clean["timezone"] = _timezone("recurrence.timezone", value["timezone"])
    elif kind != "every_seconds":
        clean["timezone"] = "UTC"
    return clean


def _end_at(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime_field("end_at", value, code="VALIDATION_ERROR")
    if parsed <= timezone.now():
        raise _invalid("end_at", "end_at is in the past.")
    return parsed


def _quiet_hours(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"start", "end", "action"}:
        raise _invalid("quiet_hours", "quiet_hours must be {start, end, action}.")
    clean = {}
    for key in ("start", "end"):
        text = value.get(key)
        if not isinstance(text, str) or not HHMM_RE.match(text):
            raise _invalid(f"quiet_hours.{key}", f"quiet_hours.{key} must be 'HH:MM'.")
        clean[key] = text
    if clean["start"] == clean["end"]:
        raise _invalid("quiet_hours", "quiet_hours start and end must differ.")
    action = value.get("action", "defer")
    if action not in ("defer", "skip"):
        raise _invalid("quiet_hours.action", "quiet_hours.action must be 'defer' or 'skip'.")
    clean["action"] = action
    return clean


def _bool(field: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _invalid(field, f"{field} must be true or false.")
        return value

    return check


def _local_time_missed(value: Any) -> str:
    if value not in ("next_day", "skip"):
        raise _invalid("local_time_missed", "local_time_missed must be 'next_day' or 'skip'.")
    return str(value)


def _throttle(value: Any) -> int | None:
    if value is None:
        return None
    return _integer("throttle_per_minute", value, minimum=1, maximum=1_000_000)


class CampaignFields(TypedDict, total=False):
    """Clean campaign fields, as the validators return them and the services take
    them: on create every required field is present, on PATCH only those given."""

    title: str
    body: str
    name: str
    data: dict[str, Any]
    segment_id: uuid.UUID | None
    segment_name: str
    scheduled_at: datetime | None
    localizations: dict[str, dict[str, Any]]
    image_url: str
    icon: str
    web_badge: str
    url: str
    actions: list[dict[str, str]]
    sound: str
    badge: int | None
    vibrate: list[int]
    require_interaction: bool
    renotify: bool
    tag: str
    collapse_key: str
    priority: str
    ttl_seconds: int | None
    platforms: list[str]
    targeting: dict[str, Any]
    tags: list[str]
    goals: list[dict[str, Any]]
    recurrence: dict[str, Any] | None
    end_at: datetime | None
    quiet_hours: dict[str, str] | None
    deliver_in_user_timezone: bool
    local_time_missed: str
    throttle_per_minute: int | None
    silent: bool


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "title": _title,
    "body": _body,
    "name": _name,
    "data": _data,
    "segment_id": _segment_id,
    "segment_name": _segment_name,
    "scheduled_at": _scheduled_at,
    "localizations": _localizations,
    "image_url": _web_url("image_url"),
    "icon": _web_url("icon"),
    "web_badge": _web_url("web_badge"),
    "url": _url,
    "actions": _actions,
    "sound": _sound,
    "badge": _badge,
    "vibrate": _vibrate,
    "require_interaction": _bool("require_interaction"),
    "renotify": _bool("renotify"),
    "tag": _tag,
    "collapse_key": _collapse_key,
    "priority": _priority,
    "ttl_seconds": _ttl_seconds,
    "platforms": _platforms,
    "targeting": _targeting,
    "tags": _tags,
    "goals": _goals,
    "recurrence": _recurrence,
    "end_at": _end_at,
    "quiet_hours": _quiet_hours,
    "deliver_in_user_timezone": _bool("deliver_in_user_timezone"),
    "local_time_missed": _local_time_missed,
    "throttle_per_minute": _throttle,
    "silent": _bool("silent"),
}


def validate_create(payload: Mapping[str, Any]) -> CampaignFields:
    """Clean values for a new campaign; title and body are required."""
    refuse_unknown_fields(payload, allowed=VALIDATORS, read_only=READ_ONLY_FIELDS)
    _check_one_segment_reference(payload)
    clean: dict[str, Any] = {}
    for field in WRITABLE_FIELDS:
        if field in ("title", "body") or field in payload:
            clean[field] = VALIDATORS[field](payload.get(field))
    if "name" not in clean:
        clean["name"] = clean["title"][:MAX_NAME]
    silent_priority_default(clean)
    _check_window(clean)
    return cast(CampaignFields, clean)


def silent_priority_default(clean: dict[str, Any]) -> None:
    """A new silent push without a priority is `normal`: what Google recommends for
    data messages (high-priority ones that show nothing get deprioritized) and the
    only priority Apple accepts for background pushes. `high` stays available for
    Android when asked for explicitly."""
    if clean.get("silent") and "priority" not in clean:
        clean["priority"] = "normal"


# The stored fields `check_content` reads.
CHECKED_CONTENT_FIELDS = ("silent", *SILENT_EXCLUDES, "localizations", "collapse_key")


def check_content(values: Mapping[str, Any]) -> None:
    """What only the content as a whole can tell: what a silent push cannot carry
    (`SILENT_EXCLUDES`, and a localization's image or button titles) is refused rather
    than dropped without a word; a localization's button titles must name the
    campaign's buttons; `renotify` needs a tag to renotify for (`tag`, else
    `collapse_key`, the web tag's default). `values` are content fields, clean (a test
    push) or stored (`check_campaign`), so a PATCH of one field is judged with the
    others as stored."""
    localizations: Mapping[str, Mapping[str, Any]] = values.get("localizations") or {}
    if values.get("silent"):
        for field in SILENT_EXCLUDES:
            if _is_set(values.get(field)):
                raise _silent_refusal(field)
        for language, entry in localizations.items():
            for key in ("image_url", "actions"):
                if entry.get(key):
                    raise _silent_refusal(f"localizations.{language}.{key}")
    action_ids = {action["id"] for action in values.get("actions") or ()}
    for language, entry in localizations.items():
        for action_id in entry.get("actions") or {}:
            if action_id not in action_ids:
                where = f"localizations.{language}.actions.{action_id}"
                raise _invalid(
                    where,
                    f"{where}: the campaign has no action with id '{action_id}'; "
                    "a localization translates the titles of the campaign's actions.",
                )
    if values.get("renotify") and not (values.get("tag") or values.get("collapse_key")):
        raise _invalid(
            "renotify",
            "renotify alerts again when a notification replaces one with the same tag; "
            "set tag (or collapse_key, the tag's default) or turn renotify off.",
        )


def _is_set(value: Any) -> bool:
    # `False` and empty are unset; 0 is set (badge 0 clears the badge).
    return value is not None and value is not False and value not in ("", [], ())


def _silent_refusal(field: str) -> InvalidInput:
    return _invalid(
        field,
        f"A silent push shows no notification, so it cannot have {field}; "
        f"remove {field} or make the push not silent.",
    )


# Setting (or, in an update, clearing) these schedules the campaign, which is the
# sender's to do, not the editor's (core/access.py): every door asks `schedules`.
SCHEDULE_FIELDS = ("scheduled_at", "recurrence", "end_at")


def schedules(fields: Mapping[str, Any], *, update: bool) -> bool:
    """Does this clean create (``update`` False) or update body touch the schedule?"""
    present = [name for name in SCHEDULE_FIELDS if name in fields]
    return bool(present) if update else any(fields[name] is not None for name in present)


def validate_update(payload: Mapping[str, Any]) -> CampaignFields:
    """Clean values for a PATCH; only the fields given. {} is EMPTY_UPDATE."""
    if not payload:
        raise InvalidInput("Give at least one field to update.", code="EMPTY_UPDATE")
    refuse_unknown_fields(payload, allowed=VALIDATORS, read_only=READ_ONLY_FIELDS)
    _check_one_segment_reference(payload)
    clean: dict[str, Any] = {}
    for field in WRITABLE_FIELDS:
        if field in payload:
            clean[field] = VALIDATORS[field](payload[field])
    _check_window(clean)
    return cast(CampaignFields, clean)


def campaign_segment(
    *, project: Project, segment_id: uuid.UUID | None, segment_name: str | None = None
) -> Segment | None:
    """The segment ``segment_id`` (or ``segment_name``) names, if it is one of
    ``project``'s; None for everyone.

    INVALID_SEGMENT_ID otherwise, with ``details.field`` naming the field given:
    another project's segment is as unknown as a made-up id (no leaks). Segment names
    are not unique, so a name several segments of the project carry is
    AMBIGUOUS_SEGMENT_NAME with their ids (then use segment_id).
    """
    if segment_name is not None:
        found = list(
            Segment.objects.filter(project=project, name=segment_name)
            .order_by("created_at", "id")
            .values_list("pk", flat=True)[:MAX_AMBIGUOUS_SEGMENTS]
        )
        if not found:
            raise _invalid(
                "segment_name",
                f"No segment of this project is named '{segment_name}'.",
                "INVALID_SEGMENT_ID",
            )
        if len(found) > 1:
            raise InvalidInput(
                f"Several segments of this project are named '{segment_name}'; "
                "name one by segment_id.",
                code="AMBIGUOUS_SEGMENT_NAME",
                details={"field": "segment_name", "segment_ids": [str(pk) for pk in found]},
            )
        return Segment.objects.get(pk=found[0])
    if segment_id is None:
        return None
    segment = Segment.objects.filter(pk=segment_id, project=project).first()
    if segment is None:
        raise _invalid(
            "segment_id", "segment_id is not a segment of this project.", "INVALID_SEGMENT_ID"
        )
    return segment


def check_campaign(campaign: PushCampaign) -> None:
    """What only the whole campaign can tell, once clean fields are applied to the row.

    A PATCH of ``end_at`` alone is checked against the stored ``scheduled_at``, and
    the payload size against the stored text, data and localizations. Run on the
    unsaved row (after ``scheduling.plan_schedule`` when the schedule changed).
    """
    _check_end_after_start(campaign.scheduled_at, campaign.end_at)
    check_content({name: getattr(campaign, name) for name in CHECKED_CONTENT_FIELDS})
    check_payload_size(campaign)


def _check_end_after_start(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise _invalid("end_at", "end_at must be after scheduled_at.")


def _check_window(clean: Mapping[str, Any]) -> None:
    _check_end_after_start(clean.get("scheduled_at"), clean.get("end_at"))
    if clean.get("recurrence") and clean.get("deliver_in_user_timezone"):
        raise _invalid(
            "deliver_in_user_timezone",
            "deliver_in_user_timezone applies to one-shot schedules, not to recurrences.",
        )


@dataclass(frozen=True)
class ExplicitPushInput:
    """A cleaned explicit push body: who to push to, and what that run overrides."""

    device_ids: list[str]
    user_ids: list[str]
    overrides: RunOverrides | None


EXPLICIT_PUSH_FIELDS = ("device_ids", "user_ids", "data", "title", "body", "silent")


def _device_ids(value: Any) -> list[str]:
    """Token strings (1-512 characters, trimmed) or token row ids (integers >= 1)."""
    if not isinstance(value, list):
        raise _invalid("device_ids", "device_ids must be a list.")
    clean = []
    for i, item in enumerate(value):
        where = f"device_ids[{i}]"
        if isinstance(item, int) and not isinstance(item, bool):
            if item < 1:
                raise _invalid(where, f"{where}: a token row id is an integer >= 1.")
            clean.append(str(item))
            continue
        if not isinstance(item, str):
            raise _invalid(where, f"{where} must be a token string or a token row id.")
        text = item.strip()
        if not text or len(text) > MAX_DEVICE_ID:
            raise _invalid(where, f"{where} must be 1-{MAX_DEVICE_ID} characters.")
        clean.append(text)
    return clean


def _user_ids(value: Any) -> list[str]:
    """External ids, in the shape device registration accepts (one validator)."""
    if not isinstance(value, list):
        raise _invalid("user_ids", "user_ids must be a list.")
    return [clean_external_id(item, field=f"user_ids[{i}]") for i, item in enumerate(value)]


def validate_explicit_push(payload: Mapping[str, Any]) -> ExplicitPushInput:
    """The `/push` body: device_ids and/or user_ids (at least one entry), and optional
    overrides for the run: data, title, body (validated as a campaign's), silent.

    The 1000-entry cap is the service's (413 TOO_MANY_DEVICES), not checked here.
    """
    refuse_unknown_fields(payload, allowed=EXPLICIT_PUSH_FIELDS)
    device_ids = _device_ids(payload.get("device_ids", []))
    user_ids = _user_ids(payload.get("user_ids", []))
    if not device_ids and not user_ids:
        raise _invalid("device_ids", "Give device_ids and/or user_ids.")
    given = {
        name: VALIDATORS[name](payload[name])
        for name in EXPLICIT_PUSH_FIELDS[2:]
        if name in payload
    }
    overrides = (
        RunOverrides(
            data=given.get("data"),
            title=given.get("title", ""),
            body=given.get("body", ""),
            silent=given.get("silent"),
        )
        if given
        else None
    )
    return ExplicitPushInput(device_ids=device_ids, user_ids=user_ids, overrides=overrides)


@dataclass(frozen=True)
class PreviewInput:
    """A cleaned preview body: the sample user (a registered one, or attributes)."""

    external_id: str | None
    attributes: dict[str, Any] | None
    language: str | None


PREVIEW_FIELDS = ("external_id", "attributes", "language")


def validate_preview(payload: Mapping[str, Any]) -> PreviewInput:
    """`{"external_id"}` (a registered user) or `{"attributes"}` (made up, cleaned
    as registration cleans them), or neither; optional `language` (else the user's)."""
    refuse_unknown_fields(payload, allowed=PREVIEW_FIELDS)
    if "external_id" in payload and "attributes" in payload:
        raise _invalid("attributes", "Give external_id or attributes, not both.")
    external_id = clean_external_id(payload["external_id"]) if "external_id" in payload else None
    attributes = clean_attributes(payload["attributes"]) if "attributes" in payload else None
    language = payload.get("language")
    if language is not None and (
        not isinstance(language, str)
        or len(language) > MAX_LANGUAGE_TAG
        or (language and not LANGUAGE_RE.fullmatch(language))
    ):
        raise _invalid("language", "language must be a language code such as 'fr' or 'pt-BR'.")
    return PreviewInput(external_id=external_id, attributes=attributes, language=language)


def parse_run_number(raw: str | None) -> int | None:
    """The deliveries `?run=` filter: a run number 1..2^31-1, or None when absent."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not (
        1 <= int(raw) <= MAX_RUN_NUMBER
    ):
        raise _invalid("run", "run must be a run number.")
    return int(raw)
