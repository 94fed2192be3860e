"""Property test: the SQL compilation of a rule selects exactly the users the Python
reference evaluator accepts, for random users and random rules over every operator,
every attribute kind and nested all/any/not groups.

Values are drawn from small pools on purpose, so that rule values and stored values
collide often (equal strings, numbers equal as int and float, dates on the same day,
a number stored where a string is compared...), which is where SQL and Python could
disagree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.models import Project
from delivery.models import PushToken
from segments.models import AppUser
from segments.rules import (
    ALLOWED_OPS,
    canonical_instant,
    compile_rules,
    evaluate_python,
    validate_rules,
    version_key,
)

NOW = timezone.now().replace(microsecond=123456)
KEYS = ["k1", "k.x", "country", "app_version"]
# Tiny pools per type: stored and rule values collide often, which is where SQL and
# Python could disagree (equal strings, 1 vs 1.0, "5" vs 5, the same day...).
# "1", "true" and '["a"]' are the text forms of other JSON types (1, true, ["a"]).
STRINGS = ["a", "ab", "b", "é", "A", "1", "true", '["a"]']
NUMBERS: list[int | float] = [0, 1, 1.0, 2.5]
DAYS = ["2024-01-01", "2024-01-02"]
# app_version under an ordering operator compares versions. Stored: multi-digit and
# leading-zero components, trailing zeros, different lengths, suffixes, components
# beyond any integer type, and strings with no leading version at all.
STORED_VERSIONS = ["2.9", "2.10", "2.9.0", "2.09", "2.9.1", "2.10.0.1", "10", "0.0"]
STORED_VERSIONS += ["2.1-beta", "2.10.", "v3", "", ".5", "1.2.3.4.5", "12345678901234567890.1"]
RULE_VERSIONS = ["2.9", "2.10", "2.9.0", "2.09", "2.9.1", "0", "10", "12345678901234567890"]
VERSION_OPS = ("gt", "gte", "lt", "lte", "between", "not_between")


def _instant(offset_hours: int) -> str:
    return canonical_instant(NOW + timedelta(hours=offset_hours))


STORED_DATES = [
    *DAYS,
    "2024-01-01T00:00:00.000Z",
    "2024-01-01T12:00:00.000Z",
    "2024-01-02T00:00:00.000Z",
    "2024-13-45",  # has a date's shape: compared as one, consistently
    "xy12-34-56T12:00:00.000Z",
    _instant(-24 * 7 - 1),
    _instant(-24 * 7 + 1),
    NOW.date().isoformat(),
]
RULE_DATES = [
    *DAYS,
    "2024-01-01T12:00:00Z",
    "2024-01-02T02:00:00+02:00",  # == 2024-01-02T00:00:00.000Z
    "-7d",
    "-1w",
    NOW.date().isoformat(),
]

stored_value = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.sampled_from(STORED_DATES),
    st.sampled_from(STORED_VERSIONS),
    st.none(),
    st.lists(st.sampled_from(STRINGS), max_size=2),
)


def _with_version(attrs: dict[str, Any], version: str | None) -> dict[str, Any]:
    return attrs if version is None else {**attrs, "app_version": version}


# app_version holds a version-like string more often than the pools alone would give.
attributes = st.builds(
    _with_version,
    st.dictionaries(st.sampled_from(KEYS), stored_value, max_size=len(KEYS)),
    st.one_of(st.none(), st.sampled_from(STORED_VERSIONS)),
)
# Some moments fall exactly on whole days before NOW: the subscribed_age boundaries.
moment = st.one_of(
    st.integers(min_value=-10 * 24, max_value=48).map(
        lambda h: NOW + timedelta(hours=h, seconds=17)
    ),
    st.integers(min_value=0, max_value=10).map(lambda d: NOW - timedelta(days=d)),
    st.sampled_from(["2024-01-01T00:00:00+00:00", "2024-01-01T23:00:00+00:00"]).map(
        datetime.fromisoformat
    ),
)
token = st.fixed_dictionaries(
    {
        "platform": st.sampled_from(["ios", "android", "web"]),
        "provider": st.sampled_from(["apns", "fcm"]),
        "active": st.booleans(),
    }
)
EXTERNAL_IDS = ["a", "ab", "b", "u1", "é", "A"]
user = st.fixed_dictionaries(
    {
        "external_id": st.sampled_from(EXTERNAL_IDS),
        "attributes": attributes,
        "created_at": moment,
        "last_seen_at": st.one_of(st.none(), moment),
        "tokens": st.lists(token, max_size=2),
    }
)
users = st.lists(user, min_size=1, max_size=6, unique_by=lambda u: u["external_id"])

rule_scalar = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.sampled_from(RULE_DATES),
)
ordered_scalar = st.one_of(
    st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.sampled_from(RULE_DATES)
)


def _between(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(values, min_size=2, max_size=2).map(sorted)


def _version_bounds(pair: list[str]) -> list[str]:
    return sorted(pair, key=lambda v: version_key(v) or ())


version_bounds = st.lists(st.sampled_from(RULE_VERSIONS), min_size=2, max_size=2).map(
    _version_bounds
)


bounds = st.one_of(
    _between(st.sampled_from(NUMBERS)),
    _between(st.sampled_from(STRINGS)),
    _between(st.sampled_from(DAYS)),
    st.sampled_from([["-8d", "-1d"], ["2024-01-01", "+1d"], ["2024-01-01T12:00:00Z", "-7d"]]),
)


@st.composite
def condition(draw: st.DrawFn) -> dict[str, Any]:
    builtins = ["external_id", "platform", "provider", "created_at", "last_seen_at"]
    attr = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from([*builtins, "subscribed_age"])))
    kind = {
        "external_id": "external_id",
        "platform": "token",
        "provider": "token",
        "created_at": "date_column",
        "last_seen_at": "date_column",
        "subscribed_age": "age",
    }.get(attr, "json")
    op = draw(st.sampled_from(ALLOWED_OPS[kind]))
    base = {"neq": "eq", "not_in": "in", "not_contains": "contains"}.get(op, op)
    base = {"not_exists": "exists", "not_between": "between"}.get(base, base)
    if base == "exists":
        return {"attr": attr, "op": op}
    if kind == "token":
        choices = ["ios", "android", "web"] if attr == "platform" else ["apns", "fcm"]
        if base == "in":
            value: Any = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2))
        else:
            value = draw(st.sampled_from(choices))
    elif kind == "date_column":
        value = draw(
            st.lists(st.sampled_from(RULE_DATES), min_size=2, max_size=2)
            if base == "between"
            else st.sampled_from(RULE_DATES)
        )
    elif kind == "age":
        days = st.integers(min_value=0, max_value=10)
        value = draw(_between(days) if base == "between" else days)
    elif kind == "external_id":
        strings = st.sampled_from([*EXTERNAL_IDS, "u"])
        if base == "in":
            value = draw(st.lists(strings, min_size=1, max_size=3))
        elif base == "between":
            value = draw(_between(strings))
        else:
            value = draw(strings)
    elif attr == "app_version" and op in VERSION_OPS:
        value = draw(version_bounds if base == "between" else st.sampled_from(RULE_VERSIONS))
    elif base == "in":
        value = draw(st.lists(rule_scalar, min_size=1, max_size=4))
    elif base in ("contains", "starts_with", "ends_with"):
        value = draw(st.sampled_from(STRINGS))
    elif base == "between":
        value = draw(bounds)
    elif base == "eq":
        value = draw(rule_scalar)
    else:
        value = draw(ordered_scalar)
    return {"attr": attr, "op": op, "value": value}


rules = st.recursive(
    condition(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=4).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=10,
)


def _store(project_users: list[dict[str, Any]]) -> dict[str, Any]:
    project = Project.objects.create(name="property")
    ids: dict[str, Any] = {}
    for spec in project_users:
        row = AppUser.objects.create(
            project=project,
            external_id=spec["external_id"],
            attributes=spec["attributes"],
            last_seen_at=spec["last_seen_at"],
        )
        AppUser.objects.filter(pk=row.pk).update(created_at=spec["created_at"])
        for i, tok in enumerate(spec["tokens"]):
            PushToken.objects.create(
                project=project,
                app_user=row,
                token=f"{spec['external_id']}-{i}",
                provider=tok["provider"],
                platform=tok["platform"],
                active=tok["active"],
            )
        ids[spec["external_id"]] = row.pk
    return {"project": project, "ids": ids}


@pytest.mark.django_db
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(population=users, rule_list=st.lists(rules, min_size=4, max_size=10))
def test_sql_matches_reference_evaluator(
    population: list[dict[str, Any]], rule_list: list[dict[str, Any]]
) -> None:
    stored = _store(population)
    for rule in rule_list:
        clean = validate_rules(rule)
        expected = {
            stored["ids"][u["external_id"]]
            for u in population
            if evaluate_python(clean, u, now=NOW)
        }
        matched = set(
            AppUser.objects.filter(project=stored["project"])
            .filter(compile_rules(clean, now=NOW))
            .values_list("id", flat=True)
        )
        assert matched == expected, (rule, population)


def _grid_values(attr: str, kind: str, op: str) -> list[Any]:
    """Every rule value the grid tries for one attribute and operator."""
    base = {"neq": "eq", "not_in": "in", "not_contains": "contains"}.get(op, op)
    base = {"not_exists": "exists", "not_between": "between"}.get(base, base)
    if base == "exists":
        return [None]
    if kind == "token":
        choices = ["ios", "android", "web"] if attr == "platform" else ["apns", "fcm"]
        return [choices, choices[-1:]] if base == "in" else choices
    if kind == "date_column":
        if base == "between":
            return [["2024-01-01", "2024-01-01"], ["-8d", "-1d"], ["2024-01-01T12:00:00Z", "+1d"]]
        return RULE_DATES
    if kind == "age":
        return [[0, 0], [1, 7], [7, 10]] if base == "between" else list(range(0, 11))
    scalars: list[Any] = [*STRINGS, *NUMBERS, True, False, *RULE_DATES]
    if kind == "external_id":
        scalars = [*EXTERNAL_IDS, "u", "A"]
    if attr == "app_version" and op in VERSION_OPS:
        if base == "between":
            pairs = [[low, high] for low in RULE_VERSIONS for high in RULE_VERSIONS]
            return [p for p in pairs if _version_bounds(p) == p]
        return RULE_VERSIONS
    if base == "in":
        mixed = [["a", "b"]] if kind == "external_id" else [["a", 1, True], ["b", "5", 2.5]]
        return [[v] for v in scalars] + mixed
    if base in ("contains", "starts_with", "ends_with"):
        return [v for v in scalars if isinstance(v, str) and v]
    if base == "between":
        if kind == "external_id":
            return [["a", "b"], ["A", "u1"], ["é", "é"]]
        return [[0, 1], [1, 2.5], ["a", "b"], ["5", "a"], DAYS, ["2024-01-01T12:00:00Z", "-7d"]]
    ordered = [v for v in scalars if not isinstance(v, bool)]
    return scalars if base == "eq" else ordered


def _grid_population() -> list[dict[str, Any]]:
    """One user per stored value (and one without), with varied tokens and dates."""
    values: list[Any] = [*STRINGS, *NUMBERS, True, False, *STORED_DATES, *STORED_VERSIONS, None]
    # ["ab-de-"] renders as '["ab-de-"]', which has a date's shape: it must not count.
    values += [["a", "b"], ["ab"], ["a"], [], ["ab-de-"], "ab12-cd-ef"]
    moments = [NOW - timedelta(days=d, seconds=s) for d in range(0, 10, 3) for s in (0, 17)] + [
        datetime.fromisoformat(f"2024-01-0{d}T00:00:00+00:00") for d in (1, 2)
    ]
    population = []
    for i, value in enumerate([*values, "missing"]):
        attrs = {} if value == "missing" else {"k1": value, "app_version": value}
        population.append(
            {
                "external_id": [*EXTERNAL_IDS, f"u{i}"][min(i, len(EXTERNAL_IDS))],
                "attributes": attrs,
                "created_at": moments[i % len(moments)],
                "last_seen_at": None if i % 4 == 0 else moments[(i * 5) % len(moments)],
                "tokens": [
                    {
                        "platform": ["ios", "android", "web"][i % 3],
                        "provider": ["apns", "fcm"][i % 2],
                        "active": i % 5 != 0,
                    }
                ][: i % 3],
            }
        )
    return population


@pytest.mark.django_db
def test_every_condition_matches_reference_evaluator() -> None:
    """Exhaustive over single conditions: every kind x operator x pooled value, plus not.

    The random test above explores nesting; this one guarantees each operator has
    met every stored type at least once.
    """
    population = _grid_population()
    stored = _store(population)
    attributes = {"k1": "json", "app_version": "json", "external_id": "external_id"}
    attributes |= {"platform": "token"}
    attributes |= {"provider": "token", "created_at": "date_column"}
    attributes |= {"last_seen_at": "date_column", "subscribed_age": "age"}
    mismatches = []
    checked = 0
    for attr, kind in attributes.items():
        for op in ALLOWED_OPS[kind]:
            for value in _grid_values(attr, kind, op):
                node: dict[str, Any] = {"attr": attr, "op": op}
                if value is not None:
                    node["value"] = value
                for rule in (node, {"not": node}):
                    clean = validate_rules(rule)
                    expected = {
                        stored["ids"][u["external_id"]]
                        for u in population
                        if evaluate_python(clean, u, now=NOW)
                    }
                    matched = set(
                        AppUser.objects.filter(project=stored["project"])
                        .filter(compile_rules(clean, now=NOW))
                        .values_list("id", flat=True)
                    )
                    checked += 1
                    if matched != expected:
                        mismatches.append(rule)
    assert mismatches == []
    assert checked >= 1000  # the grid did not silently shrink


def test_reference_evaluator_sees_types_and_missing_keys() -> None:
    """Pins a few semantics the property test relies on, independently of SQL."""
    base: dict[str, Any] = {
        "external_id": "u1",
        "created_at": NOW - timedelta(days=3, hours=1),
        "last_seen_at": None,
        "tokens": [{"platform": "ios", "provider": "apns", "active": False}],
    }

    def check(rule: dict[str, Any], attrs: dict[str, Any]) -> bool:
        return evaluate_python(validate_rules(rule), {**base, "attributes": attrs}, now=NOW)

    assert check({"attr": "n", "op": "eq", "value": 1}, {"n": 1.0}) is True
    assert check({"attr": "n", "op": "eq", "value": 1}, {"n": True}) is False
    assert check({"attr": "n", "op": "eq", "value": "5"}, {"n": 5}) is False
    assert check({"attr": "n", "op": "neq", "value": "x"}, {}) is True
    assert check({"attr": "n", "op": "not_in", "value": ["x"]}, {"n": None}) is True
    assert check({"attr": "n", "op": "gt", "value": 1}, {"n": "2"}) is False
    assert check(
        {"attr": "d", "op": "eq", "value": "2024-01-01"}, {"d": "2024-01-01T23:00:00.000Z"}
    )
    assert check({"attr": "d", "op": "lt", "value": "2024-01-01T00:00:01Z"}, {"d": "2024-01-01"})
    assert check({"attr": "t", "op": "contains", "value": "b"}, {"t": ["a", "b"]}) is True
    assert check({"attr": "t", "op": "contains", "value": "b"}, {"t": ["abc"]}) is False
    assert check({"attr": "platform", "op": "exists"}, {}) is False  # inactive token only
    assert check({"attr": "subscribed_age", "op": "eq", "value": 3}, {}) is True
    assert check({"attr": "last_seen_at", "op": "not_between", "value": ["-1d", "+1d"]}, {})
