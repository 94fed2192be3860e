"""The console home and its sections: the dashboard's numbers are the API's and the
rows', the System section is the superusers', every time carries its zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import campaign_stats, run_maybe_finish
from campaigns.selectors import with_current_run
from core.charts import bar_chart
from core.models import Project
from core.timefmt import format_time
from delivery.models import PushDelivery
from tests.factories import (
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    add_member,
)

BEAT_MODELS = ("periodictask", "crontabschedule", "intervalschedule", "clockedschedule")
BEAT_MODELS_ALL = (*BEAT_MODELS, "solarschedule")


def _started(run: CampaignRun, at: datetime) -> None:
    CampaignRun.objects.filter(pk=run.pk).update(started_at=at)


def _settled_campaign(project: Project, *, started: datetime, results: list[str]) -> PushCampaign:
    """A sent campaign whose one run started at `started`, with one delivery row per
    status in `results`, its counters recounted from the rows (campaigns.runs)."""
    campaign = CampaignFactory.create(project=project, status="sent", current_run=1)
    run = CampaignRunFactory.create(campaign=campaign, number=1, status="sent", fanout_done=True)
    _started(run, started)
    for status in results:
        PushDeliveryFactory.create(
            campaign=campaign,
            status=status,
            error_message="" if status == "sent" else f"{status} reason",
        )
    assert run_maybe_finish(campaign_id=campaign.pk, run=1) is False  # already sent: recount
    return campaign


@pytest.fixture
def paris(db: None) -> Project:
    return ProjectFactory.create(name="Paris app", default_timezone="Europe/Paris")


def test_dashboard_numbers_are_the_apis_and_the_rows(staff: Client, paris: Project) -> None:
    now = timezone.now()
    sending = CampaignFactory.create(
        project=paris, name="Live", status="sending", current_run=1, sent_at=now
    )
    CampaignRunFactory.create(
        campaign=sending, number=1, targeted=10, sent=4, failed=1, invalid_tokens=1
    )
    CampaignFactory.create(
        project=paris, name="Soon", status="scheduled", scheduled_at=now + timedelta(hours=2)
    )
    CampaignFactory.create(
        project=paris, name="Later", status="scheduled", scheduled_at=now + timedelta(hours=30)
    )
    CampaignFactory.create(project=paris, name="Draft")
    old = _settled_campaign(
        paris,
        started=now - timedelta(days=3),
        results=["sent", "sent", "sent", "failed", "invalid_token", "skipped"],
    )
    # Outside the 14-day window: not counted.
    _settled_campaign(paris, started=now - timedelta(days=20), results=["sent"])

    response = staff.get(reverse("admin:index"))

    assert response.status_code == 200
    d = response.context["dashboard"]
    assert d["project"] == paris and d["zone"] == "Europe/Paris"
    live = with_current_run(PushCampaign.objects.filter(pk=sending.pk)).get()
    assert [(r["campaign"].name, r["stats"]) for r in d["sending"]] == [
        ("Live", campaign_stats(live))
    ]
    assert d["sending"][0]["stats"] == {
        "targeted": 10,
        "sent": 4,
        "failed": 1,
        "invalid_tokens": 1,
        "skipped": 0,
        "unknown": 0,
        "pending": 4,
    }
    assert d["sending"][0]["progress"]["done_percent"] == 60
    assert [r["campaign"].name for r in d["due"]] == ["Soon"]
    assert d["due"][0]["at"] == format_time(now + timedelta(hours=2), "Europe/Paris")
    assert d["due"][0]["at"].endswith(" Europe/Paris")
    # Per day: the runs' counters; the settled run's are its rows' counts.
    old_rows = PushDelivery.objects.filter(campaign=old)
    bars = d["chart"].bars
    assert len(bars) == 14
    assert [b.value for b in bars] == [0] * 10 + [old_rows.filter(status="sent").count()] + [
        0,
        0,
        4,
    ]
    assert bars[10].value == 3
    summary = d["summary"]
    assert (summary.sent, summary.attempted, summary.tokens_retired) == (7, 7 + 1 + 1 + 1 + 1, 2)
    assert d["success_percent"] == "63.6"
    assert [(e["delivery"].status, e["delivery"].error_message) for e in d["errors"]] == [
        ("invalid_token", "invalid_token reason"),
        ("failed", "failed reason"),
    ]
    page = response.content.decode()
    assert len(re.findall(r'<rect class="herald-bar', page)) == 14
    for section in ("dash-sending", "dash-due", "dash-chart", "dash-rate", "dash-retired"):
        assert f'id="{section}"' in page
    assert "dash-errors" in page


def test_dashboard_per_project(staff: Client, paris: Project) -> None:
    other = ProjectFactory.create(name="Other app")
    for project, name in ((paris, "Paris live"), (other, "Other live")):
        campaign = CampaignFactory.create(
            project=project, name=name, status="sending", current_run=1
        )
        CampaignRunFactory.create(campaign=campaign, number=1, targeted=2, sent=1)

    everyone = staff.get(reverse("admin:index")).context["dashboard"]
    one = staff.get(reverse("admin:index"), {"project": str(other.pk)}).context["dashboard"]

    assert everyone["project"] is None and everyone["zone"] == "UTC"
    assert sorted(r["campaign"].name for r in everyone["sending"]) == ["Other live", "Paris live"]
    assert one["project"] == other
    assert [r["campaign"].name for r in one["sending"]] == ["Other live"]
    assert [b.value for b in one["chart"].bars][-1] == 1


def test_empty_dashboard_renders(staff: Client) -> None:
    response = staff.get(reverse("admin:index"))
    d = response.context["dashboard"]
    assert (d["sending"], d["due"], d["errors"], d["success_percent"]) == ([], [], [], None)
    assert [b.value for b in d["chart"].bars] == [0] * 14
    assert "Nothing is sending." in response.content.decode()


# --- sections: what operators see ----------------------------------------------------


@pytest.fixture
def operator(db: None) -> Client:
    """Staff, not superuser, holding every model permission there is, and the admin
    role of a project."""
    user = get_user_model().objects.create_user("staffer", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    add_member(user, ProjectFactory(), "admin")
    client = Client()
    client.force_login(user)
    return client


def _sections(response: Any) -> list[tuple[str, list[str]]]:
    return [
        (app["name"], [m["object_name"].lower() for m in app["models"]])
        for app in response.context["app_list"]
    ]


def test_superusers_see_the_operators_order_and_the_system_section(staff: Client) -> None:
    sections = _sections(staff.get(reverse("admin:index")))

    assert sections == [
        ("Campaigns", ["pushcampaign"]),
        ("Segments & users", ["segment", "appuser"]),
        ("Devices & deliveries", ["pushtoken", "pushdelivery"]),
        ("Projects & keys", ["project", "apikey", "auditevent", "projectmembership"]),
        ("System", ["group", "user", *sorted(BEAT_MODELS_ALL, key=_beat_order)]),
    ]
    sweeper = staff.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    assert sweeper.status_code == 200
    assert "herald: sweep campaigns" in sweeper.content.decode()
    assert staff.get(reverse("admin:system_index")).status_code == 200


def _beat_order(name: str) -> tuple[int, str]:
    names = {
        "periodictask": "",
        "clockedschedule": "clocked",
        "crontabschedule": "crontabs",
        "intervalschedule": "intervals",
        "solarschedule": "solar events",
    }
    return (0 if name == "periodictask" else 1, names[name])


def test_staff_do_not_see_system_models_and_are_refused_them(operator: Client) -> None:
    sections = _sections(operator.get(reverse("admin:index")))

    # Login accounts and groups are the superuser's too, whatever permissions a staff
    # user was granted: a user who could edit accounts could make themselves superuser.
    assert sections == [
        ("Campaigns", ["pushcampaign"]),
        ("Segments & users", ["segment", "appuser"]),
        ("Devices & deliveries", ["pushtoken", "pushdelivery"]),
        ("Projects & keys", ["project", "apikey", "auditevent", "projectmembership"]),
    ]
    for view in ("auth_user_changelist", "auth_group_changelist", "auth_user_add"):
        assert operator.get(reverse(f"admin:{view}")).status_code == 403, view
    for model in BEAT_MODELS_ALL:
        for view in ("changelist", "add"):
            response = operator.get(reverse(f"admin:django_celery_beat_{model}_{view}"))
            assert response.status_code == 403, (model, view)
    sweeper = PeriodicTask.objects.get(name="herald: sweep campaigns")
    change = reverse("admin:django_celery_beat_periodictask_change", args=[sweeper.pk])
    assert operator.get(change).status_code == 403
    assert operator.post(change, {"enabled": ""}).status_code == 403
    assert PeriodicTask.objects.get(pk=sweeper.pk).enabled is True
    assert operator.get(reverse("admin:app_list", args=["django_celery_beat"])).status_code == 404


def test_system_page_is_not_found_without_system_models(db: None) -> None:
    user = get_user_model().objects.create_user("plain", is_staff=True)
    add_member(user, ProjectFactory(), "viewer")
    client = Client()
    client.force_login(user)
    assert [name for name, _ in _sections(client.get(reverse("admin:index")))] == [
        "Campaigns",
        "Segments & users",
        "Devices & deliveries",
        "Projects & keys",
    ]
    assert client.get(reverse("admin:system_index")).status_code == 404


# --- times and charts ------------------------------------------------------------------


def test_times_carry_their_zone() -> None:
    moment = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert format_time(moment) == "2026-12-01 08:00 UTC"
    assert format_time(moment, "Europe/Paris") == "2026-12-01 09:00 Europe/Paris"
    assert format_time(moment, "Not/AZone") == "2026-12-01 08:00 UTC"
    assert format_time(None) == "—"


def test_bar_chart_scales_to_a_round_peak() -> None:
    chart = bar_chart("t", [("a", 0, "a"), ("b", 30, "b"), ("c", 45, "c")], width=304, height=134)
    assert chart.peak == 50
    assert [b.height for b in chart.bars] == [1.0, 60.0, 90.0]  # usable height 100
    assert [b.y + b.height for b in chart.bars] == [chart.baseline] * 3
