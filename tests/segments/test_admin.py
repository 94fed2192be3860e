"""The segment admin is a door, not an owner: its form validates through
`segments.services.clean_segment_fields` (the API's validator) and saves through
the segment services, so it can no longer store rules the API refuses (issue 9)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from segments.models import Segment
from tests.console import url
from tests.factories import AppUserFactory
from tests.segments.helpers import EQUALS_REASON, EQUALS_RULE, audience_state, make_project

pytestmark = pytest.mark.django_db

US_RULE = {"attr": "country", "op": "eq", "value": "US"}


def form(project: Any, **overrides: Any) -> dict[str, Any]:
    data = {"project": str(project.pk), "name": "US", "description": "", "rules": US_RULE}
    data.update(overrides)
    data["rules"] = json.dumps(data["rules"])
    return data


def form_errors(response: Any) -> dict[str, list[str]]:
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


def test_add_refuses_rules_the_api_refuses_and_writes_nothing(staff: Client) -> None:
    project = make_project()
    before = audience_state()

    response = staff.post(reverse("admin:segments_segment_add"), form(project, rules=EQUALS_RULE))

    assert response.status_code == 200
    assert form_errors(response) == {"rules": [f"{EQUALS_REASON} (VALIDATION_ERROR)"]}
    assert audience_state() == before


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"name": " "}, {"name": ["name is required. (MISSING_NAME)"]}),
        (
            {"rules": []},
            {
                "rules": [
                    "rules must be an object: a group (all/any/not) or a condition. "
                    "(VALIDATION_ERROR)"
                ]
            },
        ),
        (
            {"rules": {"all": [US_RULE, {"attr": "plan", "op": "in", "value": "pro"}]}},
            {"rules": ["rules.all[1].value must be a list. (VALIDATION_ERROR)"]},
        ),
    ],
)
def test_add_reports_the_validators_errors_on_their_fields(
    staff: Client, overrides: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    project = make_project()

    response = staff.post(reverse("admin:segments_segment_add"), form(project, **overrides))

    assert response.status_code == 200
    assert form_errors(response) == errors
    assert Segment.objects.count() == 0


def test_add_creates_through_the_service(staff: Client) -> None:
    project = make_project()

    response = staff.post(reverse("admin:segments_segment_add"), form(project))

    assert response.status_code == 302
    segment = Segment.objects.get()
    assert (segment.project_id, segment.name, segment.rules) == (project.pk, "US", US_RULE)
    assert (segment.member_count, segment.evaluated_at) == (None, None)


def test_change_refuses_invalid_rules_and_keeps_the_row(staff: Client) -> None:
    project = make_project()
    segment = Segment.objects.create(project=project, name="US", rules=US_RULE)
    before = audience_state()

    response = staff.post(
        reverse("admin:segments_segment_change", args=[segment.pk]),
        form(project, rules=EQUALS_RULE),
    )

    assert response.status_code == 200
    assert form_errors(response) == {"rules": [f"{EQUALS_REASON} (VALIDATION_ERROR)"]}
    assert audience_state() == before


def test_change_of_rules_forgets_the_count_as_the_api_does(staff: Client) -> None:
    project = make_project()
    segment = Segment.objects.create(
        project=project, name="US", rules={}, member_count=7, evaluated_at=timezone.now()
    )

    response = staff.post(
        reverse("admin:segments_segment_change", args=[segment.pk]), form(project)
    )

    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.rules, segment.member_count, segment.evaluated_at) == (US_RULE, None, None)


def test_a_stored_segment_that_no_longer_validates_is_reported_not_crashed_on(
    staff: Client,
) -> None:
    project = make_project()
    bad = Segment.objects.create(project=project, name="old", rules=EQUALS_RULE)
    Segment.objects.create(project=project, name="new", rules=US_RULE)

    listed = staff.get(reverse("admin:segments_segment_changelist"))
    page = staff.get(reverse("admin:segments_segment_change", args=[bad.pk]))

    assert listed.status_code == 200
    text = listed.content.decode()
    assert '<td class="field-rules_status">Invalid at rules.op</td>' in text
    assert '<td class="field-rules_status">OK</td>' in text
    assert page.status_code == 200
    assert EQUALS_REASON in page.content.decode()


def test_app_user_changelist_shows_attributes_and_searches_external_id(
    staff: Client, some_of_everything: dict[str, Any]
) -> None:
    AppUserFactory.create(project=some_of_everything["core_project"], external_id="someone-else")

    response = staff.get(url("segments_appuser_changelist"), {"q": "u-1"})

    rows = list(response.context["cl"].result_list)
    assert [u.external_id for u in rows] == ["u-1"]
    page = response.content.decode()
    assert '<td class="field-country">FR</td>' in page
    assert '<td class="field-language">fr</td>' in page
