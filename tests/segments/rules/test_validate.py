"""Rule validation paths and date handling that the API tests do not reach."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import InvalidInput
from segments.rules import canonical_date_value, canonical_instant, validate_rules


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ({"attr": "seen", "op": "gt", "value": "2024-01-01T10:00"}, "rules.value"),
        ({"attr": "seen", "op": "gt", "value": "2024-01-01T99:00:00Z"}, "rules.value"),
        ({"attr": "created_at", "op": "gte", "value": "-99999999d"}, "rules.value"),
        ({"attr": "created_at", "op": "in", "value": ["-1d"]}, "rules.op"),
        ({"attr": "created_at", "op": "between", "value": ["-1d"]}, "rules.value"),
        ({"attr": "platform", "op": "contains", "value": "io"}, "rules.op"),
        ({"attr": "provider", "op": "eq", "value": "gcm"}, "rules.value"),
        ({"attr": "subscribed_age", "op": "gt", "value": 1.5}, "rules.value"),
        ({"attr": "subscribed_age", "op": "between", "value": [9, 2]}, "rules.value"),
        ({"attr": "subscribed_age", "op": "exists"}, "rules.op"),
        ({"attr": "external_id", "op": "eq", "value": 5}, "rules.value"),
        ({"attr": "external_id", "op": "in", "value": ["a", 5]}, "rules.value[1]"),
        ({"attr": "score", "op": "between", "value": [1, "b"]}, "rules.value"),
        ({"attr": "score", "op": "between", "value": ["2024-01-01", "b"]}, "rules.value"),
        ({"attr": "score", "op": "gt", "value": [1]}, "rules.value"),
        ({"attr": "score", "op": "eq", "value": {"a": 1}}, "rules.value"),
        ({"attr": "score", "op": "eq", "value": 2.0**60}, "rules.value"),
        ({"attr": "score", "op": "contains", "value": ""}, "rules.value"),
        ({"attr": "score", "op": "in", "value": list(range(501))}, "rules.value"),
        ({"attr": "score", "op": "eq", "value": "x" * 1001}, "rules.value"),
        ({"attr": "score", "op": "eq"}, "rules.value"),
        ({"attr": "score", "op": "eq", "value": 1, "extra": 1}, "rules"),
        ({"not": [{"attr": "score", "op": "exists"}]}, "rules.not"),
        ({"all": "nope"}, "rules.all"),
        ({"op": "eq", "value": 1}, "rules.attr"),
        ({"attr": "app_version", "op": "gt", "value": "2.1-beta"}, "rules.value"),
        ({"attr": "app_version", "op": "gte", "value": "v3"}, "rules.value"),
        ({"attr": "app_version", "op": "lt", "value": ""}, "rules.value"),
        ({"attr": "app_version", "op": "lte", "value": 2.9}, "rules.value"),
        ({"attr": "app_version", "op": "gt", "value": "2..1"}, "rules.value"),
        ({"attr": "app_version", "op": "gt", "value": "2."}, "rules.value"),
        ({"attr": "app_version", "op": "gt", "value": "2024-05-01"}, "rules.value"),
        ({"attr": "app_version", "op": "gt", "value": "1" * 1001}, "rules.value"),
        ({"attr": "app_version", "op": "between", "value": ["2.10", "2.9"]}, "rules.value"),
        ({"attr": "app_version", "op": "not_between", "value": ["2.9", "x"]}, "rules.value[1]"),
        ({"attr": "app_version", "op": "between", "value": ["2.9"]}, "rules.value"),
        (
            {
                "all": [
                    {"attr": "country", "op": "eq", "value": "US"},
                    {"not": {"attr": "app_version", "op": "lte", "value": "3.x"}},
                ]
            },
            "rules.all[1].not.value",
        ),
    ],
)
def test_invalid_rules_name_the_node(rules: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_rules(rules)
    assert (caught.value.code, caught.value.details) == (
        "VALIDATION_ERROR",
        {"field": "rules", "path": path},
    )


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"attr": "seen", "op": "gte", "value": "2024-01-01T10:00:00+02:00"},
        {"attr": "seen", "op": "lt", "value": "+2w"},
        {"attr": "last_seen_at", "op": "not_between", "value": ["-30m", "2030-01-01"]},
        {"attr": "score", "op": "between", "value": ["2024-01-01", "-1d"]},
        {"attr": "score", "op": "not_in", "value": ["a", 1, 2.5, True]},
        {"attr": "k.x:y-z", "op": "not_exists"},
        {"attr": "platform", "op": "not_in", "value": ["web"]},
        {"attr": "app_version", "op": "between", "value": ["2.9.0", "2.9"]},  # equal versions
        {"attr": "app_version", "op": "eq", "value": "2.1-beta"},  # eq compares strings
        {"attr": "app_version", "op": "in", "value": ["v3", 3]},
        {"attr": "build", "op": "gt", "value": "v3"},  # only app_version is a version
    ],
)
def test_valid_rules_come_back_unchanged(rules: dict[str, Any]) -> None:
    assert validate_rules(rules) == rules


def test_exists_drops_a_null_value() -> None:
    rules = {"attr": "k", "op": "exists", "value": None}
    assert validate_rules(rules) == {"attr": "k", "op": "exists"}


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2024-05-01", "2024-05-01"),
        ("2024-05-01T10:00:00+02:00", "2024-05-01T08:00:00.000Z"),
        ("2024-05-01T10:00:00.123456Z", "2024-05-01T10:00:00.123Z"),
        ("2024-05-01 10:00", "2024-05-01T10:00:00.000Z"),  # naive: taken as UTC
        ("2024-02-30", None),
        ("20240501", None),
        ("May 1st", None),
    ],
)
def test_canonical_dates(text: str, stored: str | None) -> None:
    assert canonical_date_value(text) == stored


def test_canonical_instant_is_fixed_width() -> None:
    assert canonical_instant(datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == (
        "0999-01-02T03:04:05.006Z"
    )
