"""Shared fixtures for the delivery tests: real provider simulators, in process.

One ``SimulatorServer`` per test session (TLS setup and key generation are the slow
part); ``sim`` resets its counters and knobs before each test so tests stay
independent. Senders are exercised over real TLS + HTTP/2 (APNs) and HTTP/1.1
keep-alive (FCM) against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from delivery.providers.apns import ApnsSender
from delivery.providers.base import ApnsConfig, FcmConfig, OutgoingPush, PushResult
from delivery.providers.fcm import FcmSender
from delivery.providers.webpush import WebPushSender
from delivery.simulators.server import SimulatorServer

T = TypeVar("T")

# A valid-looking APNs token (64 hex chars) and FCM token, distinct per index.
APNS_PAYLOAD = {"aps": {"alert": {"title": "Hi", "body": "there"}}}
FCM_PAYLOAD = {"notification": {"title": "Hi", "body": "there"}, "data": {"k": "v"}}


def apns_token(index: int) -> str:
    return f"{index:064x}"


def fcm_token(index: int) -> str:
    return f"fcm-token-{index:030d}"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def send_with(
    sender: ApnsSender | FcmSender | WebPushSender, pushes: Sequence[OutgoingPush]
) -> list[PushResult]:
    """One batch on a fresh sender, closed afterwards."""
    try:
        return await sender.send_many(pushes)
    finally:
        await sender.close()


@pytest.fixture(scope="session")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorServer]:
    server = SimulatorServer(cert_dir=tmp_path_factory.mktemp("simulators")).start()
    yield server
    server.stop()


@pytest.fixture
def sim(simulators: SimulatorServer) -> SimulatorServer:
    simulators.reset(config=True)
    return simulators


@pytest.fixture
def apns_config(sim: SimulatorServer) -> ApnsConfig:
    credentials = sim.credentials
    return ApnsConfig(
        topic=credentials.topic,
        team_id=credentials.team_id,
        key_id=credentials.key_id,
        auth_key_pem=credentials.auth_key_pem,
        endpoint=sim.addresses.apns_endpoint,
        ca_file=str(credentials.ca_file),
        concurrency=50,
        timeout_seconds=3.0,
    )


@pytest.fixture
def fcm_config(sim: SimulatorServer) -> FcmConfig:
    return FcmConfig(
        service_account_info=sim.credentials.service_account_info,
        endpoint=sim.addresses.fcm_base_url,
        ca_file=str(sim.credentials.ca_file),
        concurrency=8,
        timeout_seconds=3.0,
    )
