"""The events table (segments.models.Event) and its time index, per database engine.

PostgreSQL gets a BRIN index on occurred_at: rows are appended roughly in time order,
so a block range summary (a few kB for millions of rows) answers time-range scans and
the retention purge at almost no cost per insert. SQLite has no BRIN; it gets a
plain time-ordered btree. Raw SQL because a model-level BrinIndex would be created on
SQLite too (the embedded default) and fail there; the autodetector does not see it.
docs/decisions.md, "App events".
"""

import django.db.models.deletion
from django.db import migrations, models

TIME_INDEX = {
    "postgresql": "CREATE INDEX IF NOT EXISTS event_occurred_brin ON events USING brin (occurred_at)",
    "sqlite": "CREATE INDEX IF NOT EXISTS event_occurred_at ON events (occurred_at)",
}


def create_time_index(apps, schema_editor):
    statement = TIME_INDEX.get(schema_editor.connection.vendor)
    if statement:
        schema_editor.execute(statement)


def drop_time_index(apps, schema_editor):
    if schema_editor.connection.vendor in TIME_INDEX:
        schema_editor.execute("DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0003_delivery_guarantee'),
        ('segments', '0003_active_token_kinds'),
    ]

    operations = [
        migrations.CreateModel(
            name='Event',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=64)),
                ('properties', models.JSONField(blank=True, default=dict)),
                ('occurred_at', models.DateTimeField()),
                ('received_at', models.DateTimeField()),
                ('event_id', models.CharField(max_length=64)),
                ('delivery_id', models.BigIntegerField(blank=True, null=True)),
                ('action_id', models.CharField(blank=True, max_length=64)),
                ('app_user', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='segments.appuser')),
                ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.project')),
            ],
            options={
                'db_table': 'events',
                'constraints': [models.UniqueConstraint(fields=('project', 'event_id'), name='event_unique_per_project')],
            },
        ),
        migrations.RunPython(create_time_index, drop_time_index, elidable=False),
    ]
