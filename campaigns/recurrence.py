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


_DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTH_NAMES = (
    "",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct ints as (first, last) runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _named(values: list[int], names: tuple[str, ...]) -> str:
    parts = []
    for first, last in _runs(values):
        if last - first >= 2:
            parts.append(f"{names[first]} to {names[last]}")
        else:
            parts.extend(names[v] for v in range(first, last + 1))
    return _join(parts)


def _step(values: list[Any], size: int) -> int:
    """n when `values` is exactly 0, n, 2n, ... below `size` (a `*/n` field), else 0."""
    if len(values) < 2 or values[0] != 0:
        return 0
    step = int(values[1])
    return step if values == list(range(0, size, step)) else 0


def _hours(hours: list[int]) -> str:
    parts = [
        f"{first:02d}:00-{last:02d}:59" if last > first else f"{first:02d}:00-{first:02d}:59"
        for first, last in _runs(hours)
    ]
    return _join(parts)


def _cron_reading(expression: str) -> str:
    """A 5-field cron expression in words ("at 12:00 on Mon and Fri"), from croniter's
    own expansion of it, so the reading is of what croniter will run."""
    fields, _ = croniter.expand(expression)
    minutes, hours, days, months, weekdays = fields
    star = ["*"]
    minute_step = 1 if minutes == star else _step(minutes, 60)
    hour_step = 1 if hours == star else _step(hours, 24)
    minute_list = _join([f"{m:02d}" for m in minutes]) if minutes != star else ""
    if minutes != star and hours != star and len(minutes) * len(hours) <= 6:
        when = "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    elif hours == star or hour_step == 1:
        when = (
            _every(minute_step, "minute") if minute_step else f"every hour at minute {minute_list}"
        )
    elif hour_step and len(minutes) == 1 and minutes != star:
        when = f"{_every(hour_step, 'hour')} at minute {minute_list}"
    else:
        per_hour = _every(minute_step, "minute") if minute_step else f"at minute {minute_list}"
        when = f"{per_hour} between {_hours([int(h) for h in hours])}"
    parts = [when]
    if days != star:
        parts.append("on day " + _join([str(d) for d in days]) + " of the month")
    if weekdays != star:
        prefix = "or on " if days != star else "on "
        parts.append(prefix + _named([int(d) % 7 for d in weekdays], _DAY_NAMES))
    if months != star:
        parts.append("in " + _named([int(m) for m in months], _MONTH_NAMES))
    return " ".join(parts)


def _every(count: int, unit: str) -> str:
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def describe_recurrence(recurrence: dict[str, Any]) -> str:
    """A clean recurrence (campaigns.validation) in words, with its zone.

    "at 12:00 on Mon and Fri, Europe/Paris", "every 15 minutes", "every 2 days at
    09:00, UTC": what the console shows beside the recurrence builder.
    """
    if "every_seconds" in recurrence:
        seconds = int(recurrence["every_seconds"])
        for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
            if seconds % size == 0:
                return _every(seconds // size, unit)
        return _every(seconds, "second")
    zone = recurrence.get("timezone") or "UTC"
    if "cron" in recurrence:
        return f"{_cron_reading(recurrence['cron'])}, {zone}"
    every = _every(int(recurrence["every_days"]), "day")
    return f"{every} at {recurrence.get('at', '00:00')}, {zone}"
