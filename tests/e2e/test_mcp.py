"""The issue's done-when, end to end: the SDK's MCP client, over stdio and over HTTP,
creates and sends a campaign that a real worker takes to `sent` at the simulators,
and sends a test push that the simulator accepts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from campaigns.models import CampaignStatus, PushCampaign
from delivery.models import PushDelivery
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project, _tokens
from tests.factories import create_api_key
from tests.mcp.client import McpClient, http_client, stdio_client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["http", "stdio"])
def connect(
    request: pytest.FixtureRequest,
) -> Callable[[Any, str], AbstractContextManager[McpClient]]:
    if request.param == "http":
        live_server = request.getfixturevalue("live_server")
        return lambda project_id, key: http_client(live_server.url, key)
    return lambda project_id, key: stdio_client(project_id, key)


def test_mcp_creates_and_sends_a_campaign_and_a_test_push(
    simulators: Simulators,
    start_worker: Callable[..., Any],
    connect: Callable[[Any, str], AbstractContextManager[McpClient]],
) -> None:
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    apns = _tokens(project, "apns", 20)
    fcm = _tokens(project, "fcm", 20)
    _, key = create_api_key(project)
    start_worker()
    with connect(project.pk, key) as mcp:
        created = mcp.ok("amba_create_push_campaign", {"title": "Hello", "body": "From MCP"})
        assert created["status"] == CampaignStatus.DRAFT
        sending = mcp.ok("amba_send_push_campaign", {"campaign_id": created["id"]})
        assert sending["status"] == CampaignStatus.SENDING
        campaign = PushCampaign.objects.get(pk=created["id"])
        assert wait_for(
            lambda: PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT,
            timeout=120,
        )
        sent = mcp.ok("herald_get_push_campaign", {"campaign_id": created["id"]})
        assert sent["status"] == CampaignStatus.SENT
        assert sent["stats"]["targeted"] == 40
        assert sent["stats"]["sent"] == 40
        again = mcp.error("amba_send_push_campaign", {"campaign_id": created["id"]})
        assert again["error"]["code"] == "ALREADY_SENT"
        accepted = _accepted(simulators)["tokens"]
        assert all(accepted[token] == 1 for token in apns + fcm)

        device = apns[0]
        pushed = mcp.ok(
            "amba_send_test_push",
            {"title": "Test", "body": "Ping", "device_token": device, "provider": "apns"},
        )
    assert pushed["status"] == "sent"
    assert pushed["provider"] == "apns"
    assert pushed["provider_message_id"]
    delivery = PushDelivery.objects.get(pk=pushed["delivery_id"])
    assert delivery.campaign_id is None  # a test push
    assert delivery.token.token == device
    assert _accepted(simulators)["tokens"][device] == 2
