"""The console and the API docs under their Content-Security-Policy, in a real browser.

The policy (config/settings.py HERALD_CSP, core/csp.py) allows no inline script, no
inline event handler and, in the console, no inline style: a page that still had one
would lose that behaviour silently. So every main page is visited while the browser
reports each `securitypolicyviolation`, and the parts that used inline code (the
dashboard's project switch, the progress bars' widths) and the scripted parts (the
composer's live preview, the campaign page's live panel, the docs pages) are used.

Under the exact policy: the `console` fixture adds 'unsafe-eval' for Playwright's
wait_for_function (tests/browser.py); `exact_policy` takes it away again, and the
tests wait with `wait_until`, which evaluates through the DevTools protocol instead.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest
from django.utils import timezone

from config import settings as configured
from tests.browser import Console
from tests.factories import (
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
)

pytestmark = pytest.mark.browser

# Reports every violation to the test, whichever page it happens on.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.heraldCspViolation(
    [location.pathname, e.effectiveDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber]
      .join(" ")
  );
});
"""
# Redoc's bundle always draws its vendor's logo from this CDN; the docs pages' policy
# refuses it on purpose (docs/decisions.md, "Interactive API docs").
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
REDOC_LOGO = re.compile(r"^/api/redoc img-src https://cdn\.redoc\.ly/\S+ ")


@pytest.fixture
def exact_policy(console: Console, settings: Any) -> None:
    settings.HERALD_CSP = configured.HERALD_CSP


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """page.wait_for_function without eval() in the page (the policy refuses it)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout}s: {expression}"
        time.sleep(0.05)


def _watch(console: Console) -> list[str]:
    violations: list[str] = []
    console.page.expose_function("heraldCspViolation", lambda text: violations.append(text))
    console.page.context.add_init_script(REPORT_VIOLATIONS)
    return violations


def _bar_widths(page: Any, selector: str) -> list[float]:
    return page.eval_on_selector_all(
        selector, "nodes => nodes.map(n => n.getBoundingClientRect().width)"
    )


@pytest.mark.usefixtures("exact_policy")
def test_every_main_page_runs_under_the_policy(
    console: Console, some_of_everything: dict[str, Any]
) -> None:
    violations = _watch(console)
    page: Any = console.page
    project = some_of_everything["core_project"]
    other = ProjectFactory.create(name="Other app")
    live = CampaignFactory.create(
        project=other, name="Flash sale", status="sending", current_run=1, sent_at=timezone.now()
    )
    CampaignRunFactory.create(
        campaign=live, number=1, targeted=1000, sent=500, failed=100, invalid_tokens=50
    )
    pages = {
        "/ops/": "#dash-figure-sending",
        "/ops/campaigns/pushcampaign/": "#result_list",
        f"/ops/campaigns/pushcampaign/add/?project={project.pk}": "#composer-preview",
        f"/ops/campaigns/pushcampaign/{some_of_everything['campaigns_pushcampaign'].pk}/change/": (
            ".herald-campaign"
        ),
        "/ops/segments/segment/": "#result_list",
        f"/ops/segments/segment/{some_of_everything['segments_segment'].pk}/change/": "form",
        f"/ops/segments/appuser/{some_of_everything['segments_appuser'].pk}/change/": "form",
        "/ops/delivery/pushtoken/": "#result_list",
        "/ops/delivery/pushdelivery/": "#result_list",
        "/ops/core/project/": "#result_list",
        f"/ops/core/project/{project.pk}/change/": "form",
        "/ops/core/apikey/": "#result_list",
        "/api/docs": ".opblock",
        "/api/redoc": "[role=menuitem], li[data-item-id]",
    }
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for path, ready in pages.items():
        response = console.goto(path)
        assert response.status == 200, path
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")

    assert failed == []
    redoc_logo = [v for v in violations if REDOC_LOGO.match(v)]
    assert len(redoc_logo) == 1
    assert [v for v in violations if v not in redoc_logo] == []
    assert [e for e in console.console_errors if "cdn.redoc.ly" not in e] == []


@pytest.mark.usefixtures("exact_policy")
def test_the_dashboard_switch_and_progress_bars_work_without_inline_code(
    console: Console,
) -> None:
    violations = _watch(console)
    page: Any = console.page
    shop = ProjectFactory.create(name="Shop")
    ProjectFactory.create(name="Blog")
    live = CampaignFactory.create(
        project=shop, name="Flash sale", status="sending", current_run=1, sent_at=timezone.now()
    )
    CampaignRunFactory.create(
        campaign=live, number=1, targeted=1000, sent=500, failed=100, invalid_tokens=50
    )
    console.goto("/ops/")
    # The bar's parts get their widths from data-width (no style attribute): 50%, 10%, 5%.
    track = page.eval_on_selector("#dash-sending .herald-progress", "n => n.clientWidth")
    widths = _bar_widths(page, "#dash-sending .herald-progress > span")
    assert [round(100 * w / track) for w in widths] == [50, 10, 5]

    # Choosing a project submits the switch (was an onchange attribute).
    page.get_by_label("Project").select_option(label="Shop")
    page.wait_for_url(re.compile(rf"/ops/\?project={shop.pk}$"))
    assert "Project" in page.inner_text(".herald-dash-head")
    assert page.locator("#dash-project").input_value() == str(shop.pk)
    assert page.locator("#dash-sending").inner_text().count("Flash sale") == 1

    # The campaign list's status badges are coloured by class.
    console.goto("/ops/campaigns/pushcampaign/")
    badge = page.locator("#result_list .herald-status-sending")
    assert badge.inner_text() == "Sending"
    assert badge.evaluate("n => getComputedStyle(n).backgroundColor") == "rgb(217, 119, 6)"

    # The campaign page's live panel draws its bar and keeps polling.
    with page.expect_request(lambda r: r.url.endswith("/progress/")) as polled:
        console.goto(f"/ops/campaigns/pushcampaign/{live.pk}/change/")
    assert polled.value.headers.get("x-herald-background") == "1"
    wait_until(
        page,
        "[...document.querySelectorAll('.herald-campaign .herald-progress > span')]"
        ".some(n => n.getBoundingClientRect().width > 0)",
    )
    assert violations == []
    assert console.console_errors == []


@pytest.mark.usefixtures("exact_policy")
def test_the_composer_preview_follows_the_form(console: Console) -> None:
    violations = _watch(console)
    page: Any = console.page
    project = ProjectFactory.create(name="Shop")
    console.goto(f"/ops/campaigns/pushcampaign/add/?project={project.pk}")
    page.get_by_label("Title:", exact=True).fill("Spring sale")
    page.get_by_label("Body:", exact=True).fill("Everything -20%")
    wait_until(
        page,
        "document.querySelector('#composer-preview .ios [data-preview=title]').textContent"
        " === 'Spring sale'",
    )
    body = page.locator("#composer-preview .android [data-preview=body]")
    assert body.text_content() == "Everything -20%"
    # An image hosted anywhere on https is previewed (img-src https:); the test answers
    # for that host, as the machine has no internet.
    page.route(
        "https://images.example.com/**",
        lambda route: route.fulfill(status=200, content_type="image/png", body=PNG),
    )
    page.get_by_label("Image URL:", exact=True).fill("https://images.example.com/sale.png")
    wait_until(
        page,
        "[...document.querySelectorAll('#composer-preview img[data-preview=image]')]"
        ".every(n => n.complete && n.naturalWidth === 1)",
    )
    assert violations == []
    assert console.console_errors == []


def test_the_login_page_and_the_docs_need_no_inline_script(browser: Any, live_server: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.expose_function("heraldCspViolation", lambda text: violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        response = page.goto(live_server.url + "/ops/login/?next=/ops/")
        assert response.headers["x-frame-options"] == "DENY"
        page.get_by_label("Username").wait_for()
        page.goto(live_server.url + "/api/docs")
        page.wait_for_selector(".opblock")
        assert violations == []
        assert errors == []
    finally:
        context.close()
