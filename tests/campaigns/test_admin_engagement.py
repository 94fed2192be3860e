"""Engagement in the console, server side: the campaign page's analytics view answers
`campaign_analytics` (the API's numbers), the page stops following engagement once
its window has passed, the tag filter is the API's `?tag=`, the dashboard's rates are
sums of each campaign's analytics in a bounded number of queries, and the composer's
goals go through the API's validator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.admin_page import ENGAGEMENT_FOLLOW
from campaigns.analytics import campaign_analytics
from campaigns.dashboard import engagement_summary, recent_engagement
from campaigns.engagement import record_engagement
from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import run_maybe_finish
from campaigns.selectors import tags_in_use
from core.models import Project
from tests.campaigns.engagement_helpers import clicked, event, opened, sent_delivery, user_of
from tests.campaigns.test_admin import campaign_form, form_errors
from tests.console import url
from tests.factories import CampaignFactory, CampaignRunFactory, ProjectFactory

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GOAL = {"name": "Buy", "event": "purchase", "filter": None, "window_hours": 36, "primary": True}


def engaged(project: Project, *, sent: int, opens: int, buys: int, **fields: Any) -> PushCampaign:
    """A settled one-run campaign: `sent` pushes, the first `opens` opened, the first
    `buys` users buying an hour later (fed through campaigns' listener)."""
    campaign = CampaignFactory.create(
        project=project, status="sent", current_run=1, sent_at=T, goals=[GOAL], **fields
    )
    rows = [sent_delivery(campaign, sent_at=T + timedelta(seconds=i)) for i in range(sent)]
    CampaignRun.objects.filter(campaign=campaign).update(started_at=T, fanout_done=True)
    run_maybe_finish(campaign_id=campaign.pk, run=1)
    record_engagement(
        [opened(d, T + timedelta(minutes=5)) for d in rows[:opens]]
        + [event(user_of(d), "purchase", T + timedelta(hours=1)) for d in rows[:buys]]
    )
    campaign.refresh_from_db()
    return campaign


def as_json(value: Any) -> Any:
    """What JsonResponse makes of a value (datetimes and uuids as strings)."""
    from django.core.serializers.json import DjangoJSONEncoder

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


# --- the campaign page's analytics view ---------------------------------------------


def test_analytics_view_answers_campaign_analytics_for_all_runs_and_one(staff: Client) -> None:
    project = ProjectFactory.create(default_timezone="Europe/Paris")
    campaign = engaged(project, sent=3, opens=2, buys=1, actions=[{"id": "buy", "title": "Buy"}])
    d = sent_delivery(campaign, run=2, sent_at=T + timedelta(days=1))
    CampaignRun.objects.filter(campaign=campaign, number=2).update(
        started_at=T + timedelta(days=1), fanout_done=True
    )
    run_maybe_finish(campaign_id=campaign.pk, run=2)
    record_engagement([clicked(d, T + timedelta(days=1, minutes=1), "buy")])

    every = staff.get(url("campaigns_pushcampaign_analytics", campaign.pk, 0)).json()
    second = staff.get(url("campaigns_pushcampaign_analytics", campaign.pk, 2)).json()

    expected = as_json(campaign_analytics(campaign))
    run2 = as_json(
        campaign_analytics(campaign, CampaignRun.objects.get(campaign=campaign, number=2))
    )
    for answer, analytics in ((every, expected), (second, run2)):
        labels = [p.pop("label") for p in answer["series"]["points"]]
        assert all(label.endswith(" Europe/Paris") for label in labels) and labels
        assert answer.pop("zone") == "Europe/Paris"
        assert answer.pop("updated_at").endswith(" Europe/Paris")
        assert answer == analytics
    assert (
        every["totals"] | {"sent": 4, "opened": 3, "clicked": 1, "converted": 1} == every["totals"]
    )
    assert (second["run"], second["totals"]["sent"], second["clicks_by_action"]) == (
        2,
        1,
        {"buy": 1},
    )


def test_analytics_view_refuses_an_unknown_run_and_other_methods(staff: Client) -> None:
    campaign = engaged(ProjectFactory.create(), sent=1, opens=0, buys=0)

    missing = staff.get(url("campaigns_pushcampaign_analytics", campaign.pk, 7))
    posted = staff.post(url("campaigns_pushcampaign_analytics", campaign.pk, 1))
    unknown = staff.get(
        url("campaigns_pushcampaign_analytics", "00000000-0000-0000-0000-000000000000", 0)
    )

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert (posted.status_code, posted.json()["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("ended_ago", "follow"),
    [
        (timedelta(minutes=1), ENGAGEMENT_FOLLOW - timedelta(minutes=1)),
        (ENGAGEMENT_FOLLOW + timedelta(seconds=1), timedelta(0)),
    ],
)
def test_the_page_follows_engagement_for_a_while_after_the_run(
    staff: Client, ended_ago: timedelta, follow: timedelta
) -> None:
    campaign = engaged(ProjectFactory.create(), sent=1, opens=0, buys=0)
    CampaignRun.objects.filter(campaign=campaign).update(completed_at=timezone.now() - ended_ago)

    body = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()

    assert body["sending"] is False
    assert abs(body["engagement_follow_seconds"] - follow.total_seconds()) <= 2


def test_a_sending_campaign_is_polled_anyway_so_it_follows_nothing_extra(staff: Client) -> None:
    campaign = CampaignFactory.create(status="sending", current_run=1, sent_at=timezone.now())
    CampaignRunFactory.create(campaign=campaign, number=1, status="sending", targeted=3)

    body = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()

    assert (body["sending"], body["engagement_follow_seconds"]) == (True, 0)


# --- the tag filter ---------------------------------------------------------------------


def test_tags_in_use_are_the_newest_campaigns_most_used_tags_sorted(db: None) -> None:
    project = ProjectFactory.create()
    for tags in (["old-only"], ["b", "a"], ["b"], ["c", "b"], ["a"]):
        CampaignFactory.create(project=project, tags=tags)
    other = CampaignFactory.create(tags=["elsewhere"])

    assert tags_in_use(project=project, scan=4) == ["a", "b", "c"]  # the oldest is past the scan
    assert tags_in_use(project=project, scan=4, limit=2) == ["a", "b"]  # b 3, a 2, c 1
    assert "elsewhere" in tags_in_use() and "elsewhere" not in tags_in_use(project=project)
    assert tags_in_use(project=other.project) == ["elsewhere"]


def test_tag_filter_lists_what_the_api_tag_query_finds(staff: Client) -> None:
    project = ProjectFactory.create()
    spring = CampaignFactory.create(project=project, name="Spring", tags=["spring", "promo"])
    CampaignFactory.create(project=project, name="Winter", tags=["winter"])

    listed = staff.get(url("campaigns_pushcampaign_changelist") + "?tag=spring")
    too_long = staff.get(url("campaigns_pushcampaign_changelist") + "?tag=" + "x" * 65)

    assert [c.pk for c in listed.context["cl"].result_list] == [spring.pk]
    assert list(too_long.context["cl"].result_list) == []
    choices = [
        c["display"] for c in listed.context["cl"].filter_specs[1].choices(listed.context["cl"])
    ]
    assert choices == ["All", "promo", "spring", "winter"]


# --- the dashboard ------------------------------------------------------------------------


def test_dashboard_rates_are_sums_of_each_campaigns_analytics(staff: Client) -> None:
    project = ProjectFactory.create()
    loud = engaged(project, sent=4, opens=2, buys=1, name="Loud", tags=["spring"])
    quiet = engaged(project, sent=2, opens=0, buys=2, name="Quiet")
    PushCampaign.objects.filter(pk=quiet.pk).update(sent_at=T + timedelta(hours=1))
    no_goal = engaged(project, sent=4, opens=1, buys=0, name="No goal")
    PushCampaign.objects.filter(pk=no_goal.pk).update(sent_at=T - timedelta(hours=1), goals=[])
    CampaignFactory.create(project=project, name="Draft")  # never sent: not listed

    rows = recent_engagement(project=project)
    summary = engagement_summary(rows)

    assert [r.campaign.name for r in rows] == ["Quiet", "Loud", "No goal"]
    for row in rows:
        assert row.analytics == campaign_analytics(row.campaign)
    assert (summary.sent, summary.opened, summary.clicked, summary.converted) == (10, 3, 0, 3)
    assert summary.open_rate == 3 / 10
    assert summary.conversion_rate == 3 / 6  # over the sends of campaigns with a goal

    page = staff.get("/ops/").content.decode()
    assert 'id="dash-engagement"' in page
    assert f'data-campaign="{loud.pk}"' in page
    assert "50.0%" in page and "?tag=spring" in page


def test_dashboard_engagement_costs_a_fixed_number_of_queries(db: None) -> None:
    project = ProjectFactory.create()
    engaged(project, sent=1, opens=1, buys=1)
    with CaptureQueriesContext(connection) as one:
        recent_engagement(project=project)
    for _ in range(11):
        engaged(project, sent=1, opens=1, buys=1)
    with CaptureQueriesContext(connection) as twelve:
        rows = recent_engagement(project=project)

    assert len(rows) == 10
    per_campaign = len(one.captured_queries) - 1
    assert len(twelve.captured_queries) == 1 + 10 * per_campaign


# --- the composer's goals -----------------------------------------------------------------


def test_composer_saves_goals_through_the_validator(staff: Client) -> None:
    project = ProjectFactory.create()
    goals: list[dict[str, Any]] = [
        {"name": "Buy", "event": "purchase", "filter": {"attr": "value", "op": "gte", "value": 20}},
        {"name": "Cart", "event": "add_to_cart", "window_hours": 12, "primary": False},
    ]

    refused = staff.post(
        url("campaigns_pushcampaign_add"), campaign_form(project, goals=json.dumps(goals))
    )
    goals[0]["primary"] = True
    saved = staff.post(
        url("campaigns_pushcampaign_add"), campaign_form(project, goals=json.dumps(goals))
    )

    assert refused.status_code == 200
    assert form_errors(refused)["goals"] == [
        'Exactly one goal must be primary ("primary": true); got 0. (VALIDATION_ERROR)'
    ]
    assert saved.status_code == 302
    assert PushCampaign.objects.get().goals == [
        {**goals[0], "window_hours": 36},
        {**goals[1], "filter": None},
    ]


def test_composer_marks_the_goal_a_refusal_names(staff: Client) -> None:
    project = ProjectFactory.create()
    bad = [{"name": "Buy", "event": "purchase", "filter": {"attr": "v", "op": "bogus", "value": 1}}]

    response = staff.post(
        url("campaigns_pushcampaign_add"), campaign_form(project, goals=json.dumps(bad))
    )

    assert response.status_code == 200 and not PushCampaign.objects.exists()
    assert form_errors(response)["goals"][0].endswith("(VALIDATION_ERROR)")
    widget = response.context["adminform"].form.fields["goals"].widget
    assert widget.attrs["data-error-path"] == "goals[0].filter"
