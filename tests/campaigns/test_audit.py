"""Campaign and test-push events in the audit trail, per door: the REST API (a Bearer
key), the console (a staff session), a command, the MCP tools and the scheduler. Each
names the exact actor, door, action, object and changes; a refused request records
nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns import scheduling
from campaigns.models import CampaignStatus, PushCampaign
from core.models import ApiKey, AuditEvent, Project
from delivery.models import PushDelivery
from tests.campaigns.conftest import DEAD_APNS
from tests.campaigns.test_admin import campaign_form
from tests.console import url
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    ProjectFactory,
    PushTokenFactory,
    api_client,
    create_api_key,
)

UA = "curl/8.5.0"
COLUMNS = ("action", "actor_kind", "actor", "via", "object_type", "object_id", "changes")


def trail(*columns: str) -> list[tuple[Any, ...]]:
    """Every event but console logins, oldest first, as the columns asked for."""
    rows = AuditEvent.objects.exclude(action__startswith="console.").order_by("id")
    return [tuple(dict(row)[c] for c in columns or COLUMNS) for row in rows.values()]


def masked(key: ApiKey) -> str:
    return f"hk_{key.prefix}_…"


@pytest.fixture
def keyed(db: None) -> tuple[Project, ApiKey, Any]:
    project = ProjectFactory.create(name="Acme")
    key, raw = create_api_key(project)
    client = api_client(raw)
    client.defaults["HTTP_USER_AGENT"] = UA
    return project, key, client


def base(project: Project) -> str:
    return f"/admin/projects/{project.pk}/push/campaigns"


# --- REST API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_campaign_lifecycle(keyed: Any, broker: Any) -> None:
    project, key, client = keyed
    later = (timezone.now() + timedelta(days=2)).replace(microsecond=0)

    created = client.post(base(project), {"title": "Hi", "body": "There"})
    cid = created.json()["id"]
    one = f"{base(project)}/{cid}"
    assert client.patch(one, {"title": "Hello", "tags": ["spring"]}).status_code == 200
    assert client.patch(one, {"scheduled_at": later.isoformat()}).status_code == 200
    assert client.patch(one, {"scheduled_at": None}).status_code == 200
    assert client.post(f"{one}/send").status_code == 200
    assert client.post(f"{one}/cancel").status_code == 200

    actor = ("api_key", masked(key), "api", "pushcampaign", cid)
    assert trail() == [
        ("campaign.created", *actor, {"fields": ["body", "name", "title"]}),
        ("campaign.updated", *actor, {"fields": ["tags", "title"]}),
        ("campaign.updated", *actor, {"fields": ["scheduled_at"]}),
        (
            "campaign.scheduled",
            *actor,
            {"scheduled_at": later.isoformat(), "recurring": False},
        ),
        ("campaign.updated", *actor, {"fields": ["scheduled_at"]}),
        ("campaign.unscheduled", *actor, {}),
        ("campaign.sent", *actor, {"run": 1, "trigger": "send"}),
        ("campaign.cancelled", *actor, {"run": 1}),
    ]
    event = AuditEvent.objects.get(action="campaign.sent")
    assert (event.project_id, event.ip, event.user_agent, event.object_repr) == (
        project.pk,
        "127.0.0.1",
        UA,
        "Hi",  # the name (it defaulted to the first title)
    )

    draft = client.post(base(project), {"title": "Gone", "body": "Soon", "name": "Temp"}).json()
    assert client.delete(f"{base(project)}/{draft['id']}").status_code == 204
    assert trail("action", "object_id", "object_repr", "changes")[-1] == (
        "campaign.deleted",
        draft["id"],
        "Temp",
        {"status": "draft"},
    )


@pytest.mark.django_db
def test_api_create_scheduled_records_both(keyed: Any) -> None:
    project, _, client = keyed
    later = (timezone.now() + timedelta(days=2)).replace(microsecond=0)

    response = client.post(
        base(project), {"title": "Hi", "body": "There", "scheduled_at": later.isoformat()}
    )

    assert response.status_code == 201
    assert trail("action", "changes") == [
        ("campaign.created", {"fields": ["body", "name", "scheduled_at", "title"]}),
        ("campaign.scheduled", {"scheduled_at": later.isoformat(), "recurring": False}),
    ]


@pytest.mark.django_db
def test_refused_api_requests_record_nothing(keyed: Any, broker: Any) -> None:
    project, _, client = keyed
    sent = CampaignFactory.create(project=project, status=CampaignStatus.SENT)
    one = f"{base(project)}/{sent.pk}"

    responses = [
        client.post(base(project), {"title": "", "body": "x"}),  # 400
        client.patch(one, {}),  # 400 EMPTY_UPDATE
        client.patch(one, {"title": "New"}),  # 409 ALREADY_SENT
        client.post(f"{one}/send"),  # 409
        client.post(f"{one}/cancel"),  # 409
        client.delete(one),  # 409
        client.post(f"{base(project)}/test", {"title": "T", "body": "B"}),  # MISSING_TARGET
    ]

    assert [r.status_code for r in responses] == [400, 400, 409, 409, 409, 409, 400]
    assert trail() == []


@pytest.mark.django_db
def test_api_explicit_push(keyed: Any, broker: Any) -> None:
    project, key, client = keyed
    campaign = CampaignFactory.create(project=project)
    user = AppUserFactory.create(project=project, external_id="ana")
    PushTokenFactory.create(project=project, app_user=user)

    response = client.post(
        f"{base(project)}/{campaign.pk}/push", {"user_ids": ["ana", "ghost"], "title": "Just you"}
    )

    assert response.status_code == 200, response.json()
    assert trail() == [
        (
            "campaign.pushed",
            "api_key",
            masked(key),
            "api",
            "pushcampaign",
            str(campaign.pk),
            {"run": 1, "targeted": 1, "invalid_device_ids": 1, "overrides": ["title"]},
        )
    ]


APNS_TOKEN = "ab" * 32


@pytest.mark.django_db
def test_api_test_push_sent_and_refused_by_the_provider(api: Any, project: Project) -> None:
    key = ApiKey.objects.get(project=project)
    test_url = f"{base(project)}/test"

    sent = api.client.post(
        test_url, {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"}
    )
    refused = api.client.post(
        test_url, {"title": "T", "body": "B", "device_token": DEAD_APNS, "provider": "apns"}
    )

    assert (sent.status_code, refused.status_code) == (200, 502)
    first, second = (PushDelivery.objects.get(pk=r) for r in (
        sent.json()["delivery_id"], refused.json()["error"]["details"]["delivery_id"]
    ))  # fmt: skip
    assert trail() == [
        (
            "test_push.sent",
            "api_key",
            masked(key),
            "api",
            "pushdelivery",
            str(first.pk),
            {"token_id": first.token_id, "app_user_id": None, "provider": "apns", "status": "sent"},
        ),
        (
            "test_push.sent",
            "api_key",
            masked(key),
            "api",
            "pushdelivery",
            str(second.pk),
            {
                "token_id": second.token_id,
                "app_user_id": None,
                "provider": "apns",
                "status": "invalid_token",
            },
        ),
    ]


# --- console -------------------------------------------------------------------------


@pytest.mark.django_db
def test_console_form_and_actions(staff: Client, broker: Any) -> None:
    project = ProjectFactory.create()

    saved = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(project, title="From the console"),
        HTTP_USER_AGENT=UA,
    )
    assert saved.status_code == 302
    campaign = PushCampaign.objects.get()
    staff.post(
        url("campaigns_pushcampaign_changelist"),
        {"action": "send_now", "_selected_action": [str(campaign.pk)]},
    )
    staff.post(
        url("campaigns_pushcampaign_changelist"),
        {"action": "duplicate", "_selected_action": [str(campaign.pk)]},
    )

    copy = PushCampaign.objects.exclude(pk=campaign.pk).get()
    rows = trail()
    assert rows[0][:6] == (
        "campaign.created",
        "user",
        "ops",
        "console",
        "pushcampaign",
        str(campaign.pk),
    )
    assert set(rows[0][6]["fields"]) >= {"title", "body", "data", "priority"}
    assert rows[1:] == [
        ("campaign.sent", "user", "ops", "console", "pushcampaign", str(campaign.pk),
         {"run": 1, "trigger": "send"}),
        ("campaign.created", "user", "ops", "console", "pushcampaign", str(copy.pk),
         {"fields": [], "duplicate_of": str(campaign.pk)}),
    ]  # fmt: skip
    created = AuditEvent.objects.filter(action="campaign.created").order_by("id").first()
    assert created is not None and created.user_agent == UA and created.actor_user_id is not None


@pytest.mark.django_db
def test_console_refused_action_records_nothing(staff: Client) -> None:
    sent = CampaignFactory.create(status=CampaignStatus.SENT)

    staff.post(
        url("campaigns_pushcampaign_changelist"),
        {"action": "send_now", "_selected_action": [str(sent.pk)]},
    )

    assert trail() == []


@pytest.mark.django_db
def test_console_test_push_from_the_user_page(staff: Client, project: Project) -> None:
    user = AppUserFactory.create(project=project, external_id="ada")
    token = PushTokenFactory.create(project=project, app_user=user, token=APNS_TOKEN)
    push_url = reverse("admin:app_user_test_push", args=[user.pk])

    refused = staff.post(push_url, json.dumps({"title": "T"}), content_type="application/json")
    sent = staff.post(
        push_url, json.dumps({"title": "T", "body": "B"}), content_type="application/json"
    )

    assert (refused.status_code, sent.status_code) == (400, 200)
    assert trail() == [
        (
            "test_push.sent",
            "user",
            "ops",
            "console",
            "pushdelivery",
            str(sent.json()["delivery_id"]),
            {
                "token_id": token.pk,
                "app_user_id": str(user.pk),
                "provider": "apns",
                "status": "sent",
            },
        )
    ]


# --- command ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_test_push_command(project: Project) -> None:
    call_command(
        "send_test_push",
        f"--project={project.pk}",
        "--title=T",
        "--body=B",
        f"--device-token={APNS_TOKEN}",
        "--provider=apns",
        stdout=io.StringIO(),
    )
    with pytest.raises(CommandError):  # refused before sending: nothing recorded
        call_command(
            "send_test_push", f"--project={project.pk}", "--title=", "--body=B",
            f"--device-token={APNS_TOKEN}", "--provider=apns", stdout=io.StringIO(),
        )  # fmt: skip

    delivery = PushDelivery.objects.get()
    assert trail("action", "actor_kind", "actor", "via", "object_id") == [
        ("test_push.sent", "command", "send_test_push", "command", str(delivery.pk))
    ]


# --- scheduler -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_scheduler_firing_is_the_system(broker: Any) -> None:
    due = timezone.now() - timedelta(minutes=1)
    campaign = CampaignFactory.create(
        status=CampaignStatus.SCHEDULED, scheduled_at=due, schedule_version=1
    )

    assert scheduling.campaigns_sweep_scheduled()["fired"] == 1

    assert trail() == [
        (
            "campaign.sent",
            "system",
            "scheduler",
            "worker",
            "pushcampaign",
            str(campaign.pk),
            {"run": 1, "trigger": "schedule"},
        )
    ]
    event = AuditEvent.objects.get()
    assert (event.project_id, event.ip, event.user_agent) == (campaign.project_id, None, "")


# --- MCP -------------------------------------------------------------------------------

Connect = Callable[[Project, str], AbstractContextManager[Any]]


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest) -> Connect:
    from tests.mcp.client import http_client, stdio_client

    if request.param == "http":
        live_server = request.getfixturevalue("live_server")
        return lambda project, key: http_client(live_server.url, key)
    return lambda project, key: stdio_client(project.pk, key)


@pytest.fixture
def mcp_project(transactional_db: None) -> Iterator[tuple[Project, ApiKey, str]]:
    project = ProjectFactory.create()
    key, raw = create_api_key(project)
    yield project, key, raw


def test_mcp_tools_are_recorded_as_the_key_via_mcp(connect: Connect, mcp_project: Any) -> None:
    project, key, raw = mcp_project

    with connect(project, raw) as mcp:
        created = mcp.ok("amba_create_push_campaign", {"title": "Via MCP", "body": "B"})
        refused = mcp.error("amba_send_push_campaign", {"campaign_id": "not-a-uuid"})

    assert refused["error"]["code"] == "INVALID_CAMPAIGN_ID"
    assert trail() == [
        (
            "campaign.created",
            "api_key",
            masked(key),
            "mcp",
            "pushcampaign",
            created["id"],
            {"fields": ["body", "name", "title"]},
        )
    ]
