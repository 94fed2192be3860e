"""The campaign page in a real browser, driven like an operator would: the buttons
work, the progress bar follows the run without a reload, the results and chart show.

No worker runs here: the tests write what the batches would (rows and the run's
counters, through campaigns.runs) while the page polls.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from campaigns import runs
from campaigns.models import CampaignRun, PushCampaign
from core.models import Project
from core.services import project_generate_vapid
from delivery.models import PushDelivery
from delivery.services import BatchOutcome
from delivery.simulators.server import SimulatorServer
from tests.browser import Console
from tests.campaigns.conftest import DEAD_APNS, wire
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
)

pytestmark = pytest.mark.browser

DEVICES = [("apns", "ios"), ("apns", "ios"), ("fcm", "android"), ("fcm", "android"), ("fcm", "web")]


def change_url(campaign: PushCampaign) -> str:
    return f"/ops/campaigns/pushcampaign/{campaign.pk}/change/"


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.inner_text()).strip()


def wait_text(page: Any, selector: str, expected: str) -> None:
    """Wait until the element shows `expected` (the page updates it by polling)."""
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.trim() === t",
        arg=[selector, expected],
    )


def finish_rows(campaign: PushCampaign, statuses: dict[int, tuple[str, str]]) -> None:
    """What a batch does: write the rows' results, then bump the run's counters."""
    now = timezone.now()
    rows = list(PushDelivery.objects.filter(campaign=campaign, run=1).order_by("id"))
    outcome = BatchOutcome()
    for index, (status, reason) in statuses.items():
        row = rows[index]
        row.status, row.error_message, row.claimed_at = status, reason, now
        row.sent_at = now if status == "sent" else None
        row.save(update_fields=["status", "error_message", "claimed_at", "sent_at"])
        name = "invalid_tokens" if status == "invalid_token" else status
        setattr(outcome, name, getattr(outcome, name) + 1)
    runs.run_progress(campaign.pk, 1, outcome)


def test_progress_follows_the_run_without_a_reload_then_shows_results(console: Console) -> None:
    project = ProjectFactory.create(default_timezone="Europe/Paris")
    campaign = CampaignFactory.create(
        project=project, name="Flash sale", status="sending", current_run=1
    )
    CampaignRunFactory.create(
        campaign=campaign, number=1, status="sending", targeted=len(DEVICES), fanout_done=True
    )
    for provider, platform in DEVICES:
        token = PushTokenFactory.create(project=project, provider=provider, platform=platform)
        PushDeliveryFactory.create(campaign=campaign, run=1, token=token)
    page = console.page
    console.goto(change_url(campaign))
    page.evaluate("window.heraldSamePage = true")
    assert page.get_by_role("button", name="Cancel campaign").is_visible()
    assert text(page, '[data-field="status"]') == "Sending"
    assert text(page, '[data-count="pending"]') == "5"
    assert text(page, '[data-field="percent"]') == "0%"
    assert "Europe/Paris" in text(page, '[data-field="run"]')

    finish_rows(campaign, {0: ("sent", ""), 1: ("sent", ""), 2: ("failed", "QuotaExceeded")})

    wait_text(page, '[data-count="sent"]', "2")
    assert text(page, '[data-count="failed"]') == "1"
    assert text(page, '[data-count="pending"]') == "2"
    assert text(page, '[data-field="percent"]') == "60%"
    assert re.fullmatch(r"[\d.,]+/s", text(page, '[data-field="rate"]'))
    assert re.fullmatch(r"\d+ (s|min \d+ s)", text(page, '[data-field="eta"]'))
    sent_width = page.eval_on_selector('[data-bar="sent"]', "e => e.style.width")
    assert sent_width == "40%"
    console.assert_fits_width()
    console.shot("sending")

    finish_rows(campaign, {3: ("sent", ""), 4: ("invalid_token", "UNREGISTERED")})
    assert runs.run_maybe_finish(campaign_id=campaign.pk, run=1)

    wait_text(page, '[data-field="status"]', "Sent")
    assert text(page, '[data-field="percent"]') == "100%"
    assert text(page, '[data-count="sent"]') == "3"
    assert text(page, '[data-count="invalid_tokens"]') == "1"
    assert text(page, '[data-field="eta"]') == "done"
    assert page.evaluate("window.heraldSamePage") is True  # no reload happened
    assert page.get_by_role("button", name="Cancel campaign").is_hidden()  # no longer applies
    # The results of the run: tables by status / provider / platform / reason, and the chart.
    tables = page.locator('[data-field="tables"]')
    # (the last rows' reason appears once the results are reloaded after the run)
    tables.get_by_role("link", name="UNREGISTERED (Invalid token)").wait_for()
    assert tables.get_by_role("link", name="QuotaExceeded (Failed)").is_visible()
    status_table = tables.locator("table", has_text="By status")
    assert status_table.locator("tr", has_text="Sent").locator("td.n").inner_text() == "3"
    assert status_table.locator("tr", has_text="Total").locator("td.n").inner_text() == "5"
    platform_table = tables.locator("table", has_text="By platform")
    assert platform_table.locator("tr", has_text="Android").locator("td.n").inner_text() == "2"
    chart = page.locator('[data-field="chart"] svg')
    assert chart.count() == 1
    assert chart.locator('rect[data-series="sent"]').count() >= 1
    assert "Europe/Paris" in str(chart.get_attribute("aria-label"))
    console.assert_fits_width()
    console.shot("sent")

    # The reason links to the delivery log filtered to exactly those rows.
    tables.get_by_role("link", name="UNREGISTERED (Invalid token)").click()
    page.wait_for_url(re.compile(r"/ops/delivery/pushdelivery/\?"))
    assert page.locator("#result_list tbody tr").count() == 1
    assert console.console_errors == []


def test_send_now_asks_first_with_the_audience_size(console: Console, broker: Any) -> None:
    campaign = CampaignFactory.create(name="Welcome", title="Hello there")
    for provider, platform in DEVICES[:3]:
        PushTokenFactory.create(project=campaign.project, provider=provider, platform=platform)
    page = console.page
    console.goto(change_url(campaign))
    assert page.get_by_role("button", name="Cancel campaign").count() == 0

    page.get_by_role("link", name="Send now").click()

    assert text(page, '[data-field="audience-total"]') == "3"
    console.shot("confirm")
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    page.get_by_role("button", name="Yes, send to 3 devices").click()

    page.wait_for_url(re.compile(re.escape(change_url(campaign)) + "$"))
    assert 'Sending "Welcome" now.' in text(page, "ul.messagelist")
    assert text(page, '[data-field="status"]') == "Sending"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run) == ("sending", 1)
    assert [t.name for t in broker.drain()] == ["campaigns.fan_out_campaign"]
    console.shot("sending")
    assert console.console_errors == []


def test_cancel_keeps_the_counts_and_duplicate_opens_a_draft(console: Console) -> None:
    campaign = CampaignFactory.create(name="Weekend", status="sending", current_run=1)
    CampaignRunFactory.create(
        campaign=campaign, number=1, status="sending", targeted=8, sent=3, failed=1
    )
    page = console.page
    console.goto(change_url(campaign))
    page.once("dialog", lambda dialog: dialog.accept())

    page.get_by_role("button", name="Cancel campaign").click()

    page.wait_for_url(re.compile(re.escape(change_url(campaign)) + "$"))
    assert "what was sent stays counted" in text(page, "ul.messagelist")
    assert text(page, '[data-field="status"]') == "Cancelled"
    assert (text(page, '[data-count="sent"]'), text(page, '[data-count="failed"]')) == ("3", "1")
    assert CampaignRun.objects.get(campaign=campaign).status == "cancelled"
    console.shot("cancelled")

    page.get_by_role("button", name="Duplicate").click()

    page.wait_for_url(re.compile(r"/change/$"))
    copy = PushCampaign.objects.exclude(pk=campaign.pk).get()
    assert page.url.endswith(change_url(copy))
    assert copy.name == "Weekend (copy)" and copy.status == "draft"
    assert text(page, '[data-field="status"]') == "Draft"
    console.shot("duplicate")
    assert console.console_errors == []


def test_send_test_to_an_external_id_and_see_why_one_failed(
    console: Console, sim: SimulatorServer, clean_sim: None
) -> None:
    project = wire(ProjectFactory.create(), sim)
    campaign = CampaignFactory.create(project=project, title="Try me")
    alice = AppUserFactory.create(project=project, external_id="alice")
    PushTokenFactory.create(project=project, app_user=alice, token="ab" * 32)
    bob = AppUserFactory.create(project=project, external_id="bob")
    PushTokenFactory.create(project=project, app_user=bob, token=DEAD_APNS)
    page = console.page
    console.goto(change_url(campaign))
    page.get_by_role("button", name="Send test").first.click()
    dialog = page.get_by_role("dialog", name="Send a test push")
    result = dialog.locator('[data-field="test-result"]')

    dialog.get_by_label("External id").fill("alice")
    dialog.get_by_role("button", name="Send test").click()

    result.filter(has_text="Sent through APNs").wait_for()
    delivery = PushDelivery.objects.get(token__token="ab" * 32)
    assert delivery.status == "sent" and delivery.campaign_id is None
    assert f"delivery {delivery.pk}" in result.inner_text()
    console.shot("test-sent")

    dialog.get_by_label("External id").fill("bob")
    dialog.get_by_role("button", name="Send test").click()

    result.filter(has_text="Not sent").wait_for()
    assert "(PUSH_FAILED)" in result.inner_text()
    assert "BadDeviceToken" in result.inner_text() or "Unregistered" in result.inner_text()
    console.shot("test-refused")

    dialog.get_by_label("A device token").check()
    dialog.get_by_label("Device token", exact=True).fill("cd" * 10)
    dialog.get_by_role("button", name="Send test").click()
    result.filter(has_text="(INVALID_TOKEN_FORMAT)").wait_for()
    assert "An APNs device token is 64-200 hexadecimal characters." in result.inner_text()
    assert PushDelivery.objects.count() == 2  # the malformed token was never sent

    # A browser's web push subscription, registered before, by its endpoint.
    project_generate_vapid(project=project, subject="mailto:ops@example.com")
    Project.objects.filter(pk=project.pk).update(webpush_ca_file=str(sim.credentials.ca_file))
    [browser] = sim.mint_webpush_subscriptions(1)
    PushTokenFactory.create(
        project=project,
        app_user=alice,
        token=browser["endpoint"],
        keys=browser["keys"],
        provider="webpush",
        platform="web",
    )
    dialog.get_by_label("Device token", exact=True).fill(browser["endpoint"])
    dialog.get_by_label("Provider").select_option("webpush")
    dialog.get_by_role("button", name="Send test").click()
    result.filter(has_text="Sent through Web push").wait_for()
    assert sim.stats(tokens=True)["webpush"]["tokens"] == {browser["endpoint"]: 1}
    console.assert_fits_width()
    # The refused requests (502, 400) are logged by Chromium; nothing else went wrong.
    unexpected = [e for e in console.console_errors if "Failed to load resource" not in e]
    assert unexpected == []
