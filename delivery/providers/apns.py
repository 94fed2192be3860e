"""APNs sender: HTTP/2 over TLS through aioapns's connection pool.

Why subclass aioapns rather than use ``aioapns.APNs`` as is (aioapns 4.0 source):

* Its pool retries internally (``max_connection_attempts``, 1 s sleeps), which would
  hide failures from the orchestration layer and can send a message twice. We
  classify instead and let the caller retry.
* It matches responses by the ``apns-id`` response header and parses error bodies
  per DATA frame; a response without ``apns-id`` or a body split across frames
  never resolves. We match by HTTP/2 stream id and read the body at end of stream.
* It never acknowledges received DATA, so after ~64 KiB of error bodies on one
  connection (about 1,300 ``Unregistered`` answers) the server can no longer send;
  on a long-lived connection that is a stall. We acknowledge every frame.
* A request abandoned on timeout made it call ``set_result`` on a cancelled future
  (InvalidStateError inside ``data_received``); we reset the stream and forget it.
* It creates one JWT provider per connection; we share one per sender so all
  connections present the same token, refreshed every ``JWT_REFRESH_SECONDS``
  (Apple rejects tokens older than 60 min and refreshes more often than 20 min).
* Host and port are class attributes of its protocol classes; we subclass them per
  endpoint so the same code reaches Apple or the simulator.

Everything is created on first use inside the running loop (aioapns's pool binds to
the loop that exists when it is built), never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from aioapns.common import NotificationRequest, NotificationResult
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsBaseConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import NoAvailableStreamIDError, ProtocolError
from h2.settings import SettingCodes

from delivery.providers import latency
from delivery.providers.base import (
    ApnsConfig,
    Outcome,
    OutgoingPush,
    PushResult,
    retry_after_seconds,
)
from delivery.providers.h2util import LeanH2Connection, NeverIndexedHeaderTuple
from delivery.providers.tls import new_client_ssl_context, shared_client_ssl_context

logger = logging.getLogger(__name__)

APPLE_PRODUCTION_HOST = "api.push.apple.com"
APPLE_SANDBOX_HOST = "api.sandbox.push.apple.com"
APPLE_PORT = 443

# Apple: a provider token older than one hour is refused (ExpiredProviderToken) and
# refreshing more than once every 20 minutes is refused (TooManyProviderTokenUpdates).
JWT_REFRESH_SECONDS = 40 * 60

# Reasons that mean "this token will never work for this app": deactivate it.
INVALID_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})

# After a failed connect, fail fast for this long instead of letting every queued
# message try (and time out on) its own connection attempt.
CONNECT_FAILURE_COOLDOWN_SECONDS = 1.0

# Headers callers may set; the topic and authorization always come from the config.
_PASSTHROUGH_HEADERS = frozenset(
    {"apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id", "apns-id"}
)


def classify_apns_response(
    *,
    ref: str,
    status: int,
    reason: str,
    apns_id: str | None,
    retry_after: float | None = None,
) -> PushResult:
    """Map one APNs answer to an :class:`Outcome` (Apple's documented status codes)."""
    if status == 200:
        return PushResult(ref, Outcome.SENT, apns_id, "", status)
    if status == 410 or (status == 400 and reason in INVALID_TOKEN_REASONS):
        return PushResult(ref, Outcome.INVALID_TOKEN, apns_id, reason or "Unregistered", status)
    if status == 429 or status >= 500:
        return PushResult(ref, Outcome.RETRY, apns_id, reason or str(status), status, retry_after)
    return PushResult(ref, Outcome.FAILED, apns_id, reason or str(status), status)


class SharedJwtProvider(AuthorizationHeaderProvider):
    """One ES256 provider token per sender, shared by all its connections.

    aioapns's ``JWTAuthorizationHeaderProvider`` is per connection; sharing keeps
    Apple's "one token per 20-60 min" rule no matter how many connections open.
    ``tokens_issued`` lets tests and metrics see how often we minted one.
    """

    def __init__(self, *, key_pem: str, key_id: str, team_id: str) -> None:
        key = load_pem_private_key(key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # ES256 needs a P-256 key
            raise TypeError("APNs auth key must be an EC private key (.p8)")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._header = ""
        self._issued_at = 0.0
        self.tokens_issued = 0

    def get_header(self) -> str:
        now = time.time()  # JWT "iat" is wall-clock seconds by definition
        if not self._header or now - self._issued_at >= JWT_REFRESH_SECONDS:
            self._issued_at = now
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
            self.tokens_issued += 1
        return self._header


@dataclass(slots=True)
class ApnsResponse:
    status: int
    apns_id: str | None
    reason: str
    retry_after: float | None


@dataclass(slots=True)
class _PendingStream:
    future: asyncio.Future[ApnsResponse]
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class HeraldApnsProtocol(APNsTLSClientProtocol):
    """aioapns's client protocol with stream-id matching, flow-control acks and
    clean cancellation (see the module docstring). Subclassed per endpoint through
    :func:`protocol_class_for` which sets ``APNS_SERVER``/``APNS_PORT``."""

    INACTIVITY_TIME = 120  # seconds idle before we close; Apple favours long-lived
    FLUSH_EVERY = 16  # requests per TLS write at most (see _schedule_flush)

    def __init__(
        self,
        apns_topic: str,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connection_lost: Callable[[APNsBaseClientProtocol], Any] | None = None,
        auth_provider: AuthorizationHeaderProvider | None = None,
    ) -> None:
        super().__init__(apns_topic, loop, on_connection_lost, auth_provider)
        self.conn = LeanH2Connection(client_side=True)
        self._pending: dict[int, _PendingStream] = {}
        self._last_activity = self.loop.time()
        self._closed = False
        self._flush_scheduled = False
        self._unflushed = 0
        self.settings_received = asyncio.Event()
        self._window_open = asyncio.Event()

    # --- connection lifecycle -------------------------------------------------

    def flush(self) -> None:
        self._unflushed = 0
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.refresh_inactivity_timer()
            self.transport.write(data)

    def _schedule_flush(self) -> None:
        """Write every ``FLUSH_EVERY`` requests and at the end of the loop iteration,
        instead of one TLS write (a syscall) per request. Not only at the end: the
        server can start on the first requests while we are still encoding the
        rest, which keeps both sides busy instead of taking turns."""
        self._unflushed += 1
        if self._unflushed >= self.FLUSH_EVERY:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and not self.transport.is_closing():
            self.flush()

    def refresh_inactivity_timer(self) -> None:
        """Cheaper than aioapns's cancel-and-reschedule on every write: remember the
        time and let one timer check it."""
        self._last_activity = self.loop.time()
        if self.inactivity_timer is None:
            self.inactivity_timer = self.loop.call_later(self.INACTIVITY_TIME, self._check_idle)

    def _check_idle(self) -> None:
        self.inactivity_timer = None
        idle = self.loop.time() - self._last_activity
        if idle >= self.INACTIVITY_TIME and not self._pending:
            self.close()
        else:
            delay = max(self.INACTIVITY_TIME - idle, 1.0)
            self.inactivity_timer = self.loop.call_later(delay, self._check_idle)

    def close(self) -> None:
        self._closed = True
        super().close()

    @property
    def is_busy(self) -> bool:
        return self._closed or super().is_busy

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        super().connection_lost(exc)
        self._fail_pending(ConnectionClosed(str(exc) if exc else "connection closed"))

    def _fail_pending(self, exc: Exception, above_stream_id: int = 0) -> None:
        for stream_id in [s for s in self._pending if s > above_stream_id]:
            pending = self._pending.pop(stream_id)
            if not pending.future.done():
                pending.future.set_exception(exc)

    # --- sending --------------------------------------------------------------

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        raise NotImplementedError("use send_push(); see delivery/providers/apns.py")

    async def send_push(
        self, token: str, extra_headers: Mapping[str, str], body: bytes
    ) -> ApnsResponse:
        stream_id = await self.free_channels.acquire()
        if self._closed:
            self.free_channels.release()
            raise ConnectionClosed("connection closed")
        headers: list[tuple[bytes, bytes] | NeverIndexedHeaderTuple] = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            NeverIndexedHeaderTuple(b":path", f"/3/device/{token}".encode()),
            (b":authority", self.APNS_SERVER.encode()),
            (b"apns-topic", self.apns_topic.encode()),
        ]
        if self.auth_provider is not None:
            headers.append((b"authorization", self.auth_provider.get_header().encode()))
        for name, value in extra_headers.items():
            lowered = name.lower()
            if lowered in _PASSTHROUGH_HEADERS:
                headers.append((lowered.encode(), str(value).encode()))

        pending = _PendingStream(self.loop.create_future())
        self._pending[stream_id] = pending
        try:
            self.conn.send_headers(stream_id, headers)
            await self._send_body(stream_id, body)
            self._schedule_flush()
            return await pending.future
        except BaseException:
            # Timeout/cancellation or a protocol error: forget the stream so a late
            # answer is ignored, and tell the server we no longer care.
            if self._pending.pop(stream_id, None) is not None:
                self.free_channels.release()
                with contextlib.suppress(ProtocolError):
                    self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                if not self._closed and self.transport is not None:
                    self.flush()
            raise

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        """Send respecting HTTP/2 flow control (payloads are <= 5 KiB, but many
        concurrent streams share one connection window)."""
        offset = 0
        while True:
            window = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
            )
            chunk = body[offset : offset + window]
            last = offset + len(chunk) >= len(body)
            if chunk or last:
                self.conn.send_data(stream_id, chunk, end_stream=last)
                offset += len(chunk)
            if last:
                return
            self.flush()
            self._window_open.clear()
            await self._window_open.wait()
            if self._closed:
                raise ConnectionClosed("connection closed while waiting for window")

    # --- receiving ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            logger.warning("APNs HTTP/2 protocol error, closing connection: %s", exc)
            self._fail_pending(ConnectionClosed(f"protocol error: {exc}"))
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                pending = self._pending.get(event.stream_id)
                if pending is not None:
                    pending.headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                stream_id: int = event.stream_id
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                pending = self._pending.get(stream_id)
                if pending is not None and event.data:
                    pending.body += event.data
            elif isinstance(event, StreamEnded):
                self._finish_stream(event.stream_id)
            elif isinstance(event, StreamReset):
                self._reset_stream(event.stream_id)
            elif isinstance(event, RemoteSettingsChanged):
                setting = event.changed_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS)
                if setting is not None:
                    self.free_channels.bound = setting.new_value
                self.settings_received.set()
                self._window_open.set()
            elif isinstance(event, WindowUpdated):
                self._window_open.set()
            elif isinstance(event, ConnectionTerminated):
                # GOAWAY: streams above last_stream_id were not processed, so they
                # are safe to retry; the rest still get their answers.
                self._closed = True
                self._fail_pending(
                    ConnectionClosed(f"GOAWAY {event.error_code!r}"),
                    above_stream_id=event.last_stream_id or 0,
                )
                if not self._pending:
                    self.close()
        if self.transport is not None and not self.transport.is_closing():
            self.flush()

    def _finish_stream(self, stream_id: int) -> None:
        pending = self._pending.pop(stream_id, None)
        if pending is None:
            return
        self.free_channels.release()
        headers = pending.headers
        status = int(headers.get(b":status", b"0") or 0)
        apns_id_raw = headers.get(b"apns-id")
        reason = ""
        if pending.body:
            try:
                parsed = json.loads(pending.body)
                reason = str(parsed.get("reason", "")) if isinstance(parsed, dict) else ""
            except ValueError:
                reason = pending.body[:100].decode("utf-8", "replace")
        retry_after = retry_after_seconds(headers.get(b"retry-after", b"").decode() or None)
        if not pending.future.done():
            pending.future.set_result(
                ApnsResponse(
                    status=status,
                    apns_id=apns_id_raw.decode() if apns_id_raw else None,
                    reason=reason,
                    retry_after=retry_after,
                )
            )
        if self._closed and not self._pending:
            self.close()

    def _reset_stream(self, stream_id: int) -> None:
        pending = self._pending.pop(stream_id, None)
        if pending is None:
            return
        self.free_channels.release()
        if not pending.future.done():
            pending.future.set_exception(ConnectionClosed(f"stream {stream_id} reset"))


def protocol_class_for(host: str, port: int) -> type[HeraldApnsProtocol]:
    """aioapns reads host and port from class attributes; make a class per endpoint."""
    return type(
        f"HeraldApnsProtocol_{host}_{port}",
        (HeraldApnsProtocol,),
        {"APNS_SERVER": host, "APNS_PORT": port},
    )


class HeraldApnsPool(APNsBaseConnectionPool):
    """aioapns's pool (connection reuse, max connections, discard on loss) with our
    protocol class, our TLS context and one shared auth provider."""

    def __init__(
        self,
        *,
        topic: str,
        protocol_class: type[HeraldApnsProtocol],
        ssl_context: ssl.SSLContext,
        auth_provider: AuthorizationHeaderProvider | None,
        max_connections: int,
        connect_timeout: float,
    ) -> None:
        super().__init__(topic=topic, max_connections=max_connections, max_connection_attempts=1)
        self.herald_protocol_class = protocol_class
        self.ssl_context = ssl_context
        self.auth_provider = auth_provider
        self.connect_timeout = connect_timeout
        self.connections_opened = 0
        self.last_connect_failure = -1e9

    async def create_connection(self) -> APNsBaseClientProtocol:
        protocol_class = self.herald_protocol_class
        topic = self.apns_topic or ""

        def factory() -> HeraldApnsProtocol:
            return protocol_class(topic, self.loop, self.discard_connection, self.auth_provider)

        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await self.loop.create_connection(
                    factory,
                    host=protocol_class.APNS_SERVER,
                    port=protocol_class.APNS_PORT,
                    ssl=self.ssl_context,
                )
                # Apple announces MAX_CONCURRENT_STREAMS in its first SETTINGS;
                # sending before that can exceed it.
                await protocol.settings_received.wait()
        except (OSError, TimeoutError):
            self.last_connect_failure = self.loop.time()
            raise
        self.connections_opened += 1
        return protocol

    def discard_connection(self, connection: APNsBaseClientProtocol) -> None:
        if connection in self.connections:
            super().discard_connection(connection)


class ApnsSender:
    """:class:`~delivery.providers.base.ProviderSender` for one APNs app (topic).

    One pool (a few HTTP/2 connections, up to ~1000 streams each) per sender; the
    semaphore bounds in-flight requests across concurrent ``send_many`` calls.
    """

    def __init__(self, config: ApnsConfig) -> None:
        self.config = config
        self._pool: HeraldApnsPool | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._setup_error: str | None = None
        self._connections_before_close = 0
        self.jwt_provider: SharedJwtProvider | None = None

    @property
    def connections_opened(self) -> int:
        """TLS connections opened over this sender's life (metrics, tests)."""
        current = self._pool.connections_opened if self._pool else 0
        return self._connections_before_close + current

    def _endpoint(self) -> tuple[str, int]:
        if self.config.endpoint:
            host, _, port = self.config.endpoint.rpartition(":")
            if not host:
                return self.config.endpoint, APPLE_PORT
            return host.strip("[]"), int(port)
        host = APPLE_SANDBOX_HOST if self.config.use_sandbox else APPLE_PRODUCTION_HOST
        return host, APPLE_PORT

    def _build_pool(self) -> HeraldApnsPool:
        config = self.config
        auth_provider: AuthorizationHeaderProvider | None = None
        if config.uses_token_auth:
            context = shared_client_ssl_context(config.ca_file, ("h2",))
            self.jwt_provider = SharedJwtProvider(
                key_pem=config.auth_key_pem, key_id=config.key_id, team_id=config.team_id
            )
            auth_provider = self.jwt_provider
        else:
            context = new_client_ssl_context(config.ca_file, ("h2",))
            _load_client_certificate(context, config.client_cert_pem)
        host, port = self._endpoint()
        return HeraldApnsPool(
            topic=config.topic,
            protocol_class=protocol_class_for(host, port),
            ssl_context=context,
            auth_provider=auth_provider,
            max_connections=max(1, -(-config.concurrency // 1000)) + 1,
            connect_timeout=config.timeout_seconds,
        )

    def _ensure_ready(self) -> HeraldApnsPool | None:
        if self._pool is None and self._setup_error is None:
            try:
                self._pool = self._build_pool()
            except (ValueError, TypeError, OSError, ssl.SSLError) as exc:
                # Unreadable key or certificate: a configuration error that no retry
                # fixes. Every push fails with the reason instead of the task crashing.
                self._setup_error = f"InvalidProviderCredentials: {type(exc).__name__}"
                logger.error("APNs sender for %s unusable: %s", self.config.topic, exc)
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
        return self._pool

    async def send_many(self, pushes: Sequence[OutgoingPush]) -> list[PushResult]:
        if not pushes:
            return []
        pool = self._ensure_ready()
        if pool is None:
            reason = self._setup_error or "InvalidProviderCredentials"
            return [PushResult(p.ref, Outcome.FAILED, None, reason) for p in pushes]
        results: list[PushResult | None] = [None] * len(pushes)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(pushes):
                index = next_index
                next_index += 1
                results[index] = await self._send_one(pool, pushes[index])

        workers = min(self.config.concurrency, len(pushes))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return [r for r in results if r is not None]

    async def _send_one(self, pool: HeraldApnsPool, push: OutgoingPush) -> PushResult:
        assert self._semaphore is not None
        try:
            body = json.dumps(push.payload, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:  # not JSON-serialisable: a payload bug
            return PushResult(push.ref, Outcome.FAILED, None, f"InvalidPayload: {exc}")
        async with self._semaphore:
            if (
                not pool.connections
                and pool.loop.time() - pool.last_connect_failure < CONNECT_FAILURE_COOLDOWN_SECONDS
            ):
                return PushResult(push.ref, Outcome.RETRY, None, "connection_error")
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.config.timeout_seconds):
                    connection = await pool.acquire()
                    assert isinstance(connection, HeraldApnsProtocol)
                    response = await connection.send_push(push.token, push.headers, body)
            except TimeoutError:
                return PushResult(push.ref, Outcome.RETRY, None, "timeout")
            except NoAvailableStreamIDError:
                # Stream ids exhausted (2**30 requests on one connection): retire it.
                connection.close()
                return PushResult(push.ref, Outcome.RETRY, None, "connection_closed")
            except (ApnsConnectError, ConnectionClosed, OSError, ProtocolError) as exc:
                reason = (
                    "connection_error" if isinstance(exc, ApnsConnectError) else "connection_closed"
                )
                return PushResult(push.ref, Outcome.RETRY, None, reason)
            finally:
                latency.record("apns", time.perf_counter() - started)
        return classify_apns_response(
            ref=push.ref,
            status=response.status,
            reason=response.reason,
            apns_id=response.apns_id,
            retry_after=response.retry_after,
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._connections_before_close += self._pool.connections_opened
            self._pool.close()
            self._pool = None
        self._setup_error = None


def _load_client_certificate(context: ssl.SSLContext, pem: str) -> None:
    """ssl can only load a certificate chain from a file: write it to a private
    temporary file (mode 0600 via mkstemp) and remove it at once."""
    fd, path = tempfile.mkstemp(prefix="herald-apns-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
