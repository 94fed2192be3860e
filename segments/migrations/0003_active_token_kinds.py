"""app_users.active_token_kinds: which kinds of active push token a user has (PostgreSQL).

A bit set kept by triggers on push_tokens, so the rule conditions on platform and
provider ("has an active iOS token") test a column of the user's own row instead of
joining push_tokens (a hash semi join of every user against every token: the
slowest rule at 1M users; docs/decisions.md, "Audience queries at 1M users").

Bits (segments.rules.TOKEN_KIND_BITS must agree; a test checks it): ios 1,
android 2, web 4, apns 8, fcm 16, and 32 for "any active token" whatever its
platform or provider.

Kept right by the database, whoever writes push_tokens (ORM, raw SQL, COPY, the
import's INSERT ... ON CONFLICT, admin actions, fan-out invalidation): statement
triggers with transition tables find the users whose active tokens changed and
`app_users_refresh_token_kinds` recomputes them from push_tokens. It locks those
users first, in id order (FOR NO KEY UPDATE, which does not block the foreign-key
checks of token inserts), then recomputes in a new statement: under READ COMMITTED
that statement's snapshot includes every token change committed by whoever held a
lock before, so concurrent writers to one user's tokens cannot leave a stale set.
A token UPDATE that changes none of active, app_user_id, platform, provider touches
no user (re-registrations, last_registered_at).

The column is not a model field on purpose: a full `AppUser.save()` of an instance
loaded before a token change would otherwise write a stale value back. Django never
names it, so inserts get the default 0 (a new user has no tokens yet).

SQLite (the embedded default) has no such column; the rule engine keeps EXISTS there.
`atomic = False`: the column and triggers commit first (new changes are tracked from
then on), then the backfill locks and recomputes, so no change is missed in between.
"""

from django.db import migrations, transaction

KIND_FUNCTION = """
CREATE OR REPLACE FUNCTION herald_token_kind(platform text, provider text)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (32
    | CASE platform WHEN 'ios' THEN 1 WHEN 'android' THEN 2 WHEN 'web' THEN 4 ELSE 0 END
    | CASE provider WHEN 'apns' THEN 8 WHEN 'fcm' THEN 16 ELSE 0 END)::smallint
$$
"""

REFRESH_FUNCTION = """
CREATE OR REPLACE FUNCTION app_users_refresh_token_kinds(user_ids uuid[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF user_ids IS NULL OR cardinality(user_ids) = 0 THEN
    RETURN;
  END IF;
  PERFORM 1 FROM app_users WHERE id = ANY (user_ids) ORDER BY id FOR NO KEY UPDATE;
  UPDATE app_users AS u
     SET active_token_kinds = COALESCE(k.kinds, 0)
    FROM unnest(user_ids) AS ids (id)
    LEFT JOIN (
      SELECT t.app_user_id, bit_or(herald_token_kind(t.platform, t.provider)) AS kinds
        FROM push_tokens AS t
       WHERE t.active AND t.app_user_id = ANY (user_ids)
       GROUP BY t.app_user_id
    ) AS k ON k.app_user_id = ids.id
   WHERE u.id = ids.id AND u.active_token_kinds <> COALESCE(k.kinds, 0);
END
$$
"""

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION push_tokens_track_kinds() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  affected uuid[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(DISTINCT n.app_user_id) INTO affected
      FROM new_rows AS n WHERE n.active AND n.app_user_id IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(DISTINCT o.app_user_id) INTO affected
      FROM old_rows AS o WHERE o.active AND o.app_user_id IS NOT NULL;
  ELSE
    SELECT array_agg(DISTINCT user_id) INTO affected FROM (
      SELECT unnest(ARRAY[
               CASE WHEN o.active THEN o.app_user_id END,
               CASE WHEN n.active THEN n.app_user_id END
             ]) AS user_id
        FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id
       WHERE (o.active, o.app_user_id, o.platform, o.provider)
             IS DISTINCT FROM (n.active, n.app_user_id, n.platform, n.provider)
    ) AS changed
    WHERE user_id IS NOT NULL;
  END IF;
  PERFORM app_users_refresh_token_kinds(affected);
  RETURN NULL;
END
$$
"""

TRUNCATE_FUNCTION = """
CREATE OR REPLACE FUNCTION push_tokens_truncated_kinds() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE app_users SET active_token_kinds = 0 WHERE active_token_kinds <> 0;
  RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER push_tokens_kinds_insert AFTER INSERT ON push_tokens "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION push_tokens_track_kinds()",
    "CREATE TRIGGER push_tokens_kinds_update AFTER UPDATE ON push_tokens "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION push_tokens_track_kinds()",
    "CREATE TRIGGER push_tokens_kinds_delete AFTER DELETE ON push_tokens "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION push_tokens_track_kinds()",
    "CREATE TRIGGER push_tokens_kinds_truncate AFTER TRUNCATE ON push_tokens "
    "FOR EACH STATEMENT EXECUTE FUNCTION push_tokens_truncated_kinds()",
)

BACKFILL = """
SELECT app_users_refresh_token_kinds(ARRAY(
  SELECT DISTINCT app_user_id FROM push_tokens WHERE active AND app_user_id IS NOT NULL
))
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    connection = schema_editor.connection
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE app_users ADD COLUMN IF NOT EXISTS "
            "active_token_kinds smallint NOT NULL DEFAULT 0"
        )
        for statement in (KIND_FUNCTION, REFRESH_FUNCTION, TRIGGER_FUNCTION, TRUNCATE_FUNCTION):
            cursor.execute(statement)
        for name in ("insert", "update", "delete", "truncate"):
            cursor.execute(f"DROP TRIGGER IF EXISTS push_tokens_kinds_{name} ON push_tokens")
        for statement in TRIGGERS:
            cursor.execute(statement)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(BACKFILL)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in ("insert", "update", "delete", "truncate"):
            cursor.execute(f"DROP TRIGGER IF EXISTS push_tokens_kinds_{name} ON push_tokens")
        for function in (
            "push_tokens_track_kinds()",
            "push_tokens_truncated_kinds()",
            "app_users_refresh_token_kinds(uuid[])",
            "herald_token_kind(text, text)",
        ):
            cursor.execute(f"DROP FUNCTION IF EXISTS {function}")
        cursor.execute("ALTER TABLE app_users DROP COLUMN IF EXISTS active_token_kinds")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0002_audience_indexes"),
        ("delivery", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
