"""The campaign composer in a real browser: widgets only, no JSON typed.

An operator composes a campaign by clicking and typing into the widgets; the live
audience estimate follows the targeting, the preview shows the localized title, and
the saved campaign is exactly what the API stores for the same request.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from campaigns import services
from campaigns.models import PushCampaign
from campaigns.validation import validate_create
from tests.browser import Console
from tests.factories import AppUserFactory, ProjectFactory, PushTokenFactory, SegmentFactory

pytestmark = pytest.mark.browser

COMPARED = (
    "name",
    "title",
    "body",
    "data",
    "localizations",
    "image_url",
    "url",
    "actions",
    "platforms",
    "targeting",
    "tags",
    "recurrence",
    "quiet_hours",
    "ttl_seconds",
    "throttle_per_minute",
    "priority",
    "status",
)


def _audience(project: Any) -> None:
    """3 French iOS users, 2 German Android users, 1 French web user."""
    for i, (country, platform, provider) in enumerate(
        [
            ("FR", "ios", "apns"),
            ("FR", "ios", "apns"),
            ("FR", "ios", "apns"),
            ("DE", "android", "fcm"),
            ("DE", "android", "fcm"),
            ("FR", "web", "fcm"),
        ]
    ):
        user = AppUserFactory.create(
            project=project,
            external_id=f"user-{i}",
            attributes={"country": country, "language": "fr" if country == "FR" else "de"},
        )
        PushTokenFactory.create(
            project=project, app_user=user, platform=platform, provider=provider
        )


def test_compose_a_campaign_with_widgets_only(console: Console) -> None:
    project = ProjectFactory.create(name="Shop", default_timezone="Europe/Paris")
    _audience(project)
    SegmentFactory.create(project=project, name="Everyone FR")
    page: Any = console.page
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")

    estimate = page.locator("#composer-estimate [data-estimate=total]")
    # Everyone, before any targeting.
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=total]').textContent === '6'"
    )
    assert page.locator("#id_schedule_timezone").input_value() == "Europe/Paris"

    page.get_by_label("Title:", exact=True).fill("Spring sale")
    page.get_by_label("Body:", exact=True).fill("Everything -20% this weekend")
    page.get_by_role("button", name="+ Add language").click()
    page.get_by_label("Language 1", exact=True).fill("fr")
    page.get_by_label("Localized title 1", exact=True).fill("Soldes de printemps")
    page.get_by_label("Localized body 1", exact=True).fill("Tout à -20 % ce week-end")
    # An image the live server serves: the mock-ups load it (the machine is offline).
    image_url = console.base_url + "/static/console/favicon.svg"
    page.get_by_label("Image URL:", exact=True).fill(image_url)
    page.get_by_role("button", name="+ Add button").click()
    page.get_by_label("Button 1 id", exact=True).fill("shop")
    page.get_by_label("Button 1 label", exact=True).fill("Shop now")
    page.get_by_label("Button 1 URL", exact=True).fill("myapp://shop")

    # Targeting: French users only, on iOS and Android; the estimate follows.
    page.get_by_label("iOS", exact=True).check()
    page.get_by_label("Android", exact=True).check()
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=total]').textContent === '5'"
    )
    countries = page.get_by_label("Countries include", exact=True)
    countries.fill("FR")
    countries.press("Enter")
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=total]').textContent === '3'"
    )
    assert page.locator("#composer-estimate [data-estimate=ios]").text_content() == "3"
    assert page.locator("#composer-estimate [data-estimate=android]").text_content() == "0"
    page.get_by_role("button", name="+ Add condition").click()
    page.get_by_label("Condition 1 attribute", exact=True).fill("platform")
    page.get_by_label("Condition 1 values", exact=True).fill("ios")
    # platform is not a custom attribute (user_data's keys): the estimate says so.
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=message]').hidden === false"
    )
    assert (
        "not a custom attribute name"
        in page.locator("#composer-estimate [data-estimate=message]").text_content()
    )
    page.get_by_label("Condition 1 attribute", exact=True).fill("plan")
    page.get_by_label("Condition 1 values", exact=True).fill("gold, silver")
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=total]').textContent === '0'"
    )
    page.get_by_role("button", name="Remove condition 1").click()
    page.wait_for_function(
        "document.querySelector('#composer-estimate [data-estimate=total]').textContent === '3'"
    )
    assert estimate.text_content() == "3"

    # Schedule: every day at 09:30 in Paris, quiet hours, TTL, tags.
    page.get_by_label("Repeat", exact=True).select_option("days")
    page.get_by_label("Every N", exact=True).fill("1")
    page.get_by_label("At (time of day)", exact=True).fill("09:30")
    page.get_by_label("Recurrence time zone", exact=True).select_option("Europe/Paris")
    page.wait_for_function(
        "document.querySelector('.composer-reading').textContent"
        " === 'every day at 09:30, Europe/Paris'"
    )
    page.get_by_label("Repeat", exact=True).select_option("cron")
    page.get_by_label("Cron expression", exact=True).fill("0 12 * * 1,5")
    page.wait_for_function(
        "document.querySelector('.composer-reading').textContent"
        " === 'at 12:00 on Mon and Fri, Europe/Paris'"
    )
    page.get_by_label("Quiet hours start", exact=True).fill("22:00")
    page.get_by_label("Quiet hours end", exact=True).fill("08:00")
    page.locator("summary", has_text="Options").click()
    page.get_by_label("TTL", exact=True).fill("2")
    page.get_by_label("Tags:", exact=True).fill("spring, promo")

    # Preview: the localized title for French, the payload's size.
    preview = page.locator("#composer-preview")
    page.wait_for_function(
        "document.querySelector('#composer-preview [data-preview=language] option[value=fr]')"
    )
    preview.get_by_label("Preview language", exact=True).select_option("fr")
    page.wait_for_function(
        "document.querySelector('#composer-preview .ios [data-preview=title]').textContent"
        " === 'Soldes de printemps'"
    )
    assert preview.locator(".android [data-preview=title]").text_content() == "Soldes de printemps"
    assert preview.locator(".web [data-preview=actions]").text_content() == "Shop now"
    assert re.match(
        r"Largest payload: \d{3} of 4,096 bytes",
        preview.locator("[data-preview=size]").text_content(),
    )
    console.assert_fits_width()
    console.shot("composer-filled")
    preview.scroll_into_view_if_needed()
    preview.screenshot(path=str(console.artifacts / "preview.png"))

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r"/ops/campaigns/pushcampaign/$"))
    saved = PushCampaign.objects.get()

    # The same request through the API's validator and service.
    api_payload = {
        "title": "Spring sale",
        "body": "Everything -20% this weekend",
        "localizations": {
            "fr": {"title": "Soldes de printemps", "body": "Tout à -20 % ce week-end"}
        },
        "image_url": image_url,
        "actions": [{"id": "shop", "title": "Shop now", "url": "myapp://shop"}],
        "platforms": ["ios", "android"],
        "targeting": {"countries": {"include": ["FR"]}},
        "recurrence": {"cron": "0 12 * * 1,5", "timezone": "Europe/Paris"},
        "quiet_hours": {"start": "22:00", "end": "08:00", "action": "defer"},
        "ttl_seconds": 7200,
        "tags": ["spring", "promo"],
    }
    other = ProjectFactory.create(name="Twin", default_timezone="Europe/Paris")
    twin = services.campaign_create(project=other, fields=validate_create(api_payload))
    assert {f: getattr(saved, f) for f in COMPARED} == {f: getattr(twin, f) for f in COMPARED}
    assert saved.segment_id is None
    assert saved.scheduled_at == twin.scheduled_at
    # The browser logs each refused (400) estimate as an error: that is the refusal above.
    assert [e for e in console.console_errors if "400 (Bad Request)" not in e] == []


def test_errors_land_next_to_their_widget(console: Console) -> None:
    project = ProjectFactory.create(name="Shop")
    page: Any = console.page
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")
    page.get_by_label("Body:", exact=True).fill("No title")
    page.get_by_role("button", name="+ Add button").click()
    page.get_by_label("Button 1 id", exact=True).fill("go")
    page.get_by_label("Image URL:", exact=True).fill("ftp://example.com/a.png")

    page.get_by_role("button", name="Save", exact=True).click()

    page.wait_for_selector(".errornote")
    title_row = page.locator(".form-row.field-title")
    assert "title is required. (MISSING_TITLE)" in title_row.text_content()
    image_row = page.locator(".form-row.field-image_url")
    assert "image_url must be an http(s) URL." in image_row.text_content()
    actions_row = page.locator(".form-row.field-actions")
    assert "actions[0].title must not be blank." in actions_row.text_content()
    # The row the API path names is marked, and the editor kept what was typed.
    assert page.locator(".field-actions .composer-row.composer-invalid").count() == 1
    assert page.get_by_label("Button 1 id", exact=True).input_value() == "go"
    console.shot("errors")
    assert PushCampaign.objects.count() == 0
