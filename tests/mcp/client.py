"""The MCP SDK's own clients, driven from synchronous tests.

`stdio_client` spawns `manage.py mcp_server` against the test database (the tests use
`django_db(transaction=True)`, so the server process sees what they committed);
`http_client` talks to the live server's /mcp with a Bearer key. Each runs one
`ClientSession` on an event loop in a helper thread (an anyio blocking portal), so a
test calls tools synchronously and keeps the ORM out of the event loop.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from django.conf import settings
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client as sdk_stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.childenv import database_env

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class McpClient:
    """A connected, initialized MCP client session, called synchronously."""

    portal: BlockingPortal
    session: ClientSession

    def tools(self) -> dict[str, types.Tool]:
        listed = self.portal.call(self.session.list_tools)
        return {tool.name: tool for tool in listed.tools}

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> types.CallToolResult:
        return self.portal.call(self.session.call_tool, name, arguments or {})

    def ok(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """The tool's JSON answer; fails the test on a tool error."""
        result = self.call(name, arguments)
        assert not result.is_error, result.content
        return answer(result)

    def error(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """The tool's error envelope; fails the test when the call succeeded."""
        result = self.call(name, arguments)
        assert result.is_error, result.content
        return dict(answer(result))


def answer(result: types.CallToolResult) -> Any:
    """The API JSON a tool answered: its text content, which the structured content
    repeats."""
    (content,) = result.content
    assert isinstance(content, types.TextContent)
    body = json.loads(content.text)
    assert result.structured_content == body
    return body


@contextmanager
def _connected(transport: Any) -> Iterator[McpClient]:
    @asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        async with transport() as (read, write), ClientSession(read, write) as opened:
            await opened.initialize()
            yield opened

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(session()) as s:
        yield McpClient(portal=portal, session=s)


@contextmanager
def stdio_client(project_id: Any, api_key: str | None) -> Iterator[McpClient]:
    env = {**os.environ, **database_env(), "HERALD_VAR_DIR": str(settings.VAR_DIR)}
    env.pop("HERALD_API_KEY", None)
    if api_key is not None:
        env["HERALD_API_KEY"] = api_key
    params = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_server", "--project", str(project_id)],
        env=env,
        cwd=str(ROOT),
    )
    with _connected(lambda: sdk_stdio_client(params)) as client:
        yield client


@contextmanager
def http_client(base_url: str, api_key: str) -> Iterator[McpClient]:
    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        headers = {"Authorization": f"Bearer {api_key}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{base_url}/mcp", http_client=http) as streams,
        ):
            yield streams

    with _connected(transport) as client:
        yield client
