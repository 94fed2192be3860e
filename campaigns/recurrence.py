"""When a recurring campaign's next occurrence is: pure functions of their inputs.

The database stores the next occurrence in `scheduled_at`; these functions compute
it, in the recurrence's time zone, so a daily 09:00 stays 09:00 local across DST
changes (docs/scheduling.md). Wall-clock times that do not exist (the spring-forward
gap) move forward by the gap; ambiguous ones (fall back) take the first instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter


def _aware_local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant of wall-clock `at` on `day` in `zone` (gap: shifted forward)."""
    # PEP 495: fold=0 takes the pre-transition offset, which places a gap time
    # after the gap (shifted forward) and an ambiguous time at its first instant.
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def next_occurrence(recurrence: dict[str, Any], *, after: datetime, anchor: datetime) -> datetime:
    """The first occurrence strictly after `after` (aware UTC in, aware UTC out).

    `anchor` is the first occurrence (the campaign's original start); interval
    recurrences count from it so occurrences do not drift with processing delays.
    """
    if after.tzinfo is None or anchor.tzinfo is None:
        raise ValueError("after and anchor must be timezone-aware")
    if "every_seconds" in recurrence:
        step = timedelta(seconds=int(recurrence["every_seconds"]))
        if after < anchor:
            return anchor.astimezone(UTC)
        periods = int((after - anchor) / step) + 1
        return (anchor + periods * step).astimezone(UTC)
    zone = ZoneInfo(recurrence.get("timezone") or "UTC")
    if "cron" in recurrence:
        start = max(after, anchor - timedelta(microseconds=1)).astimezone(zone)
        return _cron_next(recurrence["cron"], start, zone)
    every = int(recurrence["every_days"])
    hour, minute = (int(part) for part in str(recurrence.get("at", "00:00")).split(":"))
    at = time(hour, minute)
    anchor_day = anchor.astimezone(zone).date()
    first = _aware_local(anchor_day, at, zone)
    if first < anchor:
        anchor_day += timedelta(days=every)
    if after < _aware_local(anchor_day, at, zone):
        return _aware_local(anchor_day, at, zone)
    local_day = after.astimezone(zone).date()
    offset = (local_day - anchor_day).days % every
    day = local_day - timedelta(days=offset)
    while True:
        candidate = _aware_local(day, at, zone)
        if candidate > after:
            return candidate
        day += timedelta(days=every)


def _cron_next(expression: str, start: datetime, zone: ZoneInfo) -> datetime:
    """croniter over wall-clock fields, resolved to instants in `zone`.

    croniter is given naive local times so it reasons purely in wall-clock fields;
    each match is then placed in the zone (gap times shift forward, ambiguous take
    the first). A match that resolves to an instant not after `start` (the repeated
    hour of a fall-back night) is skipped, so no occurrence fires twice.
    """
    naive_start = start.astimezone(zone).replace(tzinfo=None)
    iterator = croniter(expression, naive_start)
    for _ in range(10000):
        match: datetime = iterator.get_next(datetime)
        instant = _aware_local(match.date(), match.time(), zone)
        if instant > start:
            return instant
    raise ValueError(f"no occurrence found for {expression!r}")
