"""Adds the idempotency-key expiry to databases migrated before it was declared.

The schedule itself is declared with the others in 0002_periodic_tasks.PERIODIC.
"""

import importlib

from django.db import migrations

periodic = importlib.import_module("campaigns.migrations.0002_periodic_tasks")
NAME = "herald: expire idempotency keys"


def create(apps, schema_editor):
    periodic.create(apps, schema_editor, names={NAME})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0004_run_data_override"),
        ("core", "0002_idempotency_keys"),
    ]
    operations = [migrations.RunPython(create, remove)]
