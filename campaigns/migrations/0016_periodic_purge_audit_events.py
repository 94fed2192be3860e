"""Adds the audit-event retention purge to databases migrated before it was declared
(the schedules are declared in campaigns/periodic.py)."""

from django.db import migrations

from campaigns.periodic import sync_periodic_tasks

NAME = "herald: purge old audit events"


def create(apps, schema_editor):
    sync_periodic_tasks(apps)


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0015_permissions"),
        ("core", "0010_audit_events"),
    ]
    operations = [migrations.RunPython(create, remove)]
