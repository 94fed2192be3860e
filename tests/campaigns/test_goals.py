"""Conversion goals on campaigns: validation (every refusal's code and field), storage,
PATCH, duplication, and the goal filter's rule semantics over event properties."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.models import PushCampaign
from campaigns.services import campaign_duplicate
from segments.rules import evaluate_properties, validate_property_rules, validate_rules
from tests.campaigns.test_validation import base, refused  # noqa: F401 (a fixture)
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

GOAL = {"name": "Bought", "event": "purchase"}


def goal(**kwargs: Any) -> dict[str, Any]:
    return {**GOAL, **kwargs}


def test_a_lone_goal_is_primary_with_the_default_window(api):
    client, project = api
    response = client.post(base(project.id), {"title": "t", "body": "b", "goals": [GOAL]})
    assert response.status_code == 201, response.content
    expected = [
        {"name": "Bought", "event": "purchase", "filter": None, "window_hours": 36, "primary": True}
    ]
    assert response.json()["goals"] == expected
    assert PushCampaign.objects.get().goals == expected


def test_goals_with_a_filter_are_stored_clean_and_patchable(api):
    client, project = api
    campaign = CampaignFactory(project=project)
    goals = [
        goal(name="Cart", event="add_to_cart", window_hours=1, primary=False),
        goal(
            filter={"all": [{"attr": "price", "op": "gte", "value": 10}]},
            window_hours=720,
            primary=True,
        ),
    ]
    response = client.patch(f"{base(project.id)}/{campaign.id}", {"goals": goals})
    assert response.status_code == 200, response.content
    campaign.refresh_from_db()
    assert campaign.goals == [
        {
            "name": "Cart",
            "event": "add_to_cart",
            "filter": None,
            "window_hours": 1,
            "primary": False,
        },
        {
            "name": "Bought",
            "event": "purchase",
            "filter": {"all": [{"attr": "price", "op": "gte", "value": 10}]},
            "window_hours": 720,
            "primary": True,
        },
    ]
    # An empty filter is no filter; an empty list removes the goals.
    client.patch(f"{base(project.id)}/{campaign.id}", {"goals": [goal(filter={})]})
    campaign.refresh_from_db()
    assert campaign.goals[0]["filter"] is None
    client.patch(f"{base(project.id)}/{campaign.id}", {"goals": []})
    campaign.refresh_from_db()
    assert campaign.goals == []


def test_duplicate_copies_the_goals(db):
    campaign = CampaignFactory(goals=[{**GOAL, "filter": None, "window_hours": 5, "primary": True}])
    copy = campaign_duplicate(campaign=campaign)
    assert copy.pk != campaign.pk
    assert copy.goals == campaign.goals


V = "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("goals", "message", "details"),
    [
        (
            {"name": "x"},
            "goals must be a list of {name, event, filter, window_hours}.",
            {"field": "goals"},
        ),
        ([GOAL] * 6, "At most 5 goals; got 6.", {"field": "goals"}),
        (
            [goal(), goal(name="Other")],
            'Exactly one goal must be primary ("primary": true); got 0.',
            {"field": "goals"},
        ),
        (
            [goal(primary=True), goal(name="Other", primary=True)],
            'Exactly one goal must be primary ("primary": true); got 2.',
            {"field": "goals"},
        ),
        (
            [goal(primary=False)],
            'Exactly one goal must be primary ("primary": true); got 0.',
            {"field": "goals"},
        ),
        (
            ["purchase"],
            "goals[0] must be an object {name, event, filter, window_hours}.",
            {"field": "goals[0]"},
        ),
        ([goal(extra=1)], "goals[0] has unknown keys: extra.", {"field": "goals[0]"}),
        ([goal(name=" ")], "goals[0].name must not be blank.", {"field": "goals[0].name"}),
        (
            [goal(name="n" * 101)],
            "goals[0].name must be at most 100 characters.",
            {"field": "goals[0].name"},
        ),
        (
            [goal(event="buy now")],
            "goals[0].event must be an event name (1-64 letters, digits, _ . : -).",
            {"field": "goals[0].event"},
        ),
        (
            [goal(event="e" * 65)],
            "goals[0].event must be an event name (1-64 letters, digits, _ . : -).",
            {"field": "goals[0].event"},
        ),
        (
            [goal(window_hours=0)],
            "goals[0].window_hours must be between 1 and 720.",
            {"field": "goals[0].window_hours"},
        ),
        (
            [goal(window_hours=721)],
            "goals[0].window_hours must be between 1 and 720.",
            {"field": "goals[0].window_hours"},
        ),
        (
            [goal(window_hours="36")],
            "goals[0].window_hours must be an integer.",
            {"field": "goals[0].window_hours"},
        ),
        (
            [goal(primary="yes")],
            "goals[0].primary must be true or false.",
            {"field": "goals[0].primary"},
        ),
        (
            [goal(filter=[])],
            "goals[0].filter must be an object: a group (all/any/not) or a condition.",
            {"field": "goals[0].filter", "path": "goals[0].filter"},
        ),
        (
            [goal(filter={"attr": "price", "op": "equals", "value": 1})],
            "goals[0].filter.op must be one of eq, neq, gt, gte, lt, lte, in, not_in, contains, "
            "not_contains, exists, not_exists, starts_with, ends_with, between, not_between.",
            {"field": "goals[0].filter", "path": "goals[0].filter.op"},
        ),
        (
            [goal(filter={"all": [{"attr": "price", "op": "gt", "value": [1]}]})],
            "goals[0].filter.all[0].value must be a string, number or boolean.",
            {"field": "goals[0].filter", "path": "goals[0].filter.all[0].value"},
        ),
    ],
)
def test_bad_goals_are_refused_and_change_nothing(refused, goals, message, details):  # noqa: F811
    refused({"goals": goals}, V, message, details, both=True)


def test_property_rules_treat_every_name_as_a_plain_property():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    # `platform` is a token attribute for users (only eq/in ... and ios/android/web) ...
    with pytest.raises(Exception, match="must be one of ios, android, web"):
        validate_rules({"attr": "platform", "op": "eq", "value": "tv"})
    # ... and a property like any other over an event.
    rules = validate_property_rules({"attr": "platform", "op": "starts_with", "value": "t"})
    assert evaluate_properties(rules, {"platform": "tv"}, now=now)
    assert not evaluate_properties(rules, {"platform": "ios"}, now=now)
    # app_version orders as a version for users only; over properties it is a string.
    rules = validate_property_rules({"attr": "app_version", "op": "gt", "value": "abc"})
    assert evaluate_properties(rules, {"app_version": "b"}, now=now)


@pytest.mark.parametrize(
    ("rules", "properties", "expected"),
    [
        ({"attr": "sku", "op": "eq", "value": "A1"}, {"sku": "A1"}, True),
        ({"attr": "sku", "op": "eq", "value": "A1"}, {"sku": "a1"}, False),
        ({"attr": "sku", "op": "neq", "value": "A1"}, {}, True),  # missing: complements hold
        ({"attr": "price", "op": "between", "value": [10, 20]}, {"price": 20}, True),
        ({"attr": "price", "op": "gt", "value": 10}, {"price": "11"}, False),  # typed
        ({"attr": "paid", "op": "eq", "value": True}, {"paid": True}, True),
        ({"attr": "coupon", "op": "exists"}, {"coupon": None}, False),
        (
            {
                "any": [
                    {"attr": "sku", "op": "in", "value": ["A", "B"]},
                    {"not": {"attr": "x", "op": "exists"}},
                ]
            },
            {"sku": "C", "x": 1},
            False,
        ),
    ],
)
def test_goal_filters_evaluate_like_segment_rules(rules, properties, expected):
    clean = validate_property_rules(rules)
    assert evaluate_properties(clean, properties, now=datetime(2026, 1, 1, tzinfo=UTC)) is expected
