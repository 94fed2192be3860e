"""Both targeting forms (Herald's include/exclude and Ocamba's items/op) through the
one normaliser, every door that takes targeting, and `segment_name` beside
`segment_id`. Refused requests change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns import services
from campaigns.models import PushCampaign
from campaigns.validation import validate_create, validate_update
from core.errors import InvalidInput
from tests.factories import AppUserFactory, PushTokenFactory, SegmentFactory

pytestmark = pytest.mark.django_db

LIST_ITEMS = {
    "countries": ["CA", "US"],
    "languages": ["es"],
    "platforms": ["ios"],
    "app_versions": ["2.1"],
    "users": ["123123121312312"],
}
SUPPORTED = [
    "countries",
    "languages",
    "platforms",
    "app_versions",
    "segments",
    "users",
    "user_data",
    "subscribed_age",
]


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def clean_targeting(targeting: Any) -> Any:
    return validate_create({"title": "t", "body": "b", "targeting": targeting})["targeting"]


def refusal(targeting: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        clean_targeting(targeting)
    return caught.value


@pytest.mark.parametrize("key", sorted(LIST_ITEMS))
@pytest.mark.parametrize("op", ["include", "exclude"])
def test_every_list_key_takes_the_ocamba_form(key: str, op: str) -> None:
    items = LIST_ITEMS[key]
    ocamba = clean_targeting({key: {"items": items, "op": op}})
    assert ocamba == {key: {op: items}}
    assert ocamba == clean_targeting({key: {op: items}})


def test_segments_in_the_ocamba_form_are_checked_like_herald_ones(api) -> None:
    client, project = api
    segment = SegmentFactory(project=project, rules={"attr": "country", "op": "eq", "value": "FR"})
    clean = clean_targeting({"segments": {"items": [str(segment.pk)], "op": "exclude"}})
    assert clean == {"segments": {"exclude": [str(segment.pk)]}}
    before = PushCampaign.objects.count()
    answer = client.post(
        base(project.pk),
        {
            "title": "t",
            "body": "b",
            "targeting": {"segments": {"items": ["2817"], "op": "include"}},
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "INVALID_SEGMENT_ID",
        "message": "targeting.segments names segments that are not segments of this project: "
        "2817. Use ids from GET /admin/projects/{projectId}/segments.",
        "details": {"field": "targeting.segments", "segment_ids": ["2817"]},
    }
    assert PushCampaign.objects.count() == before


def test_user_data_in_the_ocamba_form() -> None:
    clean = clean_targeting(
        {
            "user_data": {
                "plan": {"items": ["pro", "team"], "op": "include"},
                "city": {"items": ["AZ BZ"], "op": "include"},
                "tier": {"items": [3, True, None], "op": "exclude"},
            },
            "subscribed_age": {"from": 1, "to": 2},
        }
    )
    assert clean == {
        "user_data": {
            "include": {"plan": ["pro", "team"], "city": ["AZ BZ"]},
            "exclude": {"tier": [3, True, None]},
        },
        "subscribed_age": {"from": 1, "to": 2},
    }
    herald = clean_targeting({"user_data": {"include": {"plan": "pro"}}})
    assert herald == {"user_data": {"include": {"plan": "pro"}}}


@pytest.mark.parametrize(
    ("targeting", "field", "message"),
    [
        (
            {"countries": {"items": ["CA"], "op": "only"}},
            "targeting.countries.op",
            'targeting.countries.op must be "include" or "exclude".',
        ),
        (
            {"languages": {"items": ["es"]}},
            "targeting.languages.op",
            'targeting.languages.op is required: "include" or "exclude".',
        ),
        (
            {"users": {"op": "include"}},
            "targeting.users.items",
            "targeting.users.items is required: a list.",
        ),
        (
            {"countries": {"items": "CA", "op": "include"}},
            "targeting.countries.items",
            "targeting.countries.items must be a list of strings.",
        ),
        (
            {"countries": {"items": ["CA"] * 301, "op": "include"}},
            "targeting.countries.items",
            "targeting.countries.items has more than 300 items.",
        ),
        (
            {"countries": {"include": ["CA"], "items": ["US"], "op": "exclude"}},
            "targeting.countries",
            "targeting.countries mixes Herald's include/exclude with the Ocamba form's "
            "items/op; use one form.",
        ),
        (
            {"countries": {"items": ["CA"], "op": "include", "from": 1}},
            "targeting.countries",
            'targeting.countries must be {"include": [...], "exclude": [...]} or '
            '{"items": [...], "op": "include" | "exclude"}.',
        ),
        (
            {"user_data": {"plan": {"items": ["pro"], "op": "maybe"}}},
            "targeting.user_data.plan.op",
            'targeting.user_data.plan.op must be "include" or "exclude".',
        ),
        (
            {"user_data": {"plan": {"items": "pro", "op": "include"}}},
            "targeting.user_data.plan.items",
            "targeting.user_data.plan.items must be a list.",
        ),
        (
            {"user_data": {"plan": {"items": [{"a": 1}], "op": "include"}}},
            "targeting.user_data.plan.items",
            "targeting.user_data.plan.items must be a value (string of at most 1024 "
            "characters, number, boolean or null) or a list of them.",
        ),
        (
            {"user_data": {"plan": "pro"}},
            "targeting.user_data.plan",
            'targeting.user_data.plan must be {"items": [...], "op": "include" | "exclude"}.',
        ),
        (
            {
                "user_data": {
                    "include": {"plan": "pro"},
                    "city": {"items": ["Paris"], "op": "include"},
                }
            },
            "targeting.user_data",
            "targeting.user_data mixes Herald's include/exclude objects with Ocamba-form "
            'attributes ({"items", "op"}); use one form.',
        ),
    ],
)
def test_bad_ocamba_targeting_is_refused_naming_the_field(
    api, targeting: dict[str, Any], field: str, message: str
) -> None:
    error = refusal(targeting)
    assert (error.code, error.message, error.details) == (
        "VALIDATION_ERROR",
        message,
        {"field": field},
    )
    client, project = api
    before = list(PushCampaign.objects.values())
    answer = client.post(base(project.pk), {"title": "t", "body": "b", "targeting": targeting})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {"field": field}
    assert list(PushCampaign.objects.values()) == before


def test_ocamba_keys_herald_does_not_have_are_refused_by_name(api) -> None:
    """The reference's full example: every key Herald lacks is named, with the keys
    Herald supports."""
    targeting = {
        key: {"items": ["1"], "op": "include"}
        for key in (
            "accounts",
            "application_groups",
            "applications",
            "apps",
            "browsers",
            "countries",
            "groups",
            "os",
            "regions",
            "remote_users",
        )
    }
    error = refusal(targeting)
    unsupported = [
        "accounts",
        "application_groups",
        "applications",
        "apps",
        "browsers",
        "groups",
        "os",
        "regions",
        "remote_users",
    ]
    assert error.code == "VALIDATION_ERROR"
    assert error.message == (
        f"targeting has keys Herald does not support: {', '.join(unsupported)}. "
        f"Supported keys: {', '.join(SUPPORTED)}."
    )
    assert error.details == {
        "field": "targeting",
        "unsupported": unsupported,
        "supported": SUPPORTED,
    }
    client, project = api
    answer = client.post(base(project.pk), {"title": "t", "body": "b", "targeting": targeting})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"]["unsupported"] == unsupported
    assert not PushCampaign.objects.exists()


def _audience_world(project: Any) -> None:
    for external_id, country, plan, provider, platform in [
        ("ca-pro", "CA", "pro", "apns", "ios"),
        ("ca-free", "CA", "free", "fcm", "android"),
        ("us-pro", "US", "pro", "fcm", "android"),
        ("fr-pro", "FR", "pro", "apns", "ios"),
    ]:
        user = AppUserFactory(
            project=project, external_id=external_id, attributes={"country": country, "plan": plan}
        )
        PushTokenFactory(project=project, app_user=user, provider=provider, platform=platform)


OCAMBA = {
    "countries": {"items": ["CA", "US"], "op": "include"},
    "user_data": {"plan": {"items": ["pro"], "op": "include"}},
    "users": {"items": ["us-pro"], "op": "exclude"},
}
HERALD = {
    "countries": {"include": ["CA", "US"]},
    "user_data": {"include": {"plan": ["pro"]}},
    "users": {"exclude": ["us-pro"]},
}


def test_the_api_stores_and_answers_herald_form_and_counts_alike(api) -> None:
    client, project = api
    _audience_world(project)
    created = client.post(base(project.pk), {"title": "t", "body": "b", "targeting": OCAMBA})
    assert created.status_code == 201, created.content
    assert created.json()["targeting"] == HERALD
    campaign = PushCampaign.objects.get(pk=created.json()["id"])
    assert campaign.targeting == HERALD
    audience = client.get(f"{base(project.pk)}/{campaign.pk}/audience").json()
    assert audience["total"] == 1  # ca-pro: CA or US, plan pro, not us-pro
    # The audience estimate (console, MCP herald_preview_audience) takes it too.
    estimate = services.audience_estimate(
        project=project, fields=validate_update({"targeting": OCAMBA})
    )
    assert estimate == audience
    # PATCH takes it and answers the canonical form.
    patched = client.patch(
        f"{base(project.pk)}/{campaign.pk}",
        {"targeting": {"countries": {"items": ["FR"], "op": "include"}}},
    )
    assert patched.status_code == 200
    assert patched.json()["targeting"] == {"countries": {"include": ["FR"]}}


# ------------------------------------------------------------------ segment_name


def test_segment_name_names_the_segment(api) -> None:
    client, project = api
    segment = SegmentFactory(project=project, name="Canadians")
    SegmentFactory(name="Canadians")  # another project's: not a candidate
    created = client.post(
        base(project.pk), {"title": "t", "body": "b", "segment_name": "Canadians"}
    )
    assert created.status_code == 201, created.content
    assert created.json()["segment_id"] == str(segment.pk)
    other = SegmentFactory(project=project, name="French")
    patched = client.patch(f"{base(project.pk)}/{created.json()['id']}", {"segment_name": "French"})
    assert patched.json()["segment_id"] == str(other.pk)


@pytest.mark.parametrize(
    ("body", "code", "message", "details"),
    [
        (
            {"segment_name": "Nobody"},
            "INVALID_SEGMENT_ID",
            "No segment of this project is named 'Nobody'.",
            {"field": "segment_name"},
        ),
        (
            {"segment_name": "Canadians", "segment_id": None},
            "VALIDATION_ERROR",
            "Give segment_id or segment_name, not both.",
            {"field": "segment_name"},
        ),
        (
            {"segment_name": " "},
            "VALIDATION_ERROR",
            "segment_name must not be blank.",
            {"field": "segment_name"},
        ),
        (
            {"segment_name": 7},
            "VALIDATION_ERROR",
            "segment_name must be a string.",
            {"field": "segment_name"},
        ),
    ],
)
def test_bad_segment_name_is_refused(api, body, code, message, details) -> None:
    client, project = api
    SegmentFactory(project=project, name="Canadians")
    answer = client.post(base(project.pk), {"title": "t", "body": "b", **body})
    assert answer.status_code == 400
    assert answer.json() == {"error": {"code": code, "message": message, "details": details}}
    assert not PushCampaign.objects.exists()


def test_a_name_several_segments_carry_is_ambiguous(api) -> None:
    client, project = api
    first = SegmentFactory(project=project, name="Twins")
    second = SegmentFactory(project=project, name="Twins")
    answer = client.post(base(project.pk), {"title": "t", "body": "b", "segment_name": "Twins"})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "AMBIGUOUS_SEGMENT_NAME",
        "message": "Several segments of this project are named 'Twins'; name one by segment_id.",
        "details": {"field": "segment_name", "segment_ids": [str(first.pk), str(second.pk)]},
    }
    assert not PushCampaign.objects.exists()
