"""The engagement loop through its doors: events posted with a client key to
`POST /v1/projects/{id}/events` reach campaigns' listener, and
`GET .../campaigns/{id}/analytics` (admin key) answers the counts a human expects.

test_engagement.py covers attribution rule by rule with the listener called
directly; this file checks the two halves are wired: ingestion hands exactly the new
events to the listener (a retried batch counts once), refused events count nothing,
and another project's campaign and deliveries stay out of reach.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import CampaignRun
from campaigns.runs import run_maybe_finish
from core.models import ApiKey
from delivery.models import PushDelivery
from tests.campaigns.engagement_helpers import sent_delivery, user_of
from tests.factories import CampaignFactory, ProjectFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db

GOALS = [
    {
        "name": "Big purchase",
        "event": "purchase",
        "filter": {"attr": "value", "op": "gte", "value": 10},
        "window_hours": 36,
        "primary": True,
    }
]


def iso(at: Any) -> str:
    return at.isoformat()


@pytest.fixture
def story() -> dict[str, Any]:
    """A campaign whose one run sent to three users 10 minutes ago (one delivery
    failed); keys of both kinds; a second project with its own sent delivery."""
    project = ProjectFactory()
    sent = timezone.now() - timedelta(minutes=10)
    campaign = CampaignFactory(
        project=project,
        sent_at=sent,  # the run's start, as run_begin writes it
        goals=GOALS,
        actions=[{"id": "buy", "title": "Buy"}, {"id": "later", "title": "Later"}],
    )
    ok = [
        sent_delivery(campaign, sent_at=sent),
        sent_delivery(campaign, sent_at=sent, provider="fcm", platform="android"),
        sent_delivery(campaign, sent_at=sent, provider="fcm", platform="android"),
    ]
    failed = sent_delivery(
        campaign, sent_at=sent, provider="fcm", platform="web", status=PushDelivery.Status.FAILED
    )
    CampaignRun.objects.filter(campaign=campaign, number=1).update(
        started_at=sent - timedelta(seconds=5), fanout_done=True
    )
    run_maybe_finish(campaign_id=campaign.pk, run=1)
    other_campaign = CampaignFactory(goals=GOALS)
    foreign = sent_delivery(other_campaign, sent_at=sent)
    _, client_key = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    _, admin_key = create_api_key(project)
    return {
        "project": project,
        "campaign": campaign,
        "ok": ok,
        "failed": failed,
        "foreign": foreign,
        "sent": sent,
        "client": api_client(client_key),
        "admin": api_client(admin_key),
    }


def post_events(story: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    response = story["client"].post(
        f"/v1/projects/{story['project'].pk}/events", {"events": events}
    )
    assert response.status_code == 200, response.content
    return response.json()


def analytics(story: dict[str, Any]) -> dict[str, Any]:
    campaign = story["campaign"]
    response = story["admin"].get(
        f"/admin/projects/{story['project'].pk}/push/campaigns/{campaign.pk}/analytics"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_events_posted_by_an_app_become_the_campaigns_analytics(story: dict[str, Any]) -> None:
    d1, d2, d3 = story["ok"]
    after = story["sent"] + timedelta(minutes=2)
    batch = [
        # d1: opened, clicked "buy", bought for 25 (converts).
        {"event_id": "e1", "name": "push_opened", "delivery_id": d1.pk, "occurred_at": iso(after)},
        {
            "event_id": "e2",
            "name": "push_clicked",
            "delivery_id": d1.pk,
            "action_id": "buy",
            "occurred_at": iso(after),
        },
        {
            "event_id": "e3",
            "name": "purchase",
            "external_id": user_of(d1).external_id,
            "properties": {"value": 25},
            "occurred_at": iso(after + timedelta(minutes=1)),
        },
        # d2: opened twice (one open), bought twice (one conversion per user and goal).
        {"event_id": "e4", "name": "push_opened", "delivery_id": d2.pk, "occurred_at": iso(after)},
        {"event_id": "e5", "name": "push_opened", "delivery_id": d2.pk, "occurred_at": iso(after)},
        {"event_id": "e6", "name": "purchase", "delivery_id": d2.pk, "properties": {"value": 12}},
        {"event_id": "e7", "name": "purchase", "delivery_id": d2.pk, "properties": {"value": 30}},
        # d3: a small purchase does not match the goal's filter.
        {
            "event_id": "e8",
            "name": "purchase",
            "user_id": str(user_of(d3).pk),
            "properties": {"value": 5},
        },
        # Refused: the failed delivery was never sent; another project's delivery.
        {"event_id": "e9", "name": "push_opened", "delivery_id": story["failed"].pk},
        {"event_id": "e10", "name": "push_opened", "delivery_id": story["foreign"].pk},
    ]

    first = post_events(story, batch)
    again = post_events(story, batch)  # the app retries the whole batch

    assert (first["accepted"], first["duplicates"]) == (8, 0)
    assert [(r["index"], r["event_id"]) for r in first["rejected"]] == [(8, "e9"), (9, "e10")]
    assert (again["accepted"], again["duplicates"]) == (0, 8)
    result = analytics(story)
    assert result["totals"] == {
        "targeted": result["totals"]["targeted"],
        "sent": 3,
        "failed": 1,
        "invalid_tokens": 0,
        "opened": 2,
        "clicked": 1,
        "converted": 2,
    }
    assert result["clicks_by_action"] == {"buy": 1, "later": 0}
    assert [(g["name"], g["converted"]) for g in result["goals"]] == [("Big purchase", 2)]
    assert result["rates"] == {
        "open_rate": pytest.approx(2 / 3),
        "click_rate": pytest.approx(1 / 3),
        "conversion_rate": pytest.approx(2 / 3),
    }
    assert result["by_provider"]["apns"] == {"sent": 1, "opened": 1, "clicked": 1, "converted": 1}
    assert result["by_provider"]["fcm"] == {"sent": 2, "opened": 1, "clicked": 0, "converted": 1}
    points = result["series"]["points"]
    assert sum(p["opened"] for p in points) == 2
    assert sum(p["sent"] for p in points) == 3


def test_another_projects_key_reaches_neither_the_events_nor_the_analytics(
    story: dict[str, Any],
) -> None:
    d1 = story["ok"][0]
    stranger = ProjectFactory()
    _, stranger_key = create_api_key(stranger, scope=ApiKey.Scope.CLIENT)
    client = api_client(stranger_key)

    on_theirs = client.post(
        f"/v1/projects/{stranger.pk}/events",
        {"events": [{"event_id": "x", "name": "push_opened", "delivery_id": d1.pk}]},
    )
    on_ours = client.post(
        f"/v1/projects/{story['project'].pk}/events",
        {"events": [{"event_id": "x", "name": "push_opened", "delivery_id": d1.pk}]},
    )

    assert on_theirs.status_code == 200
    assert on_theirs.json()["accepted"] == 0
    assert on_theirs.json()["rejected"][0]["code"] == "UNKNOWN_DELIVERY"
    assert on_ours.status_code == 404
    assert analytics(story)["totals"]["opened"] == 0
