"""app_version under the ordering operators compares as a version, in SQL on both
databases and in the reference evaluator: exact matches for the cases people mean."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from segments.models import AppUser
from segments.rules import compile_rules, evaluate_python, validate_rules, version_key
from tests.segments.helpers import make_project

NOW = timezone.now()
# external_id -> stored app_version (absent: "missing"); "build" holds the same value,
# to show that a custom key keeps string order.
STORED: dict[str, Any] = {
    "2.9": "2.9",
    "2.10": "2.10",
    "2.9.0": "2.9.0",
    "2.9.1": "2.9.1",
    "10": "10",
    "beta": "2.1-beta",
    "v3": "v3",
    "empty": "",
    "number": 2.9,
    "missing": None,
}
NOT_VERSIONS = {"v3", "empty", "number", "missing"}
EVERYONE = set(STORED)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("gte", "2.9", {"2.9", "2.10", "2.9.0", "2.9.1", "10"}),
        ("gt", "2.9", {"2.10", "2.9.1", "10"}),
        ("gt", "2.9.0", {"2.10", "2.9.1", "10"}),
        ("gt", "2.09", {"2.10", "2.9.1", "10"}),
        ("lt", "2.9", {"beta"}),
        ("lt", "2.10", {"2.9", "2.9.0", "2.9.1", "beta"}),
        ("lte", "2.9.0", {"2.9", "2.9.0", "beta"}),
        ("gte", "2.1", {"2.9", "2.10", "2.9.0", "2.9.1", "10", "beta"}),
        ("gt", "2.1", {"2.9", "2.10", "2.9.0", "2.9.1", "10"}),
        ("between", ["2.9.1", "2.10"], {"2.9.1", "2.10"}),
        ("between", ["2.9", "2.9.0"], {"2.9", "2.9.0"}),
        ("not_between", ["2.9.1", "2.10"], EVERYONE - {"2.9.1", "2.10"}),
        ("not_between", ["0", "99"], NOT_VERSIONS),
        # Every other operator still compares strings.
        ("eq", "2.9", {"2.9"}),
        ("neq", "2.9", EVERYONE - {"2.9"}),
        ("starts_with", "2.9", {"2.9", "2.9.0", "2.9.1"}),
        ("in", ["2.10", "v3"], {"2.10", "v3"}),
    ],
)
@pytest.mark.django_db
def test_app_version_orders_as_a_version(op: str, value: Any, expected: set[str]) -> None:
    project = make_project()
    for external_id, version in STORED.items():
        attributes = {} if version is None else {"app_version": version, "build": version}
        AppUser.objects.create(project=project, external_id=external_id, attributes=attributes)
    rules = validate_rules({"attr": "app_version", "op": op, "value": value})

    matched = set(
        AppUser.objects.filter(project=project)
        .filter(compile_rules(rules, now=NOW))
        .values_list("external_id", flat=True)
    )
    evaluated = {
        user.external_id
        for user in AppUser.objects.filter(project=project)
        if evaluate_python(rules, {"attributes": user.attributes}, now=NOW)
    }

    assert matched == expected
    assert evaluated == expected


@pytest.mark.django_db
def test_a_custom_key_keeps_string_order() -> None:
    project = make_project()
    for external_id, version in STORED.items():
        attributes = {} if version is None else {"build": version}
        AppUser.objects.create(project=project, external_id=external_id, attributes=attributes)
    rules = validate_rules({"attr": "build", "op": "gt", "value": "2.9"})
    matched = AppUser.objects.filter(project=project).filter(compile_rules(rules, now=NOW))
    # "2.10" < "2.9" < "v3" as strings: only app_version is a version.
    assert set(matched.values_list("external_id", flat=True)) == {"2.9.0", "2.9.1", "v3"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("2.10", ((1, "2"), (2, "10"))),
        ("2.9.0", ((1, "2"), (1, "9"))),
        ("02.09.00", ((1, "2"), (1, "9"))),
        ("2.1-beta", ((1, "2"), (1, "1"))),
        ("2.10.", ((1, "2"), (2, "10"))),
        ("0.0", ((1, "0"),)),
        ("1.0.2.0", ((1, "1"), (1, "0"), (1, "2"))),
        ("12345678901234567890", ((20, "12345678901234567890"),)),
        ("v3", None),
        (".5", None),
        ("", None),
    ],
)
def test_version_key(text: str, key: Any) -> None:
    assert version_key(text) == key
