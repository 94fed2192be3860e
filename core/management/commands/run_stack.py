"""`manage.py run_stack`: the whole of Herald on one machine, for `make run`.

Migrates, seeds the demo project (wired to the local provider simulators), makes
sure an admin login exists, then starts the simulators, the web server, a Celery
worker and Celery beat, prefixes their output, prints the URLs and credentials,
and stops everything on Ctrl-C (or as soon as any of them dies).
"""

from __future__ import annotations

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
from django.core.management.base import BaseCommand, CommandError, CommandParser

PYTHON = sys.executable


class Command(BaseCommand):
    help = "Set up and run web + worker + beat + provider simulators (Ctrl-C stops all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HERALD_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HERALD_PORT", "8000")))
        parser.add_argument("--users", type=int, default=200, help="demo users to seed")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        self.stdout.write("Migrating the database ...")
        call_command("migrate", verbosity=0, interactive=False)
        seeded = io.StringIO()
        call_command("seed_demo", users=options["users"], json=True, stdout=seeded)
        demo = json.loads(seeded.getvalue().strip().splitlines()[-1])
        password = os.environ.get("HERALD_ADMIN_PASSWORD", "herald-admin")
        call_command("ensure_admin", username="admin", password=password, stdout=io.StringIO())

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
                "--cert-dir",
                str(settings.HERALD_SIMULATOR_DIR),
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
        children: dict[str, subprocess.Popen[str]] = {}
        stopping = threading.Event()

        def stop(*_: object) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, argv in processes.items():
                children[name] = self._start(name, argv)
            base = f"http://{host}:{port}"
            if not self._wait_healthy(f"{base}/healthz", children, stopping):
                raise CommandError("The web server did not come up; see the output above.")
            self._banner(base, demo, password)
            while not stopping.is_set():
                for name, child in children.items():
                    if child.poll() is not None:
                        raise CommandError(f"{name} exited with code {child.returncode}.")
                stopping.wait(0.5)
        finally:
            self._stop_all(children)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[str]:
        child = subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
        )

        def pump() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stdout.write(f"{name:>10} | {line}")
                sys.stdout.flush()

        threading.Thread(target=pump, daemon=True).start()
        return child

    @staticmethod
    def _wait_healthy(
        url: str, children: dict[str, subprocess.Popen[str]], stopping: threading.Event
    ) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopping.is_set():
            if any(child.poll() is not None for child in children.values()):
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        return False

    def _banner(self, base: str, demo: dict[str, Any], password: str) -> None:
        project, key = demo["project_id"], demo["api_key"]
        control = (
            f"http://{settings.HERALD_SIMULATOR_HOST}:{settings.HERALD_SIMULATOR_CONTROL_PORT}"
        )
        self.stdout.write(
            "\n"
            "==================================================================\n"
            " Herald is running (Ctrl-C stops everything)\n"
            f"   Admin console   {base}/ops/   login: admin / {password}\n"
            f"   API             {base}/admin/projects/{project}/push/campaigns\n"
            f"   OpenAPI schema  {base}/api/schema\n"
            f"   Health          {base}/healthz\n"
            f"   Simulators      {control}/stats\n"
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

    @staticmethod
    def _stop_all(children: dict[str, subprocess.Popen[str]]) -> None:
        # Web and beat first so nothing new is enqueued, then the worker (warm
        # shutdown finishes its current task), then the simulators.
        for name in ("web", "beat", "worker", "simulators"):
            child = children.get(name)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the leader stops its own children
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
