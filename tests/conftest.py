"""Shared fixtures: an authenticated API client, the real broker queue, a broken broker.

Tests check what was enqueued by reading the messages back from the broker the
settings point at (kombu's filesystem transport under settings.BROKER_DIR with no
environment, Redis when REDIS_URL is set) - no mocks. The `broker` fixture is
autouse and drains the queue before and after every test, so each test starts
from an empty queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any, NamedTuple

import pytest
from rest_framework.test import APIClient

from campaigns.models import CampaignRun, PushCampaign
from config.celery import app as celery_app
from core.models import ApiKey, Project
from delivery.models import PushDelivery
from tests.factories import ProjectFactory, api_client, create_api_key

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
