"""MoEngage's Push API (`sendpush`) as a door onto Herald's campaigns.

A request is checked in the reference's order - appId, campaignName, signature -
before anything else is looked at, then translated into a Herald campaign body that
`validate_create` (the one owner) checks like any other; its errors are renamed to
the MoEngage field they came from (`details.field`, with `details.herald_field`).
`moengage_push` carries it out with campaign_create / campaign_send /
campaign_push_explicit: All Users and Custom Segment campaigns claim their name
(`unique_name`: a second request with it is 409 DUPLICATE_CAMPAIGN_NAME, which also
makes a retried request harmless); a User request reuses the campaign of that name
(creating it the first time) and pushes it to the listed users again, as the
reference says. docs/api.md, "Compatible requests", has the field mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, cast

from campaigns import services
from campaigns.content import RunOverrides
from campaigns.models import PushCampaign
from campaigns.validation import MAX_NAME, CampaignFields, validate_create
from core.api import refuse_unknown_fields
from core.errors import ApplicationError, Conflict, InvalidInput
from core.models import Project
from segments.services import clean_external_id

REQUEST_KEYS = (
    "appId",
    "campaignName",
    "signature",
    "requestType",
    "targetPlatform",
    "targetAudience",
    "customSegmentName",
    "targetUserAttributes",
    "campaignDelivery",
    "payload",
    "campaignTags",
    "conversionGoals",
    "advancedSettings",
)
PLATFORMS = {"ANDROID": "android", "IOS": "ios", "WEB": "web"}
AUDIENCES = ["All Users", "Custom Segment", "User"]
# The schema's choice lists (config/settings.py names their enums).
TARGET_PLATFORMS = list(PLATFORMS)
USER_ATTRIBUTES = ["USER_ATTRIBUTE_UNIQUE_ID"]
COMPARISONS = ["in", "is"]
REQUEST_TYPES = ["push"]
MIN_CAMPAIGN_NAME = 5
MAX_USERS = 100
UNIQUE_ID_ATTRIBUTE = USER_ATTRIBUTES[0]
DELIVERY_TYPES = ("soon", "later", "periodic")
MAX_REPEAT_DAYS = 366
# Per-platform payload keys Herald maps; any other key of a platform payload is
# accepted and ignored (docs/api.md lists them).
PAYLOAD_TITLE, PAYLOAD_MESSAGE = "title", "message"
IMAGE_KEYS = ("imageUrl", "imageURL")
GOAL_KEYS = ("name", "eventName", "attrs")
GOAL_ATTR_KEYS = ("name", "filter", "value", "type")
# MoEngage goal filter -> Herald rule operator (segments/rules); ("not", op) is the
# complement of a positive operator. Keyed by attribute type, then filter name.
STRING_FILTERS: dict[str, str | tuple[str, str]] = {
    "is": "eq",
    "is not": "neq",
    "contains": "contains",
    "does not contain": "not_contains",
    "starts with": "starts_with",
    "does not start with": ("not", "starts_with"),
    "ends with": "ends_with",
    "does not end with": ("not", "ends_with"),
    "in the following": "in",
    "not in the following": "not_in",
    "exists": "exists",
    "does not exist": "not_exists",
}
NUMERIC_FILTERS: dict[str, str | tuple[str, str]] = {
    "is equal to": "eq",
    "is not equal to": "neq",
    "is between": "between",
    "is not between": "not_between",
    "is greater than": "gt",
    "is less than": "lt",
    "exists": "exists",
    "does not exist": "not_exists",
}
GOAL_FILTERS = {"string": STRING_FILTERS, "numeric": NUMERIC_FILTERS, "double": NUMERIC_FILTERS}
# Herald field (root) -> the MoEngage field its errors are reported under.
FIELD_NAMES = {
    "name": "campaignName",
    "platforms": "targetPlatform",
    "segment_name": "customSegmentName",
    "tags": "campaignTags",
    "goals": "conversionGoals",
    "scheduled_at": "campaignDelivery",
    "recurrence": "campaignDelivery",
    "end_at": "campaignDelivery.endDate",
}


def _invalid(field: str, message: str, code: str = "VALIDATION_ERROR") -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field})


def signature_for(app_id: str, campaign_name: str, api_key: str) -> str:
    """The reference's signature: SHA-256 hex of `appId|campaignName|apiKey`."""
    return hashlib.sha256(f"{app_id}|{campaign_name}|{api_key}".encode()).hexdigest()


def check_signed(body: Mapping[str, Any], *, project: Project, api_key: str) -> str:
    """The reference's first checks, in its order; the clean campaign name.

    appId must be the project's id; the signature is verified with the raw key the
    request authenticated with (Herald stores keys hashed), compared in constant time.
    """
    if body.get("requestType", "push") != "push":
        raise _invalid("requestType", 'requestType must be "push".', "INVALID_REQUEST_TYPE")
    app_id = body.get("appId")
    if app_id is None or app_id == "":
        raise _invalid("appId", "appId is required: the project id.", "MISSING_APP_ID")
    if not isinstance(app_id, str) or app_id.lower() != str(project.pk):
        raise _invalid("appId", "appId must be the id of the API key's project.", "INVALID_APP_ID")
    name = body.get("campaignName")
    if name is None or name == "":
        raise _invalid("campaignName", "campaignName is required.", "MISSING_CAMPAIGN_NAME")
    if not isinstance(name, str):
        raise _invalid("campaignName", "campaignName must be a string.")
    if len(name.strip()) < MIN_CAMPAIGN_NAME:
        raise _invalid(
            "campaignName",
            f"campaignName must be at least {MIN_CAMPAIGN_NAME} characters.",
            "CAMPAIGN_NAME_TOO_SHORT",
        )
    if len(name) > MAX_NAME:
        raise _invalid("campaignName", f"campaignName must be at most {MAX_NAME} characters.")
    signature = body.get("signature")
    if signature is None or signature == "":
        raise _invalid(
            "signature",
            "signature is required: SHA-256 hex of appId|campaignName|apiKey.",
            "MISSING_SIGNATURE",
        )
    expected = signature_for(app_id, name, api_key)
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.strip().lower().encode(), expected.encode()
    ):
        raise InvalidInput(
            "signature does not verify: it must be the SHA-256 hex of "
            "appId|campaignName|apiKey, with the API key this request authenticates with.",
            code="INVALID_SIGNATURE",
            status=403,
            details={"field": "signature"},
        )
    return name


@dataclass(frozen=True)
class MoEngageRequest:
    """A checked request: the campaign body for `validate_create`, and how to send."""

    name: str
    audience: str
    fields: CampaignFields
    user_ids: list[str]
    send_now: bool


@dataclass(frozen=True)
class MoEngageResult:
    campaign: PushCampaign
    created: bool
    run: int | None
    targeted: int | None
    invalid_user_ids: list[str]


def _platforms(value: Any) -> list[str]:
    if value is None:
        raise _invalid("targetPlatform", "targetPlatform is required: ANDROID, IOS and/or WEB.")
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise _invalid(
            "targetPlatform", "targetPlatform must be a non-empty list of ANDROID, IOS, WEB."
        )
    bad = [p for p in value if p.upper() not in PLATFORMS]
    if bad:
        raise _invalid("targetPlatform", f"Unknown targetPlatform value(s): {', '.join(bad)}.")
    return list(dict.fromkeys(p.upper() for p in value))


def _user_ids(value: Any) -> list[str]:
    field = "targetUserAttributes"
    if not isinstance(value, dict):
        raise _invalid(
            field,
            f"{field} is required for a User audience: {{attribute, comparisonParameter, "
            "attributeValue}.",
        )
    stray = sorted(set(value) - {"attribute", "comparisonParameter", "attributeValue"})
    if stray:
        raise _invalid(f"{field}.{stray[0]}", f"Unknown field '{field}.{stray[0]}'.")
    if value.get("attribute") != UNIQUE_ID_ATTRIBUTE:
        raise _invalid(
            f"{field}.attribute",
            f"Herald targets users by their external id: {field}.attribute must be "
            f"{UNIQUE_ID_ATTRIBUTE}.",
            "UNSUPPORTED_USER_ATTRIBUTE",
        )
    comparison = value.get("comparisonParameter", "in")
    wanted = value.get("attributeValue")
    if comparison == "is" and isinstance(wanted, str):
        wanted = [wanted]
    elif comparison not in ("is", "in"):
        raise _invalid(
            f"{field}.comparisonParameter", f'{field}.comparisonParameter must be "in" or "is".'
        )
    if not isinstance(wanted, list) or not wanted:
        raise _invalid(
            f"{field}.attributeValue",
            f"{field}.attributeValue must be a non-empty list of user ids (or one id with is).",
        )
    if len(wanted) > MAX_USERS:
        raise InvalidInput(
            f"A User audience targets at most {MAX_USERS} users.",
            code="TOO_MANY_USERS",
            details={"field": f"{field}.attributeValue", "limit": MAX_USERS},
        )
    return list(
        dict.fromkeys(
            clean_external_id(item, field=f"{field}.attributeValue[{i}]")
            for i, item in enumerate(wanted)
        )
    )


def _local(day: datetime, at: time, zone: zoneinfo.ZoneInfo) -> str:
    return datetime.combine(day.date(), at, tzinfo=zone).isoformat()


def _delivery(value: Any, project: Project) -> tuple[dict[str, Any], bool]:
    """campaignDelivery -> (Herald schedule fields, send now?). Absent: soon."""
    field = "campaignDelivery"
    if value is None:
        return {}, True
    if not isinstance(value, dict):
        raise _invalid(field, f"{field} must be an object with a type: soon, later, periodic.")
    kind = value.get("type")
    if kind not in DELIVERY_TYPES:
        raise _invalid(f"{field}.type", f"{field}.type must be soon, later or periodic.")
    allowed = {
        "soon": {"type"},
        "later": {"type", "date", "time", "timezone"},
        "periodic": {"type", "endDate", "time", "timezone", "repeatAfter"},
    }[kind]
    stray = sorted(set(value) - allowed)
    if stray:
        raise _invalid(f"{field}.{stray[0]}", f"Unknown field '{field}.{stray[0]}' for {kind}.")
    if kind == "soon":
        return {}, True
    zone_name = value.get("timezone", project.default_timezone or "UTC")
    try:
        zone = zoneinfo.ZoneInfo(zone_name) if isinstance(zone_name, str) else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        zone = None
    if zone is None:
        raise _invalid(f"{field}.timezone", f"Unknown time zone {zone_name!r}.")
    at = _clock(value.get("time"), f"{field}.time")
    if kind == "later":
        day = _date(value.get("date"), f"{field}.date")
        return {"scheduled_at": _local(day, at, zone)}, False
    every = value.get("repeatAfter", 1)
    if isinstance(every, str) and every.isdigit():
        every = int(every)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= MAX_REPEAT_DAYS:
        raise _invalid(
            f"{field}.repeatAfter",
            f"{field}.repeatAfter must be a number of days, 1-{MAX_REPEAT_DAYS}.",
        )
    fields: dict[str, Any] = {
        "recurrence": {"every_days": every, "at": at.strftime("%H:%M"), "timezone": zone.key}
    }
    if value.get("endDate") is not None:
        # The last day included: the recurrence ends when that day does.
        end = _date(value["endDate"], f"{field}.endDate") + timedelta(days=1)
        fields["end_at"] = _local(end, time(0, 0), zone)
    return fields, False


def _date(value: Any, field: str) -> datetime:
    try:
        return datetime.strptime(value, "%m/%d/%Y")  # noqa: DTZ007 - a calendar day
    except (TypeError, ValueError) as exc:
        raise _invalid(field, f"{field} must be a date MM/DD/YYYY.") from exc


def _clock(value: Any, field: str) -> time:
    try:
        return datetime.strptime(value, "%I:%M %p").time()  # noqa: DTZ007 - a wall clock
    except (TypeError, ValueError) as exc:
        raise _invalid(field, f"{field} must be a time hh:mm AM/PM, e.g. 04:33 PM.") from exc


def _platform_content(where: str, payload: Any) -> dict[str, Any]:
    """What Herald maps of one platform's payload (docs/api.md lists the rest)."""
    if not isinstance(payload, dict):
        raise _invalid(where, f"{where} must be an object.")
    content: dict[str, Any] = {}
    if PAYLOAD_TITLE in payload:
        content["title"] = (payload[PAYLOAD_TITLE], f"{where}.title")
    if PAYLOAD_MESSAGE in payload:
        content["body"] = (payload[PAYLOAD_MESSAGE], f"{where}.message")
    for key in IMAGE_KEYS:
        if key in payload:
            content["image_url"] = (payload[key], f"{where}.{key}")
    url = payload.get("redirectURL")
    action = payload.get("defaultAction")
    if isinstance(action, dict) and action.get("value") is not None:
        url = action["value"]
        content["url"] = (url, f"{where}.defaultAction.value")
    elif url is not None:
        content["url"] = (url, f"{where}.redirectURL")
    if "buttons" in payload:
        content["actions"] = (_buttons(f"{where}.buttons", payload["buttons"]), f"{where}.buttons")
    if "kvPairs" in payload:
        content["data"] = (payload["kvPairs"], f"{where}.kvPairs")
    return content


def _buttons(where: str, buttons: Any) -> Any:
    if not isinstance(buttons, list):
        return buttons  # validate_create refuses it, under this name
    actions = []
    for i, button in enumerate(buttons):
        if not isinstance(button, dict):
            raise _invalid(f"{where}[{i}]", f"{where}[{i}] must be an object.")
        action = button.get("action")
        action = action if isinstance(action, dict) else {}
        mapped: dict[str, Any] = {
            "id": button.get("id", f"button{i + 1}"),
            "title": button.get("name", button.get("title")),
        }
        url = button.get("url", action.get("value"))
        if url is not None:
            mapped["url"] = url
        actions.append(mapped)
    return actions


def _content(payload: Any, platforms: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """One content for every platform: Herald sends the same notification to each, so
    a field two platforms give differently is refused rather than one dropped."""
    if not isinstance(payload, dict):
        raise _invalid("payload", "payload must be an object keyed by ANDROID, IOS, WEB.")
    stray = sorted(set(payload) - set(PLATFORMS))
    if stray:
        raise _invalid(f"payload.{stray[0]}", f"Unknown payload platform '{stray[0]}'.")
    missing = [p for p in platforms if p not in payload]
    if missing:
        raise _invalid(f"payload.{missing[0]}", f"payload.{missing[0]} is required (a target).")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for platform in platforms:
        for key, (value, where) in _platform_content(
            f"payload.{platform}", payload[platform]
        ).items():
            if key in merged and merged[key] != value:
                raise _invalid(
                    where,
                    f"Herald sends one content to every platform: {where} differs from "
                    f"{origin[key]}.",
                )
            merged.setdefault(key, value)
            origin.setdefault(key, where)
    return merged, origin


def _goal_filter(where: str, attrs: Any) -> dict[str, Any] | None:
    if attrs is None:
        return None
    if not isinstance(attrs, dict):
        raise _invalid(where, f"{where} must be an object {{name, filter, value, type}}.")
    stray = sorted(set(attrs) - set(GOAL_ATTR_KEYS))
    if stray:
        raise _invalid(f"{where}.{stray[0]}", f"Unknown field '{where}.{stray[0]}'.")
    kind = attrs.get("type")
    filters = GOAL_FILTERS.get(kind) if isinstance(kind, str) else None
    if filters is None:
        raise _invalid(
            f"{where}.type",
            f"{where}.type {kind!r} cannot be mapped; Herald maps string, numeric, double.",
            "UNSUPPORTED_GOAL_FILTER",
        )
    name = attrs.get("filter")
    op = filters.get(name) if isinstance(name, str) else None
    if op is None:
        raise _invalid(
            f"{where}.filter",
            f"{where}.filter {name!r} cannot be mapped for type {kind}; Herald maps: "
            f"{', '.join(filters)}.",
            "UNSUPPORTED_GOAL_FILTER",
        )
    negate, base = (True, op[1]) if isinstance(op, tuple) else (False, op)
    rule: dict[str, Any] = {"attr": attrs.get("name"), "op": base}
    if base not in ("exists", "not_exists"):
        rule["value"] = _goal_value(f"{where}.value", attrs.get("value"), str(kind), base)
    return {"not": rule} if negate else rule


def _goal_value(where: str, value: Any, kind: str, op: str) -> Any:
    if kind == "string":
        return value
    if op in ("between", "not_between"):
        bounds = value.split(",") if isinstance(value, str) else value
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise _invalid(where, f'{where} must be two numbers, e.g. "899,999".')
        return [_number(where, b) for b in bounds]
    return _number(where, value)


def _number(where: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError as exc:
            raise _invalid(where, f"{where} must be a number.") from exc
        if not math.isfinite(number):  # "nan", "inf": not JSON numbers
            raise _invalid(where, f"{where} must be a number.")
        return int(number) if number.is_integer() else number
    return value  # numbers pass; the rule validator refuses anything else


def _goals(value: Any) -> Any:
    if not isinstance(value, list):
        return value  # validate_create refuses it, under conversionGoals
    goals = []
    for i, goal in enumerate(value):
        where = f"conversionGoals[{i}]"
        if not isinstance(goal, dict):
            raise _invalid(where, f"{where} must be an object {{name, eventName, attrs}}.")
        stray = sorted(set(goal) - set(GOAL_KEYS))
        if stray:
            raise _invalid(f"{where}.{stray[0]}", f"Unknown field '{where}.{stray[0]}'.")
        goals.append(
            {
                "name": goal.get("name"),
                "event": goal.get("eventName"),
                "filter": _goal_filter(f"{where}.attrs", goal.get("attrs")),
                "primary": i == 0,
            }
        )
    return goals


def translate(body: Mapping[str, Any], *, project: Project, name: str) -> MoEngageRequest:
    """The rest of the request, after `check_signed`: a Herald campaign body checked by
    `validate_create`, with errors named by the MoEngage field."""
    refuse_unknown_fields(body, allowed=REQUEST_KEYS)
    platforms = _platforms(body.get("targetPlatform"))
    audience = body.get("targetAudience")
    if audience not in AUDIENCES:
        raise _invalid(
            "targetAudience", "targetAudience must be All Users, Custom Segment or User."
        )
    herald: dict[str, Any] = {"name": name, "platforms": [PLATFORMS[p] for p in platforms]}
    user_ids: list[str] = []
    if audience != "Custom Segment" and "customSegmentName" in body:
        raise _invalid("customSegmentName", "customSegmentName is for a Custom Segment audience.")
    if audience != "User" and "targetUserAttributes" in body:
        raise _invalid("targetUserAttributes", "targetUserAttributes is for a User audience.")
    if audience == "Custom Segment":
        if body.get("customSegmentName") is None:
            raise _invalid(
                "customSegmentName", "customSegmentName is required for a Custom Segment audience."
            )
        herald["segment_name"] = body["customSegmentName"]
    elif audience == "User":
        user_ids = _user_ids(body.get("targetUserAttributes"))
    schedule, send_now = _delivery(body.get("campaignDelivery"), project)
    if audience == "User" and not send_now:
        raise _invalid(
            "campaignDelivery.type",
            "A User audience is pushed at once: campaignDelivery.type must be soon.",
        )
    herald.update(schedule)
    if "payload" not in body:
        raise _invalid("payload", "payload is required: the notification per platform.")
    content, origin = _content(body["payload"], platforms)
    herald.update(content)
    if "campaignTags" in body:
        herald["tags"] = body["campaignTags"]
    if "conversionGoals" in body:
        herald["goals"] = _goals(body["conversionGoals"])
    field_names = {**FIELD_NAMES, **origin}
    try:
        fields = validate_create(herald)
    except InvalidInput as exc:
        raise _renamed(exc, field_names) from exc
    return MoEngageRequest(
        name=name, audience=audience, fields=fields, user_ids=user_ids, send_now=send_now
    )


def _renamed(exc: ApplicationError, field_names: Mapping[str, str]) -> ApplicationError:
    """The error with `details.field` named as the MoEngage request names it."""
    field = exc.details.get("field")
    if not isinstance(field, str):
        return exc
    root = field.split(".", 1)[0].split("[", 1)[0]
    if root not in field_names:
        return exc
    renamed = field_names[root] + field[len(root) :]
    details = {**exc.details, "field": renamed, "herald_field": field}
    return type(exc)(exc.message, code=exc.code, status=exc.status, details=details)


def _campaign_named(project: Project, name: str) -> PushCampaign | None:
    """The campaign a User request reuses: the one that claimed the name, else the
    newest campaign so named."""
    return (
        PushCampaign.objects.filter(project=project, name=name)
        .order_by("-unique_name", "-created_at", "-id")
        .first()
    )


def moengage_push(*, project: Project, request: MoEngageRequest) -> MoEngageResult:
    """Carry out a checked request with Herald's services (module docstring)."""
    fields = request.fields
    if request.audience != "User":
        try:
            campaign = services.campaign_create(project=project, fields=fields, unique_name=True)
        except ApplicationError as exc:
            raise _renamed(exc, {**FIELD_NAMES, "segment_name": "customSegmentName"}) from exc
        if request.send_now:
            campaign = services.campaign_send(project=project, campaign_id=campaign.pk)
        return MoEngageResult(campaign, True, None, None, [])
    campaign_or_none = _campaign_named(project, request.name)
    created = campaign_or_none is None
    overrides = None
    if campaign_or_none is None:
        try:
            campaign = services.campaign_create(project=project, fields=fields, unique_name=True)
        except Conflict as exc:  # a concurrent request created it first: reuse it
            if exc.code != "DUPLICATE_CAMPAIGN_NAME":
                raise
            campaign = cast(PushCampaign, _campaign_named(project, request.name))
            created = False
    else:
        campaign = campaign_or_none
    if not created:
        # The reference: a reused campaign keeps its data, but the payload is the request's.
        overrides = RunOverrides(
            data=fields.get("data"), title=fields["title"], body=fields["body"]
        )
    pushed = services.campaign_push_explicit(
        project=project,
        campaign_id=campaign.pk,
        device_ids=[],
        user_ids=request.user_ids,
        overrides=overrides,
        platforms=fields.get("platforms"),
    )
    campaign.refresh_from_db()
    return MoEngageResult(campaign, created, pushed.run, pushed.targeted, pushed.invalid_device_ids)
