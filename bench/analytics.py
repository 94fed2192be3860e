"""Campaign analytics at scale: a 1M-delivery campaign with 200k engagement events.

    python bench/analytics.py [--deliveries 1000000] [--events 200000] [--calls 20]
                              [--batch 1000] [--database-url URL]

1. PostgreSQL (``BENCH_DATABASE_URL`` or the URL below, a database of its own: it is
   emptied): creates the database if missing and migrates it.
2. Seeds one project with N users, N tokens (60% APNs/iOS, 35% FCM/Android, 5%
   FCM/web) and a campaign with one settled-to-be run of N delivery rows (97% sent
   over ~10 minutes, 3% failed), all with ``INSERT ... SELECT generate_series``, then
   ANALYZE.
3. Settles the run with the real finisher (``campaigns.runs.run_maybe_finish``: the
   exact recount plus the sent/failed breakdown analytics read) and times it.
4. Feeds E events through the real listener (``campaigns.engagement.record_engagement``)
   in batches of ``--batch``, each batch in its own transaction as ingestion runs it:
   50% opens, 20% clicks (on two actions), 30% goal events (``purchase``, one goal
   with a property filter, one without); prints events/s for the listener alone
   (ingestion's own storage is the events part's, measured by bench/events.py).
5. Times ``campaign_analytics`` (median and best of ``--calls`` after a warm-up) and
   the API GET (Django test client, real auth and rendering), and prints the numbers.

The last line is a SUMMARY.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.setup_db import ensure_database, log, manage  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench_analytics"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def timed(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(median, best) milliseconds of `calls` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples)


def seed(project_id: uuid.UUID, campaign_id: uuid.UUID, n: int) -> None:
    """N users, tokens and sent/failed deliveries of run 1, in four statements."""
    from django.db import connection

    params: dict[str, Any] = {
        "project": str(project_id),
        "campaign": str(campaign_id),
        "n": n,
        "start": START,
    }
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE push_tokens DISABLE TRIGGER push_tokens_kinds_insert")
        cursor.execute(
            """
            INSERT INTO app_users (id, project_id, external_id, attributes, created_at,
                                   active_token_kinds)
            SELECT md5(%(project)s || i)::uuid, %(project)s::uuid, 'user-' || i, '{}'::jsonb,
                   %(start)s::timestamptz - interval '30 days', 0
            FROM generate_series(1, %(n)s) AS i
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO push_tokens (project_id, app_user_id, token, provider, platform, active,
                                     locale, timezone, app_version, created_at,
                                     last_registered_at, invalid_reason)
            SELECT %(project)s::uuid, md5(%(project)s || i)::uuid,
                   md5('token' || i) || md5(i::text),
                   CASE WHEN i %% 100 < 60 THEN 'apns' ELSE 'fcm' END,
                   CASE WHEN i %% 100 < 60 THEN 'ios' WHEN i %% 100 < 95 THEN 'android'
                        ELSE 'web' END,
                   true, '', '', '', %(start)s, %(start)s, ''
            FROM generate_series(1, %(n)s) AS i
            """,
            params,
        )
        cursor.execute("ALTER TABLE push_tokens ENABLE TRIGGER push_tokens_kinds_insert")
        # Sent over ~10 minutes from the run's start; 3% failed.
        cursor.execute(
            """
            INSERT INTO push_deliveries (campaign_id, run, token_id, app_user_id, provider,
                                         status, error_message, provider_msg_id, attempts,
                                         created_at, sent_at, claimed_at)
            SELECT %(campaign)s::uuid, 1, t.id, t.app_user_id, t.provider,
                   CASE WHEN t.id %% 100 < 3 THEN 'failed' ELSE 'sent' END,
                   '', '', 1, %(start)s,
                   CASE WHEN t.id %% 100 < 3 THEN NULL
                        ELSE %(start)s + (row_number() OVER (ORDER BY t.id))
                             * (interval '600 seconds' / %(n)s) END,
                   %(start)s + (row_number() OVER (ORDER BY t.id))
                             * (interval '600 seconds' / %(n)s)
            FROM push_tokens t WHERE t.project_id = %(project)s::uuid
            """,
            params,
        )
        cursor.execute("ANALYZE")


def build_events(
    campaign_id: uuid.UUID, project_id: uuid.UUID, total: int, rng: random.Random
) -> list[Any]:
    from django.db import connection

    from segments.events import DeliveryRef, IngestedEvent

    wanted = total  # opens + clicks on sampled deliveries, goal events for their users
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT d.id, d.app_user_id, d.provider, t.platform, d.sent_at
            FROM push_deliveries d JOIN push_tokens t ON t.id = d.token_id
            WHERE d.campaign_id = %s AND d.status = 'sent'
            ORDER BY random() LIMIT %s
            """,
            [str(campaign_id), wanted],
        )
        rows = cursor.fetchall()
    events: list[IngestedEvent] = []
    ids = iter(range(1, 10**9))
    properties: dict[str, Any]
    for delivery_id, user_id, provider, platform, sent_at in rows:
        if len(events) >= total:
            break
        ref = DeliveryRef(delivery_id, campaign_id, 1, provider, platform, sent_at)
        user = uuid.UUID(str(user_id))
        at = sent_at + timedelta(seconds=rng.randint(5, 3 * 3600))
        roll = rng.random()
        if roll < 0.5:
            name, action, properties, delivery = "push_opened", "", {}, ref
        elif roll < 0.7:
            name, action, properties = "push_clicked", rng.choice(["buy", "later"]), {}
            delivery = ref
        else:
            name, action, delivery = "purchase", "", None
            properties = {"price": rng.randint(1, 200), "sku": f"sku-{rng.randint(1, 50)}"}
            at = sent_at + timedelta(hours=rng.uniform(0, 48))
        events.append(
            IngestedEvent(
                id=next(ids),
                project_id=project_id,
                app_user_id=user,
                name=name,
                properties=properties,
                occurred_at=at,
                action_id=action,
                delivery=delivery,
            )
        )
    events.sort(key=lambda e: e.occurred_at)  # apps report roughly in time order
    return events


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database_url = args.database_url or DEFAULT_DATABASE_URL
    if not database_url.startswith("postgres"):
        raise SystemExit("bench/analytics.py seeds with generate_series: PostgreSQL only.")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = database_url
    ensure_database(database_url)
    manage("migrate", "--noinput")

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.test import Client

    from campaigns.analytics import campaign_analytics
    from campaigns.engagement import record_engagement
    from campaigns.models import CampaignRun, PushCampaign
    from campaigns.runs import run_maybe_finish
    from core.models import ApiKey, Project

    log(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    with connection.cursor() as cursor:  # the bench database is ours alone
        # The engagement tables have no database FK to campaigns (models.py): named.
        cursor.execute(
            "TRUNCATE projects, campaign_delivery_engagement, campaign_delivery_clicks, "
            "campaign_conversions, campaign_engagement_buckets RESTART IDENTITY CASCADE"
        )
    project = Project.objects.create(name="bench-analytics")
    campaign = PushCampaign.objects.create(
        project=project,
        name="bench",
        title="Hello",
        body="World",
        actions=[{"id": "buy", "title": "Buy"}, {"id": "later", "title": "Later"}],
        goals=[
            {
                "name": "Big purchase",
                "event": "purchase",
                "filter": {"attr": "price", "op": "gte", "value": 100},
                "window_hours": 36,
                "primary": True,
            },
            {"name": "Any purchase", "event": "purchase", "filter": None, "window_hours": 36,
             "primary": False},
        ],
        status="sending",
        current_run=1,
        sent_at=START,
    )  # fmt: skip
    CampaignRun.objects.create(
        campaign=campaign, number=1, trigger="send", targeted=args.deliveries, fanout_done=True
    )
    CampaignRun.objects.filter(campaign=campaign).update(started_at=START)
    started = time.perf_counter()
    seed(project.id, campaign.id, args.deliveries)
    log(
        f"seeded {args.deliveries:,} users/tokens/deliveries "
        f"in {time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    run_maybe_finish(campaign_id=campaign.id, run=1)
    settle_ms = (time.perf_counter() - started) * 1000
    run = CampaignRun.objects.get(campaign=campaign, number=1)
    log(f"settled run 1 (recount + sent/failed breakdown) in {settle_ms:,.0f} ms: {run.stats}")

    events = build_events(campaign.id, project.id, args.events, random.Random(11))
    started = time.perf_counter()
    for i in range(0, len(events), args.batch):
        with transaction.atomic():
            record_engagement(events[i : i + args.batch])
    elapsed = time.perf_counter() - started
    rate = len(events) / elapsed
    log(
        f"listener: {len(events):,} events in {elapsed:.1f} s = {rate:,.0f} events/s "
        f"(batches of {args.batch})"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute(
            "SELECT count(*) FROM campaign_engagement_buckets WHERE campaign_id = %s",
            [str(campaign.id)],
        )
        (bucket_rows,) = cursor.fetchone()
    log(f"rollup rows: {bucket_rows:,}")

    result = campaign_analytics(campaign)
    log(f"totals: {result['totals']}")
    log(f"goals: {[(g['name'], g['converted']) for g in result['goals']]}")
    log(f"series points: {len(result['series']['points'])}")
    func_median, func_best = timed(lambda: campaign_analytics(campaign), args.calls)
    log(f"campaign_analytics: median {func_median:.1f} ms, best {func_best:.1f} ms")

    raw, prefix, secret_hash = ApiKey.generate()
    ApiKey.objects.create(
        project=project, name="bench", scope=ApiKey.Scope.ADMIN, prefix=prefix,
        secret_hash=secret_hash,
    )  # fmt: skip
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    path = f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/analytics"

    def get() -> None:
        response = client.get(path)
        assert response.status_code == 200, response.content

    api_median, api_best = timed(get, args.calls)
    log(f"GET .../analytics: median {api_median:.1f} ms, best {api_best:.1f} ms")
    log(
        f"SUMMARY deliveries={args.deliveries} events={len(events)} settle_ms={settle_ms:.0f} "
        f"listener_events_per_s={rate:.0f} analytics_median_ms={func_median:.1f} "
        f"api_median_ms={api_median:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
