"""targeting_filter, resolve_audience and the selectors the campaign layer uses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from delivery.models import PushToken
from segments.audience import resolve_audience
from segments.models import Segment
from segments.selectors import audience_counts, explicit_tokens
from segments.targeting import (
    UnknownTargetingSegments,
    targeting_filter,
    unknown_segment_ids,
    validate_targeting,
)
from tests.segments.helpers import apns_token, fcm_token, make_project, make_token, make_user

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture
def world() -> dict[str, Any]:
    """Five users with one token each (plus extras), in one project, and a decoy project."""
    project = make_project()
    users = {
        "us-en": make_user(
            project, "us-en", {"country": "US", "language": "en-US", "plan": "pro", "level": 3}
        ),
        "us-fr": make_user(project, "us-fr", {"country": "US", "language": "fr", "plan": "free"}),
        "ca-en": make_user(project, "ca-en", {"country": "CA", "language": "en", "level": "3"}),
        "fr": make_user(project, "fr", {"country": "FR", "language": "fr_FR"}),
        "none": make_user(project, "none", {}),
    }
    tokens = {
        "us-en": make_token(project, users["us-en"], apns_token(1), app_version="2.0"),
        "us-en-web": make_token(
            project, users["us-en"], fcm_token(1), provider="fcm", platform="web"
        ),
        "us-fr": make_token(
            project, users["us-fr"], fcm_token(2), provider="fcm", platform="android"
        ),
        "ca-en": make_token(
            project,
            users["ca-en"],
            apns_token(3),
            app_version="1.0",
            created_at=NOW - timedelta(days=10, hours=1),
        ),
        "fr": make_token(
            project,
            users["fr"],
            fcm_token(4),
            provider="fcm",
            platform="android",
            created_at=NOW - timedelta(days=3),
        ),
        "none": make_token(project, users["none"], apns_token(5)),
        "anonymous": make_token(project, None, apns_token(6)),
        "inactive": make_token(project, users["us-en"], apns_token(7), active=False),
    }
    decoy = make_project("decoy")
    make_token(decoy, make_user(decoy, "us-en", {"country": "US"}), apns_token(8))
    return {"project": project, "users": users, "tokens": tokens}


def targeted(world: dict[str, Any], targeting: dict[str, Any]) -> set[str]:
    names = {t.pk: name for name, t in world["tokens"].items()}
    base = PushToken.objects.filter(project=world["project"], active=True)
    rows = targeting_filter(base, targeting, project=world["project"], now=NOW)
    return {names[pk] for pk in rows.values_list("pk", flat=True)}


ALL_ACTIVE = {"us-en", "us-en-web", "us-fr", "ca-en", "fr", "none", "anonymous"}


@pytest.mark.parametrize(
    ("targeting", "expected"),
    [
        ({}, ALL_ACTIVE),
        ({"countries": {"include": ["us", "CA"]}}, {"us-en", "us-en-web", "us-fr", "ca-en"}),
        ({"countries": {"exclude": ["US"]}}, {"ca-en", "fr", "none", "anonymous"}),
        ({"languages": {"include": ["en"]}}, {"us-en", "us-en-web", "ca-en"}),
        ({"languages": {"include": ["fr"]}}, {"us-fr", "fr"}),
        ({"languages": {"exclude": ["fr"]}}, {"us-en", "us-en-web", "ca-en", "none", "anonymous"}),
        ({"platforms": {"include": ["WEB", "android"]}}, {"us-en-web", "us-fr", "fr"}),
        ({"platforms": {"exclude": ["ios"]}}, {"us-en-web", "us-fr", "fr"}),
        ({"app_versions": {"include": ["2.0", "1.0"]}}, {"us-en", "ca-en"}),
        ({"app_versions": {"exclude": ["2.0"]}}, ALL_ACTIVE - {"us-en"}),
        ({"users": {"include": ["us-en", "fr", "ghost"]}}, {"us-en", "us-en-web", "fr"}),
        ({"users": {"exclude": ["us-en"]}}, ALL_ACTIVE - {"us-en", "us-en-web"}),
        ({"user_data": {"include": {"plan": "pro"}}}, {"us-en", "us-en-web"}),
        ({"user_data": {"include": {"plan": ["pro", "free"]}}}, {"us-en", "us-en-web", "us-fr"}),
        ({"user_data": {"include": {"level": 3}}}, {"us-en", "us-en-web"}),
        ({"user_data": {"include": {"level": "3"}}}, {"ca-en"}),
        ({"user_data": {"include": {"plan": "pro", "level": 3}}}, {"us-en", "us-en-web"}),
        ({"user_data": {"include": {"plan": []}}}, set()),
        ({"user_data": {"exclude": {"plan": "free"}}}, ALL_ACTIVE - {"us-fr"}),
        ({"subscribed_age": {"from": 3}}, {"ca-en", "fr"}),
        ({"subscribed_age": {"from": 3, "to": 9}}, {"fr"}),
        ({"subscribed_age": {"to": 10}}, ALL_ACTIVE),
        ({"subscribed_age": {"to": 2}}, ALL_ACTIVE - {"ca-en", "fr"}),
        (
            {
                "countries": {"include": ["US", "CA"]},
                "platforms": {"include": ["ios"]},
                "user_data": {"exclude": {"plan": "free"}},
            },
            {"us-en", "ca-en"},
        ),
    ],
)
def test_targeting(world: dict[str, Any], targeting: dict[str, Any], expected: set[str]) -> None:
    assert targeted(world, targeting) == expected


def test_targeting_by_segments(world: dict[str, Any]) -> None:
    project = world["project"]
    us = Segment.objects.create(
        project=project, name="US", rules={"attr": "country", "op": "eq", "value": "US"}
    )
    pro = Segment.objects.create(
        project=project, name="pro", rules={"attr": "plan", "op": "eq", "value": "pro"}
    )
    everyone = Segment.objects.create(project=project, name="all", rules={})
    foreign = Segment.objects.create(project=make_project("x"), name="f", rules={})
    us_tokens = {"us-en", "us-en-web", "us-fr"}
    assert targeted(world, {"segments": {"include": [str(us.pk)]}}) == us_tokens
    assert targeted(world, {"segments": {"include": [str(pro.pk), str(us.pk)]}}) == us_tokens
    assert targeted(world, {"segments": {"exclude": [str(pro.pk)]}}) == ALL_ACTIVE - {
        "us-en",
        "us-en-web",
    }
    both = {"segments": {"include": [str(us.pk)], "exclude": [str(pro.pk)]}}
    assert targeted(world, both) == {"us-fr"}
    # Everyone includes users, not anonymous tokens; unknown or foreign ids match no one.
    assert targeted(world, {"segments": {"include": [str(everyone.pk)]}}) == ALL_ACTIVE - {
        "anonymous"
    }
    assert foreign.pk  # another project's segment: see the tests below


def test_resolve_audience_ands_segment_targeting_and_platforms(world: dict[str, Any]) -> None:
    project = world["project"]
    names = {t.pk: name for name, t in world["tokens"].items()}
    english = Segment.objects.create(
        project=project,
        name="en",
        rules={"any": [{"attr": "language", "op": "starts_with", "value": "en"}]},
    )
    tokens = resolve_audience(
        project=project,
        segment=english,
        targeting={"countries": {"include": ["US"]}},
        platforms=["ios"],
    )
    assert {names[t.pk] for t in tokens} == {"us-en"}
    everyone = resolve_audience(project=project, segment=None, targeting=None, platforms=None)
    assert {names[t.pk] for t in everyone} == ALL_ACTIVE


def test_resolve_audience_folds_segment_and_user_targeting_into_one_subquery(
    world: dict[str, Any],
) -> None:
    """Excludes folded into the members subquery stay NULL-safe complements: users
    without the excluded attribute ("fr", "none") are kept, anonymous tokens are not
    (the segment needs a user)."""
    project = world["project"]
    names = {t.pk: name for name, t in world["tokens"].items()}
    everyone = Segment.objects.create(project=project, name="all", rules={})
    tokens = resolve_audience(
        project=project,
        segment=everyone,
        targeting={
            "user_data": {"exclude": {"plan": "free"}},
            "languages": {"exclude": ["en"]},
            "platforms": {"exclude": ["web"]},
        },
    )
    assert {names[t.pk] for t in tokens} == {"fr", "none"}
    assert str(tokens.query).count('FROM "app_users"') == 1
    without_segment = resolve_audience(
        project=project,
        targeting={
            "countries": {"include": ["US", "FR"]},
            "user_data": {"exclude": {"plan": "pro"}},
        },
    )
    assert {names[t.pk] for t in without_segment} == {"us-fr", "fr"}
    assert str(without_segment.query).count('FROM "app_users"') == 1
    exclude_only = resolve_audience(project=project, targeting={"countries": {"exclude": ["US"]}})
    assert {names[t.pk] for t in exclude_only} == {"ca-en", "fr", "none", "anonymous"}


def test_resolution_is_fresh_at_send_time(world: dict[str, Any]) -> None:
    project = world["project"]
    segment = Segment.objects.create(
        project=project, name="pro", rules={"attr": "plan", "op": "eq", "value": "pro"}
    )
    assert resolve_audience(project=project, segment=segment).count() == 2
    user = world["users"]["us-en"]
    user.attributes = {**user.attributes, "plan": "free"}
    user.save(update_fields=["attributes"])
    assert resolve_audience(project=project, segment=segment).count() == 0


def test_audience_counts(world: dict[str, Any]) -> None:
    tokens = PushToken.objects.filter(project=world["project"], active=True)
    assert audience_counts(tokens) == {
        "total": 7,
        "by_provider": {"apns": 4, "fcm": 3, "webpush": 0},
        "by_platform": {"ios": 4, "android": 2, "web": 1},
    }
    assert audience_counts(tokens.none()) == {
        "total": 0,
        "by_provider": {"apns": 0, "fcm": 0, "webpush": 0},
        "by_platform": {"ios": 0, "android": 0, "web": 0},
    }


def test_explicit_tokens(world: dict[str, Any]) -> None:
    t = world["tokens"]
    names = {row.pk: name for name, row in t.items()}
    tokens, invalid = explicit_tokens(
        project=world["project"],
        device_ids=[
            str(t["us-fr"].pk),
            apns_token(3).upper(),  # APNs tokens match case-insensitively
            "999999",
            str(t["inactive"].pk),
            fcm_token(1),
            "unknown-token",
            str(t["us-fr"].pk),
        ],
        user_ids=["fr", "ghost", "us-en", "fr"],
    )
    assert {names[row.pk] for row in tokens} == {"us-fr", "ca-en", "us-en-web", "fr", "us-en"}
    assert invalid == ["999999", str(t["inactive"].pk), "unknown-token", "ghost"]


def test_explicit_tokens_stay_in_the_project(world: dict[str, Any]) -> None:
    decoy = PushToken.objects.exclude(project=world["project"]).get()
    tokens, invalid = explicit_tokens(
        project=world["project"], device_ids=[str(decoy.pk), decoy.token], user_ids=[]
    )
    assert (list(tokens), invalid) == ([], [str(decoy.pk), decoy.token])
    tokens, invalid = explicit_tokens(project=world["project"], device_ids=[], user_ids=[])
    assert (list(tokens), invalid) == ([], [])


def test_unknown_segment_ids(world: dict[str, Any]) -> None:
    mine = Segment.objects.create(project=world["project"], name="m", rules={})
    foreign = Segment.objects.create(project=make_project("x"), name="f", rules={})
    ids = ["nope", str(mine.pk), str(foreign.pk), "nope", str(mine.pk).upper()]
    assert unknown_segment_ids(project=world["project"], segment_ids=ids) == [
        "nope",
        str(foreign.pk),
    ]


def not_this_projects_segments(world: dict[str, Any]) -> list[str]:
    """A segment's name, a deleted segment's id and another project's segment id."""
    named = Segment.objects.create(project=world["project"], name="US", rules={})
    deleted = Segment.objects.create(project=world["project"], name="gone", rules={})
    deleted_id = str(deleted.pk)
    deleted.delete()
    foreign = Segment.objects.create(project=make_project("x"), name="f", rules={})
    return [named.name, deleted_id, str(foreign.pk)]


def unknown_segments_error(ids: list[str], *, stored: bool) -> tuple[str, int, str, dict]:
    """(code, status, message, details) of UnknownTargetingSegments, saving or resolving."""
    listed = ", ".join(ids)
    if stored:
        message = (
            "targeting.segments names segments that are not segments of this project "
            f"(deleted, or never were): {listed}. Remove them from the campaign's targeting."
        )
    else:
        message = (
            "targeting.segments names segments that are not segments of this project: "
            f"{listed}. Use ids from GET /admin/projects/{{projectId}}/segments."
        )
    details = {"field": "targeting.segments", "segment_ids": ids}
    return "INVALID_SEGMENT_ID", 409 if stored else 400, message, details


def as_tuple(error: InvalidInput) -> tuple[str, int, str, dict]:
    return error.code, error.status, error.message, error.details


@pytest.mark.parametrize("side", ["include", "exclude"])
def test_resolving_targeting_segments_that_are_not_this_projects_raises(
    world: dict[str, Any], side: str
) -> None:
    ids = not_this_projects_segments(world)
    kept = Segment.objects.create(project=world["project"], name="kept", rules={})

    with pytest.raises(UnknownTargetingSegments) as caught:
        targeted(world, {"segments": {side: [str(kept.pk), *ids]}})
    with pytest.raises(UnknownTargetingSegments):
        resolve_audience(project=world["project"], targeting={"segments": {side: ids}})

    assert isinstance(caught.value, InvalidInput)
    assert as_tuple(caught.value) == unknown_segments_error(ids, stored=True)


def test_validate_targeting_refuses_ids_that_are_not_this_projects(world: dict[str, Any]) -> None:
    ids = not_this_projects_segments(world)
    kept = Segment.objects.create(project=world["project"], name="kept", rules={})
    targeting = {"segments": {"include": [str(kept.pk), ids[0]], "exclude": ids[1:]}}

    with pytest.raises(UnknownTargetingSegments) as caught:
        validate_targeting(project=world["project"], targeting=targeting)

    assert as_tuple(caught.value) == unknown_segments_error(ids, stored=False)


@pytest.mark.parametrize(
    "targeting", [None, {}, {"countries": {"include": ["US"]}}, {"segments": {"include": []}}]
)
def test_validate_targeting_accepts_targeting_without_foreign_segments(
    world: dict[str, Any], targeting: dict[str, Any] | None
) -> None:
    mine = Segment.objects.create(project=world["project"], name="m", rules={})
    validate_targeting(project=world["project"], targeting=targeting)
    validate_targeting(
        project=world["project"], targeting={"segments": {"exclude": [str(mine.pk).upper()]}}
    )


BAD_USER_DATA = [
    ("platform", "targeting.user_data.include"),  # reserved: compiled as a token test
    ("created_at", "targeting.user_data.include"),  # reserved: a column, not an attribute
    ("x') OR (1=1", "targeting.user_data.include"),  # not a key: it becomes a JSON path
]


def user_data_message(key: str) -> str:
    return (
        f"targeting.user_data.include: '{key}' is not a custom attribute name (letters, "
        "digits, _ . : -; max 64; not one of external_id, platform, provider, created_at, "
        "last_seen_at, subscribed_age)."
    )


@pytest.mark.parametrize("stored", [False, True])
@pytest.mark.parametrize(("key", "field"), BAD_USER_DATA)
def test_user_data_keys_that_are_not_attributes_are_refused_and_raise_when_stored(
    world: dict[str, Any], key: str, field: str, stored: bool
) -> None:
    """Saving: 400. Stored before the check (or around it): 409, not KeyError('tv')."""
    targeting = {"user_data": {"include": {key: "tv"}}}

    with pytest.raises(InvalidInput) as caught:
        if stored:
            list(resolve_audience(project=world["project"], targeting=targeting))
        else:
            validate_targeting(project=world["project"], targeting=targeting)

    status = 409 if stored else 400
    details = {"field": field, "key": key}
    assert as_tuple(caught.value) == ("VALIDATION_ERROR", status, user_data_message(key), details)
