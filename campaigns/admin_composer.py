"""The composer's live parts: JSON views for the audience estimate, the payload preview
and the recurrence's reading, on the campaign add/change page.

Doors, not owners (STYLE.md): each view validates the form's current (unsaved) values
with `campaigns.validation`, as the API would, then calls the function the API uses —
`services.audience_estimate` (the count behind GET .../audience), `content.push_content`
+ `services.content_preview` (the API preview's sample user and the real payload
builders), `recurrence.describe_recurrence`; the "Preview as" suggestions read
`segments.selectors.recent_external_ids`.
Refusals answer the API's error envelope. Session-authenticated admin views under
`<campaign id or "add">/composer/...`, POST with the CSRF token (composer.js).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from campaigns import services
from campaigns.content import CONTENT_FIELDS, push_content
from campaigns.models import PushCampaign
from campaigns.recurrence import describe_recurrence
from campaigns.validation import validate_create, validate_preview, validate_update
from core import access
from core.console_json import error_response, request_object
from core.errors import ApplicationError, InvalidInput, NotFound
from core.models import Project
from segments.selectors import recent_external_ids

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[PushCampaign]
else:
    _Base = object

TARGETING_KEYS = ("segment_id", "platforms", "targeting")
# A new campaign has no id yet; its payloads will carry one of this length.
UNSAVED_ID = str(uuid.UUID(int=0))


class ComposerViews(_Base):
    """Mixed into PushCampaignAdmin: `_composer_urls()` goes first in its get_urls."""

    def _composer_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}_composer"
        views = (
            ("estimate", self.estimate_view),
            ("preview", self.preview_view),
            ("sample_users", self.sample_users_view),
            ("recurrence", self.recurrence_view),
        )
        return [
            path(
                f"<str:object_id>/composer/{name.replace('_', '-')}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"{prefix}_{name}",
            )
            for name, view in views
        ]

    def _composing(
        self, request: HttpRequest, object_id: str, body: dict[str, Any]
    ) -> tuple[Project, PushCampaign | None]:
        """The project (and campaign) being composed, if the operator may compose it.

        Unknown, foreign or forbidden campaigns are NOT_FOUND, as in the API.
        """
        if object_id == "add":
            if not self.has_add_permission(request):
                raise NotFound("Not found.")
            project_id = _uuid_or_none(body.get("project"))
            project = None if project_id is None else Project.objects.filter(pk=project_id).first()
            if project is not None and not access.principal_may(
                request.user, access.ADD_CAMPAIGNS, project
            ):
                project = None  # not one of theirs: as unknown
            if project is None:
                raise InvalidInput("Choose a project.", details={"field": "project"})
            return project, None
        campaign = self.get_object(request, object_id)
        if campaign is None or not self.has_view_permission(request, campaign):
            raise NotFound("Campaign not found.")
        return campaign.project, campaign

    def estimate_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """`{total, by_provider, by_platform}` for the form's segment, platforms and
        targeting, as GET .../audience counts a saved campaign."""
        try:
            body = request_object(request)
            project, _ = self._composing(request, object_id, body)
            given = {k: body[k] for k in TARGETING_KEYS if k in body}
            fields = validate_update(given) if given else {}
            return JsonResponse(services.audience_estimate(project=project, fields=fields))
        except ApplicationError as error:
            return error_response(error)

    def preview_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The notification and its payload sizes, built by the real builders from the
        form's content fields (validated as a create would be), for a sample user:
        `external_id` (optional) and `language` are the API preview's body, cleaned by
        its validator and resolved by its service (`services.content_preview`): an
        unknown user is NOT_FOUND with details `{"field": "external_id"}`; `language`
        "" is the default text, absent or null the user's language."""
        try:
            body = request_object(request)
            project, campaign = self._composing(request, object_id, body)
            content_body = body.get("content")
            if not isinstance(content_body, dict):
                raise InvalidInput("content must be an object.", details={"field": "content"})
            sample = validate_preview(
                {k: body[k] for k in ("external_id", "language") if body.get(k) is not None}
            )
            wanted = {k: v for k, v in content_body.items() if k in CONTENT_FIELDS}
            fields = validate_create(wanted)
            campaign_id = str(campaign.pk) if campaign is not None else UNSAVED_ID
            content = push_content(
                fields, collapse_id_default=f"c-{campaign_id}", campaign_id=campaign_id
            )
            return JsonResponse(
                services.content_preview(
                    project=project,
                    content=content,
                    external_id=sample.external_id,
                    language=sample.language,
                )
            )
        except ApplicationError as error:
            return error_response(error)

    def sample_users_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """`{"external_ids": [...]}`: the project's newest users, suggestions for the
        preview's "Preview as" input (`segments.selectors.recent_external_ids`)."""
        try:
            body = request_object(request)
            project, _ = self._composing(request, object_id, body)
            return JsonResponse({"external_ids": recent_external_ids(project=project)})
        except ApplicationError as error:
            return error_response(error)

    def recurrence_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The builder's recurrence in words ("at 12:00 on Mon and Fri, Europe/Paris")."""
        try:
            body = request_object(request)
            self._composing(request, object_id, body)
            recurrence = validate_update({"recurrence": body.get("recurrence")})["recurrence"]
            text = "Does not repeat" if recurrence is None else describe_recurrence(recurrence)
            return JsonResponse({"text": text, "recurrence": recurrence})
        except ApplicationError as error:
            return error_response(error)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
