"""The segment rule builder in a real browser, driven by clicks as an operator would.

Issue 10: the segment page was a raw JSON box with a member count of "-" until the
15-minute refresh. Now a builder writes the rules, a live panel shows the count and
sample the API's preview gives for them, and a saved segment reopens in the builder.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from core.models import Project
from segments.models import Segment
from segments.rules import validate_rules
from segments.selectors import segment_preview
from tests.browser import Console
from tests.segments.helpers import apns_token, fcm_token, make_project, make_token, make_user

pytestmark = pytest.mark.browser

# What the clicks below build: France, and either a pro/team plan or an iOS device,
# and not an app older than 2.10.
EXPECTED_RULES: dict[str, Any] = {
    "all": [
        {"attr": "country", "op": "eq", "value": "FR"},
        {
            "any": [
                {"attr": "plan", "op": "in", "value": ["pro", "team"]},
                {"attr": "platform", "op": "eq", "value": "ios"},
            ]
        },
        {"not": {"attr": "app_version", "op": "lt", "value": "2.10"}},
    ]
}


def audience() -> Project:
    project = make_project("Acme")
    people: list[tuple[str, dict[str, Any], str | None]] = [
        ("fr-pro", {"country": "FR", "plan": "pro", "app_version": "2.10.1"}, None),
        ("fr-team-old", {"country": "FR", "plan": "team", "app_version": "2.9"}, None),
        ("fr-free-ios", {"country": "FR", "plan": "free", "app_version": "3.0"}, "ios"),
        ("fr-free-android", {"country": "FR", "plan": "free", "app_version": "3.0"}, "android"),
        ("fr-team", {"country": "FR", "plan": "team", "vip": True}, None),
        ("us-pro", {"country": "US", "plan": "pro", "app_version": "3.1"}, "ios"),
    ]
    for n, (external_id, attributes, platform) in enumerate(people):
        user = make_user(project, external_id, attributes)
        if platform == "ios":
            make_token(project, user, apns_token(n))
        elif platform == "android":
            make_token(project, user, fcm_token(n), provider="fcm", platform="android")
    return project


def preview_count(project: Project, rules: dict[str, Any]) -> int:
    """What the API's POST /segments/preview counts for these rules."""
    return segment_preview(project=project, rules=validate_rules(rules)).count


def shown_count(page: Any) -> Any:
    return page.locator(".rb-count")


def rules_box(page: Any) -> dict[str, Any]:
    return json.loads(page.locator("textarea[name=rules]").input_value())


def test_build_a_nested_segment_by_clicks_count_it_live_save_and_reopen(
    console: Console,
) -> None:
    project = audience()
    page: Any = console.page
    console.goto("/ops/segments/segment/add/")
    page.get_by_label("Project").select_option(str(project.pk))
    page.get_by_label("Name").fill("French power users")
    # No condition yet: everyone, counted live.
    expect(shown_count(page)).to_have_attribute("data-count", "6")
    console.shot("empty-builder")

    root = page.locator(".rb-root")
    root.locator(".rb-add-condition").last.click()
    first = page.locator(".rb-cond").nth(0)
    expect(first.get_by_label("Attribute")).to_have_value("country")
    first.get_by_label("Operator").select_option("eq")
    first.get_by_label("Value", exact=True).fill("FR")
    expect(shown_count(page)).to_have_attribute(
        "data-count", str(preview_count(project, EXPECTED_RULES["all"][0]))
    )

    # A nested "any" group: plan is one of pro, team (a custom key seen in the
    # project's users), or has an iOS device.
    root.locator(":scope > .rb-group-actions .rb-add-group").click()
    group = page.locator(".rb-root .rb-group").nth(0)
    expect(group.get_by_label("Group type")).to_have_value("any")
    plan = group.locator(".rb-cond").nth(0)
    plan.get_by_label("Attribute").select_option("plan")
    plan.get_by_label("Operator").select_option("in")
    plan.locator(".rb-add-value").click()
    plan.get_by_label("Value 1", exact=True).fill("pro")
    plan.locator(".rb-add-value").click()
    plan.get_by_label("Value 2", exact=True).fill("team")
    group.locator(":scope > .rb-group-actions .rb-add-condition").click()
    device = group.locator(".rb-cond").nth(1)
    device.get_by_label("Attribute").select_option("platform")
    expect(device.get_by_label("Value", exact=True)).to_have_value("ios")

    # A "none of these" group: not an app older than 2.10 (a version comparison).
    root.locator(":scope > .rb-group-actions .rb-add-group").click()
    exclusion = page.locator(".rb-root .rb-group").nth(1)
    exclusion.get_by_label("Group type").select_option("not")
    old_app = exclusion.locator(".rb-cond").nth(0)
    old_app.get_by_label("Attribute").select_option("app_version")
    old_app.get_by_label("Operator").select_option("lt")
    old_app.get_by_label("Value", exact=True).fill("2.10")

    expected = preview_count(project, EXPECTED_RULES)
    assert expected == 3  # fr-pro, fr-free-ios, fr-team: the rule means what it says
    expect(shown_count(page)).to_have_attribute("data-count", str(expected))
    assert rules_box(page) == EXPECTED_RULES
    sample = page.locator(".rb-sample tbody tr td:first-child")
    expect(sample).to_have_count(expected)
    assert sorted(sample.all_inner_texts()) == ["fr-free-ios", "fr-pro", "fr-team"]
    console.assert_fits_width()
    console.shot("nested-segment-live-count")

    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_url(re.compile(r"/ops/segments/segment/[0-9a-f-]+/change/$"))
    segment = Segment.objects.get()
    assert (segment.name, segment.rules, segment.project_id) == (
        "French power users",
        EXPECTED_RULES,
        project.pk,
    )

    # Reopened: the builder shows the saved rules, and the count is fresh, not "-".
    page.reload()
    expect(shown_count(page)).to_have_attribute("data-count", str(expected))
    assert rules_box(page) == EXPECTED_RULES
    assert page.locator(".rb-notice").is_hidden()
    attributes = page.locator(".rb-cond").get_by_label("Attribute")
    assert [attributes.nth(i).input_value() for i in range(4)] == [
        "country",
        "plan",
        "platform",
        "app_version",
    ]
    kinds = page.locator(".rb-group").get_by_label("Group type")
    assert [kinds.nth(i).input_value() for i in range(2)] == ["any", "not"]
    second_plan = page.locator(".rb-cond").nth(1).get_by_label("Value 2", exact=True)
    assert second_plan.input_value() == "team"
    members = page.locator(".field-members_now .readonly")
    expect(members).to_have_text(f"{expected} (counted just now)")
    console.assert_fits_width()
    console.shot("reopened")
    assert console.console_errors == []


def test_a_refused_rule_is_marked_in_the_builder_with_the_apis_message(
    console: Console,
) -> None:
    project = audience()
    segment = Segment.objects.create(
        project=project, name="Recent", rules={"attr": "created_at", "op": "gte", "value": "-7d"}
    )
    page: Any = console.page
    console.goto(f"/ops/segments/segment/{segment.pk}/change/")
    condition = page.locator(".rb-cond").nth(0)
    expect(condition.get_by_label("Value type")).to_have_value("relative")
    expect(condition.get_by_label("Value amount")).to_have_value("7")
    expect(shown_count(page)).to_have_attribute("data-count", "6")

    # Between needs a low and a high bound: the preview refuses the empty one, and the
    # builder marks the condition with the validator's message.
    condition.get_by_label("Operator").select_option("between")
    condition.get_by_label("Value type").select_option("date")
    condition.get_by_label("From", exact=True).fill("2020-01-01")
    message = (
        "rules.value[1] must be an ISO date ('2024-05-01'), a date-time with offset, "
        "or a relative date such as '-7d'."
    )
    expect(page.locator(".rb-cond.rb-invalid .rb-error")).to_have_text(message)
    expect(page.locator(".rb-status")).to_have_text(message)
    console.shot("refused-in-preview")

    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-rules .errorlist")).to_have_text(f"{message} (VALIDATION_ERROR)")
    expect(page.locator(".rb-cond.rb-invalid .rb-error")).to_have_text(message)
    console.shot("refused-on-save")
    segment.refresh_from_db()
    assert segment.rules == {"attr": "created_at", "op": "gte", "value": "-7d"}

    page.locator(".rb-cond").nth(0).get_by_label("To", exact=True).fill("2030-12-31")
    expect(shown_count(page)).to_have_attribute("data-count", "6")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    segment.refresh_from_db()
    assert segment.rules == {
        "attr": "created_at",
        "op": "between",
        "value": ["2020-01-01", "2030-12-31"],
    }
