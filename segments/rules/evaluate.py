"""evaluate_python: the plain reference evaluator the property test holds SQL to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from segments.rules.grammar import COMPLEMENTS, VERSION_ATTR, VERSION_OPS, attribute_kind
from segments.rules.values import (
    DAY,
    MIDNIGHT_SUFFIX,
    STORED_DATE_RE,
    Operand,
    date_operand,
    scalar_operand,
    version_key,
    version_operand,
)

# ------------------------------------------------------------ reference evaluator


def _json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_PY_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _py_compare(value: Any, op: str, operand: Operand) -> bool:
    """Does a stored JSON value satisfy `value <op> operand`? (eq or an ordering)."""
    kind = _json_type(value)
    cmp = _PY_CMP[op]
    if operand.kind == "number":
        return kind == "number" and cmp(float(value), operand.value)
    if operand.kind == "boolean":
        return kind == "boolean" and cmp(value, operand.value)
    if kind != "string":
        return False
    if operand.kind == "version":
        key = version_key(value)
        return key is not None and cmp(key, operand.value)
    if operand.kind == "string":
        return cmp(value, operand.value)
    if not STORED_DATE_RE.fullmatch(value):
        return False
    if operand.kind == "day":
        return cmp(value[:10], operand.value)
    key = value + MIDNIGHT_SUFFIX if len(value) == 10 else value
    return cmp(key, operand.value)


def _py_json(
    value: Any, base: str, raw: Any, now: datetime, *, dates: bool, versions: bool = False
) -> bool:
    kind = _json_type(value)
    if versions and base in VERSION_OPS:
        bounds = raw if base == "between" else [raw]
        ops = ("gte", "lte") if base == "between" else (base,)
        return all(
            _py_compare(value, op, version_operand(b)) for op, b in zip(ops, bounds, strict=True)
        )
    if base == "exists":
        return kind is not None
    if base == "in":
        return any(_py_compare(value, "eq", scalar_operand(v, now, dates=False)) for v in raw)
    if base == "contains":
        if kind == "string":
            return raw in value
        return kind == "array" and any(isinstance(v, str) and v == raw for v in value)
    if base == "starts_with":
        return kind == "string" and value.startswith(raw)
    if base == "ends_with":
        return kind == "string" and value.endswith(raw)
    if base == "between":
        low, high = (scalar_operand(b, now, dates=dates) for b in raw)
        return _py_compare(value, "gte", low) and _py_compare(value, "lte", high)
    return _py_compare(value, base, scalar_operand(raw, now, dates=dates))


def _py_moment(moment: datetime | None, base: str, raw: Any, now: datetime) -> bool:
    if base == "exists":
        return moment is not None
    if moment is None:
        return False
    if base == "between":
        return _py_moment(moment, "gte", raw[0], now) and _py_moment(moment, "lte", raw[1], now)
    operand = date_operand(raw, now)
    assert operand is not None
    if operand.kind == "day":
        start = datetime.fromisoformat(operand.value).replace(tzinfo=UTC)
        low, high = start, start + DAY  # the day is [start, start + 1 day)
        return {
            "eq": low <= moment < high,
            "gt": moment >= high,
            "gte": moment >= low,
            "lt": moment < low,
            "lte": moment < high,
        }[base]
    assert operand.moment is not None
    return _PY_CMP[base](moment, operand.moment)


def _py_condition(node: Mapping[str, Any], user: Mapping[str, Any], now: datetime) -> bool:
    attr, op = node["attr"], node["op"]
    base = COMPLEMENTS.get(op, op)
    raw: Any = node.get("value")
    kind = attribute_kind(attr)
    if kind == "token":
        values = [t[attr] for t in user.get("tokens", ()) if t.get("active", True)]
        if base == "exists":
            result = bool(values)
        else:
            wanted = raw if base == "in" else [raw]
            result = any(v in wanted for v in values)
    elif kind == "date_column":
        result = _py_moment(user.get(attr), base, raw, now)
    elif kind == "age":
        age = (now - user["created_at"]) // DAY
        result = raw[0] <= age <= raw[1] if base == "between" else _PY_CMP[base](age, raw)
    elif kind == "external_id":
        result = _py_json(user["external_id"], base, raw, now, dates=False)
    else:
        value = (user.get("attributes") or {}).get(attr)
        result = _py_json(value, base, raw, now, dates=True, versions=attr == VERSION_ATTR)
    return result != (op in COMPLEMENTS)


def evaluate_python(rules: Mapping[str, Any], user: Mapping[str, Any], *, now: datetime) -> bool:
    """The reference evaluator: does one user (as a plain dict) match `rules`?

    `user` is {"external_id", "attributes", "created_at", "last_seen_at",
    "tokens": [{"platform", "provider", "active"}]}. Deliberately naive: it exists so
    the property test can hold `compile_rules` to these semantics.
    """
    if not rules:
        return True
    if "all" in rules:
        return all(evaluate_python(child, user, now=now) for child in rules["all"])
    if "any" in rules:
        return any(evaluate_python(child, user, now=now) for child in rules["any"])
    if "not" in rules:
        return not evaluate_python(rules["not"], user, now=now)
    return _py_condition(rules, user, now)


def evaluate_properties(
    rules: Mapping[str, Any], properties: Mapping[str, Any], *, now: datetime
) -> bool:
    """Do an event's properties match `rules` (checked by `validate_property_rules`)?

    Every attribute is a plain key of `properties`, with a custom attribute's
    semantics (missing when absent or null, typed by its JSON value, dates by their
    canonical shape); `{}` matches everything.
    """
    if not rules:
        return True
    if "all" in rules:
        return all(evaluate_properties(child, properties, now=now) for child in rules["all"])
    if "any" in rules:
        return any(evaluate_properties(child, properties, now=now) for child in rules["any"])
    if "not" in rules:
        return not evaluate_properties(rules["not"], properties, now=now)
    op = rules["op"]
    base = COMPLEMENTS.get(op, op)
    result = _py_json(properties.get(rules["attr"]), base, rules.get("value"), now, dates=True)
    return result != (op in COMPLEMENTS)
