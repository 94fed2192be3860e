"""`manage.py mcp_server --project ID`: Herald's MCP tools over stdio, for one project.

The API key comes from the environment (HERALD_API_KEY), never argv, so it does not
show in `ps`. It is checked at start - missing, invalid, revoked, expired,
client-scoped or of another project: the command refuses with a message saying
which - and again at every tool call, as the REST API checks every request (a key
revoked or expired meanwhile answers UNAUTHENTICATED). stdout carries the protocol;
logs go to stderr.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import anyio
from django.core.management.base import BaseCommand, CommandError, CommandParser
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from rest_framework import exceptions

from campaigns.mcp_server.server import build_server
from campaigns.mcp_server.tools import Caller
from core.audit import Via, api_key_actor, command_actor
from core.auth import api_key_lookup, api_key_project
from core.errors import NotFound
from core.models import KeyState, Project

API_KEY_ENV = "HERALD_API_KEY"


def checked_project(raw_key: str, project_id: str) -> Project:
    """The project the key may act on, or a CommandError that says what to fix."""
    try:
        wanted = uuid.UUID(project_id)
    except ValueError as exc:
        raise CommandError(f"--project must be a project id (a UUID), not {project_id!r}.") from exc
    if not Project.objects.filter(pk=wanted).exists():
        raise CommandError(f"No project {wanted}.")
    if not raw_key:
        raise CommandError(
            f"Set {API_KEY_ENV} to an admin API key of project {wanted} "
            "(create_project prints one; the console's API keys page makes more)."
        )
    try:
        return api_key_project(raw_key, wanted)[0]
    except exceptions.AuthenticationFailed as exc:
        key = api_key_lookup(raw_key)
        state = None if key is None else key.state_at()
        if state == KeyState.REVOKED:
            raise CommandError(f"{API_KEY_ENV} ({key}) was revoked.") from exc
        if state == KeyState.EXPIRED:
            raise CommandError(f"{API_KEY_ENV} ({key}) has expired.") from exc
        raise CommandError(f"{API_KEY_ENV} is not a valid Herald API key.") from exc
    except exceptions.PermissionDenied as exc:
        raise CommandError(
            f"{API_KEY_ENV} is a client-scoped key, which may only call the device "
            "registration API; the MCP tools need an admin key."
        ) from exc
    except NotFound as exc:
        raise CommandError(f"{API_KEY_ENV} is a key of another project, not of {wanted}.") from exc


async def serve_stdio(server: Server) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class Command(BaseCommand):
    help = f"Serve Herald's MCP tools over stdio for one project (API key in ${API_KEY_ENV})."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project id")

    def handle(self, *args: Any, **options: Any) -> None:
        raw_key = os.environ.get(API_KEY_ENV, "").strip()
        project = checked_project(raw_key, options["project"])
        key = api_key_lookup(raw_key)
        if key is None:  # checked_project proved it a moment ago
            raise CommandError(f"{API_KEY_ENV} is not a valid Herald API key.")
        actor = api_key_actor(key, via=Via.MCP, user_agent=command_actor("mcp_server").user_agent)
        server = build_server(
            lambda: Caller(*api_key_project(raw_key, project.pk)),
            close_connections=True,
            actor=actor,
        )
        anyio.run(serve_stdio, server)
