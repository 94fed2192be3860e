"""The SDK's low-level MCP server with Herald's tools, bound to one caller's project.

Handlers are async (the SDK runs on anyio); a tool call runs the synchronous tool in
`sync_to_async(thread_sensitive=True)`, so the ORM never runs on the event loop: under
the HTTP view's `async_to_sync` that is the request's own thread (its database
connection), under stdio one long-lived thread whose stale connections are closed
around each call, as Django does around each request.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from campaigns.mcp_server.tools import TOOLS, TOOLS_BY_NAME, Caller, ToolAnswer, tool_call
from core.audit import Actor, acting_as

SERVER_NAME = "herald"
INSTRUCTIONS = (
    "Herald push campaigns for one project (the API key's). Create a campaign, send it, "
    "follow its status and stats; results and errors are Herald's REST API JSON "
    "(errors: {error: {code, message, details}})."
)


@functools.cache
def tool_definitions() -> tuple[types.Tool, ...]:
    """The tool list (schemas cut from the OpenAPI document once per process)."""
    return tuple(
        types.Tool(
            name=tool.name,
            description=tool.description,
            input_schema=tool.input_schema(),
            output_schema=tool.output_schema(),
            annotations=types.ToolAnnotations(
                read_only_hint=tool.read_only,
                destructive_hint=False,
                idempotent_hint=tool.read_only,
                open_world_hint=not tool.read_only,
            ),
        )
        for tool in TOOLS
    )


def call_result(answer: ToolAnswer) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=answer.text)],
        structured_content=answer.body,
        is_error=answer.is_error,
    )


def build_server(
    resolve_caller: Callable[[], Caller],
    *,
    close_connections: bool = False,
    actor: Actor | None = None,
) -> Server:
    """An MCP server whose tools act for `resolve_caller()` (a key and its project).

    `close_connections`: close stale database connections before and after each call
    (a long-lived stdio process; the HTTP view lives inside Django's request cycle).
    `actor`: who the audit trail names for the tools' writes (the key, via mcp); set
    in the thread each call runs in.
    """

    def run(name: str, arguments: dict[str, object] | None) -> ToolAnswer:
        if close_connections:
            close_old_connections()
        try:
            with acting_as(actor) if actor is not None else contextlib.nullcontext():
                return tool_call(TOOLS_BY_NAME[name], arguments, resolve_caller)
        finally:
            if close_connections:
                close_old_connections()

    async def list_tools(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(await sync_to_async(tool_definitions)()))

    async def call_tool(
        ctx: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name not in TOOLS_BY_NAME:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        answer = await sync_to_async(run, thread_sensitive=True)(params.name, params.arguments)
        return call_result(answer)

    return Server(
        SERVER_NAME,
        version=str(settings.SPECTACULAR_SETTINGS["VERSION"]),
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
