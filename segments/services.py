"""Audience writes: app users and their attributes, device tokens, segments, counts.

Input cleaning lives here too (the `clean_*` functions) because several interfaces
share it: the registration API, `manage.py import_tokens` and the test push's
device token. Each raises `InvalidInput` with a stable code, so the API answers 400
and the import names a rejection reason, and nothing is written before every value
has been checked.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from core.api import refuse_unknown_fields
from core.audit import audit_record, with_fields
from core.credentials import b64url_decode, b64url_encode, p256_public_point
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Project
from delivery.models import Platform, Provider, PushToken
from segments.models import AppUser, Segment
from segments.rules import (
    ATTRIBUTE_KEY_RE,
    RESERVED_ATTRS,
    StoredRulesInvalid,
    canonical_date_value,
    compile_rules,
    stored_rules,
    validate_rules,
)

logger = logging.getLogger("herald.segments")

MAX_EXTERNAL_ID = 255
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_ATTRIBUTE_STRING = 1024
MAX_LIST_ITEMS = 100
MAX_LIST_STRING = 256
MAX_NUMBER = 2**53
MAX_SEGMENT_NAME = 200
MAX_SEGMENT_DESCRIPTION = 2000
MAX_APP_VERSION = 64
APNS_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{64,200}")
# FCM registration tokens (Android, iOS via FCM, web push) are opaque URL-safe
# base64 plus ':' — typically ~140-165 characters; Google only promises "up to 4 KB",
# so the upper bound is the width of the token column.
FCM_TOKEN_RE = re.compile(r"[A-Za-z0-9_:-]+")
FCM_TOKEN_MIN = 100
FCM_TOKEN_MAX = 512
# Web push: the subscription endpoint is the token (docs/decisions.md, "Web push
# subscriptions and VAPID keys").
WEBPUSH_ENDPOINT_MAX: int = PushToken._meta.get_field("token").max_length or 2048
WEBPUSH_AUTH_BYTES = 16
SUBSCRIPTION_FIELDS = ("endpoint", "keys", "expirationTime")
SUBSCRIPTION_KEYS = ("p256dh", "auth")
LOCALE_RE = re.compile(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8})*")
PROVIDERS: tuple[str, ...] = tuple(Provider.values)
PLATFORMS: tuple[str, ...] = tuple(Platform.values)
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")
PROVIDER_PLATFORMS: dict[str, tuple[str, ...]] = {
    Provider.APNS.value: (Platform.IOS.value,),
    Provider.FCM.value: (Platform.ANDROID.value, Platform.IOS.value, Platform.WEB.value),
    Provider.WEBPUSH.value: (Platform.WEB.value,),
}
UNREGISTERED = "unregistered"


# ------------------------------------------------------------------ input cleaning


def _invalid(code: str, field: str, message: str) -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field})


def clean_external_id(value: Any, *, field: str = "external_id") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_EXTERNAL_ID:
        raise _invalid(
            "INVALID_EXTERNAL_ID", field, f"{field} must be a string of 1-{MAX_EXTERNAL_ID} chars."
        )
    if CONTROL_CHARS_RE.search(value):
        raise _invalid("INVALID_EXTERNAL_ID", field, f"{field} must not contain control chars.")
    return value


def _clean_attribute_value(key: str, value: Any) -> Any:
    where = f"attributes.{key}"

    def bad(message: str) -> InvalidInput:
        return _invalid("INVALID_ATTRIBUTES", where, f"{where}: {message}")

    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise bad("numbers must be finite and within ±2^53.")
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_STRING:
            raise bad(f"strings are limited to {MAX_ATTRIBUTE_STRING} characters.")
        canonical = canonical_date_value(value)
        return canonical if canonical is not None else value
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise bad(f"lists are limited to {MAX_LIST_ITEMS} items.")
        if not all(isinstance(v, str) and len(v) <= MAX_LIST_STRING for v in value):
            raise bad(f"lists may only hold strings of up to {MAX_LIST_STRING} characters.")
        return list(value)
    raise bad("values must be a string, number, boolean, ISO date, list of strings or null.")


def _builtin_attribute(key: str, value: Any) -> Any:
    """Normalize the built-ins targeting relies on: country upper-case, timezone IANA."""
    if value is None or key not in ("country", "language", "timezone", "app_version"):
        return value
    where = f"attributes.{key}"
    if not isinstance(value, str):
        raise _invalid("INVALID_ATTRIBUTES", where, f"{where} must be a string.")
    if key == "country":
        return value.upper()
    if key == "timezone":
        return clean_timezone(value, field=where, code="INVALID_ATTRIBUTES")
    if key == "language":
        return value.replace("_", "-")
    return value


def clean_attributes(value: Any) -> dict[str, Any]:
    """Validate an attributes patch; None values mean "remove this key".

    Types are kept (string, number, boolean, list of strings); ISO dates and
    date-times are stored in the canonical forms the rule engine compares
    ("2024-05-01", "2024-05-01T08:00:00.000Z"; naive date-times are taken as UTC).
    Nested objects are refused, and so are the names rules reserve for columns.
    """
    if not isinstance(value, dict):
        raise _invalid("INVALID_ATTRIBUTES", "attributes", "attributes must be a JSON object.")
    if len(value) > MAX_ATTRIBUTES:
        raise _invalid("INVALID_ATTRIBUTES", "attributes", f"At most {MAX_ATTRIBUTES} attributes.")
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if not ATTRIBUTE_KEY_RE.fullmatch(key):
            raise _invalid(
                "INVALID_ATTRIBUTES",
                f"attributes.{key}",
                f"'{key}' is not an attribute name (letters, digits, _ . : -; max 64).",
            )
        if key in RESERVED_ATTRS:
            raise _invalid(
                "INVALID_ATTRIBUTES", f"attributes.{key}", f"'{key}' is reserved; pick another."
            )
        clean[key] = _builtin_attribute(key, _clean_attribute_value(key, item))
    return clean


def merge_attributes(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a cleaned patch; refuse a result over the per-user limits."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_ATTRIBUTES:
        raise _invalid(
            "INVALID_ATTRIBUTES", "attributes", f"A user has at most {MAX_ATTRIBUTES} attributes."
        )
    if len(json.dumps(merged, ensure_ascii=False).encode()) > MAX_ATTRIBUTES_BYTES:
        raise _invalid(
            "INVALID_ATTRIBUTES",
            "attributes",
            f"A user's attributes are limited to {MAX_ATTRIBUTES_BYTES} bytes of JSON.",
        )
    return merged


def clean_provider(value: Any) -> str:
    provider = value.lower() if isinstance(value, str) else value
    if provider not in PROVIDERS:
        raise _invalid(
            "INVALID_PROVIDER", "provider", "provider must be 'apns', 'fcm' or 'webpush'."
        )
    return str(provider)


def clean_platform(value: Any, provider: str) -> str:
    platform = value.lower() if isinstance(value, str) else value
    if platform not in PLATFORMS:
        raise _invalid(
            "INVALID_PLATFORM", "platform", "platform must be 'ios', 'android' or 'web'."
        )
    if platform not in PROVIDER_PLATFORMS[provider]:
        raise _invalid(
            "INVALID_PLATFORM",
            "platform",
            f"provider '{provider}' cannot deliver to platform '{platform}' "
            "(APNs is iOS only; web push is web only; FCM takes Android, iOS and web).",
        )
    return str(platform)


def clean_token(value: Any, provider: str, *, field: str = "token") -> str:
    """A token in the shape its provider issues; APNs hex is stored lower-case.

    Every writer of push_tokens (registration, import, test push) cleans with this,
    so one device never becomes two rows that differ only in case."""
    if value is None or (isinstance(value, str) and not value):
        raise _invalid("MISSING_TOKEN", field, f"{field} is required.")
    if not isinstance(value, str):
        raise _invalid("INVALID_TOKEN_FORMAT", field, f"{field} must be a string.")
    if provider == Provider.APNS:
        if not APNS_TOKEN_RE.fullmatch(value):
            raise _invalid(
                "INVALID_TOKEN_FORMAT",
                field,
                "An APNs device token is 64-200 hexadecimal characters.",
            )
        return value.lower()
    if provider == Provider.WEBPUSH:
        return clean_endpoint(value, field=field, code="INVALID_TOKEN_FORMAT")
    if not FCM_TOKEN_RE.fullmatch(value) or not FCM_TOKEN_MIN <= len(value) <= FCM_TOKEN_MAX:
        raise _invalid(
            "INVALID_TOKEN_FORMAT",
            field,
            f"An FCM registration token is {FCM_TOKEN_MIN}-{FCM_TOKEN_MAX} characters of "
            "A-Z a-z 0-9 _ - :.",
        )
    return value


def clean_endpoint(value: Any, *, field: str, code: str = "INVALID_SUBSCRIPTION") -> str:
    """A push service's endpoint URL: https, a host, no credentials, <= 2048 chars.

    Kept exactly as the browser gave it: it is the subscription's identity (the
    unique (project, provider, token) key), and push services compare it as given.
    """
    if not isinstance(value, str) or not value:
        raise _invalid(code, field, f"{field} is required (the subscription's https URL).")
    if len(value) > WEBPUSH_ENDPOINT_MAX:
        raise _invalid(code, field, f"{field} is limited to {WEBPUSH_ENDPOINT_MAX} characters.")
    if CONTROL_CHARS_RE.search(value) or " " in value or not value.isascii():
        raise _invalid(code, field, f"{field} must be a URL without spaces or control chars.")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _invalid(code, field, f"{field} is not a valid URL.") from exc
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise _invalid(code, field, f"{field} must be an https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise _invalid(code, field, f"{field} must not carry credentials (user:password@).")
    if port == 0 or parts.fragment:
        raise _invalid(code, field, f"{field} is not a push service URL.")
    return value


def _clean_b64url(value: Any, *, field: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid("INVALID_SUBSCRIPTION", field, f"{field} must be a base64url string.")
    try:
        return b64url_decode(value.rstrip("="))
    except ValueError as exc:
        raise _invalid("INVALID_SUBSCRIPTION", field, f"{field} is not base64url.") from exc


def clean_subscription(value: Any) -> tuple[str, dict[str, str]]:
    """A browser's PushSubscription.toJSON(): (endpoint, {"p256dh", "auth"}).

    p256dh must be an uncompressed P-256 point on the curve, auth 16 bytes; both are
    stored unpadded base64url. expirationTime is accepted and ignored (browsers send
    null; push services answer 404/410 when a subscription has expired).
    """
    where = "subscription"
    if not isinstance(value, dict):
        raise _invalid("INVALID_SUBSCRIPTION", where, "subscription must be a JSON object.")
    stray = sorted(str(key) for key in value if key not in SUBSCRIPTION_FIELDS)
    if stray:
        raise _invalid(
            "INVALID_SUBSCRIPTION", f"{where}.{stray[0]}", f"Unknown field '{stray[0]}'."
        )
    expiration = value.get("expirationTime")
    if expiration is not None and (
        isinstance(expiration, bool) or not isinstance(expiration, int | float)
    ):
        raise _invalid(
            "INVALID_SUBSCRIPTION",
            f"{where}.expirationTime",
            "expirationTime must be null or a number (milliseconds since the epoch).",
        )
    endpoint = clean_endpoint(value.get("endpoint"), field=f"{where}.endpoint")
    keys = value.get("keys")
    if not isinstance(keys, dict):
        raise _invalid(
            "INVALID_SUBSCRIPTION", f"{where}.keys", "keys must be an object {p256dh, auth}."
        )
    stray = sorted(str(key) for key in keys if key not in SUBSCRIPTION_KEYS)
    if stray:
        raise _invalid(
            "INVALID_SUBSCRIPTION", f"{where}.keys.{stray[0]}", f"Unknown key '{stray[0]}'."
        )
    p256dh_field = f"{where}.keys.p256dh"
    p256dh = _clean_b64url(keys.get("p256dh"), field=p256dh_field)
    if p256_public_point(b64url_encode(p256dh)) is None:
        raise _invalid(
            "INVALID_SUBSCRIPTION",
            p256dh_field,
            "p256dh must be a 65-byte uncompressed P-256 point (0x04 prefix) on the curve.",
        )
    auth_field = f"{where}.keys.auth"
    auth = _clean_b64url(keys.get("auth"), field=auth_field)
    if len(auth) != WEBPUSH_AUTH_BYTES:
        raise _invalid(
            "INVALID_SUBSCRIPTION",
            auth_field,
            f"auth must be {WEBPUSH_AUTH_BYTES} bytes (base64url, 22 characters).",
        )
    return endpoint, {"p256dh": b64url_encode(p256dh), "auth": b64url_encode(auth)}


def clean_locale(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 35 or not LOCALE_RE.fullmatch(value):
        raise _invalid("VALIDATION_ERROR", "locale", "locale must be a tag such as 'fr-FR'.")
    return value


def clean_timezone(value: Any, *, field: str = "timezone", code: str = "VALIDATION_ERROR") -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _invalid(code, field, f"{field} must be an IANA time zone such as 'Europe/Paris'.")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise _invalid(code, field, f"Unknown time zone '{value}'.") from exc
    return value


def clean_app_version(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_APP_VERSION:
        raise _invalid(
            "VALIDATION_ERROR",
            "app_version",
            f"app_version must be a string of <= {MAX_APP_VERSION}.",
        )
    return value


_KEEP = object()  # "external_id not given": a refresh keeps the token's current owner


@dataclass(frozen=True)
class TokenRegistration:
    """A cleaned registration. None in locale/timezone/app_version means "not given"."""

    token: str
    provider: str
    platform: str
    external_id: Any = _KEEP  # str, None (detach) or _KEEP
    locale: str | None = None
    timezone: str | None = None
    app_version: str | None = None
    # Web push only: the subscription's {"p256dh", "auth"}; None for APNs and FCM.
    keys: dict[str, str] | None = None

    @property
    def keeps_owner(self) -> bool:
        return self.external_id is _KEEP

    def profile_attributes(self) -> dict[str, Any]:
        """What the device tells us about its user: language, timezone, app_version."""
        profile: dict[str, Any] = {}
        if self.locale:
            profile["language"] = self.locale.replace("_", "-")
        if self.timezone:
            profile["timezone"] = self.timezone
        if self.app_version:
            profile["app_version"] = self.app_version
        return profile


TOKEN_FIELDS = (
    "token",
    "subscription",
    "provider",
    "platform",
    "external_id",
    "locale",
    "timezone",
    "app_version",
)


def _clean_device(payload: Mapping[str, Any]) -> tuple[str, str, str, dict[str, str] | None]:
    """(provider, platform, token, keys): a device token, or a web push subscription."""
    raw_provider = payload.get("provider")
    if isinstance(raw_provider, str) and raw_provider.lower() == Provider.WEBPUSH:
        provider = Provider.WEBPUSH.value
        if "token" in payload:
            raise _invalid(
                "INVALID_SUBSCRIPTION",
                "token",
                "Web push registers a subscription {endpoint, keys}, not a token.",
            )
        # The platform may be omitted: a web push subscription is a browser's.
        platform = clean_platform(payload.get("platform") or Platform.WEB.value, provider)
        if "subscription" not in payload:
            raise _invalid(
                "INVALID_SUBSCRIPTION",
                "subscription",
                "subscription is required: the browser's PushSubscription.toJSON().",
            )
        token, keys = clean_subscription(payload["subscription"])
        return provider, platform, token, keys
    if "token" not in payload:
        raise _invalid("MISSING_TOKEN", "token", "token is required.")
    provider = clean_provider(payload.get("provider"))
    if "subscription" in payload:
        raise _invalid(
            "VALIDATION_ERROR", "subscription", "subscription is for provider 'webpush' only."
        )
    platform = clean_platform(payload.get("platform"), provider)
    return provider, platform, clean_token(payload.get("token"), provider), None


def clean_token_registration(payload: Mapping[str, Any]) -> TokenRegistration:
    """Validate a registration body, in a fixed order so the same input gets the same error."""
    refuse_unknown_fields(payload, allowed=TOKEN_FIELDS)
    provider, platform, token, keys = _clean_device(payload)
    external_id: Any = _KEEP
    if "external_id" in payload:
        raw = payload["external_id"]
        external_id = None if raw is None else clean_external_id(raw)
    return TokenRegistration(
        token=token,
        provider=provider,
        platform=platform,
        external_id=external_id,
        locale=clean_locale(payload["locale"]) if payload.get("locale") is not None else None,
        timezone=(
            clean_timezone(payload["timezone"]) if payload.get("timezone") is not None else None
        ),
        app_version=(
            clean_app_version(payload["app_version"])
            if payload.get("app_version") is not None
            else None
        ),
        keys=keys,
    )


# -------------------------------------------------------------------- app users


def _locked_user(project: Project, external_id: str) -> tuple[AppUser, bool]:
    """The user row, locked for this transaction, created if missing.

    A concurrent first registration of the same external id loses the INSERT race on
    the unique constraint; the savepoint lets us read the winner's row instead.
    """
    user = AppUser.objects.select_for_update().filter(project=project, external_id=external_id)
    found = user.first()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            return AppUser.objects.create(project=project, external_id=external_id), True
    except IntegrityError:
        return user.get(), False


@transaction.atomic
def app_user_upsert(
    *,
    project: Project,
    external_id: str,
    attributes: Mapping[str, Any],
    now: datetime | None = None,
) -> tuple[AppUser, bool]:
    """Create or update a user; merge a cleaned attributes patch. Returns (user, created).

    Keys given are set, null removes a key, keys not given are kept. Calling it is a
    sign of life from the app, so last_seen_at moves too.
    """
    now = now or timezone.now()
    user, created = _locked_user(project, external_id)
    user.attributes = merge_attributes(user.attributes or {}, attributes)
    user.last_seen_at = now
    user.save(update_fields=["attributes", "last_seen_at"])
    return user, created


# ------------------------------------------------------------------------ tokens


@transaction.atomic
def token_register(
    *, project: Project, registration: TokenRegistration, now: datetime | None = None
) -> tuple[PushToken, bool]:
    """Register or refresh a device token. Returns (token, created). Idempotent.

    Re-registering reactivates a deactivated token (clearing invalidated_at and the
    reason), replaces a web push subscription's keys with the ones given, and moves it
    to the user named by external_id; a registration without external_id keeps the
    current owner, `"external_id": null` detaches it.
    """
    if registration.provider == Provider.WEBPUSH and registration.keys is None:
        # Only a full subscription makes a web push token: without keys nothing can
        # be encrypted to it (a test push naming an unknown endpoint ends here).
        raise _invalid(
            "INVALID_SUBSCRIPTION",
            "subscription",
            "Register the browser's subscription (endpoint and keys) first.",
        )
    now = now or timezone.now()
    # The token row before the user row: every token writer locks in that order (the
    # active_token_kinds triggers lock users after the token rows they change), so a
    # registration racing the fan-out's invalidation of the same token waits for it
    # instead of deadlocking with it.
    lookup = {"project": project, "provider": registration.provider, "token": registration.token}
    token = PushToken.objects.select_for_update().filter(**lookup).first()
    user: AppUser | None = None
    if isinstance(registration.external_id, str):
        user, _ = _locked_user(project, registration.external_id)
        profile = registration.profile_attributes()
        user.attributes = merge_attributes(user.attributes or {}, profile)
        user.last_seen_at = now
        user.save(update_fields=["attributes", "last_seen_at"])
    created = False
    if token is None:
        try:
            with transaction.atomic():
                token = PushToken.objects.create(
                    **lookup,
                    app_user=user,
                    platform=registration.platform,
                    locale=registration.locale or "",
                    timezone=registration.timezone or "",
                    app_version=registration.app_version or "",
                    keys=registration.keys,
                )
                created = True
        except IntegrityError:
            token = PushToken.objects.select_for_update().get(**lookup)
    if not created:
        assert token is not None
        token.platform = registration.platform
        token.active = True
        token.invalidated_at = None
        token.invalid_reason = ""
        token.last_registered_at = now
        if not registration.keeps_owner:
            token.app_user = user
        for field in ("locale", "timezone", "app_version", "keys"):
            if getattr(registration, field) is not None:
                setattr(token, field, getattr(registration, field))
        token.save(
            update_fields=[
                "platform",
                "active",
                "invalidated_at",
                "invalid_reason",
                "last_registered_at",
                "app_user",
                "locale",
                "timezone",
                "app_version",
                "keys",
            ]
        )
    if registration.keeps_owner and token.app_user_id is not None:
        AppUser.objects.filter(pk=token.app_user_id).update(last_seen_at=now)
    return token, created


def token_unregister(
    *, project: Project, token: str, provider: str | None = None, now: datetime | None = None
) -> int:
    """Deactivate a token (reason "unregistered"); 404 when the project has no such token.

    Without `provider` every provider's row with this token string is deactivated
    (APNs tokens are matched case-insensitively, as they are stored lower-case).
    Unregistering an inactive token again is a no-op, not an error.
    """
    now = now or timezone.now()
    candidates = {token, token.lower()} if APNS_TOKEN_RE.fullmatch(token) else {token}
    rows = PushToken.objects.filter(project=project, token__in=candidates)
    if provider is not None:
        rows = rows.filter(provider=provider)
    if not rows.exists():
        raise NotFound("Token not found.")
    return rows.filter(active=True).update(
        active=False, invalidated_at=now, invalid_reason=UNREGISTERED
    )


# ---------------------------------------------------------------------- segments

SEGMENT_FIELDS = ("name", "description", "rules")
SEGMENT_READ_ONLY_FIELDS = (
    "id",
    "project_id",
    "member_count",
    "evaluated_at",
    "created_at",
    "updated_at",
)


class SegmentFields(TypedDict, total=False):
    """Clean segment fields, as clean_segment_fields returns them and the services
    take them (on PATCH only those given)."""

    name: str
    description: str
    rules: dict[str, Any]


def clean_segment_fields(payload: Mapping[str, Any], *, partial: bool) -> SegmentFields:
    """name (required on create), description, rules (validated: errors carry the path)."""
    if partial and not payload:
        raise InvalidInput("Give at least one field to update.", code="EMPTY_UPDATE")
    refuse_unknown_fields(payload, allowed=SEGMENT_FIELDS, read_only=SEGMENT_READ_ONLY_FIELDS)
    clean: dict[str, Any] = {}
    if "name" in payload or not partial:
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("MISSING_NAME", "name", "name is required.")
        if len(name) > MAX_SEGMENT_NAME:
            raise _invalid("VALIDATION_ERROR", "name", f"name is limited to {MAX_SEGMENT_NAME}.")
        clean["name"] = name
    if "description" in payload:
        description = payload["description"]
        if not isinstance(description, str) or len(description) > MAX_SEGMENT_DESCRIPTION:
            raise _invalid(
                "VALIDATION_ERROR",
                "description",
                f"description must be a string of <= {MAX_SEGMENT_DESCRIPTION} characters.",
            )
        clean["description"] = description
    if "rules" in payload or not partial:
        if payload.get("rules") is None:
            raise _invalid("MISSING_RULES", "rules", "rules is required.")
        clean["rules"] = validate_rules(payload["rules"])
    return cast(SegmentFields, clean)


@transaction.atomic
def segment_create(*, project: Project, fields: SegmentFields) -> Segment:
    """Create a segment from cleaned fields; its count comes with the next refresh."""
    segment = Segment.objects.create(project=project, **fields)
    audit_record(
        action="segment.created",
        project_id=project.pk,
        obj=segment,
        changes=with_fields(list(fields)),
    )
    return segment


def _get_segment(project: Project, segment_id: uuid.UUID) -> Segment:
    try:
        return Segment.objects.get(pk=segment_id, project=project)
    except Segment.DoesNotExist as exc:
        raise NotFound("Segment not found.") from exc


@transaction.atomic
def segment_update(*, project: Project, segment_id: uuid.UUID, fields: SegmentFields) -> Segment:
    """PATCH semantics; a rules change forgets the cached count until the next refresh."""
    segment = _get_segment(project, segment_id)
    for name, value in fields.items():
        setattr(segment, name, value)
    changed = [*fields, "updated_at"]
    if "rules" in fields:
        segment.member_count = None
        segment.evaluated_at = None
        changed += ["member_count", "evaluated_at"]
    segment.save(update_fields=changed)
    audit_record(
        action="segment.updated",
        project_id=project.pk,
        obj=segment,
        changes=with_fields(list(fields)),
    )
    return segment


def segment_delete(*, project: Project, segment_id: uuid.UUID) -> None:
    """Delete, unless a campaign still points at it (PushCampaign.segment is PROTECT)."""
    segment = _get_segment(project, segment_id)
    try:
        with transaction.atomic():
            segment.delete()
            audit_record(
                action="segment.deleted",
                project_id=project.pk,
                object_type="segment",
                object_id=segment_id,
                object_repr=segment.name,
            )
    except ProtectedError as exc:
        raise Conflict(
            "The segment is used by a campaign; change the campaign's segment first.",
            code="SEGMENT_IN_USE",
            details={"campaign_ids": sorted(str(obj.pk) for obj in exc.protected_objects)},
        ) from exc


def segment_refresh_count(*, segment: Segment, now: datetime | None = None) -> int:
    """Recount one segment's members (one COUNT) and store it with the time.

    StoredRulesInvalid when the segment's stored rules no longer validate.
    """
    now = now or timezone.now()
    members = AppUser.objects.filter(project_id=segment.project_id).filter(
        compile_rules(stored_rules(segment), now=now)
    )
    count = members.count()
    Segment.objects.filter(pk=segment.pk).update(member_count=count, evaluated_at=now)
    return count


def segment_refresh_counts(*, now: datetime | None = None) -> int:
    """Recount every segment; returns how many were refreshed.

    A segment whose stored rules no longer validate (written around the validator)
    is skipped and logged rather than stopping the others; its API answer and the
    console say so (`rules_error`).
    """
    now = now or timezone.now()
    refreshed = 0
    for segment in Segment.objects.only("id", "project_id", "name", "rules").iterator():
        try:
            segment_refresh_count(segment=segment, now=now)
        except StoredRulesInvalid as exc:
            logger.warning("segment %s has invalid rules, not counted: %s", segment.pk, exc)
            continue
        refreshed += 1
    return refreshed
