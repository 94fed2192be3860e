"""Engagement in the console, in a real browser: the campaign page's Engagement panel
shows campaign_analytics' numbers for events ingested through the events service, the
campaign list's tag filter narrows the list, the composer's goals editor saves goals
(and shows the validator's refusal next to the field), and the preview renders a
placeholder for a sample user.

No worker runs here: rows are written as the batches would write them and runs are
settled by the real run finisher; events go through `segments.events.events_ingest`
(the events API's service), which feeds campaigns' listener.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from campaigns.analytics import campaign_analytics
from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import run_maybe_finish
from delivery.models import PushDelivery
from segments.events import events_ingest
from tests.browser import Console
from tests.campaigns.engagement_helpers import sent_delivery, user_of
from tests.factories import AppUserFactory, CampaignFactory, ProjectFactory

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"

GOALS = [
    {"name": "Purchase", "event": "purchase", "filter": None, "window_hours": 36, "primary": True},
    {"name": "Cart", "event": "add_to_cart", "filter": None, "window_hours": 12, "primary": False},
]


def change_url(campaign: PushCampaign) -> str:
    return f"/ops/campaigns/pushcampaign/{campaign.pk}/change/"


def engaged_campaign() -> PushCampaign:
    """Run 1, four pushes sent (2 APNs/iOS, 2 FCM/Android) and one failed; through the
    events service: 3 opens (one reported twice), 2 clicks on "buy" and 1 on "later",
    2 purchases (one user twice) and 1 add to cart."""
    project = ProjectFactory.create(default_timezone="Europe/Paris")
    start = timezone.now() - timedelta(hours=2)
    campaign = CampaignFactory.create(
        project=project,
        name="Spring sale",
        status="sent",
        current_run=1,
        sent_at=start,
        goals=GOALS,
        tags=["spring", "promo"],
        actions=[{"id": "buy", "title": "Buy"}, {"id": "later", "title": "Later"}],
    )
    devices = [("apns", "ios"), ("apns", "ios"), ("fcm", "android"), ("fcm", "android")]
    rows = [
        sent_delivery(
            campaign,
            sent_at=start + timedelta(minutes=i),
            provider=p,
            platform=pl,
            user=AppUserFactory.create(project=project, external_id=f"user-{i}"),
        )
        for i, (p, pl) in enumerate(devices)
    ]
    sent_delivery(campaign, sent_at=start, provider="fcm", platform="web", status="failed")
    PushDelivery.objects.filter(campaign=campaign, status="failed").update(claimed_at=start)
    CampaignRun.objects.filter(campaign=campaign, number=1).update(
        started_at=start, fanout_done=True
    )
    assert run_maybe_finish(campaign_id=campaign.pk, run=1)
    later = start + timedelta(minutes=30)

    def ev(event_id: str, name: str, minutes: int, **fields: Any) -> dict[str, Any]:
        at = (later + timedelta(minutes=minutes)).isoformat()
        return {"event_id": event_id, "name": name, "occurred_at": at, **fields}

    opened, clicked = "push_opened", "push_clicked"
    result = events_ingest(
        project=project,
        events=[
            ev("o0", opened, 0, delivery_id=rows[0].pk),
            ev("o0b", opened, 1, delivery_id=rows[0].pk),  # the same push again
            ev("o1", opened, 2, delivery_id=rows[1].pk),
            ev("c2", clicked, 3, delivery_id=rows[2].pk, action_id="buy"),
            ev("c3", clicked, 4, delivery_id=rows[3].pk, action_id="buy"),
            ev("c3b", clicked, 5, delivery_id=rows[3].pk, action_id="later"),
            ev("p0", "purchase", 10, external_id="user-0"),
            ev("p0b", "purchase", 11, external_id="user-0"),  # converts once
            ev("p2", "purchase", 12, external_id="user-2"),
            ev("a3", "add_to_cart", 13, user_id=str(user_of(rows[3]).pk)),
        ],
    )
    assert (result.accepted, result.rejected) == (10, [])
    campaign.refresh_from_db()
    return campaign


def figure(page: Any, key: str, part: str) -> str:
    return str(
        page.locator(f'[data-engagement="{key}"] [data-figure="{part}"]').inner_text()
    ).strip()


def row_cells(page: Any, table: str, label: str) -> list[str]:
    row = page.locator(f'[data-table="{table}"] tr', has_text=label).first
    return [str(c).strip() for c in row.locator("td").all_inner_texts()]


def test_engagement_panel_shows_the_campaign_analytics(console: Console) -> None:
    campaign = engaged_campaign()
    analytics = campaign_analytics(campaign)
    # Hand-counted: a click opens too; one user converts once per goal.
    assert analytics["totals"] == {
        "targeted": 5,
        "sent": 4,
        "failed": 1,
        "invalid_tokens": 0,
        "opened": 4,
        "clicked": 2,
        "converted": 2,
    }
    page = console.page
    console.goto(change_url(campaign))
    page.locator('[data-engagement="opened"]').wait_for()

    assert figure(page, "sent", "count") == "4"
    assert figure(page, "opened", "count") == "4"
    assert figure(page, "opened", "rate") == "open rate 100.0%"
    assert figure(page, "clicked", "count") == "2"
    assert figure(page, "clicked", "rate") == "click rate 50.0%"
    assert figure(page, "converted", "count") == "2"
    assert figure(page, "converted", "rate") == "conversion rate 50.0% · Purchase"
    assert row_cells(page, "goals", "Purchase") == [
        "Purchase (purchase, 36 h, primary)",
        "2",
        "50.0%",
    ]
    assert row_cells(page, "goals", "Cart") == ["Cart (add_to_cart, 12 h)", "1", "25.0%"]
    assert row_cells(page, "actions", "buy") == ["buy", "2"]
    assert row_cells(page, "actions", "later") == ["later", "1"]
    assert row_cells(page, "provider", "APNs") == ["APNs", "2", "2", "0", "1"]
    assert row_cells(page, "provider", "FCM") == ["FCM", "2", "2", "2", "1"]
    assert row_cells(page, "platform", "Android") == ["Android", "2", "2", "2", "1"]
    assert row_cells(page, "platform", "Web") == ["Web", "0", "0", "0", "0"]
    chart = page.locator('[data-field="engagement-chart"] svg')
    assert "4 sent, 4 opened, 2 clicked, 2 converted" in str(chart.get_attribute("aria-label"))
    assert page.locator('[data-field="engagement-unit"]').inner_text().endswith("Europe/Paris)")
    console.assert_fits_width()
    console.shot("engagement")
    panel = console.artifacts / "engagement-panel.png"
    page.locator("#herald-engagement").screenshot(path=str(panel))
    if os.environ.get("HERALD_DOCS_SCREENSHOTS") == "1":  # make screenshots
        shutil.copyfile(panel, DOCS / "console-engagement.png")

    # The dashboard lists it with the same rates, linked to this page.
    console.goto("/ops/")
    row = page.locator(f'#dash-engagement tr[data-campaign="{campaign.pk}"]')
    cells = [str(c).strip() for c in row.locator("td").all_inner_texts()]
    assert cells == ["Spring sale", "4", "100.0%", "50.0%", "50.0%", "springpromo"]
    assert row.get_by_role("link", name="promo").get_attribute("href").endswith("?tag=promo")
    console.assert_fits_width()
    console.shot("dashboard")
    row.get_by_role("link", name="Spring sale").click()
    page.locator('[data-engagement="opened"]').wait_for()

    # The run picker: run 1 alone has the same numbers here (one run).
    page.select_option('[data-field="engagement-run"]', "1")
    page.wait_for_function(
        "() => document.querySelector('[data-field=\"engagement-unit\"]').textContent"
        ".includes('minute')"
    )
    assert figure(page, "converted", "count") == "2"


def test_tag_filter_narrows_the_list(console: Console) -> None:
    project = ProjectFactory.create()
    for name, tags in (
        ("Spring A", ["spring"]),
        ("Spring B", ["promo", "spring"]),
        ("Winter", ["winter"]),
    ):
        CampaignFactory.create(project=project, name=name, tags=tags)  # fmt: skip
    page = console.page
    console.goto("/ops/campaigns/pushcampaign/")
    side = page.locator("#changelist-filter")
    tag_choices = side.locator("details", has_text="By tag").locator("li").all_inner_texts()
    assert [t.strip() for t in tag_choices] == ["All", "promo", "spring", "winter"]

    side.get_by_role("link", name="spring", exact=True).click()
    page.wait_for_url("**/?tag=spring")
    names = page.locator("#result_list tbody th a").all_inner_texts()
    assert sorted(names) == ["Spring A", "Spring B"]
    console.assert_fits_width()
    console.shot("tag-filter")


def test_goals_editor_saves_goals_and_shows_a_refusal_next_to_the_field(
    console: Console,
) -> None:
    campaign = CampaignFactory.create(name="Goals", status="draft")
    page = console.page
    console.goto(change_url(campaign))
    page.get_by_role("button", name="+ Add goal").click()
    page.get_by_label("Goal 1 name", exact=True).fill("Purchase")
    page.get_by_label("Goal 1 event", exact=True).fill("purchase")
    page.get_by_label("Goal 1 property filter", exact=True).fill(
        '{"attr": "value", "op": "gte", "value": 20}'
    )
    page.get_by_role("button", name="+ Add goal").click()
    page.get_by_label("Goal 2 name", exact=True).fill("Cart")
    page.get_by_label("Goal 2 event", exact=True).fill("add_to_cart")
    page.get_by_label("Goal 2 window (hours)", exact=True).fill("12")
    page.get_by_label("Goal 2 property filter", exact=True).fill(
        '{"attr": "value", "op": "bogus", "value": 1}'
    )
    page.get_by_role("button", name="Save and continue editing").click()

    # Refused by the API's validator, shown next to the field, the row marked.
    errors = page.locator(".field-goals .errorlist")
    errors.wait_for()
    assert "(VALIDATION_ERROR)" in errors.inner_text()
    assert page.locator('.composer-goal.composer-invalid[data-path="goals[1]"]').count() == 1
    assert page.locator('.composer-goal[data-path="goals[0]"].composer-invalid').count() == 0
    campaign.refresh_from_db()
    assert campaign.goals == []  # a refusal changes nothing
    console.assert_fits_width()
    console.shot("goals-refused")

    page.get_by_label("Goal 2 property filter", exact=True).fill("")
    page.get_by_label("Goal 2 is the primary goal", exact=True).check()
    page.get_by_role("button", name="Save and continue editing").click()
    page.locator(".messagelist .success").wait_for()
    campaign.refresh_from_db()
    assert campaign.goals == [
        {
            "name": "Purchase",
            "event": "purchase",
            "filter": {"attr": "value", "op": "gte", "value": 20},
            "window_hours": 36,
            "primary": False,
        },
        {
            "name": "Cart",
            "event": "add_to_cart",
            "filter": None,
            "window_hours": 12,
            "primary": True,
        },
    ]
    # The editor loads them back.
    assert page.get_by_label("Goal 2 window (hours)", exact=True).input_value() == "12"
    assert page.get_by_label("Goal 2 is the primary goal", exact=True).is_checked()
