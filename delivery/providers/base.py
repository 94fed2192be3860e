"""The contract between Herald's delivery orchestration and the provider senders.

Senders are pure transport: they take already-built payloads, talk to one provider,
and *classify* each answer into an :class:`Outcome`. They never retry and never touch
the database; the orchestration layer (``delivery/services.py``) retries ``RETRY``
outcomes with backoff, deactivates tokens on ``INVALID_TOKEN`` and records the rest.
That split keeps the senders testable against the simulators alone and lets the
retry policy live in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """What the orchestration layer should do with a delivery after one attempt."""

    SENT = "sent"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 -- final: deactivate the token
    FAILED = "failed"  # final: record the reason, keep the token
    RETRY = "retry"  # may succeed later: retry with backoff (honour retry_after)


@dataclass(frozen=True, slots=True)
class OutgoingPush:
    """One message to one device token.

    ``payload`` is provider-specific and already built by ``delivery/payloads.py``:
    for APNs the JSON body (``{"aps": ...}``); for FCM the HTTP v1 ``message`` object
    *without* ``token`` (the sender adds it, so a payload can be shared by a batch).
    ``headers`` is APNs only (apns-push-type, apns-priority, apns-expiration,
    apns-collapse-id, optionally apns-id); the topic always comes from the config.

    Web push: ``token`` is the subscription's endpoint URL, ``keys`` its
    ``{"p256dh", "auth"}`` (base64url, no padding), ``payload`` the JSON the service
    worker receives (encrypted by the sender), and ``headers`` the RFC 8030 ``TTL``,
    ``Urgency`` and ``Topic`` (see ``delivery.providers.webpush.webpush_headers``).
    """

    ref: str
    token: str
    payload: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PushResult:
    """The classified answer for one :class:`OutgoingPush` (``ref`` echoed back).

    ``reason`` is the provider's own reason code (``Unregistered``, ``UNREGISTERED``,
    ``TooManyRequests``...) or a transport word (``timeout``, ``connection_error``),
    so operators can grep it; ``retry_after`` is in seconds, from Retry-After.
    """

    ref: str
    outcome: Outcome
    provider_message_id: str | None
    reason: str
    status_code: int | None = None
    retry_after: float | None = None


class ProviderSender(Protocol):
    """What every provider sender offers. Instances are long-lived and bound to the
    event loop they were first used on (see ``delivery/providers/runtime.py``)."""

    async def send_many(self, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
        """Send concurrently; one result per push, in the same order. Never raises for
        per-message problems: network errors and timeouts become ``RETRY``."""
        ...

    async def close(self) -> None:
        """Release connections; the sender may not be used afterwards."""
        ...


DEFAULT_APNS_CONCURRENCY = 500
DEFAULT_FCM_CONCURRENCY = 64
DEFAULT_WEBPUSH_CONCURRENCY = 128
DEFAULT_WEBPUSH_CONNECTIONS_PER_ORIGIN = 64
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    """Everything needed to reach APNs for one app (topic = bundle id).

    Token auth (``team_id`` + ``key_id`` + ``auth_key_pem``, the .p8 contents) is
    preferred; ``client_cert_pem`` (certificate + key, PEM) is the legacy alternative.
    ``endpoint`` ("host:port") overrides Apple's host, e.g. to reach the simulator,
    whose self-signed CA is trusted through ``ca_file`` (in addition to the system
    CAs; verification is never turned off). Hashable: senders are cached per config.
    """

    topic: str
    team_id: str = ""
    key_id: str = ""
    auth_key_pem: str = field(default="", repr=False)
    client_cert_pem: str = field(default="", repr=False)
    use_sandbox: bool = False
    endpoint: str = ""
    ca_file: str = ""
    concurrency: int = DEFAULT_APNS_CONCURRENCY
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not self.topic:
            raise ValueError("ApnsConfig.topic (the app's bundle id) is required")
        uses_token = bool(self.team_id or self.key_id or self.auth_key_pem)
        if uses_token and not (self.team_id and self.key_id and self.auth_key_pem):
            raise ValueError("APNs token auth needs team_id, key_id and auth_key_pem")
        if uses_token == bool(self.client_cert_pem):
            raise ValueError("APNs needs exactly one of token auth or client_cert_pem")
        if self.concurrency < 1 or self.timeout_seconds <= 0:
            raise ValueError("concurrency and timeout_seconds must be positive")

    @property
    def uses_token_auth(self) -> bool:
        return bool(self.auth_key_pem)


@dataclass(frozen=True, slots=True)
class FcmConfig:
    """Everything needed to reach FCM HTTP v1 for one Firebase project.

    ``service_account_info`` is the parsed service-account JSON; its ``project_id``
    names the FCM project and its ``token_uri`` is where OAuth2 tokens come from
    (which is how the simulator can issue them). ``endpoint`` overrides the base URL
    (default https://fcm.googleapis.com). The dict is excluded from hashing and
    comparison; a fingerprint of its canonical JSON stands in for it.
    """

    service_account_info: Mapping[str, Any] = field(hash=False, compare=False, repr=False)
    endpoint: str = ""
    ca_file: str = ""
    concurrency: int = DEFAULT_FCM_CONCURRENCY
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    fingerprint: str = field(init=False, default="")

    def __post_init__(self) -> None:
        for key in ("project_id", "client_email", "private_key", "token_uri"):
            if not self.service_account_info.get(key):
                raise ValueError(f"FCM service account JSON lacks {key!r}")
        if self.concurrency < 1 or self.timeout_seconds <= 0:
            raise ValueError("concurrency and timeout_seconds must be positive")
        canonical = json.dumps(dict(self.service_account_info), sort_keys=True)
        object.__setattr__(self, "fingerprint", hashlib.sha256(canonical.encode()).hexdigest())

    @property
    def project_id(self) -> str:
        return str(self.service_account_info["project_id"])


@dataclass(frozen=True, slots=True)
class WebPushConfig:
    """A project's VAPID identity (RFC 8292) for sending web push.

    ``vapid_private_key`` is the PEM of an EC P-256 private key and
    ``vapid_public_key`` the base64url (no padding) of its 65-byte uncompressed
    point, the ``applicationServerKey`` browsers subscribed with; ``subject`` is the
    operator contact (``mailto:`` or ``https:``) push services may use. Unlike APNs
    and FCM there is no single provider host: every subscription names its own push
    service, and the sender keeps one connection pool per origin, each capped at
    ``connections_per_origin``; ``concurrency`` bounds requests in flight overall.
    ``endpoint`` ("https://host:port") sends every request to that origin instead
    (tests, a proxy; the JWT's ``aud`` is then that origin); ``ca_file`` is trusted in
    addition to the system CAs. ``default_ttl_seconds`` is the TTL header when a push
    names none (RFC 8030 requires one).
    """

    vapid_private_key: str = field(repr=False)
    vapid_public_key: str
    subject: str
    endpoint: str = ""
    ca_file: str = ""
    concurrency: int = DEFAULT_WEBPUSH_CONCURRENCY
    connections_per_origin: int = DEFAULT_WEBPUSH_CONNECTIONS_PER_ORIGIN
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    default_ttl_seconds: int = 4 * 7 * 24 * 3600

    def __post_init__(self) -> None:
        if not (self.vapid_private_key and self.vapid_public_key):
            raise ValueError("WebPushConfig needs the VAPID private and public keys")
        if not self.subject.startswith(("mailto:", "https://")):
            raise ValueError("WebPushConfig.subject must be a mailto: or https: URI")
        if self.endpoint and not self.endpoint.startswith("https://"):
            raise ValueError("WebPushConfig.endpoint must be an https:// origin")
        if (
            self.concurrency < 1
            or self.connections_per_origin < 1
            or self.timeout_seconds <= 0
            or self.default_ttl_seconds < 0
        ):
            raise ValueError("concurrency, connections and timeouts must be positive")


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds (what APNs/FCM send) or an HTTP-date.

    Unparseable values give None, so the orchestration's own backoff applies.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 7231 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
