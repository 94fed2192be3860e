"""/metrics end to end: a campaign sent through the API by a real Celery worker (a
prefork pool) to the simulators over HTTP/2 + TLS moves the counters the web's
/metrics reports, although every push was counted in another process.

The worker's pool children write their counters to their own files in the
PROMETHEUS_MULTIPROC_DIR they inherited; the scrape here (the test process is the
web) adds them up. Once the worker has stopped, its counts are still there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from campaigns.models import CampaignStatus, PushCampaign
from core.models import ApiKey
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import FAST_RETRIES, _project, _status, _subscriptions, _tokens
from tests.factories import api_client, create_api_key
from tests.scrape import Samples, parse, value

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-metrics-token-0123456789abcdef"


def scrape() -> Samples:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return parse(response.content.decode())


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_move_after_a_send(simulators: Simulators, start_worker, settings):
    settings.HERALD_METRICS_TOKEN = TOKEN
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    _tokens(project, "apns", 300)
    fcm_ok = _tokens(project, "fcm", 200)
    apns_dead = _tokens(project, "apns", 20)
    _subscriptions(project, simulators, 30)
    simulators.configure(
        {
            "apns": {"invalid_tokens": apns_dead},
            "fcm": {"transient_failures": dict.fromkeys(fcm_ok[:10], 1), "transient_status": 503},
        }
    )
    _key, raw = create_api_key(project, scope=ApiKey.Scope.ADMIN)
    api = api_client(raw)
    worker = start_worker(env=FAST_RETRIES, concurrency=2)

    before = scrape()
    base = f"/admin/projects/{project.id}/push/campaigns"
    created = api.post(base, {"title": "Metrics", "body": "move"}, format="json")
    assert created.status_code == 201
    campaign_id = created.json()["id"]
    assert api.post(f"{base}/{campaign_id}/send").status_code == 200
    assert wait_for(lambda: _status_of(campaign_id) == CampaignStatus.SENT, timeout=120)
    # The run duration is observed when the run settles, right after its status moves.
    assert wait_for(
        lambda: moved(before, scrape(), "herald_run_duration_seconds_count", trigger="send") == 1,
        timeout=10,
    )
    after = scrape()

    deliveries = "herald_deliveries_total"
    assert moved(before, after, deliveries, provider="apns", status="sent", reason="") == 300
    assert moved(before, after, deliveries, provider="fcm", status="sent", reason="") == 200
    assert moved(before, after, deliveries, provider="webpush", status="sent", reason="") == 30
    dead = {"provider": "apns", "status": "invalid_token", "reason": "Unregistered"}
    assert moved(before, after, deliveries, **dead) == 20
    retried = {"provider": "fcm", "reason": "UNAVAILABLE"}
    assert moved(before, after, "herald_delivery_retries_total", **retried) == 10
    assert moved(before, after, "herald_tokens_retired_total", provider="apns") == 20
    latency = "herald_provider_request_seconds_count"
    assert moved(before, after, latency, provider="apns") == 320
    assert moved(before, after, latency, provider="fcm") == 210
    assert moved(before, after, latency, provider="webpush") == 30
    assert moved(before, after, "herald_fanout_duration_seconds_count") == 1
    assert moved(before, after, "herald_run_duration_seconds_sum", trigger="send") > 0
    requests = "herald_http_requests_total"
    send_route = "/admin/projects/{project_id}/push/campaigns/{campaign_id}/send"
    assert moved(before, after, requests, method="POST", route=send_route, status="200") == 1
    create_route = "/admin/projects/{project_id}/push/campaigns"
    assert moved(before, after, requests, method="POST", route=create_route, status="201") == 1
    assert value(after, "herald_broker_queue_depth", queue="celery") == 0

    # Counted in the worker's pool processes, not here: their files sit beside ours.
    files = Path(django_settings.PROMETHEUS_MULTIPROC_DIR).glob("counter_*.db")
    assert {f.stem.removeprefix("counter_") for f in files} - {str(os.getpid())}

    worker.shutdown()
    assert moved(before, scrape(), deliveries, provider="apns", status="sent", reason="") == 300


def _status_of(campaign_id: str) -> str:
    return _status(PushCampaign.objects.get(pk=campaign_id))
