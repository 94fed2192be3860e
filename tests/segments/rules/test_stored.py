"""Stored rules that no longer validate: one typed error, never a crash.

A segment written around the validator (an older admin, a hand edit, an older
grammar) must make every reader answer StoredRulesInvalid naming the segment, the
path and the reason, instead of a KeyError deep in the compiler (issue 9, item 1).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from segments.audience import resolve_audience
from segments.models import Segment
from segments.rules import StoredRulesInvalid, stored_rules
from segments.services import segment_refresh_count, segment_refresh_counts
from tests.segments.helpers import (
    EQUALS_REASON,
    EQUALS_RULE,
    apns_token,
    make_project,
    make_token,
    make_user,
)

pytestmark = pytest.mark.django_db

EQUALS = EQUALS_RULE
REASON = EQUALS_REASON


@pytest.fixture
def world() -> dict[str, Any]:
    project = make_project()
    user = make_user(project, "u1", {"country": "US"})
    make_token(project, user, apns_token(1))
    bad = Segment.objects.create(project=project, name="US (old admin)", rules=EQUALS)
    good = Segment.objects.create(
        project=project, name="US", rules={"attr": "country", "op": "eq", "value": "US"}
    )
    return {"project": project, "bad": bad, "good": good}


def expected_error(segment: Segment, path: str = "rules.op", reason: str = REASON) -> dict:
    return {
        "code": "INVALID_SEGMENT_RULES",
        "status": 409,
        "message": (
            f"Segment '{segment.name}' ({segment.pk}) has rules that no longer validate: "
            f"{reason} Fix the segment's rules (PATCH the segment, or edit it in the console)."
        ),
        "details": {"segment_id": str(segment.pk), "path": path, "reason": reason},
    }


def as_dict(exc: StoredRulesInvalid) -> dict:
    return {"code": exc.code, "status": exc.status, "message": exc.message, "details": exc.details}


def test_the_error_is_invalid_input() -> None:
    assert issubclass(StoredRulesInvalid, InvalidInput)


def test_stored_rules_returns_the_clean_rules_of_a_valid_segment(world: dict[str, Any]) -> None:
    assert stored_rules(world["good"]) == {"attr": "country", "op": "eq", "value": "US"}


@pytest.mark.parametrize(
    ("rules", "path", "reason"),
    [
        (EQUALS, "rules.op", REASON),
        ({"attribute": "country", "op": "eq", "value": "US"}, "rules", None),
        ({"all": [{"attr": "country", "op": "in", "value": "US"}]}, "rules.all[0].value", None),
        ([], "rules", None),  # falsy: compiled as-is it matched everyone
    ],
)
def test_stored_rules_names_segment_path_and_reason(
    world: dict[str, Any], rules: Any, path: str, reason: str | None
) -> None:
    Segment.objects.filter(pk=world["bad"].pk).update(rules=rules)
    world["bad"].refresh_from_db()

    with pytest.raises(StoredRulesInvalid) as caught:
        stored_rules(world["bad"])

    assert caught.value.details["path"] == path
    if reason is not None:
        assert as_dict(caught.value) == expected_error(world["bad"], path, reason)


def test_resolve_audience_raises_for_the_campaign_segment(world: dict[str, Any]) -> None:
    with pytest.raises(StoredRulesInvalid) as caught:
        resolve_audience(project=world["project"], segment=world["bad"])
    assert as_dict(caught.value) == expected_error(world["bad"])


@pytest.mark.parametrize("side", ["include", "exclude"])
def test_resolve_audience_raises_for_a_targeting_segment(world: dict[str, Any], side: str) -> None:
    targeting = {"segments": {side: [str(world["good"].pk), str(world["bad"].pk)]}}

    with pytest.raises(StoredRulesInvalid) as caught:
        resolve_audience(project=world["project"], targeting=targeting)

    assert as_dict(caught.value) == expected_error(world["bad"])


def test_refresh_count_raises_and_the_periodic_refresh_skips_it(world: dict[str, Any]) -> None:
    now = timezone.now()
    with pytest.raises(StoredRulesInvalid):
        segment_refresh_count(segment=world["bad"], now=now)

    assert segment_refresh_counts(now=now) == 1

    counts = dict(Segment.objects.values_list("name", "member_count"))
    assert counts == {"US (old admin)": None, "US": 1}
