"""What campaigns plugs into the console site (core.admin_site): the dashboard and
the app user page's "send test push".

Core imports no other app and segments must not import campaigns, so campaigns
registers these with the site from its AppConfig.ready (`connect`). The user page
(segments' AppUserAdmin) shows its test-push panel only when `admin:app_user_test_push`
resolves.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from campaigns.content import CONTENT_FIELDS
from campaigns.dashboard import (
    WINDOW_DAYS,
    EngagementSummary,
    campaigns_due,
    campaigns_sending,
    engagement_summary,
    recent_engagement,
    recent_provider_errors,
    send_summary,
    sends_per_day,
)
from campaigns.testpush import test_push_send, validate_test_push
from core import access
from core.admin_site import HeraldAdminSite
from core.api import refuse_unknown_fields
from core.charts import bar_chart
from core.console_json import console_json, request_object
from core.errors import NotFound
from core.models import Project
from core.timefmt import format_time, zone_named
from segments.models import AppUser

PROJECT_CHOICES_LIMIT = 200
# Progress bar segments: (stats key, css class of console.css's .herald-progress, label).
PROGRESS_PARTS = (
    ("sent", "sent", "sent"),
    ("failed", "failed", "failed"),
    ("invalid_tokens", "invalid", "invalid tokens"),
    ("skipped", "skipped", "skipped"),
    ("unknown", "unknown", "unknown"),
)


def connect(site: Any = None) -> None:
    site = admin.site if site is None else site
    if not isinstance(site, HeraldAdminSite):
        return
    site.register_dashboard(dashboard_context)
    site.register_view(
        "console/app-users/<uuid:user_id>/test-push",
        app_user_test_push,
        name="app_user_test_push",
    )


# --- the dashboard ---------------------------------------------------------------------


def _chosen_project(request: HttpRequest, projects: list[Project]) -> Project | None:
    if len(projects) == 1:
        return projects[0]
    wanted = request.GET.get("project", "")
    return next((p for p in projects if str(p.pk) == wanted), None)


def progress(stats: dict[str, int]) -> dict[str, Any]:
    """A sending campaign's bar: each status's share of the targeted devices."""
    targeted = stats["targeted"]
    parts = [
        {
            "css": css,
            "label": label,
            "count": stats[key],
            "percent": round(100 * stats[key] / targeted, 2) if targeted else 0,
        }
        for key, css, label in PROGRESS_PARTS
    ]
    done = targeted - stats["pending"]
    return {
        "parts": parts,
        "done_percent": round(100 * done / targeted) if targeted else 0,
        "summary": ", ".join(f"{p['count']} {p['label']}" for p in parts if p["count"])
        or "nothing sent yet",
    }


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """Template context of templates/admin/index.html (for one project, or all)."""
    ids = access.projects_where(request.user)
    mine = Project.objects.all() if ids is None else Project.objects.filter(pk__in=ids)
    projects = list(
        mine.order_by("name").only("id", "name", "default_timezone")[:PROJECT_CHOICES_LIMIT]
    )
    project = _chosen_project(request, projects)
    if ids is not None and project is None:
        # "All projects" is a superuser's view; a member sees one of their projects,
        # and a staff user who is a member of none sees no figures at all.
        if not projects:
            return {"dashboard": None, "no_projects": True}
        project = projects[0]
    zone_name = project.default_timezone if project is not None else settings.TIME_ZONE
    zone = zone_named(zone_name)
    now = timezone.now()

    sending, sending_total = campaigns_sending(project=project)
    due, due_total = campaigns_due(project=project, now=now)
    days = sends_per_day(project=project, now=now, zone=zone)
    summary = send_summary(days)
    errors = recent_provider_errors(project=project)
    engagement = recent_engagement(project=project)
    campaigns_url = reverse("admin:campaigns_pushcampaign_changelist")
    chart = bar_chart(
        f"Pushes sent per day, last {WINDOW_DAYS} days ({zone})",
        [
            (
                f"{d.day:%b} {d.day.day}",
                d.sent,
                f"{d.day:%Y-%m-%d}: {d.sent} sent, {d.failed} failed, "
                f"{d.invalid_tokens} invalid tokens",
            )
            for d in days
        ],
    )
    rate = summary.success_rate
    return {
        "dashboard": {
            "projects": projects,
            "project": project,
            "zone": str(zone),
            "now": format_time(now, zone_name),
            "sending": [
                {
                    "campaign": s.campaign,
                    "stats": s.stats,
                    "progress": progress(s.stats),
                    "url": reverse("admin:campaigns_pushcampaign_change", args=[s.campaign.pk]),
                    "started": format_time(s.campaign.sent_at, s.campaign.project.default_timezone),
                }
                for s in sending
            ],
            "sending_total": sending_total,
            "due": [
                {
                    "campaign": c,
                    "url": reverse("admin:campaigns_pushcampaign_change", args=[c.pk]),
                    "at": format_time(c.fire_at, c.project.default_timezone),
                    "late": c.fire_at is not None and c.fire_at < now,
                    "recurring": bool(c.recurrence),
                }
                for c in due
            ],
            "due_total": due_total,
            "chart": chart,
            "days": WINDOW_DAYS,
            "summary": summary,
            "success_percent": None if rate is None else f"{100 * rate:.1f}",
            "errors": [
                {
                    "delivery": d,
                    "at": format_time(d.claimed_at or d.created_at, zone_name),
                    "url": reverse("admin:delivery_pushdelivery_change", args=[d.pk]),
                }
                for d in errors
            ],
            "deliveries_url": reverse("admin:delivery_pushdelivery_changelist"),
            "campaigns_url": campaigns_url,
            "engagement": [
                {
                    "campaign": e.campaign,
                    "url": reverse("admin:campaigns_pushcampaign_change", args=[e.campaign.pk]),
                    "sent": e.analytics["totals"]["sent"],
                    "silent": e.analytics["silent"],
                    "open": _percent(e.analytics["rates"]["open_rate"]),
                    "click": _percent(e.analytics["rates"]["click_rate"]),
                    "conversion": _percent(e.analytics["rates"]["conversion_rate"])
                    if e.campaign.goals
                    else None,
                    "tags": [
                        {"name": tag, "url": f"{campaigns_url}?{urlencode({'tag': tag})}"}
                        for tag in e.campaign.tags or ()
                    ],
                }
                for e in engagement
            ],
            "engagement_summary": _summary_rates(engagement_summary(engagement)),
        }
    }


def _percent(rate: float | None) -> str | None:
    return None if rate is None else f"{100 * rate:.1f}%"


def _summary_rates(summary: EngagementSummary) -> dict[str, Any]:
    return {
        "campaigns": summary.campaigns,
        "sent": summary.sent,
        "open": _percent(summary.open_rate),
        "click": _percent(summary.click_rate),
        "conversion": _percent(summary.conversion_rate),
    }


# --- the user page's test push ---------------------------------------------------------


@console_json(methods=("POST",))
def app_user_test_push(request: HttpRequest, user_id: uuid.UUID) -> dict[str, Any]:
    """POST {title, body, ...content} -> the API's test push answer, to this user's
    newest active token: the same validator and sender as POST /push/campaigns/test."""
    user = AppUser.objects.select_related("project").filter(pk=user_id).first()
    if user is None or not access.principal_may(request.user, access.VIEW_APP_USERS, user):
        raise NotFound("App user not found.")
    access.require(request.user, access.SEND_CAMPAIGNS, user)
    body = request_object(request)
    refuse_unknown_fields(body, allowed=CONTENT_FIELDS)
    fields = validate_test_push({**body, "app_user_id": str(user.pk)})
    return test_push_send(project=user.project, fields=fields)
