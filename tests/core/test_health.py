"""GET /healthz and /readyz: database and broker reachability, live workers and the
sweeper's heartbeat, checked for real (no auth). /readyz answering 200 with a live
worker and beat is tests/e2e/test_production.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.tasks import sweep_campaigns_task
from core.models import SWEEP_HEARTBEAT, Heartbeat

pytestmark = pytest.mark.django_db


def test_healthy(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_broker_unreachable_is_503_until_it_is_back(client, broken_broker):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}

    broken_broker.restore()

    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_other_methods_are_405_in_the_envelope(method, path):
    # A real client enforces CSRF; a health probe must still get the JSON 405.
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {
        "error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": f'Method "{method.upper()}" not allowed.',
            "details": {},
        }
    }


def test_not_ready_without_a_worker_or_a_sweep(client):
    """No worker runs in this test: nothing answers the ping, the sweeper never ran."""
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert (body["database"], body["broker"]) == ("ok", "ok")
    assert body["workers"] == {"status": "none answered", "answered": []}
    assert body["scheduler"] == {
        "status": "never ran",
        "last_sweep_seconds_ago": None,
        "stale_after_seconds": 60,
    }


def test_the_sweeper_beats_and_a_stale_beat_is_named(client):
    sweep_campaigns_task()  # what beat sends every 15 s: it records its heartbeat

    fresh = client.get("/readyz").json()["scheduler"]
    assert fresh["status"] == "ok" and 0 <= fresh["last_sweep_seconds_ago"] < 30

    Heartbeat.objects.filter(name=SWEEP_HEARTBEAT).update(at=timezone.now() - timedelta(seconds=61))
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert stale.json()["scheduler"]["status"] == "stale"


def test_not_ready_when_the_broker_is_down(client, broken_broker):
    body = client.get("/readyz").json()

    assert (body["broker"], body["workers"]["status"]) == ("unreachable", "none answered")
