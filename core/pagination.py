"""Keyset (cursor) pagination: stable under inserts, O(page) at any depth.

The one paginator of every list endpoint (campaigns, deliveries, segments). A page
is ordered by a tuple of key columns ending in a unique one; the cursor is an
opaque URL-safe token encoding the keys of the last row seen, and the next page
starts strictly after it. A cursor is client input: every value in it is checked
by its key's decoder, so a tampered cursor (wrong arity or types, a naive or
overflowing time, an out-of-range id) is 400 VALIDATION_ERROR `cursor is not
valid.`, never a 500 or a silently different page. docs/api.md, "Pagination".
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet
from drf_spectacular.utils import OpenApiParameter

from core.errors import InvalidInput

DEFAULT_LIMIT = 50
MIN_LIMIT = 1
MAX_LIMIT = 200
_MAX_ROW_ID = 2**63 - 1  # bigint: a larger id in a cursor would overflow the query

M = TypeVar("M", bound=Model)

LIMIT_PARAMETER = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": MIN_LIMIT, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    description=(
        f"Page size, {MIN_LIMIT}-{MAX_LIMIT} (default {DEFAULT_LIMIT}); anything else, "
        "including an empty value, is 400 VALIDATION_ERROR naming `limit`."
    ),
)
CURSOR_PARAMETER = OpenApiParameter(
    "cursor",
    {"type": "string", "minLength": 1},
    description="`next` from the previous page (opaque); an empty value is 400.",
)


def _invalid_cursor() -> InvalidInput:
    return InvalidInput("cursor is not valid.", details={"field": "cursor"})


def parse_limit(raw: str | None) -> int:
    """`?limit=`: absent is the default; empty, non-integer or out of range is a 400."""
    if raw is None:
        return DEFAULT_LIMIT
    # isdigit() alone also accepts digits int() refuses, such as "²"; the length
    # check keeps int() away from thousands of digits.
    valid = raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_LIMIT))
    if not valid or not MIN_LIMIT <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be an integer between {MIN_LIMIT} and {MAX_LIMIT}.",
            details={"field": "limit"},
        )
    return int(raw)


def aware_datetime(value: Any) -> datetime:
    """A cursor time: ISO-8601 with an offset, normalised to UTC.

    Converting here rather than in the query: an extreme offset overflows here
    (OverflowError, a 400) instead of in the database driver.
    """
    if not isinstance(value, str):
        raise ValueError("not a time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive cursor time")
    return parsed.astimezone(UTC)


def uuid_value(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError("not a uuid")
    return uuid.UUID(value)


def row_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ROW_ID:
        raise ValueError("not a row id")
    return value


@dataclass(frozen=True)
class Key:
    """One sort column: its field name, and how its value goes into and out of a cursor."""

    field: str
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any] = str


NEWEST_FIRST = (Key("created_at", aware_datetime, datetime.isoformat), Key("id", uuid_value))
BY_ROW_ID = (Key("id", row_id, int),)


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str | None, *, keys: Sequence[Key]) -> list[Any] | None:
    """The key values a cursor holds, each checked by its key; None (first page) when
    no cursor is given. `?cursor=` (empty) is not a cursor: 400."""
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong arity")
        return [key.decode(value) for key, value in zip(keys, values, strict=True)]
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid_cursor() from exc


def _after(keys: Sequence[Key], position: list[Any], *, descending: bool) -> Q:
    """Rows strictly after `position` in the (lexicographic) key order."""
    beyond = "lt" if descending else "gt"
    condition = Q()
    for index, key in enumerate(keys):
        step = Q(**{k.field: v for k, v in zip(keys[:index], position, strict=False)})
        step &= Q(**{f"{key.field}__{beyond}": position[index]})
        condition |= step
    return condition


def keyset_page(
    rows: QuerySet[M],
    *,
    keys: Sequence[Key],
    cursor: str | None,
    limit: int,
    descending: bool = False,
) -> tuple[list[M], str | None]:
    """One page of `rows` ordered by `keys` (the last one unique), and the next cursor.

    The cursor is None on the last page. One query of `limit + 1` rows: the extra
    row only tells whether there is a next page.
    """
    position = decode_cursor(cursor, keys=keys)
    if position is not None:
        rows = rows.filter(_after(keys, position, descending=descending))
    order = [("-" if descending else "") + key.field for key in keys]
    page = list(rows.order_by(*order)[: limit + 1])
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    last = page[-1]
    return page, encode_cursor([key.encode(getattr(last, key.field)) for key in keys])
