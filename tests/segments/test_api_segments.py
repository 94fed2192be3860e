"""Segments API: CRUD, previews, error paths (each refused request writes nothing)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.models import ApiKey
from segments.models import Segment
from tests.factories import CampaignFactory, api_client
from tests.segments.helpers import (
    EQUALS_REASON,
    EQUALS_RULE,
    audience_state,
    client_for,
    error,
    make_project,
    make_user,
)

pytestmark = pytest.mark.django_db

US_RULE = {"attr": "country", "op": "eq", "value": "US"}


def url(project: Any, suffix: str = "") -> str:
    return f"/admin/projects/{project.id}/segments{suffix}"


@pytest.fixture
def project() -> Any:
    return make_project()


@pytest.fixture
def client(project: Any) -> Any:
    return client_for(project)


def test_create_returns_the_segment(client: Any, project: Any) -> None:
    response = client.post(url(project), {"name": "US", "rules": US_RULE})
    assert response.status_code == 201
    body = response.json()
    segment = Segment.objects.get()
    assert body == {
        "id": str(segment.id),
        "project_id": str(project.id),
        "name": "US",
        "description": "",
        "rules": US_RULE,
        "member_count": None,
        "evaluated_at": None,
        "rules_error": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert segment.rules == US_RULE


def test_create_accepts_trailing_slash_and_the_everyone_segment(client: Any, project: Any) -> None:
    response = client.post(url(project, "/"), {"name": "All", "rules": {}})
    assert response.status_code == 201
    assert Segment.objects.get().rules == {}


@pytest.mark.parametrize(
    ("body", "status", "code", "details"),
    [
        ({"rules": US_RULE}, 400, "MISSING_NAME", {"field": "name"}),
        ({"name": "  ", "rules": US_RULE}, 400, "MISSING_NAME", {"field": "name"}),
        ({"name": "x" * 201, "rules": US_RULE}, 400, "VALIDATION_ERROR", {"field": "name"}),
        ({"name": "n"}, 400, "MISSING_RULES", {"field": "rules"}),
        (
            {"name": "n", "rules": US_RULE, "member_count": 3},
            400,
            "VALIDATION_ERROR",
            {"field": "member_count"},
        ),
        (
            {"name": "n", "rules": US_RULE, "description": 5},
            400,
            "VALIDATION_ERROR",
            {"field": "description"},
        ),
        ({"name": "n", "rules": []}, 400, "VALIDATION_ERROR", {"field": "rules", "path": "rules"}),
        (
            {"name": "n", "rules": {"all": [US_RULE, {"attr": "age", "op": "bogus", "value": 1}]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.all[1].op"},
        ),
        (
            {
                "name": "n",
                "rules": {
                    "any": [US_RULE, US_RULE, {"not": {"attr": "age", "op": "gt", "value": True}}]
                },
            },
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.any[2].not.value"},
        ),
        (
            {"name": "n", "rules": {"all": [{"attr": "created_at", "op": "gt", "value": "soon"}]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.all[0].value"},
        ),
        (
            {"name": "n", "rules": {"attr": "score", "op": "between", "value": [5, 1]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.value"},
        ),
        (
            {"name": "n", "rules": {"attr": "platform", "op": "in", "value": ["ios", "tv"]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.value[1]"},
        ),
        (
            {"name": "n", "rules": {"attr": "country", "op": "exists", "value": "US"}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.value"},
        ),
        (
            {"name": "n", "rules": {"attr": "bad key!", "op": "eq", "value": 1}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.attr"},
        ),
        (
            {
                "name": "n",
                "rules": {"all": [US_RULE, {"attr": "app_version", "op": "gte", "value": "v2"}]},
            },
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.all[1].value"},
        ),
        (
            {"name": "n", "rules": {"all": []}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.all"},
        ),
        (
            {"name": "n", "rules": {"all": [US_RULE], "any": [US_RULE]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules"},
        ),
    ],
)
def test_create_refusals_write_nothing(
    client: Any, project: Any, body: dict[str, Any], status: int, code: str, details: Any
) -> None:
    before = audience_state()
    assert error(client.post(url(project), body, format="json")) == (status, code, details)
    assert audience_state() == before


def test_rule_limits_name_the_node(client: Any, project: Any) -> None:
    deep: dict[str, Any] = US_RULE
    for _ in range(7):
        deep = {"not": deep}
    status, code, details = error(client.post(url(project), {"name": "n", "rules": deep}))
    assert (status, code, details["path"]) == (
        400,
        "VALIDATION_ERROR",
        "rules.not.not.not.not.not.not",
    )
    wide = {"any": [US_RULE] * 200}
    status, code, details = error(client.post(url(project), {"name": "n", "rules": wide}))
    assert (status, code, details["path"]) == (
        400,
        "VALIDATION_ERROR",
        "rules.any[199]",
    )  # the root is node 1
    assert Segment.objects.count() == 0


def test_body_that_is_not_an_object_is_invalid_body(client: Any, project: Any) -> None:
    response = client.post(url(project), data="[1]", content_type="application/json")
    assert error(response) == (400, "INVALID_BODY", {})
    assert Segment.objects.count() == 0


def test_list_is_paginated_newest_first(client: Any, project: Any) -> None:
    now = timezone.now()
    ids = []
    for i in range(3):
        segment = Segment.objects.create(project=project, name=f"s{i}", rules={})
        Segment.objects.filter(pk=segment.pk).update(created_at=now + timedelta(minutes=i))
        ids.append(str(segment.pk))
    Segment.objects.create(project=make_project("other"), name="elsewhere", rules={})
    first = client.get(url(project), {"limit": 2}).json()
    assert [s["id"] for s in first["results"]] == [ids[2], ids[1]]
    second = client.get(url(project), {"limit": 2, "cursor": first["next"]}).json()
    assert [s["id"] for s in second["results"]] == [ids[0]]
    assert second["next"] is None


@pytest.mark.parametrize(
    ("params", "details"),
    [({"limit": "0"}, {"field": "limit"}), ({"cursor": "bm9wZQ"}, {"field": "cursor"})],
)
def test_list_refuses_bad_paging(client: Any, project: Any, params: Any, details: Any) -> None:
    assert error(client.get(url(project), params)) == (400, "VALIDATION_ERROR", details)


def test_fetch_and_id_errors(client: Any, project: Any) -> None:
    segment = Segment.objects.create(project=project, name="s", rules=US_RULE)
    assert client.get(url(project, f"/{segment.id}")).json()["rules"] == US_RULE
    assert error(client.get(url(project, "/not-a-uuid"))) == (
        400,
        "INVALID_SEGMENT_ID",
        {"field": "segmentId"},
    )
    assert error(client.get(url(project, f"/{uuid.uuid4()}"))) == (404, "NOT_FOUND", {})
    foreign = Segment.objects.create(project=make_project("other"), name="f", rules={})
    assert error(client.get(url(project, f"/{foreign.id}"))) == (404, "NOT_FOUND", {})


def test_patch_changes_fields_and_forgets_the_count_when_rules_change(
    client: Any, project: Any
) -> None:
    evaluated = timezone.now()
    segment = Segment.objects.create(
        project=project, name="s", rules=US_RULE, member_count=7, evaluated_at=evaluated
    )
    response = client.patch(url(project, f"/{segment.id}"), {"name": "renamed"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["member_count"]) == ("renamed", 7)
    new_rules = {"attr": "country", "op": "in", "value": ["FR"]}
    response = client.patch(url(project, f"/{segment.id}"), {"rules": new_rules})
    assert response.status_code == 200
    segment.refresh_from_db()
    assert (segment.rules, segment.member_count, segment.evaluated_at) == (new_rules, None, None)


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ({}, "EMPTY_UPDATE", {}),
        ({"name": ""}, "MISSING_NAME", {"field": "name"}),
        ({"rules": None}, "MISSING_RULES", {"field": "rules"}),
        (
            {"rules": {"attr": "country", "op": "in", "value": []}},
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.value"},
        ),
        ({"id": str(uuid.UUID(int=1))}, "VALIDATION_ERROR", {"field": "id"}),
    ],
)
def test_patch_refusals_write_nothing(
    client: Any, project: Any, body: dict[str, Any], code: str, details: Any
) -> None:
    segment = Segment.objects.create(project=project, name="s", rules=US_RULE, member_count=3)
    before = audience_state()
    assert error(client.patch(url(project, f"/{segment.id}"), body, format="json")) == (
        400,
        code,
        details,
    )
    assert audience_state() == before


def test_patch_unknown_segment_is_404_and_writes_nothing(client: Any, project: Any) -> None:
    before = audience_state()
    response = client.patch(url(project, f"/{uuid.uuid4()}"), {"name": "x"})
    assert error(response) == (404, "NOT_FOUND", {})
    assert error(client.patch(url(project, "/nope"), {"name": "x"}))[1] == "INVALID_SEGMENT_ID"
    assert audience_state() == before


def test_delete(client: Any, project: Any) -> None:
    segment = Segment.objects.create(project=project, name="s", rules={})
    assert client.delete(url(project, f"/{segment.id}")).status_code == 204
    assert Segment.objects.count() == 0
    assert error(client.delete(url(project, f"/{segment.id}"))) == (404, "NOT_FOUND", {})


def test_delete_of_a_segment_used_by_a_campaign_is_409(client: Any, project: Any) -> None:
    segment = Segment.objects.create(project=project, name="s", rules={})
    campaign = CampaignFactory(project=project, segment=segment)
    before = audience_state()
    assert error(client.delete(url(project, f"/{segment.id}"))) == (
        409,
        "SEGMENT_IN_USE",
        {"campaign_ids": [str(campaign.pk)]},
    )
    assert audience_state() == before


def test_preview_of_a_saved_segment_counts_and_samples_newest_first(
    client: Any, project: Any
) -> None:
    now = timezone.now()
    users = [
        make_user(project, f"u{i}", {"country": "US", "n": i}, created_at=now - timedelta(hours=i))
        for i in range(12)
    ]
    make_user(project, "fr", {"country": "FR"})
    make_user(make_project("other"), "elsewhere", {"country": "US"})
    segment = Segment.objects.create(project=project, name="US", rules=US_RULE)
    response = client.post(url(project, f"/{segment.id}/preview"))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 12
    assert body["sample"] == [
        {"id": str(u.id), "external_id": u.external_id, "attributes": u.attributes}
        for u in users[:10]
    ]


def test_preview_of_unsaved_rules(client: Any, project: Any) -> None:
    make_user(project, "a", {"country": "US", "plan": "pro"})
    make_user(project, "b", {"country": "US"})
    rules = {"all": [US_RULE, {"attr": "plan", "op": "neq", "value": "pro"}]}
    response = client.post(url(project, "/preview"), {"rules": rules})
    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert [u["external_id"] for u in response.json()["sample"]] == ["b"]


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ({}, "MISSING_RULES", {"field": "rules"}),
        ({"rules": US_RULE, "name": "x"}, "VALIDATION_ERROR", {"field": "name"}),
        (
            {"rules": {"not": {"attr": "n", "op": "gt"}}},
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.not.value"},
        ),
    ],
)
def test_preview_of_unsaved_rules_refusals(
    client: Any, project: Any, body: dict[str, Any], code: str, details: Any
) -> None:
    before = audience_state()
    assert error(client.post(url(project, "/preview"), body, format="json")) == (400, code, details)
    assert audience_state() == before


def test_preview_errors_for_saved_segments(client: Any, project: Any) -> None:
    assert error(client.post(url(project, "/x/preview")))[:2] == (400, "INVALID_SEGMENT_ID")
    assert error(client.post(url(project, f"/{uuid.uuid4()}/preview")))[:2] == (404, "NOT_FOUND")


# ------------------------------------------- stored rules that no longer validate


def test_preview_of_stored_rules_that_no_longer_validate_is_409_not_500(
    client: Any, project: Any
) -> None:
    make_user(project, "u1", {"country": "US"})
    segment = Segment.objects.create(project=project, name="US (old)", rules=EQUALS_RULE)
    before = audience_state()

    response = client.post(url(project, f"/{segment.id}/preview"))

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "INVALID_SEGMENT_RULES",
            "message": (
                f"Segment 'US (old)' ({segment.id}) has rules that no longer validate: "
                f"{EQUALS_REASON} Fix the segment's rules (PATCH the segment, or edit it in "
                "the console)."
            ),
            "details": {"segment_id": str(segment.id), "path": "rules.op", "reason": EQUALS_REASON},
        }
    }
    assert audience_state() == before


def test_list_and_fetch_report_stored_rules_that_no_longer_validate(
    client: Any, project: Any
) -> None:
    bad = Segment.objects.create(project=project, name="old", rules=EQUALS_RULE)
    Segment.objects.create(project=project, name="new", rules=US_RULE)

    listed = client.get(url(project))
    fetched = client.get(url(project, f"/{bad.id}"))

    assert listed.status_code == 200
    assert {s["name"]: s["rules_error"] for s in listed.json()["results"]} == {
        "old": {"path": "rules.op", "reason": EQUALS_REASON},
        "new": None,
    }
    assert fetched.status_code == 200
    assert fetched.json()["rules"] == EQUALS_RULE
    assert fetched.json()["rules_error"] == {"path": "rules.op", "reason": EQUALS_REASON}


def test_patching_valid_rules_repairs_a_segment(client: Any, project: Any) -> None:
    make_user(project, "u1", {"country": "US"})
    bad = Segment.objects.create(project=project, name="old", rules=EQUALS_RULE)

    patched = client.patch(url(project, f"/{bad.id}"), {"rules": US_RULE})
    preview = client.post(url(project, f"/{bad.id}/preview"))

    assert patched.status_code == 200
    assert patched.json()["rules_error"] is None
    assert preview.status_code == 200
    assert preview.json()["count"] == 1


def test_client_keys_may_not_touch_segments(project: Any) -> None:
    client = client_for(project, scope=ApiKey.Scope.CLIENT)
    segment = Segment.objects.create(project=project, name="s", rules={})
    before = audience_state()
    for response in (
        client.get(url(project)),
        client.post(url(project), {"name": "n", "rules": {}}),
        client.patch(url(project, f"/{segment.id}"), {"name": "x"}),
        client.delete(url(project, f"/{segment.id}")),
        client.post(url(project, f"/{segment.id}/preview")),
        client.post(url(project, "/preview"), {"rules": {}}),
    ):
        assert error(response)[:2] == (403, "FORBIDDEN")
    assert audience_state() == before


def test_other_projects_key_gets_404_and_no_key_401(project: Any) -> None:
    other_client = client_for(make_project("other"))
    segment = Segment.objects.create(project=project, name="s", rules={})
    assert error(other_client.get(url(project)))[:2] == (404, "NOT_FOUND")
    assert error(other_client.delete(url(project, f"/{segment.id}")))[:2] == (404, "NOT_FOUND")
    assert error(api_client().get(url(project)))[:2] == (401, "UNAUTHENTICATED")
    assert Segment.objects.count() == 1
