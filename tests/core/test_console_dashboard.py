"""The console home and the user page in a real browser, as an operator sees them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.models import CampaignRun
from tests.browser import Console
from tests.campaigns.conftest import sim, wire  # noqa: F401  (the simulators fixture)
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    add_member,
)

pytestmark = pytest.mark.browser


def _some_activity() -> None:
    project = ProjectFactory.create(name="Demo app", default_timezone="Europe/Paris")
    now = timezone.now()
    live = CampaignFactory.create(
        project=project, name="Flash sale", status="sending", current_run=1, sent_at=now
    )
    CampaignRunFactory.create(
        campaign=live, number=1, targeted=1200, sent=700, failed=40, invalid_tokens=25, skipped=5
    )
    CampaignFactory.create(
        project=project,
        name="Morning digest",
        status="scheduled",
        scheduled_at=now + timedelta(hours=3),
    )
    for days_ago in range(0, 14, 2):
        campaign = CampaignFactory.create(
            project=project, name=f"Daily {days_ago}", status="sent", current_run=1
        )
        run = CampaignRunFactory.create(
            campaign=campaign,
            number=1,
            status="sent",
            targeted=500 + 40 * days_ago,
            sent=480 + 40 * days_ago,
            failed=12,
            invalid_tokens=8,
        )
        CampaignRun.objects.filter(pk=run.pk).update(started_at=now - timedelta(days=days_ago))
    user = AppUserFactory.create(project=project, external_id="user-42")
    token = PushTokenFactory.create(project=project, app_user=user)
    PushDeliveryFactory.create(
        campaign=live,
        token=token,
        status="invalid_token",
        error_message="BadDeviceToken",
    )


def test_dashboard_shows_every_section_and_fits(console: Console) -> None:
    _some_activity()
    console.goto("/ops/")
    page: Any = console.page

    for heading in (
        "Sending now",
        "Scheduled in the next 24 hours",
        "Sends per day",
        "Last provider errors",
    ):
        assert page.get_by_role("heading", name=heading, level=2).is_visible()
    assert page.locator("#dash-chart svg rect.herald-bar").count() == 14
    assert page.locator("#dash-sending .herald-progress > span").count() == 4
    assert "Flash sale" in page.locator("#dash-sending").inner_text()
    assert "Europe/Paris" in page.locator("#dash-due").inner_text()
    assert "BadDeviceToken" in page.locator("#dash-errors").inner_text()
    assert page.locator("#dash-rate .herald-figure").inner_text().endswith("%")
    # The sections, in the operator's order, beside the dashboard.
    captions = page.locator("#content-related caption").all_text_contents()
    assert [c.strip() for c in captions] == [
        "Campaigns",
        "Segments & users",
        "Devices & deliveries",
        "Projects & keys",
        "System",
    ]
    console.assert_fits_width()
    console.shot("dashboard")
    assert console.console_errors == []


def test_staff_do_not_see_the_system_section(console: Console) -> None:
    from django.contrib.auth.models import Permission

    staffer = get_user_model().objects.create_user("staffer", password="staff-password")
    staffer.is_staff = True
    staffer.save()
    staffer.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["campaigns", "django_celery_beat"])
    )
    add_member(staffer, ProjectFactory(), "viewer")
    page: Any = console.page
    page.context.clear_cookies()
    console.goto("/ops/login/?next=/ops/")
    page.get_by_label("Username").fill("staffer")
    page.get_by_label("Password").fill("staff-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ops/")

    captions = [c.strip() for c in page.locator("#content-related caption").all_text_contents()]
    assert captions == ["Campaigns", "Segments & users", "Devices & deliveries", "Projects & keys"]
    assert page.get_by_role("link", name="Periodic tasks").count() == 0
    console.shot("staff-dashboard")
    response = console.goto("/ops/django_celery_beat/periodictask/")
    assert response.status == 403


def test_user_page_sends_a_test_push(console: Console, sim: Any) -> None:  # noqa: F811
    project = wire(ProjectFactory.create(name="Simulated"), sim)
    user = AppUserFactory.create(project=project, external_id="tester")
    PushTokenFactory.create(project=project, app_user=user, token="ab" * 32)

    console.goto(f"/ops/segments/appuser/{user.pk}/change/")
    page: Any = console.page
    assert page.locator("#user-tokens tbody tr").count() == 1
    page.get_by_label("Title").fill("Hello from the console")
    page.get_by_label("Body").fill("Testing one device")
    page.get_by_role("button", name="Send test push").click()
    result = page.locator(".herald-test-push-result.ok")
    result.wait_for()
    assert result.inner_text().startswith("Sent through APNS")
    console.assert_fits_width()
    console.shot("user-test-push")

    page.get_by_label("Title").fill("")
    page.get_by_role("button", name="Send test push").click()
    refused = page.locator(".herald-test-push-result.bad")
    refused.wait_for()
    assert "MISSING_TITLE" in refused.inner_text()
    console.shot("user-test-push-refused")
    assert [e for e in console.console_errors if "400" not in e] == []
