"""A local FCM HTTP v1 endpoint plus the OAuth2 token endpoint it trusts.

aiohttp over HTTPS with HTTP/1.1 keep-alive (FCM v1 accepts it, and it is what the
sender uses). ``POST /token`` implements the JWT-bearer grant google-auth performs
for a service account (RS256 assertion checked against the account's public key);
``POST /v1/projects/{project}/messages:send`` checks the bearer token and project,
validates the message like FCM does (exactly one target, string data values,
android priority/ttl, notification fields) and answers ``{"name": ...}`` or a
Google-style error with an ``FcmError`` detail — the body the sender classifies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import Any

import jwt
from aiohttp import web

from delivery.simulators.behaviour import Behaviour, ProviderStats, verdict_key
from delivery.simulators.credentials import GOOGLE_TOKEN_AUDIENCE

logger = logging.getLogger(__name__)

ACCESS_TOKEN_LIFETIME_SECONDS = 3600
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_:\-]{20,4096}$")
_TTL_RE = re.compile(r"^\d+(\.\d{1,9})?s$")
_MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
    }
)
_NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
_ANDROID_STRING_FIELDS = frozenset({"collapse_key", "restricted_package_name", "ttl"})
_ANDROID_NOTIFICATION_STRINGS = frozenset(
    {"title", "body", "icon", "color", "sound", "tag", "click_action", "image", "channel_id"}
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
_FAULT_CODES = {429: "QUOTA_EXCEEDED", 500: "INTERNAL", 502: "UNAVAILABLE"}


class _Invalid(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _require_strings(value: Any, path: str, keys: frozenset[str] | None = None) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"Invalid value at '{path}': expected an object", path)
    for key, item in value.items():
        if keys is not None and key not in keys:
            continue
        if not isinstance(item, str):
            raise _Invalid(f"Invalid value at '{path}.{key}' (TYPE_STRING)", f"{path}.{key}")


def validate_message(message: Any) -> None:
    """Raise :class:`_Invalid` like FCM's INVALID_ARGUMENT checks (a useful subset)."""
    if not isinstance(message, dict):
        raise _Invalid("Invalid JSON payload received: 'message' must be an object", "message")
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        raise _Invalid(
            f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'message'",
            f"message.{unknown[0]}",
        )
    targets = [key for key in ("token", "topic", "condition") if message.get(key)]
    if len(targets) != 1:
        raise _Invalid("Exactly one of token, topic or condition must be specified", "message")
    if "token" in targets and (
        not isinstance(message["token"], str) or not _TOKEN_RE.match(message["token"])
    ):
        raise _Invalid(
            "The registration token is not a valid FCM registration token", "message.token"
        )
    if "data" in message:
        _require_strings(message["data"], "message.data")
    if "notification" in message:
        _require_strings(message["notification"], "message.notification", _NOTIFICATION_FIELDS)
    android = message.get("android")
    if android is not None:
        if not isinstance(android, dict):
            raise _Invalid("Invalid value at 'message.android'", "message.android")
        _require_strings(android, "message.android", _ANDROID_STRING_FIELDS)
        priority = android.get("priority")
        if priority is not None and str(priority).lower() not in ("normal", "high"):
            raise _Invalid(
                f"Invalid value at 'message.android.priority' ({priority})",
                "message.android.priority",
            )
        ttl = android.get("ttl")
        if ttl is not None and not _TTL_RE.match(ttl):
            raise _Invalid("Invalid value at 'message.android.ttl'", "message.android.ttl")
        if "data" in android:
            _require_strings(android["data"], "message.android.data")
        if "notification" in android:
            _require_strings(
                android["notification"],
                "message.android.notification",
                _ANDROID_NOTIFICATION_STRINGS,
            )
    apns = message.get("apns")
    if apns is not None:
        if not isinstance(apns, dict):
            raise _Invalid("Invalid value at 'message.apns'", "message.apns")
        if "headers" in apns:
            _require_strings(apns["headers"], "message.apns.headers")
        if "payload" in apns and not isinstance(apns["payload"], dict):
            raise _Invalid("Invalid value at 'message.apns.payload'", "message.apns.payload")
    for key in ("webpush", "fcm_options"):
        if key in message and not isinstance(message[key], dict):
            raise _Invalid(f"Invalid value at 'message.{key}'", f"message.{key}")


def google_error(
    status: int,
    message: str,
    *,
    fcm_code: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": fcm_code})
    if field:
        details.append(
            {
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        body["details"] = details
    return web.Response(
        status=status,
        body=json.dumps({"error": body}).encode(),
        content_type="application/json",
        headers=headers,
    )


class FcmSimulator:
    """Request logic and state for the simulated FCM project."""

    def __init__(
        self,
        *,
        service_account_info: Mapping[str, Any],
        public_key_pem: str,
        behaviour: Behaviour | None = None,
    ) -> None:
        self.project_id = str(service_account_info["project_id"])
        self.client_email = str(service_account_info["client_email"])
        self.private_key_id = str(service_account_info.get("private_key_id", ""))
        self.token_uri = str(service_account_info["token_uri"])
        self.public_key_pem = public_key_pem
        self.behaviour = behaviour or Behaviour()
        self.stats = ProviderStats("fcm")
        # Accepted messages for the device behaviour (reporting.py); None when it is off.
        self.report_sink: list[tuple[str, Any]] | None = None
        self._access_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self._message_ids = itertools.count(1)
        self._verdicts: dict[bytes, _Invalid | None] = {}

    def _validate(self, raw: bytes, message: Any, token: str) -> _Invalid | None:
        """``validate_message`` with a cache: a campaign sends the same message to
        every token, so the verdict is keyed by the body minus the token (whose
        format is checked on its own, every time)."""
        if token and not _TOKEN_RE.match(token):
            return _Invalid(
                "The registration token is not a valid FCM registration token", "message.token"
            )
        key = verdict_key(raw.replace(token.encode(), b"", 1) if token else raw)
        if key in self._verdicts:
            return self._verdicts[key]
        try:
            validate_message(message)
            verdict = None
        except _Invalid as invalid:
            verdict = invalid
        if len(self._verdicts) >= 256:
            self._verdicts.clear()
        self._verdicts[key] = verdict
        return verdict

    def revoke_access_tokens(self) -> None:
        self._access_tokens.clear()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project_id}/messages:send", self.send)
        return app

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            return self._oauth_error("invalid_request", "Missing assertion.")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key_pem,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return self._oauth_error("invalid_grant", f"Invalid JWT Signature. ({exc})")
        if self.private_key_id and header.get("kid") != self.private_key_id:
            return self._oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != self.client_email:
            return self._oauth_error("invalid_grant", "Invalid issuer.")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return self._oauth_error("invalid_scope", "Missing the firebase.messaging scope.")
        access_token = "ya29.sim-" + secrets.token_urlsafe(32)
        now = time.monotonic()
        self._access_tokens = {t: exp for t, exp in self._access_tokens.items() if exp > now}
        self._access_tokens[access_token] = now + ACCESS_TOKEN_LIFETIME_SECONDS
        self.stats.auth_tokens += 1
        return web.json_response(
            {
                "access_token": access_token,
                "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
                "token_type": "Bearer",
            }
        )

    @staticmethod
    def _oauth_error(error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=400)

    async def send(self, request: web.Request) -> web.StreamResponse:
        response = self._handle_send(request, await request.read())
        latency = self.behaviour.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000.0)
        return response

    def _handle_send(self, request: web.Request, raw: bytes) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        scheme, _, access_token = authorization.partition(" ")
        expiry = self._access_tokens.get(access_token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= time.monotonic():
            self.stats.record(401, "")
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        if request.match_info["project_id"] != self.project_id:
            self.stats.record(403, "")
            return google_error(
                403, "Permission 'cloudmessaging.messages.create' denied on resource."
            )
        try:
            document = json.loads(raw)
        except ValueError:
            self.stats.record(400, "")
            return google_error(400, "Invalid JSON payload received.", fcm_code="INVALID_ARGUMENT")
        message = document.get("message") if isinstance(document, dict) else None
        token = message.get("token") if isinstance(message, dict) else None
        token = token if isinstance(token, str) else ""
        invalid = self._validate(raw, message, token)
        if invalid is not None:
            self.stats.record(400, token)
            return google_error(
                400, invalid.message, fcm_code="INVALID_ARGUMENT", field=invalid.field
            )
        assert isinstance(message, dict)
        behaviour = self.behaviour
        if token and token in behaviour.foreign_tokens:
            self.stats.record(403, token)
            return google_error(403, "SenderId mismatch", fcm_code="SENDER_ID_MISMATCH")
        injected = behaviour.injected_status(token)
        if injected is not None:
            self.stats.record(injected, token)
            headers = None
            if injected in (429, 503) and behaviour.retry_after is not None:
                headers = {"Retry-After": f"{behaviour.retry_after:g}"}
            message_text = (
                "Quota exceeded for sending messages."
                if injected == 429
                else "The service is currently unavailable."
            )
            return google_error(
                injected,
                message_text,
                fcm_code=_FAULT_CODES.get(injected, "UNAVAILABLE"),
                headers=headers,
            )
        if token and token in behaviour.invalid_tokens:
            self.stats.record(404, token)
            return google_error(404, "Requested entity was not found.", fcm_code="UNREGISTERED")
        android = message.get("android")
        collapse_key = android.get("collapse_key", "") if isinstance(android, dict) else ""
        self.stats.record(
            200, token, str(collapse_key), message if behaviour.keep_payloads else None
        )
        if self.report_sink is not None:
            self.report_sink.append(("fcm", message))
        name = f"projects/{self.project_id}/messages/0:{time.time_ns()}%{next(self._message_ids):x}"
        return web.Response(
            body=json.dumps({"name": name}).encode(), content_type="application/json"
        )


def fcm_server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context
