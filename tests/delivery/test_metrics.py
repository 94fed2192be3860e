"""The delivery engine's metric helpers: bounded reason labels, the senders' latency
tally, and skips counted where rows are closed."""

from __future__ import annotations

import threading

import pytest

from core.metrics import render_metrics
from delivery import metrics
from delivery.models import PushDelivery
from delivery.providers import latency
from delivery.services import deliveries_skip
from tests.factories import CampaignFactory, PushDeliveryFactory
from tests.scrape import parse, value


@pytest.mark.parametrize(
    ("reason", "status", "label"),
    [
        ("", None, ""),
        ("Unregistered", 410, "Unregistered"),
        ("UNREGISTERED", 404, "UNREGISTERED"),
        ("timeout", None, "timeout"),
        ("connection_error", None, "connection_error"),
        ("InvalidPayload: Object of type set is not JSON serializable", None, "InvalidPayload"),
        ("InvalidSubscription: bad p256dh", None, "InvalidSubscription"),
        ("payload too large (5000 bytes)", None, "payload_too_large"),
        ("payload too large", 413, "payload_too_large"),
        ("The push subscription has expired or was removed by the user.", 410, "http_410"),
        ("APNs credentials are not configured for this project (missing topic).", None, "other"),
    ],
)
def test_reason_labels_are_codes_or_a_bounded_fallback(reason, status, label):
    assert metrics.reason_label(reason, status) == label


def test_reason_labels_stop_growing_at_the_cap(monkeypatch):
    monkeypatch.setattr(metrics, "_labels", set())
    monkeypatch.setattr(metrics, "_cache", {})
    # Reasons that differ only in their details share a label and use up no room.
    for size in range(5000, 5200):
        assert metrics.reason_label(f"payload too large ({size} bytes)") == "payload_too_large"
    for n in range(metrics.MAX_REASONS - 1):
        assert metrics.reason_label(f"Code{n}") == f"Code{n}"
    assert metrics.reason_label("OneTooMany") == metrics.OTHER_REASON
    assert metrics.reason_label("Code7") == "Code7"  # known labels still map to themselves
    assert metrics.reason_label("payload too large (1 bytes)") == "payload_too_large"
    assert len(metrics._labels) == metrics.MAX_REASONS


def test_the_latency_tally_buckets_and_drains():
    latency.drain()
    latency.record("apns", 0.005)  # a bound belongs to its own bucket (`le`)
    latency.record("apns", 0.006)
    latency.record("apns", 60.0)  # beyond the last bound: +Inf
    latency.record("fcm", 0.2)
    drained = latency.drain()
    apns_counts, apns_sum = drained["apns"]
    assert apns_counts == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert apns_sum == pytest.approx(60.011)
    assert drained["fcm"][0][5] == 1  # <= 0.25
    assert latency.drain() == {}


def test_the_tally_loses_nothing_to_a_concurrent_drain():
    latency.drain()
    per_thread, threads = 20_000, 4
    drained: list[int] = []
    stop = threading.Event()

    def drain_until_stopped() -> None:
        while not stop.is_set():
            drained.extend(sum(counts) for counts, _ in latency.drain().values())

    def record() -> None:
        for _ in range(per_thread):
            latency.record("apns", 0.01)

    drainer = threading.Thread(target=drain_until_stopped)
    drainer.start()
    workers = [threading.Thread(target=record) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    drainer.join()
    drained.extend(sum(counts) for counts, _ in latency.drain().values())
    assert sum(drained) == per_thread * threads


@pytest.mark.django_db
def test_skipped_rows_are_counted_by_reason():
    campaign = CampaignFactory(status="sending", current_run=1)
    for _ in range(3):
        PushDeliveryFactory(campaign=campaign)
    name = "herald_deliveries_skipped_total"
    before = value(parse(render_metrics().decode()), name, reason="campaign_cancelled")
    rows = PushDelivery.objects.filter(campaign=campaign)
    assert deliveries_skip(rows=rows, reason="campaign cancelled") == 3
    assert deliveries_skip(rows=rows, reason="campaign cancelled") == 0  # nothing left
    after = value(parse(render_metrics().decode()), name, reason="campaign_cancelled")
    assert after - before == 3
