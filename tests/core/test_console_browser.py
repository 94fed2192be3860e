"""The console in a real browser: styled, its scripts alive, no sideways scrolling.

Issue 10 as an operator met it: with DEBUG off every /static/admin/* file answered
404, so the console was unstyled and its JavaScript dead.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser import Console

pytestmark = pytest.mark.browser


def test_the_console_is_styled_and_its_assets_load(console: Console) -> None:
    failed: list[str] = []
    console.page.on(
        "response",
        lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    console.goto("/ops/")
    page: Any = console.page
    # Django admin's stylesheet is applied (its header bar), and so is Herald's.
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg == "rgb(30, 27, 75)"
    assert page.evaluate("typeof window.Herald.json") == "function"
    assert re.search(r"Herald", page.title())
    console.assert_fits_width()
    console.shot("home")
    assert failed == []
    assert console.console_errors == []


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => !['hidden', 'submit', 'button', 'reset', 'image'].includes(e.type))
  .filter(e => e.offsetParent !== null)
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby') && !e.title)
  .map(e => `${e.tagName.toLowerCase()}#${e.id || e.name || '?'}`)"""


def test_every_input_has_a_label_and_pages_fit_1280(
    console: Console, some_of_everything: dict[str, Any]
) -> None:
    """Issue 10, "accessible and responsive": labels on every input, no sideways scroll."""
    campaign = some_of_everything["campaigns_pushcampaign"]
    segment = some_of_everything["segments_segment"]
    user = some_of_everything["segments_appuser"]
    pages = [
        "/ops/",
        "/ops/campaigns/pushcampaign/",
        "/ops/campaigns/pushcampaign/add/",
        f"/ops/campaigns/pushcampaign/{campaign.pk}/change/",
        "/ops/segments/segment/add/",
        f"/ops/segments/segment/{segment.pk}/change/",
        f"/ops/segments/appuser/{user.pk}/change/",
        "/ops/delivery/pushdelivery/",
        "/ops/delivery/pushtoken/",
    ]
    problems: dict[str, Any] = {}
    for path in pages:
        console.goto(path)
        console.page.wait_for_load_state("networkidle")
        unlabelled = console.page.evaluate(UNLABELLED)
        overflow = console.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if unlabelled or overflow > 0:
            problems[path] = {"unlabelled": unlabelled, "overflow": overflow}
    assert problems == {}, json.dumps(problems, indent=1)


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        # Swagger UI lists every operation; Redoc draws its menu of them.
        ("/api/docs", ".opblock"),
        ("/api/redoc", "[role=menuitem], li[data-item-id]"),
    ],
)
def test_the_api_docs_render_offline(console: Console, path: str, rendered: str) -> None:
    """Served by Herald alone: any request to another host is refused (and recorded),
    as on a machine without internet, and the page still renders the schema."""
    page: Any = console.page
    outside: list[str] = []
    local = re.compile(r"^(https?://(127\.0\.0\.1|localhost)(:\d+)?/|data:|blob:)")

    def only_local(route: Any) -> None:
        if local.match(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    console.goto(path)

    page.wait_for_selector(rendered)
    assert page.locator(rendered).count() > 20
    assert "Herald API" in page.inner_text("body")
    console.shot(path.rsplit("/", 1)[-1])
    assert outside == [] and failed == []
    # Redoc's vendor logo (cdn.redoc.ly) is refused by the page's policy, not fetched.
    assert [e for e in console.console_errors if "cdn.redoc.ly" not in e] == []


def test_the_console_links_the_api_docs_and_the_schema_shows_in_the_browser(
    console: Console,
) -> None:
    page: Any = console.page
    console.goto("/ops/")
    page.get_by_role("link", name="API docs").click()
    page.wait_for_url("**/api/docs")
    page.wait_for_selector(".opblock")

    console.goto("/api/schema")  # shown as text, not downloaded
    assert page.inner_text("body").startswith("openapi: 3.")
    console.goto("/api/schema?format=json")
    assert json.loads(page.inner_text("body"))["info"]["title"] == "Herald API"
