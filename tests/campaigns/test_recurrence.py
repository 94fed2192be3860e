"""Recurrence arithmetic across DST changes, in more than one time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.recurrence import next_occurrence


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def occurrences(recurrence, anchor, count):
    out, after = [], anchor - timedelta(microseconds=1)
    for _ in range(count):
        after = next_occurrence(recurrence, after=after, anchor=anchor)
        out.append(after)
    return out


def test_daily_at_keeps_local_time_across_spring_forward_in_paris():
    # Europe/Paris leaves CET (+1) for CEST (+2) on 2026-03-29.
    recurrence = {"every_days": 1, "at": "09:00", "timezone": "Europe/Paris"}
    assert occurrences(recurrence, utc(2026, 3, 27, 0, 0), 4) == [
        utc(2026, 3, 27, 8, 0),
        utc(2026, 3, 28, 8, 0),
        utc(2026, 3, 29, 7, 0),
        utc(2026, 3, 30, 7, 0),
    ]


def test_daily_at_keeps_local_time_across_fall_back_in_new_york():
    # America/New_York leaves EDT (-4) for EST (-5) on 2026-11-01.
    recurrence = {"every_days": 1, "at": "18:30", "timezone": "America/New_York"}
    assert occurrences(recurrence, utc(2026, 10, 31, 12, 0), 3) == [
        utc(2026, 10, 31, 22, 30),
        utc(2026, 11, 1, 23, 30),
        utc(2026, 11, 2, 23, 30),
    ]


def test_daily_at_in_the_spring_forward_gap_moves_forward_by_the_gap():
    # 02:30 does not exist in Paris on 2026-03-29: it is sent at 03:30 CEST (01:30 UTC).
    recurrence = {"every_days": 1, "at": "02:30", "timezone": "Europe/Paris"}
    assert occurrences(recurrence, utc(2026, 3, 28, 0, 0), 3) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]


def test_daily_at_in_the_repeated_hour_fires_once_at_the_first_instant():
    # 01:30 happens twice in New York on 2026-11-01; the first (EDT, 05:30 UTC) wins.
    recurrence = {"every_days": 1, "at": "01:30", "timezone": "America/New_York"}
    assert occurrences(recurrence, utc(2026, 10, 31, 12, 0), 3) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
        utc(2026, 11, 3, 6, 30),
    ]


def test_every_n_days_counts_from_the_anchor():
    recurrence = {"every_days": 3, "at": "07:00", "timezone": "Asia/Kolkata"}
    anchor = utc(2026, 1, 1, 0, 0)  # 05:30 local; the first 07:00 is the same day
    assert occurrences(recurrence, anchor, 3) == [
        utc(2026, 1, 1, 1, 30),
        utc(2026, 1, 4, 1, 30),
        utc(2026, 1, 7, 1, 30),
    ]
    # Asked from the middle of the sequence, it stays on the anchor's rhythm.
    assert next_occurrence(recurrence, after=utc(2026, 1, 5, 0, 0), anchor=anchor) == utc(
        2026, 1, 7, 1, 30
    )


def test_cron_in_paris_across_both_dst_changes():
    recurrence = {"cron": "0 12 * * 1,5", "timezone": "Europe/Paris"}  # Mon & Fri noon
    assert occurrences(recurrence, utc(2026, 3, 26, 0, 0), 3) == [
        utc(2026, 3, 27, 11, 0),  # Friday, CET
        utc(2026, 3, 30, 10, 0),  # Monday, CEST
        utc(2026, 4, 3, 10, 0),
    ]
    assert occurrences(recurrence, utc(2026, 10, 22, 0, 0), 3) == [
        utc(2026, 10, 23, 10, 0),  # Friday, CEST
        utc(2026, 10, 26, 11, 0),  # Monday, CET
        utc(2026, 10, 30, 11, 0),
    ]


def test_cron_never_fires_twice_in_the_repeated_hour():
    recurrence = {"cron": "30 1 * * *", "timezone": "America/New_York"}
    result = occurrences(recurrence, utc(2026, 10, 31, 12, 0), 2)
    assert result == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_cron_in_sydney_southern_hemisphere():
    # Australia/Sydney leaves AEDT (+11) for AEST (+10) on 2026-04-05.
    recurrence = {"cron": "0 9 * * *", "timezone": "Australia/Sydney"}
    assert occurrences(recurrence, utc(2026, 4, 3, 0, 0), 3) == [
        utc(2026, 4, 3, 22, 0),  # 4 April 09:00 AEDT
        utc(2026, 4, 4, 23, 0),  # 5 April 09:00 AEST
        utc(2026, 4, 5, 23, 0),
    ]


def test_every_seconds_is_anchored_and_does_not_drift():
    recurrence = {"every_seconds": 3600}
    anchor = utc(2026, 3, 29, 0, 15)
    assert next_occurrence(recurrence, after=utc(2026, 3, 29, 5, 40), anchor=anchor) == utc(
        2026, 3, 29, 6, 15
    )
    assert next_occurrence(recurrence, after=utc(2026, 3, 29, 6, 15), anchor=anchor) == utc(
        2026, 3, 29, 7, 15
    )
    assert next_occurrence(recurrence, after=utc(2026, 3, 28), anchor=anchor) == anchor


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        next_occurrence({"every_seconds": 60}, after=datetime(2026, 1, 1), anchor=utc(2026, 1, 1))
