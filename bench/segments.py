"""Segment preview speed over a large project, with the plans PostgreSQL chose.

    python bench/segments.py [--users 1000000] [--runs 5] [--keep] [--database-url URL]

1. PostgreSQL by default (``BENCH_DATABASE_URL`` or the URL below, a database of
   its own: it is emptied; a ``sqlite:///`` URL works too): creates the database if
   missing and migrates it.
2. Seeds N users with realistic attributes (country/language skew, plan, age, vip,
   tags, a signup date, created_at over two years, last_seen_at mostly recent) and
   ~1.25 tokens per user (iOS/APNs, Android and web/FCM, a few inactive) with
   ``COPY`` (bulk_create on SQLite), then VACUUM ANALYZE. On PostgreSQL the users'
   ``active_token_kinds`` are written with them (the insert trigger is off during the
   load, then the column is checked against the tokens). ``--keep`` reuses a
   project already seeded with N users.
3. For each representative rule: the preview a segment editor asks for (COUNT +
   10-user sample, ``segments.selectors.segment_preview``), best and median of
   ``--runs`` after one warm-up, then ``EXPLAIN (ANALYZE, BUFFERS)`` of the exact
   COUNT query Django ran (captured with ``connection.execute_wrapper``).
4. A campaign-style audience count (segment AND targeting, by provider,
   ``segments.selectors.audience_counts``), timed the same way.

The last line is a SUMMARY with the medians in milliseconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.setup_db import ensure_database, log, manage  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench_segments"
PROJECT_NAME = "bench-segments"
COUNTRIES = [
    ("US", 30), ("IN", 12), ("BR", 8), ("DE", 7), ("GB", 6), ("FR", 6), ("JP", 5),
    ("CA", 4), ("MX", 4), ("ES", 3), ("IT", 3), ("NL", 2), ("PL", 2), ("SE", 1),
    ("AU", 2), ("KR", 2), ("AR", 1), ("NZ", 0.3), ("IE", 0.2), ("PT", 1.5),
]  # fmt: skip
LANGUAGE = {"US": "en", "GB": "en", "CA": "en", "AU": "en", "NZ": "en", "IE": "en",
            "IN": "en-IN", "BR": "pt-BR", "PT": "pt", "DE": "de", "FR": "fr", "JP": "ja",
            "MX": "es-MX", "ES": "es", "AR": "es", "IT": "it", "NL": "nl", "PL": "pl",
            "SE": "sv", "KR": "ko"}  # fmt: skip
TAGS = ["sports", "news", "music", "games", "deals"]
RULES: dict[str, dict[str, Any]] = {
    "country = US (30%)": {"attr": "country", "op": "eq", "value": "US"},
    "country in NZ, IE (0.5%)": {"attr": "country", "op": "in", "value": ["NZ", "IE"]},
    "DE/FR seen in 7 days": {
        "all": [
            {"attr": "country", "op": "in", "value": ["DE", "FR"]},
            {"attr": "last_seen_at", "op": "gte", "value": "-7d"},
        ]
    },
    "seen in 24 hours": {"attr": "last_seen_at", "op": "gte", "value": "-1d"},
    "has an active iOS token": {"attr": "platform", "op": "eq", "value": "ios"},
    "vip = true (2%, GIN)": {"attr": "vip", "op": "eq", "value": True},
    "pro plan, age between 25 and 34": {
        "all": [
            {"attr": "plan", "op": "eq", "value": "pro"},
            {"attr": "age", "op": "between", "value": [25, 34]},
        ]
    },
    "nested any/all/not": {
        "any": [
            {
                "all": [
                    {"attr": "country", "op": "eq", "value": "US"},
                    {"not": {"attr": "tags", "op": "contains", "value": "sports"}},
                ]
            },
            {
                "all": [
                    {"attr": "language", "op": "starts_with", "value": "pt"},
                    {"attr": "subscribed_age", "op": "gte", "value": 30},
                ]
            },
        ]
    },
    "signup within 90 days (JSON date)": {"attr": "signup", "op": "gte", "value": "-90d"},
}


def _weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> Callable[[], str]:
    values = [v for v, _ in pairs]
    weights = [w for _, w in pairs]
    return lambda: rng.choices(values, weights)[0]


def _fcm_token(rng: random.Random) -> str:
    head = "".join(
        rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=22)
    )
    return f"{head}:APA91b{rng.getrandbits(512):0128x}"[:150]


def generate(users: int, seed: int = 7) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(user row, token rows) per user; deterministic for a given seed."""
    rng = random.Random(seed)  # bench data, not secrets
    country = _weighted(rng, COUNTRIES)
    now = datetime.now(UTC)
    for i in range(users):
        c = country()
        created = now - timedelta(seconds=rng.randrange(730 * 86400))
        attributes: dict[str, Any] = {"country": c, "language": LANGUAGE[c]}
        attributes["plan"] = rng.choices(["free", "pro", "enterprise"], [80, 17, 3])[0]
        if rng.random() < 0.8:
            attributes["age"] = rng.randrange(16, 80)
        if rng.random() < 0.02:
            attributes["vip"] = True
        attributes["tags"] = rng.sample(TAGS, rng.randrange(0, 4))
        signup = min(created + timedelta(seconds=rng.randrange(3600)), now)
        attributes["signup"] = (
            signup.strftime("%Y-%m-%dT%H:%M:%S.") + f"{signup.microsecond // 1000:03d}Z"
        )
        last_seen = None
        if rng.random() < 0.9:
            span = (now - created).total_seconds()
            last_seen = now - timedelta(seconds=span * rng.random() ** 4)
        user = {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "external_id": f"bench-{i}",
            "attributes": attributes,
            "created_at": created,
            "last_seen_at": last_seen,
        }
        tokens = []
        for n in range(1 if rng.random() < 0.75 else 2):
            kind = rng.choices(["ios", "android", "web"], [45, 45, 10])[0] if n == 0 else "web"
            apns = kind == "ios"
            tokens.append(
                {
                    "token": f"{rng.getrandbits(256):064x}" if apns else _fcm_token(rng),
                    "provider": "apns" if apns else "fcm",
                    "platform": kind,
                    "active": rng.random() > 0.04,
                    "created_at": created,
                }
            )
        yield user, tokens


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value).replace("\\", "\\\\")
    return str(value)


def seed_postgres(project_id: uuid.UUID, users: int) -> None:
    from django.db import connection

    from segments.rules import ANY_TOKEN_BIT, TOKEN_KIND_BITS

    users_sql = (
        "COPY app_users (id, project_id, external_id, attributes, created_at, last_seen_at, "
        "active_token_kinds) FROM STDIN"
    )
    tokens_sql = (
        "COPY push_tokens (project_id, app_user_id, token, provider, platform, active, locale, "
        "timezone, app_version, created_at, last_registered_at, invalid_reason) FROM STDIN"
    )
    # Load without the audience indexes (GIN upkeep row by row is the slow part of a
    # bulk load), then build them once, exactly as the migration defines them.
    indexes = importlib.import_module("segments.migrations.0002_audience_indexes")
    definitions = indexes.INDEXES["postgresql"]
    with connection.cursor() as cursor:
        for name in definitions:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        # The kinds are written with the users (below); the insert trigger would
        # rewrite every user row a second time and leave app_users half dead tuples.
        cursor.execute("ALTER TABLE push_tokens DISABLE TRIGGER push_tokens_kinds_insert")
    connection.ensure_connection()

    def kinds(tokens: list[dict[str, Any]]) -> int:
        bits = 0
        for t in tokens:
            if t["active"]:
                bits |= ANY_TOKEN_BIT | TOKEN_KIND_BITS["platform"][t["platform"]]
                bits |= TOKEN_KIND_BITS["provider"][t["provider"]]
        return bits

    chunk_users: list[str] = []
    chunk_tokens: list[str] = []
    project = str(project_id)

    def flush(cursor: Any) -> None:
        with cursor.copy(users_sql) as copy:
            copy.write("".join(chunk_users))
        with cursor.copy(tokens_sql) as copy:
            copy.write("".join(chunk_tokens))
        chunk_users.clear()
        chunk_tokens.clear()

    with connection.connection.cursor() as cursor:
        for user, tokens in generate(users):
            chunk_users.append(
                "\t".join(
                    _copy_value(v)
                    for v in (
                        user["id"], project, user["external_id"], user["attributes"],
                        user["created_at"], user["last_seen_at"], kinds(tokens),
                    )
                )
                + "\n"
            )  # fmt: skip
            for t in tokens:
                chunk_tokens.append(
                    "\t".join(
                        _copy_value(v)
                        for v in (
                            project, user["id"], t["token"], t["provider"], t["platform"],
                            t["active"], "", "", "", t["created_at"], t["created_at"], "",
                        )
                    )
                    + "\n"
                )  # fmt: skip
            if len(chunk_users) >= 50_000:
                flush(cursor)
        if chunk_users:
            flush(cursor)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE push_tokens ENABLE TRIGGER push_tokens_kinds_insert")
        # Hold the bench to what the triggers would have written.
        cursor.execute(
            "SELECT count(*) FROM app_users u WHERE u.active_token_kinds <> COALESCE(("
            "SELECT bit_or(herald_token_kind(t.platform, t.provider)) FROM push_tokens t "
            "WHERE t.app_user_id = u.id AND t.active), 0)"
        )
        (wrong,) = cursor.fetchone()
        if wrong:
            raise SystemExit(f"{wrong} users have active_token_kinds unlike their tokens")
        started = time.perf_counter()
        for name, columns in definitions.items():
            cursor.execute(f"CREATE INDEX {name} ON app_users {columns}")
        log(f"built {len(definitions)} audience indexes in {time.perf_counter() - started:.1f} s")
        cursor.execute("VACUUM ANALYZE app_users")
        cursor.execute("VACUUM ANALYZE push_tokens")


def seed_sqlite(project_id: uuid.UUID, users: int) -> None:
    """Plain INSERTs (bulk_create would overwrite the generated created_at)."""
    from django.db import connection, transaction

    from delivery.models import PushToken
    from segments.models import AppUser

    def prepared(model: Any, row: dict[str, Any]) -> list[Any]:
        return [
            model._meta.get_field(name).get_db_prep_value(value, connection)
            for name, value in row.items()
        ]

    users_sql = (
        "INSERT INTO app_users (id, project_id, external_id, attributes, created_at, "
        "last_seen_at) VALUES (%s, %s, %s, %s, %s, %s)"
    )
    tokens_sql = (
        "INSERT INTO push_tokens (project_id, app_user_id, token, provider, platform, active, "
        "locale, timezone, app_version, created_at, last_registered_at, invalid_reason) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    user_rows: list[list[Any]] = []
    token_rows: list[list[Any]] = []

    def flush() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(users_sql, user_rows)
            cursor.executemany(tokens_sql, token_rows)
        user_rows.clear()
        token_rows.clear()

    for user, tokens in generate(users):
        columns = ("id", "project_id", "external_id", "attributes", "created_at", "last_seen_at")
        row = {**user, "project_id": project_id}
        user_rows.append(prepared(AppUser, {name: row[name] for name in columns}))
        for t in tokens:
            row = {"project_id": project_id, "app_user_id": user["id"], "token": t["token"]}
            row |= {"provider": t["provider"], "platform": t["platform"], "active": t["active"]}
            row |= {"locale": "", "timezone": "", "app_version": "", "created_at": t["created_at"]}
            row |= {"last_registered_at": t["created_at"], "invalid_reason": ""}
            token_rows.append(prepared(PushToken, row))
        if len(user_rows) >= 20_000:
            flush()
    if user_rows:
        flush()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


@contextmanager
def captured_sql() -> Iterator[list[tuple[str, Any]]]:
    from django.db import connection

    queries: list[tuple[str, Any]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield queries


def explain(sql: str, params: Any) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return [str(row[-1]) for row in cursor.fetchall()]


def time_preview(project: Any, rules: dict[str, Any], runs: int) -> tuple[list[float], Any, Any]:
    from segments.rules import validate_rules
    from segments.selectors import segment_preview

    clean = validate_rules(rules)
    segment_preview(project=project, rules=clean)  # warm-up
    timings = []
    preview = None
    for _ in range(runs):
        started = time.perf_counter()
        preview = segment_preview(project=project, rules=clean)
        timings.append((time.perf_counter() - started) * 1000)
    with captured_sql() as queries:
        segment_preview(project=project, rules=clean)
    return timings, preview, queries


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="Reuse an already seeded project.")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--no-explain", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database_url = args.database_url or DEFAULT_DATABASE_URL
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if database_url.startswith("sqlite:///"):
        os.environ.pop("DATABASE_URL", None)
        os.environ["HERALD_SQLITE_PATH"] = database_url.removeprefix("sqlite:///")
    else:
        os.environ["DATABASE_URL"] = database_url
        ensure_database(database_url)
    manage("migrate", "--noinput")

    import django

    django.setup()
    from django.db import connection

    from core.models import Project
    from delivery.models import PushToken
    from segments.audience import resolve_audience
    from segments.models import AppUser
    from segments.selectors import audience_counts
    from segments.services import clean_segment_fields, segment_create

    log(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    project = Project.objects.filter(name=PROJECT_NAME).first()
    if (
        project is not None
        and args.keep
        and AppUser.objects.filter(project=project).count() == args.users
    ):
        log(f"reusing project {project.id} with {args.users:,} users")
    else:
        if connection.vendor == "postgresql":  # the bench database is ours alone
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE projects RESTART IDENTITY CASCADE")
        else:
            Project.objects.filter(name=PROJECT_NAME).delete()
        project = Project.objects.create(name=PROJECT_NAME)
        started = time.perf_counter()
        (seed_postgres if connection.vendor == "postgresql" else seed_sqlite)(
            project.id, args.users
        )
        elapsed = time.perf_counter() - started
        token_count = PushToken.objects.filter(project=project).count()
        log(
            f"seeded {args.users:,} users and {token_count:,} tokens in {elapsed:.1f} s "
            f"({args.users / elapsed:,.0f} users/s, incl. VACUUM ANALYZE)"
        )

    summary: dict[str, float] = {}
    log()
    log(f"{'rule':36} {'count':>9} {'best ms':>9} {'median ms':>10}")
    plans: dict[str, list[str]] = {}
    for name, rules in RULES.items():
        timings, preview, queries = time_preview(project, rules, args.runs)
        median = statistics.median(timings)
        summary[name] = round(median, 1)
        log(f"{name:36} {preview.count:>9,} {min(timings):>9.1f} {median:>10.1f}")
        count_sql = [q for q in queries if "COUNT(" in q[0].upper()]
        sample_sql = [q for q in queries if "LIMIT" in q[0].upper()]
        if not args.no_explain:
            if count_sql:
                plans[f"{name}: COUNT"] = explain(*count_sql[0])
            if sample_sql and name.startswith("country = US"):
                plans[f"{name}: sample of 10"] = explain(*sample_sql[0])

    body = {
        "name": "bench: seen in 7 days",
        "rules": {"attr": "last_seen_at", "op": "gte", "value": "-7d"},
    }
    segment = segment_create(project=project, fields=clean_segment_fields(body, partial=False))
    targeting = {"countries": {"include": ["US", "CA"]}, "platforms": {"exclude": ["web"]}}

    def audience() -> dict[str, Any]:
        tokens = resolve_audience(project=project, segment=segment, targeting=targeting)
        return audience_counts(tokens)

    try:
        audience()  # warm-up, as for the rules
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            counts = audience()
            timings.append((time.perf_counter() - started) * 1000)
        with captured_sql() as queries:
            audience()
        median = statistics.median(timings)
        summary["campaign audience (segment AND targeting)"] = round(median, 1)
        log(
            "\ncampaign audience, segment AND targeting, by provider: "
            f"{counts} best {min(timings):.1f} ms, median {median:.1f} ms"
        )
        if not args.no_explain:
            plans["campaign audience: GROUP BY provider, platform"] = explain(*queries[-1])
    finally:
        segment.delete()

    for title, lines in plans.items():
        log(f"\n--- EXPLAIN {title}")
        for line in lines:
            log(f"  {line}")
    log(
        "\nSUMMARY "
        + json.dumps({"users": args.users, "vendor": connection.vendor, "median_ms": summary})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
