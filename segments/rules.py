"""Segment rules: a small JSON grammar, validated once and compiled to one SQL query.

Grammar (docs: the module's README section in DESIGN.md, "Audience API")::

    node      := group | condition
    group     := {"all": [node, ...]} | {"any": [node, ...]} | {"not": node}
    condition := {"attr": name, "op": operator, "value": value}

The same rules run two ways: `compile_rules` turns them into a `Q` over `AppUser`
(hand-written SQL predicates for PostgreSQL and SQLite, so it is one query and never
a loop over users) and `evaluate_python` is the plain reference evaluator the
property test compares it with. Both implement exactly these semantics:

* A custom attribute (and the built-ins country, language, timezone, app_version,
  which live in `attributes` too) is *missing* when the key is absent or null.
  A value's type is its JSON type: string, number (compared as double precision),
  boolean, or array of strings. A stored date is a string shaped like one of the two
  canonical forms registration stores, "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS.mmmZ"
  (the shape is the length and the separators; checking every digit costs PostgreSQL
  microseconds a row, and registration only ever stores real dates in these shapes).
* The rule value picks the comparison: a number compares numbers, a boolean
  booleans, a string strings (code-point order, case-sensitive), and a string that
  is an ISO date ("2024-05-01"), an ISO date-time with offset, or a relative date
  ("-7d", "+12h", "-30m", "-2w" from now) compares dates. A date-only value compares
  by UTC day; a date-time value compares instants, a stored date-only value
  counting as midnight UTC. A stored value of another type never satisfies a
  positive operator.
* eq, gt, gte, lt, lte, in, contains (substring of a string, or element of an array
  of strings), starts_with, ends_with, between (inclusive) and exists are positive:
  false on a missing or differently-typed value. neq, not_in, not_contains,
  not_exists and not_between are their exact complements (`not_x == not x`), so they
  are true for a user without the attribute. `{"not": ...}` is the complement too.
* external_id is a string column; platform and provider mean "has an active token
  with ...", so `platform neq ios` is "has no active iOS token" (on PostgreSQL a bit
  test on app_users.active_token_kinds, which triggers on push_tokens keep: see
  segments/migrations/0003_active_token_kinds.py); created_at and
  last_seen_at compare as dates (last_seen_at may be missing); subscribed_age is
  whole days since created_at (floor).
* app_version compares as a version under the ordering operators (gt, gte, lt, lte,
  between, not_between): the rule value must be a dotted numeric version ("2.10");
  a stored string counts by its leading dotted numeric part ("2.1-beta" is 2.1,
  "2.10." is 2.10), whose components compare as integers of any size, left to
  right, with missing components counting as 0 ("2.10" > "2.9" > "2.8.5", and
  "2.9" == "2.9.0" == "2.09"). A stored value with no such part ("v3", "", ".5")
  or of another type (the number 2.9) is not a version: the condition is false,
  as for a missing attribute. Every other operator compares app_version as a
  string. PostgreSQL compares numeric[] arrays built by a regular expression;
  SQLite calls herald_version_cmp, `version_key` registered as a deterministic SQL
  function on each connection (SegmentsConfig.ready) (docs/decisions.md, "app_version order").

Negation is pushed down to the conditions (De Morgan) and every negated condition
is rendered `NOT COALESCE(p, false)`, so SQL's NULLs can never make a complement
disagree with the Python evaluator, while positive conditions stay plain,
index-friendly predicates such as `(attributes ->> 'country') IN ('CA', 'US')`.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from django.db.models.sql.compiler import SQLCompiler

from core.errors import InvalidInput
from core.models import Project
from delivery.models import Platform, Provider, PushToken
from segments.models import AppUser, Segment

MAX_DEPTH = 6
MAX_NODES = 200
MAX_LIST_VALUES = 500
MAX_STRING = 1000
MAX_RELATIVE_DAYS = 36500
MAX_NUMBER = 2.0**53

OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "exists",
    "not_exists",
    "starts_with",
    "ends_with",
    "between",
    "not_between",
)
# Negative operators are exact complements of a positive one.
COMPLEMENTS = {
    "neq": "eq",
    "not_in": "in",
    "not_contains": "contains",
    "not_exists": "exists",
    "not_between": "between",
}
ORDERING_OPS = ("gt", "gte", "lt", "lte")

TOKEN_ATTRS = {"platform": tuple(Platform.values), "provider": tuple(Provider.values)}
# Bits of app_users.active_token_kinds (PostgreSQL; segments/migrations/0003 sets them).
TOKEN_KIND_BITS = {
    "platform": {"ios": 1, "android": 2, "web": 4},
    "provider": {"apns": 8, "fcm": 16},
}
ANY_TOKEN_BIT = 32
DATE_COLUMNS = ("created_at", "last_seen_at")
# Names that address model columns or tokens; registration refuses them as custom keys.
RESERVED_ATTRS = ("external_id", *TOKEN_ATTRS, *DATE_COLUMNS, "subscribed_age")
JSON_BUILTINS = ("country", "language", "timezone", "app_version")
# Keys with a btree expression index on PostgreSQL (segments/migrations/0002): their
# equality stays `(attributes ->> 'key') IN (...)`; other keys use `@>` and the GIN index.
BTREE_KEYS = ("country", "language")

ATTRIBUTE_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A stored string is a date when it has the shape of a canonical day or instant:
# its length and separators (any character stands where the digits go). The same
# test three ways: Python, PostgreSQL LIKE ('_' = one character), SQLite GLOB ('?').
STORED_DATE_RE = re.compile(r"....-..-..(T..:..:..\....Z)?", re.DOTALL)
_PG_DATE_LIKE = ("____-__-__", "____-__-__T__:__:__.___Z")
_SQLITE_DATE_GLOB = ("????-??-??", "????-??-??T??:??:??.???Z")
_DATETIME_PREFIX_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
_RELATIVE_RE = re.compile(r"([+-])([0-9]{1,7})([mhdw])")
_RELATIVE_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_RELATIVE_UNITS["w"] = timedelta(weeks=1)
MIDNIGHT_SUFFIX = "T00:00:00.000Z"
DAY = timedelta(days=1)

# app_version under gt/gte/lt/lte/between/not_between compares as a version.
VERSION_ATTR = "app_version"
VERSION_OPS = (*ORDERING_OPS, "between")
# A rule value is all of it; a stored value counts by its leading part. ASCII digits.
_VERSION_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
# The same leading part, and the trailing zero components dropped, on PostgreSQL
# ("[.]" rather than "\." so no escaping depends on standard_conforming_strings).
_PG_VERSION_PREFIX = "^[0-9]+(?:[.][0-9]+)*"
_PG_TRAILING_ZEROS = "([.]0+)+$"
SQLITE_VERSION_CMP = "herald_version_cmp"


# --------------------------------------------------------------------------- dates


def canonical_instant(moment: datetime) -> str:
    """The stored form of a date-time: UTC, millisecond precision, fixed width.

    Fixed width is what makes string order equal time order, in SQL and in Python.
    """
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_day(text: str) -> date | None:
    if not _DAY_RE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_instant(text: str) -> datetime | None:
    """An ISO-8601 date-time with an explicit offset, or None."""
    if not _DATETIME_PREFIX_RE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def looks_like_datetime(text: str) -> bool:
    return bool(_DATETIME_PREFIX_RE.match(text))


def canonical_date_value(text: str) -> str | None:
    """The canonical stored form of a date or date-time string, or None if not one.

    Registration stores dates this way; naive date-times are taken as UTC there.
    """
    day = parse_day(text)
    if day is not None:
        return day.isoformat()
    if not looks_like_datetime(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return canonical_instant(parsed)


def _relative(text: str) -> timedelta | None:
    match = _RELATIVE_RE.fullmatch(text)
    if match is None:
        return None
    sign, amount, unit = match.groups()
    delta = int(amount) * _RELATIVE_UNITS[unit]
    if delta > MAX_RELATIVE_DAYS * DAY:
        return None
    return -delta if sign == "-" else delta


# ----------------------------------------------------------------------- versions

VersionKey = tuple[tuple[int, str], ...]


def version_key(text: str) -> VersionKey | None:
    """The order key of a version: its leading dotted numeric part, or None if none.

    Each component is (digit count, digits) once its leading zeros are gone, which
    orders exactly like the integer (without int()'s 4300-digit limit) and like
    PostgreSQL's numeric; trailing zero components are dropped so "2.9" == "2.9.0",
    and then tuple order is array order: element by element, a prefix first.
    """
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    parts = [part.lstrip("0") or "0" for part in match.group().split(".")]
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return tuple((len(part), part) for part in parts)


def _sqlite_version_cmp(stored: Any, wanted: Any) -> int | None:
    """herald_version_cmp(stored, wanted) on SQLite: the sign of stored - wanted.

    NULL when either is not a string starting with a version, so a positive
    condition is false and its NULL-safe complement true, as in evaluate_python.
    """
    if not isinstance(stored, str) or not isinstance(wanted, str):
        return None
    key, target = version_key(stored), version_key(wanted)
    if key is None or target is None:
        return None
    return (key > target) - (key < target)


def register_sqlite_functions(connection: BaseDatabaseWrapper) -> None:
    """Give a SQLite connection the functions the compiled rules call.

    SQLite has no arrays or regular expressions to build a version order from, and a
    padded sort key would cap component sizes; one deterministic function keeps the
    comparison in the query (SQLite calls it per row, like a built-in) and exact.
    Connected to `connection_created` by SegmentsConfig.ready(), so every connection
    has it before its first query.
    """
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            SQLITE_VERSION_CMP, 2, _sqlite_version_cmp, deterministic=True
        )


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **_: Any) -> None:
    register_sqlite_functions(connection)


# ----------------------------------------------------------------------- operands

Kind = Literal["string", "number", "boolean", "day", "instant", "version"]


@dataclass(frozen=True)
class Operand:
    """A rule value resolved for comparison: its kind and comparable value.

    day: "YYYY-MM-DD"; instant: (canonical string, exact aware datetime) so JSON
    attributes compare canonical strings and model columns compare datetimes;
    version: a `version_key`.
    """

    kind: Kind
    value: Any
    moment: datetime | None = None


def _date_operand(text: str, now: datetime) -> Operand | None:
    day = parse_day(text)
    if day is not None:
        return Operand("day", day.isoformat())
    delta = _relative(text)
    if delta is not None:
        moment = now + delta
        return Operand("instant", canonical_instant(moment), moment)
    moment_or_none = parse_instant(text)
    if moment_or_none is not None:
        return Operand("instant", canonical_instant(moment_or_none), moment_or_none)
    return None


def _version_operand(value: str) -> Operand:
    key = version_key(value)
    assert key is not None  # validate_rules accepted it
    return Operand("version", key)


def _scalar_operand(value: Any, now: datetime, *, dates: bool = True) -> Operand:
    if isinstance(value, bool):
        return Operand("boolean", value)
    if isinstance(value, int | float):
        return Operand("number", float(value))
    if dates:
        as_date = _date_operand(value, now)
        if as_date is not None:
            return as_date
    return Operand("string", value)


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
    if not isinstance(value, str) or _date_operand(value, datetime.now(UTC)) is None:
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


def _attribute_kind(attr: str) -> str:
    if attr == "external_id":
        return "external_id"
    if attr in TOKEN_ATTRS:
        return "token"
    if attr in DATE_COLUMNS:
        return "date_column"
    if attr == "subscribed_age":
        return "age"
    return "json"


ALLOWED_OPS: dict[str, tuple[str, ...]] = {
    "json": OPERATORS,
    "external_id": OPERATORS,
    "token": ("eq", "neq", "in", "not_in", "exists", "not_exists"),
    "date_column": ("eq", "neq", *ORDERING_OPS, "between", "not_between", "exists", "not_exists"),
    "age": ("eq", "neq", *ORDERING_OPS, "between", "not_between"),
}


def _validate_condition(node: Mapping[str, Any], path: str) -> dict[str, Any]:
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
    kind = _attribute_kind(attr)
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
    elif attr == VERSION_ATTR and base in VERSION_OPS:
        _validate_version_value(base, value, vpath)
    else:
        _validate_json_value(kind, base, value, vpath)
    return {"attr": attr, "op": op, "value": value}


def _check_version(value: Any, path: str) -> VersionKey:
    if not isinstance(value, str) or len(value) > MAX_STRING or not _VERSION_RE.fullmatch(value):
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
        low, high = (_scalar_operand(b, now, dates=not strings_only) for b in bounds)
        dated = {low.kind, high.kind} <= {"day", "instant"}
        if low.kind != high.kind and not dated:
            raise _fail(vpath, f"{vpath}: both bounds must be numbers, strings or dates.")
        relative = any(isinstance(b, str) and _relative(b) is not None for b in bounds)
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
    return _validate_node(rules, "rules", 1, counter)


def _validate_node(node: Any, path: str, depth: int, counter: list[int]) -> dict[str, Any]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _fail(path, f"Rules are limited to {MAX_NODES} nodes.")
    if not isinstance(node, dict):
        raise _fail(path, f"{path} must be an object: a group (all/any/not) or a condition.")
    groups = [k for k in ("all", "any", "not") if k in node]
    if not groups:
        if "attr" in node or "op" in node:
            return _validate_condition(node, path)
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
        return {"not": _validate_node(node["not"], f"{path}.not", depth + 1, counter)}
    children = node[key]
    if not isinstance(children, list) or not children:
        raise _fail(f"{path}.{key}", f"{path}.{key} must be a non-empty list.")
    return {
        key: [
            _validate_node(child, f"{path}.{key}[{i}]", depth + 1, counter)
            for i, child in enumerate(children)
        ]
    }


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
            _py_compare(value, op, _version_operand(b)) for op, b in zip(ops, bounds, strict=True)
        )
    if base == "exists":
        return kind is not None
    if base == "in":
        return any(_py_compare(value, "eq", _scalar_operand(v, now, dates=False)) for v in raw)
    if base == "contains":
        if kind == "string":
            return raw in value
        return kind == "array" and any(isinstance(v, str) and v == raw for v in value)
    if base == "starts_with":
        return kind == "string" and value.startswith(raw)
    if base == "ends_with":
        return kind == "string" and value.endswith(raw)
    if base == "between":
        low, high = (_scalar_operand(b, now, dates=dates) for b in raw)
        return _py_compare(value, "gte", low) and _py_compare(value, "lte", high)
    return _py_compare(value, base, _scalar_operand(raw, now, dates=dates))


def _py_moment(moment: datetime | None, base: str, raw: Any, now: datetime) -> bool:
    if base == "exists":
        return moment is not None
    if moment is None:
        return False
    if base == "between":
        return _py_moment(moment, "gte", raw[0], now) and _py_moment(moment, "lte", raw[1], now)
    operand = _date_operand(raw, now)
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
    kind = _attribute_kind(attr)
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


# ----------------------------------------------------------------- SQL predicates

_Sql = tuple[str, list[Any]]


class _Predicate(Expression):
    """A boolean SQL predicate written per vendor over compiled source columns."""

    output_field = BooleanField()

    def __init__(self, *sources: Any) -> None:
        super().__init__()
        self.sources = list(sources)

    def get_source_expressions(self) -> list[Any]:
        return self.sources

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.sources = list(exprs)

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        compiled = [compiler.compile(source) for source in self.sources]
        params: list[Any] = []
        for _, source_params in compiled:
            params.extend(source_params)
        if params:  # columns never carry parameters; keep the SQL simple to splice
            raise ValueError("source expressions must be plain columns")
        columns = [sql for sql, _ in compiled]
        return self.render(connection.vendor, columns)

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        raise NotImplementedError


class Negated(_Predicate):
    """`NOT COALESCE(p, false)`: the exact complement of p, NULL counting as false."""

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        raise NotImplementedError  # as_sql compiles the wrapped predicate itself

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        sql, params = compiler.compile(self.sources[0])
        false = "false" if connection.vendor == "postgresql" else "0"
        return f"NOT COALESCE(({sql}), {false})", list(params)


class Constant(_Predicate):
    def __init__(self, value: bool) -> None:
        super().__init__()
        self.value = value

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        return ("(1 = 1)" if self.value else "(1 = 0)"), []


@dataclass(frozen=True)
class _Test:
    """One positive test on a text/JSON value: what `render` turns into SQL."""

    kind: str  # exists | in | cmp | contains | starts_with | ends_with
    op: str = ""
    operand: Operand | None = None
    values: tuple[Operand, ...] = ()


_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class _ValueSql:
    """SQL fragments for one value: its text, its JSON type and typed views of it."""

    def __init__(self, vendor: str, column: str, key: str | None) -> None:
        self.pg = vendor == "postgresql"
        self.json = key is not None
        self.column, self.key = column, key
        if key is None:  # a text column such as external_id
            self.text = column
        elif self.pg:
            self.text = f"({column} ->> '{key}')"
            self.node = f"({column} -> '{key}')"
            self.typeof = f"jsonb_typeof({self.node})"
        else:
            path = "$." + json.dumps(key)
            self.text = f"json_extract({column}, '{path}')"
            self.typeof = f"json_type({column}, '{path}')"
            self.path = path

    def is_type(self, kind: str) -> str:
        if not self.json:
            return "(1 = 1)" if kind == "string" else "(1 = 0)"
        if self.pg:
            return f"{self.typeof} = '{kind}'"
        names = {
            "string": "('text')",
            "number": "('integer', 'real')",
            "boolean": "('true', 'false')",
            "array": "('array')",
        }[kind]
        return f"{self.typeof} IN {names}"

    @property
    def ordered_text(self) -> str:
        """Text compared in code-point order, whatever the database's collation."""
        return f'{self.text} COLLATE "C"' if self.pg else self.text

    @property
    def number(self) -> str:
        # CASE, not AND: PostgreSQL may evaluate AND operands in any order, and the
        # cast would fail on a string.
        if self.pg:
            return f"(CASE WHEN {self.is_type('number')} THEN {self.text}::double precision END)"
        return f"(CASE WHEN {self.is_type('number')} THEN {self.text} END)"

    @property
    def boolean_text(self) -> str:
        if self.pg:
            return self.text  # 'true' / 'false'
        return f"(CASE {self.typeof} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END)"

    def is_stored_date(self) -> _Sql:
        """A string with a date's shape (an array's text could have it: hence the type)."""
        match = "LIKE" if self.pg else "GLOB"
        shapes = _PG_DATE_LIKE if self.pg else _SQLITE_DATE_GLOB
        sql = f"({self.is_type('string')} AND ({self.text} {match} %s OR {self.text} {match} %s))"
        return sql, list(shapes)

    def _string_guard(self, values: Iterable[str]) -> str | None:
        """The string type check, when the value's text alone could be ambiguous.

        `->>` renders the number 5 as '5', so '5' needs the check; 'US' cannot be
        the text of anything but a string, and leaving the check out lets an index
        on `(attributes ->> 'country')` answer the query alone.
        """
        if not self.json:
            return None
        if not self.pg:
            return self.is_type("string")
        for value in values:
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if not isinstance(decoded, str):
                return self.is_type("string")
        return None

    def membership(self, operands: Sequence[Operand]) -> _Sql:
        if self.pg and self.json and self.key not in BTREE_KEYS:
            return self._containment(operands)
        parts: list[str] = []
        params: list[Any] = []
        strings = [o.value for o in operands if o.kind == "string"]
        numbers = [o.value for o in operands if o.kind == "number"]
        booleans = [o.value for o in operands if o.kind == "boolean"]
        if strings:
            marks = ", ".join(["%s"] * len(strings))
            guard = self._string_guard(strings)
            test = f"{self.text} IN ({marks})"
            parts.append(f"({guard} AND {test})" if guard else test)
            params.extend(strings)
        if numbers:
            parts.append(f"{self.number} IN ({', '.join(['%s'] * len(numbers))})")
            params.extend(numbers)
        if booleans:
            marks = ", ".join(["%s"] * len(booleans))
            parts.append(f"({self.is_type('boolean')} AND {self.boolean_text} IN ({marks}))")
            params.extend("true" if b else "false" for b in booleans)
        return "(" + " OR ".join(parts) + ")", params

    def _containment(self, operands: Sequence[Operand]) -> _Sql:
        """JSON equality as `attributes @> '{"key": value}'`: exactly typed (1 = 1.0,
        "5" != 5, an array never equals a scalar) and answered by the GIN index."""
        parts = [f"{self.column} @> %s::jsonb" for _ in operands]
        params = [json.dumps({self.key: o.value}) for o in operands]
        return "(" + " OR ".join(parts) + ")", params

    def compare(self, op: str, operand: Operand) -> _Sql:
        sql_op = _SQL_OPS[op]
        if operand.kind == "number":
            return f"{self.number} {sql_op} %s", [operand.value]
        if operand.kind == "boolean":
            return self.membership([operand]) if op == "eq" else ("(1 = 0)", [])
        if operand.kind == "version":
            return self.version_compare(sql_op, operand.value)
        if operand.kind == "string":
            if op == "eq":
                return self.membership([operand])
            return f"({self.is_type('string')} AND {self.ordered_text} {sql_op} %s)", [
                operand.value
            ]
        is_date, date_params = self.is_stored_date()
        if operand.kind == "day":
            key = f"substr({self.text}, 1, 10)"
        elif self.pg:  # the shape check guarantees 10 or 24 characters
            key = f"rpad({self.text}, 24, '{MIDNIGHT_SUFFIX}')"
        else:
            key = (
                f"(CASE WHEN length({self.text}) = 10 THEN {self.text} || '{MIDNIGHT_SUFFIX}' "
                f"ELSE {self.text} END)"
            )
        if self.pg:
            key = f'{key} COLLATE "C"'
        return f"({is_date} AND {key} {sql_op} %s)", [*date_params, operand.value]

    def version_compare(self, sql_op: str, key: VersionKey) -> _Sql:
        """The stored string's leading version `sql_op` the rule's, NULL if it has none.

        PostgreSQL: numeric[] from the leading part minus trailing zero components
        (substring gives NULL without one, and nothing here can fail on any text);
        arrays compare element by element, a prefix first, as `version_key` tuples.
        """
        wanted = ".".join(digits for _, digits in key)
        is_string = self.is_type("string")
        if not self.pg:
            return f"({is_string} AND {SQLITE_VERSION_CMP}({self.text}, %s) {sql_op} 0)", [wanted]
        prefix = f"substring({self.text} from '{_PG_VERSION_PREFIX}')"
        stored = f"string_to_array(regexp_replace({prefix}, '{_PG_TRAILING_ZEROS}', ''), '.')"
        return (
            f"({is_string} AND {stored}::numeric[] {sql_op} string_to_array(%s, '.')::numeric[])",
            [wanted],
        )

    def contains(self, needle: str) -> _Sql:
        finder = "strpos" if self.pg else "instr"
        in_string = f"({self.is_type('string')} AND {finder}({self.text}, %s) > 0)"
        if not self.json:
            return in_string, [needle]
        if self.pg:
            # {"k": ["x"]} is contained only when k is an array holding "x": no
            # extraction per row, and the GIN index can answer it.
            in_array = f"{self.column} @> %s::jsonb"
            return f"({in_array} OR {in_string})", [json.dumps({self.key: [needle]}), needle]
        # The column and the path are ours (keys match ATTRIBUTE_KEY_RE); values are params.
        in_array = (
            f"({self.is_type('array')} AND EXISTS (SELECT 1 FROM json_each({self.column}, "  # noqa: S608
            f"'{self.path}') AS elem WHERE elem.type = 'text' AND elem.value = %s))"
        )
        return f"({in_string} OR {in_array})", [needle, needle]

    def affix(self, kind: str, affix: str) -> _Sql:
        n = len(affix)
        if kind == "starts_with":
            part = f"substr({self.text}, 1, {n})"
        else:
            part = f"right({self.text}, {n})" if self.pg else f"substr({self.text}, -{n})"
        return f"({self.is_type('string')} AND {part} = %s)", [affix]


class ValuePredicate(_Predicate):
    """A test on one JSON key of `attributes`, or on a text column (key None)."""

    def __init__(self, column: Any, key: str | None, test: _Test) -> None:
        super().__init__(column)
        self.key = key
        self.test = test

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        value = _ValueSql(vendor, columns[0], self.key)
        test = self.test
        if test.kind == "exists":
            return f"{value.text} IS NOT NULL", []
        if test.kind == "in":
            return value.membership(test.values)
        if test.kind == "cmp":
            assert test.operand is not None
            return value.compare(test.op, test.operand)
        assert test.operand is not None
        if test.kind == "contains":
            return value.contains(test.operand.value)
        return value.affix(test.kind, test.operand.value)


class TokenKindPredicate(_Predicate):
    """Has an active token with platform/provider in `values` (any token if empty)?

    PostgreSQL: a bit test on app_users.active_token_kinds, the set triggers keep
    (segments/migrations/0003), so no join with push_tokens. Elsewhere: EXISTS.
    """

    def __init__(self, attr: str, values: tuple[str, ...]) -> None:
        tokens = PushToken.objects.filter(app_user=OuterRef("pk"), active=True)
        if values:
            tokens = tokens.filter(**{f"{attr}__in": list(values)})
        super().__init__(F("pk"), Exists(tokens))
        self.attr, self.values = attr, values

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        if connection.vendor != "postgresql":
            sql, params = compiler.compile(self.sources[1])
            return sql, list(params)
        pk_sql, _ = compiler.compile(self.sources[0])
        return self.render(connection.vendor, [pk_sql])

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        table, _, column = columns[0].rpartition(".")
        assert table and column == '"id"', columns[0]  # the pk of app_users, qualified
        bits = TOKEN_KIND_BITS[self.attr]
        mask = ANY_TOKEN_BIT if not self.values else sum({bits[v] for v in self.values})
        return f"({table}.active_token_kinds & {mask}) <> 0", []


# ------------------------------------------------------------------------ compile


def _value_test(
    base: str, raw: Any, now: datetime, *, dates: bool, versions: bool = False
) -> list[_Test]:
    """The positive tests (ANDed) for a condition on a JSON key or a text column."""
    if versions and base == "between":
        low, high = (_version_operand(b) for b in raw)
        return [_Test("cmp", "gte", low), _Test("cmp", "lte", high)]
    if versions and base in ORDERING_OPS:
        return [_Test("cmp", base, _version_operand(raw))]
    if base == "exists":
        return [_Test("exists")]
    if base == "in":
        return [_Test("in", values=tuple(_scalar_operand(v, now, dates=False) for v in raw))]
    if base in ("contains", "starts_with", "ends_with"):
        return [_Test(base, operand=Operand("string", raw))]
    if base == "between":
        low, high = (_scalar_operand(b, now, dates=dates) for b in raw)
        return [_Test("cmp", "gte", low), _Test("cmp", "lte", high)]
    return [_Test("cmp", base, _scalar_operand(raw, now, dates=dates))]


_LOOKUPS = {
    "eq": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}


def _moment_lookups(column: str, base: str, raw: Any, now: datetime) -> list[Any]:
    field = F(column)
    if base == "exists":
        return [IsNull(field, False)]
    if base == "between":
        return [
            *_moment_lookups(column, "gte", raw[0], now),
            *_moment_lookups(column, "lte", raw[1], now),
        ]
    operand = _date_operand(raw, now)
    assert operand is not None
    if operand.kind == "instant":
        return [_LOOKUPS[base](field, operand.moment)]
    low = datetime.fromisoformat(operand.value).replace(tzinfo=UTC)
    high = low + DAY
    bounds: dict[str, list[Any]] = {
        "eq": [GreaterThanOrEqual(field, low), LessThan(field, high)],
        "gt": [GreaterThanOrEqual(field, high)],
        "gte": [GreaterThanOrEqual(field, low)],
        "lt": [LessThan(field, low)],
        "lte": [LessThan(field, high)],
    }
    return bounds[base]


def _age_lookups(base: str, raw: Any, now: datetime) -> list[Any]:
    """Whole days since created_at, as bounds on created_at (index-friendly).

    floor(age) >= n  <=>  created_at <= now - n days; floor(age) <= n <=> created_at >
    now - (n + 1) days.
    """
    field = F("created_at")
    if base == "between":
        return [*_age_lookups("gte", raw[0], now), *_age_lookups("lte", raw[1], now)]
    n = int(raw)
    at_least = {"gte": n, "gt": n + 1, "eq": n}.get(base)
    at_most = {"lte": n, "lt": n - 1, "eq": n}.get(base)
    lookups: list[Any] = []
    if at_least is not None:
        lookups.append(LessThanOrEqual(field, now - at_least * DAY))
    if at_most is not None:
        lookups.append(GreaterThan(field, now - (at_most + 1) * DAY))
    return lookups


def _condition_expressions(node: Mapping[str, Any], now: datetime) -> list[Any]:
    attr, op = node["attr"], node["op"]
    base = COMPLEMENTS.get(op, op)
    raw: Any = node.get("value")
    kind = _attribute_kind(attr)
    if kind == "token":
        values: tuple[str, ...] = ()
        if base != "exists":
            values = tuple(raw) if base == "in" else (raw,)
        return [TokenKindPredicate(attr, values)]
    if kind == "date_column":
        return _moment_lookups(attr, base, raw, now)
    if kind == "age":
        return _age_lookups(base, raw, now)
    if kind == "external_id":
        return [
            ValuePredicate(F("external_id"), None, test)
            for test in _value_test(base, raw, now, dates=False)
        ]
    return [
        ValuePredicate(F("attributes"), attr, test)
        for test in _value_test(base, raw, now, dates=True, versions=attr == VERSION_ATTR)
    ]


def _compile(node: Mapping[str, Any], now: datetime, negate: bool) -> Q:
    if not node:
        return Q(Constant(not negate))
    if "not" in node:
        return _compile(node["not"], now, not negate)
    for key, joiner in (("all", "AND"), ("any", "OR")):
        if key in node:
            if negate:
                joiner = "OR" if joiner == "AND" else "AND"
            parts = [_compile(child, now, negate) for child in node[key]]
            combined = Q(*parts, _connector=joiner) if parts else Q(Constant(joiner == "AND"))
            return combined
    expressions = _condition_expressions(node, now)
    if node["op"] in COMPLEMENTS:
        negate = not negate
    if not negate:
        return Q(*expressions)
    if len(expressions) == 1:
        return Q(Negated(expressions[0]))
    return Q(*(Negated(e) for e in expressions), _connector="OR")


def compile_rules(rules: Mapping[str, Any], *, now: datetime) -> Q:
    """A `Q` over AppUser selecting the users `rules` match at `now` (one SQL query).

    `rules` must have passed `validate_rules`; `{}` matches everyone. `now` anchors
    relative dates and subscribed_age, so a count and a send agree on the instant.
    """
    return _compile(rules, now, negate=False)


# ---------------------------------------------------------------------- targeting


def _include_exclude(targeting: Mapping[str, Any], key: str) -> tuple[list[Any], list[Any]]:
    rule = targeting.get(key) or {}
    return list(rule.get("include") or []), list(rule.get("exclude") or [])


def _language_node(languages: list[str]) -> dict[str, Any]:
    """A language matches itself and its regional variants ("en" matches "en-GB")."""
    nodes: list[dict[str, Any]] = [{"attr": "language", "op": "in", "value": languages}]
    for language in languages:
        nodes.append({"attr": "language", "op": "starts_with", "value": f"{language}-"})
        nodes.append({"attr": "language", "op": "starts_with", "value": f"{language}_"})
    return {"any": nodes}


def _user_data_nodes(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    nodes = []
    for key, wanted in mapping.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        scalars = [v for v in values if isinstance(v, str | int | float | bool)]
        if scalars:
            nodes.append({"attr": key, "op": "in", "value": scalars})
        else:
            nodes.append({"any": []})  # nothing can match an empty list
    return nodes


def _segment_rules(project: Project, ids: list[Any]) -> list[Mapping[str, Any]]:
    wanted = []
    for raw in ids:
        try:
            wanted.append(uuid.UUID(str(raw)))
        except ValueError:
            continue
    segments = Segment.objects.filter(project=project, pk__in=wanted)
    return list(segments.values_list("rules", flat=True))


def targeting_filter(
    tokens: QuerySet[PushToken],
    targeting: Mapping[str, Any],
    *,
    project: Project,
    now: datetime,
    segment_rules: Mapping[str, Any] | None = None,
) -> QuerySet[PushToken]:
    """Narrow `tokens` by a campaign's `targeting` (every present key ANDed).

    Token-level: platforms (token.platform), app_versions (token.app_version) and
    subscribed_age {from, to} (whole days since the token was registered — when
    the device subscribed). User-level: countries (upper-cased), languages (a code
    matches its regional variants), users (external ids), segments (member of any
    included, of none excluded) and user_data {include: {key: value | [values]},
    exclude: {...}} on attributes (JSON equality, as the `in` operator). A token
    without a user fails every user-level include and passes every exclude.
    Unknown segment ids are ignored, so an include naming only unknown segments
    reaches no one rather than everyone.

    `segment_rules` (the campaign's own segment, validated) is one more include.
    Every user-level include and exclude is compiled into one users subquery
    (`app_user_id IN (SELECT id FROM app_users WHERE ...)`), so PostgreSQL scans
    app_users once and hashes the members once: a subquery per condition group
    made it join app_users twice (docs/decisions.md, "Audience queries at 1M users").
    """
    tokens = _token_targeting(tokens, targeting, now)
    include, exclude = _user_targeting(targeting, project)
    if segment_rules is not None:
        include.insert(0, segment_rules)
    users = AppUser.objects.filter(project=project)
    if include:
        members = users.filter(_compile({"all": include}, now, False))
        if exclude:  # the exact complement (NULL-safe), as a rule's `not` compiles
            members = members.filter(_compile({"any": exclude}, now, True))
        return tokens.filter(app_user__in=members.values("id"))
    if exclude:  # tokens without a user pass an exclude: NOT EXISTS keeps them
        excluded = users.filter(pk=OuterRef("app_user_id")).filter(
            _compile({"any": exclude}, now, False)
        )
        return tokens.exclude(Exists(excluded))
    return tokens


def _token_targeting(
    tokens: QuerySet[PushToken], targeting: Mapping[str, Any], now: datetime
) -> QuerySet[PushToken]:
    platforms_in, platforms_out = _include_exclude(targeting, "platforms")
    if platforms_in:
        tokens = tokens.filter(platform__in=[p.lower() for p in platforms_in])
    if platforms_out:
        tokens = tokens.exclude(platform__in=[p.lower() for p in platforms_out])
    versions_in, versions_out = _include_exclude(targeting, "app_versions")
    if versions_in:
        tokens = tokens.filter(app_version__in=versions_in)
    if versions_out:
        tokens = tokens.exclude(app_version__in=versions_out)
    age = targeting.get("subscribed_age") or {}
    if "from" in age:
        tokens = tokens.filter(created_at__lte=now - int(age["from"]) * DAY)
    if "to" in age:
        tokens = tokens.filter(created_at__gt=now - (int(age["to"]) + 1) * DAY)
    return tokens


def _user_targeting(
    targeting: Mapping[str, Any], project: Project
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The user-level include and exclude rule nodes of `targeting`."""
    include: list[Mapping[str, Any]] = []
    exclude: list[Mapping[str, Any]] = []
    countries_in, countries_out = _include_exclude(targeting, "countries")
    if countries_in:
        include.append({"attr": "country", "op": "in", "value": [c.upper() for c in countries_in]})
    if countries_out:
        exclude.append({"attr": "country", "op": "in", "value": [c.upper() for c in countries_out]})
    languages_in, languages_out = _include_exclude(targeting, "languages")
    if languages_in:
        include.append(_language_node(languages_in))
    if languages_out:
        exclude.append(_language_node(languages_out))
    users_in, users_out = _include_exclude(targeting, "users")
    if users_in:
        include.append({"attr": "external_id", "op": "in", "value": users_in})
    if users_out:
        exclude.append({"attr": "external_id", "op": "in", "value": users_out})
    user_data = targeting.get("user_data") or {}
    include.extend(_user_data_nodes(user_data.get("include") or {}))
    exclude.extend(_user_data_nodes(user_data.get("exclude") or {}))
    segments_in, segments_out = _include_exclude(targeting, "segments")
    if segments_in:
        include.append({"any": _segment_rules(project, segments_in)})
    if segments_out:
        exclude.extend(_segment_rules(project, segments_out))
    return include, exclude
