"""The rule grammar's vocabulary: operators, attribute kinds, limits.

See the package docstring (segments/rules/__init__.py) for the semantics.
"""

from __future__ import annotations

import re

from delivery.models import Platform, Provider

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
    "provider": {"apns": 8, "fcm": 16, "webpush": 64},
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

# app_version under gt/gte/lt/lte/between/not_between compares as a version.
VERSION_ATTR = "app_version"
VERSION_OPS = (*ORDERING_OPS, "between")


def attribute_kind(attr: str) -> str:
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
