"""Scheduled and recurring campaigns with real workers, real beat and the simulators.

The guarantees (docs/scheduling.md): a schedule fires once, at (not before) its
time; a stale wake-up (rescheduled, deleted, cancelled) does nothing; a lost
wake-up (broker flushed, worker killed) is made good by the sweeper; ETA and
sweeper racing still make one run. Each test's assertions are about runs and
per-token simulator counts, not about timing.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from campaigns import services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.validation import validate_create, validate_update
from delivery.models import PushDelivery
from tests.e2e.conftest import drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project, _tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def iso(when) -> str:
    return when.isoformat().replace("+00:00", "Z")


def schedule(project, seconds: float, **extra):
    at = timezone.now() + timedelta(seconds=seconds)
    fields = validate_create({"title": "Hi", "body": "There", "scheduled_at": iso(at), **extra})
    return services.campaign_create(project=project, fields=fields)


def sweeper_every_second() -> None:
    """What campaigns/periodic.py declares, at a test-friendly interval (start_beat
    applies the same through HERALD_SWEEP_INTERVAL_SECONDS)."""
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name="herald: sweep campaigns", defaults={"task": "campaigns.sweep", "interval": every}
    )


def runs(campaign) -> list[CampaignRun]:
    return list(CampaignRun.objects.filter(campaign_id=campaign.pk).order_by("number"))


def status(campaign) -> str:
    return PushCampaign.objects.values_list("status", flat=True).get(pk=campaign.pk)


@pytest.fixture
def setup(simulators):
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    tokens = _tokens(project, "apns", 20) + _tokens(project, "fcm", 20)
    return project, tokens


def assert_each_token_once(simulators, tokens, times: int = 1) -> None:
    accepted = _accepted(simulators)["tokens"]
    assert {accepted[t] for t in tokens} == {times}
    assert sum(accepted.values()) == len(tokens) * times


def test_fires_once_at_its_time_by_eta_alone(setup, simulators, start_worker):
    project, tokens = setup
    start_worker()  # no beat: only the ETA wake-up can fire it
    campaign = schedule(project, 4)
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=60)
    [run] = runs(campaign)
    assert run.trigger == "schedule" and run.occurrence == campaign.scheduled_at
    assert run.started_at >= campaign.scheduled_at
    assert_each_token_once(simulators, tokens)


def test_rescheduled_fires_only_at_the_new_time(setup, simulators, start_worker):
    project, tokens = setup
    start_worker()
    campaign = schedule(project, 3)
    later = timezone.now() + timedelta(seconds=9)
    services.campaign_update(
        project=project,
        campaign_id=campaign.id,
        fields=validate_update({"scheduled_at": iso(later)}),
    )
    time.sleep(5)  # the stale ETA (t+3 s) has come and gone
    assert status(campaign) == CampaignStatus.SCHEDULED and runs(campaign) == []
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=60)
    [run] = runs(campaign)
    assert run.started_at >= later
    assert_each_token_once(simulators, tokens)


def test_deleted_or_cancelled_never_fires(setup, simulators, start_worker, start_beat):
    project, _ = setup
    sweeper_every_second()
    start_worker()
    start_beat()
    deleted = schedule(project, 3)
    cancelled = schedule(project, 3)
    services.campaign_delete(project=project, campaign_id=deleted.id)
    services.campaign_cancel(project=project, campaign_id=cancelled.id)
    time.sleep(7)  # both times passed; ETA tasks and several sweeps ran
    assert not PushCampaign.objects.filter(pk=deleted.pk).exists()
    assert status(cancelled) == CampaignStatus.CANCELLED and runs(cancelled) == []
    assert PushDelivery.objects.count() == 0
    stats = simulators.stats()
    assert stats["apns"]["requests_total"] == stats["fcm"]["requests_total"] == 0


def test_lost_wake_up_broker_flushed_is_fired_once_by_the_sweeper(
    setup, simulators, start_worker, start_beat
):
    project, tokens = setup
    campaign = schedule(project, 2)  # ETA task enqueued while no worker runs
    assert PushCampaign.objects.get(pk=campaign.pk).armed_version == 1
    drain_broker()  # ... and lost
    sweeper_every_second()
    start_worker()
    start_beat()
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=60)
    assert len(runs(campaign)) == 1
    assert_each_token_once(simulators, tokens)


def test_worker_killed_holding_the_eta_task_still_fires_once(
    setup, simulators, start_worker, start_beat
):
    project, tokens = setup
    first = start_worker()
    campaign = schedule(project, 6)
    time.sleep(2)  # the worker has taken the ETA task and holds it until due
    first.kill()
    sweeper_every_second()
    start_worker()
    start_beat()
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=60)
    assert len(runs(campaign)) == 1
    assert_each_token_once(simulators, tokens)


def test_eta_and_sweeper_racing_make_one_run(setup, simulators, start_worker, start_beat):
    project, tokens = setup
    sweeper_every_second()
    start_worker(concurrency=3)
    start_beat()
    campaigns = [schedule(project, 3) for _ in range(3)]
    assert wait_for(lambda: all(status(c) == CampaignStatus.SENT for c in campaigns), timeout=60)
    assert [len(runs(c)) for c in campaigns] == [1, 1, 1]
    assert_each_token_once(simulators, tokens, times=3)


def test_recurring_campaign_runs_until_end_at_then_is_sent(
    setup, simulators, start_worker, start_beat
):
    project, tokens = setup
    sweeper_every_second()
    start_worker()
    start_beat()
    start = timezone.now() + timedelta(seconds=2)
    campaign = schedule(
        project,
        2,
        recurrence={"every_seconds": 10},
        end_at=iso(start + timedelta(seconds=25)),
    )
    assert campaign.status == CampaignStatus.SCHEDULED
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=90)
    made = runs(campaign)
    assert [(r.number, r.trigger, r.status) for r in made] == [
        (n, "recurrence", "sent") for n in (1, 2, 3)
    ]
    first = campaign.scheduled_at
    assert first is not None
    assert [r.occurrence for r in made] == [first + timedelta(seconds=10 * i) for i in range(3)]
    for run in made:
        assert run.occurrence is not None and run.started_at >= run.occurrence
        assert run.stats == {
            "targeted": 40,
            "sent": 40,
            "failed": 0,
            "invalid_tokens": 0,
            "skipped": 0,
            "unknown": 0,
            "pending": 0,
        }
        assert PushDelivery.objects.filter(campaign=campaign, run=run.number).count() == 40
    assert_each_token_once(simulators, tokens, times=3)


def test_throttled_campaign_never_exceeds_its_rate(simulators, start_worker):
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    # 1,600 pushes at 1,500 a minute take just over a minute: every window is tested.
    tokens = _tokens(project, "apns", 800) + _tokens(project, "fcm", 800)
    rate = 1500
    start_worker()
    fields = validate_create({"title": "Hi", "body": "There", "throttle_per_minute": rate})
    campaign = services.campaign_create(project=project, fields=fields)
    services.campaign_send(project=project, campaign_id=campaign.id)
    assert wait_for(lambda: status(campaign) == CampaignStatus.SENT, timeout=240, every=1)
    sent_at = sorted(
        at
        for at in PushDelivery.objects.filter(campaign=campaign, status="sent").values_list(
            "sent_at", flat=True
        )
        if at is not None
    )
    assert len(sent_at) == len(tokens)
    # Sliding 60 s windows starting at every send: never more than the rate.
    window = timedelta(seconds=60)
    j = 0
    busiest = 0
    for i, start in enumerate(sent_at):
        while j < len(sent_at) and sent_at[j] < start + window:
            j += 1
        busiest = max(busiest, j - i)
    assert busiest <= rate
    assert busiest >= rate * 0.8  # it did use its rate, not a trickle
    assert_each_token_once(simulators, tokens)


def test_beat_applies_the_sweep_interval_setting_when_it_starts(start_beat):
    """HERALD_SWEEP_INTERVAL_SECONDS is live: not frozen at migrate time."""
    PeriodicTask.objects.update_or_create(
        name="herald: refresh segment counts",
        defaults={
            "task": "segments.refresh_segment_counts",
            "interval": IntervalSchedule.objects.get_or_create(every=9, period="hours")[0],
            "enabled": False,
        },
    )

    start_beat(env={"HERALD_SWEEP_INTERVAL_SECONDS": "7"})

    def schedules():
        return sorted(
            PeriodicTask.objects.filter(name__startswith="herald: ").values_list(
                "name", "task", "interval__every", "interval__period", "enabled"
            )
        )

    expected = [
        ("herald: expire idempotency keys", "core.expire_idempotency_keys", 1, "hours", True),
        ("herald: purge old audit events", "core.purge_audit_events", 1, "days", True),
        ("herald: purge old events", "segments.purge_events", 1, "days", True),
        ("herald: refresh segment counts", "segments.refresh_segment_counts", 15, "minutes", False),
        ("herald: sweep campaigns", "campaigns.sweep", 7, "seconds", True),
    ]
    assert wait_for(lambda: schedules() == expected, timeout=60), schedules()
