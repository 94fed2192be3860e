"""Test pushes: one synchronous send to one device, to check credentials and tokens.

Contract (DESIGN.md): target by app_user_id (the user's most recent active token)
or by device_token + provider; answers {delivery_id, provider,
provider_message_id, status} or PUSH_FAILED 502 with the same details.

A web push subscription cannot be reached from its endpoint alone (the payload is
encrypted with its keys): ``device_token`` + ``provider: webpush`` names a
subscription registered before, and ``subscription`` (a browser's
``PushSubscription.toJSON()``, as registration takes it) registers one and sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from campaigns.content import CONTENT_FIELDS, check_content_size, push_content
from campaigns.validation import VALIDATORS, check_content, silent_priority_default
from core.api import refuse_unknown_fields
from core.audit import audit_record
from core.errors import ApplicationError, InvalidInput, NotFound
from core.models import Project
from delivery.models import Provider, PushToken
from delivery.services import delivery_send_one
from segments.services import (
    TokenRegistration,
    clean_platform,
    clean_provider,
    clean_subscription,
    clean_token,
    token_register,
)

TARGET_FIELDS = {"app_user_id", "device_token", "provider", "platform", "subscription"}
ALLOWED = {*CONTENT_FIELDS, *TARGET_FIELDS}


class PushFailed(ApplicationError):
    status = 502
    code = "PUSH_FAILED"


def validate_test_push(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Clean test-push fields: content through the campaign validators and the
    campaign size check (the same owners, the same codes), plus the target."""
    refuse_unknown_fields(payload, allowed=ALLOWED)
    clean: dict[str, Any] = {
        "title": VALIDATORS["title"](payload.get("title")),
        "body": VALIDATORS["body"](payload.get("body")),
    }
    for name in CONTENT_FIELDS:  # in order, so several errors always give the same one
        if name not in ("title", "body") and name in payload:
            clean[name] = VALIDATORS[name](payload[name])
    user_id, token = payload.get("app_user_id"), payload.get("device_token")
    subscription = payload.get("subscription")
    if user_id in (None, "") and token in (None, "") and subscription is None:
        raise InvalidInput(
            "Give app_user_id, device_token with provider, or a web push subscription.",
            code="MISSING_TARGET",
        )
    if subscription is not None and (
        user_id not in (None, "")
        or token not in (None, "")
        or payload.get("provider") not in (None, "", Provider.WEBPUSH)
    ):
        raise InvalidInput(
            "subscription is a target of its own (web push): give it without app_user_id, "
            "device_token or another provider.",
            details={"field": "subscription"},
        )
    if user_id not in (None, ""):
        try:
            clean["app_user_id"] = uuid.UUID(str(user_id))
        except ValueError as exc:
            raise InvalidInput(
                "app_user_id must be a UUID.", details={"field": "app_user_id"}
            ) from exc
    elif subscription is not None:
        endpoint, keys = clean_subscription(subscription)
        platform = clean_platform(payload.get("platform") or "web", Provider.WEBPUSH)
        clean.update(device_token=endpoint, provider=Provider.WEBPUSH, platform=platform, keys=keys)
    else:
        # The device is cleaned by the token owner, as a registration would be.
        provider = payload.get("provider")
        if provider in (None, ""):
            raise InvalidInput("device_token needs a provider.", code="MISSING_PROVIDER")
        provider = clean_provider(provider)
        platform = clean_platform(
            payload.get("platform") or DEFAULT_PLATFORM.get(provider, "android"), provider
        )
        if isinstance(token, str) and not token.strip():
            raise InvalidInput("device_token is empty.", code="NO_TOKEN")
        token = clean_token(
            token.strip() if isinstance(token, str) else token, provider, field="device_token"
        )
        clean.update(device_token=token, provider=provider, platform=platform)
    silent_priority_default(clean)
    check_content(clean)
    check_content_size(push_content(clean))
    return clean


# A test push naming a device token without its platform.
DEFAULT_PLATFORM = {"apns": "ios", "fcm": "android", "webpush": "web"}


def _resolve_token(project: Project, fields: Mapping[str, Any]) -> PushToken:
    if "app_user_id" in fields:
        token = (
            PushToken.objects.filter(
                project=project, app_user_id=fields["app_user_id"], active=True
            )
            .select_related("app_user")
            .order_by("-last_registered_at", "-id")
            .first()
        )
        if token is None:
            raise NotFound("That app user has no active push token.", code="NO_ACTIVE_TOKEN")
        return token
    keys = fields.get("keys")
    existing = PushToken.objects.filter(
        project=project, provider=fields["provider"], token=fields["device_token"]
    ).first()
    if existing is not None and (keys is None or keys == existing.keys):
        return existing  # sent as it is: a test push is no sign of life from the device
    # New, or a subscription given with other keys: stored as registration stores it
    # (which refuses a web push endpoint without keys: nothing could be encrypted to it).
    token, _ = token_register(
        project=project,
        registration=TokenRegistration(
            token=fields["device_token"],
            provider=fields["provider"],
            platform=fields["platform"],
            keys=keys,
        ),
    )
    return token


def test_push_send(*, project: Project, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Send one test push now; PUSH_FAILED (502) when the provider refuses it.

    Audited once the provider answered, refused or not (the delivery row stays):
    which token and user, never the content."""
    token = _resolve_token(project, fields)
    outcome = delivery_send_one(project=project, token=token, content=push_content(fields))
    body = {
        "delivery_id": outcome.delivery.pk,
        "provider": token.provider,
        "provider_message_id": outcome.result.provider_message_id,
        "status": outcome.delivery.status,
    }
    audit_record(
        action="test_push.sent",
        project_id=project.pk,
        object_type="pushdelivery",
        object_id=outcome.delivery.pk,
        object_repr=f"test push to {token.provider} token {token.pk}",
        changes={
            "token_id": token.pk,
            "app_user_id": str(token.app_user_id) if token.app_user_id else None,
            "provider": token.provider,
            "status": outcome.delivery.status,
        },
    )
    if outcome.delivery.status != "sent":
        raise PushFailed(
            f"The provider refused the push: {outcome.result.reason}",
            details={**body, "invalid_token": outcome.delivery.status == "invalid_token"},
        )
    return body
