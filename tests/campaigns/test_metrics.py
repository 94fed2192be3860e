"""Metrics of a campaign send, task functions called directly (no worker), and the
values /metrics computes at scrape time (campaigns by status, schedule lag, broker
queue depth). Pushes go over real HTTP/2 + TLS to the in-process simulators."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import queue
from campaigns.models import CampaignStatus, PushCampaign
from core.metrics import render_metrics
from delivery.models import PushDelivery
from tests.campaigns.conftest import DEAD_APNS
from tests.campaigns.test_sending import drive, send, tokens
from tests.factories import CampaignFactory, PushTokenFactory
from tests.scrape import Samples, parse, total, value

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]


def scrape() -> Samples:
    return parse(render_metrics().decode())


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_sent_campaign_moves_the_counters(project, broker, sim, settings):
    settings.HERALD_RETRY_BASE_SECONDS = 0.05
    settings.HERALD_MAX_ATTEMPTS = 3
    flaky, hopeless, _fine = tokens(project, 3)
    PushTokenFactory(project=project, token=DEAD_APNS)
    tokens(project, 2, "fcm")
    sim.configure(
        {
            "apns": {
                "transient_failures": {flaky.token: 1, hopeless.token: 5},
                "transient_status": 503,
            }
        }
    )
    before = scrape()
    campaign = send(project)
    drive(campaign, broker)
    after = scrape()

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    hopeless_row = PushDelivery.objects.get(campaign=campaign, token=hopeless)
    assert hopeless_row.error_message == "gave up after 3 attempts: ServiceUnavailable"

    deliveries = "herald_deliveries_total"
    assert moved(before, after, deliveries, provider="apns", status="sent", reason="") == 2
    assert moved(before, after, deliveries, provider="fcm", status="sent", reason="") == 2
    invalid = {"provider": "apns", "status": "invalid_token", "reason": "Unregistered"}
    assert moved(before, after, deliveries, **invalid) == 1
    failed = {"provider": "apns", "status": "failed", "reason": "ServiceUnavailable"}
    assert moved(before, after, deliveries, **failed) == 1
    # flaky once, hopeless twice before giving up at its third attempt
    retries = {"provider": "apns", "reason": "ServiceUnavailable"}
    assert moved(before, after, "herald_delivery_retries_total", **retries) == 3
    assert moved(before, after, "herald_tokens_retired_total", provider="apns") == 1

    # Every request timed: APNs 1 (fine) + 2 (flaky) + 3 (hopeless) + 1 (dead); FCM 2.
    latency = "herald_provider_request_seconds"
    assert moved(before, after, f"{latency}_count", provider="apns") == 7
    assert moved(before, after, f"{latency}_count", provider="fcm") == 2
    inf = {"provider": "apns", "le": "+Inf"}
    assert moved(before, after, f"{latency}_bucket", **inf) == 7
    assert moved(before, after, f"{latency}_sum", provider="apns") > 0

    assert moved(before, after, "herald_fanout_duration_seconds_count") == 1
    assert moved(before, after, "herald_run_duration_seconds_count", trigger="send") == 1
    sent = PushCampaign.objects.filter(status=CampaignStatus.SENT).count()
    assert value(after, "herald_campaigns", status="sent") == sent


def test_campaigns_are_counted_by_status():
    for status, count in (("draft", 2), ("sending", 1), ("failed", 3)):
        for _ in range(count):
            CampaignFactory(status=status)
    samples = scrape()
    expected = {
        status: PushCampaign.objects.filter(status=status).count()
        for status in (CampaignStatus.values)
    }
    assert {s: value(samples, "herald_campaigns", status=s) for s in expected} == expected
    assert (expected["draft"], expected["sending"], expected["failed"]) == (2, 1, 3)
    assert total(samples, "herald_campaigns") == PushCampaign.objects.count()


def test_schedule_lag_is_the_age_of_the_oldest_due_unfired_schedule():
    now = timezone.now()
    CampaignFactory(status="scheduled", scheduled_at=now + timedelta(hours=1))
    assert value(scrape(), "herald_schedule_lag_seconds") == 0
    CampaignFactory(status="scheduled", scheduled_at=now - timedelta(seconds=30))
    CampaignFactory(status="scheduled", scheduled_at=now - timedelta(seconds=90))
    CampaignFactory(status="sent", scheduled_at=now - timedelta(days=3))  # fired long ago
    lag = value(scrape(), "herald_schedule_lag_seconds")
    assert 90 <= lag < 90 + 30


def test_broker_queue_depth_counts_the_waiting_task_messages(broker):
    assert value(scrape(), "herald_broker_queue_depth", queue="celery") == 0
    for run in (1, 2, 3):
        queue.enqueue_close_run(CampaignFactory().id, run)
    assert value(scrape(), "herald_broker_queue_depth", queue="celery") == 3
    assert len(broker.drain()) == 3
    assert value(scrape(), "herald_broker_queue_depth", queue="celery") == 0


def test_a_broker_outage_leaves_out_only_the_queue_depth(broken_broker):
    CampaignFactory(status="draft")
    samples = scrape()
    assert not [name for name, _ in samples if name == "herald_broker_queue_depth"]
    assert value(samples, "herald_campaigns", status="draft") == 1


def test_a_test_push_is_counted_like_any_delivery(api, project):
    PushTokenFactory(project=project, token=DEAD_APNS, provider="apns")
    before = scrape()
    response = api.client.post(
        f"/admin/projects/{project.id}/push/campaigns/test",
        {"title": "T", "body": "B", "device_token": DEAD_APNS, "provider": "apns"},
    )
    assert response.status_code == 502
    after = scrape()
    invalid = {"provider": "apns", "status": "invalid_token", "reason": "Unregistered"}
    assert moved(before, after, "herald_deliveries_total", **invalid) == 1
    assert moved(before, after, "herald_tokens_retired_total", provider="apns") == 1
    assert moved(before, after, "herald_provider_request_seconds_count", provider="apns") == 1
    route = "/admin/projects/{project_id}/push/campaigns/test"
    request = {"method": "POST", "route": route, "status": "502"}
    assert moved(before, after, "herald_http_requests_total", **request) == 1
