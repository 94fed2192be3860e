"""Herald's periodic schedules, declared in one place (STYLE.md, "Tasks").

They are rows of django-celery-beat's PeriodicTask, so operators see and can
pause them in the admin (Periodic tasks). `sync_periodic_tasks` writes them from
the settings; it runs in the data migration that first created them and every
time Celery beat starts (config/celery.py), so a changed
HERALD_SWEEP_INTERVAL_SECONDS takes effect at the next beat start. Rows are
matched by name; the interval and task follow the settings (an interval edited
in the admin is put back at the next start), while `enabled` is the operator's:
a paused task stays paused.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps as django_apps
from django.apps.registry import Apps
from django.conf import settings


@dataclass(frozen=True)
class Periodic:
    name: str
    task: str
    every: int
    period: str  # an IntervalSchedule period: "seconds", "minutes", ...


def periodic_tasks() -> list[Periodic]:
    return [
        Periodic(
            "herald: sweep campaigns",
            "campaigns.sweep",
            settings.HERALD_SWEEP_INTERVAL_SECONDS,
            "seconds",
        ),
        Periodic(
            "herald: refresh segment counts", "segments.refresh_segment_counts", 15, "minutes"
        ),
        Periodic("herald: expire idempotency keys", "core.expire_idempotency_keys", 1, "hours"),
        # Deletes app events older than HERALD_EVENT_RETENTION_DAYS (segments/events.py).
        Periodic("herald: purge old events", "segments.purge_events", 1, "days"),
        # Deletes audit events older than HERALD_AUDIT_RETENTION_DAYS (core/audit.py).
        Periodic("herald: purge old audit events", "core.purge_audit_events", 1, "days"),
    ]


def sync_periodic_tasks(apps: Apps = django_apps) -> None:
    """Create or update Herald's PeriodicTask rows from the settings.

    `apps` is the migration's historical registry when a migration calls it."""
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    for periodic in periodic_tasks():
        # Not get_or_create: (every, period) is not unique, and an operator may have
        # added an equal schedule in the admin.
        interval = (
            interval_schedule.objects.filter(every=periodic.every, period=periodic.period)
            .order_by("pk")
            .first()
        ) or interval_schedule.objects.create(every=periodic.every, period=periodic.period)
        # One schedule per task: an operator's switch to a crontab is undone too.
        schedule = {
            "task": periodic.task,
            "interval": interval,
            "crontab": None,
            "solar": None,
            "clocked": None,
        }
        periodic_task.objects.update_or_create(
            name=periodic.name,
            defaults=schedule,
            create_defaults={**schedule, "enabled": True},
        )


def remove_periodic_tasks(apps: Apps = django_apps) -> None:
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(name__in=[p.name for p in periodic_tasks()]).delete()
