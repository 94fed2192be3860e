"""Herald's periodic schedules, declared in one place (STYLE.md, "Tasks").

Operators see and can pause them in the admin (Periodic tasks). Re-running is
harmless: rows are matched by name. A schedule added later is appended to PERIODIC
and applied to existing databases by a later migration that calls `create` with its
name (e.g. 0005_periodic_expire_idempotency_keys), so this list stays the one place.
"""

from django.conf import settings
from django.db import migrations

PERIODIC = [
    # name, task, every, period
    ("herald: sweep campaigns", "campaigns.sweep", None, "seconds"),
    ("herald: refresh segment counts", "segments.refresh_segment_counts", 15, "minutes"),
    ("herald: expire idempotency keys", "core.expire_idempotency_keys", 1, "hours"),
]


def create(apps, schema_editor, names=None):
    """Declare the PERIODIC entries (those named in `names`, or all)."""
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in PERIODIC:
        if names is not None and name not in names:
            continue
        every = every or settings.HERALD_SWEEP_INTERVAL_SECONDS
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[p[0] for p in PERIODIC]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
