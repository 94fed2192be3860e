"""Crash recovery: SIGKILL a worker mid-send, start a replacement, measure the damage.

    python bench/crash.py [--tokens 20000] [--policy both|at_most_once|at_least_once]
                          [--concurrency 2] [--kill-after 0.3] [--timeout 300]
                          [--database-url URL] [--redis-url URL] [--env KEY=VALUE ...]

The measurement of issue 9's "Done when" for crashes, once per delivery policy:

1. PostgreSQL + Redis as bench/fanout.py sets them up (its helpers are imported, not
   copied): the database is created and migrated, then emptied, the broker flushed.
2. Simulators, a project pointing at them with the policy under test (set through
   ``core.services.project_update``, the door the admin uses), N tokens (half APNs,
   half FCM), one real ``celery worker --concurrency C`` and one real ``celery beat``
   (the periodic sweeper exactly as the migrations declare it).
3. A broadcast is sent; once the simulators have accepted ``--kill-after`` of the
   tokens the worker's whole process group gets SIGKILL, and a replacement worker is
   started at once.
4. Printed when the campaign is ``sent``: duplicates at the simulators (tokens
   accepted more than once), rows left ``unknown``, tokens never accepted, and the
   seconds from the replacement worker's start to the campaign's ``completed_at``.

Knobs reach the workers and beat through the environment (``--env
HERALD_CLAIM_LEASE_SECONDS=30``); defaults are the production ones. Exit status is 0
only if every policy ended ``sent`` with its promise kept (at-most-once: no
duplicate; at-least-once: no token unsent).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import (  # noqa: E402 -- after the sys.path line above
    DEFAULT_REDIS_URL,
    Worker,
    configure_environment,
    create_project,
    empty_database,
    ensure_database,
    flush_broker,
    log,
    migrate,
    provider_plan,
    seed_tokens,
    simulator_stats,
    start_simulators,
    start_worker,
    stop_group,
    wait_ready,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench_crash"
POLICIES = ("at_most_once", "at_least_once")


@dataclass
class Damage:
    policy: str
    status: str
    accepted_at_kill: int
    claimed_at_kill: int
    duplicates: int
    unknown: int
    never_sent: int
    recovery_seconds: float | None

    @property
    def kept(self) -> bool:
        if self.status != "sent":
            return False
        if self.policy == "at_most_once":
            return self.duplicates == 0
        return self.never_sent == 0

    def line(self) -> str:
        seconds = "n/a" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f}"
        return (
            f"RESULT policy={self.policy} status={self.status} duplicates={self.duplicates} "
            f"unknown={self.unknown} never_sent={self.never_sent} "
            f"replacement_start_to_sent_s={seconds} accepted_at_kill={self.accepted_at_kill} "
            f"claimed_at_kill={self.claimed_at_kill} ok={str(self.kept).lower()}"
        )


def start_beat(stack: contextlib.ExitStack, env: dict[str, str], logs: Path) -> Any:
    log_path = logs / "beat.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "INFO",
                "--pidfile=",
                "-s",
                str(logs / "beat.schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(stop_group, process)
    return process


def sigkill(worker: Worker) -> None:
    """The whole worker, main process and pool children at once: a crash."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)


def accepted_tokens(simulators: Any) -> dict[str, int]:
    import json
    import urllib.request

    url = simulators.info["control_url"] + "/stats?tokens=1"
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 -- local simulator
        stats = json.load(resp)
    return {**stats["apns"]["tokens"], **stats["fcm"]["tokens"]}


def run_policy(
    policy: str, args: argparse.Namespace, env: dict[str, str], simulators: Any, logs: Path
) -> Damage:
    from campaigns import services
    from campaigns.models import CampaignStatus, PushCampaign
    from campaigns.runs import campaign_stats
    from core.services import project_update
    from delivery.models import PushDelivery, PushToken

    empty_database()
    flush_broker(env["REDIS_URL"])
    simulators.reset()
    project = create_project(simulators.info)
    project_update(project=project, fields={"delivery_guarantee": policy})
    seed_tokens(project.id, provider_plan(args.tokens, 0.5, 0.0), "interleaved")
    log(f"== {policy}: {args.tokens:,} tokens seeded")

    with contextlib.ExitStack() as stack:
        first = start_worker(stack, 0, args.concurrency, env, logs / policy, "config")
        start_beat(stack, env, logs / policy)
        wait_ready([first])
        campaign = services.campaign_create(
            project=project, fields={"name": "crash bench", "title": "Hello", "body": "World"}
        )
        sent_at = time.time()
        services.campaign_send(project=project, campaign_id=campaign.id)
        kill_at = int(args.tokens * args.kill_after)
        while True:
            stats = simulator_stats(simulators)
            accepted = int(stats["apns"]["accepted"]) + int(stats["fcm"]["accepted"])
            if accepted >= kill_at:
                break
            if time.time() - sent_at > args.timeout:
                raise RuntimeError(f"only {accepted} accepted after {args.timeout} s")
            time.sleep(0.02)
        sigkill(first)
        rows = PushDelivery.objects.filter(campaign=campaign)
        claimed = rows.filter(status="queued", claim__isnull=False).count()
        log(
            f"  SIGKILL after {time.time() - sent_at:.2f} s: {accepted:,} accepted, "
            f"{claimed:,} rows claimed and unrecorded"
        )
        replacement_started = time.time()
        second = start_worker(stack, 1, args.concurrency, env, logs / policy, "config")
        wait_ready([second])
        log(f"  replacement ready after {time.time() - replacement_started:.1f} s")
        status: str = CampaignStatus.SENDING
        while time.time() - replacement_started < args.timeout:
            status = PushCampaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
            if status != CampaignStatus.SENDING:
                break
            time.sleep(0.5)
        campaign.refresh_from_db()
        recovery = (
            campaign.completed_at.timestamp() - replacement_started
            if campaign.completed_at is not None and status == CampaignStatus.SENT
            else None
        )
        tokens = accepted_tokens(simulators)
        all_tokens = set(PushToken.objects.filter(project=project).values_list("token", flat=True))
        damage = Damage(
            policy=policy,
            status=str(status),
            accepted_at_kill=accepted,
            claimed_at_kill=claimed,
            duplicates=sum(n - 1 for n in tokens.values() if n > 1),
            unknown=rows.filter(status="unknown").count(),
            never_sent=len(all_tokens - set(tokens)),
            recovery_seconds=recovery,
        )
        log(f"  campaign stats: {campaign_stats(campaign)}")
        log("  " + damage.line())
        return damage


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--policy", choices=("both", *POLICIES), default="both")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker")
    parser.add_argument(
        "--kill-after", type=float, default=0.3, help="share of tokens accepted before SIGKILL"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds, per phase")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the workers")
    args = parser.parse_args(argv)
    if not 0.0 < args.kill_after < 1.0:
        parser.error("--kill-after must be within 0..1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = configure_environment(
        argparse.Namespace(
            database_url=args.database_url,
            redis_url=args.redis_url,
            env=args.env,
            fanout_chunk=None,
            send_chunk=None,
            apns_concurrency=None,
            fcm_concurrency=None,
        )
    )
    log(f"== Herald crash bench: {args.tokens:,} tokens, pool {args.concurrency}")
    log(f"  loadavg {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ensure_database(args.database_url)
    migrate(env)

    import django

    django.setup()
    from django.conf import settings

    log(
        "  "
        + " ".join(
            f"{knob}={getattr(settings, knob)}"
            for knob in (
                "HERALD_SEND_CHUNK_SIZE",
                "HERALD_RESULT_FLUSH_ROWS",
                "HERALD_CLAIM_RENEW_SECONDS",
                "HERALD_CLAIM_LEASE_SECONDS",
                "HERALD_STALL_SECONDS",
                "HERALD_SWEEP_INTERVAL_SECONDS",
                "HERALD_APNS_CONCURRENCY",
                "HERALD_FCM_CONCURRENCY",
            )
        )
    )
    env["HERALD_VAR_DIR"] = str(settings.VAR_DIR)
    policies = POLICIES if args.policy == "both" else (args.policy,)
    results = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="herald-crash-")))
        simulators = start_simulators(stack, tmp / "simulators")
        for policy in policies:
            (tmp / policy).mkdir()
            results.append(run_policy(policy, args, env, simulators, tmp))
    log("== summary")
    for damage in results:
        log(damage.line())
    return 0 if all(d.kept for d in results) else 1


if __name__ == "__main__":
    sys.exit(main())
