"""The segment page's rule builder, server side: the field it writes, the console's
preview view (the API's preview, same answer and same envelope) and the attribute
keys it offers (issue 10)."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from segments.models import Segment
from segments.selectors import ATTRIBUTE_SCAN_USERS, attributes_seen
from tests.segments.helpers import (
    EQUALS_REASON,
    EQUALS_RULE,
    apns_token,
    audience_state,
    client_for,
    make_project,
    make_token,
    make_user,
)

pytestmark = pytest.mark.django_db

NESTED = {
    "all": [
        {"attr": "country", "op": "in", "value": ["FR", "BE"]},
        {
            "any": [
                {"attr": "plan", "op": "eq", "value": "pro"},
                {"attr": "seats", "op": "between", "value": [5, 50]},
                {"attr": "platform", "op": "eq", "value": "ios"},
            ]
        },
        {"not": {"attr": "beta", "op": "eq", "value": True}},
        {"attr": "created_at", "op": "gte", "value": "-30d"},
    ]
}
PREVIEW = "admin:segments_segment_preview"


def people() -> Any:
    project = make_project()
    make_user(project, "a", {"country": "FR", "plan": "pro"})
    make_user(project, "b", {"country": "BE", "seats": 10, "beta": True})
    make_user(project, "c", {"country": "BE", "seats": 12})
    ios = make_user(project, "d", {"country": "FR", "signup": "2024-05-01"})
    make_token(project, ios, apns_token(1))
    make_user(project, "e", {"country": "US", "plan": "pro", "tags": ["x", "y"]})
    return project


def preview(staff: Client, body: Any) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return staff.post(reverse(PREVIEW), data=data, content_type="application/json")


def test_the_builders_json_round_trips_through_add_and_change(staff: Client) -> None:
    project = people()
    form = {"project": str(project.pk), "name": "n", "description": "", "rules": json.dumps(NESTED)}

    added = staff.post(reverse("admin:segments_segment_add"), form)

    assert added.status_code == 302
    segment = Segment.objects.get()
    assert segment.rules == NESTED
    page = staff.get(reverse("admin:segments_segment_change", args=[segment.pk])).content.decode()
    # The builder reads the field's value back from the textarea it writes.
    textarea = page.split('name="rules"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    assert json.loads(html.unescape(textarea)) == NESTED
    assert "data-rule-builder" in page and f'data-project="{project.pk}"' in page
    assert "segments/rules.js" in page and "segments/rules.css" in page
    # The saved segment's count is fresh on its page (not "-" until the refresh).
    assert '<div class="readonly">3 (counted just now)</div>' in page


def test_invalid_rules_are_refused_with_the_apis_message_next_to_the_builder(
    staff: Client,
) -> None:
    project = people()
    before = audience_state()
    rules = {"all": [{"attr": "country", "op": "eq", "value": "FR"}, EQUALS_RULE]}
    form = {"project": str(project.pk), "name": "n", "description": "", "rules": json.dumps(rules)}

    response = staff.post(reverse("admin:segments_segment_add"), form)

    assert response.status_code == 200
    api = client_for(project).post(
        f"/admin/projects/{project.pk}/segments/preview", {"rules": rules}, format="json"
    )
    message = api.json()["error"]["message"]
    assert message == EQUALS_REASON.replace("rules.op", "rules.all[1].op")
    errors = response.context["adminform"].form.errors
    assert errors == {"rules": [f"{message} (VALIDATION_ERROR)"]}
    page = response.content.decode()
    assert 'data-error-path="rules.all[1].op"' in page
    assert audience_state() == before


def test_the_console_preview_counts_what_the_api_preview_counts(staff: Client) -> None:
    project = people()
    api = client_for(project).post(
        f"/admin/projects/{project.pk}/segments/preview", {"rules": NESTED}, format="json"
    )

    response = preview(staff, {"project_id": str(project.pk), "rules": NESTED})

    assert api.status_code == response.status_code == 200
    body = response.json()
    assert body["count"] == api.json()["count"] == 3
    assert [row["external_id"] for row in body["sample"]] == [
        row["external_id"] for row in api.json()["sample"]
    ]
    assert [row["external_id"] for row in body["sample"]] == ["d", "c", "a"]
    first = body["sample"][0]
    assert first["attributes"] == {"country": "FR", "signup": "2024-05-01"}
    assert first["url"] == reverse("admin:segments_appuser_change", args=[first["id"]])
    everyone = preview(staff, {"project_id": str(project.pk), "rules": {}})
    assert everyone.json()["count"] == 5


@pytest.mark.parametrize(
    ("body", "status", "code", "details"),
    [
        ("not json", 400, "INVALID_BODY", {}),
        ("[1]", 400, "INVALID_BODY", {}),
        ({"rules": {}}, 400, "VALIDATION_ERROR", {"field": "project_id"}),
        ({"project_id": "nope", "rules": {}}, 404, "NOT_FOUND", {}),
        ({"project_id": "PROJECT"}, 400, "MISSING_RULES", {"field": "rules"}),
        ({"project_id": "PROJECT", "rules": {}, "x": 1}, 400, "VALIDATION_ERROR", {"field": "x"}),
        (
            {"project_id": "PROJECT", "rules": {"any": [EQUALS_RULE]}},
            400,
            "VALIDATION_ERROR",
            {"field": "rules", "path": "rules.any[0].op"},
        ),
    ],
)
def test_bad_preview_input_gets_a_clear_error_in_the_envelope(
    staff: Client, body: Any, status: int, code: str, details: dict[str, Any]
) -> None:
    project = people()
    if isinstance(body, dict) and body.get("project_id") == "PROJECT":
        body = {**body, "project_id": str(project.pk)}

    response = preview(staff, body)

    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["details"]) == (code, details)
    assert error["message"]


def test_the_preview_view_answers_only_logged_in_staff_posts(staff: Client) -> None:
    project = people()
    got = staff.get(reverse(PREVIEW))
    assert got.status_code == 405
    assert got.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    anonymous = Client().post(
        reverse(PREVIEW),
        json.dumps({"project_id": str(project.pk), "rules": {}}),
        content_type="application/json",
    )
    assert anonymous.status_code == 302  # to the console's login page
    assert "/ops/login/" in anonymous["Location"]


def test_attribute_keys_offered_are_those_recent_users_carry(staff: Client) -> None:
    project = people()
    make_user(make_project("other"), "z", {"secret_key": "no"})

    response = staff.get(reverse("admin:segments_segment_attributes"), {"project_id": project.pk})

    assert response.status_code == 200
    assert response.json() == {
        "attributes": [
            {"name": "beta", "type": "boolean", "examples": [True]},
            {"name": "country", "type": "string", "examples": ["BE", "FR", "US"]},
            {"name": "plan", "type": "string", "examples": ["pro"]},
            {"name": "seats", "type": "number", "examples": [10, 12]},
            {"name": "signup", "type": "date", "examples": ["2024-05-01"]},
            {"name": "tags", "type": "array", "examples": ["x", "y"]},
        ],
        "scanned_users": ATTRIBUTE_SCAN_USERS,
    }
    missing = staff.get(reverse("admin:segments_segment_attributes"))
    assert missing.status_code == 400
    assert missing.json()["error"]["details"] == {"field": "project_id"}


def test_attribute_keys_are_read_from_a_bounded_number_of_users() -> None:
    project = make_project()
    make_user(project, "old", {"only_old": 1}, created_at=timezone.now() - timedelta(days=1))
    for n in range(3):
        make_user(project, f"new-{n}", {"fresh": n})

    seen = attributes_seen(project=project, users=3)

    assert [(a.name, a.type, a.examples) for a in seen] == [("fresh", "number", [0, 1, 2])]
