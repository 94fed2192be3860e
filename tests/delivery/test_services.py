"""The delivery engine's crash guarantees: results written as they arrive, a lease
renewed while sending, and what the sweeper does with a dead worker's claim.

Sends go over real HTTP/2 + TLS to the in-process simulators. The streaming tests
commit (transactional db) so a second connection can watch the rows the way the
sweeper and a replacement worker would see them after a crash.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from campaigns.content import campaign_content
from core.models import Project
from delivery.models import DeliveryClaim, PushDelivery
from delivery.providers import runtime
from delivery.services import (
    RESENDING,
    UNKNOWN_OUTCOME,
    ExpiredClaim,
    deliveries_expire_claims,
    deliveries_send,
)
from tests.campaigns.conftest import wire
from tests.factories import CampaignFactory, ProjectFactory, PushTokenFactory


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    runtime.shutdown()
    yield
    runtime.shutdown()


def _rows(project: Project, provider: str, count: int) -> tuple[Any, list[PushDelivery]]:
    campaign = CampaignFactory(project=project, status="sending", current_run=1)
    rows = []
    for i in range(count):
        if provider == "apns":
            token = PushTokenFactory(project=project)
        else:
            token = PushTokenFactory(
                project=project, provider="fcm", platform="android", token=f"s{i:0150d}"
            )
        rows.append(
            PushDelivery.objects.create(
                campaign=campaign, run=1, token=token, app_user=token.app_user, provider=provider
            )
        )
    return campaign, rows


class Watcher(threading.Thread):
    """Polls the database on its own connection while a batch is being sent."""

    def __init__(self, look: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.look = look
        self.seen: list[Any] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.wait(0.02):
                self.seen.append(self.look())
        finally:
            connections.close_all()


def _send_watched(project, campaign, look) -> tuple[Any, list[Any]]:
    watcher = Watcher(look)
    watcher.start()
    try:
        outcome = deliveries_send(
            project=project,
            content=campaign_content(campaign),
            rows=PushDelivery.objects.filter(campaign=campaign),
        )
    finally:
        watcher.stop.set()
        watcher.join(10)
    return outcome, watcher.seen


@pytest.mark.django_db(transaction=True)
def test_results_are_written_while_the_sub_batch_is_still_sending(sim, settings, monkeypatch):
    settings.HERALD_FCM_CONCURRENCY = 4
    settings.HERALD_RESULT_FLUSH_ROWS = 4
    settings.HERALD_RESULT_FLUSH_SECONDS = 0.05
    monkeypatch.setattr("delivery.services.ADMIT_STEP", 1)
    sim.configure({"fcm": {"latency_ms": 50}})  # 64 rows, 4 at a time: ~0.8 s
    project = wire(ProjectFactory(), sim)
    campaign, rows = _rows(project, "fcm", 64)
    last_pk = rows[-1].pk

    def look() -> tuple[int, int, int | None]:
        statuses = list(PushDelivery.objects.filter(campaign=campaign).values_list("status"))
        claim = DeliveryClaim.objects.filter(campaign=campaign).first()
        return (
            statuses.count(("sent",)),
            statuses.count(("queued",)),
            None if claim is None else claim.started.get("fcm"),
        )

    outcome, seen = _send_watched(project, campaign, look)

    assert (outcome.sent, outcome.attempted) == (64, 64)
    # Mid-send, a crash would have left some rows recorded, the rest claimed, and the
    # claim row saying the later rows had not been allowed to start yet.
    mid = [(sent, started) for sent, queued, started in seen if 0 < sent < 64]
    assert mid, f"no mid-send observation in {seen}"
    assert any(started is not None and started < last_pk for _, started in mid)
    assert set(PushDelivery.objects.values_list("status", flat=True)) == {"sent"}
    assert DeliveryClaim.objects.count() == 0  # given back once everything is written
    stats = sim.stats(tokens=True)["fcm"]
    assert (stats["accepted"], stats["duplicates"]) == (64, 0)


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_so_a_sweep_takes_nothing_from_a_live_worker(sim, settings):
    """The whole sub-batch takes several leases; renewals keep the sweeper off it."""
    settings.HERALD_FCM_CONCURRENCY = 2
    settings.HERALD_CLAIM_RENEW_SECONDS = 0.1
    settings.HERALD_CLAIM_LEASE_SECONDS = 1
    sim.configure({"fcm": {"latency_ms": 100}})  # 30 rows, 2 at a time: ~1.5 s
    project = wire(ProjectFactory(), sim)
    campaign, _ = _rows(project, "fcm", 30)

    def look() -> tuple[list[Any], Any]:
        closed = deliveries_expire_claims()  # the sweeper, as often as it likes
        return closed, DeliveryClaim.objects.values_list("renewed_at", flat=True).first()

    outcome, seen = _send_watched(project, campaign, look)

    assert outcome.sent == 30
    assert all(closed == [] for closed, _ in seen)
    renewals = {renewed for _, renewed in seen if renewed is not None}
    assert len(renewals) >= 5
    assert max(renewals) - min(renewals) > timedelta(seconds=1)  # longer than one lease
    assert set(PushDelivery.objects.values_list("status", flat=True)) == {"sent"}
    assert sim.stats()["fcm"]["duplicates"] == 0


def _dead_claim(campaign, rows, *, guarantee: str, started_through: int) -> uuid.UUID:
    """What a SIGKILLed worker leaves: rows claimed, the first `started_through`
    admitted, one of them recorded, and a lease last renewed a while ago."""
    claim = uuid.uuid4()
    long_ago = timezone.now() - timedelta(minutes=5)
    PushDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(
        claim=claim, claimed_at=long_ago, attempts=1
    )
    PushDelivery.objects.filter(pk=rows[0].pk).update(status="sent", sent_at=long_ago)
    DeliveryClaim.objects.create(
        id=claim,
        campaign=campaign,
        run=1,
        guarantee=guarantee,
        started={"apns": rows[started_through - 1].pk},
        claimed_at=long_ago,
        renewed_at=long_ago,
    )
    return claim


def _state(rows) -> list[tuple[str, str, bool, int]]:
    by_pk = {
        d.pk: (d.status, d.error_message, d.claim is not None, d.attempts)
        for d in PushDelivery.objects.filter(pk__in=[r.pk for r in rows])
    }
    return [by_pk[r.pk] for r in rows]


@pytest.mark.django_db
def test_an_expired_claim_leaves_admitted_rows_unknown_and_requeues_the_rest(settings):
    settings.HERALD_CLAIM_LEASE_SECONDS = 30
    project = ProjectFactory()
    campaign, rows = _rows(project, "apns", 6)
    claim = _dead_claim(campaign, rows, guarantee="at_most_once", started_through=4)
    live_campaign, live_rows = _rows(project, "apns", 2)
    live = uuid.uuid4()
    PushDelivery.objects.filter(campaign=live_campaign).update(
        claim=live, claimed_at=timezone.now() - timedelta(minutes=5), attempts=1
    )
    DeliveryClaim.objects.create(
        id=live,
        campaign=live_campaign,
        run=1,
        guarantee="at_most_once",
        started={"apns": live_rows[-1].pk},
        claimed_at=timezone.now() - timedelta(minutes=5),
        renewed_at=timezone.now(),  # renewed just now: a slow, living worker
    )

    assert deliveries_expire_claims() == [
        ExpiredClaim(campaign.pk, 1, unknown=3, resent=0, released=2)
    ]

    assert _state(rows) == [
        ("sent", "", True, 1),  # recorded before the crash: kept
        ("unknown", UNKNOWN_OUTCOME, True, 1),
        ("unknown", UNKNOWN_OUTCOME, True, 1),
        ("unknown", UNKNOWN_OUTCOME, True, 1),
        ("queued", "", False, 0),  # never started: back in the queue, attempt undone
        ("queued", "", False, 0),
    ]
    assert list(DeliveryClaim.objects.values_list("id", flat=True)) == [live]
    assert _state(live_rows) == [("queued", "", True, 1)] * 2
    assert not DeliveryClaim.objects.filter(pk=claim).exists()
    assert deliveries_expire_claims() == []  # nothing left to close


@pytest.mark.django_db
def test_at_least_once_requeues_admitted_rows_and_they_are_sent_with_one_collapse_id(sim):
    project = wire(ProjectFactory(delivery_guarantee="at_least_once"), sim)
    campaign, rows = _rows(project, "apns", 5)
    _dead_claim(campaign, rows, guarantee="at_least_once", started_through=3)

    assert deliveries_expire_claims() == [
        ExpiredClaim(campaign.pk, 1, unknown=0, resent=2, released=2)
    ]
    assert _state(rows) == [
        ("sent", "", True, 1),
        ("queued", RESENDING, False, 1),  # may have reached the device: an attempt
        ("queued", RESENDING, False, 1),
        ("queued", "", False, 0),
        ("queued", "", False, 0),
    ]

    outcome = deliveries_send(
        project=project,
        content=campaign_content(campaign),
        rows=PushDelivery.objects.filter(campaign=campaign),
    )

    assert (outcome.attempted, outcome.sent) == (4, 4)
    assert _state(rows)[1:] == [("sent", "", True, 2)] * 2 + [("sent", "", True, 1)] * 2
    stats = sim.stats(tokens=True)["apns"]
    assert sorted(stats["tokens"]) == sorted(r.token.token for r in rows[1:])
    # Every push of the run carries the campaign's collapse id, so a device that got
    # the first copy of a re-sent push replaces it instead of showing two.
    assert stats["collapse_ids"] == {f"c-{campaign.pk}": 4}
