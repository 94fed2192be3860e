"""The composer's rich content in a real browser (issue 12): web icon and badge, button
icons, vibration, require-interaction, renotify, the notification tag, and a
localization's image and button titles, typed into widgets only; the saved campaign is
what the API stores for the same request, and what the API refuses lands on its widget.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from campaigns import services
from campaigns.models import PushCampaign
from campaigns.validation import validate_create
from tests.browser import Console
from tests.factories import ProjectFactory

pytestmark = pytest.mark.browser

RICH_FIELDS = (
    "title",
    "body",
    "localizations",
    "image_url",
    "icon",
    "web_badge",
    "actions",
    "vibrate",
    "require_interaction",
    "renotify",
    "tag",
)


def test_compose_rich_content_with_widgets_only(console: Console) -> None:
    project = ProjectFactory.create(name="Shop")
    page: Any = console.page
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")
    # Images the live server serves: the mock-ups load them (the machine is offline).
    image = console.base_url + "/static/console/favicon.svg"

    page.get_by_label("Title:", exact=True).fill("Spring sale")
    page.get_by_label("Body:", exact=True).fill("Everything -20%")
    page.get_by_label("Image URL:", exact=True).fill(image + "?en")
    page.get_by_label("Web icon URL:", exact=True).fill(image + "?icon")
    page.get_by_label("Web badge image URL:", exact=True).fill(image + "?badge")
    page.get_by_role("button", name="+ Add button").click()
    page.get_by_label("Button 1 id", exact=True).fill("buy")
    page.get_by_label("Button 1 label", exact=True).fill("Buy")
    page.get_by_label("Button 1 icon URL", exact=True).fill(image + "?cart")
    page.get_by_role("button", name="+ Add button").click()
    page.get_by_label("Button 2 id", exact=True).fill("later")
    page.get_by_label("Button 2 label", exact=True).fill("Later")
    page.get_by_label("Vibration pattern:", exact=True).fill("200, 100, 200")
    page.get_by_label("Require interaction", exact=True).check()
    page.get_by_label("Renotify", exact=True).check()
    page.get_by_label("Notification tag:", exact=True).fill("spring")

    # A French row: its image and one button's title (the inputs follow the buttons).
    page.get_by_role("button", name="+ Add language").click()
    page.get_by_label("Language 1", exact=True).fill("fr")
    page.get_by_label("Localized title 1", exact=True).fill("Soldes")
    page.get_by_label("Localized image URL 1", exact=True).fill(image + "?fr")
    page.get_by_label("Localized button buy 1", exact=True).fill("Acheter")
    assert page.get_by_label("Localized button later 1", exact=True).input_value() == ""

    # The preview in French: the localized button title, the web icon, the web push size.
    preview = page.locator("#composer-preview")
    page.wait_for_function(
        "document.querySelector('#composer-preview [data-preview=language] option[value=fr]')"
    )
    preview.get_by_label("Preview language", exact=True).select_option("fr")
    page.wait_for_function(
        "document.querySelector('#composer-preview .web [data-preview=actions]').textContent"
        " === 'AcheterLater'"
    )
    assert preview.locator(".web [data-preview=icon]").get_attribute("src") == image + "?icon"
    assert preview.locator(".ios [data-preview=image]").get_attribute("src") == image + "?fr"
    assert re.search(
        r", web push \d{3,4} of 3,993\)$", preview.locator("[data-preview=size]").text_content()
    )
    console.assert_fits_width()
    console.shot("composer-rich")

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r"/ops/campaigns/pushcampaign/$"))
    saved = PushCampaign.objects.get()

    api_payload = {
        "title": "Spring sale",
        "body": "Everything -20%",
        "localizations": {
            "fr": {"title": "Soldes", "image_url": image + "?fr", "actions": {"buy": "Acheter"}}
        },
        "image_url": image + "?en",
        "icon": image + "?icon",
        "web_badge": image + "?badge",
        "actions": [
            {"id": "buy", "title": "Buy", "icon": image + "?cart"},
            {"id": "later", "title": "Later"},
        ],
        "vibrate": [200, 100, 200],
        "require_interaction": True,
        "renotify": True,
        "tag": "spring",
    }
    twin = services.campaign_create(
        project=ProjectFactory.create(name="Twin"), fields=validate_create(api_payload)
    )
    assert {f: getattr(saved, f) for f in RICH_FIELDS} == {f: getattr(twin, f) for f in RICH_FIELDS}
    assert [e for e in console.console_errors if "400 (Bad Request)" not in e] == []


def test_rich_content_errors_land_next_to_their_widget(console: Console) -> None:
    project = ProjectFactory.create(name="Shop")
    page: Any = console.page
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")
    page.get_by_label("Title:", exact=True).fill("Sale")
    page.get_by_label("Body:", exact=True).fill("Now")
    page.get_by_label("Web icon URL:", exact=True).fill("icon.png")
    page.get_by_label("Vibration pattern:", exact=True).fill("200, lots")

    page.get_by_role("button", name="Save", exact=True).click()

    page.wait_for_selector(".errornote")
    assert "icon must be an absolute URL." in page.locator(".form-row.field-icon").text_content()
    assert (
        "vibrate[1] must be an integer." in page.locator(".form-row.field-vibrate").text_content()
    )

    # Fixed, the whole content is judged: renotify needs a tag.
    page.get_by_label("Web icon URL:", exact=True).fill("")
    page.get_by_label("Vibration pattern:", exact=True).fill("200")
    page.get_by_label("Renotify", exact=True).check()
    page.get_by_role("button", name="Save", exact=True).click()

    page.wait_for_selector(".form-row.field-renotify .errorlist")
    assert "set tag (or collapse_key" in page.locator(".form-row.field-renotify").text_content()
    assert page.get_by_label("Vibration pattern:", exact=True).input_value() == "200"
    assert PushCampaign.objects.count() == 0
