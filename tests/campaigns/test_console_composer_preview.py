"""The composer's "Preview as" in a real browser: placeholders filled from a sample user.

No user: the placeholders' defaults; a registered user's external id: their values;
an unknown id: a message next to the input, and the preview keeps working after it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import Console
from tests.factories import AppUserFactory, ProjectFactory

pytestmark = pytest.mark.browser

IOS_TITLE = "document.querySelector('#composer-preview .ios [data-preview=title]').textContent"


def test_preview_as_a_sample_user(console: Console) -> None:
    project = ProjectFactory.create(name="Shop")
    AppUserFactory.create(project=project, external_id="ada", attributes={"first_name": "Ada"})
    AppUserFactory.create(project=project, external_id="bob", attributes={})
    page: Any = console.page
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")
    preview = page.locator("#composer-preview")
    who = preview.get_by_label("Preview as (external id)", exact=True)
    user_message = preview.locator("[data-preview=user-message]")

    page.get_by_label("Title:", exact=True).fill('Hi {{ first_name | default: "there" }}')
    page.get_by_label("Body:", exact=True).fill("Welcome back")

    page.wait_for_function(f"{IOS_TITLE} === 'Hi there'")
    assert preview.locator("[data-preview=placeholders]").text_content() == "Uses: first_name"
    # The project's newest users are suggested, newest first.
    suggestions = page.locator("#composer-sample-users option")
    assert [o.get_attribute("value") for o in suggestions.all()] == ["bob", "ada"]

    who.fill("ada")
    page.wait_for_function(f"{IOS_TITLE} === 'Hi Ada'")
    assert preview.locator(".android [data-preview=title]").text_content() == "Hi Ada"
    assert preview.locator(".web [data-preview=body]").text_content() == "Welcome back"
    assert user_message.is_hidden()
    preview.screenshot(path=str(console.artifacts / "preview-as-ada.png"))

    who.fill("nobody")
    page.wait_for_function(
        "document.querySelector('#composer-preview [data-preview=user-message]').hidden === false"
    )
    assert user_message.text_content() == "No app user with that external_id in this project."
    assert who.get_attribute("aria-invalid") == "true"
    assert preview.locator("[data-preview=message]").is_hidden()
    console.assert_fits_width()
    console.shot("unknown-user")
    preview.screenshot(path=str(console.artifacts / "preview-unknown.png"))

    who.press("Enter")  # previews; never submits the campaign form
    who.fill("")
    page.wait_for_function(f"{IOS_TITLE} === 'Hi there'")
    assert user_message.is_hidden()
    assert page.url.endswith(f"/add/?project={project.pk}")
    console.shot("composer-preview-as")
    # The browser logs the refused (404) lookups as errors: those are the unknown id.
    assert [e for e in console.console_errors if "404 (Not Found)" not in e] == []
