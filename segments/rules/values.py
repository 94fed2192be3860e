"""Rule values: dates, relative dates, versions, and operands ready to compare.

Shared by the validator, the Python evaluator and the SQL compiler, so the three
read a value the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from segments.rules.grammar import MAX_RELATIVE_DAYS

_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A stored string is a date when it has the shape of a canonical day or instant:
# its length and separators (any character stands where the digits go). The same
# test three ways: Python, PostgreSQL LIKE ('_' = one character), SQLite GLOB ('?').
STORED_DATE_RE = re.compile(r"....-..-..(T..:..:..\....Z)?", re.DOTALL)
_DATETIME_PREFIX_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
_RELATIVE_RE = re.compile(r"([+-])([0-9]{1,7})([mhdw])")
_RELATIVE_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_RELATIVE_UNITS["w"] = timedelta(weeks=1)
MIDNIGHT_SUFFIX = "T00:00:00.000Z"
DAY = timedelta(days=1)
# A rule value is all of it; a stored value counts by its leading part. ASCII digits.
VERSION_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


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


def relative_offset(text: str) -> timedelta | None:
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
    match = VERSION_RE.match(text)
    if match is None:
        return None
    parts = [part.lstrip("0") or "0" for part in match.group().split(".")]
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return tuple((len(part), part) for part in parts)


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


def date_operand(text: str, now: datetime) -> Operand | None:
    day = parse_day(text)
    if day is not None:
        return Operand("day", day.isoformat())
    delta = relative_offset(text)
    if delta is not None:
        moment = now + delta
        return Operand("instant", canonical_instant(moment), moment)
    moment_or_none = parse_instant(text)
    if moment_or_none is not None:
        return Operand("instant", canonical_instant(moment_or_none), moment_or_none)
    return None


def version_operand(value: str) -> Operand:
    key = version_key(value)
    assert key is not None  # validate_rules accepted it
    return Operand("version", key)


def scalar_operand(value: Any, now: datetime, *, dates: bool = True) -> Operand:
    if isinstance(value, bool):
        return Operand("boolean", value)
    if isinstance(value, int | float):
        return Operand("number", float(value))
    if dates:
        as_date = date_operand(value, now)
        if as_date is not None:
            return as_date
    return Operand("string", value)
