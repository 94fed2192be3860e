"""Herald's periodic schedules: created here, declared in campaigns/periodic.py.

Beat re-applies them from the settings at every start (campaigns.periodic), so
this migration only has to make them exist for a fresh database.
"""

from django.db import migrations

from campaigns.periodic import remove_periodic_tasks, sync_periodic_tasks


def create(apps, schema_editor):
    sync_periodic_tasks(apps)


def remove(apps, schema_editor):
    remove_periodic_tasks(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
