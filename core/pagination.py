"""Keyset (cursor) pagination: stable under inserts, O(page) at any depth.

The cursor is an opaque URL-safe token encoding the sort key of the last row seen.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from core.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str | None, *, arity: int) -> list[Any] | None:
    """None (first page) when no cursor is given; `?cursor=` (empty) is not a cursor."""
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput("cursor is not valid.", details={"field": "cursor"}) from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidInput("cursor is not valid.", details={"field": "cursor"})
    return values


def parse_limit(raw: str | None) -> int:
    """`?limit=`: DEFAULT_LIMIT when absent; given, it must be 1..MAX_LIMIT (empty is 400)."""
    if raw is None:
        return DEFAULT_LIMIT
    # isdigit() alone also accepts digits int() refuses, such as "²"; the length
    # check keeps int() away from thousands of digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be an integer between 1 and {MAX_LIMIT}.", details={"field": "limit"}
        )
    return int(raw)
