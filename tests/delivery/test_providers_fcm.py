"""FCM sender against the FCM simulator (HTTP v1 + OAuth2 token endpoint) over TLS."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from delivery.providers.base import FcmConfig, Outcome, OutgoingPush, PushResult
from delivery.providers.fcm import FcmSender, classify_fcm_response
from tests.delivery.conftest import FCM_PAYLOAD, fcm_token, run, send_with


def send(config: FcmConfig, pushes: list[OutgoingPush]) -> list[PushResult]:
    return run(send_with(FcmSender(config), pushes))


def push(index: int, payload: dict | None = None) -> OutgoingPush:
    return OutgoingPush(ref=f"d{index}", token=fcm_token(index), payload=payload or FCM_PAYLOAD)


def test_accepted_message_is_sent_with_its_name(sim, fcm_config):
    [result] = send(fcm_config, [push(1)])

    assert result.outcome is Outcome.SENT
    assert result.status_code == 200
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("projects/herald-demo/messages/0:")
    stats = sim.stats(tokens=True)["fcm"]
    assert (stats["accepted"], stats["tokens"]) == (1, {fcm_token(1): 1})


def test_unregistered_token_is_invalid(sim, fcm_config):
    sim.configure({"fcm": {"invalid_tokens": [fcm_token(2)]}})

    results = send(fcm_config, [push(1), push(2)])

    assert [(r.ref, r.outcome, r.reason, r.status_code) for r in results] == [
        ("d1", Outcome.SENT, "", 200),
        ("d2", Outcome.INVALID_TOKEN, "UNREGISTERED", 404),
    ]


def test_malformed_registration_token_is_invalid(sim, fcm_config):
    [result] = send(fcm_config, [OutgoingPush("d1", "bad token!", FCM_PAYLOAD)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.INVALID_TOKEN,
        "INVALID_ARGUMENT",
        400,
    )


def test_invalid_message_fails_without_blaming_the_token(sim, fcm_config):
    [result] = send(fcm_config, [push(1, {"data": {"count": 3}})])

    assert result.outcome is Outcome.FAILED
    assert result.status_code == 400
    assert result.reason == "INVALID_ARGUMENT: Invalid value at 'message.data.count' (TYPE_STRING)"


def test_token_of_another_sender_is_invalid(sim, fcm_config):
    sim.configure({"fcm": {"foreign_tokens": [fcm_token(1)]}})

    [result] = send(fcm_config, [push(1)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.INVALID_TOKEN,
        "SENDER_ID_MISMATCH",
        403,
    )


def test_quota_exceeded_is_retried_with_retry_after(sim, fcm_config):
    sim.configure({"fcm": {"error_rate_429": 1.0, "retry_after": 7}})

    [result] = send(fcm_config, [push(1)])

    assert result == PushResult("d1", Outcome.RETRY, None, "QUOTA_EXCEEDED", 429, 7.0)


@pytest.mark.parametrize(("status", "reason"), [(503, "UNAVAILABLE"), (500, "INTERNAL")])
def test_server_errors_are_retried(sim, fcm_config, status, reason):
    sim.configure({"fcm": {"error_rate_5xx": 1.0, "status_5xx": status, "retry_after": 2}})

    [result] = send(fcm_config, [push(1)])

    expected_retry_after = 2.0 if status == 503 else None
    assert result == PushResult("d1", Outcome.RETRY, None, reason, status, expected_retry_after)


def test_timeout_is_retried(sim, fcm_config):
    sim.configure({"fcm": {"latency_ms": 500}})
    config = dataclasses.replace(fcm_config, timeout_seconds=0.15)

    results = send(config, [push(1), push(2)])

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.RETRY, "timeout")] * 2


def test_wrong_project_fails(sim, fcm_config):
    info = {**fcm_config.service_account_info, "project_id": "someone-else"}
    config = dataclasses.replace(fcm_config, service_account_info=info)

    [result] = send(config, [push(1)])

    assert result.outcome is Outcome.FAILED
    assert result.status_code == 403
    assert result.reason.startswith("PERMISSION_DENIED: ")


def test_service_account_with_a_wrong_key_fails_every_push(sim, fcm_config):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    info = {**fcm_config.service_account_info, "private_key": other_key.decode()}
    config = dataclasses.replace(fcm_config, service_account_info=info)
    sender = FcmSender(config)

    results = run(send_with(sender, [push(1), push(2), push(3)]))

    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert [r.reason for r in results] == [
        "AUTH_ERROR: invalid_grant: Invalid JWT Signature. (Signature verification failed)"
    ] * 3
    assert sender.token_fetches == 0
    stats = sim.stats()["fcm"]
    assert (stats["auth_tokens"], stats["requests_total"]) == (0, 0)


def test_one_oauth_token_and_few_connections_serve_many_batches(sim, fcm_config):
    sender = FcmSender(fcm_config)

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
    assert sender.token_fetches == 1
    stats = sim.stats()["fcm"]
    assert (stats["accepted"], stats["duplicates"], stats["auth_tokens"]) == (300, 0, 1)
    # At most one keep-alive connection per concurrent request, plus the token fetch.
    assert stats["connections"] <= fcm_config.concurrency + 1


def test_sequential_sends_use_exactly_one_connection(sim, fcm_config):
    config = dataclasses.replace(fcm_config, concurrency=1)

    results = send(config, [push(i) for i in range(50)])

    assert [r.outcome for r in results] == [Outcome.SENT] * 50
    # One for the OAuth token (google-auth's own session), one for all 50 messages.
    assert sim.stats()["fcm"]["connections"] == 2


def test_revoked_access_token_is_retried_and_refetched(sim, fcm_config):
    sender = FcmSender(fcm_config)

    async def scenario() -> list[PushResult]:
        try:
            first = await sender.send_many([push(1)])
            sim.revoke_auth()
            second = await sender.send_many([push(2)])
            third = await sender.send_many([push(2)])
            return first + second + third
        finally:
            await sender.close()

    results = run(scenario())

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.SENT, ""),
        (Outcome.RETRY, "UNAUTHENTICATED"),
        (Outcome.SENT, ""),
    ]
    assert sender.token_fetches == 2


def test_transient_failures_then_success(sim, fcm_config):
    sim.configure({"fcm": {"transient_failures": {fcm_token(1): 2}, "transient_status": 429}})
    sender = FcmSender(fcm_config)

    async def scenario() -> list[PushResult]:
        try:
            return [(await sender.send_many([push(1)]))[0] for _ in range(3)]
        finally:
            await sender.close()

    results = run(scenario())

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.RETRY, "QUOTA_EXCEEDED"),
        (Outcome.RETRY, "QUOTA_EXCEEDED"),
        (Outcome.SENT, ""),
    ]
    assert sim.stats()["fcm"]["by_status"] == {"200": 1, "429": 2}


def test_unreachable_endpoint_is_retried(sim, fcm_config):
    config = dataclasses.replace(fcm_config, endpoint="https://127.0.0.1:9")

    results = send(config, [push(1), push(2)])

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.RETRY, "connection_error")] * 2


def test_payload_that_is_not_json_fails_that_push_only(sim, fcm_config):
    results = send(fcm_config, [push(1, {"data": {"k": object()}}), push(2)])

    assert results[0].outcome is Outcome.FAILED
    assert results[0].reason.startswith("InvalidPayload: ")
    assert results[1].outcome is Outcome.SENT


def test_config_is_hashable_by_service_account_content(fcm_config):
    same = dataclasses.replace(
        fcm_config, service_account_info=dict(fcm_config.service_account_info)
    )
    other = dataclasses.replace(
        fcm_config, service_account_info={**fcm_config.service_account_info, "project_id": "x"}
    )
    assert same == fcm_config and hash(same) == hash(fcm_config)
    assert other != fcm_config
    assert len({fcm_config, same, other}) == 2
    with pytest.raises(ValueError, match="token_uri"):
        FcmConfig(service_account_info={"project_id": "p", "client_email": "e", "private_key": "k"})


def _error(status: int, code: str = "", google_status: str = "", **extra: object) -> bytes:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    body = {
        "code": status,
        "message": "m",
        "status": google_status,
        "details": details if code else [],
    }
    body.update(extra)
    return json.dumps({"error": body}).encode()


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, b'{"name": "projects/p/messages/1"}', Outcome.SENT, ""),
        (404, _error(404, "UNREGISTERED", "NOT_FOUND"), Outcome.INVALID_TOKEN, "UNREGISTERED"),
        (403, _error(403, "SENDER_ID_MISMATCH"), Outcome.INVALID_TOKEN, "SENDER_ID_MISMATCH"),
        (429, _error(429, "QUOTA_EXCEEDED"), Outcome.RETRY, "QUOTA_EXCEEDED"),
        (503, _error(503, "UNAVAILABLE", "UNAVAILABLE"), Outcome.RETRY, "UNAVAILABLE"),
        (500, _error(500, "INTERNAL", "INTERNAL"), Outcome.RETRY, "INTERNAL"),
        (502, b"<html>bad gateway</html>", Outcome.RETRY, "502"),
        (401, _error(401, "THIRD_PARTY_AUTH_ERROR"), Outcome.FAILED, "THIRD_PARTY_AUTH_ERROR: m"),
        (
            400,
            _error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
            Outcome.FAILED,
            "INVALID_ARGUMENT: m",
        ),
        # A 404 or 400 without an FCM error body is not about the token (wrong URL).
        (404, b"Not Found", Outcome.FAILED, "404: Not Found"),
        (400, b"", Outcome.FAILED, "400"),
    ],
)
def test_classification(status, body, outcome, reason):
    result = classify_fcm_response(ref="r", status=status, body=body)
    assert (result.outcome, result.reason, result.status_code) == (outcome, reason, status)


def test_invalid_argument_about_the_token_is_an_invalid_token():
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "The registration token is not a valid FCM registration token",
                "status": "INVALID_ARGUMENT",
            }
        }
    ).encode()
    result = classify_fcm_response(ref="r", status=400, body=body)
    assert (result.outcome, result.reason) == (Outcome.INVALID_TOKEN, "INVALID_ARGUMENT")
