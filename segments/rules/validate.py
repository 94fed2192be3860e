"""validate_rules: the one check of a rule tree, with a path to the offending node.

Every door that writes rules (API, admin, commands) calls `validate_rules`; every
reader of a *saved* segment's rules calls `stored_rules`, which runs the same check
again, because a row can hold rules that no longer validate (written around the
validator, or under an older grammar). Compiling those would crash deep in the
compiler (KeyError('equals')); `stored_rules` raises StoredRulesInvalid instead,
naming the segment and what to fix (docs/decisions.md, "Stored rules are re-checked").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import InvalidInput
from segments.rules.grammar import (
    ALLOWED_OPS,
    ATTRIBUTE_KEY_RE,
    COMPLEMENTS,
    MAX_DEPTH,
    MAX_LIST_VALUES,
    MAX_NODES,
    MAX_NUMBER,
    MAX_STRING,
    OPERATORS,
    TOKEN_ATTRS,
    VERSION_ATTR,
    VERSION_OPS,
    attribute_kind,
)
from segments.rules.values import (
    VERSION_RE,
    VersionKey,
    date_operand,
    looks_like_datetime,
    parse_instant,
    relative_offset,
    scalar_operand,
    version_key,
)

if TYPE_CHECKING:
    from segments.models import Segment

# ---------------------------------------------------------------------- validation


def _fail(path: str, message: str) -> InvalidInput:
    return InvalidInput(message, code="VALIDATION_ERROR", details={"field": "rules", "path": path})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scalar(value: Any, path: str, *, allow_bool: bool = True) -> None:
    if isinstance(value, bool):
        if not allow_bool:
            raise _fail(path, f"{path}: a boolean cannot be ordered.")
        return
    if _is_number(value):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise _fail(path, f"{path}: numbers must be finite and within ±2^53.")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _fail(path, f"{path}: strings are limited to {MAX_STRING} characters.")
        if looks_like_datetime(value) and parse_instant(value) is None:
            raise _fail(path, f"{path}: a date-time needs a valid UTC offset, e.g. 'Z'.")
        return
    raise _fail(path, f"{path} must be a string, number or boolean.")


def _check_date_value(value: Any, path: str) -> None:
    if not isinstance(value, str) or date_operand(value, datetime.now(UTC)) is None:
        raise _fail(
            path,
            f"{path} must be an ISO date ('2024-05-01'), a date-time with offset, "
            "or a relative date such as '-7d'.",
        )


def _check_days(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 36500:
        raise _fail(path, f"{path} must be a whole number of days (0-36500).")


def _value_list(value: Any, path: str, *, exact: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"{path} must be a list.")
    if exact is not None and len(value) != exact:
        raise _fail(path, f"{path} must be a list of {exact} values [low, high].")
    if not value:
        raise _fail(path, f"{path} must not be empty.")
    if len(value) > MAX_LIST_VALUES:
        raise _fail(path, f"{path} has more than {MAX_LIST_VALUES} values.")
    return value


def _validate_condition(node: Mapping[str, Any], path: str, *, properties: bool) -> dict[str, Any]:
    unknown = set(node) - {"attr", "op", "value"}
    if unknown:
        raise _fail(path, f"{path} has unknown keys: {', '.join(sorted(unknown))}.")
    attr = node.get("attr")
    if not isinstance(attr, str) or not ATTRIBUTE_KEY_RE.fullmatch(attr):
        raise _fail(
            f"{path}.attr",
            f"{path}.attr must be an attribute name (letters, digits, _ . : -; max 64).",
        )
    op = node.get("op")
    if op not in OPERATORS:
        raise _fail(f"{path}.op", f"{path}.op must be one of {', '.join(OPERATORS)}.")
    # Over event properties every name is a plain JSON key: no columns, no tokens.
    kind = "json" if properties else attribute_kind(attr)
    if op not in ALLOWED_OPS[kind]:
        raise _fail(f"{path}.op", f"Operator '{op}' is not supported for '{attr}'.")
    vpath = f"{path}.value"
    value = node.get("value")
    base = COMPLEMENTS.get(op, op)
    if base == "exists":
        if value is not None:
            raise _fail(vpath, f"{vpath}: '{op}' takes no value.")
        return {"attr": attr, "op": op}
    if "value" not in node or value is None:
        raise _fail(vpath, f"{vpath} is required for '{op}'.")
    if kind == "token":
        choices = TOKEN_ATTRS[attr]
        items = _value_list(value, vpath) if base == "in" else [value]
        for i, item in enumerate(items):
            where = f"{vpath}[{i}]" if base == "in" else vpath
            if item not in choices:
                raise _fail(where, f"{where} must be one of {', '.join(choices)}.")
    elif kind == "date_column":
        if base == "between":
            for i, item in enumerate(_value_list(value, vpath, exact=2)):
                _check_date_value(item, f"{vpath}[{i}]")
        else:
            _check_date_value(value, vpath)
    elif kind == "age":
        if base == "between":
            bounds = _value_list(value, vpath, exact=2)
            for i, item in enumerate(bounds):
                _check_days(item, f"{vpath}[{i}]")
            if bounds[0] > bounds[1]:
                raise _fail(vpath, f"{vpath}: the low bound is above the high bound.")
        else:
            _check_days(value, vpath)
    elif not properties and attr == VERSION_ATTR and base in VERSION_OPS:
        _validate_version_value(base, value, vpath)
    else:
        _validate_json_value(kind, base, value, vpath)
    return {"attr": attr, "op": op, "value": value}


def _check_version(value: Any, path: str) -> VersionKey:
    if not isinstance(value, str) or len(value) > MAX_STRING or not VERSION_RE.fullmatch(value):
        raise _fail(path, f"{path} must be a dotted numeric version such as '2.10' or '2.9.1'.")
    key = version_key(value)
    assert key is not None
    return key


def _validate_version_value(base: str, value: Any, vpath: str) -> None:
    """app_version ordered: only versions, so the rule cannot mean a string order."""
    if base != "between":
        _check_version(value, vpath)
        return
    bounds = _value_list(value, vpath, exact=2)
    low, high = (_check_version(b, f"{vpath}[{i}]") for i, b in enumerate(bounds))
    if low > high:
        raise _fail(vpath, f"{vpath}: the low bound is above the high bound.")


def _validate_json_value(kind: str, base: str, value: Any, vpath: str) -> None:
    strings_only = kind == "external_id"
    if base == "in":
        for i, item in enumerate(_value_list(value, vpath)):
            if strings_only and not isinstance(item, str):
                raise _fail(f"{vpath}[{i}]", f"{vpath}[{i}] must be a string.")
            _check_scalar(item, f"{vpath}[{i}]")
    elif base in ("contains", "starts_with", "ends_with"):
        if not isinstance(value, str) or not value:
            raise _fail(vpath, f"{vpath} must be a non-empty string.")
        if len(value) > MAX_STRING:
            raise _fail(vpath, f"{vpath}: strings are limited to {MAX_STRING} characters.")
    elif base == "between":
        bounds = _value_list(value, vpath, exact=2)
        for i, item in enumerate(bounds):
            if strings_only and not isinstance(item, str):
                raise _fail(f"{vpath}[{i}]", f"{vpath}[{i}] must be a string.")
            _check_scalar(item, f"{vpath}[{i}]", allow_bool=False)
        now = datetime.now(UTC)
        low, high = (scalar_operand(b, now, dates=not strings_only) for b in bounds)
        dated = {low.kind, high.kind} <= {"day", "instant"}
        if low.kind != high.kind and not dated:
            raise _fail(vpath, f"{vpath}: both bounds must be numbers, strings or dates.")
        relative = any(isinstance(b, str) and relative_offset(b) is not None for b in bounds)
        if low.kind == high.kind and not relative and low.value > high.value:
            raise _fail(vpath, f"{vpath}: the low bound is above the high bound.")
    else:  # eq and the orderings
        if strings_only and not isinstance(value, str):
            raise _fail(vpath, f"{vpath} must be a string.")
        _check_scalar(value, vpath, allow_bool=base == "eq")


def validate_rules(rules: Any) -> dict[str, Any]:
    """Check a rule tree; return a clean copy or raise VALIDATION_ERROR naming the node.

    `details.path` points at the offending node ("rules.all[2].value") so an editor
    can highlight it. Limits: MAX_DEPTH nested groups and MAX_NODES nodes in all,
    which keeps every compiled query small enough to plan quickly. `{}` is the
    "everyone" segment.
    """
    if rules == {}:
        return {}
    counter = [0]
    return _validate_node(rules, "rules", 1, counter, properties=False)


def validate_property_rules(rules: Any, *, path: str = "filter") -> dict[str, Any]:
    """Check a rule tree over a flat mapping of properties (an event's), not a user.

    The same grammar, operators, limits and error shape as `validate_rules`, with
    every attribute name a plain key: `platform` or `created_at` is a property like
    any other and `app_version` compares as a string (`evaluate_properties` reads
    the rules the same way). `details.path` starts with `path`.
    """
    if rules == {}:
        return {}
    counter = [0]
    return _validate_node(rules, path, 1, counter, properties=True)


class StoredRulesInvalid(InvalidInput):
    """A saved segment's rules no longer validate: nothing can be computed from them.

    409: the request is fine, the stored segment is not; fixing the segment (not
    retrying the request) cures it. An InvalidInput, so a campaign run that meets it
    fails at once with this message instead of being retried.
    """

    status = 409
    code = "INVALID_SEGMENT_RULES"


def stored_rules(segment: Segment) -> dict[str, Any]:
    """The clean rules of a saved segment, or StoredRulesInvalid naming what to fix.

    Details: segment_id, and the validator's path and reason. Linear in the rules'
    size (at most MAX_NODES nodes), so every reader can afford it.
    """
    try:
        return validate_rules(segment.rules)
    except InvalidInput as exc:
        raise StoredRulesInvalid(
            f"Segment '{segment.name}' ({segment.pk}) has rules that no longer validate: "
            f"{exc.message} Fix the segment's rules (PATCH the segment, or edit it in the "
            "console).",
            details={
                "segment_id": str(segment.pk),
                "path": exc.details.get("path", "rules"),
                "reason": exc.message,
            },
        ) from exc


def rules_error(rules: Any) -> dict[str, str] | None:
    """{"path", "reason"} when `rules` do not validate, else None (for listings)."""
    try:
        validate_rules(rules)
    except InvalidInput as exc:
        return {"path": str(exc.details.get("path", "rules")), "reason": exc.message}
    return None


def _validate_node(
    node: Any, path: str, depth: int, counter: list[int], *, properties: bool
) -> dict[str, Any]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _fail(path, f"Rules are limited to {MAX_NODES} nodes.")
    if not isinstance(node, dict):
        raise _fail(path, f"{path} must be an object: a group (all/any/not) or a condition.")
    groups = [k for k in ("all", "any", "not") if k in node]
    if not groups:
        if "attr" in node or "op" in node:
            return _validate_condition(node, path, properties=properties)
        raise _fail(
            path,
            f"{path} must be {{'all': [...]}}, {{'any': [...]}}, {{'not': {{...}}}} "
            "or {'attr', 'op', 'value'}.",
        )
    if len(node) != 1:
        raise _fail(path, f"{path}: a group has exactly one key (all, any or not).")
    if depth > MAX_DEPTH:
        raise _fail(path, f"Rules are nested deeper than {MAX_DEPTH} groups.")
    key = groups[0]
    if key == "not":
        return {
            "not": _validate_node(
                node["not"], f"{path}.not", depth + 1, counter, properties=properties
            )
        }
    children = node[key]
    if not isinstance(children, list) or not children:
        raise _fail(f"{path}.{key}", f"{path}.{key} must be a non-empty list.")
    return {
        key: [
            _validate_node(child, f"{path}.{key}[{i}]", depth + 1, counter, properties=properties)
            for i, child in enumerate(children)
        ]
    }
