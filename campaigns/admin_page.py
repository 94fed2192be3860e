"""The campaign page of the console: buttons, live progress, per-run results, test push.

A mixin for PushCampaignAdmin (campaigns/admin.py) so this page's views stay apart
from the composer's. Every view is a door, not an owner (STYLE.md): sending,
cancelling and duplicating call `campaigns.services` (the code paths of the list
actions), the confirmation's audience size is `services.campaign_audience` (the
API's /audience), a test push is `campaigns.testpush` (the API's /campaigns/test),
the numbers are `selectors.campaign_progress` (built on `campaign_stats`, the API's
`stats`), `selectors.run_breakdown` and, for engagement (opens, clicks, conversions),
`analytics.campaign_analytics` (the API's /analytics). JSON views answer the API's
error envelope.

Live progress is polled (campaigns/static/campaigns/campaign.js, every 2 s while
the campaign is sending, and the engagement every 10 s while it sends and for
ENGAGEMENT_FOLLOW after its run ends): docs/decisions.md, "Console campaign page"
and "Console engagement".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from campaigns import selectors, services, testpush
from campaigns.analytics import campaign_analytics
from campaigns.content import CONTENT_FIELDS
from campaigns.models import CampaignRun, PushCampaign
from core import access
from core.console_json import error_response, request_object
from core.errors import ApplicationError, InvalidInput, NotFound
from core.timefmt import format_time
from segments.models import AppUser

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[PushCampaign]
else:
    _Base = object

POLL_INTERVAL_MS = 2000
# Engagement is refreshed every ENGAGEMENT_EVERY polls while a run sends, and keeps
# being refreshed (at that pace) for ENGAGEMENT_FOLLOW after it ends: opens, clicks
# and conversions arrive after the sends. Then the page stops polling.
ENGAGEMENT_EVERY = 5
ENGAGEMENT_FOLLOW = timedelta(minutes=30)
# The run picker lists the newest runs (a recurring campaign may have thousands).
RUN_CHOICES = 50


def zoned(moment: datetime | None, zone: str) -> str:
    """'2026-12-01 09:00:05 Europe/Paris' (core.timefmt, with seconds); "" for never."""
    return "" if moment is None else format_time(moment, zone, seconds=True)


class CampaignPageAdmin(_Base):
    """Views and the Results panel of the campaign change page."""

    @property
    def media(self) -> forms.Media:
        own = forms.Media(js=["campaigns/campaign.js"], css={"all": ["campaigns/campaign.css"]})
        return super().media + own

    def _page_urls(self) -> list[URLPattern]:
        def wrap(view: Any) -> Any:
            return self.admin_site.admin_view(view)

        name = "campaigns_pushcampaign"
        return [
            path("<path:object_id>/progress/", wrap(self.progress_view), name=f"{name}_progress"),
            path(
                "<path:object_id>/runs/<int:run>/breakdown/",
                wrap(self.breakdown_view),
                name=f"{name}_breakdown",
            ),
            path(
                "<path:object_id>/runs/<int:run>/analytics/",
                wrap(self.analytics_view),
                name=f"{name}_analytics",
            ),
            path("<path:object_id>/send/", wrap(self.send_view), name=f"{name}_send"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name=f"{name}_cancel"),
            path(
                "<path:object_id>/duplicate/", wrap(self.duplicate_view), name=f"{name}_duplicate"
            ),
            path("<path:object_id>/test-push/", wrap(self.test_push_view), name=f"{name}_test"),
        ]

    # --- lookups -------------------------------------------------------------------

    def _campaign(self, request: HttpRequest, object_id: str) -> PushCampaign:
        campaign = self.get_object(request, object_id)
        if campaign is None:
            raise NotFound("Campaign not found.")
        if not self.has_view_permission(request, campaign):
            raise access.Forbidden("You may not view this campaign.")
        return campaign

    def _change_url(self, campaign: PushCampaign) -> str:
        return reverse("admin:campaigns_pushcampaign_change", args=[campaign.pk])

    def _refused(self, request: HttpRequest, verb: str, error: ApplicationError) -> None:
        self.message_user(request, f"{verb}: {error.code}: {error.message}", messages.ERROR)

    # --- the Results panel (a readonly field at the top of the page) ----------------

    def results_panel(self, obj: PushCampaign) -> str:
        from django.template.loader import render_to_string

        zone = obj.project.default_timezone
        runs = [
            {
                "number": number,
                # No status here: it would go stale while the run moves (the bar has it).
                "label": f"Run {number} · {CampaignRun.Trigger(trigger).label} · "
                f"started {zoned(started_at, zone)}",
            }
            for number, trigger, started_at in CampaignRun.objects.filter(campaign=obj)
            .order_by("-number")
            .values_list("number", "trigger", "started_at")[:RUN_CHOICES]
        ]
        progress = self.progress_json(obj)
        return render_to_string(
            "admin/campaigns/pushcampaign/results_panel.html",
            {
                "campaign": obj,
                "progress": progress,
                "runs": runs,
                "poll_ms": POLL_INTERVAL_MS,
                "progress_url": reverse("admin:campaigns_pushcampaign_progress", args=[obj.pk]),
                "breakdown_url": reverse(
                    "admin:campaigns_pushcampaign_breakdown", args=[obj.pk, 0]
                ),
                "analytics_url": reverse(
                    "admin:campaigns_pushcampaign_analytics", args=[obj.pk, 0]
                ),
                "engagement_every": ENGAGEMENT_EVERY,
                "bars": [
                    ("sent", "Sent", "sent"),
                    ("failed", "Failed", "failed"),
                    ("invalid", "Invalid token", "invalid_tokens"),
                    ("skipped", "Skipped", "skipped"),
                    ("unknown", "Unknown", "unknown"),
                ],
            },
        )

    results_panel.short_description = "Results"  # type: ignore[attr-defined]

    # --- JSON: live progress and per-run results -------------------------------------

    def progress_json(self, campaign: PushCampaign) -> dict[str, Any]:
        zone = campaign.project.default_timezone
        now = timezone.now()
        progress = selectors.campaign_progress(campaign=campaign, now=now)
        progress["engagement_follow_seconds"] = _engagement_follow(progress, now)
        run = progress["run"]
        if run is not None:
            run["trigger_label"] = CampaignRun.Trigger(run["trigger"]).label
            run["status_label"] = CampaignRun.Status(run["status"]).label
            run["started_at"] = zoned(run["started_at"], zone)
            run["completed_at"] = zoned(run["completed_at"], zone)
        progress["status_label"] = campaign.get_status_display()
        # Which state buttons still apply (the page hides the others as the run moves).
        progress["can_send"] = campaign.status in services.SENDABLE
        progress["can_cancel"] = campaign.status in services.CANCELLABLE
        progress["updated_at"] = zoned(now, zone)
        return progress

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        if request.method != "GET":
            return error_response(_not_allowed(request, "GET"))
        try:
            campaign = self._campaign(request, object_id)
        except ApplicationError as error:
            return error_response(error)
        campaign = selectors.with_current_run(PushCampaign.objects.select_related("project")).get(
            pk=campaign.pk
        )
        return JsonResponse(self.progress_json(campaign))

    def breakdown_view(self, request: HttpRequest, object_id: str, run: int) -> JsonResponse:
        """Per-run results; run 0 means the campaign's current run."""
        if request.method != "GET":
            return error_response(_not_allowed(request, "GET"))
        try:
            campaign = self._campaign(request, object_id)
            number = run or campaign.current_run
            if not CampaignRun.objects.filter(campaign=campaign, number=number).exists():
                raise NotFound(f"The campaign has no run {number}.", code="NO_SUCH_RUN")
        except ApplicationError as error:
            return error_response(error)
        breakdown = selectors.run_breakdown(campaign_id=campaign.pk, run=number)
        zone = campaign.project.default_timezone
        for point in breakdown["timeline"]["points"]:
            point["label"] = zoned(point.pop("at"), zone)
        breakdown["zone"] = zone
        breakdown["links"] = self._delivery_links(campaign, breakdown)
        return JsonResponse(breakdown)

    def analytics_view(self, request: HttpRequest, object_id: str, run: int) -> JsonResponse:
        """The Engagement panel's numbers: `campaign_analytics` (what the API's
        /analytics answers) for one run, or for all runs when `run` is 0; the series'
        points get a label on the project's clock."""
        if request.method != "GET":
            return error_response(_not_allowed(request, "GET"))
        try:
            campaign = self._campaign(request, object_id)
            chosen = None if run == 0 else selectors.campaign_run_get(campaign=campaign, number=run)
        except ApplicationError as error:
            return error_response(error)
        analytics = campaign_analytics(campaign, chosen)
        zone = campaign.project.default_timezone
        for point in analytics["series"]["points"]:
            point["label"] = format_time(point["t"], zone)
        analytics["zone"] = zone
        analytics["updated_at"] = zoned(timezone.now(), zone)
        return JsonResponse(analytics)

    def _delivery_links(self, campaign: PushCampaign, breakdown: dict[str, Any]) -> dict[str, Any]:
        """Links to the delivery log filtered to this run (and a status, provider or
        reason): the changelist's own filters, so the rows listed are the rows counted."""
        base = reverse("admin:delivery_pushdelivery_changelist")
        scope = {"campaign__id__exact": str(campaign.pk), "run": breakdown["run"]}

        def link(**extra: Any) -> str:
            return f"{base}?{urlencode({**scope, **extra})}"

        return {
            "all": link(),
            "status": {s: link(status__exact=s) for s in breakdown["by_status"]},
            "provider": {p: link(provider__exact=p) for p in breakdown["by_provider"]},
            "reasons": [link(error_message=r["reason"]) for r in breakdown["reasons"]],
        }

    # --- buttons: send (with confirmation), cancel, duplicate ---------------------------

    def send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the confirmation, stating the audience size; POST: send now."""
        try:
            campaign = self._campaign(request, object_id)
        except NotFound as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_pushcampaign_changelist"))
        if not access.principal_may(request.user, access.SEND_CAMPAIGNS, campaign):
            raise PermissionDenied
        if request.method == "POST":
            try:
                services.campaign_send(project=campaign.project, campaign_id=campaign.pk)
            except ApplicationError as error:
                self._refused(request, "Send", error)
            else:
                self.message_user(request, f'Sending "{campaign.name}" now.', messages.SUCCESS)
            return HttpResponseRedirect(self._change_url(campaign))
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET", "POST"])
        audience: dict[str, Any] | None = None
        problem: ApplicationError | None = None
        try:
            audience = services.campaign_audience(project=campaign.project, campaign_id=campaign.pk)
        except ApplicationError as error:
            problem = error
        context = {
            **self.admin_site.each_context(request),
            "title": f'Send "{campaign.name}" now?',
            "opts": self.opts,
            "media": self.media,
            "campaign": campaign,
            "audience": audience,
            "problem": problem,
            "segment": campaign.segment,
        }
        return TemplateResponse(
            request, "admin/campaigns/pushcampaign/send_confirmation.html", context
        )

    def _button_target(
        self, request: HttpRequest, object_id: str, perm: str
    ) -> PushCampaign | HttpResponse:
        """A page button's campaign (POST only, ``perm`` held in its project), or the
        answer refusing it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            campaign = self._campaign(request, object_id)
        except NotFound as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_pushcampaign_changelist"))
        allowed = access.principal_may(request.user, perm, campaign)
        if not allowed:
            raise PermissionDenied
        return campaign

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._button_target(request, object_id, access.SEND_CAMPAIGNS)
        if isinstance(campaign, HttpResponse):
            return campaign
        try:
            services.campaign_cancel(project=campaign.project, campaign_id=campaign.pk)
        except ApplicationError as error:
            self._refused(request, "Cancel", error)
        else:
            self.message_user(
                request,
                f'Cancelled "{campaign.name}"; what was sent stays counted.',
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._change_url(campaign))

    def duplicate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._button_target(request, object_id, access.ADD_CAMPAIGNS)
        if isinstance(campaign, HttpResponse):
            return campaign
        copy = services.campaign_duplicate(campaign=campaign)
        self.message_user(
            request, f'Duplicated "{campaign.name}" as a new draft.', messages.SUCCESS
        )
        return HttpResponseRedirect(self._change_url(copy))

    # --- test push ----------------------------------------------------------------------

    def test_push_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """This campaign's content to one device: a user by external id (their newest
        active token) or a raw token + provider. Body: {"external_id": ...} or
        {"device_token": ..., "provider": ..., "platform": ...}; answers what the API's
        /campaigns/test answers, errors included."""
        if request.method != "POST":
            return error_response(_not_allowed(request, "POST"))
        try:
            campaign = self._campaign(request, object_id)
            access.require(request.user, access.SEND_CAMPAIGNS, campaign)
            payload = _test_push_payload(campaign, request_object(request))
            fields = testpush.validate_test_push(payload)
            result = testpush.test_push_send(project=campaign.project, fields=fields)
        except ApplicationError as error:
            return error_response(error)
        return JsonResponse(result)


TEST_TARGET_FIELDS = ("external_id", "device_token", "provider", "platform")


def _test_push_payload(campaign: PushCampaign, body: dict[str, Any]) -> dict[str, Any]:
    """The API's test-push request for this campaign's content and the chosen target."""
    unknown = sorted(set(body) - set(TEST_TARGET_FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown field: {unknown[0]}.", code="VALIDATION_ERROR", details={"field": unknown[0]}
        )
    content = {
        name: getattr(campaign, name)
        for name in CONTENT_FIELDS
        if getattr(campaign, name) not in (None, "", {}, [])
    }
    external_id = body.get("external_id")
    if external_id not in (None, ""):
        if not isinstance(external_id, str):
            raise InvalidInput(
                "external_id must be a string.",
                code="VALIDATION_ERROR",
                details={"field": "external_id"},
            )
        user_id = (
            AppUser.objects.filter(project=campaign.project, external_id=external_id.strip())
            .values_list("id", flat=True)
            .first()
        )
        if user_id is None:
            raise NotFound(
                f'No app user with external id "{external_id.strip()}" in this project.',
                code="UNKNOWN_USER",
                details={"field": "external_id"},
            )
        return {**content, "app_user_id": str(user_id)}
    target = {k: body[k] for k in ("device_token", "provider", "platform") if body.get(k)}
    return {**content, **target}


def _engagement_follow(progress: dict[str, Any], now: datetime) -> int:
    """Seconds the page should keep refreshing engagement after the current run ended
    (0 once ENGAGEMENT_FOLLOW has passed; while sending the page polls anyway)."""
    run = progress["run"]
    if progress["sending"] or run is None or run["completed_at"] is None:
        return 0
    return max(0, round((run["completed_at"] + ENGAGEMENT_FOLLOW - now).total_seconds()))


def _not_allowed(request: HttpRequest, allowed: str) -> ApplicationError:
    return ApplicationError(
        f"{request.method} is not allowed here; use {allowed}.",
        code="METHOD_NOT_ALLOWED",
        status=405,
    )
