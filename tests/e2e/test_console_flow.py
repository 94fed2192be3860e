"""The operator's whole journey in the console, against a real worker and the simulators.

Log in -> dashboard -> compose a campaign with widgets only (no JSON typed) -> the
audience estimate follows the targeting -> the preview shows the localized title ->
a test push to a user by external id -> Send now, confirmed -> the progress bar
reaches 100% without a reload -> per-run counts and the chart -> a throttled copy
cancelled midway keeps its counts.

With HERALD_DOCS_SCREENSHOTS=1 (`make screenshots`) it also writes the README's
screenshots (docs/console-*.png); otherwise its screenshots go to the git-ignored
var/test-artifacts/ like every browser test's.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from core.models import Project
from delivery.models import PushDelivery
from segments.models import AppUser
from tests.browser import Console
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import _project

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _audience(project: Project) -> None:
    """6 French iPhones, 4 French Android phones, 5 German Android phones."""
    people = [("FR", "fr", "ios")] * 6 + [("FR", "fr", "android")] * 4
    people += [("DE", "de", "android")] * 5
    for i, (country, language, platform) in enumerate(people):
        user = AppUser.objects.create(
            project=project,
            external_id=f"{country.lower()}-{platform}-{i}",
            attributes={"country": country, "language": language},
        )
        if platform == "ios":
            token, provider = secrets.token_hex(32), "apns"
        else:
            token, provider = f"f{secrets.token_urlsafe(110)}", "fcm"
        user.push_tokens.create(project=project, token=token, provider=provider, platform=platform)


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.inner_text()).strip()


def _wait_text(page: Any, selector: str, expected: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.trim() === t",
        arg=[selector, expected],
        timeout=timeout,
    )


def _docs_shot(console: Console, name: str) -> None:
    """Keep a screenshot; with HERALD_DOCS_SCREENSHOTS=1 also as docs/<name>.png."""
    path = console.shot(name)
    if os.environ.get("HERALD_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS / f"{name}.png")


@pytest.mark.django_db(transaction=True)
def test_an_operator_composes_tests_sends_watches_and_cancels(
    console: Console, simulators: Simulators, start_worker: Any
) -> None:
    simulators.reset()
    drain_broker()
    project = _project(simulators)  # wired to the simulators, as every e2e test's
    project.name, project.default_timezone = "Shop", "Europe/Paris"
    project.save(update_fields=["name", "default_timezone"])
    _audience(project)
    start_worker()
    page: Any = console.page

    # The dashboard is the console's home.
    console.goto("/ops/")
    assert page.get_by_role("heading", name="Sends per day").is_visible()
    console.shot("dashboard")

    # Compose with widgets only; the estimate follows the targeting.
    console.goto("/ops/campaigns/pushcampaign/")
    page.get_by_role("link", name=re.compile(r"Add push campaign")).click()
    page.wait_for_url(re.compile(r"/add/$"))
    # The only project is already chosen.
    assert page.get_by_label("Project:").input_value() == str(project.pk)
    total = "#composer-estimate [data-estimate=total]"
    _wait_text(page, total, "15")
    page.get_by_label("Name:", exact=True).fill("Spring sale")
    page.get_by_label("Title:", exact=True).fill("Spring sale")
    page.get_by_label("Body:", exact=True).fill("Everything -20% this weekend")
    page.get_by_role("button", name="+ Add language").click()
    page.get_by_label("Language 1", exact=True).fill("fr")
    page.get_by_label("Localized title 1", exact=True).fill("Soldes de printemps")
    page.get_by_label("Localized body 1", exact=True).fill("Tout à -20 % ce week-end")
    page.get_by_role("button", name="+ Add button").click()
    page.get_by_label("Button 1 id", exact=True).fill("shop")
    page.get_by_label("Button 1 label", exact=True).fill("Shop now")
    page.get_by_label("iOS", exact=True).check()
    page.get_by_label("Android", exact=True).check()
    countries = page.get_by_label("Countries include", exact=True)
    countries.fill("FR")
    countries.press("Enter")
    _wait_text(page, total, "10")
    assert _text(page, "#composer-estimate [data-estimate=ios]") == "6"
    assert _text(page, "#composer-estimate [data-estimate=android]") == "4"

    # The preview, in French, shows the localized title.
    preview = page.locator("#composer-preview")
    page.wait_for_function(
        "document.querySelector('#composer-preview [data-preview=language] option[value=fr]')"
    )
    preview.get_by_label("Preview language", exact=True).select_option("fr")
    _wait_text(page, "#composer-preview .ios [data-preview=title]", "Soldes de printemps")
    console.assert_fits_width()
    _docs_shot(console, "console-composer")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_url(re.compile(r"/ops/campaigns/pushcampaign/[0-9a-f-]+/change/$"))
    campaign = PushCampaign.objects.get(project=project)
    assert campaign.localizations["fr"]["title"] == "Soldes de printemps"
    assert campaign.targeting == {"countries": {"include": ["FR"]}}

    # A test push to one user, by external id, through the real APNs simulator.
    page.get_by_role("button", name="Send test").first.click()
    dialog = page.get_by_role("dialog", name="Send a test push")
    dialog.get_by_label("External id").fill("fr-ios-0")
    dialog.get_by_role("button", name="Send test").click()
    dialog.locator('[data-field="test-result"]').filter(has_text="Sent through APNs").wait_for()
    dialog.get_by_role("button", name="Close", exact=True).click()

    # Send now: the confirmation states the audience; the bar fills without a reload.
    page.get_by_role("link", name="Send now").click()
    assert _text(page, '[data-field="audience-total"]') == "10"
    page.get_by_role("button", name="Yes, send to 10 devices").click()
    page.wait_for_url(re.compile(r"/change/$"))
    page.evaluate("window.heraldSamePage = true")
    _wait_text(page, '[data-field="status"]', "Sent")
    assert _text(page, '[data-field="percent"]') == "100%"
    assert _text(page, '[data-count="sent"]') == "10"
    assert page.evaluate("window.heraldSamePage") is True
    tables = page.locator('[data-field="tables"]')
    status_table = tables.locator("table", has_text="By status")
    status_table.locator("tr", has_text="Sent").locator("td.n").filter(has_text="10").wait_for()
    platform_table = tables.locator("table", has_text="By platform")
    assert platform_table.locator("tr", has_text="iOS").locator("td.n").inner_text() == "6"
    assert page.locator('[data-field="chart"] svg rect[data-series="sent"]').count() >= 1
    campaign.refresh_from_db()
    assert campaign_stats(campaign)["sent"] == 10
    assert simulators.stats()["apns"]["accepted"] == 7  # 6 + the test push
    console.assert_fits_width()
    page.wait_for_timeout(600)  # the bar's width transition, for the picture
    _docs_shot(console, "console-results")

    # A throttled copy, cancelled midway: what was sent stays counted.
    page.get_by_role("button", name="Duplicate").click()
    page.wait_for_url(re.compile(r"/change/$"))
    copy = PushCampaign.objects.exclude(pk=campaign.pk).get()
    page.get_by_label("Throttle per minute:", exact=True).fill("4")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_url(re.compile(r"/change/$"))
    page.get_by_role("link", name="Send now").click()
    page.get_by_role("button", name="Yes, send to 10 devices").click()
    page.wait_for_url(re.compile(r"/change/$"))
    _wait_text(page, '[data-count="sent"]', "4")
    assert _text(page, '[data-count="pending"]') == "6"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel campaign").click()
    page.wait_for_url(re.compile(r"/change/$"))
    assert _text(page, '[data-field="status"]') == "Cancelled"
    assert _text(page, '[data-count="sent"]') == "4"
    copy.refresh_from_db()
    assert copy.status == CampaignStatus.CANCELLED
    # Nothing more goes out after the cancel, and the page keeps the counts.
    wait_for(lambda: False, timeout=3)
    assert PushDelivery.objects.filter(campaign=copy, status="sent").count() == 4
    assert campaign_stats(copy)["sent"] == 4
    console.goto(f"/ops/campaigns/pushcampaign/{copy.pk}/change/")
    assert _text(page, '[data-count="sent"]') == "4"
    console.shot("cancelled")
    assert [e for e in console.console_errors if "Failed to load resource" not in e] == []
