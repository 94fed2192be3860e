"""Web push transport: RFC 8291 encryption, RFC 8292 VAPID, and the sender against the
web push simulator over real TLS (delivery/providers/webpush.py,
delivery/simulators/webpush.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.providers.base import Outcome, OutgoingPush, PushResult, WebPushConfig
from delivery.providers.tls import shared_client_ssl_context
from delivery.providers.webpush import (
    ENCRYPTION_OVERHEAD_BYTES,
    MAX_PLAINTEXT_BYTES,
    InvalidSubscription,
    VapidSigner,
    WebPushSender,
    b64url_decode,
    b64url_encode,
    classify_webpush_response,
    decrypt_aes128gcm,
    encode_payload,
    encrypt_aes128gcm,
    encrypted_size,
    origin_of,
    parse_subscription_keys,
    topic_for,
    webpush_headers,
)
from delivery.simulators.server import SimulatorServer
from delivery.simulators.webpush import browser_decrypt
from tests.delivery.conftest import run

PAYLOAD = {"title": "Spring sale", "body": "20% off", "url": "https://example.com/sale"}

# RFC 8291 Appendix A (published test data, not credentials).
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def private_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def new_vapid() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return pem, b64url_encode(point)


VAPID_PEM, VAPID_PUBLIC = new_vapid()


@pytest.fixture
def config(sim: SimulatorServer) -> WebPushConfig:
    return WebPushConfig(
        vapid_private_key=VAPID_PEM,
        vapid_public_key=VAPID_PUBLIC,
        subject="mailto:ops@example.com",
        ca_file=str(sim.credentials.ca_file),
        concurrency=16,
        connections_per_origin=4,
        timeout_seconds=3.0,
    )


@pytest.fixture
def subscriptions(sim: SimulatorServer) -> list[dict[str, Any]]:
    return sim.mint_webpush_subscriptions(4)


def push(
    subscription: dict[str, Any], ref: str = "d1", payload: Any = None, **kw: Any
) -> OutgoingPush:
    return OutgoingPush(
        ref=ref,
        token=subscription["endpoint"],
        payload=PAYLOAD if payload is None else payload,
        headers=kw.pop("headers", webpush_headers(ttl_seconds=3600, priority="high")),
        keys=kw.pop("keys", subscription["keys"]),
    )


async def send_on(sender: WebPushSender, *batches: list[OutgoingPush]) -> list[list[PushResult]]:
    try:
        return [await sender.send_many(batch) for batch in batches]
    finally:
        await sender.close()


def send(config: WebPushConfig, pushes: list[OutgoingPush]) -> list[PushResult]:
    return run(send_on(WebPushSender(config), pushes))[0]


# --- encryption ---------------------------------------------------------------


def test_encryption_reproduces_the_rfc_8291_vector():
    keys = parse_subscription_keys({"p256dh": RFC_UA_PUBLIC, "auth": RFC_AUTH})

    body = encrypt_aes128gcm(
        RFC_PLAINTEXT,
        keys,
        salt=b64url_decode(RFC_SALT),
        sender_key=private_key(RFC_AS_PRIVATE),
    )

    assert b64url_encode(body) == RFC_BODY
    ua = private_key(RFC_UA_PRIVATE)
    assert decrypt_aes128gcm(body, ua, b64url_decode(RFC_AUTH)) == RFC_PLAINTEXT
    assert browser_decrypt(b64url_decode(RFC_BODY), ua, b64url_decode(RFC_AUTH)) == RFC_PLAINTEXT


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=MAX_PLAINTEXT_BYTES))
def test_encryption_round_trips_through_the_simulators_decryption(plaintext):
    ua = ec.generate_private_key(ec.SECP256R1())
    point = ua.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = bytes(range(16))
    keys = parse_subscription_keys({"p256dh": b64url_encode(point), "auth": b64url_encode(auth)})

    body = encrypt_aes128gcm(plaintext, keys)

    assert len(body) == len(plaintext) + ENCRYPTION_OVERHEAD_BYTES
    assert browser_decrypt(body, ua, auth) == plaintext
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(ValueError, match="authenticate"):
        browser_decrypt(tampered, ua, auth)


def test_encrypted_size_is_the_payload_plus_103_bytes():
    payload = {"title": "é" * 10}

    assert encrypted_size(payload) == len(encode_payload(payload)) + 103
    assert MAX_PLAINTEXT_BYTES == 3993


@pytest.mark.parametrize(
    "keys",
    [
        {"p256dh": RFC_UA_PUBLIC},
        {"p256dh": RFC_UA_PUBLIC, "auth": "c2hvcnQ"},
        {"p256dh": RFC_UA_PUBLIC[:-4], "auth": RFC_AUTH},
        {"p256dh": "B" + "A" * 86, "auth": RFC_AUTH},  # not on the curve
        {"p256dh": RFC_UA_PUBLIC, "auth": "not base64!"},
    ],
)
def test_malformed_keys_are_refused(keys):
    with pytest.raises(InvalidSubscription):
        parse_subscription_keys(keys)


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        (
            "https://Updates.Push.Services.Mozilla.com:443/wpush/v2/x",
            "https://updates.push.services.mozilla.com",
        ),
        ("https://127.0.0.1:2196/push/x", "https://127.0.0.1:2196"),
    ],
)
def test_origin_of_an_endpoint(endpoint, origin):
    assert origin_of(endpoint) == origin


@pytest.mark.parametrize(
    "endpoint", ["http://push.example/x", "https://u:p@push.example/x", "push"]
)
def test_non_https_endpoints_are_invalid(endpoint):
    with pytest.raises(InvalidSubscription):
        origin_of(endpoint)


def test_headers_from_priority_and_collapse_key():
    assert webpush_headers(ttl_seconds=60, priority="normal", collapse_key="sale-1") == {
        "TTL": "60",
        "Urgency": "normal",
        "Topic": "sale-1",
    }
    long_topic = topic_for("spring sale: 20% off everything, today only")
    assert len(long_topic) == 32
    assert long_topic == topic_for("spring sale: 20% off everything, today only")
    assert set(long_topic) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    with pytest.raises(ValueError, match="priority"):
        webpush_headers(ttl_seconds=60, priority="urgent")


# --- VAPID ----------------------------------------------------------------------


def test_vapid_jwt_is_es256_for_the_origin_and_cached_per_origin():
    signer = VapidSigner(VAPID_PEM, VAPID_PUBLIC, "mailto:ops@example.com")
    now = 1_800_000_000.0

    first = signer.authorization("https://a.example", now)
    again = signer.authorization("https://a.example", now + 3600)
    other = signer.authorization("https://b.example", now)
    renewed = signer.authorization("https://a.example", now + 11 * 3600 + 1)

    assert first == again
    assert signer.signatures == 3
    assert len({first, other, renewed}) == 3
    token, key = first.removeprefix("vapid t=").split(", k=")
    assert key == VAPID_PUBLIC
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
    claims = jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        audience="https://a.example",
        options={"verify_exp": False},
    )
    assert claims == {
        "aud": "https://a.example",
        "exp": int(now) + 12 * 3600,
        "sub": "mailto:ops@example.com",
    }


def test_vapid_keys_that_do_not_match_fail_every_push(sim, config, subscriptions):
    _, other_public = new_vapid()

    results = send(
        dataclasses.replace(config, vapid_public_key=other_public), [push(subscriptions[0])]
    )

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.FAILED, "InvalidVapidKey: the VAPID public key does not match the private key")
    ]
    assert sim.stats()["webpush"]["requests_total"] == 0


# --- simulator checks, raw requests -----------------------------------------------


async def raw_post(
    sim: SimulatorServer, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    context = shared_client_ssl_context(str(sim.credentials.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers, ssl=context) as response,
    ):
        return response.status, json.loads(await response.read() or b"{}")


def vapid_header(claims: dict[str, Any], pem: str = VAPID_PEM, public: str = VAPID_PUBLIC) -> str:
    signer = VapidSigner(pem, public, "mailto:ops@example.com")
    return f"vapid t={signer.sign(claims)}, k={public}"


@pytest.mark.parametrize(
    ("claims", "status", "message"),
    [
        ({"aud": "ORIGIN", "exp": "SOON", "sub": "mailto:a@b.c"}, 201, None),
        ({"aud": "https://push.example", "exp": "SOON", "sub": "mailto:a@b.c"}, 403, "aud"),
        ({"aud": "ORIGIN", "exp": "PAST", "sub": "mailto:a@b.c"}, 401, "expired"),
        ({"aud": "ORIGIN", "exp": "FAR", "sub": "mailto:a@b.c"}, 401, "24 hours"),
        ({"aud": "ORIGIN", "exp": "SOON", "sub": "ops"}, 401, "sub"),
        ({"aud": "ORIGIN", "exp": "SOON"}, 401, "sub"),
    ],
)
def test_simulator_checks_the_vapid_jwt(sim, subscriptions, claims, status, message):
    subscription = subscriptions[0]
    origin = sim.addresses.webpush_base_url
    exp = {"SOON": time.time() + 600, "PAST": time.time() - 60, "FAR": time.time() + 25 * 3600}
    claims = {
        k: (origin if v == "ORIGIN" else int(exp[v]) if k == "exp" else v)
        for k, v in claims.items()
    }
    body = encrypt_aes128gcm(b"{}", parse_subscription_keys(subscription["keys"]))
    headers = {"Authorization": vapid_header(claims), "Content-Encoding": "aes128gcm", "TTL": "60"}

    got, answer = run(raw_post(sim, subscription["endpoint"], body, headers))

    assert got == status
    if message:
        assert message in answer["message"]
    assert sim.stats()["webpush"]["accepted"] == (1 if status == 201 else 0)


def test_simulator_refuses_a_signature_by_another_key(sim, subscriptions):
    subscription = subscriptions[0]
    other_pem, other_public = new_vapid()
    claims = {
        "aud": sim.addresses.webpush_base_url,
        "exp": int(time.time()) + 600,
        "sub": "mailto:a@b.c",
    }
    signer = VapidSigner(other_pem, other_public, "mailto:a@b.c")
    forged = f"vapid t={signer.sign(claims)}, k={VAPID_PUBLIC}"
    body = encrypt_aes128gcm(b"{}", parse_subscription_keys(subscription["keys"]))

    status, answer = run(
        raw_post(
            sim,
            subscription["endpoint"],
            body,
            {"Authorization": forged, "Content-Encoding": "aes128gcm", "TTL": "0"},
        )
    )

    assert (status, answer["error"]) == (401, "Unauthorized")
    assert "Signature verification failed" in answer["message"]


def test_simulator_refuses_a_body_it_cannot_decrypt(sim, config, subscriptions):
    # Encrypted for subscription 0, sent to subscription 1: the sender would never
    # notice, the browser would.
    wrong = dataclasses.replace(push(subscriptions[1]), keys=subscriptions[0]["keys"])

    [result] = send(config, [wrong])

    assert (result.outcome, result.status_code) == (Outcome.FAILED, 400)
    assert result.reason.startswith("decryption failed")


def test_unknown_subscription_is_not_found(sim, config, subscriptions):
    forged = dict(subscriptions[0], endpoint=subscriptions[0]["endpoint"][:-3] + "AAA")

    [result] = send(config, [push(forged)])

    assert (result.outcome, result.reason, result.status_code) == (
        Outcome.INVALID_TOKEN,
        "NotFound",
        404,
    )


def test_minted_subscriptions_survive_a_simulator_restart(tmp_path):
    with SimulatorServer(cert_dir=tmp_path) as first:
        [subscription] = first.mint_webpush_subscriptions(1)
    with SimulatorServer(cert_dir=tmp_path) as second:
        subscription_id = subscription["endpoint"].rsplit("/", 1)[1]
        endpoint = f"{second.addresses.webpush_base_url}/push/{subscription_id}"
        keys = subscription["keys"]
        config = WebPushConfig(
            VAPID_PEM, VAPID_PUBLIC, "mailto:a@b.c", ca_file=str(second.credentials.ca_file)
        )
        [result] = send(config, [push({"endpoint": endpoint, "keys": keys})])
        assert result.outcome is Outcome.SENT
        assert second.stats()["webpush"]["accepted"] == 1


# --- the sender against the simulator ---------------------------------------------


def test_accepted_pushes_are_sent_and_decrypted_once_each(sim, config, subscriptions):
    sim.configure({"webpush": {"keep_payloads": True}})
    pushes = [
        push(
            s,
            f"d{i}",
            headers=webpush_headers(ttl_seconds=60, priority="normal", collapse_key="sale"),
        )
        for i, s in enumerate(subscriptions)
    ]

    results = send(config, pushes)

    assert [(r.ref, r.outcome, r.status_code) for r in results] == [
        (f"d{i}", Outcome.SENT, 201) for i in range(4)
    ]
    assert all(
        r.provider_message_id
        and r.provider_message_id.startswith(sim.addresses.webpush_base_url + "/m/")
        for r in results
    )
    stats = sim.stats(tokens=True)["webpush"]
    size = len(encode_payload(PAYLOAD))
    assert stats["tokens"] == {s["endpoint"]: 1 for s in subscriptions}
    assert stats["payloads"] == {s["endpoint"]: PAYLOAD for s in subscriptions}
    assert (stats["accepted"], stats["duplicates"], stats["collapse_ids"]) == (4, 0, {"sale": 4})
    assert (stats["decrypted_bytes_max"], stats["decrypted_bytes_total"]) == (size, 4 * size)
    assert stats["auth_tokens"] == 1


def test_gone_subscription_is_invalid(sim, config, subscriptions):
    sim.configure({"webpush": {"invalid_tokens": [subscriptions[1]["endpoint"]]}})

    results = send(config, [push(subscriptions[0], "d0"), push(subscriptions[1], "d1")])

    assert [(r.ref, r.outcome, r.reason, r.status_code) for r in results] == [
        ("d0", Outcome.SENT, "", 201),
        ("d1", Outcome.INVALID_TOKEN, "Gone", 410),
    ]


def test_throttling_is_retried_with_retry_after(sim, config, subscriptions):
    sim.configure({"webpush": {"error_rate_429": 1.0, "retry_after": 7}})

    [result] = send(config, [push(subscriptions[0])])

    assert (result.outcome, result.status_code, result.retry_after) == (Outcome.RETRY, 429, 7.0)
    assert result.reason == "try again later"


def test_server_errors_and_timeouts_are_retried(sim, config, subscriptions):
    sim.configure(
        {
            "webpush": {
                "transient_failures": {subscriptions[0]["endpoint"]: 1},
                "transient_status": 502,
            }
        }
    )
    [first] = send(config, [push(subscriptions[0])])
    [second] = send(config, [push(subscriptions[0])])
    sim.configure({"webpush": {"latency_ms": 400}})
    [slow] = send(dataclasses.replace(config, timeout_seconds=0.1), [push(subscriptions[1])])

    assert (first.outcome, first.status_code) == (Outcome.RETRY, 502)
    assert second.outcome is Outcome.SENT
    assert (slow.outcome, slow.reason) == (Outcome.RETRY, "timeout")


def test_payload_too_large(sim, config, subscriptions):
    fits = {"b": "x" * (MAX_PLAINTEXT_BYTES - 8)}  # 3,993 bytes of JSON: 4,096 encrypted
    service_refuses = {"b": "x" * (MAX_PLAINTEXT_BYTES - 7)}  # 4,097 bytes encrypted
    cannot_encrypt = {"b": "x" * 4100}
    assert encrypted_size(fits) == 4096

    results = send(
        config,
        [
            push(subscriptions[0], "d0", fits),
            push(subscriptions[1], "d1", service_refuses),
            push(subscriptions[2], "d2", cannot_encrypt),
        ],
    )

    assert [(r.outcome, r.reason, r.status_code) for r in results] == [
        (Outcome.SENT, "", 201),
        (Outcome.FAILED, "payload too large", 413),
        (Outcome.FAILED, "payload too large", None),
    ]
    assert sim.stats()["webpush"]["decrypted_bytes_max"] == MAX_PLAINTEXT_BYTES


def test_subscription_of_another_application_server_fails_with_the_reason(
    sim, config, subscriptions
):
    sim.configure({"webpush": {"foreign_tokens": [subscriptions[0]["endpoint"]]}})

    [result] = send(config, [push(subscriptions[0])])

    assert (result.outcome, result.status_code) == (Outcome.FAILED, 403)
    assert result.reason == "subscription belongs to another application server key"


def test_missing_keys_fail_and_malformed_keys_retire_the_subscription(sim, config, subscriptions):
    results = send(
        config,
        [
            push(subscriptions[0], "d0", keys=None),
            push(subscriptions[1], "d1", keys={"p256dh": "xx", "auth": RFC_AUTH}),
            push({"endpoint": "http://push.example/x", "keys": subscriptions[2]["keys"]}, "d2"),
        ],
    )

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.FAILED, "MissingSubscriptionKeys"),
        (
            Outcome.INVALID_TOKEN,
            "InvalidSubscription: p256dh must be a 65-byte uncompressed P-256 point",
        ),
        (Outcome.INVALID_TOKEN, "InvalidSubscription: endpoint must be an https URL"),
    ]
    assert sim.stats()["webpush"]["requests_total"] == 0


def test_each_origin_gets_its_own_pool_and_one_jwt(sim, config, subscriptions):
    """127.0.0.1 and localhost are two origins of one simulator: two push services."""
    port = sim.addresses.webpush_port
    as_localhost = [
        dict(
            s,
            endpoint=s["endpoint"].replace(
                f"https://127.0.0.1:{port}", f"https://localhost:{port}"
            ),
        )
        for s in subscriptions[2:]
    ]
    batch = [push(s, f"a{i}") for i, s in enumerate(subscriptions[:2])] + [
        push(s, f"b{i}") for i, s in enumerate(as_localhost)
    ]
    sender = WebPushSender(config)

    async def go() -> tuple[list[list[PushResult]], set[str], int]:
        results = [await sender.send_many(batch), await sender.send_many(batch)]
        pools, signatures = set(sender.pools), sender.signer.signatures if sender.signer else 0
        await sender.close()
        return results, pools, signatures

    results, pools, signatures = run(go())

    assert [r.outcome for batch_results in results for r in batch_results] == [Outcome.SENT] * 8
    assert pools == {f"https://127.0.0.1:{port}", f"https://localhost:{port}"}
    assert signatures == 2
    stats = sim.stats()["webpush"]
    assert stats["by_origin"] == {f"https://127.0.0.1:{port}": 4, f"https://localhost:{port}": 4}
    assert stats["auth_tokens"] == 2  # the simulator verified two distinct JWTs
    assert 2 <= stats["connections"] <= 2 * config.connections_per_origin


def test_endpoint_override_sends_everything_to_one_origin(sim, config, subscriptions):
    foreign = dict(
        subscriptions[0],
        endpoint=subscriptions[0]["endpoint"].replace(
            sim.addresses.webpush_base_url, "https://fcm.googleapis.com"
        ),
    )
    overridden = dataclasses.replace(config, endpoint=sim.addresses.webpush_base_url)

    [result] = send(overridden, [push(foreign)])

    assert result.outcome is Outcome.SENT
    assert sim.stats(tokens=True)["webpush"]["tokens"] == {subscriptions[0]["endpoint"]: 1}


def test_mint_route_on_the_control_server(sim):
    async def mint(body: bytes) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                sim.addresses.control_url + "/webpush/subscriptions", data=body
            ) as response,
        ):
            return response.status, await response.json()

    status, answer = run(mint(b'{"count": 3}'))
    refused = run(mint(b'{"count": 0}'))

    assert status == 200
    assert len({s["endpoint"] for s in answer["subscriptions"]}) == 3
    for s in answer["subscriptions"]:
        keys = parse_subscription_keys(s["keys"])
        assert (len(keys.public_bytes), len(keys.auth_secret)) == (65, 16)
    assert refused == (400, {"error": "count must be between 1 and 100000"})


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        (200, Outcome.SENT, ""),
        (202, Outcome.SENT, ""),
        (400, Outcome.FAILED, "bad header"),
        (401, Outcome.FAILED, "bad header"),
        (404, Outcome.INVALID_TOKEN, "NotFound"),
        (410, Outcome.INVALID_TOKEN, "Gone"),
        (413, Outcome.FAILED, "payload too large"),
        (500, Outcome.RETRY, "bad header"),
        (503, Outcome.RETRY, "bad header"),
    ],
)
def test_classification(status, outcome, reason):
    result = classify_webpush_response(ref="d", status=status, body=b'{"message": "bad header"}')

    assert (result.outcome, result.reason) == (outcome, reason)


def test_text_error_bodies_become_the_reason():
    result = classify_webpush_response(ref="d", status=400, body=b"UnauthorizedRegistration\n")

    assert result.reason == "UnauthorizedRegistration"
    assert classify_webpush_response(ref="d", status=403).reason == "403"


def test_concurrent_batches_share_one_pool(sim, config, subscriptions):
    sender = WebPushSender(config)

    async def go() -> list[list[PushResult]]:
        try:
            return list(
                await asyncio.gather(
                    *(sender.send_many([push(s, f"d{i}")]) for i, s in enumerate(subscriptions))
                )
            )
        finally:
            await sender.close()

    results = run(go())

    assert [r.outcome for [r] in results] == [Outcome.SENT] * 4
    assert sim.stats()["webpush"]["auth_tokens"] == 1


def test_the_process_runtime_keeps_one_web_push_sender_per_config(sim, config, subscriptions):
    from delivery.providers import runtime

    first = runtime.send_batch(config, [push(subscriptions[0], "d0")])
    second = runtime.send_batch(config, [push(subscriptions[1], "d1")])
    sender = runtime.get_sender(config)

    assert [r.outcome for r in first + second] == [Outcome.SENT, Outcome.SENT]
    assert isinstance(sender, WebPushSender)
    assert sender.signer is not None and sender.signer.signatures == 1
    assert sim.stats()["webpush"]["connections"] == 1
