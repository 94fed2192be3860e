"""Arbitrary JSON posted to the events API never yields a 500, and a 400 stores nothing.

Three kinds of bodies (hypothesis): random JSON objects, bodies shaped like a batch
whose events are random JSON, and batches of events shaped like real ones with one
field replaced by random JSON. The answer is 200 with counts that add up to the
batch, or a 4xx in the error envelope with the events table unchanged.
"""

from __future__ import annotations

import json
import string
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.models import ApiKey
from segments.events import EVENT_FIELDS
from segments.models import Event
from tests.segments.helpers import client_for, make_project, make_user

pytestmark = pytest.mark.django_db

UPPER_SNAKE = set(string.ascii_uppercase + "_")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
plausible: dict[str, st.SearchStrategy[Any]] = {
    # A few recurring ids, so batches repeat each other and themselves.
    "event_id": st.sampled_from(["a", "b", "c"]) | st.text(min_size=1, max_size=70),
    "external_id": st.sampled_from(["u-1", "u-2", "nobody", ""]) | st.text(max_size=10),
    "user_id": st.uuids().map(str) | st.text(max_size=40),
    "name": st.sampled_from(["purchase", "push_opened", "push_clicked", "a.b:c-d_e", "x y"]),
    "properties": st.dictionaries(st.text(max_size=12), json_scalars, max_size=5),
    "occurred_at": st.integers(min_value=-31 * 86400, max_value=600).map(
        lambda seconds: (timezone.now() + timedelta(seconds=seconds)).isoformat()
    )
    | st.datetimes().map(lambda d: d.isoformat() + "Z")
    | st.text(max_size=30),
    "delivery_id": st.integers(min_value=-5, max_value=2**64),
    "action_id": st.text(max_size=70),
}
fields = sorted(EVENT_FIELDS)
required = st.fixed_dictionaries(
    {
        "event_id": plausible["event_id"],
        "name": plausible["name"],
        "external_id": st.sampled_from(["u-1", "u-2"]),
    }
)
optional = st.lists(st.sampled_from(fields), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: plausible[name] for name in names})
)
# Mostly events that could be stored, some with a field or two off.
shaped_event = st.tuples(required, optional).map(lambda t: {**t[0], **t[1]}) | optional
one_random_field = st.tuples(shaped_event, st.sampled_from(fields), json_values).map(
    lambda t: {**t[0], t[1]: t[2]}
)
good_event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["a", "b", "c"]) | st.uuids().map(str),
        "name": st.sampled_from(["purchase", "signup", "a.b:c-d_e"]),
        "external_id": st.sampled_from(["u-1", "u-2"]),
    },
    optional={
        "properties": st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), json_scalars),
        "occurred_at": plausible["occurred_at"],
    },
)
events = st.lists(
    st.one_of(good_event, good_event, shaped_event, one_random_field, json_values), max_size=8
)
batches = st.fixed_dictionaries({"events": events})
bodies = (
    batches
    | batches
    | batches
    | st.fixed_dictionaries({"events": json_values})
    | st.dictionaries(st.sampled_from(["events", "event", "extra"]), json_values, max_size=3)
)
fuzz_settings = hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def target() -> Any:
    project = make_project("fuzz")
    make_user(project, "u-1")
    make_user(project, "u-2")
    client = client_for(project, scope=ApiKey.Scope.CLIENT)
    return client, f"/v1/projects/{project.id}/events"


@fuzz_settings
@given(body=bodies)
def test_random_bodies_never_500_and_a_refusal_stores_nothing(target: Any, body: Any) -> None:
    client, url = target
    before = list(Event.objects.order_by("id").values())

    response = client.post(url, json.dumps(body).encode(), content_type="application/json")

    answer = response.json()
    event(f"{response.status_code} {answer.get('error', {}).get('code', '')}")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        batch = body["events"]
        event(f"stored {min(answer['accepted'], 1)}+, duplicates {min(answer['duplicates'], 1)}+")
        assert answer["accepted"] + answer["duplicates"] + len(answer["rejected"]) == len(batch)
        assert Event.objects.count() == len(before) + answer["accepted"]
        for rejection in answer["rejected"]:
            event(f"rejected {rejection['code']}")
        indexes = [r["index"] for r in answer["rejected"]]
        assert indexes == sorted(set(indexes))
        assert all(set(r["code"]) <= UPPER_SNAKE for r in answer["rejected"])
    else:
        error = answer["error"]
        assert set(error) == {"code", "message", "details"}
        assert set(error["code"]) <= UPPER_SNAKE
        assert list(Event.objects.order_by("id").values()) == before
