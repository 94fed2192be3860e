"""A local APNs: HTTP/2 over TLS (ALPN h2), written on asyncio with ``h2`` directly.

It must never be the bottleneck of a sender benchmark, so it avoids frameworks and
per-request allocations: h2 header validation is off, verified provider JWTs are
cached (ES256 verification costs more than the rest of a request), responses are
written once per read, and latency is a ``call_later`` rather than a task.

Implements ``POST /3/device/<token>`` the way Apple documents it: provider-token or
client-certificate auth (403 InvalidProviderToken / ExpiredProviderToken /
MissingProviderToken), topic check (400 MissingTopic / TopicDisallowed /
DeviceTokenNotForTopic), token format (400 BadDeviceToken), header checks, payload
(400 PayloadEmpty, 413 PayloadTooLarge), then the injected faults of
:class:`~delivery.simulators.behaviour.Behaviour` and 410 Unregistered for the
permanently invalid tokens. ``apns-id`` is echoed, or generated when absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
import uuid
from typing import Any

import jwt
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from delivery.providers.h2util import LeanH2Connection, NeverIndexedHeaderTuple
from delivery.simulators.behaviour import Behaviour, ProviderStats, verdict_key

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120
PROVIDER_TOKEN_MAX_AGE_SECONDS = 3600
MAX_CONCURRENT_STREAMS = 1000
# Write answers every N requests of a large read rather than only at its end, so
# the client can work on the first answers while we produce the rest.
WRITE_EVERY = 16
_TOKEN_RE = re.compile(r"^[0-9a-fA-F]{64,200}$")
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_PUSH_TYPES = frozenset(
    {
        b"alert",
        b"background",
        b"location",
        b"voip",
        b"complication",
        b"fileprovider",
        b"mdm",
        b"liveactivity",
        b"pushtotalk",
        b"widgets",
    }
)
_PATH_PREFIX = b"/3/device/"
_REASONS = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "InternalServerError",
    503: "ServiceUnavailable",
    504: "ServiceUnavailable",
}


def _error_body(reason: str, timestamp_ms: int | None = None) -> bytes:
    body: dict[str, Any] = {"reason": reason}
    if timestamp_ms is not None:
        body["timestamp"] = timestamp_ms
    return json.dumps(body).encode()


class ApnsSimulator:
    """The request logic, independent of the connection handling."""

    def __init__(
        self,
        *,
        topic: str,
        team_id: str,
        key_id: str,
        public_key_pem: str,
        behaviour: Behaviour | None = None,
    ) -> None:
        self.topic = topic.encode()
        self.team_id = team_id
        self.key_id = key_id
        self.public_key_pem = public_key_pem
        self.behaviour = behaviour or Behaviour()
        self.stats = ProviderStats("apns")
        # Accepted pushes for the device behaviour (reporting.py); None when it is off.
        self.report_sink: list[tuple[str, Any]] | None = None
        self.protocols: set[ApnsServerProtocol] = set()
        # header value -> iat of a verified token (bounded, see _verify_jwt)
        self._verified: dict[bytes, int] = {}
        self._payload_verdicts: dict[bytes, bool] = {}
        random_part = uuid.uuid4().hex
        self._apns_id_prefix = (
            f"{random_part[:8]}-{random_part[8:12]}-4{random_part[13:16]}-a{random_part[17:20]}"
        )
        self._apns_id_counter = 0

    def forget_verified_tokens(self) -> None:
        self._verified.clear()

    def drop_connections(self) -> int:
        """Send GOAWAY and close every client connection, as APNs does on
        maintenance; returns how many were open. Tests use it to check that
        senders reconnect."""
        protocols = list(self.protocols)
        for protocol in protocols:
            protocol.go_away()
        return len(protocols)

    def protocol_factory(self) -> ApnsServerProtocol:
        return ApnsServerProtocol(self)

    def _verify_jwt(self, authorization: bytes) -> str | None:
        """None if the provider token is acceptable, else Apple's 403 reason."""
        now = int(time.time())
        iat = self._verified.get(authorization)
        if iat is None:
            scheme, _, token = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return "InvalidProviderToken"
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(
                    token,
                    self.public_key_pem,
                    algorithms=["ES256"],
                    options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
                )
            except jwt.PyJWTError:
                return "InvalidProviderToken"
            if header.get("kid") != self.key_id:
                return "InvalidProviderToken"
            if claims.get("iss") != self.team_id or not isinstance(claims.get("iat"), int):
                return "InvalidProviderToken"
            iat = int(claims["iat"])
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[authorization] = iat
            self.stats.auth_tokens += 1
        if now - iat > PROVIDER_TOKEN_MAX_AGE_SECONDS:
            return "ExpiredProviderToken"
        return None

    def handle(
        self, headers: dict[bytes, bytes], body: bytes, *, client_cert_topic: str | None
    ) -> tuple[int, bytes | None, bytes]:
        """(status, apns-id, body) for one request."""
        apns_id = headers.get(b"apns-id")
        if apns_id is not None and not _UUID_RE.match(apns_id.decode("latin-1")):
            return self._answer(400, None, "BadMessageId", "")
        apns_id = apns_id or self._next_apns_id()
        method = headers.get(b":method")
        path = headers.get(b":path", b"")
        if not path.startswith(_PATH_PREFIX):
            return self._answer(404, apns_id, "BadPath", "")
        if method != b"POST":
            return self._answer(405, apns_id, "MethodNotAllowed", "")
        token = path[len(_PATH_PREFIX) :].decode("latin-1")
        authorization = headers.get(b"authorization")
        if authorization is not None:
            problem = self._verify_jwt(authorization)
            if problem:
                return self._answer(403, apns_id, problem, token)
        elif client_cert_topic is None:
            return self._answer(403, apns_id, "MissingProviderToken", token)
        topic = headers.get(b"apns-topic")
        if not topic:
            return self._answer(400, apns_id, "MissingTopic", token)
        if topic != self.topic or (
            client_cert_topic is not None
            and authorization is None
            and client_cert_topic != topic.decode()
        ):
            return self._answer(400, apns_id, "TopicDisallowed", token)
        if not token:
            return self._answer(400, apns_id, "MissingDeviceToken", token)
        if not _TOKEN_RE.match(token):
            return self._answer(400, apns_id, "BadDeviceToken", token)
        problem = self._check_headers(headers)
        if problem:
            return self._answer(400, apns_id, problem, token)
        limit = (
            MAX_VOIP_PAYLOAD_BYTES
            if headers.get(b"apns-push-type") == b"voip"
            else MAX_PAYLOAD_BYTES
        )
        if not body:
            return self._answer(400, apns_id, "PayloadEmpty", token)
        if len(body) > limit:
            return self._answer(413, apns_id, "PayloadTooLarge", token)
        if not self._payload_ok(body):
            return self._answer(400, apns_id, "BadPayload", token)
        if token in self.behaviour.foreign_tokens:
            return self._answer(400, apns_id, "DeviceTokenNotForTopic", token)
        injected = self.behaviour.injected_status(token)
        if injected is not None:
            return self._answer(
                injected, apns_id, _REASONS.get(injected, "InternalServerError"), token
            )
        if token in self.behaviour.invalid_tokens:
            self.stats.record(410, token)
            return 410, apns_id, _error_body("Unregistered", int(time.time() * 1000))
        collapse_id = headers.get(b"apns-collapse-id", b"").decode("utf-8", "replace")
        kept = None
        if self.behaviour.keep_payloads:
            kept = {
                "headers": {
                    name.decode(): value.decode()
                    for name, value in headers.items()
                    if name.startswith(b"apns-")
                },
                "payload": json.loads(body),
            }
        self.stats.record(200, token, collapse_id, kept)
        if self.report_sink is not None:
            self.report_sink.append(("apns", body))
        return 200, apns_id, b""

    def _payload_ok(self, body: bytes) -> bool:
        """A campaign sends the same payload to every token: remember verdicts."""
        key = verdict_key(body)
        verdict = self._payload_verdicts.get(key)
        if verdict is None:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            verdict = isinstance(payload, dict) and isinstance(payload.get("aps"), dict)
            if len(self._payload_verdicts) >= 256:
                self._payload_verdicts.clear()
            self._payload_verdicts[key] = verdict
        return verdict

    def _next_apns_id(self) -> bytes:
        """A UUID-shaped id, unique per simulator run (cheaper than uuid4())."""
        self._apns_id_counter += 1
        return f"{self._apns_id_prefix}-{self._apns_id_counter:012x}".encode()

    def _answer(
        self, status: int, apns_id: bytes | None, reason: str, token: str
    ) -> tuple[int, bytes | None, bytes]:
        self.stats.record(status, token)
        return status, apns_id, _error_body(reason)

    @staticmethod
    def _check_headers(headers: dict[bytes, bytes]) -> str | None:
        priority = headers.get(b"apns-priority")
        if priority is not None and priority not in (b"1", b"5", b"10"):
            return "BadPriority"
        push_type = headers.get(b"apns-push-type")
        if push_type is not None and push_type not in _PUSH_TYPES:
            return "InvalidPushType"
        if push_type == b"background" and priority in (None, b"10"):
            # Apple: background pushes must be sent at priority 5 (10 is the default).
            return "BadPriority"
        expiration = headers.get(b"apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return "BadExpirationDate"
        collapse_id = headers.get(b"apns-collapse-id")
        if collapse_id is not None and len(collapse_id) > 64:
            return "BadCollapseId"
        return None


class ApnsServerProtocol(asyncio.Protocol):
    """One HTTP/2 connection. Requests are answered when their stream ends."""

    def __init__(self, simulator: ApnsSimulator) -> None:
        self.simulator = simulator
        self.conn = LeanH2Connection(client_side=False)
        self.transport: asyncio.Transport | None = None
        self.client_cert_topic: str | None = None
        self._requests: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self._loop = asyncio.get_running_loop()
        self._write_scheduled = False
        self._answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.simulator.stats.connections += 1
        self.simulator.protocols.add(self)
        self.client_cert_topic = _client_cert_topic(transport)
        self.conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
            },
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._requests.clear()
        self.simulator.protocols.discard(self)

    def go_away(self) -> None:
        self.conn.close_connection()
        self._write()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            logger.info("APNs simulator: protocol error from client: %s", exc)
            self._write()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._requests[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, DataReceived):
                request = self._requests.get(event.stream_id)
                if request is not None:
                    request[1].extend(event.data)
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length,
                        event.stream_id,
                    )
            elif isinstance(event, StreamEnded):
                self._on_request(event.stream_id)
                self._answered += 1
                if self._answered % WRITE_EVERY == 0:
                    self._write()
            elif isinstance(event, StreamReset):
                self._requests.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self._write()
                if self.transport is not None:
                    self.transport.close()
                return
        self._write()

    def _on_request(self, stream_id: int) -> None:
        request = self._requests.pop(stream_id, None)
        if request is None:
            return
        headers, body = request
        status, apns_id, response_body = self.simulator.handle(
            headers, bytes(body), client_cert_topic=self.client_cert_topic
        )
        latency = self.simulator.behaviour.latency_ms
        if latency > 0:
            self._loop.call_later(
                latency / 1000.0, self._respond_later, stream_id, status, apns_id, response_body
            )
        else:
            self._respond(stream_id, status, apns_id, response_body)

    def _respond_later(
        self, stream_id: int, status: int, apns_id: bytes | None, body: bytes
    ) -> None:
        if self.transport is None:
            return
        self._respond(stream_id, status, apns_id, body)
        if not self._write_scheduled:  # one write for all answers due in this tick
            self._write_scheduled = True
            self._loop.call_soon(self._scheduled_write)

    def _scheduled_write(self) -> None:
        self._write_scheduled = False
        self._write()

    def _respond(self, stream_id: int, status: int, apns_id: bytes | None, body: bytes) -> None:
        headers: list[tuple[bytes, bytes] | NeverIndexedHeaderTuple] = [
            (b":status", str(status).encode())
        ]
        if apns_id is not None:
            # Unique per response: keep it out of the HPACK dynamic table.
            headers.append(NeverIndexedHeaderTuple(b"apns-id", apns_id))
        retry_after = self.simulator.behaviour.retry_after
        if status in (429, 503) and retry_after is not None:
            headers.append((b"retry-after", f"{retry_after:g}".encode()))
        try:
            if body:
                headers.append((b"content-type", b"application/json"))
                self.conn.send_headers(stream_id, headers)
                self.conn.send_data(stream_id, body, end_stream=True)
            else:
                self.conn.send_headers(stream_id, headers, end_stream=True)
        except ProtocolError:
            # The client reset the stream (timeout) or its window is full: drop it.
            with contextlib.suppress(ProtocolError):
                self.conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)

    def _write(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


def _client_cert_topic(transport: asyncio.Transport) -> str | None:
    """Topic (subject UID) of a verified client certificate, for certificate auth."""
    peercert = transport.get_extra_info("peercert")
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "userId":
                return str(value)
    return None


def apns_server_ssl_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """TLS with ALPN h2; client certificates are optional and, when sent, must be
    signed by the demo CA (certificate-auth senders)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cafile=ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["h2"])
    return context
