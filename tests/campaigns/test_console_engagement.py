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

    def at(minutes: int) -> str:
        return (later + timedelta(minutes=minutes)).isoformat()

    result = events_ingest(
        project=project,
        events=[
            {"event_id": "o0", "name": "push_opened", "delivery_id": rows[0].pk, "occurred_at": at(0)},
            {"event_id": "o0b", "name": "push_opened", "delivery_id": rows[0].pk, "occurred_at": at(1)},
            {"event_id": "o1", "name": "push_opened", "delivery_id": rows[1].pk, "occurred_at": at(2)},
            {"event_id": "c2", "name": "push_clicked", "delivery_id": rows[2].pk, "action_id": "buy", "occurred_at": at(3)},
            {"event_id": "c3", "name": "push_clicked", "delivery_id": rows[3].pk, "action_id": "buy", "occurred_at": at(4)},
            {"event_id": "c3b", "name": "push_clicked", "delivery_id": rows[3].pk, "action_id": "later", "occurred_at": at(5)},
            {"event_id": "p0", "name": "purchase", "external_id": "user-0", "occurred_at": at(10)},
            {"event_id": "p0b", "name": "purchase", "external_id": "user-0", "occurred_at": at(11)},
            {"event_id": "p2", "name": "purchase", "external_id": "user-2", "occurred_at": at(12)},
            {"event_id": "a3", "name": "add_to_cart", "user_id": str(user_of(rows[3]).pk), "occurred_at": at(13)},
        ],
    )  # fmt: skip
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

    # The run picker: run 1 alone has the same numbers here (one run).
    page.select_option('[data-field="engagement-run"]', "1")
    page.wait_for_function(
        "() => document.querySelector('[data-field=\"engagement-unit\"]').textContent"
        ".includes('minute')"
    )
    assert figure(page, "converted", "count") == "2"

