"""The MCP tools over both transports, with the SDK's own client: the tool list and its
schemas (the API's), answers and errors equal to the REST API's, project scoping.

Every test that runs a tool runs once over streamable HTTP (the live server's /mcp)
and once over stdio (`manage.py mcp_server` as a child process).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator
from mcp.shared.exceptions import MCPError

from campaigns.mcp_server.schemas import json_schema, openapi_document
from campaigns.mcp_server.tools import TOOLS
from campaigns.models import CampaignStatus, PushCampaign
from core.models import ApiKey, Project
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushTokenFactory,
    SegmentFactory,
    api_client,
    create_api_key,
)
from tests.mcp.client import McpClient, http_client, stdio_client

pytestmark = pytest.mark.django_db(transaction=True)

Connect = Callable[[Project, str], AbstractContextManager[McpClient]]

TOOL_NAMES = {
    "amba_create_push_campaign",
    "amba_send_push_campaign",
    "amba_send_test_push",
    "herald_list_push_campaigns",
    "herald_get_push_campaign",
    "herald_get_push_campaign_stats",
    "herald_get_push_campaign_analytics",
    "herald_preview_audience",
    "herald_list_segments",
}


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """Opens an MCP client session for a project and key over one transport."""
    if request.param == "http":
        live_server = request.getfixturevalue("live_server")
        return lambda project, key: http_client(live_server.url, key)
    return lambda project, key: stdio_client(project.pk, key)


@pytest.fixture
def project() -> Project:
    return ProjectFactory()


@pytest.fixture
def key(project: Project) -> str:
    return create_api_key(project)[1]


@pytest.fixture
def mcp(connect: Connect, project: Project, key: str) -> Iterator[McpClient]:
    with connect(project, key) as client:
        yield client


def rest(key: str) -> Any:
    return api_client(key)


def served_openapi() -> dict[str, Any]:
    response = api_client().get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(json.loads(response.content))


def test_the_tools_schemas_are_the_apis(mcp: McpClient) -> None:
    served = served_openapi()
    # The tools' schemas are cut from the very document /api/schema serves.
    assert json.loads(json.dumps(openapi_document())) == served
    tools = mcp.tools()
    assert set(tools) == TOOL_NAMES
    components = served["components"]["schemas"]
    for tool in tools.values():
        Draft202012Validator.check_schema(tool.input_schema)
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        Draft202012Validator.check_schema(tool.output_schema)
    create = tools["amba_create_push_campaign"]
    assert create.input_schema == json_schema(components["CampaignWrite"])
    assert create.output_schema == json_schema(components["Campaign"])
    assert tools["amba_send_test_push"].input_schema == json_schema(components["TestPushRequest"])
    # OpenAPI 3.0's nullable and component references, as JSON Schema 2020-12.
    props = create.input_schema["properties"]
    assert props["title"] == components["CampaignWrite"]["properties"]["title"]
    assert props["segment_id"] == {"type": ["string", "null"], "format": "uuid"}
    assert props["priority"] == {"$ref": "#/$defs/PriorityEnum"}
    assert create.input_schema["$defs"]["PriorityEnum"] == components["PriorityEnum"]
    assert create.input_schema["required"] == ["body", "title"]
    send_path = served["paths"]["/admin/push/{campaign_id}/send/"]["post"]
    (campaign_id,) = [p for p in send_path["parameters"] if p["name"] == "campaign_id"]
    assert tools["amba_send_push_campaign"].input_schema == {
        "type": "object",
        "properties": {
            "campaign_id": {**campaign_id["schema"], "description": campaign_id["description"]}
        },
        "required": ["campaign_id"],
    }
    listing = tools["herald_list_push_campaigns"].input_schema
    assert set(listing["properties"]) == {"cursor", "limit", "status", "tag"}
    assert "required" not in listing
    # A body the API accepts validates against the tool's schema; one it refuses does not.
    validator = Draft202012Validator(create.input_schema)
    assert validator.is_valid({"title": "Hi", "body": "There", "segment_id": None})
    assert not validator.is_valid({"body": "There"})
    assert {tool.name for tool in TOOLS} == TOOL_NAMES


def test_create_get_list_answer_the_apis_json(mcp: McpClient, key: str, project: Project) -> None:
    created = mcp.ok("amba_create_push_campaign", {"title": "Hi", "body": "There", "tags": ["a"]})
    assert created["status"] == CampaignStatus.DRAFT
    assert created["project_id"] == str(project.pk)
    campaign_id = created["id"]
    fetched = mcp.ok("herald_get_push_campaign", {"campaign_id": campaign_id})
    assert fetched == rest(key).get(f"/admin/push/{campaign_id}").json()
    listed = mcp.ok("herald_list_push_campaigns", {"limit": 5, "tag": "a"})
    assert listed == rest(key).get("/admin/push?limit=5&tag=a").json()
    assert [c["id"] for c in listed["results"]] == [campaign_id]
    scheduled_at = (timezone.now() + timedelta(hours=1)).isoformat()
    scheduled = mcp.ok(
        "amba_create_push_campaign", {"title": "Later", "body": "B", "scheduled_at": scheduled_at}
    )
    assert scheduled["status"] == CampaignStatus.SCHEDULED


@pytest.mark.parametrize(
    ("tool", "arguments", "path", "code"),
    [
        ("amba_create_push_campaign", {"body": "x"}, "/admin/push", "MISSING_TITLE"),
        ("amba_create_push_campaign", {"title": "x", "body": "y", "data": []}, None, None),
        ("amba_create_push_campaign", {"title": "t", "body": "b", "nope": 1}, None, None),
        (
            "amba_create_push_campaign",
            {"title": "t", "body": "b", "scheduled_at": "2001-01-01T00:00:00Z"},
            None,
            "SCHEDULED_AT_IN_PAST",
        ),
        ("amba_send_test_push", {"title": "t", "body": "b"}, "/admin/push/test", "MISSING_TARGET"),
        ("amba_send_test_push", {"title": "t", "body": "b", "device_token": "ab"}, None, None),
    ],
)
def test_bad_arguments_are_the_apis_errors(
    mcp: McpClient, key: str, tool: str, arguments: dict[str, Any], path: str | None, code: str
) -> None:
    path = path or ("/admin/push/test" if tool == "amba_send_test_push" else "/admin/push")
    expected = rest(key).post(path, arguments, format="json")
    assert expected.status_code == 400
    assert mcp.error(tool, arguments) == expected.json()
    if code is not None:
        assert expected.json()["error"]["code"] == code
    assert PushCampaign.objects.count() == 0  # refused: nothing changed


def test_bad_ids_and_query_values(mcp: McpClient, key: str) -> None:
    campaign = CampaignFactory(project=ApiKey.objects.get().project)
    error = mcp.error("amba_send_push_campaign", {"campaign_id": "not-a-uuid"})
    assert error == rest(key).post("/admin/push/not-a-uuid/send").json()
    assert error["error"]["code"] == "INVALID_CAMPAIGN_ID"
    error = mcp.error("herald_list_push_campaigns", {"limit": 0})
    assert error == rest(key).get("/admin/push?limit=0").json()
    assert mcp.error("herald_list_push_campaigns", {"limit": [1]})["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "limit must be a string or an integer.",
        "details": {"field": "limit"},
    }
    error = mcp.error(
        "herald_get_push_campaign_analytics", {"campaign_id": str(campaign.pk), "run": 9}
    )
    assert error == rest(key).get(f"/admin/push/{campaign.pk}/runs/9/analytics").json()
    assert error["error"]["code"] == "NOT_FOUND"
    unknown = mcp.error("herald_get_push_campaign", {"campaign_id": str(campaign.pk), "x": 1})
    assert unknown["error"]["details"] == {"field": "x"}


def test_another_projects_ids_are_not_found(mcp: McpClient, key: str) -> None:
    other = ProjectFactory()
    theirs = CampaignFactory(project=other)
    their_segment = SegmentFactory(project=other)
    for tool in (
        "amba_send_push_campaign",
        "herald_get_push_campaign",
        "herald_get_push_campaign_stats",
        "herald_get_push_campaign_analytics",
    ):
        error = mcp.error(tool, {"campaign_id": str(theirs.pk)})
        assert error == {
            "error": {"code": "NOT_FOUND", "message": "Campaign not found.", "details": {}}
        }
    assert mcp.error("amba_send_push_campaign", {"campaign_id": str(theirs.pk)}) == (
        rest(key).post(f"/admin/push/{theirs.pk}/send").json()
    )
    theirs.refresh_from_db()
    assert theirs.status == CampaignStatus.DRAFT  # not sent
    body = {"title": "t", "body": "b", "segment_id": str(their_segment.pk)}
    error = mcp.error("amba_create_push_campaign", body)
    assert error == rest(key).post("/admin/push", body, format="json").json()
    assert error["error"]["code"] == "INVALID_SEGMENT_ID"
    error = mcp.error("herald_preview_audience", {"segment_id": str(their_segment.pk)})
    assert error["error"]["code"] == "INVALID_SEGMENT_ID"
    assert mcp.ok("herald_list_segments") == {"results": [], "next": None}
    assert mcp.ok("herald_list_push_campaigns")["results"] == []


def test_stats_analytics_audience_segments(mcp: McpClient, key: str, project: Project) -> None:
    campaign = CampaignFactory(project=project, status=CampaignStatus.SENT)
    CampaignRunFactory(campaign=campaign, number=1)
    segment = SegmentFactory(project=project, rules={"attr": "country", "op": "eq", "value": "FR"})
    for country, provider, platform in (
        ("FR", "apns", "ios"),
        ("FR", "fcm", "android"),
        ("DE", "apns", "ios"),
    ):
        user = AppUserFactory(project=project, attributes={"country": country})
        PushTokenFactory(project=project, app_user=user, provider=provider, platform=platform)
    cid = str(campaign.pk)
    assert mcp.ok("herald_get_push_campaign_stats", {"campaign_id": cid}) == (
        rest(key).get(f"/admin/push/{cid}/runs").json()
    )
    assert mcp.ok("herald_get_push_campaign_analytics", {"campaign_id": cid}) == (
        rest(key).get(f"/admin/push/{cid}/analytics").json()
    )
    assert mcp.ok("herald_get_push_campaign_analytics", {"campaign_id": cid, "run": 1}) == (
        rest(key).get(f"/admin/push/{cid}/runs/1/analytics").json()
    )
    everyone = mcp.ok("herald_preview_audience")
    assert everyone["total"] == 3
    french_ios = mcp.ok(
        "herald_preview_audience", {"segment_id": str(segment.pk), "platforms": ["ios"]}
    )
    saved = CampaignFactory(project=project, segment=segment, platforms=["ios"])
    assert french_ios == rest(key).get(f"/admin/push/{saved.pk}/audience").json()
    assert french_ios["total"] == 1
    error = mcp.error("herald_preview_audience", {"title": "no"})
    assert error["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "Unknown field 'title'.",
        "details": {"field": "title"},
    }
    segments = mcp.ok("herald_list_segments", {"limit": "10"})
    assert segments == rest(key).get(f"/admin/projects/{project.pk}/segments?limit=10").json()
    assert [s["id"] for s in segments["results"]] == [str(segment.pk)]


def test_unknown_tool_is_a_protocol_error(mcp: McpClient) -> None:
    with pytest.raises(MCPError) as raised:
        mcp.call("amba_delete_everything")
    assert raised.value.code == -32602
    assert "Unknown tool: amba_delete_everything" in raised.value.message


def test_a_read_only_key_reads_but_may_not_create_or_send(
    connect: Connect, project: Project, db_state: Any
) -> None:
    """The same scope rule as the REST API (core/access.py), on both transports."""
    draft = CampaignFactory(project=project)
    raw = create_api_key(project, scope=ApiKey.Scope.READ_ONLY)[1]
    with connect(project, raw) as client:
        listed = client.ok("herald_list_push_campaigns")
        assert [c["id"] for c in listed["results"]] == [str(draft.pk)]
        assert client.ok("herald_list_segments") == {"results": [], "next": None}
        before = db_state()
        create = client.error("amba_create_push_campaign", {"title": "t", "body": "b"})
        send = client.error("amba_send_push_campaign", {"campaign_id": str(draft.pk)})
        assert db_state() == before
    assert create == {
        "error": {
            "code": "FORBIDDEN",
            "message": "This API key is read-only: it may not create campaigns.",
            "details": {"permission": "campaigns.add_pushcampaign"},
        }
    }
    assert send["error"]["details"] == {"permission": "campaigns.send_pushcampaign"}
