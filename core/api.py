"""Shared API plumbing: the project-scoped view base, the JSON body, unknown fields.

Every app's views (campaigns, segments) build on these, so a body, a project or an
unknown key is refused the same way everywhere (docs/api.md, "Errors"). Pagination
lives next door in core/pagination.py, idempotency keys in core/idempotency.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.views import APIView

from core.access import Forbidden, require
from core.auth import parse_uuid, project_for_request
from core.errors import InvalidInput
from core.models import Project

_PROJECT_ATTR = "_herald_project"


class ProjectScopedView(APIView):
    """A view acting on one project: `/.../projects/{project_id}/...` or an alias route.

    `failure_codes` names the 500 code per method (core.errors.api_exception_handler).
    `permissions` names the permission each method needs in the project
    (core/access.py): a staff user's role or an API key's scope must hold it, else
    403 FORBIDDEN. A method without an entry is refused: a new view must say.
    """

    failure_codes: dict[str, str] = {}
    permissions: dict[str, str] = {}

    def project(self, request: Request, kwargs: Mapping[str, Any]) -> Project:
        """The request's project, or 404 (or 403: not allowed there); resolved once
        per request."""
        project: Project | None = getattr(request, _PROJECT_ATTR, None)
        if project is None:
            project = project_for_request(request, kwargs.get("project_id"))
            perm = self.permissions.get(request.method or "")
            if perm is None:
                raise Forbidden("This operation names no permission.")
            require(request.user, perm, project)
            setattr(request, _PROJECT_ATTR, project)
        return project

    @staticmethod
    def require(request: Request, perm: str, project: Project) -> None:
        """A further permission an operation needs for what its body asks (e.g.
        scheduling a campaign needs the sender's)."""
        require(request.user, perm, project)

    @staticmethod
    def path_uuid(kwargs: Mapping[str, Any], name: str, *, code: str, field: str) -> uuid.UUID:
        """A uuid path segment; `code` (e.g. INVALID_CAMPAIGN_ID) when it is not one."""
        return parse_uuid(kwargs.get(name), code=code, field=field)


def refuse_unknown_fields(
    payload: Mapping[str, Any], *, allowed: Collection[str], read_only: Collection[str] = ()
) -> None:
    """VALIDATION_ERROR naming the first (in sorted order) key that is not `allowed`.

    Sorted, so a body with several stray keys always gets the same answer. A key in
    `read_only` (output-only fields such as `id`) says so rather than "unknown".
    """
    stray = sorted(str(key) for key in payload if key not in allowed)
    if not stray:
        return
    field = stray[0]
    if field in read_only:
        raise InvalidInput(f"{field} is read-only.", details={"field": field})
    raise InvalidInput(f"Unknown field '{field}'.", details={"field": field})


def json_body(request: Request, *, allowed: Collection[str] | None = None) -> dict[str, Any]:
    """The request's JSON object body, with keys outside `allowed` refused (if given).

    core.parsers.ObjectJSONParser already refuses anything but an object
    (INVALID_BODY); an empty body reads as `{}`.
    """
    data = request.data
    if not isinstance(data, dict):
        raise ParseError("The request body must be a JSON object.")
    if allowed is not None:
        refuse_unknown_fields(data, allowed=allowed)
    return data
