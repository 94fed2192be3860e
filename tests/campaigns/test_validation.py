"""Every 400 of the campaign table (DESIGN.md), through the API, on create and PATCH.

Each refused request must leave the database exactly as it was: no campaign row,
no changed field, nothing enqueued.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from campaigns.models import PushCampaign
from delivery import payloads
from tests.factories import CampaignFactory, ProjectFactory, SegmentFactory

pytestmark = pytest.mark.django_db

FUTURE = "2099-01-01T00:00:00Z"


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


@pytest.fixture
def refused(api, db_state, broker):
    """POST or PATCH a body; assert the exact error and that nothing changed."""
    client, project = api
    existing = CampaignFactory(project=project, title="Keep", body="Me")

    def check(
        payload: Any,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        patch: bool = False,
        raw: bool = False,
        both: bool = False,
    ) -> None:
        """`both`: create (with a valid title and body added) and then PATCH."""
        if both:
            create = payload if raw else {"title": "t", "body": "b", **payload}
            check(create, code, message, details, raw=raw)
            check(payload, code, message, details, raw=raw, patch=True)
            return
        before = db_state()
        url = f"{base(project.id)}/{existing.id}" if patch else base(project.id)
        send = client.patch if patch else client.post
        if raw:
            response = send(url, payload, content_type="application/json")
        else:
            response = send(url, payload)
        assert response.status_code == 400, response.content
        assert response.json() == error(code, message, details)
        assert db_state() == before
        assert broker.drain() == []

    return check


# --- INVALID_BODY -----------------------------------------------------------------

NOT_JSON = "The request body is not valid JSON."
NOT_OBJECT = "The request body must be a JSON object."
NUL = "The request body contains a NUL character."
SURROGATE = "The request body contains an unpaired surrogate."


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"title=x&body=y", NOT_JSON),
        (b"{", NOT_JSON),
        (b"{'title': 'x'}", NOT_JSON),
        (b'{"title": "x",}', NOT_JSON),
        (b'{"title": NaN, "body": "b"}', NOT_JSON),
        (b'{"title": "t", "body": "b", "badge": Infinity}', NOT_JSON),
        (b'{"title": "t", "body": "b", "data": {"x": -Infinity}}', NOT_JSON),
        (b'{"title": "t", "body": "b", "data": {"x": 1e400}}', NOT_JSON),
        (b'{"title": "\xff\xfe", "body": "b"}', NOT_JSON),
        (b"\xef\xbb\xbf{}", NOT_JSON),
        (b"[" * 100_000 + b"]" * 100_000, NOT_JSON),
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, NOT_JSON),
        (b'{"badge": ' + b"9" * 5000 + b"}", NOT_JSON),
        (b"[]", NOT_OBJECT),
        (b'[{"title": "t", "body": "b"}]', NOT_OBJECT),
        (b'"title"', NOT_OBJECT),
        (b"42", NOT_OBJECT),
        (b"null", NOT_OBJECT),
        (b"true", NOT_OBJECT),
        (
            b'{"title": "t", "body": "b", "data": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
            "The request body is nested deeper than 32 levels.",
        ),
        (b'{"title": "a\\u0000b", "body": "b"}', NUL),
        (b'{"title": "t", "body": "b", "data": {"k\\u0000": 1}}', NUL),
        (b'{"title": "\\ud800", "body": "b"}', SURROGATE),
        (b'{"title": "t", "body": "b", "data": {"\\udfff": 1}}', SURROGATE),
        (b'{"title": "t", "body": "b", "tags": ["\\udbff"]}', SURROGATE),
    ],
)  # fmt: skip
def test_invalid_body(refused, raw, message):
    refused(raw, "INVALID_BODY", message, raw=True, both=True)


def test_a_valid_surrogate_pair_is_accepted(api):
    client, project = api

    response = client.post(
        base(project.id),
        b'{"title": "\\ud83d\\ude00", "body": "b"}',
        content_type="application/json",
    )

    assert response.status_code == 201
    assert PushCampaign.objects.get().title == "\N{GRINNING FACE}"


def test_nesting_up_to_the_limit_is_accepted(api):
    client, project = api
    data: Any = 1
    for _ in range(31):
        data = {"a": data}

    response = client.post(base(project.id), {"title": "t", "body": "b", "data": data})

    assert response.status_code == 201
    assert PushCampaign.objects.get().data == data


# --- MISSING_TITLE / MISSING_BODY ---------------------------------------------------


@pytest.mark.parametrize("payload", [{"body": "b"}, {"title": None, "body": "b"},
                                     {"title": "", "body": "b"}, {"title": " \n\t", "body": "b"},
                                     {}])  # fmt: skip
def test_missing_title(refused, payload):
    refused(payload, "MISSING_TITLE", "title is required.", {"field": "title"})


@pytest.mark.parametrize(
    "payload",
    [{"title": "t"}, {"title": "t", "body": None}, {"title": "t", "body": ""},
     {"title": "t", "body": "   "}],
)  # fmt: skip
def test_missing_body(refused, payload):
    refused(payload, "MISSING_BODY", "body is required.", {"field": "body"})


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"title": None}, "MISSING_TITLE", "title"),
        ({"title": "  "}, "MISSING_TITLE", "title"),
        ({"body": None}, "MISSING_BODY", "body"),
        ({"body": ""}, "MISSING_BODY", "body"),
    ],
)
def test_patch_cannot_blank_title_or_body(refused, payload, code, field):
    refused(payload, code, f"{field} is required.", {"field": field}, patch=True)


def test_errors_come_in_a_fixed_field_order(refused):
    refused({"body": "", "title": ""}, "MISSING_TITLE", "title is required.", {"field": "title"})
    refused(
        {"title": "t", "body": "b", "badge": -1, "data": []},
        "INVALID_DATA",
        "data must be a JSON object.",
        {"field": "data"},
    )
    # Unknown and read-only fields are reported before any missing field.
    refused({"colour": "red"}, "VALIDATION_ERROR", "Unknown field 'colour'.", {"field": "colour"})


# --- INVALID_DATA -----------------------------------------------------------------


@pytest.mark.parametrize("data", [[], ["a"], "string", 1, 1.5, True, None])
def test_invalid_data_not_an_object(refused, data):
    refused(
        {"data": data}, "INVALID_DATA", "data must be a JSON object.", {"field": "data"}, both=True
    )


def test_invalid_data_reserved_aps_key(refused):
    refused(
        {"title": "t", "body": "b", "data": {"aps": {"alert": "x"}}},
        "INVALID_DATA",
        "data must not contain the reserved key 'aps'.",
        {"field": "data"},
    )


# --- INVALID_SEGMENT_ID -----------------------------------------------------------

NOT_A_UUID = "segment_id must be a UUID or null."
NOT_OURS = "segment_id is not a segment of this project."


@pytest.mark.parametrize("segment_id", [123, "abc", "", ["x"], {"id": "x"}, True])
def test_invalid_segment_id_not_a_uuid(refused, segment_id):
    payload = {"segment_id": segment_id}
    refused(payload, "INVALID_SEGMENT_ID", NOT_A_UUID, {"field": "segment_id"}, both=True)


def test_invalid_segment_id_of_another_project(refused):
    foreign = SegmentFactory(project=ProjectFactory())
    payload = {"segment_id": str(foreign.id)}
    refused(payload, "INVALID_SEGMENT_ID", NOT_OURS, {"field": "segment_id"}, both=True)


def test_invalid_segment_id_that_does_not_exist(refused):
    refused(
        {"title": "t", "body": "b", "segment_id": "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"},
        "INVALID_SEGMENT_ID",
        NOT_OURS,
        {"field": "segment_id"},
    )


# --- INVALID_SCHEDULED_AT / SCHEDULED_AT_IN_PAST --------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tomorrow", "scheduled_at is not a valid ISO-8601 date-time."),
        ("2099-13-01T00:00:00Z", "scheduled_at is not a valid ISO-8601 date-time."),
        ("2099-01-01T00:00:00+24:00", "scheduled_at is not a valid ISO-8601 date-time."),
        ("", "scheduled_at is not a valid ISO-8601 date-time."),
        ("2099-01-01T00:00:00", "scheduled_at must include a UTC offset, e.g. 'Z' or '+02:00'."),
        ("2099-01-01", "scheduled_at must include a UTC offset, e.g. 'Z' or '+02:00'."),
        ("9999-12-31T23:59:59-23:59", "scheduled_at is out of range."),
        ("0001-01-01T00:00:00+01:00", "scheduled_at is out of range."),
        (4102444800, "scheduled_at must be an ISO-8601 string."),
        (True, "scheduled_at must be an ISO-8601 string."),
        ({"at": FUTURE}, "scheduled_at must be an ISO-8601 string."),
        ("2099-01-01T00:00:00Z" + " " * 60, "scheduled_at must be an ISO-8601 string."),
    ],
)
def test_invalid_scheduled_at(refused, value, message):
    payload = {"scheduled_at": value}
    refused(payload, "INVALID_SCHEDULED_AT", message, {"field": "scheduled_at"}, both=True)


@pytest.mark.parametrize("seconds", [0, -1, -86400 * 365 * 30])
def test_scheduled_at_in_past(refused, seconds):
    now = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
    value = (now + timedelta(seconds=seconds)).isoformat()
    with time_machine.travel(now, tick=False):
        refused(
            {"scheduled_at": value},
            "SCHEDULED_AT_IN_PAST",
            "scheduled_at is in the past.",
            {"field": "scheduled_at"},
            both=True,
        )


def test_scheduled_at_one_microsecond_ahead_is_accepted(api):
    client, project = api
    now = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)

    with time_machine.travel(now, tick=False):
        response = client.post(
            base(project.id),
            {"title": "t", "body": "b", "scheduled_at": "2031-03-04T05:06:07.000001+00:00"},
        )

    assert response.status_code == 201
    assert response.json()["status"] == "scheduled"
    assert response.json()["scheduled_at"] == "2031-03-04T05:06:07.000001Z"


# --- EMPTY_UPDATE -----------------------------------------------------------------


def test_empty_update(refused):
    refused({}, "EMPTY_UPDATE", "Give at least one field to update.", patch=True)


def test_empty_update_with_an_empty_body(refused):
    refused(b"", "EMPTY_UPDATE", "Give at least one field to update.", patch=True, raw=True)


# --- PAYLOAD_TOO_LARGE ------------------------------------------------------------


def test_payload_too_large_on_create(api, db_state):
    client, project = api
    before = db_state()

    response = client.post(base(project.id), {"title": "t", "body": "é" * 4000})

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    details = body["error"]["details"]
    assert {(p["provider"], p["limit"]) for p in details["payloads"]} == {
        ("apns", 4096),
        ("fcm", 4096),
        ("webpush", 3993),
    }
    assert all(p["language"] is None and p["size"] > p["limit"] for p in details["payloads"])
    # The message names the payload furthest over its limit.
    worst = max(details["payloads"], key=lambda p: p["size"] - p["limit"])
    assert details["limit"] == worst["limit"]
    assert body["error"]["message"] == (
        f"The {worst['provider']} payload would be {worst['size']} bytes; "
        f"the limit is {worst['limit']}. Shorten the text or data."
    )
    assert db_state() == before


def test_payload_too_large_names_the_overflowing_localization(api, db_state):
    client, project = api
    before = db_state()

    response = client.post(
        base(project.id),
        {"title": "t", "body": "b", "localizations": {"de": {"body": "ü" * 4000}}},
    )

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert {(p["provider"], p["language"]) for p in details["payloads"]} == {
        ("apns", "de"),
        ("fcm", "de"),
        ("webpush", "de"),
    }
    assert db_state() == before


def test_payload_too_large_on_patch_changes_nothing(api, db_state):
    client, project = api
    campaign = CampaignFactory(project=project)
    before = db_state()

    response = client.patch(f"{base(project.id)}/{campaign.id}", {"data": {"blob": "x" * 5000}})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert db_state() == before


def test_payload_just_under_the_limit_is_accepted(api):
    client, project = api

    response = client.post(base(project.id), {"title": "t", "body": "b" * 1500})

    assert response.status_code == 201


def test_data_no_payload_can_carry_is_refused_before_any_payload_is_built(refused, builds):
    # '{"blob":"' + 5000 + '"}': 5011 bytes of compact JSON.
    refused(
        {"data": {"blob": "x" * 5000}},
        "PAYLOAD_TOO_LARGE",
        "data is 5011 bytes of JSON; a payload is at most 4096 bytes. Shorten the data.",
        {"field": "data", "limit": 4096, "size": 5011},
        both=True,
    )
    assert builds == {"apns": 0, "fcm": 0}


# --- localizations: capped, and checked in work linear in their number -------------------


@pytest.fixture
def builds(monkeypatch):
    """How many APNs and FCM payloads the size check builds."""
    counts = {"apns": 0, "fcm": 0}
    real_apns, real_fcm = payloads.build_apns, payloads.build_fcm

    def counting_apns(*args, **kwargs):
        counts["apns"] += 1
        return real_apns(*args, **kwargs)

    def counting_fcm(*args, **kwargs):
        counts["fcm"] += 1
        return real_fcm(*args, **kwargs)

    monkeypatch.setattr(payloads, "build_apns", counting_apns)
    monkeypatch.setattr(payloads, "build_fcm", counting_fcm)
    return counts


def _tags(n):
    """n distinct well-formed tags: two letters and a three-digit region ("ab-123")."""
    letters = string.ascii_lowercase
    return [f"{letters[i // 26000 % 26]}{letters[i // 1000 % 26]}-{i % 1000:03d}" for i in range(n)]


def test_300_localizations_are_accepted_with_one_build_per_language_301_are_not(api, builds):
    client, project = api
    localizations = {tag: {"title": f"T {tag}"} for tag in _tags(301)}
    too_many = {"title": "t", "body": "b", "localizations": localizations}

    refused = client.post(base(project.id), too_many)
    del localizations[_tags(301)[-1]]
    response = client.post(
        base(project.id), {"title": "t", "body": "b", "localizations": localizations}
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {"field": "localizations"}
    assert response.status_code == 201, response.content
    assert PushCampaign.objects.get().localizations == localizations
    # The default text and each language: one APNs and three FCM (per platform) builds.
    assert builds == {"apns": 301, "fcm": 903}


@pytest.mark.parametrize("n", [20_000, 37_000])
def test_tens_of_thousands_of_localizations_are_refused_before_any_build(refused, builds, n):
    """Issue 9: 20,000 took ~270 s and were stored; the 1 MiB body allows ~37,000."""
    localizations = {tag: {"title": "t"} for tag in _tags(n)}
    assert len(json.dumps({"localizations": localizations})) < 1024 * 1024

    refused(
        {"localizations": localizations},
        "VALIDATION_ERROR",
        f"At most 300 localizations (one per language); got {n}.",
        {"field": "localizations"},
        both=True,
    )
    assert builds == {"apns": 0, "fcm": 0}


@pytest.mark.parametrize(
    "tag",
    ["fr", "pt-BR", "pt_BR", "zh-Hant", "zh_hant_TW", "es-419", "sr-Latn-RS", "de-CH-1901",
     "en-US-POSIX", "zh-yue-HK", "en-US-u-ca-gregory", "en-x-pirate", "fil"],
)  # fmt: skip
def test_bcp47_tags_are_accepted(api, tag):
    client, project = api

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "localizations": {tag: {"title": "x"}}}
    )

    assert response.status_code == 201, response.content
    assert response.json()["localizations"] == {tag: {"title": "x"}}


# --- VALIDATION_ERROR: every other field, details name it ------------------------------

FIELD_ERRORS: list[tuple[str, Any, str, str]] = [
    ("title", 5, "title", "title must be a string."),
    ("title", ["t"], "title", "title must be a string."),
    ("title", "t" * 501, "title", "title must be at most 500 characters."),
    ("body", 5, "body", "body must be a string."),
    ("body", "b" * 4001, "body", "body must be at most 4000 characters."),
    ("name", 1, "name", "name must be a string."),
    ("name", "", "name", "name must not be blank."),
    ("name", None, "name", "name must be a string."),
    ("name", "n" * 201, "name", "name must be at most 200 characters."),
    ("localizations", [], "localizations", "localizations must be an object keyed by language."),
    ("localizations", {"french": {"title": "x"}}, "localizations.french",
     "'french' is not a language code such as 'fr' or 'pt-BR'."),
    ("localizations", {"fr": "Bonjour"}, "localizations.fr",
     "localizations.fr must be an object with title, body, image_url and/or actions."),
    ("localizations", {"fr": {}}, "localizations.fr",
     "localizations.fr must be an object with title, body, image_url and/or actions."),
    ("localizations", {"fr": {"image_url": "ftp://cdn/x.png"}}, "localizations.fr.image_url",
     "localizations.fr.image_url must be an http(s) URL."),
    ("localizations", {"fr": {"image_url": 3}}, "localizations.fr.image_url",
     "localizations.fr.image_url must be a string."),
    ("localizations", {"fr": {"actions": ["Acheter"]}}, "localizations.fr.actions",
     "localizations.fr.actions must be an object of button titles by action id."),
    ("localizations", {"fr": {"actions": {str(i): "t" for i in range(4)}}},
     "localizations.fr.actions", "localizations.fr.actions has more than 3 button titles."),
    ("localizations", {"fr": {"actions": {"buy": " "}}}, "localizations.fr.actions.buy",
     "localizations.fr.actions.buy must not be blank."),
    ("localizations", {"fr": {"actions": {"buy": "t" * 101}}}, "localizations.fr.actions.buy",
     "localizations.fr.actions.buy must be at most 100 characters."),
    ("localizations", {"fr": {"titel": "x"}}, "localizations.fr",
     "localizations.fr has unknown keys: titel."),
    ("localizations", {"fr": {"title": 1}}, "localizations.fr.title",
     "localizations.fr.title must be a string."),
    ("localizations", {f"es-{i:03d}": {"title": "t"} for i in range(301)}, "localizations",
     "At most 300 localizations (one per language); got 301."),
    ("localizations", {"fr\n": {"title": "x"}}, "localizations.fr\n",
     "'fr\n' is not a language code such as 'fr' or 'pt-BR'."),
    ("localizations", {"en-GB-oed": {"title": "x"}}, "localizations.en-GB-oed",
     "'en-GB-oed' is not a language code such as 'fr' or 'pt-BR'."),
    ("localizations", {"\u212a\u212a": {"title": "x"}}, "localizations.\u212a\u212a",
     "'\u212a\u212a' is not a language code such as 'fr' or 'pt-BR'."),
    # Well formed but 39 characters: longer than any tag a device reports.
    ("localizations", {"zh-yue-abc-def-Hant-CN-abcde-fghij-1901": {"title": "x"}},
     "localizations.zh-yue-abc-def-Hant-CN-abcde-fghij-1901",
     "'zh-yue-abc-def-Hant-CN-abcde-fghij-1901' is not a language code such as 'fr' or "
     "'pt-BR'."),
    ("localizations", {"pt_BR": {"title": "a"}, "pt-br": {"title": "b"}}, "localizations.pt-br",
     "'pt-br' is the same language as 'pt_BR'."),
    ("image_url", "ftp://cdn/x.png", "image_url", "image_url must be an http(s) URL."),
    ("image_url", "cdn/x.png", "image_url", "image_url must be an absolute URL."),
    ("image_url", 1, "image_url", "image_url must be a string."),
    ("url", "no-scheme", "url", "url must be an absolute URL."),
    ("url", "h" * 2001, "url", "url must be at most 2000 characters."),
    ("actions", {"id": "a"}, "actions", "actions must be a list of {id, title, url, icon}."),
    ("actions", [{"id": str(i), "title": "t"} for i in range(4)], "actions", "At most 3 actions."),
    ("actions", ["buy"], "actions[0]", "actions[0] must be an object."),
    ("actions", [{"id": "a", "title": "t", "image": "x"}], "actions[0]",
     "actions[0] has unknown keys: image."),
    ("actions", [{"id": "a", "title": "t", "icon": "x"}], "actions[0].icon",
     "actions[0].icon must be an absolute URL."),
    ("actions", [{"id": "a", "title": "t", "icon": "myapp://buy.png"}], "actions[0].icon",
     "actions[0].icon must be an http(s) URL."),
    ("actions", [{"id": "a", "title": "t", "icon": 7}], "actions[0].icon",
     "actions[0].icon must be a string."),
    ("icon", "data:image/png;base64,AAAA", "icon", "icon must be an http(s) URL."),
    ("icon", "icon.png", "icon", "icon must be an absolute URL."),
    ("icon", None, "icon", "icon must be a string."),
    ("icon", "https://" + "i" * 1993, "icon", "icon must be at most 2000 characters."),
    ("web_badge", "ftp://cdn/b.png", "web_badge", "web_badge must be an http(s) URL."),
    ("web_badge", 1, "web_badge", "web_badge must be a string."),
    ("vibrate", 200, "vibrate", "vibrate must be a list of milliseconds, e.g. [200, 100, 200]."),
    ("vibrate", [100] * 11, "vibrate", "vibrate has more than 10 items."),
    ("vibrate", [100, -1], "vibrate[1]", "vibrate[1] must be between 0 and 10000."),
    ("vibrate", [10001], "vibrate[0]", "vibrate[0] must be between 0 and 10000."),
    ("vibrate", [100, "200"], "vibrate[1]", "vibrate[1] must be an integer."),
    ("vibrate", [True], "vibrate[0]", "vibrate[0] must be an integer."),
    ("vibrate", [0.5], "vibrate[0]", "vibrate[0] must be an integer."),
    ("require_interaction", "yes", "require_interaction",
     "require_interaction must be true or false."),
    ("require_interaction", None, "require_interaction",
     "require_interaction must be true or false."),
    ("renotify", 1, "renotify", "renotify must be true or false."),
    ("tag", "t" * 65, "tag", "tag must be at most 64 characters."),
    ("tag", None, "tag", "tag must be a string."),
    ("actions", [{"title": "t"}], "actions[0].id", "actions[0].id must be a string."),
    ("actions", [{"id": "a", "title": ""}], "actions[0].title",
     "actions[0].title must not be blank."),
    ("actions", [{"id": "a", "title": "t"}, {"id": "a", "title": "u"}], "actions[1]",
     "Duplicate action id 'a'."),
    ("actions", [{"id": "a", "title": "t", "url": "nope"}], "actions[0].url",
     "actions[0].url must be an absolute URL."),
    ("sound", 1, "sound", "sound must be a string."),
    ("badge", -1, "badge", "badge must be between 0 and 99999."),
    ("badge", "3", "badge", "badge must be an integer."),
    ("badge", True, "badge", "badge must be an integer."),
    ("badge", 3.0, "badge", "badge must be an integer."),
    ("collapse_key", "k" * 65, "collapse_key", "collapse_key must be at most 64 characters."),
    ("priority", "urgent", "priority", "priority must be 'high' or 'normal'."),
    ("priority", None, "priority", "priority must be 'high' or 'normal'."),
    ("ttl_seconds", -1, "ttl_seconds", "ttl_seconds must be between 0 and 2419200."),
    ("ttl_seconds", 2419201, "ttl_seconds", "ttl_seconds must be between 0 and 2419200."),
    ("ttl_seconds", "60", "ttl_seconds", "ttl_seconds must be an integer."),
    ("platforms", "ios", "platforms", "platforms must be a list of 'ios', 'android', 'web'."),
    ("platforms", [1], "platforms", "platforms must be a list of 'ios', 'android', 'web'."),
    ("platforms", ["ios", "blackberry"], "platforms", "Unknown platform(s): blackberry."),
    ("targeting", [], "targeting", "targeting must be an object."),
    ("targeting", {"countries": ["FR"]}, "targeting.countries",
     'targeting.countries must be {"include": [...], "exclude": [...]} or '
     '{"items": [...], "op": "include" | "exclude"}.'),
    ("targeting", {"countries": {"include": "FR"}}, "targeting.countries.include",
     "targeting.countries.include must be a list of strings."),
    ("targeting", {"user_data": {"include": []}}, "targeting.user_data.include",
     "targeting.user_data.include must map keys to values."),
    ("targeting", {"countries": {"include": ["FR"] * 301}}, "targeting.countries.include",
     "targeting.countries.include has more than 300 items."),
    ("targeting", {"languages": {"exclude": ["fr"] * 301}}, "targeting.languages.exclude",
     "targeting.languages.exclude has more than 300 items."),
    ("targeting", {"platforms": {"include": ["ios"] * 4}}, "targeting.platforms.include",
     "targeting.platforms.include has more than 3 items."),
    ("targeting", {"segments": {"include": ["s"] * 101}}, "targeting.segments.include",
     "targeting.segments.include has more than 100 items."),
    ("targeting", {"users": {"exclude": ["u" * 256]}}, "targeting.users.exclude",
     "targeting.users.exclude items must be at most 255 characters."),
    ("targeting", {"user_data": {"include": {f"k{i}": 1 for i in range(101)}}},
     "targeting.user_data.include", "targeting.user_data.include has more than 100 keys."),
    ("targeting", {"user_data": {"exclude": {"k" * 65: 1}}}, "targeting.user_data.exclude",
     "targeting.user_data.exclude keys must be 1-64 characters."),
    ("targeting", {"user_data": {"include": {"plan": ["a"] * 101}}},
     "targeting.user_data.include.plan",
     "targeting.user_data.include.plan has more than 100 items."),
    ("targeting", {"user_data": {"include": {"plan": {"is": "pro"}}}},
     "targeting.user_data.include.plan",
     "targeting.user_data.include.plan must be a value (string of at most 1024 characters, "
     "number, boolean or null) or a list of them."),
    ("targeting", {"user_data": {"include": {"plan": ["a", "p" * 1025]}}},
     "targeting.user_data.include.plan",
     "targeting.user_data.include.plan must be a value (string of at most 1024 characters, "
     "number, boolean or null) or a list of them."),
    ("targeting", {"subscribed_age": {"from": 9, "to": 2}}, "targeting.subscribed_age",
     "targeting.subscribed_age.from must not exceed .to."),
    ("tags", "promo", "tags", "tags must be a list of strings."),
    ("tags", [1], "tags", "tags must be a list of strings."),
    ("tags", [str(i) for i in range(21)], "tags", "tags has more than 20 items."),
    ("tags", [""], "tags", "tags must not be blank."),
    ("tags", ["t" * 65], "tags", "tags must be at most 64 characters."),
    ("recurrence", "daily", "recurrence", "recurrence must be an object or null."),
    ("recurrence", {}, "recurrence",
     "recurrence needs exactly one of 'cron', 'every_seconds', 'every_days'."),
    ("recurrence", {"cron": "* * * * *", "every_days": 1}, "recurrence",
     "recurrence needs exactly one of 'cron', 'every_seconds', 'every_days'."),
    ("recurrence", {"every_seconds": 60, "timezone": "UTC"}, "recurrence",
     "recurrence has unknown keys: timezone."),
    ("recurrence", {"cron": "* * *"}, "recurrence.cron",
     "'* * *' is not a 5-field cron expression."),
    ("recurrence", {"cron": "61 * * * *"}, "recurrence.cron",
     "'61 * * * *' is not a 5-field cron expression."),
    ("recurrence", {"every_seconds": 9}, "recurrence.every_seconds",
     "recurrence.every_seconds must be between 10 and 31622400."),
    ("recurrence", {"every_days": 1, "at": "24:00"}, "recurrence.at",
     "recurrence.at must be 'HH:MM' (24-hour)."),
    ("recurrence", {"every_days": 1, "timezone": "Mars/Olympus"}, "recurrence.timezone",
     "Unknown time zone 'Mars/Olympus'."),
    ("recurrence", {"every_days": 1, "timezone": "America"}, "recurrence.timezone",
     "Unknown time zone 'America'."),
    ("recurrence", {"every_days": 1, "timezone": "../../etc/passwd"}, "recurrence.timezone",
     "Unknown time zone '../../etc/passwd'."),
    ("recurrence", {"cron": "0 9 * * *", "timezone": ""}, "recurrence.timezone",
     "recurrence.timezone must be an IANA time zone such as 'Europe/Paris'."),
    ("end_at", "2000-01-01T00:00:00Z", "end_at", "end_at is in the past."),
    ("end_at", "soon", "end_at", "end_at is not a valid ISO-8601 date-time."),
    ("end_at", "0001-01-01T00:00:00+01:00", "end_at", "end_at is out of range."),
    ("quiet_hours", "22-08", "quiet_hours", "quiet_hours must be {start, end, action}."),
    ("quiet_hours", {"start": "22:00"}, "quiet_hours.end", "quiet_hours.end must be 'HH:MM'."),
    ("quiet_hours", {"start": "22:00", "end": "22:00"}, "quiet_hours",
     "quiet_hours start and end must differ."),
    ("quiet_hours", {"start": "22:00", "end": "08:00", "action": "drop"}, "quiet_hours.action",
     "quiet_hours.action must be 'defer' or 'skip'."),
    ("deliver_in_user_timezone", 1, "deliver_in_user_timezone",
     "deliver_in_user_timezone must be true or false."),
    ("deliver_in_user_timezone", "true", "deliver_in_user_timezone",
     "deliver_in_user_timezone must be true or false."),
    ("throttle_per_minute", 0, "throttle_per_minute",
     "throttle_per_minute must be between 1 and 1000000."),
    ("throttle_per_minute", 1.5, "throttle_per_minute", "throttle_per_minute must be an integer."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "detail", "message"),
    FIELD_ERRORS,
    ids=[f"{f}-{i}" for i, (f, *_rest) in enumerate(FIELD_ERRORS)],
)
def test_validation_error_names_the_field(refused, field, value, detail, message):
    refused({field: value}, "VALIDATION_ERROR", message, {"field": detail}, both=True)


def test_end_at_must_be_after_scheduled_at(refused):
    refused(
        {"title": "t", "body": "b", "scheduled_at": "2099-01-02T00:00:00Z",
         "end_at": "2099-01-01T00:00:00Z"},
        "VALIDATION_ERROR",
        "end_at must be after scheduled_at.",
        {"field": "end_at"},
    )  # fmt: skip


def test_patch_end_at_before_the_stored_scheduled_at_is_refused(api, db_state):
    client, project = api
    campaign = CampaignFactory(
        project=project,
        status="scheduled",
        scheduled_at=datetime(2099, 1, 2, tzinfo=UTC),
        schedule_version=1,
    )
    before = db_state()

    response = client.patch(f"{base(project.id)}/{campaign.id}", {"end_at": "2099-01-01T00:00:00Z"})

    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR", "end_at must be after scheduled_at.", {"field": "end_at"}
    )
    assert db_state() == before


@pytest.mark.parametrize(
    "field",
    ["id", "project_id", "status", "stats", "created_at", "updated_at", "sent_at",
     "completed_at", "current_run", "last_error"],
)  # fmt: skip
def test_read_only_fields_are_refused(refused, field):
    refused({field: "x"}, "VALIDATION_ERROR", f"{field} is read-only.", {"field": field}, both=True)


@pytest.mark.parametrize("field", ["colour", "Title", "segment", "schedule_version", ""])
def test_unknown_fields_are_refused(refused, field):
    message = f"Unknown field '{field}'."
    refused({field: "x"}, "VALIDATION_ERROR", message, {"field": field}, both=True)


def test_far_future_scheduled_at_is_accepted(api):
    client, project = api

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "scheduled_at": "9999-12-31T23:59:59Z"}
    )

    assert response.status_code == 201
    assert response.json()["scheduled_at"] == "9999-12-31T23:59:59Z"
    campaign = PushCampaign.objects.get()
    assert campaign.scheduled_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_the_stored_row_round_trips_through_json(api):
    client, project = api
    data = {"unicode": "日本語 ✓", "nested": {"list": [1, 2.5, None, True, "x"]}, "": "empty key"}

    response = client.post(base(project.id), {"title": "t", "body": "b", "data": data})

    assert response.status_code == 201
    assert json.loads(response.content)["data"] == data
    assert PushCampaign.objects.get().data == data


def test_now_is_never_in_the_future(api):
    """scheduled_at equal to now is refused even when sent with another offset."""
    client, project = api
    now = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
    same_instant = now.astimezone(timezone.get_fixed_timezone(-300)).isoformat()

    with time_machine.travel(now, tick=False):
        response = client.post(
            base(project.id), {"title": "t", "body": "b", "scheduled_at": same_instant}
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "SCHEDULED_AT_IN_PAST"
    assert PushCampaign.objects.count() == 0
