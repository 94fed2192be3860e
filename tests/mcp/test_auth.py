"""Who may use the MCP server: the REST API's keys and refusals, on both doors."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from core.models import ApiKey, Project
from tests.factories import ProjectFactory, api_client, create_api_key
from tests.mcp.client import stdio_client

pytestmark = pytest.mark.django_db(transaction=True)

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def post_mcp(url: str, authorization: str | None) -> httpx2.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx2.post(f"{url}/mcp", content=json.dumps(INITIALIZE), headers=headers)


@pytest.mark.parametrize("kind", ["none", "invalid", "revoked", "client"])
def test_http_refuses_keys_as_the_rest_api_does(live_server: Any, kind: str) -> None:
    project = ProjectFactory()
    authorization = {
        "none": None,
        "invalid": "Bearer hk_0000_nope",
        "revoked": f"Bearer {create_api_key(project, revoked=True)[1]}",
        "client": f"Bearer {create_api_key(project, scope=ApiKey.Scope.CLIENT)[1]}",
    }[kind]
    answered = post_mcp(live_server.url, authorization)
    rest = api_client()
    if authorization is not None:
        rest.credentials(HTTP_AUTHORIZATION=authorization)
    expected = rest.get("/admin/push")
    assert answered.status_code == expected.status_code == (403 if kind == "client" else 401)
    assert answered.json() == expected.json()
    code = answered.json()["error"]["code"]
    assert code == ("FORBIDDEN" if kind == "client" else "UNAUTHENTICATED")
    if kind != "client":
        assert answered.headers["WWW-Authenticate"] == 'Bearer realm="herald"'


def test_http_answers_an_admin_key(live_server: Any) -> None:
    project = ProjectFactory()
    answered = post_mcp(live_server.url, f"Bearer {create_api_key(project)[1]}")
    assert answered.status_code == 200
    assert answered.json()["result"]["serverInfo"]["name"] == "herald"


def refusal(monkeypatch: pytest.MonkeyPatch, project_id: Any, key: str | None) -> str:
    if key is None:
        monkeypatch.delenv("HERALD_API_KEY", raising=False)
    else:
        monkeypatch.setenv("HERALD_API_KEY", key)
    with pytest.raises(CommandError) as raised:
        call_command("mcp_server", "--project", str(project_id))
    return str(raised.value)


def test_stdio_refuses_to_start_without_a_usable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    project, other = ProjectFactory(), ProjectFactory()
    revoked_key, revoked = create_api_key(project, revoked=True, name="old")
    _, client = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    _, foreign = create_api_key(other)
    _, good = create_api_key(project)
    assert refusal(monkeypatch, project.pk, None).startswith(
        f"Set HERALD_API_KEY to an admin API key of project {project.pk}"
    )
    assert refusal(monkeypatch, project.pk, "hk_0000_nope") == (
        "HERALD_API_KEY is not a valid Herald API key."
    )
    assert (
        refusal(monkeypatch, project.pk, revoked) == f"HERALD_API_KEY ({revoked_key}) was revoked."
    )
    assert "client-scoped key" in refusal(monkeypatch, project.pk, client)
    assert refusal(monkeypatch, project.pk, foreign) == (
        f"HERALD_API_KEY is a key of another project, not of {project.pk}."
    )
    assert refusal(monkeypatch, "nope", good) == (
        "--project must be a project id (a UUID), not 'nope'."
    )
    missing = "00000000-0000-0000-0000-000000000000"
    assert refusal(monkeypatch, missing, good) == f"No project {missing}."


def test_stdio_checks_the_key_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    project: Project = ProjectFactory()
    key, raw = create_api_key(project)
    with stdio_client(project.pk, raw) as mcp:
        assert mcp.ok("herald_list_segments") == {"results": [], "next": None}
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        assert mcp.error("herald_list_segments") == {
            "error": {"code": "UNAUTHENTICATED", "message": "Invalid API key.", "details": {}}
        }


@pytest.mark.parametrize("method", ["get", "delete"])
def test_only_post_is_served(method: str) -> None:
    """No sessions and no server-sent stream: a GET would otherwise hold its thread."""
    _, key = create_api_key(ProjectFactory())
    answered = getattr(api_client(key), method)("/mcp", HTTP_ACCEPT="text/event-stream")
    assert answered.status_code == 405
    assert answered.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
