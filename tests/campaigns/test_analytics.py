"""campaign_analytics and its API on a hand-computed campaign; the `?tag=` list filter.

The fixture sends two runs (rows settled by the real run finisher, which counts the
sent/failed breakdown) and feeds opens, clicks and goal events through the real
listener; every expected number below is counted by hand from that story.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaigns.analytics import campaign_analytics
from campaigns.engagement import record_engagement
from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import run_maybe_finish
from delivery.models import PushDelivery
from tests.campaigns.engagement_helpers import clicked, event, opened, sent_delivery, user_of
from tests.factories import CampaignFactory, ProjectFactory, api_client

pytestmark = pytest.mark.django_db

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
GOALS = [
    {"name": "Buy", "event": "purchase", "filter": None, "window_hours": 36, "primary": True},
    {"name": "Cart", "event": "add_to_cart", "filter": None, "window_hours": 36, "primary": False},
]


def zero() -> dict[str, int]:
    return {"sent": 0, "opened": 0, "clicked": 0, "converted": 0}


def counts(sent: int = 0, opened: int = 0, clicked: int = 0, converted: int = 0) -> dict[str, int]:
    return {"sent": sent, "opened": opened, "clicked": clicked, "converted": converted}


@pytest.fixture
def story(api) -> dict[str, Any]:
    """Run 1 at T: d1 apns/ios sent, d2 fcm/android sent, d3 fcm/web failed.
    Run 2 at T + 1 day: d4 apns/ios to d1's user.
    d1 opened at T+5m; d2 clicked "buy" at T+4h; d1's user buys at T+1h (run 1) and at
    T+1d+1h (run 2); d2's user adds to cart at T+2h (run 1, second goal)."""
    _client, project = api
    campaign = CampaignFactory(
        project=project, goals=GOALS, actions=[{"id": "buy", "title": "Buy"}], sent_at=T + DAY
    )
    d1 = sent_delivery(campaign, sent_at=T + timedelta(seconds=10))
    d2 = sent_delivery(
        campaign, sent_at=T + timedelta(seconds=70), provider="fcm", platform="android"
    )
    d3 = sent_delivery(
        campaign, sent_at=T, provider="fcm", platform="web", status=PushDelivery.Status.FAILED
    )
    PushDelivery.objects.filter(pk=d3.pk).update(claimed_at=T + timedelta(seconds=80))
    d4 = sent_delivery(campaign, run=2, sent_at=T + DAY + timedelta(seconds=5), user=user_of(d1))
    CampaignRun.objects.filter(campaign=campaign, number=1).update(started_at=T, fanout_done=True)
    CampaignRun.objects.filter(campaign=campaign, number=2).update(
        started_at=T + DAY, fanout_done=True
    )
    run_maybe_finish(campaign_id=campaign.pk, run=1)
    run_maybe_finish(campaign_id=campaign.pk, run=2)
    user1, user2 = user_of(d1), user_of(d2)
    record_engagement(
        [opened(d1, T + timedelta(minutes=5)), event(user1, "purchase", T + timedelta(hours=1))]
    )
    record_engagement(
        [
            clicked(d2, T + timedelta(hours=4), "buy"),
            event(user2, "add_to_cart", T + timedelta(hours=2)),
        ]
    )
    record_engagement([event(user1, "purchase", T + DAY + timedelta(hours=1))])
    assert d4.app_user_id == user1.pk
    campaign.refresh_from_db()
    return {"campaign": campaign, "project": project}


def run(campaign: PushCampaign, number: int) -> CampaignRun:
    return CampaignRun.objects.get(campaign=campaign, number=number)


RUN_1 = {
    "run": 1,
    "silent": False,
    "totals": {
        "targeted": 3,
        "sent": 2,
        "failed": 1,
        "invalid_tokens": 0,
        "opened": 2,
        "clicked": 1,
        "converted": 1,
    },
    "rates": {"open_rate": 1.0, "click_rate": 0.5, "conversion_rate": 0.5},
    "clicks_by_action": {"buy": 1},
    "goals": [
        {
            "index": 0,
            "name": "Buy",
            "event": "purchase",
            "primary": True,
            "window_hours": 36,
            "converted": 1,
            "rate": 0.5,
        },
        {
            "index": 1,
            "name": "Cart",
            "event": "add_to_cart",
            "primary": False,
            "window_hours": 36,
            "converted": 1,
            "rate": 0.5,
        },
    ],
    "by_provider": {
        "apns": counts(1, 1, 0, 1),
        "fcm": counts(1, 1, 1, 0),
        "webpush": counts(0, 0, 0, 0),
    },
    "by_platform": {"ios": counts(1, 1, 0, 1), "android": counts(1, 1, 1, 0), "web": zero()},
    "series": {
        "resolution": "minute",
        "minute_until": T + timedelta(hours=3),
        "points": [
            {"t": T, **counts(sent=1)},
            {"t": T + timedelta(minutes=1), **counts(sent=1)},
            {"t": T + timedelta(minutes=5), **counts(opened=1)},
            {"t": T + timedelta(hours=1), **counts(converted=1)},
            # Past the first three hours: hourly (the click, which is also an open).
            {"t": T + timedelta(hours=4), **counts(opened=1, clicked=1)},
        ],
    },
}


def test_one_run(story):
    campaign = story["campaign"]
    assert campaign_analytics(campaign, run(campaign, 1)) == {"campaign_id": campaign.pk, **RUN_1}


def test_all_runs_sum_and_plot_hourly(story):
    campaign = story["campaign"]
    assert campaign_analytics(campaign) == {
        "campaign_id": campaign.pk,
        "run": None,
        "silent": False,
        "totals": {
            "targeted": 4,
            "sent": 3,
            "failed": 1,
            "invalid_tokens": 0,
            "opened": 2,
            "clicked": 1,
            "converted": 2,
        },
        "rates": {"open_rate": 0.666667, "click_rate": 0.333333, "conversion_rate": 0.666667},
        "clicks_by_action": {"buy": 1},
        "goals": [
            {
                "index": 0,
                "name": "Buy",
                "event": "purchase",
                "primary": True,
                "window_hours": 36,
                "converted": 2,
                "rate": 0.666667,
            },
            {
                "index": 1,
                "name": "Cart",
                "event": "add_to_cart",
                "primary": False,
                "window_hours": 36,
                "converted": 1,
                "rate": 0.333333,
            },
        ],
        "by_provider": {
            "apns": counts(2, 1, 0, 2),
            "fcm": counts(1, 1, 1, 0),
            "webpush": counts(0, 0, 0, 0),
        },
        "by_platform": {"ios": counts(2, 1, 0, 2), "android": counts(1, 1, 1, 0), "web": zero()},
        "series": {
            "resolution": "hour",
            "minute_until": None,
            "points": [
                {"t": T, **counts(sent=2, opened=1)},
                {"t": T + timedelta(hours=1), **counts(converted=1)},
                {"t": T + timedelta(hours=4), **counts(opened=1, clicked=1)},
                {"t": T + DAY, **counts(sent=1)},
                {"t": T + DAY + timedelta(hours=1), **counts(converted=1)},
            ],
        },
    }


def test_a_silent_campaign_has_no_open_rate(story):
    campaign = story["campaign"]
    campaign.silent = True  # the field comes with the sendpath part
    result = campaign_analytics(campaign)
    assert result["silent"] is True
    assert result["rates"] == {
        "open_rate": None,
        "click_rate": 0.333333,
        "conversion_rate": 0.666667,
    }


def test_a_campaign_never_sent_has_zeros(db):
    campaign = CampaignFactory()
    result = campaign_analytics(campaign)
    assert result["totals"] == dict.fromkeys(
        ("targeted", "sent", "failed", "invalid_tokens", "opened", "clicked", "converted"), 0
    )
    assert result["rates"] == {"open_rate": 0.0, "click_rate": 0.0, "conversion_rate": 0.0}
    assert result["goals"] == []
    assert result["series"] == {"resolution": "hour", "minute_until": None, "points": []}


def test_settling_again_replaces_the_sent_breakdown(story):
    campaign = story["campaign"]
    run_maybe_finish(campaign_id=campaign.pk, run=1)
    assert campaign_analytics(campaign, run(campaign, 1))["by_provider"]["fcm"]["sent"] == 1


# --- API -------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_json(expected: dict[str, Any]) -> dict[str, Any]:
    series = expected["series"]
    return {
        **expected,
        "series": {
            **series,
            "minute_until": iso(series["minute_until"]),
            "points": [{**p, "t": iso(p["t"])} for p in series["points"]],
        },
    }


def url(project_id: Any, campaign_id: Any, suffix: str = "analytics") -> str:
    return f"/admin/projects/{project_id}/push/campaigns/{campaign_id}/{suffix}"


def test_api_answers_the_run_and_the_campaign(api, story):
    client, project = api
    campaign = story["campaign"]
    response = client.get(url(project.id, campaign.id, "runs/1/analytics"))
    assert response.status_code == 200, response.content
    assert response.json() == as_json({"campaign_id": str(campaign.pk), **RUN_1})
    whole = client.get(url(project.id, campaign.id))
    assert whole.status_code == 200
    assert whole.json() == as_json(
        {**campaign_analytics(campaign), "campaign_id": str(campaign.pk)}
    )
    alias = client.get(f"/admin/push/{campaign.id}/runs/1/analytics/")
    assert alias.json() == response.json()


@pytest.mark.parametrize("number", ["3", "0", "-1", "x", "99999999999"])
def test_an_unknown_run_is_404(api, story, number):
    client, project = api
    response = client.get(url(project.id, story["campaign"].id, f"runs/{number}/analytics"))
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "NOT_FOUND", "message": "Run not found.", "details": {}}
    }


def test_another_projects_campaign_is_404_and_no_key_is_401(api, story):
    client, project = api
    other = CampaignFactory(project=ProjectFactory())
    for path in ("analytics", "runs/1/analytics"):
        response = client.get(url(project.id, other.id, path))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        anonymous = api_client().get(url(project.id, story["campaign"].id, path))
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
    bad = client.get(url(project.id, "not-a-uuid"))
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_CAMPAIGN_ID"


# --- ?tag= -----------------------------------------------------------------------------


def test_the_list_filters_by_tag(api):
    client, project = api
    spring = CampaignFactory(project=project, tags=["promo", "spring"])
    promo = CampaignFactory(project=project, tags=["promo"])
    CampaignFactory(project=project, tags=["Promo", "promotion"])
    CampaignFactory(project=project, tags=[])
    CampaignFactory(project=ProjectFactory(), tags=["promo"])
    base = f"/admin/projects/{project.id}/push/campaigns"

    def ids(query: str) -> list[str]:
        response = client.get(f"{base}?{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids("tag=promo") == [str(promo.id), str(spring.id)]
    assert ids("tag=spring") == [str(spring.id)]
    assert ids("tag=promo&limit=1") == [str(promo.id)]
    assert ids("tag=prom") == []
    assert ids("tag=promo&status=scheduled") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [("tag=", "tag must not be blank."), ("tag=" + "x" * 65, "tag must be at most 64 characters.")],
)
def test_a_bad_tag_is_400(api, query, message):
    client, project = api
    response = client.get(f"/admin/projects/{project.id}/push/campaigns?{query}")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "VALIDATION_ERROR", "message": message, "details": {"field": "tag"}}
    }
