"""APNs sender against the APNs simulator over real TLS + HTTP/2."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from delivery.providers.apns import ApnsSender, classify_apns_response
from delivery.providers.base import ApnsConfig, Outcome, OutgoingPush, PushResult
from delivery.simulators.credentials import issue_apns_client_certificate
from delivery.simulators.server import SimulatorServer
from tests.delivery.conftest import APNS_PAYLOAD, apns_token, run, send_with


def send(config: ApnsConfig, pushes: list[OutgoingPush]) -> list[PushResult]:
    return run(send_with(ApnsSender(config), pushes))


def push(index: int, **kwargs: object) -> OutgoingPush:
    return OutgoingPush(ref=f"d{index}", token=apns_token(index), payload=APNS_PAYLOAD, **kwargs)  # type: ignore[arg-type]


def test_accepted_push_is_sent_with_the_echoed_apns_id(sim, apns_config):
    apns_id = str(uuid.uuid4())
    [result] = send(apns_config, [push(1, headers={"apns-id": apns_id, "apns-priority": "10"})])

    assert result == PushResult("d1", Outcome.SENT, apns_id, "", 200)
    stats = sim.stats(tokens=True)["apns"]
    assert stats["accepted"] == 1
    assert stats["tokens"] == {apns_token(1): 1}


def test_without_apns_id_the_provider_generated_one_is_returned(sim, apns_config):
    [result] = send(apns_config, [push(1)])

    assert result.outcome is Outcome.SENT
    assert result.provider_message_id is not None
    assert uuid.UUID(result.provider_message_id)


def test_unregistered_token_is_invalid(sim, apns_config):
    sim.configure({"apns": {"invalid_tokens": [apns_token(2)]}})

    results = send(apns_config, [push(1), push(2)])

    assert [(r.ref, r.outcome, r.reason, r.status_code) for r in results] == [
        ("d1", Outcome.SENT, "", 200),
        ("d2", Outcome.INVALID_TOKEN, "Unregistered", 410),
    ]


def test_malformed_token_is_invalid(sim, apns_config):
    [result] = send(apns_config, [OutgoingPush("d1", "not-hex", APNS_PAYLOAD)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.INVALID_TOKEN,
        "BadDeviceToken",
        400,
    )
    assert sim.stats()["apns"]["by_status"] == {"400": 1}


def test_token_of_another_app_is_invalid(sim, apns_config):
    sim.configure({"apns": {"foreign_tokens": [apns_token(1)]}})

    [result] = send(apns_config, [push(1)])

    assert (result.outcome, result.reason) == (Outcome.INVALID_TOKEN, "DeviceTokenNotForTopic")


def test_wrong_topic_fails_without_blaming_the_token(sim, apns_config):
    config = dataclasses.replace(apns_config, topic="com.example.other")

    [result] = send(config, [push(1)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.FAILED,
        "TopicDisallowed",
        400,
    )


def test_throttling_is_retried_with_retry_after(sim, apns_config):
    sim.configure({"apns": {"error_rate_429": 1.0, "retry_after": 7}})

    [result] = send(apns_config, [push(1)])

    assert result == PushResult(
        "d1", Outcome.RETRY, result.provider_message_id, "TooManyRequests", 429, 7.0
    )
    assert sim.stats()["apns"]["accepted"] == 0


@pytest.mark.parametrize(
    ("status", "reason"), [(503, "ServiceUnavailable"), (500, "InternalServerError")]
)
def test_server_errors_are_retried(sim, apns_config, status, reason):
    sim.configure({"apns": {"error_rate_5xx": 1.0, "status_5xx": status}})

    [result] = send(apns_config, [push(1)])

    assert (result.outcome, result.reason, result.status_code, result.retry_after) == (
        Outcome.RETRY,
        reason,
        status,
        None,
    )


def test_timeout_is_retried_and_the_late_answer_is_ignored(sim, apns_config):
    sim.configure({"apns": {"latency_ms": 500}})
    config = dataclasses.replace(apns_config, timeout_seconds=0.15)
    sender = ApnsSender(config)

    async def scenario() -> tuple[list[PushResult], list[PushResult]]:
        try:
            slow = await sender.send_many([push(1), push(2)])
            sim.configure({"apns": {"latency_ms": 0}})
            await asyncio.sleep(0.5)  # the late answers arrive now
            fast = await sender.send_many([push(3)])
            return slow, fast
        finally:
            await sender.close()

    slow, fast = run(scenario())

    assert [(r.outcome, r.reason) for r in slow] == [(Outcome.RETRY, "timeout")] * 2
    assert [(r.outcome, r.status_code) for r in fast] == [(Outcome.SENT, 200)]
    assert sim.stats()["apns"]["connections"] == 1  # the connection survived


def test_jwt_signed_with_a_wrong_key_fails(sim, apns_config):
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    config = dataclasses.replace(apns_config, auth_key_pem=other_key.decode())

    results = send(config, [push(1), push(2)])

    assert [(r.outcome, r.reason, r.status_code) for r in results] == [
        (Outcome.FAILED, "InvalidProviderToken", 403)
    ] * 2
    assert sim.stats()["apns"]["auth_tokens"] == 0


def test_jwt_with_a_wrong_key_id_fails(sim, apns_config):
    config = dataclasses.replace(apns_config, key_id="WRONGKEYID")

    [result] = send(config, [push(1)])

    assert (result.outcome, result.reason) == (Outcome.FAILED, "InvalidProviderToken")


def test_unreadable_key_fails_every_push_without_raising(sim, apns_config):
    config = dataclasses.replace(apns_config, auth_key_pem="not a key")

    results = send(config, [push(1), push(2)])

    assert [(r.ref, r.outcome, r.reason) for r in results] == [
        ("d1", Outcome.FAILED, "InvalidProviderCredentials: ValueError"),
        ("d2", Outcome.FAILED, "InvalidProviderCredentials: ValueError"),
    ]
    assert sim.stats()["apns"]["requests_total"] == 0


def test_an_rsa_key_is_refused_up_front(sim, apns_config):
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    config = dataclasses.replace(apns_config, auth_key_pem=rsa_pem.decode())

    [result] = send(config, [push(1)])

    assert (result.outcome, result.reason) == (
        Outcome.FAILED,
        "InvalidProviderCredentials: TypeError",
    )


def test_oversized_payload_fails(sim, apns_config):
    big = {"aps": {"alert": "x" * 5000}}

    [result] = send(apns_config, [OutgoingPush("d1", apns_token(1), big)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.FAILED,
        "PayloadTooLarge",
        413,
    )


def test_headers_are_passed_through(sim, apns_config):
    [result] = send(apns_config, [push(1, headers={"apns-priority": "7"})])

    assert (result.outcome, result.reason) == (Outcome.FAILED, "BadPriority")


def test_one_jwt_and_one_connection_serve_many_batches(sim, apns_config):
    sender = ApnsSender(apns_config)

    async def scenario() -> list[PushResult]:
        results: list[PushResult] = []
        try:
            for batch in range(3):
                results += await sender.send_many([push(batch * 100 + i) for i in range(100)])
        finally:
            await sender.close()
        return results

    results = run(scenario())

    assert [r.outcome for r in results] == [Outcome.SENT] * 300
    assert [r.ref for r in results] == [f"d{i}" for i in range(300)]
    assert sender.jwt_provider is not None and sender.jwt_provider.tokens_issued == 1
    assert sender.connections_opened == 1
    stats = sim.stats()["apns"]
    assert (stats["accepted"], stats["duplicates"], stats["connections"], stats["auth_tokens"]) == (
        300,
        0,
        1,
        1,
    )


def test_many_error_bodies_do_not_stall_a_long_lived_connection(sim, apns_config):
    """aioapns never acknowledged received DATA: after ~64 KiB of error bodies the
    server could not answer any more on that connection."""
    tokens = [apns_token(i) for i in range(1500)]
    sim.configure({"apns": {"invalid_tokens": tokens}})

    results = send(apns_config, [push(i) for i in range(1500)])

    assert {r.outcome for r in results} == {Outcome.INVALID_TOKEN}
    assert sim.stats()["apns"]["by_status"] == {"410": 1500}
    assert sim.stats()["apns"]["connections"] == 1


def test_sender_reconnects_after_the_server_drops_the_connection(sim, apns_config):
    sender = ApnsSender(apns_config)

    async def scenario() -> list[PushResult]:
        try:
            first = await sender.send_many([push(1)])
            assert sim.drop_connections() == 1
            await asyncio.sleep(0.05)  # the GOAWAY and the close reach the sender
            return first + await sender.send_many([push(2), push(3)])
        finally:
            await sender.close()

    results = run(scenario())

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert sender.connections_opened == 2
    assert sim.stats()["apns"]["connections"] == 2


def test_transient_failures_then_success(sim, apns_config):
    sim.configure({"apns": {"transient_failures": {apns_token(1): 2}, "transient_status": 503}})
    sender = ApnsSender(apns_config)

    async def scenario() -> list[PushResult]:
        try:
            return [(await sender.send_many([push(1)]))[0] for _ in range(3)]
        finally:
            await sender.close()

    results = run(scenario())

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.SENT]
    stats = sim.stats()["apns"]
    assert stats["by_status"] == {"200": 1, "503": 2}
    assert stats["duplicates"] == 0


def test_a_resent_token_shows_up_as_a_duplicate(sim, apns_config):
    send(apns_config, [push(1), push(1), push(2)])

    stats = sim.stats(tokens=True)["apns"]
    assert stats["duplicates"] == 1
    assert stats["tokens"] == {apns_token(1): 2, apns_token(2): 1}


def test_unreachable_endpoint_is_retried(sim, apns_config):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    config = dataclasses.replace(apns_config, endpoint=f"127.0.0.1:{port}")

    results = send(config, [push(1), push(2), push(3)])

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.RETRY, "connection_error")] * 3


def test_untrusted_certificate_is_refused(sim, apns_config):
    config = dataclasses.replace(apns_config, ca_file="")  # system CAs only

    [result] = send(config, [push(1)])

    assert (result.outcome, result.reason) == (Outcome.RETRY, "connection_error")
    assert sim.stats()["apns"]["requests_total"] == 0


def test_certificate_auth(sim: SimulatorServer, apns_config):
    config = ApnsConfig(
        topic=sim.credentials.topic,
        client_cert_pem=issue_apns_client_certificate(sim.credentials),
        endpoint=apns_config.endpoint,
        ca_file=apns_config.ca_file,
    )

    [result] = send(config, [push(1)])

    assert (result.outcome, result.status_code) == (Outcome.SENT, 200)


def test_certificate_for_another_topic_is_refused(sim: SimulatorServer, apns_config):
    config = ApnsConfig(
        topic=sim.credentials.topic,
        client_cert_pem=issue_apns_client_certificate(sim.credentials, topic="com.other.app"),
        endpoint=apns_config.endpoint,
        ca_file=apns_config.ca_file,
    )

    [result] = send(config, [push(1)])

    assert (result.outcome, result.reason) == (Outcome.FAILED, "TopicDisallowed")


def test_config_is_hashable_and_validated():
    config = ApnsConfig(topic="t", team_id="T", key_id="K", auth_key_pem="pem")
    assert hash(config) == hash(dataclasses.replace(config))
    assert "pem" not in repr(config)
    with pytest.raises(ValueError, match="exactly one"):
        ApnsConfig(topic="t")
    with pytest.raises(ValueError, match="team_id, key_id and auth_key_pem"):
        ApnsConfig(topic="t", team_id="T", auth_key_pem="pem")


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        (200, "", Outcome.SENT),
        (410, "Unregistered", Outcome.INVALID_TOKEN),
        (410, "ExpiredToken", Outcome.INVALID_TOKEN),
        (400, "BadDeviceToken", Outcome.INVALID_TOKEN),
        (400, "DeviceTokenNotForTopic", Outcome.INVALID_TOKEN),
        (400, "BadPriority", Outcome.FAILED),
        (403, "ExpiredProviderToken", Outcome.FAILED),
        (413, "PayloadTooLarge", Outcome.FAILED),
        (429, "TooManyRequests", Outcome.RETRY),
        (500, "InternalServerError", Outcome.RETRY),
        (503, "ServiceUnavailable", Outcome.RETRY),
    ],
)
def test_classification(status, reason, outcome):
    result = classify_apns_response(ref="r", status=status, reason=reason, apns_id="id")
    assert (result.outcome, result.reason, result.status_code) == (outcome, reason, status)
