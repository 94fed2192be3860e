"""`manage.py run_stack --production` as a deployment runs it: two nodes named as two
hosts against one PostgreSQL and Redis - "alpha" with gunicorn, beat and a worker,
"beta" a worker-only node (`--no-web --no-beat`) - and a broadcast sent through the
web node's API is split between both nodes' workers, every token sent once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.models import CampaignStatus, PushCampaign
from campaigns.queue import SEND_BATCH_TASK
from config.celery import app
from tests.childenv import database_env
from tests.e2e.conftest import ROOT, Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project, _tokens
from tests.factories import create_api_key
from tests.scrape import Samples, parse, total, value

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NODES = ("alpha", "beta")
METRICS_TOKEN = "e2e-production-metrics-token-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **database_env(),
        "HERALD_VAR_DIR": str(settings.VAR_DIR),
        # One metrics folder per node, as on separate machines (each node empties its
        # own at start; docs/deploy.md, "Metrics").
        "HERALD_METRICS_DIR": str(log.parent / f"metrics-{log.stem}"),
        "HERALD_METRICS_TOKEN": METRICS_TOKEN,
        "SECRET_KEY": "e2e-production-secret-key-0123456789abcdef",
        "DEBUG": "0",
        # Small batches, so a few thousand tokens make work for both nodes.
        "HERALD_FANOUT_CHUNK_SIZE": "300",
        "HERALD_SEND_CHUNK_SIZE": "300",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_stack", "--production", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except OSError:
        return 0, {}


def _post(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.load(response))


def _scrape(base: str) -> Samples:
    request = urllib.request.Request(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return parse(response.read().decode())


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


def test_two_production_nodes_share_a_broadcast(simulators: Simulators, tmp_path: Path) -> None:
    simulators.reset()
    drain_broker()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {node: tmp_path / f"{node}.log" for node in NODES}
    alpha = _node(["--port", str(port), "--node", "alpha", "--web-workers", "1"], logs["alpha"])
    beta = _node(["--no-web", "--no-beat", "--node", "beta"], logs["beta"])
    try:
        workers = {"worker1@alpha", "worker1@beta"}

        def both_answer() -> bool:
            replies = app.control.ping(timeout=1.0)
            return workers <= {name for reply in replies or [] for name in reply}

        assert wait_for(both_answer, timeout=90), {
            n: p.read_text()[-2000:] for n, p in logs.items()
        }
        # Ready: database, broker, a worker, and beat's sweeper has run on a worker.
        assert wait_for(lambda: _get(f"{base}/readyz")[0] == 200, timeout=60)
        _, ready = _get(f"{base}/readyz")
        assert ready["scheduler"]["status"] == "ok" and ready["workers"]["answered"]

        project = _project(simulators)
        tokens = _tokens(project, "apns", 1500) + _tokens(project, "fcm", 1500)
        _, key = create_api_key(project)
        campaigns = f"{base}/admin/projects/{project.pk}/push/campaigns"
        created = _post(campaigns, key, {"title": "Hello", "body": "Both nodes"})
        _post(f"{campaigns}/{created['id']}/send", key, {})

        campaign = PushCampaign.objects.get(pk=created["id"])
        assert wait_for(
            lambda: PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT,
            timeout=180,
        )
        accepted = _accepted(simulators)
        assert set(accepted["tokens"]) == set(tokens)
        assert set(accepted["tokens"].values()) == {1}  # each token once
        # Both nodes sent batches of it.
        stats = app.control.inspect(destination=sorted(workers), timeout=5.0).stats() or {}
        batches = {name: stats[name]["total"].get(SEND_BATCH_TASK, 0) for name in workers}
        assert all(n > 0 for n in batches.values()), batches
        # alpha's /metrics (gunicorn) adds up alpha's processes: its web worker counted
        # the API calls, its worker's pool processes their share of the pushes; beta's
        # share is in beta's own folder, for beta's own scrape.
        samples = _scrape(base)
        sent_here = total(samples, "herald_deliveries_total", status="sent")
        assert 0 < sent_here < len(tokens)
        send_route = "/admin/projects/{project_id}/push/campaigns/{campaign_id}/send"
        labels = {"method": "POST", "route": send_route, "status": "200"}
        assert value(samples, "herald_http_requests_total", **labels) == 1
    finally:
        codes = {"alpha": _stop(alpha), "beta": _stop(beta)}
    # SIGTERM is an orderly stop: every process of both nodes is gone, exit code 0.
    assert codes == {"alpha": 0, "beta": 0}, {n: p.read_text()[-2000:] for n, p in logs.items()}
    assert "Stopped." in logs["alpha"].read_text() and "Stopped." in logs["beta"].read_text()


# --- what --production refuses -------------------------------------------------------------


def test_production_names_everything_the_environment_lacks(settings: Any) -> None:
    settings.SECRET_KEY = settings.INSECURE_SECRET_KEY
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = "filesystem://localhost/"
    settings.DATABASES = {**settings.DATABASES}
    settings.DATABASES["default"] = {
        **settings.DATABASES["default"],
        "ENGINE": "django.db.backends.sqlite3",
    }

    with pytest.raises(CommandError) as refused:
        call_command("run_stack", "--production")

    assert str(refused.value) == (
        "--production needs: DATABASE_URL pointing at PostgreSQL; REDIS_URL (the Celery "
        "broker); SECRET_KEY (a long random string, the same on every node); DEBUG off "
        "(docs/deploy.md)."
    )


def test_production_refuses_a_node_with_nothing_to_run(settings: Any) -> None:
    settings.SECRET_KEY = "a-real-secret-key-for-this-test-0123456789"
    settings.DEBUG = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    settings.DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"

    with pytest.raises(
        CommandError, match=r"^Nothing to run: --no-web, --no-beat and --workers 0\.$"
    ):
        call_command("run_stack", "--production", "--no-web", "--no-beat", "--workers", "0")
    with pytest.raises(CommandError, match=r"^--workers must be between 0 and 64\.$"):
        call_command("run_stack", "--production", "--workers", "65")
