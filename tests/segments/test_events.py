"""App events: ingestion (segments/events.py) and POST /v1/projects/{id}/events.

Idempotency by event_id, refusal one event at a time, isolation between projects,
the time rules, what the listeners are handed, and the envelope errors that store
nothing. docs/api.md, "Events".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.models import ApiKey, Project
from delivery.models import PushDelivery
from segments.events import (
    MAX_BATCH,
    DeliveryRef,
    IngestedEvent,
    events_ingest,
    events_purge,
    register_event_listener,
    unregister_event_listener,
)
from segments.models import AppUser, Event
from tests.factories import (
    CampaignFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    api_client,
    create_api_key,
)
from tests.segments.helpers import client_for, error, make_project, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SENT = NOW - timedelta(hours=1)


def url(project: Project) -> str:
    return f"/v1/projects/{project.id}/events"


class Recorder:
    """A listener that keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[IngestedEvent]] = []

    def __call__(self, events: Sequence[IngestedEvent]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[IngestedEvent]:
        return [event for batch in self.batches for event in batch]


@pytest.fixture
def listener() -> Iterator[Recorder]:
    recorder = Recorder()
    register_event_listener(recorder)
    yield recorder
    unregister_event_listener(recorder)


@pytest.fixture
def project() -> Project:
    return make_project("events")


@pytest.fixture
def user(project: Project) -> AppUser:
    return make_user(project, "u-1")


def delivery_for(
    project: Project,
    user: AppUser | None,
    *,
    sent_at: datetime | None = SENT,
    status: str = "sent",
    provider: str = "fcm",
    platform: str = "android",
    run: int = 1,
    campaign: Any = "new",
) -> PushDelivery:
    token = PushTokenFactory(project=project, app_user=user, provider=provider, platform=platform)
    return PushDeliveryFactory(
        campaign=CampaignFactory(project=project) if campaign == "new" else campaign,
        run=run,
        token=token,
        app_user=user,
        status=status,
        sent_at=sent_at,
    )


def ev(event_id: str = "e-1", **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", "purchase")
    if "user_id" not in fields and "delivery_id" not in fields:
        fields.setdefault("external_id", "u-1")
    return {"event_id": event_id, **fields}


def ingest(project: Project, events: Any, now: datetime = NOW) -> Any:
    return events_ingest(project=project, events=events, now=now)


def codes(result: Any) -> list[tuple[int, str | None, str]]:
    return [(r.index, r.event_id, r.code) for r in result.rejected]


# ------------------------------------------------------------------ idempotency


def test_the_same_batch_twice_is_stored_and_seen_once(
    project: Project, user: AppUser, listener: Recorder
) -> None:
    batch = [ev("a"), ev("b", properties={"plan": "pro", "amount": 9.5}), ev("c")]

    first = ingest(project, batch)
    second = ingest(project, batch)

    assert (first.accepted, first.duplicates, first.rejected) == (3, 0, [])
    assert (second.accepted, second.duplicates, second.rejected) == (0, 3, [])
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["a", "b", "c"]
    assert len(listener.batches) == 1
    assert [e.name for e in listener.events] == ["purchase"] * 3
    stored = Event.objects.get(event_id="b")
    assert stored.properties == {"plan": "pro", "amount": 9.5}
    assert (stored.app_user_id, stored.occurred_at, stored.received_at) == (user.id, NOW, NOW)
    assert [e.id for e in listener.events] == list(
        Event.objects.order_by("event_id").values_list("id", flat=True)
    )


def test_a_repeat_within_one_batch_counts_once(project: Project, user: AppUser) -> None:
    result = ingest(project, [ev("a"), ev("a", name="other"), ev("b"), ev("a")])

    assert (result.accepted, result.duplicates, result.rejected) == (2, 2, [])
    assert Event.objects.get(event_id="a").name == "purchase"  # the first one


def test_a_bad_event_does_not_take_its_event_id_from_a_later_good_one(
    project: Project, user: AppUser
) -> None:
    result = ingest(project, [ev("a", name="bad name"), ev("a")])

    assert (result.accepted, result.duplicates) == (1, 0)
    assert codes(result) == [(0, "a", "INVALID_NAME")]


def test_event_ids_belong_to_their_project(project: Project, user: AppUser) -> None:
    other = make_project("other")
    make_user(other, "u-1")

    assert ingest(project, [ev("same")]).accepted == 1
    assert ingest(other, [ev("same")]).accepted == 1
    assert Event.objects.filter(event_id="same").count() == 2


# ----------------------------------------------------------- refusal one by one

BAD_EVENTS: list[tuple[Any, str]] = [
    ("not an object", "INVALID_EVENT"),
    ({"event_id": "x", "name": "n", "external_id": "u-1", "colour": "red"}, "INVALID_EVENT"),
    ({"name": "purchase", "external_id": "u-1"}, "MISSING_EVENT_ID"),
    (ev(""), "INVALID_EVENT_ID"),
    (ev("x" * 65), "INVALID_EVENT_ID"),
    (ev(17), "INVALID_EVENT_ID"),  # type: ignore[arg-type]
    (ev("tab\there"), "INVALID_EVENT_ID"),
    ({"event_id": "x", "external_id": "u-1"}, "MISSING_NAME"),
    (ev(name="has space"), "INVALID_NAME"),
    (ev(name="x" * 65), "INVALID_NAME"),
    (ev(name=5), "INVALID_NAME"),
    ({"event_id": "x", "name": "purchase"}, "MISSING_USER"),
    (ev(external_id="u-1", user_id=str(uuid.uuid4())), "INVALID_USER"),
    (ev(external_id=5), "INVALID_EXTERNAL_ID"),
    (ev(external_id=" "), "INVALID_EXTERNAL_ID"),
    (ev(user_id="not-a-uuid"), "INVALID_USER_ID"),
    (ev(external_id="nobody"), "UNKNOWN_USER"),
    (ev(user_id=str(uuid.uuid4())), "UNKNOWN_USER"),
    (ev(properties=[1]), "INVALID_PROPERTIES"),
    (ev(properties={"nested": {"a": 1}}), "INVALID_PROPERTIES"),
    (ev(properties={"list": ["a"]}), "INVALID_PROPERTIES"),
    (ev(properties={"bad key": 1}), "INVALID_PROPERTIES"),
    (ev(properties={"big": 2**60}), "INVALID_PROPERTIES"),
    (ev(properties={"long": "x" * 1025}), "INVALID_PROPERTIES"),
    (ev(properties={f"k{i}": i for i in range(51)}), "INVALID_PROPERTIES"),
    (ev(properties={f"k{i}": "x" * 100 for i in range(45)}), "INVALID_PROPERTIES"),
    (ev(occurred_at="yesterday"), "INVALID_OCCURRED_AT"),
    (ev(occurred_at="2026-12-01T11:00:00"), "INVALID_OCCURRED_AT"),  # no offset
    (ev(occurred_at=1764590400), "INVALID_OCCURRED_AT"),
    (ev(occurred_at="9999-12-31T23:59:00-23:59"), "INVALID_OCCURRED_AT"),
    (ev(occurred_at="2026-12-01T12:05:01Z"), "OCCURRED_AT_IN_FUTURE"),
    (ev(occurred_at="2026-11-01T11:59:59Z"), "OCCURRED_AT_TOO_OLD"),
    (ev(delivery_id="7"), "INVALID_DELIVERY_ID"),
    (ev(delivery_id=0), "INVALID_DELIVERY_ID"),
    (ev(delivery_id=True), "INVALID_DELIVERY_ID"),
    (ev(delivery_id=2**63), "INVALID_DELIVERY_ID"),
    (ev(name="push_opened"), "MISSING_DELIVERY_ID"),
    (ev(name="push_clicked", action_id="buy"), "MISSING_DELIVERY_ID"),
    (ev(action_id="buy"), "INVALID_ACTION_ID"),
    (ev(delivery_id=2**62), "UNKNOWN_DELIVERY"),
]


@pytest.mark.parametrize(("bad", "code"), BAD_EVENTS)
def test_each_rule_refuses_only_its_event(
    project: Project, user: AppUser, listener: Recorder, bad: Any, code: str
) -> None:
    result = ingest(project, [ev("good-1"), bad, ev("good-2")])

    event_id = bad.get("event_id") if isinstance(bad, dict) else None
    usable = event_id if isinstance(event_id, str) and 0 < len(event_id) <= 64 else None
    assert codes(result) == [(1, usable, code)]
    assert result.rejected[0].message
    assert (result.accepted, result.duplicates) == (2, 0)
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["good-1", "good-2"]
    assert [e.id for e in listener.events] == sorted(Event.objects.values_list("id", flat=True))


def test_the_time_limits_themselves_are_accepted(project: Project, user: AppUser) -> None:
    result = ingest(
        project,
        [
            ev("future", occurred_at="2026-12-01T12:05:00Z"),
            ev("old", occurred_at="2026-11-01T12:00:00Z"),
            ev("offset", occurred_at="2026-12-01T13:30:00+02:00"),
        ],
    )

    assert (result.accepted, result.rejected) == (3, [])
    assert Event.objects.get(event_id="offset").occurred_at == datetime(
        2026, 12, 1, 11, 30, tzinfo=UTC
    )


def test_property_dates_are_stored_as_the_rule_engine_compares_them(
    project: Project, user: AppUser
) -> None:
    ingest(project, [ev(properties={"day": "2026-11-30", "at": "2026-11-30T10:00:00+01:00"})])

    assert Event.objects.get().properties == {
        "day": "2026-11-30",
        "at": "2026-11-30T09:00:00.000Z",
    }


def test_several_refusals_are_listed_in_batch_order(project: Project, user: AppUser) -> None:
    result = ingest(
        project,
        [
            ev("a", external_id="nobody"),  # refused at resolution
            ev("b", name="bad name"),  # refused at cleaning
            ev("c"),
            5,
        ],
    )

    assert codes(result) == [
        (0, "a", "UNKNOWN_USER"),
        (1, "b", "INVALID_NAME"),
        (3, None, "INVALID_EVENT"),
    ]
    assert result.accepted == 1


# ------------------------------------------------------------------- deliveries


def test_opens_and_clicks_reach_the_listener_with_their_delivery(
    project: Project, user: AppUser, listener: Recorder
) -> None:
    delivery = delivery_for(project, user, run=3, provider="fcm", platform="web")
    opened_at = SENT + timedelta(minutes=2)

    push = {"delivery_id": delivery.pk}
    result = ingest(
        project,
        [
            ev("open", name="push_opened", occurred_at=opened_at.isoformat(), **push),
            ev("click", name="push_clicked", action_id="buy", external_id="u-1", **push),
            ev("goal", name="purchase", user_id=str(user.id), **push),
            ev("plain", name="purchase"),
        ],
    )

    assert (result.accepted, result.rejected) == (4, [])
    ref = DeliveryRef(
        id=delivery.pk,
        campaign_id=delivery.campaign_id,
        run=3,
        provider="fcm",
        platform="web",
        sent_at=SENT,
    )
    by_id = {e.id: e for e in listener.events}
    stored = {row.event_id: row for row in Event.objects.all()}
    assert by_id[stored["open"].pk] == IngestedEvent(
        id=stored["open"].pk,
        project_id=project.id,
        app_user_id=user.id,  # taken from the delivery
        name="push_opened",
        properties={},
        occurred_at=opened_at,
        action_id="",
        delivery=ref,
    )
    assert by_id[stored["click"].pk].action_id == "buy"
    assert by_id[stored["click"].pk].delivery == ref
    assert by_id[stored["goal"].pk].delivery == ref
    assert by_id[stored["plain"].pk].delivery is None
    assert (stored["click"].delivery_id, stored["click"].action_id) == (delivery.pk, "buy")
    assert stored["plain"].delivery_id is None


def test_a_test_push_has_no_campaign(project: Project, user: AppUser, listener: Recorder) -> None:
    delivery = delivery_for(project, user, campaign=None, run=0, provider="apns", platform="ios")

    ingest(project, [ev("open", name="push_opened", delivery_id=delivery.pk)])

    (event,) = listener.events
    assert event.delivery == DeliveryRef(
        id=delivery.pk, campaign_id=None, run=0, provider="apns", platform="ios", sent_at=SENT
    )


def test_delivery_rules(project: Project, user: AppUser) -> None:
    other_user = make_user(project, "u-2")
    sent = delivery_for(project, user)
    queued = delivery_for(project, user, sent_at=None, status="queued")
    failed = delivery_for(project, user, status="failed")
    unknown = delivery_for(project, user, status="unknown")
    anonymous = delivery_for(project, None)

    result = ingest(
        project,
        [
            ev("mismatch", name="push_opened", delivery_id=sent.pk, external_id="u-2"),
            ev("queued", name="push_opened", delivery_id=queued.pk),
            ev("failed", name="push_opened", delivery_id=failed.pk),
            ev("custom-queued", name="purchase", delivery_id=queued.pk),
            ev("early", name="push_opened", delivery_id=sent.pk,
               occurred_at=(SENT - timedelta(seconds=61)).isoformat()),
            ev("anonymous", name="push_opened", delivery_id=anonymous.pk),
            ev("unknown", name="push_opened", delivery_id=unknown.pk),
            ev("at-send", name="push_opened", delivery_id=sent.pk, occurred_at=SENT.isoformat()),
            ev("named", name="push_opened", delivery_id=anonymous.pk, user_id=str(other_user.id)),
            ev("skewed", name="push_opened", delivery_id=sent.pk,
               occurred_at=(SENT - timedelta(seconds=60)).isoformat()),
        ],
    )  # fmt: skip

    assert codes(result) == [
        (0, "mismatch", "DELIVERY_USER_MISMATCH"),
        (1, "queued", "DELIVERY_NOT_SENT"),
        (2, "failed", "DELIVERY_NOT_SENT"),
        (3, "custom-queued", "DELIVERY_NOT_SENT"),
        (4, "early", "OCCURRED_BEFORE_DELIVERY"),
        (5, "anonymous", "MISSING_USER"),
        (8, "named", "DELIVERY_USER_MISMATCH"),
    ]
    assert sorted(Event.objects.values_list("event_id", flat=True)) == [
        "at-send",
        "skewed",
        "unknown",
    ]
    # A device clock up to 60 s behind: stored as happening when the push was sent.
    assert Event.objects.get(event_id="skewed").occurred_at == SENT


def test_one_query_per_kind_of_reference(
    project: Project, user: AppUser, django_assert_max_num_queries: Any
) -> None:
    users = [make_user(project, f"bulk-{n}") for n in range(20)]
    deliveries = [delivery_for(project, u) for u in users[:10]]
    batch = [
        *(ev(f"x{n}", external_id=u.external_id) for n, u in enumerate(users)),
        *(ev(f"y{n}", user_id=str(u.id)) for n, u in enumerate(users)),
        *(ev(f"z{n}", name="push_opened", delivery_id=d.pk) for n, d in enumerate(deliveries)),
    ]

    # savepoint, users by external id, users by id, deliveries, insert, release; then
    # campaigns' listener: opened deliveries, campaigns with goals, rollup buckets.
    with django_assert_max_num_queries(9):
        result = ingest(project, batch)

    assert (result.accepted, result.rejected) == (50, [])


# ------------------------------------------------------------------- isolation


def test_another_projects_user_and_push_read_as_missing(project: Project, user: AppUser) -> None:
    other = make_project("other")
    stranger = make_user(other, "stranger")
    their_push = delivery_for(other, stranger)

    result = ingest(
        project,
        [
            ev("a", external_id="stranger"),
            ev("b", user_id=str(stranger.id)),
            ev("c", name="push_opened", delivery_id=their_push.pk),
            ev("d", name="push_opened", delivery_id=their_push.pk, external_id="u-1"),
        ],
    )

    assert codes(result) == [
        (0, "a", "UNKNOWN_USER"),
        (1, "b", "UNKNOWN_USER"),
        (2, "c", "UNKNOWN_DELIVERY"),
        (3, "d", "UNKNOWN_DELIVERY"),
    ]
    assert not Event.objects.exists()
    # The messages are those of ids that exist nowhere.
    missing = ingest(project, [ev("e", user_id=str(uuid.uuid4())), ev("f", delivery_id=2**40)])
    assert [r.message for r in missing.rejected] == [r.message for r in result.rejected[1:3]]


# ------------------------------------------------------------------- listeners


def test_a_listener_that_raises_rolls_the_batch_back(project: Project, user: AppUser) -> None:
    def broken(events: Sequence[IngestedEvent]) -> None:
        raise RuntimeError("rollup table missing")

    register_event_listener(broken)
    try:
        client = client_for(project, scope=ApiKey.Scope.CLIENT)
        response = client.post(url(project), {"events": [ev("a")]})
    finally:
        unregister_event_listener(broken)

    assert error(response) == (500, "INGEST_FAILED", {})
    assert not Event.objects.exists()
    assert ingest(project, [ev("a")]).accepted == 1  # nothing of the failed try remains


def test_no_listener_call_when_nothing_is_new(
    project: Project, user: AppUser, listener: Recorder
) -> None:
    ingest(project, [ev("a")])
    ingest(project, [ev("a"), ev("b", name="bad name")])

    assert len(listener.batches) == 1


# ------------------------------------------------------------------------ API


@pytest.mark.parametrize("scope", [ApiKey.Scope.CLIENT, ApiKey.Scope.ADMIN])
def test_client_and_admin_keys_may_report_events(
    project: Project, user: AppUser, scope: str
) -> None:
    client = client_for(project, scope=scope)

    response = client.post(url(project), {"events": [ev("a"), ev("b", name="bad name")]})

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 1,
                "event_id": "b",
                "code": "INVALID_NAME",
                "message": "name must be 1-64 characters of A-Z a-z 0-9 _ . : -.",
            }
        ],
    }
    assert client.post(url(project), {"events": [ev("a")]}).json() == {
        "accepted": 0,
        "duplicates": 1,
        "rejected": [],
    }


def test_staff_sessions_may_report_events(staff: Any, project: Project, user: AppUser) -> None:
    response = staff.post(url(project), {"events": [ev("a")]}, content_type="application/json")

    assert (response.status_code, response.json()["accepted"]) == (200, 1)


def test_missing_revoked_and_foreign_keys_are_refused(project: Project, user: AppUser) -> None:
    _key, revoked = create_api_key(project, scope=ApiKey.Scope.CLIENT, revoked=True)
    other = make_project("other")
    body = {"events": [ev("a")]}

    assert error(api_client().post(url(project), body))[:2] == (401, "UNAUTHENTICATED")
    assert error(api_client(revoked).post(url(project), body))[:2] == (401, "UNAUTHENTICATED")
    foreign = client_for(other, scope=ApiKey.Scope.CLIENT)
    assert error(foreign.post(url(project), body))[:2] == (404, "NOT_FOUND")
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "MISSING_EVENTS"),
        ({"events": None}, "MISSING_EVENTS"),
        ({"events": {"event_id": "a"}}, "INVALID_EVENTS"),
        ({"events": "a"}, "INVALID_EVENTS"),
        ({"events": []}, "INVALID_EVENTS"),
        ({"events": [ev(f"e{n}") for n in range(MAX_BATCH + 1)]}, "TOO_MANY_EVENTS"),
        ({"events": [ev("a")], "extra": 1}, "VALIDATION_ERROR"),
        ([ev("a")], "INVALID_BODY"),
    ],
)
def test_a_wrong_envelope_is_400_and_stores_nothing(
    project: Project, user: AppUser, listener: Recorder, body: Any, code: str
) -> None:
    client = client_for(project, scope=ApiKey.Scope.CLIENT)

    response = client.post(url(project), body)

    assert error(response)[:2] == (400, code)
    assert not Event.objects.exists()
    assert listener.batches == []


def test_a_full_batch_is_accepted(project: Project, user: AppUser) -> None:
    client = client_for(project, scope=ApiKey.Scope.CLIENT)

    response = client.post(url(project), {"events": [ev(f"e{n}") for n in range(MAX_BATCH)]})

    assert response.json() == {"accepted": MAX_BATCH, "duplicates": 0, "rejected": []}
    assert Event.objects.count() == MAX_BATCH


def test_occurred_at_defaults_to_the_receive_time(project: Project, user: AppUser) -> None:
    before = timezone.now()
    client_for(project).post(url(project), {"events": [ev("a")]})

    stored = Event.objects.get()
    assert before <= stored.occurred_at == stored.received_at <= timezone.now()


# ------------------------------------------------------------------- retention


def test_the_purge_deletes_what_is_past_retention(project: Project, user: AppUser) -> None:
    ingest(project, [ev("old", occurred_at="2026-11-02T11:00:00Z"), ev("new")])
    later = NOW + timedelta(days=60)

    assert events_purge(now=later, retention_days=90) == 0
    assert events_purge(now=later, retention_days=0) == 0  # 0 keeps everything
    assert events_purge(now=later, retention_days=89) == 1
    assert list(Event.objects.values_list("event_id", flat=True)) == ["new"]
    assert events_purge(now=later, retention_days=89) == 0


def test_deleting_a_user_keeps_its_events_and_a_project_takes_them(
    project: Project, user: AppUser
) -> None:
    other_user = make_user(project, "u-2")
    ingest(project, [ev("a"), ev("b", external_id="u-2")])

    other_user.delete()  # no scan of events: their rows wait for the retention purge
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["a", "b"]

    project.delete()
    assert not Event.objects.exists()
