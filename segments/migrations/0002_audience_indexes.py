"""Indexes for segment rules and targeting, per database engine.

The rule engine compiles `country`/`language` conditions to
`(attributes ->> 'country') IN (...)` on PostgreSQL and to
`json_extract(attributes, '$."country"')` on SQLite; these expression indexes (led by
project_id, as every audience query is per project) let such conditions, and the
"seen in the last N days" ones on last_seen_at, avoid a scan of the project's users.
On PostgreSQL, equality on any other key compiles to `attributes @> '{"key": value}'`,
which the GIN (jsonb_path_ops: small, containment only) index answers.
Raw SQL because Django's model indexes cannot express vendor-specific JSON
expressions; the autodetector does not see them, so they never show up as a diff.
PostgreSQL builds them CONCURRENTLY (no write lock on a large app_users table).
"""

from django.db import migrations

INDEXES = {
    "postgresql": {
        "app_user_attr_country": "(project_id, (attributes ->> 'country'))",
        "app_user_attr_language": "(project_id, (attributes ->> 'language'))",
        "app_user_project_seen": "(project_id, last_seen_at)",
        "app_user_attributes_gin": "USING gin (attributes jsonb_path_ops)",
    },
    "sqlite": {
        "app_user_attr_country": "(project_id, json_extract(attributes, '$.\"country\"'))",
        "app_user_attr_language": "(project_id, json_extract(attributes, '$.\"language\"'))",
        "app_user_project_seen": "(project_id, last_seen_at)",
    },
}


def create_indexes(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    concurrently = "CONCURRENTLY " if vendor == "postgresql" else ""
    for name, columns in INDEXES.get(vendor, {}).items():
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON app_users {columns}"
        )


def drop_indexes(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    concurrently = "CONCURRENTLY " if vendor == "postgresql" else ""
    for name in INDEXES.get(vendor, {}):
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
