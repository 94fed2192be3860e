"""Local-time bucketing and quiet hours (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from delivery.policy import local_due, local_time_fire_at, quiet_until, zone


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


WALL = datetime(2026, 3, 29, 9, 0)  # 09:00 on the day Paris springs forward


def test_local_due_puts_each_user_at_their_own_nine_oclock():
    now = utc(2026, 3, 28, 19, 0)
    assert local_due(WALL, zone("Pacific/Kiritimati"), now=now, missed="skip") == utc(
        2026, 3, 28, 19, 0
    )
    assert local_due(WALL, zone("Europe/Paris"), now=now, missed="skip") == utc(2026, 3, 29, 7, 0)
    assert local_due(WALL, zone("America/Los_Angeles"), now=now, missed="skip") == utc(
        2026, 3, 29, 16, 0
    )


def test_local_time_already_passed_goes_to_next_day_or_is_skipped():
    now = utc(2026, 3, 29, 12, 0)  # Paris passed 09:00 three hours ago
    assert local_due(WALL, zone("Europe/Paris"), now=now, missed="skip") is None
    assert local_due(WALL, zone("Europe/Paris"), now=now, missed="next_day") == utc(
        2026, 3, 30, 7, 0
    )
    # Within the last minute still counts as now, not tomorrow.
    assert local_due(WALL, zone("UTC"), now=utc(2026, 3, 29, 9, 0, 30), missed="skip") == utc(
        2026, 3, 29, 9, 0
    )


def test_unknown_or_missing_zone_falls_back_to_the_default():
    assert zone("Not/AZone", "Asia/Tokyo").key == "Asia/Tokyo"
    assert zone(None, "Europe/Berlin").key == "Europe/Berlin"
    assert zone("", "Bad/Default").key == "UTC"


def test_local_time_runs_start_when_the_earliest_zone_gets_there():
    assert local_time_fire_at(WALL) == utc(2026, 3, 28, 19, 0)


QUIET = {"start": "22:00", "end": "08:00", "action": "defer"}


def test_quiet_hours_wrapping_midnight():
    paris = zone("Europe/Paris")
    # 23:30 Paris (CET) on 2026-01-10 -> ends 08:00 next morning
    assert quiet_until(QUIET, paris, utc(2026, 1, 10, 22, 30)) == utc(2026, 1, 11, 7, 0)
    # 03:00 Paris -> ends 08:00 the same morning
    assert quiet_until(QUIET, paris, utc(2026, 1, 11, 2, 0)) == utc(2026, 1, 11, 7, 0)
    # 12:00 Paris is not quiet
    assert quiet_until(QUIET, paris, utc(2026, 1, 11, 11, 0)) is None
    # exactly at the end is not quiet; exactly at the start is
    assert quiet_until(QUIET, paris, utc(2026, 1, 11, 7, 0)) is None
    assert quiet_until(QUIET, paris, utc(2026, 1, 11, 21, 0)) == utc(2026, 1, 12, 7, 0)


def test_quiet_hours_same_day_window_and_dst_end():
    window = {"start": "12:00", "end": "14:00", "action": "skip"}
    ny = zone("America/New_York")
    assert quiet_until(window, ny, utc(2026, 7, 1, 16, 30)) == utc(2026, 7, 1, 18, 0)
    assert quiet_until(window, ny, utc(2026, 7, 1, 18, 0)) is None
    # The window end follows the local clock across the DST change night.
    assert quiet_until(QUIET, ny, utc(2026, 11, 1, 4, 0)) == utc(2026, 11, 1, 13, 0)


def test_no_quiet_hours():
    assert quiet_until(None, zone("UTC"), utc(2026, 1, 1)) is None
