"""Shared fixtures: an authenticated API client, the real broker queue, a broken broker.

Tests check what was enqueued by reading the messages back from the broker the
settings point at (kombu's filesystem transport under settings.BROKER_DIR with no
environment, Redis when REDIS_URL is set) - no mocks. The `broker` fixture is
autouse and drains the queue before and after every test, so each test starts
from an empty queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, NamedTuple

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from campaigns.models import CampaignRun, PushCampaign
from config.celery import app as celery_app
from core.models import ApiKey, Project
from delivery.models import PushDelivery
from delivery.simulators.credentials import DemoCredentials, ensure_demo_credentials
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    SegmentFactory,
    api_client,
    create_api_key,
)

# A fixed secrets key for the whole run, in the environment too so the workers, web
# servers and nodes the e2e tests start read what this process wrote (core/secrets.py).
TEST_SECRETS_KEY = "dGVzdC1vbmx5LWhlcmFsZC1zZWNyZXRzLWtleS0wMDA="
os.environ["HERALD_SECRETS_KEY"] = TEST_SECRETS_KEY
django_settings.HERALD_SECRETS_KEYS = [TEST_SECRETS_KEY]

# The console's browser fixtures (`browser`, `console`) and the loud skip report.
pytest_plugins = ["tests.browser"]

# Nothing listens on port 1: connecting is refused at once, a real broker fault.
UNREACHABLE_BROKER_URL = "redis://127.0.0.1:1/0"


@dataclass(frozen=True)
class EnqueuedTask:
    """One Celery (protocol 2) message as a worker would receive it."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    eta: str | None


class BrokerQueue:
    """Reads (and so removes) the messages waiting in a real broker queue."""

    def __init__(self, queue_name: str = "celery") -> None:
        self.queue_name = queue_name

    def drain(self) -> list[EnqueuedTask]:
        """Every waiting message, oldest first; the queue is empty afterwards."""
        tasks: list[EnqueuedTask] = []
        # A pooled connection: the queue is read twice per test, so reuse matters.
        conn: Any
        with celery_app.pool.acquire(block=True) as conn:
            queue = conn.SimpleQueue(self.queue_name)
            try:
                while True:
                    try:
                        message = queue.get(block=False)
                    except Empty:
                        break
                    args, kwargs, _embed = message.decode()
                    headers = message.headers
                    tasks.append(
                        EnqueuedTask(
                            name=headers["task"], args=args, kwargs=kwargs, eta=headers.get("eta")
                        )
                    )
                    message.ack()
            finally:
                queue.close()
        return tasks


@pytest.fixture(autouse=True)
def no_failed_auth_limit(settings: Any) -> None:
    """Every test client is 127.0.0.1, and the suite makes hundreds of refused requests
    a minute: the per-IP failed-authentication limit (core/throttling.py) is off unless
    a test turns it on (tests/core/test_key_lifecycle.py, with an IP of its own)."""
    settings.HERALD_AUTH_FAILURES_PER_MINUTE = 0


@pytest.fixture(scope="session", autouse=True)
def metrics_files_of_live_processes_only() -> None:
    """The test var dir's metrics folder keeps the files of every process that ever
    wrote to it; those of processes no longer running are earlier sessions', so they
    go at the start (a node's run_stack empties its folder the same way) and scrapes
    add up this session's processes only."""
    for path in Path(django_settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _running(int(pid)):
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(autouse=True)
def broker() -> Iterator[BrokerQueue]:
    queue = BrokerQueue()
    queue.drain()
    yield queue
    queue.drain()


def _reset_celery_connections() -> None:
    # The same two caches Celery itself resets after a fork: the connection pool and
    # the producer pool are built lazily from app.conf.broker_url on next use. The
    # task sender caches the publish retry policy, so it is rebuilt too.
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]
    celery_app.amqp.__dict__.pop("send_task_message", None)


class BrokerOutage:
    """The Celery app pointed at a broker that refuses connections, until restore()."""

    # Publishing retries as configured, only without the waits between attempts.
    FAST_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0}

    def __init__(self) -> None:
        self._saved_url = celery_app.conf.broker_url
        self._saved_policy = celery_app.conf.task_publish_retry_policy
        self.active = False

    def start(self) -> None:
        celery_app.conf.update(
            broker_url=UNREACHABLE_BROKER_URL, task_publish_retry_policy=self.FAST_RETRY_POLICY
        )
        _reset_celery_connections()
        self.active = True

    def restore(self) -> None:
        if self.active:
            celery_app.conf.update(
                broker_url=self._saved_url, task_publish_retry_policy=self._saved_policy
            )
            _reset_celery_connections()
            self.active = False


@pytest.fixture
def broken_broker() -> Iterator[BrokerOutage]:
    """A real broker fault: nothing listens on the broker port, so publishing fails
    (kombu OperationalError) exactly as when Redis is down. Call `.restore()` to bring
    the broker back within a test; it is restored after the test in any case.
    """
    outage = BrokerOutage()
    outage.start()
    try:
        yield outage
    finally:
        outage.restore()


class Api(NamedTuple):
    client: APIClient
    project: Project


@pytest.fixture
def api(db: None) -> Api:
    """A client holding an admin key of a fresh project, and that project."""
    project = ProjectFactory()
    _key, raw = create_api_key(project, scope=ApiKey.Scope.ADMIN)
    return Api(api_client(raw), project)


@pytest.fixture
def db_state(db: None) -> Callable[[], dict[str, list[Any]]]:
    """A callable returning every campaign, run and delivery row, to compare before/after."""

    def state() -> dict[str, list[Any]]:
        return {
            "campaigns": list(PushCampaign.objects.order_by("id").values()),
            "runs": list(CampaignRun.objects.order_by("id").values()),
            "deliveries": list(PushDelivery.objects.order_by("id").values()),
        }

    return state


# --- the operator console (/ops/) ---------------------------------------------------


@pytest.fixture
def staff(db: None, settings: Any) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-password")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def demo_credentials(tmp_path_factory: pytest.TempPathFactory) -> DemoCredentials:
    return ensure_demo_credentials(tmp_path_factory.mktemp("simulators"))


@pytest.fixture
def configured_project(db: None, demo_credentials: DemoCredentials) -> Project:
    return ProjectFactory.create(
        name="Configured",
        apns_team_id=demo_credentials.team_id,
        apns_key_id=demo_credentials.key_id,
        apns_auth_key=demo_credentials.auth_key_pem,
        apns_topic=demo_credentials.topic,
        fcm_service_account=demo_credentials.service_account_info,
    )


@pytest.fixture
def some_of_everything(configured_project: Project) -> dict[str, Any]:
    key, _ = create_api_key(configured_project, name="ci key")
    user = AppUserFactory.create(
        project=configured_project,
        external_id="u-1",
        attributes={"country": "FR", "language": "fr"},
    )
    token = PushTokenFactory.create(project=configured_project, app_user=user)
    segment = SegmentFactory.create(
        project=configured_project,
        rules={"all": [{"attr": "language", "op": "eq", "value": "fr"}]},
    )
    campaign = CampaignFactory.create(
        project=configured_project,
        segment=segment,
        status="sent",
        current_run=1,
    )
    CampaignRunFactory.create(
        campaign=campaign, number=1, status="sent", targeted=3, sent=2, invalid_tokens=1
    )
    delivery = PushDeliveryFactory.create(campaign=campaign, token=token, status="sent")
    return {
        "core_project": configured_project,
        "core_apikey": key,
        "segments_appuser": user,
        "segments_segment": segment,
        "delivery_pushtoken": token,
        "delivery_pushdelivery": delivery,
        "campaigns_pushcampaign": campaign,
    }
