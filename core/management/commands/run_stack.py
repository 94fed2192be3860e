"""`manage.py run_stack`: the whole of Herald on one machine, for `make run`, or a
production node with `--production` (see below and docs/deploy.md).

Migrates, seeds the demo project (wired to the local provider simulators), makes
sure an admin login exists, then starts the simulators, the web server, a Celery
worker and Celery beat, prefixes their output, prints the URLs and credentials,
and stops everything on Ctrl-C, SIGTERM or SIGHUP, or as soon as any of them dies
(naming it and its exit code). Nothing it started outlives it, even when it is
SIGKILLed: see core/process_group.py for how.

The simulators also play the demo's devices (delivery/simulators/reporting.py): they
report opens, clicks and a goal event for received pushes to the events API, with a
client-scoped key minted at each start (the previous one revoked) and handed to them
by environment variable only, so it is never printed, stored or visible in `ps`.

`--production` runs what a deployment runs, from the environment: gunicorn (web,
static files by WhiteNoise), `--workers` Celery worker processes (each a prefork pool
of `--concurrency`) and beat, on PostgreSQL and Redis; no demo, no simulators, no
demo login. `--no-web` / `--no-beat` make a worker-only node for another machine
(beat must run exactly once per deployment); `--node` names the machine in the
workers' names (`worker1@<node>`). Only a node with web migrates and collects
static files.

Either way the node's metrics folder (PROMETHEUS_MULTIPROC_DIR, which every child
inherits) is emptied first, so /metrics adds up this run's processes only
(core/metrics.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser

from core.audit import AuditedCommand
from core.metrics import metrics_dir_reset
from core.models import ApiKey, Project
from core.process_group import ProcessGroup, describe_exit
from core.secrets import ensure_local_key, key_problems
from core.services import api_key_replace, project_member_set

PYTHON = sys.executable
# Web and beat first so nothing new is enqueued, then the worker (a warm shutdown
# finishes its current task while the simulators still answer), then the simulators.
MAX_WORKERS = 64  # --production worker processes per node
WORKER_NAMES = ("worker", *(f"worker{n}" for n in range(1, MAX_WORKERS + 1)))
STOP_ORDER = (("web", "beat"), WORKER_NAMES, ("simulators",))
STOP_TIMEOUT_SECONDS = 20.0
DEVICE_KEY_NAME = "demo device behaviour"
# The simulators read their events API key from this variable (delivery/simulators/
# reporting.API_KEY_ENV; core imports no other app, so it is named here like the
# simulators' command-line flags below).
REPORT_KEY_ENV = "HERALD_REPORT_API_KEY"
DEFAULT_OPEN_SHARE = 0.6
DEFAULT_CLICK_SHARE = 0.3  # of opened pushes
DEFAULT_GOAL_SHARE = 0.2  # of opened pushes


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def device_behaviour(
    *,
    project_id: str,
    base_url: str,
    open_share: float,
    click_share: float,
    goal_share: float,
    goal_event: str,
) -> tuple[list[str], dict[str, str], str]:
    """The simulators' extra arguments and environment for reporting the demo
    project's pushes, and the banner's line about it. Mints a fresh client key (the
    previous demo device key is revoked): it goes in the environment, never argv."""
    project = Project.objects.get(pk=project_id)
    _, key = api_key_replace(project=project, name=DEVICE_KEY_NAME, scope=ApiKey.Scope.CLIENT)
    argv = [
        "--report-url",
        f"{base_url}/v1/projects/{project_id}/events",
        "--report-open-share",
        str(open_share),
        "--report-click-share",
        str(click_share),
        "--report-goal-share",
        str(goal_share),
        "--report-goal-event",
        goal_event,
    ]
    line = (
        f"device behaviour on: {open_share:.0%} of pushes opened, {click_share:.0%} of "
        f'those clicked, {goal_share:.0%} send "{goal_event}"'
    )
    return argv, {REPORT_KEY_ENV: key}, line


DEMO_ROLE_PASSWORD = "herald-demo"  # noqa: S105 - demo default, printed and in the README
DEMO_ROLES = ("viewer", "editor", "sender")


def demo_role_logins(project_id: str) -> None:
    """`make run` only: staff logins named after the roles, members of the demo project
    with that role, so the console's roles can be tried (docs/api.md, "Permissions")."""
    from django.contrib.auth import get_user_model

    project = Project.objects.get(pk=project_id)
    for role in DEMO_ROLES:
        user, created = get_user_model().objects.get_or_create(
            username=role, defaults={"is_staff": True}
        )
        if created:
            user.set_password(DEMO_ROLE_PASSWORD)
            user.save(update_fields=["password"])
        if user.is_staff and user.is_active and not user.is_superuser:
            project_member_set(project=project, user=user, role=role)


def _local_url(host: str, port: int) -> str:
    """Where a process on this machine reaches the web server."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (reading the bind address, not binding)
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Command(AuditedCommand):
    help = "Set up and run web + worker + beat + provider simulators (Ctrl-C stops all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--production",
            action="store_true",
            help="gunicorn + Celery workers + beat on PostgreSQL and Redis, no demo "
            "(docs/deploy.md)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("HERALD_WORKERS", "1")),
            help="--production: Celery worker processes on this node (HERALD_WORKERS)",
        )
        parser.add_argument(
            "--web-workers",
            type=int,
            default=int(os.environ.get("HERALD_WEB_WORKERS", "2")),
            help="--production: gunicorn worker processes (HERALD_WEB_WORKERS)",
        )
        parser.add_argument(
            "--web",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="--production: run the web server here (--no-web: a worker node)",
        )
        parser.add_argument(
            "--beat",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="--production: run beat here (exactly one node of a deployment does)",
        )
        parser.add_argument(
            "--node",
            default=os.environ.get("HERALD_NODE", "%h"),
            help="--production: this machine's name in worker names (default: host name)",
        )
        parser.add_argument("--host", default=os.environ.get("HERALD_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HERALD_PORT", "8000")))
        parser.add_argument("--users", type=int, default=200, help="demo users to seed")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=int(os.environ.get("HERALD_WORKER_CONCURRENCY", "2")),
            help="pool processes per Celery worker (HERALD_WORKER_CONCURRENCY)",
        )
        parser.add_argument(
            "--device-behaviour",
            action=argparse.BooleanOptionalAction,
            default=settings.HERALD_DEMO_DEVICE_BEHAVIOUR,
            help="simulated devices report opens, clicks and goal events "
            "(default on; HERALD_DEMO_DEVICE_BEHAVIOUR=0 turns it off)",
        )
        parser.add_argument("--open-share", type=_share, default=DEFAULT_OPEN_SHARE)
        parser.add_argument(
            "--click-share", type=_share, default=DEFAULT_CLICK_SHARE, help="of opened pushes"
        )
        parser.add_argument(
            "--goal-share", type=_share, default=DEFAULT_GOAL_SHARE, help="of opened pushes"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["production"]:
            self._production(options)
            return
        host, port = options["host"], options["port"]
        metrics_dir_reset()
        self._local_secrets_key()
        self.stdout.write("Migrating the database ...")
        call_command("migrate", verbosity=0, interactive=False)
        call_command("collectstatic", verbosity=0, interactive=False)
        seeded = io.StringIO()
        call_command("seed_demo", users=options["users"], json=True, stdout=seeded)
        demo = json.loads(seeded.getvalue().strip().splitlines()[-1])
        password = os.environ.get("HERALD_ADMIN_PASSWORD", "herald-admin")
        call_command("ensure_admin", username="admin", password=password, stdout=io.StringIO())
        demo_role_logins(demo["project_id"])
        report_argv: list[str] = []
        report_env: dict[str, str] = {}
        device_line = "device behaviour off"
        if options["device_behaviour"]:
            report_argv, report_env, device_line = device_behaviour(
                project_id=demo["project_id"],
                base_url=_local_url(host, port),
                open_share=options["open_share"],
                click_share=options["click_share"],
                goal_share=options["goal_share"],
                goal_event=settings.HERALD_DEMO_GOAL_EVENT,
            )

        manage = [PYTHON, str(settings.BASE_DIR / "manage.py")]
        celery = [PYTHON, "-m", "celery", "-A", "config"]
        processes = {
            "simulators": [
                *manage,
                "run_simulators",
                "--host",
                settings.HERALD_SIMULATOR_HOST,
                "--apns-port",
                str(settings.HERALD_SIMULATOR_APNS_PORT),
                "--fcm-port",
                str(settings.HERALD_SIMULATOR_FCM_PORT),
                "--control-port",
                str(settings.HERALD_SIMULATOR_CONTROL_PORT),
                "--webpush-port",
                str(settings.HERALD_SIMULATOR_WEBPUSH_PORT),
                "--cert-dir",
                str(settings.HERALD_SIMULATOR_DIR),
                *report_argv,
            ],
            "web": [*manage, "runserver", f"{host}:{port}", "--noreload"],
            "worker": [
                *celery,
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                str(options["concurrency"]),
                "-n",
                "herald@%h",
            ],
            "beat": [*celery, "beat", "-l", "INFO", "--pidfile="],
        }
        base = f"http://{host}:{port}"
        self._supervise(
            processes,
            envs={"simulators": report_env},
            health_url=f"{base}/healthz",
            banner=lambda: self._banner(base, demo, password, device_line),
        )

    def _local_secrets_key(self) -> None:
        """With no HERALD_SECRETS_KEY, make (once) and use the local key file, before
        anything stores a credential; the children read the same file."""
        key_file = settings.HERALD_SECRETS_LOCAL_KEY_FILE
        if settings.HERALD_SECRETS_KEYS or key_file is None:
            return  # set explicitly (or a deployment's, which the system check covers)
        existed = key_file.exists()
        ensure_local_key(key_file)
        if not existed:
            self.stdout.write(
                f"Generated the local secrets key {key_file} (encrypts provider credentials; "
                "set HERALD_SECRETS_KEY in production, docs/deploy.md)."
            )

    def _supervise(
        self,
        processes: dict[str, list[str]],
        *,
        envs: dict[str, dict[str, str]],
        health_url: str | None,
        banner: Any,
    ) -> None:
        """Start the processes in one group, prefix their output, print the banner once
        the web server answers (at once without one), and stop them all on a signal
        or as soon as one of them exits."""
        stopping = threading.Event()
        group: ProcessGroup | None = None

        def stop(*_: object) -> None:
            if stopping.is_set() and group is not None:
                group.kill_now()  # asked twice: no more waiting
            stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        group = ProcessGroup()
        try:
            # Every child is started before the first output thread: a fork with
            # another thread running could copy a lock that thread holds.
            for name, argv in processes.items():
                group.start(name, argv, env=envs.get(name))
            for name, child in group.children.items():
                self._pump(name, child)
            if health_url is not None:
                self._wait_healthy(health_url, group, stopping)
            if not stopping.is_set():
                banner()
            while not stopping.is_set():
                exited = group.first_exit()
                if exited is not None:
                    raise CommandError(f"{describe_exit(*exited)}; stopped the rest.")
                stopping.wait(0.5)
            self.stdout.write("Stopping ...")
        finally:
            group.stop(STOP_ORDER, timeout=STOP_TIMEOUT_SECONDS)
        self.stdout.write("Stopped.")

    # --- production ------------------------------------------------------------------

    def _production(self, options: dict[str, Any]) -> None:
        problems = production_problems()
        if problems:
            raise CommandError("--production needs: " + "; ".join(problems) + " (docs/deploy.md).")
        workers, host, port = options["workers"], options["host"], options["port"]
        if not 0 <= workers <= MAX_WORKERS:
            raise CommandError(f"--workers must be between 0 and {MAX_WORKERS}.")
        if not (workers or options["web"] or options["beat"]):
            raise CommandError("Nothing to run: --no-web, --no-beat and --workers 0.")
        metrics_dir_reset()
        if options["web"]:
            self.stdout.write("Migrating the database ...")
            call_command("migrate", verbosity=0, interactive=False)
            call_command("collectstatic", verbosity=0, interactive=False)
            password = os.environ.get("HERALD_ADMIN_PASSWORD")
            if password:  # otherwise: manage.py createsuperuser, once
                call_command(
                    "ensure_admin", username="admin", password=password, stdout=io.StringIO()
                )
        celery = [PYTHON, "-m", "celery", "-A", "config"]
        processes: dict[str, list[str]] = {}
        if options["web"]:
            processes["web"] = [
                PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--config",
                "python:config.gunicorn",
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(options["web_workers"]),
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "15",
            ]
        for n in range(1, workers + 1):
            processes[f"worker{n}"] = [
                *celery,
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                str(options["concurrency"]),
                "-n",
                f"worker{n}@{options['node']}",
            ]
        if options["beat"]:
            processes["beat"] = [*celery, "beat", "-l", "INFO", "--pidfile="]
        base = f"http://{host}:{port}"
        self._supervise(
            processes,
            envs={},
            health_url=f"{base}/healthz" if options["web"] else None,
            banner=lambda: self._production_banner(base, processes),
        )

    def _production_banner(self, base: str, processes: dict[str, list[str]]) -> None:
        lines = [" Herald (production) is running (SIGTERM or Ctrl-C stops it)"]
        if "web" in processes:
            lines += [
                f"   Console         {base}/ops/",
                f"   API docs        {base}/api/docs",
                f"   Health          {base}/healthz   ready: {base}/readyz",
                f"   Metrics         {base}/metrics   (staff, or HERALD_METRICS_TOKEN)",
            ]
        workers = [name for name in processes if name.startswith("worker")]
        beat = ", beat" if "beat" in processes else ""
        lines.append(f"   Workers         {len(workers)} on this node{beat}")
        self.stdout.write("\n".join(["", "=" * 66, *lines, "=" * 66, ""]) + "\n")
        self.stdout.flush()

    @staticmethod
    def _pump(name: str, child: subprocess.Popen[str]) -> None:
        def pump() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stdout.write(f"{name:>10} | {line}")
                sys.stdout.flush()

        threading.Thread(target=pump, daemon=True).start()

    @staticmethod
    def _wait_healthy(url: str, group: ProcessGroup, stopping: threading.Event) -> None:
        deadline = time.monotonic() + 60
        while not stopping.is_set():
            exited = group.first_exit()
            if exited is not None:
                raise CommandError(f"{describe_exit(*exited)}; stopped the rest.")
            if time.monotonic() > deadline:
                raise CommandError("The web server did not come up within 60 s; stopped all.")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)

    def _banner(self, base: str, demo: dict[str, Any], password: str, device: str) -> None:
        project, key = demo["project_id"], demo["api_key"]
        control = (
            f"http://{settings.HERALD_SIMULATOR_HOST}:{settings.HERALD_SIMULATOR_CONTROL_PORT}"
        )
        self.stdout.write(
            "\n"
            "==================================================================\n"
            " Herald is running (Ctrl-C stops everything)\n"
            f"   Admin console   {base}/ops/   login: admin / {password}\n"
            f"                   or viewer, editor, sender / {DEMO_ROLE_PASSWORD} (roles)\n"
            f"   API             {base}/admin/projects/{project}/push/campaigns\n"
            f"   API docs        {base}/api/docs   (Redoc: /api/redoc, schema: /api/schema)\n"
            f"   MCP (HTTP)      {base}/mcp   (Bearer: the demo API key)\n"
            f"   Health          {base}/healthz   metrics: {base}/metrics\n"
            f"   Simulators      {control}/stats\n"
            f"   Device events   {device}\n"
            f"   Demo project    {project}\n"
            f"   Demo API key    {key}\n"
            "\n"
            " Try it:\n"
            f"   export HERALD_KEY={key}\n"
            f"   curl -s -X POST {base}/admin/push \\\n"
            '        -H "Authorization: Bearer $HERALD_KEY" \\\n'
            "        -H 'Content-Type: application/json' \\\n"
            '        -d \'{"title": "Hello", "body": "World"}\'\n'
            "==================================================================\n"
        )
        self.stdout.flush()


def production_problems() -> list[str]:
    """What the environment lacks for --production ([] when nothing)."""
    problems = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("DATABASE_URL pointing at PostgreSQL")
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        problems.append("REDIS_URL (the Celery broker)")
    if settings.SECRET_KEY == settings.INSECURE_SECRET_KEY:
        problems.append("SECRET_KEY (a long random string, the same on every node)")
    if settings.DEBUG:
        problems.append("DEBUG off")
    if not settings.HERALD_SECRETS_KEYS:
        problems.append("HERALD_SECRETS_KEY (Fernet keys, comma-separated, the same on every node)")
    else:
        problems.extend(key_problems())
    return problems
