"""Event ingestion throughput: the service function, then the HTTP API through a real server.

    python bench/events.py [--events 1000000] [--batch 1000] [--users 100000]
                           [--deliveries 100000] [--clients 2] [--skip-http]
                           [--database-url URL] [--redis-url URL]

What one run does, in order:

1. PostgreSQL by default (``BENCH_DATABASE_URL`` or the URL below; a database of its
   own: it is emptied; a ``sqlite:///`` URL works too): creates it if missing and
   migrates it, empties it (every project, cascading), flushes the bench Redis db.
2. Seeds a project with N users (one token each, APNs and FCM alternating), a sent
   campaign with one run and one sent delivery per user up to ``--deliveries``
   (``bulk_create``), then VACUUM ANALYZE.
3. **Service**: ``segments.events.events_ingest`` called in this process for
   ``--events`` events in batches of ``--batch`` (~10% push_opened and ~10%
   push_clicked with a delivery id, the rest custom events with 0-4 properties; uuid4
   event ids; occurred_at seconds before the batch, now and then up to an hour).
   Batches are generated before each call and the clock only runs inside the call;
   the rate is printed per tenth of the run, so a slowdown as the table grows shows.
4. **HTTP**: ``manage.py runserver`` (what exists before issue 13) in its own
   process, the same mix posted by ``--clients`` threads over keep-alive
   connections with a client-scoped key (bodies serialised before the clock starts).
   Prints events/s and the CPU seconds per 1,000 events of the server process and
   of the PostgreSQL backends, so what bounds the rate is visible.
5. Table and index sizes, and how well occurred_at follows the physical order
   (``pg_stats.correlation``: what the BRIN index relies on). Last line: SUMMARY.

Exit status 0 only if every event was accepted exactly once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.setup_db import ensure_database, flush_redis, log, manage  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench_events"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
PROJECT_NAME = "bench-events"
CUSTOM_EVENTS = ["purchase", "view_item", "add_to_cart", "signup", "search"]
PLANS = ["free", "pro", "team"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------ setup


def seed(users: int, deliveries: int) -> tuple[Any, list[str], list[tuple[int, str]]]:
    """The project, its users' external ids, and (delivery id, its user's external id)."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import CampaignRun, PushCampaign
    from core.models import Project
    from delivery.models import PushDelivery, PushToken
    from segments.models import AppUser

    if connection.vendor == "postgresql":  # the bench database is ours alone
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE projects RESTART IDENTITY CASCADE")
    else:
        Project.objects.filter(name=PROJECT_NAME).delete()
    project = Project.objects.create(name=PROJECT_NAME)
    external_ids = [f"user-{n}" for n in range(users)]
    rows = [AppUser(project=project, external_id=external_id) for external_id in external_ids]
    AppUser.objects.bulk_create(rows, batch_size=5000)
    tokens = [
        PushToken(
            project=project,
            app_user=user,
            token=f"{n:064x}" if n % 2 else f"fcm-token-{n:0140d}",
            provider="apns" if n % 2 else "fcm",
            platform="ios" if n % 2 else "android",
        )
        for n, user in enumerate(rows)
    ]
    PushToken.objects.bulk_create(tokens, batch_size=5000)
    sent_at = timezone.now() - timedelta(hours=2)
    # Goals on two of the custom events, so the conversion search runs as in a
    # project whose campaigns have goals (not only the open/click counting).
    campaign = PushCampaign.objects.create(
        project=project,
        name="bench",
        title="Hello",
        body="World",
        status="sent",
        sent_at=sent_at,
        goals=[
            {
                "name": "Big purchase",
                "event": "purchase",
                "filter": {"attr": "amount", "op": "gte", "value": 50},
                "window_hours": 36,
                "primary": True,
            },
            {
                "name": "Cart",
                "event": "add_to_cart",
                "filter": None,
                "window_hours": 36,
                "primary": False,
            },
        ],
    )
    CampaignRun.objects.create(campaign=campaign, number=1, trigger="send", status="sent")
    pushes = [
        PushDelivery(
            campaign=campaign,
            run=1,
            token=token,
            app_user_id=token.app_user_id,
            provider=token.provider,
            status="sent",
            sent_at=sent_at,
        )
        for token in tokens[:deliveries]
    ]
    PushDelivery.objects.bulk_create(pushes, batch_size=5000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    by_delivery = [(push.pk, external_ids[n]) for n, push in enumerate(pushes)]
    return project, external_ids, by_delivery


def batches(
    count: int,
    size: int,
    external_ids: Sequence[str],
    deliveries: Sequence[tuple[int, str]],
    *,
    seed: int,
) -> Iterator[list[dict[str, Any]]]:
    """The bench mix, ``size`` events at a time (the last batch may be smaller)."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        batch = []
        now = datetime.now(UTC)
        for _ in range(min(size, count - made)):
            # Most events are reported seconds after they happen, a few much later
            # (an app offline for a while): mean 20 s, capped at an hour.
            lag = min(rng.expovariate(1 / 20), 3600)
            occurred_at = (now - timedelta(seconds=lag)).isoformat()
            roll = rng.random()
            event: dict[str, Any] = {"event_id": str(uuid.UUID(int=rng.getrandbits(128)))}
            if roll < 0.2 and deliveries:
                delivery_id, external_id = deliveries[rng.randrange(len(deliveries))]
                event["delivery_id"] = delivery_id
                if roll < 0.1:
                    event["name"] = "push_opened"
                else:
                    event["name"] = "push_clicked"
                    event["action_id"] = rng.choice(["buy", "later"])
                if rng.random() < 0.5:
                    event["external_id"] = external_id  # else the delivery's user
            else:
                event["name"] = rng.choice(CUSTOM_EVENTS)
                event["external_id"] = external_ids[rng.randrange(len(external_ids))]
                properties: dict[str, Any] = {}
                for key in rng.sample(["plan", "amount", "item", "first"], rng.randrange(5)):
                    properties[key] = {
                        "plan": rng.choice(PLANS),
                        "amount": round(rng.uniform(1, 200), 2),
                        "item": f"sku-{rng.randrange(5000)}",
                        "first": rng.random() < 0.1,
                    }[key]
                if properties:
                    event["properties"] = properties
            event["occurred_at"] = occurred_at
            batch.append(event)
        made += len(batch)
        yield batch


# ---------------------------------------------------------------------- service


def run_service(project: Any, batch_iter: Iterator[list[dict[str, Any]]], total: int) -> float:
    from segments.events import events_ingest

    tenth = max(1, total // 10)
    busy = 0.0
    mark_busy, mark_done, done, accepted = 0.0, 0, 0, 0
    for batch in batch_iter:
        started = time.perf_counter()
        result = events_ingest(project=project, events=batch)
        busy += time.perf_counter() - started
        if result.rejected:
            raise SystemExit(f"rejected: {result.rejected[:3]}")
        accepted += result.accepted
        done += len(batch)
        if done - mark_done >= tenth or done == total:
            rate = (done - mark_done) / (busy - mark_busy)
            log(f"  {done:>10,} events  {rate:>9,.0f} events/s over the last {done - mark_done:,}")
            mark_busy, mark_done = busy, done
    if accepted != total:
        raise SystemExit(f"accepted {accepted:,} of {total:,}")
    return total / busy


def run_service_parallel(
    project: Any,
    external_ids: Sequence[str],
    deliveries: Sequence[tuple[int, str]],
    total: int,
    size: int,
    processes: int,
) -> float:
    """``total`` events split over ``processes`` forked processes ingesting at once
    (each its own connection and event ids); events/s over the wall clock of all."""
    from django.db import connections

    connections.close_all()  # a forked child must open its own connection
    share = total // processes
    started = time.perf_counter()
    children = []
    for slot in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: ingest its share, then leave without cleanup
            code = 0
            try:
                run_service(
                    project,
                    batches(share, size, external_ids, deliveries, seed=100 + slot),
                    share,
                )
            except BaseException as exc:  # report and fail the child, never return
                log(f"  process {slot}: {exc!r}")
                code = 1
            os._exit(code)
        children.append(pid)
    failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in children)
    if failed:
        raise SystemExit(f"{failed} ingesting process(es) failed")
    return share * processes / (time.perf_counter() - started)


# ------------------------------------------------------------------------- HTTP


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_backend_pids() -> list[int]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def wait_healthy(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not answer /healthz within 60 s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_http(
    project: Any,
    bodies: list[bytes],
    events: int,
    clients: int,
    database_url: str,
    redis_url: str,
) -> tuple[float, float, float]:
    """(events/s, server CPU ms per 1,000 events, Postgres CPU ms per 1,000 events)."""
    from core.models import ApiKey

    raw, prefix, secret_hash = ApiKey.generate()
    ApiKey.objects.create(
        project=project, name="bench", scope=ApiKey.Scope.CLIENT, prefix=prefix,
        secret_hash=secret_hash,
    )  # fmt: skip
    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url if not database_url.startswith("sqlite") else "",
        REDIS_URL=redis_url,
        HERALD_API_RATE_PER_MINUTE="100000000",
        DEBUG="false",
        LOG_LEVEL="WARNING",
    )
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_healthy(port, server)
        path = f"/v1/projects/{project.id}/events"
        headers = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}
        failures: list[str] = []
        accepted = [0] * clients
        lock = threading.Lock()
        queue = list(reversed(bodies))

        def client(slot: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while True:
                with lock:
                    if not queue or failures:
                        return
                    body = queue.pop()
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200:
                    failures.append(f"{response.status} {answer[:300]!r}")
                    return
                accepted[slot] += json.loads(answer)["accepted"]

        backends_before = {pid: cpu_seconds(pid) for pid in postgres_backend_pids()}
        server_before = cpu_seconds(server.pid)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.pid) - server_before
        pg_cpu = sum(
            cpu_seconds(pid) - backends_before.get(pid, 0.0) for pid in postgres_backend_pids()
        )
        if failures:
            raise SystemExit(f"HTTP failure: {failures[0]}")
        if sum(accepted) != events:
            raise SystemExit(f"HTTP accepted {sum(accepted):,} of {events:,}")
        per_k = 1000 / events
        return events / elapsed, server_cpu * 1000 * per_k, pg_cpu * 1000 * per_k
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ----------------------------------------------------------------------- report


def storage_report() -> dict[str, Any]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events")
        cursor.execute(
            "SELECT pg_relation_size('events'), pg_total_relation_size('events'),"
            " pg_relation_size('events_pkey'), pg_relation_size('event_unique_per_project'),"
            " pg_relation_size('event_occurred_brin')"
        )
        heap, total, pkey, unique, brin = cursor.fetchone()
        cursor.execute(
            "SELECT correlation FROM pg_stats WHERE tablename = 'events' "
            "AND attname = 'occurred_at'"
        )
        row = cursor.fetchone()
    mb = 1024 * 1024
    return {
        "heap_mb": round(heap / mb, 1),
        "total_mb": round(total / mb, 1),
        "pkey_mb": round(pkey / mb, 1),
        "unique_mb": round(unique / mb, 1),
        "brin_kb": round(brin / 1024, 1),
        "occurred_at_correlation": round(row[0], 3) if row else None,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=2, help="HTTP client threads")
    parser.add_argument(
        "--http-events", type=int, default=None, help="events through HTTP (default: --events)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="then ingest as many events again from this many processes at once (1 = skip)",
    )
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database_url = args.database_url or DEFAULT_DATABASE_URL
    redis_url = args.redis_url or DEFAULT_REDIS_URL
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["REDIS_URL"] = redis_url
    if database_url.startswith("sqlite:///"):
        os.environ.pop("DATABASE_URL", None)
        os.environ["HERALD_SQLITE_PATH"] = database_url.removeprefix("sqlite:///")
    else:
        os.environ["DATABASE_URL"] = database_url
        ensure_database(database_url)
    manage("migrate", "--noinput")
    flush_redis(redis_url)

    import django

    django.setup()
    from django.db import connection

    log(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    started = time.perf_counter()
    project, external_ids, deliveries = seed(args.users, min(args.deliveries, args.users))
    log(
        f"seeded {args.users:,} users, {len(deliveries):,} sent deliveries in "
        f"{time.perf_counter() - started:.1f} s"
    )

    log(f"\nservice: events_ingest, {args.events:,} events in batches of {args.batch:,}")
    service_rate = run_service(
        project,
        batches(args.events, args.batch, external_ids, deliveries, seed=1),
        args.events,
    )
    log(f"service: {service_rate:,.0f} events/s (time inside events_ingest)")

    summary: dict[str, Any] = {"events": args.events, "batch": args.batch}
    summary["service_events_per_s"] = round(service_rate)
    if args.processes > 1:
        log(
            f"\nservice, {args.processes} processes at once (as {args.processes} web workers "
            f"would): {args.events:,} events more"
        )
        parallel_rate = run_service_parallel(
            project, external_ids, deliveries, args.events, args.batch, args.processes
        )
        log(f"service x{args.processes}: {parallel_rate:,.0f} events/s (wall clock, together)")
        summary["service_parallel_events_per_s"] = round(parallel_rate)
        summary["service_processes"] = args.processes
    if not args.skip_http:
        http_events = args.http_events or args.events
        log(f"\nHTTP: runserver, {args.clients} clients, {http_events:,} events")
        bodies = [
            json.dumps({"events": batch}).encode()
            for batch in batches(http_events, args.batch, external_ids, deliveries, seed=2)
        ]
        sizes = [len(body) for body in bodies]
        log(f"  bodies: median {statistics.median(sizes) / 1024:,.0f} KiB")
        rate, server_ms, pg_ms = run_http(
            project, bodies, http_events, args.clients, database_url, redis_url
        )
        log(
            f"HTTP: {rate:,.0f} events/s; CPU per 1,000 events: server {server_ms:.0f} ms, "
            f"PostgreSQL {pg_ms:.0f} ms"
        )
        summary.update(
            http_events_per_s=round(rate),
            http_server_cpu_ms_per_1k=round(server_ms),
            http_pg_cpu_ms_per_1k=round(pg_ms),
        )
    storage = storage_report()
    if storage:
        log(f"\nstorage: {storage}")
        summary.update(storage)
    log(f"SUMMARY {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
