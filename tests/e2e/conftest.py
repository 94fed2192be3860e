"""End-to-end harness: real provider simulators and real Celery worker processes.

The simulators run as `python -m delivery.simulators` (HTTP/2 + TLS APNs, HTTPS
FCM with its OAuth endpoint); workers run as `celery -A config worker` against
the same test database and broker as the test process. Tests use
`django_db(transaction=True)` so what they write is committed and visible to the
workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from config.celery import app
from tests.childenv import database_env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Simulators:
    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def control(self) -> str:
        return str(self.info["control_url"])

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.control + path,
            data=data,
            method="POST" if data is not None or path == "/reset" else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def stats(self, tokens: bool = False) -> dict[str, Any]:
        return self._call("/stats?tokens=1" if tokens else "/stats")

    def configure(self, knobs: dict[str, Any]) -> dict[str, Any]:
        return self._call("/config", knobs)

    def reset(self) -> None:
        self._call("/reset", {"config": True})

    def subscribe(self, count: int) -> list[dict[str, Any]]:
        """``count`` browser subscriptions the web push simulator minted."""
        return list(self._call("/webpush/subscriptions", {"count": count})["subscriptions"])


@pytest.fixture(scope="session")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulators]:
    cert_dir = tmp_path_factory.mktemp("simulators")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery.simulators",
            "--apns-port",
            "0",
            "--fcm-port",
            "0",
            "--control-port",
            "0",
            "--webpush-port",
            "0",
            "--cert-dir",
            str(cert_dir),
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail("the simulators did not start")
    sims = Simulators(process=process, info=json.loads(line))
    yield sims
    process.terminate()
    process.wait(timeout=10)


def drain_broker() -> None:
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue("celery")
        try:
            queue.clear()
        finally:
            queue.close()


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): a crash."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def shutdown(self, timeout: float = 90) -> None:
        """`kill <pid>` of the main process: Celery's warm shutdown finishes the
        tasks being executed and hands the rest back to the broker."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Teardown: TERM the whole group (pool processes too), don't wait long."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn_celery(args: list[str], log: Path, env: dict[str, str] | None, ready: bytes) -> Worker:
    """Start `celery -A config <args>` against the test database and broker, and wait
    until its log says `ready`."""
    child_env = {**os.environ, **database_env(), **(env or {})}
    child_env["HERALD_VAR_DIR"] = str(settings.VAR_DIR)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args],
        cwd=ROOT,
        env=child_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = Worker(process=process, log=log)
    deadline = time.monotonic() + 60
    while ready not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            started.stop()
            pytest.fail(f"celery {args[0]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return started


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start real `celery worker` processes; all are stopped at teardown."""
    workers: list[Worker] = []

    def start(env: dict[str, str] | None = None, concurrency: int = 2) -> Worker:
        n = len(workers)
        args = [
            "worker",
            "-l",
            "INFO",
            "--concurrency",
            str(concurrency),
            "-n",
            f"e2e{n}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        workers.append(_spawn_celery(args, tmp_path / f"worker-{n}.log", env, b" ready."))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_beat(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start real `celery beat` (django-celery-beat's DatabaseScheduler)."""
    beats: list[Worker] = []

    def start(env: dict[str, str] | None = None) -> Worker:
        n = len(beats)
        # Beat applies the sweep interval setting at start (campaigns/periodic.py).
        env = {"HERALD_SWEEP_INTERVAL_SECONDS": "1", **(env or {})}
        args = [
            "beat",
            "-l",
            "DEBUG",
            "--pidfile=",
            "-s",
            str(tmp_path / f"beat-{n}.schedule"),
            "--max-interval",
            "1",
        ]
        beats.append(_spawn_celery(args, tmp_path / f"beat-{n}.log", env, b"beat: Starting"))
        return beats[-1]

    yield start
    for beat in beats:
        beat.stop()


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    every: float = 0.25,
    tick: Callable[[], object] | None = None,
) -> bool:
    """Poll until `condition()`; `tick` runs between polls (e.g. the sweeper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if tick is not None:
            tick()
        time.sleep(every)
    return condition()
