"""Web Push sender (RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID).

Pure transport like the APNs and FCM senders: it takes a subscription (endpoint URL
as ``OutgoingPush.token``, ``{"p256dh", "auth"}`` as ``OutgoingPush.keys``) and a JSON
payload, encrypts the payload for that browser, POSTs it to the browser's push
service and classifies the answer. No models, no settings.

Choices (measured, docs/decisions.md "Web push transport"):

- ``cryptography`` directly, not pywebpush / http_ece / py-vapid: pywebpush is
  synchronous over ``requests`` and re-signs the VAPID JWT for every message;
  http_ece does the same ECDH + HKDF + AES-GCM steps with more copies. Encryption is
  one ephemeral P-256 key, one ECDH, four HMAC-SHA-256 and one AES-128-GCM record.
- One aiohttp keep-alive pool per push-service origin (a campaign reaches FCM,
  Mozilla autopush, Apple, WNS... at once), each capped at ``connections_per_origin``;
  the least recently used idle pools are closed past ``MAX_ORIGIN_POOLS`` (WNS has
  many hosts).
- One VAPID JWT per audience origin, signed once and reused until
  ``VAPID_REFRESH_MARGIN_SECONDS`` before it expires (12 h lifetime: RFC 8292 allows
  at most 24 h and some services refuse more than 12).

Answers: 201/200/202 -> SENT (``Location`` is the message id); 404/410 -> the
subscription is gone (INVALID_TOKEN); 413 -> FAILED "payload too large"; other 4xx ->
FAILED with the service's reason; 429/5xx, timeouts and network errors -> RETRY
honouring Retry-After. A subscription whose keys are missing fails (a wiring problem
must not retire every subscription); keys that are present but malformed retire it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from delivery.providers import latency
from delivery.providers.base import (
    Outcome,
    OutgoingPush,
    PushResult,
    WebPushConfig,
    retry_after_seconds,
)
from delivery.providers.tls import shared_client_ssl_context

logger = logging.getLogger(__name__)

# RFC 8188 header: salt (16) + record size (4) + key id length (1) + key id, which for
# RFC 8291 is the sender's 65-byte uncompressed P-256 public key.
RECORD_SIZE = 4096
HEADER_BYTES = 16 + 4 + 1 + 65
TAG_BYTES = 16
PADDING_DELIMITER_BYTES = 1
ENCRYPTION_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES + PADDING_DELIMITER_BYTES  # 103
# What push services accept as a body (RFC 8030 section 7.2 asks for at least 4096).
MAX_ENCRYPTED_BYTES = 4096
MAX_PLAINTEXT_BYTES = MAX_ENCRYPTED_BYTES - ENCRYPTION_OVERHEAD_BYTES  # 3993

VAPID_LIFETIME_SECONDS = 12 * 3600
VAPID_REFRESH_MARGIN_SECONDS = 3600
MAX_ORIGIN_POOLS = 64
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC_MAX_CHARS = 32

_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PRIORITY_URGENCY = {"high": "high", "normal": "normal"}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Base64url with or without padding (browsers send none); ValueError if bad."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
        raise ValueError("not base64url")
    value = value.rstrip("=")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class InvalidSubscription(ValueError):
    """The subscription's endpoint or keys cannot be used (RFC 8291 section 3)."""


@dataclass(frozen=True, slots=True)
class SubscriptionKeys:
    """A browser's keys, decoded: its P-256 point (65 bytes) and 16-byte auth secret."""

    public_key: ec.EllipticCurvePublicKey
    public_bytes: bytes
    auth_secret: bytes


def parse_subscription_keys(keys: Mapping[str, str]) -> SubscriptionKeys:
    try:
        public_bytes = b64url_decode(keys["p256dh"])
        auth_secret = b64url_decode(keys["auth"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSubscription("p256dh and auth must be base64url") from exc
    if len(public_bytes) != 65 or public_bytes[0] != 4:
        raise InvalidSubscription("p256dh must be a 65-byte uncompressed P-256 point")
    if len(auth_secret) != 16:
        raise InvalidSubscription("auth must be 16 bytes")
    try:
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_bytes)
    except ValueError as exc:
        raise InvalidSubscription("p256dh is not a point on P-256") from exc
    return SubscriptionKeys(public_key, public_bytes, auth_secret)


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _derive(
    ecdh_secret: bytes, auth_secret: bytes, ua_public: bytes, as_public: bytes, salt: bytes
) -> tuple[bytes, bytes]:
    """(content encryption key, nonce) per RFC 8291 section 3.4 and RFC 8188 section
    2.2; each HKDF-Expand needs one HMAC block, so it is written as one HMAC."""
    prk_key = _hmac_sha256(auth_secret, ecdh_secret)
    ikm = _hmac_sha256(prk_key, _KEY_INFO + ua_public + as_public + b"\x01")
    prk = _hmac_sha256(salt, ikm)
    return _hmac_sha256(prk, _CEK_INFO)[:16], _hmac_sha256(prk, _NONCE_INFO)[:12]


def encrypt_aes128gcm(
    plaintext: bytes,
    subscription: SubscriptionKeys,
    *,
    salt: bytes | None = None,
    sender_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """One aes128gcm record (RFC 8188) for one browser (RFC 8291): header + record.

    ``salt`` and ``sender_key`` are fresh per message unless given (tests replay the
    RFC's vector with them). ValueError if the plaintext does not fit one record.
    """
    if len(plaintext) + TAG_BYTES + PADDING_DELIMITER_BYTES > RECORD_SIZE:
        raise ValueError("payload does not fit one 4096-byte record")
    salt = os.urandom(16) if salt is None else salt
    sender_key = ec.generate_private_key(ec.SECP256R1()) if sender_key is None else sender_key
    as_public = sender_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    ecdh_secret = sender_key.exchange(ec.ECDH(), subscription.public_key)
    cek, nonce = _derive(
        ecdh_secret, subscription.auth_secret, subscription.public_bytes, as_public, salt
    )
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    return salt + struct.pack("!IB", RECORD_SIZE, len(as_public)) + as_public + record


def decrypt_aes128gcm(
    body: bytes, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes
) -> bytes:
    """The browser's side of one-record aes128gcm, for tests (the simulator has its
    own, written apart, so round trips compare two implementations).

    ValueError for anything malformed or not authentic.
    """
    if len(body) < HEADER_BYTES + TAG_BYTES + PADDING_DELIMITER_BYTES:
        raise ValueError("body shorter than an aes128gcm header and record")
    salt = body[:16]
    record_size, key_id_length = struct.unpack("!IB", body[16:21])
    if key_id_length != 65:
        raise ValueError("key id is not a P-256 point")
    as_public = body[21 : 21 + key_id_length]
    record = body[21 + key_id_length :]
    if len(record) > record_size:
        raise ValueError("more than one record")
    ua_public = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    try:
        sender_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
        ecdh_secret = private_key.exchange(ec.ECDH(), sender_public)
    except ValueError as exc:
        raise ValueError("sender key is not a P-256 point") from exc
    cek, nonce = _derive(ecdh_secret, auth_secret, ua_public, as_public, salt)
    try:
        padded = AESGCM(cek).decrypt(nonce, record, None)
    except InvalidTag as exc:
        raise ValueError("record does not authenticate") from exc
    content = padded.rstrip(b"\x00")
    if not content.endswith(b"\x02"):
        raise ValueError("last record lacks its 0x02 padding delimiter")
    return content[:-1]


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The JSON a service worker receives (what is encrypted)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def encrypted_size(payload: Mapping[str, Any]) -> int:
    """Bytes the push service receives for ``payload``: payload + 103. Push services
    accept up to ``MAX_ENCRYPTED_BYTES`` (4096), so a payload of 3,993 bytes fits."""
    return len(encode_payload(payload)) + ENCRYPTION_OVERHEAD_BYTES


def topic_for(collapse_key: str) -> str:
    """An RFC 8030 ``Topic`` (at most 32 base64url characters) for a collapse key:
    the key itself when it already qualifies, else a digest of it (stable, so the
    same key always replaces the same pending message)."""
    if _TOPIC_RE.match(collapse_key):
        return collapse_key
    return b64url_encode(hashlib.sha256(collapse_key.encode()).digest())[:TOPIC_MAX_CHARS]


def webpush_headers(*, ttl_seconds: int, priority: str, collapse_key: str = "") -> dict[str, str]:
    """``OutgoingPush.headers`` for web push: TTL, Urgency (from Herald's priority)
    and Topic (from the collapse key). ValueError for an unknown priority."""
    if priority not in _PRIORITY_URGENCY:
        raise ValueError(f"unknown priority {priority!r}")
    headers = {"TTL": str(max(int(ttl_seconds), 0)), "Urgency": _PRIORITY_URGENCY[priority]}
    if collapse_key:
        headers["Topic"] = topic_for(collapse_key)
    return headers


def origin_of(endpoint: str) -> str:
    """``https://host[:port]`` of an endpoint; InvalidSubscription if not https."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise InvalidSubscription("endpoint must be an https URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidSubscription("endpoint has a bad port") from exc
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}" if port in (None, 443) else f"https://{host}:{port}"


class VapidSigner:
    """RFC 8292 ``Authorization: vapid t=<JWT>, k=<public key>`` per audience.

    A JWT is ES256 over ``{"aud", "exp", "sub"}``; it is signed once per origin and
    reused until ``VAPID_REFRESH_MARGIN_SECONDS`` before ``exp`` (``signatures``
    counts signings; tests assert one per origin).
    """

    def __init__(self, private_key_pem: str, public_key: str, subject: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the VAPID private key must be an EC P-256 key")
        derived = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        if b64url_decode(public_key) != derived:
            raise ValueError("the VAPID public key does not match the private key")
        self._key = key
        self.public_key = b64url_encode(derived)
        self.subject = subject
        self._cache: dict[str, tuple[float, str]] = {}  # origin -> (refresh at, header)
        self.signatures = 0

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = b64url_encode(b'{"typ":"JWT","alg":"ES256"}')
        body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{body}".encode()
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        self.signatures += 1
        return f"{header}.{body}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def authorization(self, origin: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        cached = self._cache.get(origin)
        if cached is not None and now < cached[0]:
            return cached[1]
        expires = int(now) + VAPID_LIFETIME_SECONDS
        token = self.sign({"aud": origin, "exp": expires, "sub": self.subject})
        value = f"vapid t={token}, k={self.public_key}"
        if len(self._cache) >= MAX_ORIGIN_POOLS * 4:
            self._cache.clear()
        self._cache[origin] = (expires - VAPID_REFRESH_MARGIN_SECONDS, value)
        return value


def _reason(status: int, body: bytes) -> str:
    """The push service's reason: Mozilla/Apple/WNS answer JSON with ``message`` /
    ``error`` / ``reason``; FCM answers text."""
    text = body[:2000].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("reason", "message", "error"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return str(parsed[key])[:300]
    return text[:300] or str(status)


def classify_webpush_response(
    *,
    ref: str,
    status: int,
    body: bytes = b"",
    location: str | None = None,
    retry_after: float | None = None,
) -> PushResult:
    """Map one push service answer to an :class:`Outcome` (RFC 8030 section 5-8)."""
    if status in (200, 201, 202):
        return PushResult(ref, Outcome.SENT, location or None, "", status)
    if status in (404, 410):
        return PushResult(
            ref, Outcome.INVALID_TOKEN, None, "Gone" if status == 410 else "NotFound", status
        )
    if status == 413:
        return PushResult(ref, Outcome.FAILED, None, "payload too large", status)
    if status == 429 or status >= 500:
        return PushResult(ref, Outcome.RETRY, None, _reason(status, body), status, retry_after)
    return PushResult(ref, Outcome.FAILED, None, _reason(status, body), status)


@dataclass
class _Pool:
    session: aiohttp.ClientSession
    in_flight: int = 0


class WebPushSender:
    """:class:`~delivery.providers.base.ProviderSender` for one project's VAPID key.

    ``pools`` holds one keep-alive session per push-service origin; ``signer.signatures``
    counts VAPID JWTs signed; ``encrypt_seconds`` sums the time spent encrypting
    (bench/sender.py reports it per message).
    """

    def __init__(self, config: WebPushConfig) -> None:
        self.config = config
        self.signer: VapidSigner | None = None
        self._setup_error: str | None = None
        try:
            self.signer = VapidSigner(
                config.vapid_private_key, config.vapid_public_key, config.subject
            )
        except ValueError as exc:
            self._setup_error = f"InvalidVapidKey: {exc}"
            logger.error("Web push sender unusable: %s", exc)
        self.endpoint_origin = origin_of(config.endpoint) if config.endpoint else ""
        self.pools: OrderedDict[str, _Pool] = OrderedDict()
        self.encrypt_seconds = 0.0

    def _pool(self, origin: str) -> _Pool:
        pool = self.pools.get(origin)
        if pool is not None:
            self.pools.move_to_end(origin)
            return pool
        connector = aiohttp.TCPConnector(
            limit=self.config.connections_per_origin,
            ssl=shared_client_ssl_context(self.config.ca_file),
            keepalive_timeout=60,
            enable_cleanup_closed=True,
        )
        pool = _Pool(
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
        )
        self.pools[origin] = pool
        if len(self.pools) > MAX_ORIGIN_POOLS:
            for name, idle in list(self.pools.items()):
                if idle.in_flight == 0 and name != origin:
                    del self.pools[name]
                    asyncio.get_running_loop().create_task(idle.session.close())
                    break
        return pool

    async def send_many(self, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
        if not pushes:
            return []
        if self._setup_error is not None:
            return [PushResult(p.ref, Outcome.FAILED, None, self._setup_error) for p in pushes]
        results: list[PushResult | None] = [None] * len(pushes)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(pushes):
                index = next_index
                next_index += 1
                results[index] = await self._send_one(pushes[index])

        await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(pushes)))))
        return [r for r in results if r is not None]

    def _prepare(self, push: OutgoingPush) -> tuple[str, str, bytes] | PushResult:
        """(url, origin, encrypted body) or the final result for an unusable push."""
        if push.keys is None:
            return PushResult(push.ref, Outcome.FAILED, None, "MissingSubscriptionKeys")
        try:
            origin = origin_of(push.token)
            keys = parse_subscription_keys(push.keys)
        except InvalidSubscription as exc:
            return PushResult(push.ref, Outcome.INVALID_TOKEN, None, f"InvalidSubscription: {exc}")
        try:
            plaintext = encode_payload(push.payload)
        except (TypeError, ValueError) as exc:
            return PushResult(push.ref, Outcome.FAILED, None, f"InvalidPayload: {exc}")
        if len(plaintext) + TAG_BYTES + PADDING_DELIMITER_BYTES > RECORD_SIZE:
            # Cannot be one record; anything between 3,994 and 4,079 bytes is sent and
            # the push service answers 413.
            return PushResult(push.ref, Outcome.FAILED, None, "payload too large")
        started = time.perf_counter()
        body = encrypt_aes128gcm(plaintext, keys)
        self.encrypt_seconds += time.perf_counter() - started
        url = push.token
        if self.endpoint_origin:
            parts = urlsplit(push.token)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            url, origin = self.endpoint_origin + path, self.endpoint_origin
        return url, origin, body

    async def _send_one(self, push: OutgoingPush) -> PushResult:
        prepared = self._prepare(push)
        if isinstance(prepared, PushResult):
            return prepared
        url, origin, body = prepared
        assert self.signer is not None
        headers = {
            "TTL": str(self.config.default_ttl_seconds),
            **push.headers,
            "Authorization": self.signer.authorization(origin),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        pool = self._pool(origin)
        pool.in_flight += 1
        started = time.perf_counter()
        try:
            async with pool.session.post(url, data=body, headers=headers) as response:
                status = response.status
                content = await response.read()
                location = response.headers.get("Location")
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except TimeoutError:
            return PushResult(push.ref, Outcome.RETRY, None, "timeout")
        except aiohttp.ClientError as exc:
            logger.debug("Web push request to %s failed: %r", origin, exc)
            return PushResult(push.ref, Outcome.RETRY, None, "connection_error")
        finally:
            pool.in_flight -= 1
            latency.record("webpush", time.perf_counter() - started)
        return classify_webpush_response(
            ref=push.ref, status=status, body=content, location=location, retry_after=retry_after
        )

    async def close(self) -> None:
        pools, self.pools = self.pools, OrderedDict()
        for pool in pools.values():
            await pool.session.close()
