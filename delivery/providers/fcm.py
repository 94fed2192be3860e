"""FCM HTTP v1 sender: google-auth for credentials, aiohttp for the requests.

Measured on a 2-core box, firebase-admin's own ``send_each`` manages ~450 msg/s while
an aiohttp keep-alive pool manages ~3,800/s (docs/decisions.md, bench/sender.py).
So firebase-admin/google-auth only supply the service-account credentials and the
OAuth2 access token (refreshed in an executor, shared by every request), and the
messages go as ``POST {endpoint}/v1/projects/{project_id}/messages:send`` over one
long-lived ``aiohttp.ClientSession``.

Errors are classified the way firebase-admin does (``messaging._MessagingService``):
the ``FcmError`` detail's ``errorCode`` wins over the HTTP status. A 404 or 400
without an FCM error body is *not* read as "bad token" — a wrong endpoint must not
deactivate every token.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import google.auth.exceptions
import requests
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter

from delivery.providers import latency
from delivery.providers.base import (
    FcmConfig,
    Outcome,
    OutgoingPush,
    PushResult,
    retry_after_seconds,
)
from delivery.providers.tls import shared_client_ssl_context

logger = logging.getLogger(__name__)

FCM_DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
FCM_SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

# Access tokens live an hour; refresh this long before, so a token never expires
# between being read and a request reaching FCM.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
TOKEN_DEFAULT_LIFETIME_SECONDS = 3600.0

# A failed token fetch is reused for this long so a batch of 1,000 messages does
# not make 1,000 attempts against a broken token endpoint.
AUTH_FAILURE_REUSE_SECONDS = 1.0

_INVALID_TOKEN_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_RETRY_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"})


def _error_details(body: bytes) -> tuple[str, str, str, list[str]]:
    """(fcm errorCode, google status, message, violated fields) from an error body."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return "", "", body[:200].decode("utf-8", "replace"), []
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return "", "", "", []
    fcm_code = ""
    fields: list[str] = []
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and not fcm_code:
            fcm_code = str(detail.get("errorCode", ""))
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict):
                    fields.append(str(violation.get("field", "")))
    return fcm_code, str(error.get("status", "")), str(error.get("message", "")), fields


def _is_about_token(message: str, fields: list[str]) -> bool:
    return "message.token" in fields or "registration token" in message.lower()


def classify_fcm_response(
    *, ref: str, status: int, body: bytes, retry_after: float | None = None
) -> PushResult:
    """Map one FCM v1 answer to an :class:`Outcome` (firebase-admin's error mapping)."""
    if status == 200:
        try:
            name = json.loads(body).get("name")
        except (ValueError, AttributeError):
            name = None
        return PushResult(ref, Outcome.SENT, str(name) if name else None, "", status)
    fcm_code, google_status, message, fields = _error_details(body)
    code = fcm_code or google_status
    if fcm_code in _INVALID_TOKEN_CODES:
        return PushResult(ref, Outcome.INVALID_TOKEN, None, fcm_code, status)
    if code == "INVALID_ARGUMENT" and _is_about_token(message, fields):
        return PushResult(ref, Outcome.INVALID_TOKEN, None, code, status)
    if code in _RETRY_CODES or status == 429 or status >= 500:
        return PushResult(ref, Outcome.RETRY, None, code or str(status), status, retry_after)
    reason = code or str(status)
    if message:
        reason = f"{reason}: {message}"[:300]
    return PushResult(ref, Outcome.FAILED, None, reason, status)


class _ContextAdapter(HTTPAdapter):
    """Make the token request (google-auth uses ``requests``) trust ``ca_file`` *in
    addition to* the system CAs, like the aiohttp side."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class _AuthFailure(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class FcmSender:
    """:class:`~delivery.providers.base.ProviderSender` for one Firebase project.

    ``token_fetches`` counts OAuth2 token refreshes (tests assert it stays at one
    across many sends); the session's connector bounds open connections to
    ``config.concurrency`` and keeps them alive between batches.
    """

    def __init__(self, config: FcmConfig) -> None:
        self.config = config
        base = (config.endpoint or FCM_DEFAULT_ENDPOINT).rstrip("/")
        self.url = f"{base}/v1/projects/{config.project_id}/messages:send"
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._credentials: service_account.Credentials | None = None
        self._auth_request: GoogleAuthRequest | None = None
        self._http: requests.Session | None = None
        self._token_lock: asyncio.Lock | None = None
        self._auth_failure: tuple[float, _AuthFailure] | None = None
        self._setup_error: str | None = None
        self._ready_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_fresh_until = 0.0
        self.token_fetches = 0

    async def _ensure_ready(self) -> aiohttp.ClientSession | None:
        if self._session is not None or self._setup_error is not None:
            return self._session
        async with self._ready_lock:  # concurrent first batches build one session
            if self._session is None and self._setup_error is None:
                await self._build()
        return self._session

    async def _build(self) -> None:
        try:
            # Parsing and checking an RSA key takes ~0.1 s: not on the shared loop.
            credentials = await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(
                    service_account.Credentials.from_service_account_info,
                    dict(self.config.service_account_info),
                    scopes=list(FCM_SCOPES),
                ),
            )
        except (ValueError, KeyError) as exc:
            self._setup_error = f"InvalidProviderCredentials: {type(exc).__name__}"
            logger.error("FCM sender for %s unusable: %s", self.config.project_id, exc)
            return
        context = shared_client_ssl_context(self.config.ca_file)
        http = requests.Session()
        http.mount("https://", _ContextAdapter(context))
        self._credentials = credentials
        self._http = http
        self._auth_request = GoogleAuthRequest(session=http)
        self._token_lock = asyncio.Lock()
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency,
            ssl=context,
            keepalive_timeout=60,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            skip_auto_headers=("User-Agent",),
        )

    async def _access_token(self) -> str:
        """The shared OAuth2 token, refreshed ``TOKEN_REFRESH_MARGIN_SECONDS``
        before it expires. The freshness check is a monotonic-clock comparison:
        google-auth's own (``token_state``) builds datetimes on every call."""
        credentials = self._credentials
        assert credentials is not None and self._token_lock is not None
        loop = asyncio.get_running_loop()
        if self._token is not None and loop.time() < self._token_fresh_until:
            return self._token
        async with self._token_lock:
            if self._token is not None and loop.time() < self._token_fresh_until:
                return self._token
            if self._auth_failure and loop.time() - self._auth_failure[0] < (
                AUTH_FAILURE_REUSE_SECONDS
            ):
                raise self._auth_failure[1]
            try:
                # Blocking HTTP in google-auth: keep it off the event loop.
                await loop.run_in_executor(None, credentials.refresh, self._auth_request)
            except google.auth.exceptions.RefreshError as exc:
                retryable = bool(getattr(exc, "retryable", False))
                detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
                failure = _AuthFailure(
                    Outcome.RETRY if retryable else Outcome.FAILED,
                    f"AUTH_ERROR: {detail[:200]}",
                )
                self._auth_failure = (loop.time(), failure)
                raise failure from exc
            except google.auth.exceptions.TransportError as exc:
                failure = _AuthFailure(Outcome.RETRY, "auth_unavailable")
                self._auth_failure = (loop.time(), failure)
                raise failure from exc
            self._auth_failure = None
            self.token_fetches += 1
            self._token = str(credentials.token)
            lifetime = TOKEN_DEFAULT_LIFETIME_SECONDS
            if credentials.expiry is not None:  # google-auth keeps naive UTC datetimes
                expiry = credentials.expiry.replace(tzinfo=UTC)
                lifetime = (expiry - datetime.now(UTC)).total_seconds()
            margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)  # short-lived tokens
            self._token_fresh_until = loop.time() + lifetime - margin
            return self._token

    def _drop_token(self, token: str) -> None:
        """A 401 means the token we used is no longer accepted: fetch a new one next
        time (only if nobody has replaced it already)."""
        if self._token == token:
            self._token = None

    async def send_many(self, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
        if not pushes:
            return []
        session = await self._ensure_ready()
        if session is None:
            reason = self._setup_error or "InvalidProviderCredentials"
            return [PushResult(p.ref, Outcome.FAILED, None, reason) for p in pushes]
        results: list[PushResult | None] = [None] * len(pushes)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(pushes):
                index = next_index
                next_index += 1
                results[index] = await self._send_one(session, pushes[index])

        await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(pushes)))))
        return [r for r in results if r is not None]

    async def _send_one(self, session: aiohttp.ClientSession, push: OutgoingPush) -> PushResult:
        try:
            body = json.dumps(
                {"message": {**push.payload, "token": push.token}},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
        except (TypeError, ValueError) as exc:
            return PushResult(push.ref, Outcome.FAILED, None, f"InvalidPayload: {exc}")
        assert self._semaphore is not None
        async with self._semaphore:
            try:
                token = await self._access_token()
            except _AuthFailure as failure:
                return PushResult(push.ref, failure.outcome, None, failure.reason)
            headers: Mapping[str, str] = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json; charset=UTF-8",
            }
            started = time.perf_counter()
            try:
                async with session.post(self.url, data=body, headers=headers) as response:
                    status = response.status
                    content = await response.read()
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            except TimeoutError:
                return PushResult(push.ref, Outcome.RETRY, None, "timeout")
            except aiohttp.ClientError as exc:
                logger.debug("FCM request failed: %r", exc)
                return PushResult(push.ref, Outcome.RETRY, None, "connection_error")
            finally:
                latency.record("fcm", time.perf_counter() - started)
        if status == 401 and not _error_details(content)[0]:
            # Our access token was refused (expired/revoked early): fetch a new one.
            # A 401 *with* an FCM code (THIRD_PARTY_AUTH_ERROR: the app's APNs
            # credentials in Firebase) is classified below and final.
            self._drop_token(token)
            return PushResult(push.ref, Outcome.RETRY, None, "UNAUTHENTICATED", status)
        return classify_fcm_response(
            ref=push.ref, status=status, body=content, retry_after=retry_after
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._http is not None:
            self._http.close()
            self._http = None
        self._setup_error = None
