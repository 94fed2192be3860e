"""The provider simulators themselves: control server, knobs, credentials, checks
that the senders never trigger (missing/expired auth, malformed requests), CLI."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest

from delivery.management.commands.run_simulators import Command
from delivery.simulators.apns import ApnsSimulator
from delivery.simulators.behaviour import Behaviour, ProviderStats
from delivery.simulators.cli import server_from_options
from delivery.simulators.credentials import ensure_demo_credentials
from delivery.simulators.fcm import _Invalid, validate_message
from delivery.simulators.server import SimulatorServer
from tests.delivery.conftest import apns_token

ROOT = Path(__file__).resolve().parents[2]


def control(sim: SimulatorServer, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sim.addresses.control_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# --- control server ---------------------------------------------------------


def test_healthz(sim):
    assert control(sim, "GET", "/healthz") == (200, {"ok": True})


def test_config_round_trip(sim):
    status, body = control(
        sim,
        "POST",
        "/config",
        {"apns": {"latency_ms": 5, "invalid_tokens": ["b", "a"]}, "all": {"retry_after": 3}},
    )

    assert status == 200
    assert body["apns"]["latency_ms"] == 5.0
    assert body["apns"]["invalid_tokens"] == ["a", "b"]
    assert body["apns"]["retry_after"] == body["fcm"]["retry_after"] == 3.0
    assert body["fcm"]["invalid_tokens"] == []
    assert control(sim, "GET", "/config") == (200, body)


def test_refused_config_changes_nothing(sim):
    before = control(sim, "GET", "/config")[1]

    status, body = control(
        sim, "POST", "/config", {"apns": {"latency_ms": 9}, "fcm": {"error_rate_429": 2}}
    )

    assert (status, body) == (400, {"error": "error_rate_429 must be between 0 and 1"})
    assert control(sim, "GET", "/config")[1] == before
    assert control(sim, "POST", "/config", {"apns": {"nope": 1}})[0] == 400
    assert control(sim, "POST", "/config", {"wns": {}})[0] == 400


def test_stats_and_reset(sim):
    sim.apns.stats.record(200, "t1", "c-1")
    sim.apns.stats.record(200, "t1", "c-1")
    sim.apns.stats.record(410, "t2", "c-1")

    status, stats = control(sim, "GET", "/stats?tokens=1")

    assert status == 200
    assert stats["apns"] == {
        "requests_total": 3,
        "accepted": 2,
        "duplicates": 1,
        "connections": 0,
        "auth_tokens": 0,
        "by_status": {"200": 2, "410": 1},
        "tokens": {"t1": 2},
        "collapse_ids": {"c-1": 2},  # accepted messages only
        "payloads": {},  # kept only with keep_payloads
    }
    assert "tokens" not in control(sim, "GET", "/stats")[1]["apns"]
    status, after = control(sim, "POST", "/reset")
    assert status == 200
    assert after["apns"]["requests_total"] == 0
    assert sim.stats(tokens=True)["apns"]["tokens"] == {}
    assert sim.stats(tokens=True)["apns"]["collapse_ids"] == {}


def test_reset_with_config_restores_the_start_knobs(sim):
    sim.configure({"fcm": {"latency_ms": 50}})

    control(sim, "POST", "/reset", {"config": True})

    assert sim.config()["fcm"]["latency_ms"] == 0.0


# --- behaviour and stats -------------------------------------------------------


def test_transient_failures_are_consumed_per_token():
    behaviour = Behaviour(transient_failures={"a": 2}, transient_status=429)

    assert [behaviour.injected_status("a") for _ in range(3)] == [429, 429, None]
    assert behaviour.injected_status("b") is None
    assert behaviour.transient_failures == {}


def test_random_errors_are_reproducible_with_a_seed():
    def draws(seed: int) -> list[int | None]:
        behaviour = Behaviour(error_rate_429=0.3, error_rate_5xx=0.3, seed=seed)
        return [behaviour.injected_status("t") for _ in range(200)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    outcomes = draws(7)
    assert {429, 503, None} == set(outcomes)


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rate_5xx": -0.1},
        {"status_5xx": 404},
        {"transient_status": 200},
        {"invalid_tokens": "abc"},
        {"transient_failures": ["a"]},
        {"colour": "red"},
    ],
)
def test_bad_knobs_are_refused(knobs):
    behaviour = Behaviour()
    with pytest.raises(ValueError):
        behaviour.update(knobs)
    assert behaviour.as_dict() == Behaviour().as_dict()


def test_duplicates_count_tokens_not_extra_sends():
    stats = ProviderStats("apns")
    for token in ["a", "a", "a", "b", "b", "c"]:
        stats.record(200, token)
    assert (stats.accepted, stats.duplicates) == (6, 2)


# --- credentials ------------------------------------------------------------------


def test_credentials_are_generated_once_and_reused(tmp_path):
    first = ensure_demo_credentials(tmp_path, fcm_base_url="https://127.0.0.1:1111")
    second = ensure_demo_credentials(tmp_path, fcm_base_url="https://127.0.0.1:2222")

    assert (second.key_id, second.team_id, second.auth_key_pem) == (
        first.key_id,
        first.team_id,
        first.auth_key_pem,
    )
    assert second.service_account_info["private_key"] == first.service_account_info["private_key"]
    assert first.service_account_info["token_uri"] == "https://127.0.0.1:1111/token"
    assert second.service_account_info["token_uri"] == "https://127.0.0.1:2222/token"
    assert json.loads(second.fcm_service_account_file.read_text())["token_uri"] == (
        "https://127.0.0.1:2222/token"
    )
    assert first.topic == "com.herald.demo"
    assert first.service_account_info["project_id"] == "herald-demo"
    for secret in (first.tls_key_file, first.apns_key_file, first.fcm_service_account_file):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert len(first.key_id) == len(first.team_id) == 10


# --- APNs request checks the sender never triggers ------------------------------------


@pytest.fixture
def apns_sim(sim: SimulatorServer) -> ApnsSimulator:
    c = sim.credentials
    return ApnsSimulator(
        topic=c.topic, team_id=c.team_id, key_id=c.key_id, public_key_pem=c.apns_public_key_pem
    )


def _jwt(sim: SimulatorServer, *, iat: int, team_id: str | None = None) -> bytes:
    c = sim.credentials
    token = jwt.encode(
        {"iss": team_id or c.team_id, "iat": iat},
        c.auth_key_pem,
        algorithm="ES256",
        headers={"kid": c.key_id},
    )
    return f"bearer {token}".encode()


def _request(authorization: bytes | None, token: str = apns_token(1), **extra: bytes) -> dict:
    headers = {
        b":method": b"POST",
        b":path": f"/3/device/{token}".encode(),
        b"apns-topic": b"com.herald.demo",
    }
    if authorization is not None:
        headers[b"authorization"] = authorization
    headers.update({k.replace("_", "-").encode(): v for k, v in extra.items()})
    return headers


def _reason(answer: tuple[int, bytes | None, bytes]) -> tuple[int, str]:
    status, _, body = answer
    return status, json.loads(body)["reason"] if body else ""


def test_apns_auth_checks(sim, apns_sim):
    body = b'{"aps": {}}'
    now = int(time.time())

    def answer(headers: dict) -> tuple[int, str]:
        return _reason(apns_sim.handle(headers, body, client_cert_topic=None))

    assert answer(_request(None)) == (403, "MissingProviderToken")
    assert answer(_request(b"bearer garbage")) == (403, "InvalidProviderToken")
    assert answer(_request(_jwt(sim, iat=now, team_id="OTHERTEAM1"))) == (
        403,
        "InvalidProviderToken",
    )
    assert answer(_request(_jwt(sim, iat=now - 7200))) == (403, "ExpiredProviderToken")
    good = _jwt(sim, iat=now)
    assert answer(_request(good)) == (200, "")
    assert answer(_request(good)) == (200, "")
    assert apns_sim.stats.auth_tokens == 2  # the expired one and the good one, once each


def test_apns_request_checks(sim, apns_sim):
    auth = _jwt(sim, iat=int(time.time()))

    def answer(headers: dict, body: bytes = b'{"aps": {}}') -> tuple[int, str]:
        return _reason(apns_sim.handle(headers, body, client_cert_topic=None))

    no_topic = _request(auth)
    del no_topic[b"apns-topic"]
    assert answer(no_topic) == (400, "MissingTopic")
    assert answer(_request(auth, token="")) == (400, "MissingDeviceToken")
    assert answer(_request(auth, token="ab" * 31)) == (400, "BadDeviceToken")
    assert answer(_request(auth, apns_push_type=b"fax")) == (400, "InvalidPushType")
    assert answer(_request(auth, apns_expiration=b"soon")) == (400, "BadExpirationDate")
    assert answer(_request(auth, apns_collapse_id=b"c" * 65)) == (400, "BadCollapseId")
    assert answer(_request(auth, apns_id=b"not-a-uuid")) == (400, "BadMessageId")
    assert answer(_request(auth), b"") == (400, "PayloadEmpty")
    assert answer(_request(auth), b"[1]") == (400, "BadPayload")
    voip = b'{"aps": {}, "x": "' + b"v" * 4500 + b'"}'
    assert answer(_request(auth), voip) == (413, "PayloadTooLarge")
    assert answer(_request(auth, apns_push_type=b"voip"), voip) == (200, "")
    get = _request(auth)
    get[b":method"] = b"GET"
    assert answer(get) == (405, "MethodNotAllowed")


# --- FCM checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"data": {}}, "message"),
        ({"token": "t" * 30, "topic": "news"}, "message"),
        ({"token": "short"}, "message.token"),
        ({"topic": "news", "data": {"n": 1}}, "message.data.n"),
        ({"topic": "news", "notification": {"title": 5}}, "message.notification.title"),
        ({"topic": "news", "android": {"priority": "urgent"}}, "message.android.priority"),
        ({"topic": "news", "android": {"ttl": "30"}}, "message.android.ttl"),
        (
            {"topic": "news", "apns": {"headers": {"apns-priority": 10}}},
            "message.apns.headers.apns-priority",
        ),
        ({"topic": "news", "extra": 1}, "message.extra"),
    ],
)
def test_fcm_message_validation(message, field):
    with pytest.raises(_Invalid) as raised:
        validate_message(message)
    assert raised.value.field == field


def test_fcm_valid_message():
    validate_message(
        {
            "token": "t" * 40,
            "notification": {"title": "T", "body": "B"},
            "data": {"k": "v"},
            "android": {"priority": "high", "ttl": "30s", "notification": {"channel_id": "c"}},
            "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {}}},
        }
    )


def test_fcm_token_endpoint_refuses_a_bad_assertion(sim):
    request = urllib.request.Request(
        sim.addresses.fcm_base_url + "/token",
        data=b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x.y.z",
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(sim.credentials.ca_file))
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5, context=context)
    assert raised.value.code == 400
    assert json.load(raised.value)["error"] == "invalid_grant"
    assert sim.stats()["fcm"]["auth_tokens"] == 0


# --- command line -------------------------------------------------------------------


def test_run_simulators_options_reach_the_server(tmp_path):
    tokens_file = tmp_path / "bad.txt"
    tokens_file.write_text("# gone\naaaa\n\nbbbb  # also gone\n")
    parser = Command().create_parser("manage.py", "run_simulators")
    options = vars(
        parser.parse_args(
            [
                "--apns-port=0",
                "--fcm-port=0",
                "--control-port=0",
                "--webpush-port=0",
                "--webpush-port=0",
                f"--cert-dir={tmp_path / 'certs'}",
                "--latency-ms=3",
                "--error-rate-429=0.25",
                f"--invalid-tokens-file={tokens_file}",
            ]
        )
    )

    with server_from_options(options) as server:
        config = server.config()

    for provider in ("apns", "fcm", "webpush"):
        assert config[provider]["latency_ms"] == 3.0
        assert config[provider]["error_rate_429"] == 0.25
        assert config[provider]["invalid_tokens"] == ["aaaa", "bbbb"]


def test_simulators_run_as_a_separate_process(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery.simulators",
            "--apns-port=0",
            "--fcm-port=0",
            "--control-port=0",
            "--webpush-port=0",
            f"--cert-dir={tmp_path}",
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        with urllib.request.urlopen(info["control_url"] + "/healthz", timeout=5) as response:
            assert json.load(response) == {"ok": True}
        assert info["ca_file"] == str(tmp_path / "simulator-ca.pem")
        assert info["apns_topic"] == "com.herald.demo"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
