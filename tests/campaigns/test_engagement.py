"""The engagement listener (campaigns/engagement.py), called the way ingestion calls it:
with IngestedEvent batches built from real delivery rows and app users.

Opens and clicks count once per delivery (and per action), conversions once per
(run, goal, user) inside the goal's window after the push was sent (both edges
inclusive), and every count lands in its per-minute bucket.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from campaigns.engagement import record_engagement
from campaigns.models import (
    Conversion,
    DeliveryClick,
    DeliveryEngagement,
    EngagementBucket,
    PushCampaign,
)
from delivery.models import PushDelivery
from segments.events import event_listeners
from tests.campaigns.engagement_helpers import clicked, event, opened, sent_delivery, user_of
from tests.factories import AppUserFactory, CampaignFactory, ProjectFactory, PushDeliveryFactory

pytestmark = pytest.mark.django_db

T = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
MINUTE = T.replace(second=0)


def buckets(campaign: PushCampaign, metric: str) -> dict[tuple[Any, ...], int]:
    return {
        (b.run, b.minute, b.key, b.provider, b.platform): b.count
        for b in EngagementBucket.objects.filter(campaign=campaign, metric=metric)
    }


def goal_campaign(project: Any = None, *goals: dict[str, Any], **kwargs: Any) -> PushCampaign:
    full = [
        {"filter": None, "window_hours": 36, "primary": i == 0, **g} for i, g in enumerate(goals)
    ]
    return CampaignFactory(
        project=project or ProjectFactory(), goals=full, sent_at=kwargs.pop("sent_at", T), **kwargs
    )


def test_campaigns_registers_the_listener():
    assert record_engagement in event_listeners()


# --- opens and clicks ----------------------------------------------------------------


def test_a_delivery_opens_once_however_often_it_is_reported():
    campaign = CampaignFactory()
    delivery = sent_delivery(campaign, sent_at=T, provider="fcm", platform="android")
    record_engagement([opened(delivery, T + timedelta(minutes=2)), opened(delivery, T)])
    record_engagement([opened(delivery, T + timedelta(hours=1))])

    assert buckets(campaign, "opened") == {(1, MINUTE, "", "fcm", "android"): 1}
    row = DeliveryEngagement.objects.get()
    assert (row.delivery_id, row.run, row.opened_at, row.clicked) == (delivery.pk, 1, T, False)


def test_a_click_is_an_open_and_counts_once_per_delivery_and_once_per_action():
    campaign = CampaignFactory(actions=[{"id": "buy", "title": "Buy"}])
    delivery = sent_delivery(campaign, sent_at=T)
    later = T + timedelta(minutes=5)
    record_engagement([clicked(delivery, later, "buy"), clicked(delivery, later, "buy")])
    record_engagement([opened(delivery, later), clicked(delivery, later, "more")])
    record_engagement([clicked(delivery, later, "more")])

    at = later.replace(second=0)
    assert buckets(campaign, "opened") == {(1, at, "", "apns", "ios"): 1}
    assert buckets(campaign, "clicked") == {(1, at, "", "apns", "ios"): 1}
    assert buckets(campaign, "action") == {
        (1, at, "buy", "apns", "ios"): 1,
        (1, at, "more", "apns", "ios"): 1,
    }
    assert DeliveryClick.objects.count() == 2


def test_opens_count_per_delivery_run_and_minute():
    campaign = CampaignFactory()
    first = sent_delivery(campaign, sent_at=T)
    second = sent_delivery(campaign, sent_at=T, provider="fcm", platform="web")
    again = sent_delivery(campaign, run=2, sent_at=T, user=user_of(first))
    record_engagement(
        [
            opened(first, T),
            opened(second, T + timedelta(seconds=29)),
            opened(again, T + timedelta(minutes=1)),
        ]
    )
    assert buckets(campaign, "opened") == {
        (1, MINUTE, "", "apns", "ios"): 1,
        (1, MINUTE, "", "fcm", "web"): 1,
        (2, MINUTE + timedelta(minutes=1), "", "apns", "ios"): 1,
    }


def test_test_pushes_and_plain_events_count_nothing():
    user = AppUserFactory()
    test_push = PushDeliveryFactory(
        campaign=None, token__app_user=user, token__project=user.project
    )
    record_engagement([opened(test_push, T), event(user, "purchase", T)])
    assert EngagementBucket.objects.count() == 0
    assert DeliveryEngagement.objects.count() == 0


# --- conversions ---------------------------------------------------------------------


def conversions(campaign: PushCampaign) -> set[tuple[int, int, Any]]:
    return set(
        Conversion.objects.filter(campaign=campaign).values_list("run", "goal_index", "app_user_id")
    )


@pytest.mark.parametrize(
    ("after", "converts"),
    [
        (timedelta(0), True),  # the same instant as the send: inclusive
        (timedelta(hours=36), True),  # the window's last instant: inclusive
        (timedelta(hours=36, microseconds=1), False),
        (-timedelta(microseconds=1), False),  # before the push was sent
    ],
)
def test_the_window_edges(after, converts):
    campaign = goal_campaign(None, {"name": "Buy", "event": "purchase"})
    delivery = sent_delivery(campaign, sent_at=T)
    user = user_of(delivery)
    with time_machine.travel(T + timedelta(days=3), tick=False):
        record_engagement([event(user, "purchase", T + after)])
    assert conversions(campaign) == ({(1, 0, user.pk)} if converts else set())
    expected = {(1, (T + after).replace(second=0, microsecond=0), "0", "apns", "ios"): 1}
    assert buckets(campaign, "converted") == (expected if converts else {})


def test_each_user_converts_once_per_goal_per_run_and_every_run_in_the_window_counts():
    campaign = goal_campaign(None, {"name": "Buy", "event": "purchase", "window_hours": 24})
    user = AppUserFactory(project=campaign.project)
    sent_delivery(campaign, run=1, sent_at=T, user=user)
    sent_delivery(campaign, run=2, sent_at=T + timedelta(hours=10), user=user)
    sent_delivery(campaign, run=3, sent_at=T + timedelta(hours=30), user=user)  # after the event
    first = T + timedelta(hours=20)
    record_engagement([event(user, "purchase", first + timedelta(minutes=3))])
    record_engagement([event(user, "purchase", first), event(user, "purchase", first)])

    assert conversions(campaign) == {(1, 0, user.pk), (2, 0, user.pk)}
    # Counted at the first event ingested that converted the user.
    at = (first + timedelta(minutes=3)).replace(second=0)
    assert buckets(campaign, "converted") == {
        (1, at, "0", "apns", "ios"): 1,
        (2, at, "0", "apns", "ios"): 1,
    }


def test_within_a_batch_the_earliest_event_converts_under_the_latest_push_before_it():
    campaign = goal_campaign(None, {"name": "Buy", "event": "purchase"})
    user = AppUserFactory(project=campaign.project)
    sent_delivery(campaign, sent_at=T, user=user, provider="apns", platform="ios")
    android = sent_delivery(
        campaign, sent_at=T + timedelta(minutes=1), user=user, provider="fcm", platform="android"
    )
    record_engagement(
        [
            event(user, "purchase", T + timedelta(hours=2)),
            event(user, "purchase", T + timedelta(hours=1)),
        ]
    )
    row = Conversion.objects.get()
    assert (row.delivery_id, row.occurred_at) == (android.pk, T + timedelta(hours=1))
    at = (T + timedelta(hours=1)).replace(second=0)
    assert buckets(campaign, "converted") == {(1, at, "0", "fcm", "android"): 1}


def test_users_without_a_sent_push_do_not_convert():
    campaign = goal_campaign(None, {"name": "Buy", "event": "purchase"})
    failed = sent_delivery(campaign, sent_at=T, status=PushDelivery.Status.FAILED)
    stranger = AppUserFactory(project=campaign.project)
    record_engagement(
        [event(user_of(failed), "purchase", T), event(stranger, "purchase", T + timedelta(hours=1))]
    )
    assert conversions(campaign) == set()


def test_the_goal_filter_must_match_the_event_properties():
    campaign = goal_campaign(
        None,
        {
            "name": "Big",
            "event": "purchase",
            "filter": {"attr": "price", "op": "gte", "value": 100},
        },
        {"name": "Any", "event": "purchase"},
        {"name": "Cart", "event": "add_to_cart"},
    )
    small = user_of(sent_delivery(campaign, sent_at=T))
    big = user_of(sent_delivery(campaign, sent_at=T))
    record_engagement(
        [
            event(small, "purchase", T, properties={"price": 99.5}),
            event(big, "purchase", T, properties={"price": 100}),
        ]
    )
    assert conversions(campaign) == {(1, 0, big.pk), (1, 1, small.pk), (1, 1, big.pk)}


def test_a_stored_goal_that_no_longer_validates_is_skipped_not_a_failed_batch(caplog):
    """Goals edited outside the API (here a filter with an unknown operator and one
    without its event) count nothing; the campaign's valid goal and every other
    campaign's still count, and ingestion does not fail."""
    campaign = goal_campaign(
        None,
        {"name": "Broken", "event": "purchase", "filter": {"attr": "price", "op": "nope"}},
        {"name": "Any", "event": "purchase"},
    )
    PushCampaign.objects.filter(pk=campaign.pk).update(
        goals=[*campaign.goals, {"name": "No event", "window_hours": 36}]
    )
    user = user_of(sent_delivery(campaign, sent_at=T))

    record_engagement([event(user, "purchase", T, properties={"price": 1})])

    assert conversions(campaign) == {(1, 1, user.pk)}
    warnings = [r.getMessage() for r in caplog.records if r.name == "herald.engagement"]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"campaign {campaign.pk}: ignoring goal 0: ")
    assert warnings[1].startswith(f"campaign {campaign.pk}: ignoring goal 2: ")


def test_other_projects_and_other_campaigns_are_not_credited():
    campaign = goal_campaign(None, {"name": "Buy", "event": "purchase"})
    no_goal = CampaignFactory(project=campaign.project, sent_at=T)
    user = user_of(sent_delivery(campaign, sent_at=T))
    sent_delivery(no_goal, sent_at=T, user=user)
    other_project = goal_campaign(None, {"name": "Buy", "event": "purchase"})
    outsider = user_of(sent_delivery(other_project, sent_at=T))
    record_engagement([event(user, "purchase", T + timedelta(minutes=1))])
    assert conversions(campaign) == {(1, 0, user.pk)}
    assert Conversion.objects.count() == 1
    record_engagement([event(outsider, "signup", T + timedelta(minutes=1))])
    assert Conversion.objects.count() == 1


def test_a_push_opened_event_can_be_a_goal_and_counts_as_an_open_too():
    campaign = goal_campaign(None, {"name": "Opened", "event": "push_opened", "window_hours": 1})
    delivery = sent_delivery(campaign, sent_at=T)
    record_engagement([opened(delivery, T + timedelta(minutes=10))])
    assert conversions(campaign) == {(1, 0, delivery.app_user_id)}
    assert sum(buckets(campaign, "opened").values()) == 1


def test_action_ids_with_quotes_commas_and_backslashes_round_trip():
    campaign = CampaignFactory()
    delivery = sent_delivery(campaign, sent_at=T)
    odd = 'a,"b\\c} {d'
    record_engagement([clicked(delivery, T, odd), clicked(delivery, T, "NULL")])
    assert set(DeliveryClick.objects.values_list("action_id", flat=True)) == {odd, "NULL"}
    assert buckets(campaign, "action") == {
        (1, MINUTE, odd, "apns", "ios"): 1,
        (1, MINUTE, "NULL", "apns", "ios"): 1,
    }
