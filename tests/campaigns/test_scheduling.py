"""Scheduling and per-delivery policy, against the database and the simulators.

Time is frozen with time-machine where only the database is involved; where pushes
really go out (the simulators check JWT times) the rules are set relative to now.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns import runs, scheduling, sending, services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.validation import validate_create
from core.errors import InvalidInput
from delivery.models import PushDelivery
from delivery.policy import DeliveryPolicy
from delivery.services import deliveries_send
from tests.factories import AppUserFactory, CampaignFactory, PushTokenFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def create(project, **fields):
    payload = {"title": "Hi", "body": "There", **fields}
    return services.campaign_create(project=project, fields=validate_create(payload))


# --- planning -------------------------------------------------------------------


@time_machine.travel(T0, tick=False)
def test_recurring_campaign_is_scheduled_at_its_first_occurrence_and_mirrored_in_beat(api):
    campaign = create(api.project, recurrence={"cron": "30 9 * * *", "timezone": "Europe/Paris"})
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.scheduled_at == campaign.fire_at == datetime(2026, 6, 2, 7, 30, tzinfo=UTC)
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.enabled and task.task == "campaigns.wake_recurring_campaign"
    assert json.loads(task.args) == [str(campaign.id)]
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == (
        "30",
        "9",
        "Europe/Paris",
    )


@time_machine.travel(T0, tick=False)
def test_interval_recurrence_starts_at_scheduled_at(api):
    start = "2026-06-01T13:00:00Z"
    campaign = create(api.project, recurrence={"every_seconds": 600}, scheduled_at=start)
    assert campaign.fire_at == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).interval.every == 600


@time_machine.travel(T0, tick=False)
def test_recurrence_without_an_occurrence_before_end_at_is_refused(api):
    with pytest.raises(InvalidInput) as caught:
        create(
            api.project,
            recurrence={"every_days": 1, "at": "09:00", "timezone": "UTC"},
            end_at="2026-06-01T13:00:00Z",
        )
    assert caught.value.details == {"field": "end_at"}
    assert (
        PushCampaign.objects.count() == 0
        and PeriodicTask.objects.filter(name__startswith="campaign ").count() == 0
    )


def test_recurrence_and_local_time_together_are_refused():
    with pytest.raises(InvalidInput) as caught:
        validate_create(
            {
                "title": "a",
                "body": "b",
                "recurrence": {"every_seconds": 60},
                "deliver_in_user_timezone": True,
            }
        )
    assert caught.value.details == {"field": "deliver_in_user_timezone"}


@time_machine.travel(T0, tick=False)
def test_local_time_campaign_fires_when_the_earliest_zone_gets_there(api):
    campaign = create(
        api.project, scheduled_at="2026-06-03T09:00:00+02:00", deliver_in_user_timezone=True
    )
    assert campaign.local_wall_clock == "2026-06-03T09:00:00"
    assert campaign.scheduled_at == datetime(2026, 6, 3, 7, 0, tzinfo=UTC)
    assert campaign.fire_at == datetime(2026, 6, 2, 19, 0, tzinfo=UTC)


@time_machine.travel(T0, tick=False)
def test_patching_the_recurrence_off_and_the_time_away_demotes_to_draft(api):
    campaign = create(api.project, recurrence={"every_seconds": 60})
    updated = services.campaign_update(
        project=api.project,
        campaign_id=campaign.id,
        fields={"recurrence": None, "scheduled_at": None},
    )
    assert updated.status == CampaignStatus.DRAFT and updated.fire_at is None
    assert updated.schedule_version == campaign.schedule_version + 1
    assert PeriodicTask.objects.filter(name__startswith="campaign ").count() == 0


# --- recurring runs ---------------------------------------------------------------


def test_each_occurrence_is_a_run_then_the_campaign_ends_sent(api, broker):
    with time_machine.travel(T0, tick=False) as clock:
        campaign = create(
            api.project,
            recurrence={"every_seconds": 60},
            scheduled_at="2026-06-01T12:01:00Z",
            end_at="2026-06-01T12:03:30Z",
        )
        fired_at = []
        for _ in range(4):
            clock.move_to(campaign.fire_at + timedelta(seconds=1))
            version = campaign.schedule_version
            assert scheduling.campaign_fire_scheduled(campaign_id=campaign.id, version=version)
            # A stale or duplicate wake-up for the same occurrence does nothing.
            assert not scheduling.campaign_fire_scheduled(campaign_id=campaign.id, version=version)
            campaign.refresh_from_db()
            fired_at.append(campaign.scheduled_at)
            sending.run_fan_out(campaign_id=campaign.id, run=campaign.current_run)
            campaign.refresh_from_db()
            if campaign.status == CampaignStatus.SENT:
                break
            assert campaign.status == CampaignStatus.SCHEDULED
    assert fired_at == [datetime(2026, 6, 1, 12, minute, tzinfo=UTC) for minute in (1, 2, 3)]
    runs = CampaignRun.objects.filter(campaign=campaign).order_by("number")
    assert [(r.number, r.trigger, r.status, r.occurrence) for r in runs] == [
        (n, "recurrence", "sent", at) for n, at in enumerate(fired_at, start=1)
    ]
    assert campaign.status == CampaignStatus.SENT
    assert not PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled
    fans = [t for t in broker.drain() if t.name == "campaigns.fan_out_campaign"]
    assert [t.args for t in fans] == [[str(campaign.id), n] for n in (1, 2, 3)]


def test_paused_beat_entry_pauses_the_campaign(api, broker):
    with time_machine.travel(T0, tick=False) as clock:
        campaign = create(api.project, recurrence={"every_seconds": 60})
        PeriodicTask.objects.filter(pk=campaign.periodic_task_id).update(enabled=False)
        clock.move_to(T0 + timedelta(minutes=5))
        assert not scheduling.campaign_fire_scheduled(
            campaign_id=campaign.id, version=campaign.schedule_version
        )
        assert scheduling.campaigns_sweep_scheduled() == {"fired": 0, "armed": 0}
        PeriodicTask.objects.filter(pk=campaign.periodic_task_id).update(enabled=True)
        assert scheduling.campaigns_sweep_scheduled()["fired"] == 1
    assert PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING


# --- per-delivery policy ------------------------------------------------------------


def queued_rows(project, count, *, campaign=None, **token_fields):
    campaign = campaign or CampaignFactory(project=project, status=CampaignStatus.SENDING)
    rows = []
    for _ in range(count):
        token = PushTokenFactory(project=project, **token_fields)
        rows.append(
            PushDelivery.objects.create(
                campaign=campaign,
                run=1,
                token=token,
                app_user=token.app_user,
                provider=token.provider,
            )
        )
    return campaign, PushDelivery.objects.filter(pk__in=[r.pk for r in rows])


def content():
    from delivery.payloads import PushContent

    return PushContent(title="t", body="b")


def test_expired_rows_are_skipped_not_sent(project, sim):
    _, rows = queued_rows(project, 3)
    before = sim.stats()["apns"]["requests_total"]
    policy = DeliveryPolicy(deadline=timezone.now() - timedelta(seconds=1))
    outcome = deliveries_send(project=project, content=content(), rows=rows, policy=policy)
    assert (outcome.attempted, outcome.skipped) == (0, 3)
    assert set(rows.values_list("status", "error_message")) == {("skipped", "expired")}
    assert sim.stats()["apns"]["requests_total"] == before


def _window_around_now(tz_offset_minutes: int = 0) -> tuple[str, str]:
    now = timezone.now() + timedelta(minutes=tz_offset_minutes)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def test_quiet_hours_defer_to_the_end_of_the_window_in_the_users_zone(project, sim):
    start, end = _window_around_now()  # quiet now in UTC
    user = AppUserFactory(project=project, attributes={"timezone": "UTC"})
    _, rows = queued_rows(project, 2, app_user=user)
    policy = DeliveryPolicy(quiet_hours={"start": start, "end": end, "action": "defer"})
    outcome = deliveries_send(project=project, content=content(), rows=rows, policy=policy)
    assert (outcome.attempted, outcome.skipped) == (0, 0)
    expected_end = (timezone.now() + timedelta(hours=1)).replace(second=0, microsecond=0)
    assert {r.status for r in rows} == {"queued"}
    assert {r.not_before for r in rows} == {expected_end}
    # A user in a zone where it is not quiet now gets the push.
    tokyo = AppUserFactory(project=project, attributes={"timezone": "Asia/Tokyo"})
    _, other = queued_rows(project, 1, app_user=tokyo)
    outcome = deliveries_send(project=project, content=content(), rows=other, policy=policy)
    assert outcome.sent == 1


def test_quiet_hours_skip(project, sim):
    start, end = _window_around_now()
    user = AppUserFactory(project=project, attributes={"timezone": "Etc/UTC"})
    _, rows = queued_rows(project, 2, app_user=user)
    policy = DeliveryPolicy(quiet_hours={"start": start, "end": end, "action": "skip"})
    outcome = deliveries_send(project=project, content=content(), rows=rows, policy=policy)
    assert outcome.skipped == 2
    assert set(rows.values_list("status", "error_message")) == {("skipped", "quiet_hours")}


def test_frequency_cap_counts_distinct_campaign_runs_per_user(project, sim):
    user = AppUserFactory(project=project)
    _, earlier_rows = queued_rows(project, 1, app_user=user)
    earlier_rows.update(status="sent", sent_at=timezone.now() - timedelta(hours=23))
    _, old_rows = queued_rows(project, 1, app_user=user)
    old_rows.update(status="sent", sent_at=timezone.now() - timedelta(hours=25))
    policy = DeliveryPolicy(frequency_cap_per_day=2)
    # Two tokens of the same user in one campaign count once: both are sent.
    _, rows = queued_rows(project, 2, app_user=user)
    outcome = deliveries_send(project=project, content=content(), rows=rows, policy=policy)
    assert outcome.sent == 2
    # A third campaign within 24 h is over the cap for this user only.
    other_user = AppUserFactory(project=project)
    third = CampaignFactory(project=project, status=CampaignStatus.SENDING)
    _, capped = queued_rows(project, 1, campaign=third, app_user=user)
    _, free = queued_rows(project, 1, campaign=third, app_user=other_user)
    outcome = deliveries_send(project=project, content=content(), rows=capped | free, policy=policy)
    assert (outcome.sent, outcome.skipped) == (1, 1)
    assert capped.get().error_message == "frequency_cap" and free.get().status == "sent"


def test_throttle_hands_out_a_twelfth_of_the_rate_and_stops_at_the_rate(project, sim):
    campaign, rows = queued_rows(project, 30)
    policy = DeliveryPolicy(rate_per_minute=24, rate_scope=(campaign.pk, 1))
    first = deliveries_send(project=project, content=content(), rows=rows, policy=policy)
    assert (first.attempted, first.throttled) == (2, True)
    # 22 more claims inside the minute fill the rate exactly; the next is held back.
    held = rows.filter(status="queued").order_by("id")
    ids = list(held.values_list("id", flat=True)[:22])
    PushDelivery.objects.filter(id__in=ids).update(
        status="sent", claimed_at=timezone.now() - timedelta(seconds=30)
    )
    blocked = deliveries_send(project=project, content=content(), rows=held, policy=policy)
    assert (blocked.attempted, blocked.throttled) == (0, True)
    # Once those claims are over a minute old, sending resumes.
    PushDelivery.objects.filter(
        campaign=campaign, status="sent", claimed_at__gt=timezone.now() - timedelta(seconds=60)
    ).update(claimed_at=timezone.now() - timedelta(seconds=61))
    resumed = deliveries_send(project=project, content=content(), rows=held, policy=policy)
    assert resumed.attempted == 2


def test_local_time_rows_wait_for_each_users_wall_clock(project):
    now = timezone.now()
    wall = (now + timedelta(hours=30)).replace(tzinfo=None, second=0, microsecond=0)
    campaign = CampaignFactory(
        project=project,
        status=CampaignStatus.SENDING,
        deliver_in_user_timezone=True,
        local_wall_clock=wall.isoformat(),
        local_time_missed="skip",
        current_run=1,
    )
    CampaignRun.objects.create(campaign=campaign, number=1, trigger="schedule")
    users = {
        tz: AppUserFactory(project=project, attributes={"timezone": tz})
        for tz in ("Asia/Tokyo", "America/Chicago", "Not/AZone")
    }
    for user in users.values():
        PushTokenFactory(project=project, app_user=user)
    sending.run_fan_out(campaign_id=campaign.id, run=1)
    due = dict(
        PushDelivery.objects.filter(campaign=campaign).values_list(
            "app_user__attributes__timezone", "not_before"
        )
    )
    from zoneinfo import ZoneInfo

    def at(tz: str) -> datetime:
        return wall.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)

    assert due == {
        "Asia/Tokyo": at("Asia/Tokyo"),
        "America/Chicago": at("America/Chicago"),
        "Not/AZone": at("UTC"),  # unknown zone -> project default (UTC)
    }
    stats = runs.run_stats(campaign.id, 1)
    assert stats["pending"] == 3 and stats["sent"] == 0
