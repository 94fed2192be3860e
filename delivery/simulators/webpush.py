"""A local Web Push service (RFC 8030) that is also every subscribed browser.

aiohttp over HTTPS like the FCM simulator. ``POST /push/{subscription}`` checks what a
real push service checks - the VAPID ``Authorization: vapid t=<JWT>, k=<key>``
(ES256 signature against ``k``, ``aud`` equal to the origin the request was addressed
to, ``exp`` in the future and at most 24 h away, a mailto:/https: ``sub``), the
``Content-Encoding: aes128gcm``, ``TTL``, ``Urgency`` and ``Topic`` headers and the
4,096-byte body limit - and then does what the browser would: DECRYPTS the body with
the subscription's private key (RFC 8291), so a sender bug shows up as a 400 here.
Answers 201 + ``Location``, 404 (unknown subscription), 410 (``invalid_tokens``),
413, 401/403 and the shared fault knobs (:mod:`delivery.simulators.behaviour`).

The simulator MINTS subscriptions (:meth:`WebPushSimulator.mint`, control route
``POST /webpush/subscriptions``). A subscription's keys are derived from a secret
seed kept in the credentials directory and its id carries a MAC, so nothing per
subscription is stored: subscriptions seeded into a demo project keep working across
simulator restarts. Tokens in stats and knobs are the endpoint URLs.

The decryption here is written apart from the sender's (``cryptography``'s HKDF, not
the sender's HMAC shortcut), so the round-trip tests check two implementations.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from delivery.simulators.behaviour import Behaviour, ProviderStats

SEED_FILE = "webpush-seed"
MAX_BODY_BYTES = 4096
MAX_JWT_LIFETIME_SECONDS = 24 * 3600
MAX_MINT = 100_000
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{11}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_MAX_CACHED_KEYS = 200_000


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64d(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def load_or_create_seed(directory: Path) -> bytes:
    """The secret the subscriptions' keys derive from (created once, then reused)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SEED_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    seed = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed.hex())
    return seed


def subscription_mac(seed: bytes, nonce: str) -> str:
    return _b64e(hmac.new(seed, b"id:" + nonce.encode(), hashlib.sha256).digest()[:8])


def subscription_keys(
    seed: bytes, subscription_id: str
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The browser side of a subscription: its P-256 private key and auth secret,
    both derived from the seed and the id (so nothing per subscription is stored)."""
    digest = hmac.new(seed, b"key:" + subscription_id.encode(), hashlib.sha512).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    private_key = ec.derive_private_key(scalar, ec.SECP256R1())
    auth = hmac.new(seed, b"auth:" + subscription_id.encode(), hashlib.sha256).digest()
    return private_key, auth[:16]


def subscription_for(seed: bytes, base_url: str, nonce: str) -> dict[str, Any]:
    """The subscription ``nonce`` (22 base64url characters) names, as a browser's
    ``PushSubscription.toJSON()``: ``{"endpoint", "keys": {"p256dh", "auth"}}``.
    Deterministic, so the demo seeds the same subscriptions on every run
    (``demo_nonce``) and the simulator recognises them after a restart."""
    if not _NONCE_RE.match(nonce):
        raise ValueError("a subscription nonce is 22 base64url characters")
    subscription_id = f"{nonce}.{subscription_mac(seed, nonce)}"
    private_key, auth = subscription_keys(seed, subscription_id)
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": f"{base_url.rstrip('/')}/push/{subscription_id}",
        "keys": {"p256dh": _b64e(point), "auth": _b64e(auth)},
    }


def demo_nonce(label: str) -> str:
    """A stable nonce for ``subscription_for`` (e.g. ``demo_nonce("demo-user-7")``)."""
    return _b64e(hashlib.sha256(b"herald-demo-webpush:" + label.encode()).digest()[:16])


def hkdf_sha256(*, salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def browser_decrypt(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth: bytes) -> bytes:
    """What a browser does with a push message (RFC 8291 section 3.4, RFC 8188
    section 2): any number of records, padding removed. ValueError if not authentic."""
    if len(body) < 21:
        raise ValueError("truncated header")
    salt = body[:16]
    record_size, id_length = struct.unpack(">IB", body[16:21])
    sender_point = body[21 : 21 + id_length]
    if record_size < 18 or id_length != 65:
        raise ValueError("bad header")
    receiver_point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_point)
    shared = private_key.exchange(ec.ECDH(), sender)
    ikm = hkdf_sha256(
        salt=auth,
        ikm=shared,
        info=b"WebPush: info\x00" + receiver_point + sender_point,
        length=32,
    )
    key = hkdf_sha256(salt=salt, ikm=ikm, info=b"Content-Encoding: aes128gcm\x00", length=16)
    base_nonce = hkdf_sha256(salt=salt, ikm=ikm, info=b"Content-Encoding: nonce\x00", length=12)
    records = body[21 + id_length :]
    if not records:
        raise ValueError("no record")
    plaintext = bytearray()
    aead = AESGCM(key)
    chunks = [records[i : i + record_size] for i in range(0, len(records), record_size)]
    for sequence, chunk in enumerate(chunks):
        nonce = (int.from_bytes(base_nonce, "big") ^ sequence).to_bytes(12, "big")
        try:
            padded = aead.decrypt(nonce, chunk, None)
        except InvalidTag as exc:
            raise ValueError("record does not authenticate") from exc
        content = padded.rstrip(b"\x00")
        last = sequence == len(chunks) - 1
        if not content or content[-1] != (2 if last else 1):
            raise ValueError("bad padding delimiter")
        plaintext += content[:-1]
    return bytes(plaintext)


@dataclass
class WebPushStats(ProviderStats):
    """``ProviderStats`` plus what only web push has: decrypted payload sizes (the
    4,096-byte check) and requests per origin addressed (one pool per origin)."""

    decrypted_bytes_max: int = 0
    decrypted_bytes_total: int = 0
    by_origin: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        super().reset()
        self.decrypted_bytes_max = self.decrypted_bytes_total = 0
        self.by_origin.clear()

    def snapshot(self, *, include_tokens: bool = False) -> dict[str, Any]:
        data = super().snapshot(include_tokens=include_tokens)
        data["decrypted_bytes_max"] = self.decrypted_bytes_max
        data["decrypted_bytes_total"] = self.decrypted_bytes_total
        data["by_origin"] = dict(self.by_origin)
        return data


class WebPushSimulator:
    """Request logic and state for the simulated push service. ``origins`` are the
    origins it answers as (``https://127.0.0.1:port`` and ``https://localhost:port``);
    ``base_url`` is the one minted endpoints use."""

    def __init__(
        self,
        *,
        seed: bytes,
        base_url: str,
        aliases: tuple[str, ...] = (),
        behaviour: Behaviour | None = None,
    ) -> None:
        self._seed = seed
        self.base_url = base_url.rstrip("/")
        self.origins = frozenset({self.base_url, *aliases})
        self.behaviour = behaviour or Behaviour()
        self.stats = WebPushStats("webpush")
        self.report_sink: list[tuple[str, Any]] | None = None
        self.max_body_bytes = MAX_BODY_BYTES
        self._keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}
        self._message_ids = itertools.count(1)

    # --- subscriptions ----------------------------------------------------------

    def _mac(self, nonce: str) -> str:
        return subscription_mac(self._seed, nonce)

    def _subscription_keys(self, subscription_id: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        cached = self._keys.get(subscription_id)
        if cached is not None:
            return cached
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[subscription_id] = subscription_keys(self._seed, subscription_id)
        return self._keys[subscription_id]

    def is_subscription(self, subscription_id: str) -> bool:
        if not _ID_RE.match(subscription_id):
            return False
        nonce, mac = subscription_id.split(".")
        return hmac.compare_digest(mac, self._mac(nonce))

    def mint(self, count: int) -> list[dict[str, Any]]:
        """``count`` new subscriptions as a browser's ``PushSubscription.toJSON()``:
        ``{"endpoint", "keys": {"p256dh", "auth"}}``."""
        if not 1 <= count <= MAX_MINT:
            raise ValueError(f"count must be between 1 and {MAX_MINT}")
        return [
            subscription_for(self._seed, self.base_url, secrets.token_urlsafe(16))
            for _ in range(count)
        ]

    def forget_verified_tokens(self) -> None:
        self._verified.clear()

    # --- HTTP -----------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{subscription_id}", self.push)
        return app

    async def push(self, request: web.Request) -> web.StreamResponse:
        response = self._handle_push(request, await request.read())
        latency = self.behaviour.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000.0)
        return response

    def _error(self, status: int, token: str, message: str, **headers: str) -> web.Response:
        self.stats.record(status, token)
        # Mozilla autopush's error body shape.
        body = {
            "code": status,
            "errno": status,
            "error": _REASONS.get(status, "Error"),
            "message": message,
        }
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=headers or None,
        )

    def _vapid_problem(self, authorization: str, origin: str) -> tuple[int, str] | None:
        """None when the VAPID header is good for ``origin``, else (status, reason)."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return 401, "missing VAPID authorization"
        fields = {}
        for part in params.split(","):
            name, _, value = part.strip().partition("=")
            fields[name.strip()] = value.strip()
        token, key = fields.get("t", ""), fields.get("k", "")
        if not token or not key:
            return 401, "VAPID authorization needs t and k"
        claims = self._verified.get((token, key))
        if claims is None:
            try:
                point = _b64d(key)
                public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
                claims = jwt.decode(
                    token,
                    public_key,
                    algorithms=["ES256"],
                    options={"require": ["aud", "exp", "sub"], "verify_aud": False},
                )
            except jwt.ExpiredSignatureError:
                return 401, "VAPID JWT expired"
            except (jwt.PyJWTError, ValueError) as exc:
                return 401, f"invalid VAPID JWT: {exc}"
            if len(self._verified) >= 10_000:
                self._verified.clear()
            self._verified[(token, key)] = claims
            self.stats.auth_tokens += 1
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            return 401, "VAPID JWT expired"
        if exp > now + MAX_JWT_LIFETIME_SECONDS:
            return 401, "VAPID JWT exp more than 24 hours away"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            return 401, "VAPID sub must be a mailto: or https: URI"
        if claims.get("aud") != origin:
            return 403, f"VAPID aud {claims.get('aud')!r} is not {origin!r}"
        return None

    def _handle_push(self, request: web.Request, raw: bytes) -> web.Response:
        subscription_id = request.match_info["subscription_id"]
        origin = f"https://{request.host}"
        if origin not in self.origins or not self.is_subscription(subscription_id):
            return self._error(404, "", "no such subscription")
        token = f"{self.base_url}/push/{subscription_id}"
        self.stats.by_origin[origin] += 1
        problem = self._vapid_problem(request.headers.get("Authorization", ""), origin)
        if problem is not None:
            return self._error(problem[0], token, problem[1])
        headers = request.headers
        if headers.get("Content-Encoding", "").lower() != "aes128gcm":
            return self._error(400, token, "Content-Encoding must be aes128gcm")
        ttl = headers.get("TTL", "")
        if not ttl.isdigit():
            return self._error(400, token, "TTL header missing or not a non-negative integer")
        urgency = headers.get("Urgency")
        if urgency is not None and urgency not in _URGENCIES:
            return self._error(400, token, f"bad Urgency {urgency!r}")
        topic = headers.get("Topic", "")
        if topic and not _TOPIC_RE.match(topic):
            return self._error(400, token, "Topic must be at most 32 base64url characters")
        if len(raw) > self.max_body_bytes:
            return self._error(
                413, token, f"body of {len(raw)} bytes exceeds {self.max_body_bytes}"
            )
        behaviour = self.behaviour
        if token in behaviour.foreign_tokens:
            return self._error(403, token, "subscription belongs to another application server key")
        injected = behaviour.injected_status(token)
        if injected is not None:
            extra = {}
            if injected in (429, 503) and behaviour.retry_after is not None:
                extra["Retry-After"] = f"{behaviour.retry_after:g}"
            return self._error(injected, token, "try again later", **extra)
        if token in behaviour.invalid_tokens:
            return self._error(410, token, "subscription expired")
        private_key, auth = self._subscription_keys(subscription_id)
        try:
            plaintext = browser_decrypt(raw, private_key, auth)
        except ValueError as exc:
            return self._error(400, token, f"decryption failed: {exc}")
        payload: Any = None
        if behaviour.keep_payloads or self.report_sink is not None:
            try:
                payload = json.loads(plaintext)
            except ValueError:
                payload = plaintext.decode("utf-8", "replace")
        self.stats.record(201, token, topic, payload if behaviour.keep_payloads else None)
        if self.report_sink is not None:
            self.report_sink.append(("webpush", payload))
        self.stats.decrypted_bytes_max = max(self.stats.decrypted_bytes_max, len(plaintext))
        self.stats.decrypted_bytes_total += len(plaintext)
        message_id = f"{origin}/m/{time.time_ns():x}{next(self._message_ids):x}"
        return web.Response(status=201, headers={"Location": message_id, "TTL": ttl})


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
