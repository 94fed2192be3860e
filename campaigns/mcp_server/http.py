"""Streamable HTTP at /mcp: a Django view that hands each request to the SDK's transport.

The SDK's streamable HTTP transport is an ASGI app; Herald is served by WSGI
(runserver under `make run`, gunicorn in production). In stateless mode with JSON
responses (no session, no server-sent stream) every MCP message is one POST answered
by one JSON body, so this view can run the transport for exactly that request: it
builds the ASGI scope from the Django request, feeds it the body, collects the
answer and returns it as a Django response (`async_to_sync`, so tool calls run in
this request's thread). The same code works under WSGI and ASGI servers
(docs/decisions.md, "MCP server").

Authentication, the client-key refusal and the rate limit are the REST API's own
(a DRF view with the API key authentication and permission classes): a missing or
bad key answers 401 UNAUTHENTICATED, a client-scoped key 403 FORBIDDEN, in the
API's envelope, before any MCP message is read. The key's project is the project.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from core.audit import Via, actor_for_request
from core.auth import ApiKeyAuthentication, project_for_request

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

# The SDK (mcp, pydantic, starlette: ~30 MB) is imported on the first MCP request, not
# with the URLconf: Celery workers load the URLconf too (Django's system checks at
# start) and never serve MCP.

# Set by the SDK from the body it answers; Django computes its own.
DROPPED_HEADERS = {"content-length", "transfer-encoding", "connection"}


async def serve_asgi(
    server: Server, scope: dict[str, Any], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through the SDK's stateless JSON-response transport."""
    import anyio
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True)
    answered = anyio.Event()
    sent_body = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # the client stays connected until it has its answer
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    async with manager.run():
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
    return status, headers, b"".join(chunks)


def asgi_scope(request: Request) -> dict[str, Any]:
    django_request = request._request
    server_port = int(django_request.get_port() or 80)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": django_request.method,
        "scheme": django_request.scheme,
        "path": django_request.path,
        "raw_path": django_request.path.encode(),
        "root_path": "",
        "query_string": django_request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in django_request.headers.items()
        ],
        "server": (django_request.get_host().rsplit(":", 1)[0], server_port),
        "client": (django_request.META.get("REMOTE_ADDR", ""), 0),
    }


class TransportNegotiates(BaseContentNegotiation):
    """The transport judges Accept and Content-Type (MCP's rules, not DRF's); DRF's own
    answers (401, 403, 405, 429) are the JSON envelope whatever the client accepts."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))  # the API's JSONRenderer
        return renderer, str(renderer.media_type)


class McpView(APIView):
    """POST /mcp. Only POST: a GET would open the transport's server-sent event stream,
    which never ends (a WSGI thread held forever), and DELETE ends a session, of which
    there are none; both answer 405 METHOD_NOT_ALLOWED, as MCP allows."""

    authentication_classes = [ApiKeyAuthentication]
    content_negotiation_class = TransportNegotiates
    failure_codes = {"POST": "MCP_FAILED"}

    @extend_schema(exclude=True)  # not a REST operation: docs/api.md, "MCP"
    def post(self, request: Request) -> HttpResponse:
        from campaigns.mcp_server.server import build_server
        from campaigns.mcp_server.tools import Caller

        project = project_for_request(request, None)  # the key's project
        body = request.body  # raw: the transport parses the JSON-RPC message
        caller = Caller(project=project, principal=request.user)
        actor = actor_for_request(request._request, via=Via.MCP)  # the Bearer key
        server = build_server(lambda: caller, actor=actor)
        status, headers, content = async_to_sync(serve_asgi)(server, asgi_scope(request), body)
        response = HttpResponse(content, status=status)
        for name, value in headers:
            if name.decode("latin-1").lower() not in DROPPED_HEADERS:
                response[name.decode("latin-1")] = value.decode("latin-1")
        return response
