"""Per-delivery timing rules, as pure functions: local time, quiet hours, expiry.

The engine applies them right before claiming rows (so a retry or a backlog cannot
slip into quiet hours) and the fan-out applies them when it creates rows (so rows
are not claimed only to be deferred). Times in, times out: aware UTC datetimes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class DeliveryPolicy:
    """What a caller asks of a batch beyond "send it" (all optional).

    `deadline`: rows not attempted by then are skipped ("expired").
    `quiet_hours`: {"start", "end", "action": "defer"|"skip"} in each user's local time.
    `default_timezone`: for users with no known time zone.
    `frequency_cap_per_day`: at most this many distinct campaign runs delivered to a
    user in any rolling 24 hours; more are skipped ("frequency_cap").
    `rate_per_minute` with `rate_scope` (campaign id, run): claims of that run in any
    60 s window never exceed the rate; `rate_lock` serializes concurrent claimers.
    """

    deadline: datetime | None = None
    quiet_hours: Mapping[str, str] | None = None
    default_timezone: str = "UTC"
    frequency_cap_per_day: int | None = None
    rate_per_minute: int | None = None
    rate_scope: tuple[uuid.UUID, int] | None = None
    rate_lock: Callable[[], Any] | None = None


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The named zone, or `default` for a missing or unknown name (users send junk)."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _hhmm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def local_instant(day: Any, at: time, tz: ZoneInfo) -> datetime:
    """Wall-clock `at` on local `day` as an aware UTC instant (gaps shift forward)."""
    return datetime.combine(day, at, tzinfo=tz).replace(fold=0).astimezone(UTC)


def quiet_until(
    quiet_hours: Mapping[str, str] | None, tz: ZoneInfo, at: datetime
) -> datetime | None:
    """If `at` falls in the user's quiet hours, when they end; else None.

    Windows may wrap midnight ("22:00" to "08:00").
    """
    if not quiet_hours:
        return None
    start, end = _hhmm(quiet_hours["start"]), _hhmm(quiet_hours["end"])
    local = at.astimezone(tz)
    now_t = local.time().replace(second=0, microsecond=0, tzinfo=None)
    if start < end:
        inside = start <= now_t < end
        end_day = local.date()
    else:
        inside = now_t >= start or now_t < end
        end_day = local.date() + timedelta(days=1) if now_t >= start else local.date()
    if not inside:
        return None
    return local_instant(end_day, end, tz)


def local_due(wall_clock: datetime, tz: ZoneInfo, *, now: datetime, missed: str) -> datetime | None:
    """When a user in `tz` should get a push meant for local `wall_clock` (naive).

    If that moment has passed: the same time the next day (`missed="next_day"`) or
    None (`missed="skip"`).
    """
    due = local_instant(wall_clock.date(), wall_clock.time(), tz)
    if due >= now - timedelta(seconds=60):
        return due
    if missed == "skip":
        return None
    return local_instant(wall_clock.date() + timedelta(days=1), wall_clock.time(), tz)


# The earliest time zone in use (Kiribati, UTC+14): a local-time run starts when it
# reaches the wall-clock time, so no user's moment has passed when rows are created.
EARLIEST_OFFSET = timedelta(hours=14)


def local_time_fire_at(wall_clock: datetime) -> datetime:
    return (wall_clock - EARLIEST_OFFSET).replace(tzinfo=UTC)
