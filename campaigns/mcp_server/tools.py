"""The MCP tools: each one is a REST operation, validated, run and answered as the API does.

A tool takes the operation's arguments (path and query parameters and/or the JSON
body, as one object), calls the validator and service the operation's view calls,
and answers the JSON the API answers; an error is the API's envelope with the API's
code (`core.errors.exception_response`, the REST API's renderer). The project is the
caller's (the key's), never an argument: another project's id is NOT_FOUND, as on
the API. Idempotency keys are a header of the REST API only.

The three `amba_*` tools carry the names of the reference API's MCP tools; the others
are Herald's own (`herald_*`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework.renderers import JSONRenderer

from campaigns import analytics, selectors, services, testpush
from campaigns.api import CampaignView
from campaigns.mcp_server.schemas import Body, Params, input_schema, output_schema
from campaigns.serializers import AnalyticsSerializer, CampaignSerializer, RunSerializer
from campaigns.validation import schedules, validate_create, validate_update
from core import access
from core.api import refuse_unknown_fields
from core.errors import InvalidInput, exception_response
from core.models import Project
from core.pagination import parse_limit
from segments import selectors as segment_selectors
from segments.serializers import SegmentSerializer

# The unsaved targeting the audience preview counts: what the console's estimate reads.
AUDIENCE_FIELDS = ("segment_id", "segment_name", "platforms", "targeting")


@dataclass(frozen=True)
class Caller:
    """Who calls a tool (an API key's principal) and the project it acts on."""

    project: Project
    principal: Any

    def require(self, perm: str) -> None:
        """403 FORBIDDEN unless the key's scope holds ``perm`` (core/access.py)."""
        access.require(self.principal, perm, self.project)


def _query(arguments: Mapping[str, Any], name: str) -> str | None:
    """An argument the API takes as a query string (`?limit=20`): strings pass as they
    are, integers as their digits, absent or null as absent; the API's parser judges."""
    value = arguments.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{name} must be a string or an integer.", details={"field": name})


def _campaign_id(arguments: Mapping[str, Any]) -> Any:
    return CampaignView.campaign_id(dict(arguments))  # INVALID_CAMPAIGN_ID, as in the path


def create_campaign(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    fields = validate_create(arguments)
    if schedules(fields, update=False):
        caller.require(access.SEND_CAMPAIGNS)
    campaign = services.campaign_create(project=caller.project, fields=fields)
    return CampaignSerializer(campaign).data


def send_campaign(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("campaign_id",))
    campaign = services.campaign_send(project=project, campaign_id=_campaign_id(arguments))
    return CampaignSerializer(campaign).data


def send_test_push(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    return testpush.test_push_send(project=project, fields=testpush.validate_test_push(arguments))


def list_campaigns(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("cursor", "limit", "status", "tag"))
    rows, next_cursor = selectors.campaign_page(
        project=project,
        cursor=_query(arguments, "cursor"),
        limit=parse_limit(_query(arguments, "limit")),
        status=_query(arguments, "status"),
        tag=_query(arguments, "tag"),
    )
    return {"results": CampaignSerializer(rows, many=True).data, "next": next_cursor}


def get_campaign(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("campaign_id",))
    campaign = selectors.campaign_get(project=project, campaign_id=_campaign_id(arguments))
    return CampaignSerializer(campaign).data


def campaign_stats(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("campaign_id",))
    campaign = selectors.campaign_get(project=project, campaign_id=_campaign_id(arguments))
    return {"results": RunSerializer(selectors.campaign_runs(campaign=campaign), many=True).data}


def campaign_analytics(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("campaign_id", "run"))
    campaign = selectors.campaign_get(project=project, campaign_id=_campaign_id(arguments))
    number = _query(arguments, "run")
    run = None if number is None else selectors.campaign_run_get(campaign=campaign, number=number)
    return AnalyticsSerializer(analytics.campaign_analytics(campaign, run)).data


def preview_audience(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=AUDIENCE_FIELDS)
    fields = validate_update(arguments) if arguments else {}
    return services.audience_estimate(project=project, fields=fields)


def list_segments(caller: Caller, arguments: Mapping[str, Any]) -> Any:
    project = caller.project
    refuse_unknown_fields(arguments, allowed=("cursor", "limit"))
    rows, next_cursor = segment_selectors.segment_page(
        project=project,
        cursor=_query(arguments, "cursor"),
        limit=parse_limit(_query(arguments, "limit")),
    )
    return {"results": SegmentSerializer(rows, many=True).data, "next": next_cursor}


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its arguments (cut from `inputs`), its answer (`output`'s success
    response), the function that runs it, and its 500 code (the operation's)."""

    name: str
    description: str
    inputs: tuple[Params | Body, ...]
    output: str
    run: Callable[[Caller, Mapping[str, Any]], Any]
    failure_code: str
    # What the caller's key must hold (core/access.py), as the operation's view needs.
    permission: str = access.VIEW_CAMPAIGNS
    read_only: bool = True

    def input_schema(self) -> dict[str, Any]:
        return input_schema(self.inputs)

    def output_schema(self) -> dict[str, Any]:
        return output_schema(self.output)


CAMPAIGN_ID = Params("admin_push_retrieve", ("campaign_id",), required=("campaign_id",))

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="amba_create_push_campaign",
        description=(
            "Create a push campaign: title and body required; optional segment_id (null or "
            "absent: everyone), scheduled_at (future ISO-8601: status scheduled, else draft), "
            "content, targeting and schedule fields. Answers the campaign, as POST /admin/push."
        ),
        inputs=(Body("admin_push_create"),),
        output="admin_push_create",
        run=create_campaign,
        failure_code="CREATE_FAILED",
        permission=access.ADD_CAMPAIGNS,
        read_only=False,
    ),
    ToolSpec(
        name="amba_send_push_campaign",
        description=(
            "Send a draft (or failed) campaign now: status sending, then sent once every "
            "batch was attempted. A scheduled campaign answers ALREADY_SCHEDULED, a sent one "
            "ALREADY_SENT. Answers the campaign, as POST /admin/push/{campaign_id}/send."
        ),
        inputs=(Params("admin_push_send_create", ("campaign_id",), required=("campaign_id",)),),
        output="admin_push_send_create",
        run=send_campaign,
        failure_code="SEND_FAILED",
        permission=access.SEND_CAMPAIGNS,
        read_only=False,
    ),
    ToolSpec(
        name="amba_send_test_push",
        description=(
            "Send one test push now, to app_user_id (their newest active token) or to "
            "device_token + provider (or a web push subscription). Answers {delivery_id, "
            "provider, provider_message_id, status}, as POST /admin/push/test; a refused "
            "push is PUSH_FAILED."
        ),
        inputs=(Body("admin_push_test_create"),),
        output="admin_push_test_create",
        run=send_test_push,
        failure_code="PUSH_TEST_FAILED",
        permission=access.SEND_CAMPAIGNS,
        read_only=False,
    ),
    ToolSpec(
        name="herald_list_push_campaigns",
        description=(
            "List campaigns, newest first, optionally by status or tag; `next` is the cursor "
            "of the following page (null: none). As GET /admin/push."
        ),
        inputs=(Params("admin_push_list", ("cursor", "limit", "status", "tag")),),
        output="admin_push_list",
        run=list_campaigns,
        failure_code="LIST_FAILED",
    ),
    ToolSpec(
        name="herald_get_push_campaign",
        description="One campaign with its status and stats, as GET /admin/push/{campaign_id}.",
        inputs=(CAMPAIGN_ID,),
        output="admin_push_retrieve",
        run=get_campaign,
        failure_code="FETCH_FAILED",
    ),
    ToolSpec(
        name="herald_get_push_campaign_stats",
        description=(
            "A campaign's runs (one per send or occurrence) with their delivery stats, as "
            "GET /admin/push/{campaign_id}/runs."
        ),
        inputs=(CAMPAIGN_ID,),
        output="admin_push_runs_list",
        run=campaign_stats,
        failure_code="LIST_FAILED",
    ),
    ToolSpec(
        name="herald_get_push_campaign_analytics",
        description=(
            "Opens, clicks, conversions and rates of a campaign over all runs, or of one run "
            "(`run`: its number), as GET /admin/push/{campaign_id}/analytics and "
            ".../runs/{number}/analytics."
        ),
        inputs=(
            CAMPAIGN_ID,
            Params("admin_push_runs_analytics_retrieve", ("run",), rename={"run": "number"}),
        ),
        output="admin_push_analytics_retrieve",
        run=campaign_analytics,
        failure_code="FETCH_FAILED",
    ),
    ToolSpec(
        name="herald_preview_audience",
        description=(
            "How many active tokens a targeting would reach now, by provider and platform: "
            "a campaign's segment_id (or segment_name), platforms and targeting fields, "
            "unsaved (none: everyone). The count GET /admin/push/{campaign_id}/audience "
            "gives a saved one."
        ),
        inputs=(Body("admin_push_partial_update", only=AUDIENCE_FIELDS),),
        output="admin_push_audience_retrieve",
        run=preview_audience,
        failure_code="FETCH_FAILED",
    ),
    ToolSpec(
        name="herald_list_segments",
        description=(
            "List segments (id, name, rules, member_count), newest first, as GET "
            "/admin/projects/{project_id}/segments."
        ),
        inputs=(Params("admin_projects_segments_list", ("cursor", "limit")),),
        output="admin_projects_segments_list",
        run=list_segments,
        failure_code="LIST_FAILED",
        permission=access.VIEW_SEGMENTS,
    ),
)

TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}


@dataclass(frozen=True)
class ToolAnswer:
    """What a tool call answers: the API's JSON (`text`, as the API sends it, and
    `body`, parsed), and whether it is the error envelope."""

    is_error: bool
    status: int
    body: dict[str, Any]
    text: str


def _answer(data: Any, *, status: int) -> ToolAnswer:
    text = JSONRenderer().render(data).decode()
    return ToolAnswer(is_error=status >= 400, status=status, body=json.loads(text), text=text)


def tool_call(
    tool: ToolSpec, arguments: Mapping[str, Any] | None, resolve_caller: Callable[[], Caller]
) -> ToolAnswer:
    """Run one tool for the caller's project (`resolve_caller` authenticates the call
    and may refuse it as the API would: UNAUTHENTICATED, FORBIDDEN, NOT_FOUND; then
    the tool's permission is checked as the operation's view checks it)."""
    try:
        caller = resolve_caller()
        caller.require(tool.permission)
        data = tool.run(caller, dict(arguments or {}))
    except Exception as exc:
        response = exception_response(exc, failure_code=tool.failure_code, where=tool.name)
        return _answer(response.data, status=response.status_code)
    return _answer(data, status=200)
