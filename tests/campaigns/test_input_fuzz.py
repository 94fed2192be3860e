"""Unknown or malformed input never yields a 500 or a partial write.

Wrong JSON types for every field, huge strings, exotic path ids, and two
properties over random JSON objects (hypothesis): create answers 201 or a 4xx,
PATCH 200 or a 4xx, and a 4xx leaves every row exactly as it was.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.models import PushCampaign
from campaigns.validation import READ_ONLY_FIELDS, WRITABLE_FIELDS
from tests.factories import CampaignFactory, ProjectFactory, SegmentFactory

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
UPPER_SNAKE = set(string.ascii_uppercase + "_")


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def post_raw(client, url: str, payload: Any, *, patch: bool = False):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    send = client.patch if patch else client.post
    return send(url, body, content_type="application/json")


def assert_envelope(response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"code", "message", "details"}
    assert err["code"] and set(err["code"]) <= UPPER_SNAKE
    assert isinstance(err["message"], str)
    assert err["message"]
    assert isinstance(err["details"], dict)
    assert "Traceback" not in response.content.decode()
    return err


# --- wrong JSON types for every field ---------------------------------------------------

TEXT = [5, 1.5, True, [], {}, ["x"], {"x": "y"}]
INTEGER = ["5", 1.5, True, False, [], {}, [5], {"n": 5}]
OBJECT = [[], ["a"], "x", 5, 1.5, True]
LIST = [{}, {"a": 1}, "ios", 5, True, None]
DATETIME = [5, 1.5, True, [], {}, ["2099-01-01T00:00:00Z"]]
WRONG_TYPES: dict[str, tuple[list[Any], str]] = {
    "title": ([*TEXT, None], "title"),
    "body": ([*TEXT, None], "body"),
    "name": ([*TEXT, None], "name"),
    "data": ([*OBJECT, None], "data"),
    "segment_id": ([5, 1.5, True, [], {}, ["x"]], "segment_id"),
    "segment_name": ([5, 1.5, True, [], {}, None, "", " "], "segment_name"),
    "scheduled_at": (DATETIME, "scheduled_at"),
    "localizations": ([*OBJECT, None], "localizations"),
    "image_url": ([*TEXT, None], "image_url"),
    "icon": ([*TEXT, None], "icon"),
    "web_badge": ([*TEXT, None], "web_badge"),
    "url": ([*TEXT, None], "url"),
    "actions": (LIST, "actions"),
    "sound": ([*TEXT, None], "sound"),
    "badge": (INTEGER, "badge"),
    "vibrate": ([{}, {"a": 1}, "200", 5, True, None, ["5"], [1.5], [True]], "vibrate"),
    "require_interaction": ([1, 0, "true", "false", None, [], {}], "require_interaction"),
    "renotify": ([1, 0, "true", "false", None, [], {}], "renotify"),
    "tag": ([*TEXT, None], "tag"),
    "collapse_key": ([*TEXT, None], "collapse_key"),
    "priority": ([*TEXT, None, "HIGH"], "priority"),
    "ttl_seconds": (INTEGER, "ttl_seconds"),
    "platforms": (LIST, "platforms"),
    "targeting": ([*OBJECT, None], "targeting"),
    "tags": (LIST, "tags"),
    "goals": (LIST, "goals"),
    "recurrence": ([[], ["cron"], "0 9 * * *", 5, True], "recurrence"),
    "end_at": (DATETIME, "end_at"),
    "quiet_hours": ([[], "22:00-08:00", 5, True], "quiet_hours"),
    "deliver_in_user_timezone": ([1, 0, "true", "false", None, [], {}], "deliver_in_user_timezone"),
    "local_time_missed": ([5, True, [], {}, None, "NEXT_DAY"], "local_time_missed"),
    "throttle_per_minute": (INTEGER, "throttle_per_minute"),
    "silent": ([1, 0, "true", "false", None, [], {}], "silent"),
}
CODES = {
    "title": {"MISSING_TITLE", "VALIDATION_ERROR"},
    "body": {"MISSING_BODY", "VALIDATION_ERROR"},
    "data": {"INVALID_DATA"},
    "segment_id": {"INVALID_SEGMENT_ID"},
    "scheduled_at": {"INVALID_SCHEDULED_AT"},
}


def test_every_writable_field_has_wrong_types_listed():
    assert set(WRONG_TYPES) == set(WRITABLE_FIELDS)


@pytest.mark.parametrize("field", sorted(WRONG_TYPES))
@pytest.mark.parametrize("patch", [False, True], ids=["create", "patch"])
def test_wrong_json_types_are_400_naming_the_field(api, db_state, broker, field, patch):
    client, project = api
    campaign = CampaignFactory(project=project)
    url = f"{base(project.id)}/{campaign.id}" if patch else base(project.id)
    values, detail_prefix = WRONG_TYPES[field]
    before = db_state()

    for value in values:
        payload = {field: value} if patch else {"title": "t", "body": "b", field: value}
        response = post_raw(client, url, payload, patch=patch)
        assert response.status_code == 400, (field, value, response.content)
        err = assert_envelope(response)
        assert err["code"] in CODES.get(field, {"VALIDATION_ERROR"}), (field, value, err)
        assert err["details"]["field"].startswith(detail_prefix), (field, value, err)
    assert db_state() == before
    assert broker.drain() == []


# --- huge strings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"title": "t" * MB, "body": "b"}, 413, "REQUEST_TOO_LARGE"),
        ({"title": "t", "body": "b" * (MB + 1)}, 413, "REQUEST_TOO_LARGE"),
        ({"title": "t", "body": "b", "data": {"blob": "x" * MB}}, 413, "REQUEST_TOO_LARGE"),
        ({"title": "t", "body": "b", "tags": ["x"] * (MB // 4)}, 413, "REQUEST_TOO_LARGE"),
        ({"title": "t" * (MB - 100), "body": "b"}, 400, "VALIDATION_ERROR"),
        ({"title": "t", "body": "b" * (MB - 100)}, 400, "VALIDATION_ERROR"),
        ({"title": "t", "body": "b", "data": {"blob": "x" * (MB - 100)}}, 400, "PAYLOAD_TOO_LARGE"),
        ({"title": "t", "body": "b", "name": "n" * (MB - 100)}, 400, "VALIDATION_ERROR"),
        ({"title": "t", "body": "b", "tags": ["x"] * 100_000}, 400, "VALIDATION_ERROR"),
        ({"title": "t", "body": "b", "x" * (MB - 100): 1}, 400, "VALIDATION_ERROR"),
    ],
    ids=[
        "title-1MB",
        "body-over-1MB",
        "data-1MB",
        "tags-1MB",
        "title-just-under",
        "body-just-under",
        "data-just-under",
        "name-just-under",
        "tags-100k",
        "key-just-under",
    ],
)
def test_huge_input_is_refused_whole(api, db_state, payload, status, code):
    client, project = api
    before = db_state()

    response = post_raw(client, base(project.id), payload)

    assert response.status_code == status
    assert assert_envelope(response)["code"] == code
    assert db_state() == before


# --- exotic path ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "campaign_id",
    [
        "%00",
        "%E2%98%83",
        "%ED%A0%80",
        "..%5C..%5Cetc",
        "1" * 5000,
        "00000000-0000-0000-0000-000000000000%00",
        "%FF",
        "'%20OR%201=1--",
    ],
)
def test_exotic_campaign_ids_are_invalid_campaign_id(api, db_state, campaign_id):
    client, project = api
    CampaignFactory(project=project)
    before = db_state()

    for method, suffix in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/send")):
        response = getattr(client, method)(f"{base(project.id)}/{campaign_id}{suffix}", {"a": 1})
        assert response.status_code == 400, (method, response.content)
        assert assert_envelope(response)["code"] == "INVALID_CAMPAIGN_ID"
    assert db_state() == before


@pytest.mark.parametrize("project_id", ["%00", "%ED%A0%80", "1" * 5000, "..", "%FF"])
def test_exotic_project_ids_are_not_found(api, db_state, project_id):
    client, _project = api
    before = db_state()

    for method in ("get", "post"):
        response = getattr(client, method)(base(project_id), {"title": "t", "body": "b"})
        assert response.status_code == 404
        assert assert_envelope(response)["code"] == "NOT_FOUND"
    assert db_state() == before


# --- properties over random JSON ------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
times = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.sampled_from(
    ["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "2099-01-01", "now"]
)
# Values shaped like each field's valid input, so many examples get past the type checks.
plausible: dict[str, st.SearchStrategy[Any]] = {
    "title": st.text(max_size=60),
    "body": st.text(max_size=200),
    "name": st.text(max_size=30),
    "data": st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    "segment_id": st.none() | st.uuids().map(str),
    "segment_name": st.sampled_from(["Nobody", "Segment 0", ""]),
    "scheduled_at": st.none() | times,
    "localizations": st.dictionaries(
        st.sampled_from(["fr", "de", "pt-BR", "pt_br", "x", "fr\n"]),
        st.fixed_dictionaries(
            {},
            optional={
                "title": st.text(max_size=20),
                "body": st.text(max_size=20),
                "image_url": st.sampled_from(["", "https://cdn.example.com/fr.png", "x"]),
                "actions": st.dictionaries(
                    st.sampled_from(["a", "b", ""]), st.text(max_size=10), max_size=4
                ),
            },
        ),
        max_size=3,
    ),
    "image_url": st.sampled_from(["", "https://cdn.example.com/a.png", "ftp://x", "x"]),
    "icon": st.sampled_from(["", "https://cdn.example.com/i.png", "data:x", "x"]),
    "web_badge": st.sampled_from(["", "https://cdn.example.com/b.png", "ftp://x"]),
    "url": st.sampled_from(["", "app://open", "https://example.com", "nope"]),
    "actions": st.lists(
        st.fixed_dictionaries(
            {
                "id": st.sampled_from(["a", "b", ""]) | st.text(max_size=5),
                "title": st.text(max_size=10),
            },
            optional={
                "url": st.sampled_from(["https://e.com", "x"]),
                "icon": st.sampled_from(["https://e.com/i.png", "x", ""]),
            },
        ),
        max_size=4,
    ),
    "sound": st.text(max_size=10),
    "badge": st.none() | st.integers(-2, 100_001),
    "vibrate": st.lists(st.integers(-1, 10_001), max_size=11),
    "require_interaction": st.booleans(),
    "renotify": st.booleans(),
    "tag": st.text(max_size=66),
    "collapse_key": st.text(max_size=70),
    "priority": st.sampled_from(["high", "normal", "low"]),
    "ttl_seconds": st.none() | st.integers(-1, 3_000_000),
    "platforms": st.lists(st.sampled_from(["ios", "android", "web", "IOS", "tv"]), max_size=4),
    "targeting": st.fixed_dictionaries(
        {},
        optional={
            "countries": st.fixed_dictionaries(
                {}, optional={"include": st.lists(st.text(max_size=3), max_size=3)}
            ),
            "subscribed_age": st.fixed_dictionaries(
                {}, optional={"from": st.integers(-1, 50), "to": st.integers(-1, 50)}
            ),
        },
    ),
    "tags": st.lists(st.text(max_size=66), max_size=22),
    "goals": st.lists(
        st.fixed_dictionaries(
            {"name": st.text(max_size=5), "event": st.sampled_from(["buy", "a b", ""])},
            optional={
                "window_hours": st.integers(0, 800),
                "primary": st.booleans(),
                "filter": st.none()
                | st.sampled_from(
                    [{"attr": "sku", "op": "eq", "value": "x"}, {"attr": "sku", "op": "is"}, []]
                ),
            },
        ),
        max_size=6,
    ),
    "recurrence": st.none()
    | st.sampled_from(
        [
            {"cron": "0 9 * * *"},
            {"cron": "0 9 * * *", "timezone": "Europe/Paris"},
            {"every_seconds": 60},
            {"every_days": 2, "at": "07:30", "timezone": "America/New_York"},
            {"cron": "bad"},
            {"every_days": 0},
        ]
    ),
    "end_at": st.none() | times,
    "quiet_hours": st.none()
    | st.fixed_dictionaries(
        {"start": st.sampled_from(["22:00", "08:00", "25:00"]), "end": st.just("08:00")},
        optional={"action": st.sampled_from(["defer", "skip", "drop"])},
    ),
    "deliver_in_user_timezone": st.booleans(),
    "local_time_missed": st.sampled_from(["next_day", "skip", "never"]),
    "throttle_per_minute": st.none() | st.integers(-1, 2_000_000),
    "silent": st.booleans(),
}
random_keys = st.sampled_from([*WRITABLE_FIELDS, *READ_ONLY_FIELDS]) | st.text(max_size=10)
# Three kinds of objects: shaped like a campaign (many get created), shaped like one with
# one field of random JSON, and random keys with random values.
OPTIONAL = [f for f in WRITABLE_FIELDS if f not in ("title", "body")]
shaped = st.tuples(
    st.text(min_size=1, max_size=60) | plausible["title"],
    st.text(min_size=1, max_size=200) | plausible["body"],
    st.lists(st.sampled_from(OPTIONAL), max_size=4, unique=True).flatmap(
        lambda fields: st.fixed_dictionaries({f: plausible[f] for f in fields})
    ),
).map(lambda t: {"title": t[0], "body": t[1], **t[2]})
one_random_field = st.tuples(shaped, st.sampled_from(WRITABLE_FIELDS), json_values).map(
    lambda t: {**t[0], t[1]: t[2]}
)
campaign_objects = shaped | one_random_field | st.dictionaries(random_keys, json_values, max_size=6)
fuzz_settings = hypothesis_settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@fuzz_settings
@given(payload=campaign_objects)
def test_random_objects_posted_to_create_never_500_nor_partly_written(api, db_state, payload):
    client, project = api
    before = db_state()

    response = post_raw(client, base(project.id), payload)
    err = response.json().get("error", {})
    event(f"{response.status_code} {err.get('code', '')} {err.get('details', {}).get('field')}")

    assert response.status_code in (201, 400, 413), response.content
    if response.status_code == 201:
        body = response.json()
        assert body["status"] in ("draft", "scheduled")
        assert PushCampaign.objects.count() == len(before["campaigns"]) + 1
        assert PushCampaign.objects.filter(pk=body["id"], project=project).exists()
    else:
        assert_envelope(response)
        assert db_state() == before


@pytest.fixture
def patch_target(api):
    campaign = CampaignFactory(project=api.project)
    return api.client, f"{base(api.project.id)}/{campaign.id}"


@hypothesis_settings(fuzz_settings, max_examples=50)
@given(payload=campaign_objects)
def test_random_objects_patched_never_500_nor_partly_written(patch_target, db_state, payload):
    client, url = patch_target
    before = db_state()

    response = post_raw(client, url, payload, patch=True)

    assert response.status_code in (200, 400, 413), response.content
    if response.status_code == 200:
        assert response.json()["status"] in ("draft", "scheduled")
    else:
        assert_envelope(response)
        assert db_state() == before


@hypothesis_settings(fuzz_settings, max_examples=50)
@given(raw=st.binary(max_size=200))
def test_random_bytes_are_never_a_500(api, db_state, raw):
    client, project = api
    before = db_state()

    response = post_raw(client, base(project.id), raw)

    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        assert_envelope(response)
        assert db_state() == before


def test_the_foreign_project_segment_is_never_attached_by_fuzzing(api):
    """A sanity anchor for the properties: a real foreign segment id is refused."""
    client, project = api
    foreign = SegmentFactory(project=ProjectFactory())

    response = post_raw(
        client, base(project.id), {"title": "t", "body": "b", "segment_id": str(foreign.id)}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_SEGMENT_ID"
    assert PushCampaign.objects.count() == 0
