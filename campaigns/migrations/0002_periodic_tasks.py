"""Herald's periodic schedules, declared in one place (STYLE.md, "Tasks").

Operators see and can pause them in the admin (Periodic tasks). Re-running is
harmless: rows are matched by name.
"""

from django.conf import settings
from django.db import migrations

PERIODIC = [
    # name, task, every, period
    ("herald: sweep campaigns", "campaigns.sweep", None, "seconds"),
    ("herald: refresh segment counts", "segments.refresh_segment_counts", 15, "minutes"),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in PERIODIC:
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
