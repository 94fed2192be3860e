"""campaigns.periodic: Herald's beat schedules follow the settings, not the day of migrate."""

from __future__ import annotations

from typing import Any

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from campaigns.periodic import sync_periodic_tasks

pytestmark = pytest.mark.django_db


def schedules() -> list[tuple[Any, ...]]:
    return list(
        PeriodicTask.objects.filter(name__startswith="herald: ")
        .order_by("name")
        .values_list("name", "task", "interval__every", "interval__period", "crontab", "enabled")
    )


def herald_schedules(*, sweep_every: int, sweep_enabled: bool = True) -> list[tuple[Any, ...]]:
    expire = ("herald: expire idempotency keys", "core.expire_idempotency_keys")
    refresh = ("herald: refresh segment counts", "segments.refresh_segment_counts")
    sweep = ("herald: sweep campaigns", "campaigns.sweep")
    purge = ("herald: purge old events", "segments.purge_events")
    purge_audit = ("herald: purge old audit events", "core.purge_audit_events")
    return [
        (*expire, 1, "hours", None, True),
        (*purge_audit, 1, "days", None, True),
        (*purge, 1, "days", None, True),
        (*refresh, 15, "minutes", None, True),
        (*sweep, sweep_every, "seconds", None, sweep_enabled),
    ]


def test_sync_applies_the_sweep_interval_setting(settings: Any) -> None:
    settings.HERALD_SWEEP_INTERVAL_SECONDS = 7

    sync_periodic_tasks()

    assert schedules() == herald_schedules(sweep_every=7)


def test_sync_keeps_a_pause_and_undoes_an_edited_schedule(settings: Any) -> None:
    settings.HERALD_SWEEP_INTERVAL_SECONDS = 5
    sync_periodic_tasks()
    crontab = CrontabSchedule.objects.create(minute="0")
    PeriodicTask.objects.filter(name="herald: sweep campaigns").update(
        interval=None, crontab=crontab, enabled=False
    )
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    PeriodicTask.objects.filter(name="herald: refresh segment counts").update(interval=hourly)

    sync_periodic_tasks()

    assert schedules() == herald_schedules(sweep_every=5, sweep_enabled=False)
