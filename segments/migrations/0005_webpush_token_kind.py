"""Bit 64 of app_users.active_token_kinds: an active web push subscription (PostgreSQL).

herald_token_kind is IMMUTABLE and inlined into no index, so replacing it is enough;
no backfill: no web push subscription could exist before this migration.
segments.rules.TOKEN_KIND_BITS must agree (tests/segments/test_token_kinds.py).
"""

from django.db import migrations

KIND_FUNCTION = """
CREATE OR REPLACE FUNCTION herald_token_kind(platform text, provider text)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (32
    | CASE platform WHEN 'ios' THEN 1 WHEN 'android' THEN 2 WHEN 'web' THEN 4 ELSE 0 END
    | CASE provider WHEN 'apns' THEN 8 WHEN 'fcm' THEN 16 WHEN 'webpush' THEN 64 ELSE 0 END
  )::smallint
$$
"""

PREVIOUS_FUNCTION = """
CREATE OR REPLACE FUNCTION herald_token_kind(platform text, provider text)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (32
    | CASE platform WHEN 'ios' THEN 1 WHEN 'android' THEN 2 WHEN 'web' THEN 4 ELSE 0 END
    | CASE provider WHEN 'apns' THEN 8 WHEN 'fcm' THEN 16 ELSE 0 END)::smallint
$$
"""


def replace(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0004_events"),
        ("delivery", "0005_webpush_subscriptions"),
    ]

    operations = [
        migrations.RunPython(replace(KIND_FUNCTION), replace(PREVIOUS_FUNCTION)),
    ]
