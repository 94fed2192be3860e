"""Scheduling: one-shot, recurring and local-time campaigns (docs/scheduling.md).

The database decides what fires; the broker and beat only wake workers up:

* `fire_at` is when the next run starts; `schedule_version` is bumped on every
  schedule change. Firing is one conditional UPDATE on (status=scheduled, version,
  fire_at <= now), so a stale or duplicated wake-up does nothing.
* Wake-ups: an ETA task enqueued only when the campaign is due within the ETA
  window (well inside Redis' visibility timeout), the periodic sweeper, and for
  recurring campaigns their django-celery-beat entry. Any of them may be lost.
* A recurring campaign is `scheduled` between runs; when a run finishes, the next
  occurrence is computed from its recurrence (in its time zone) and armed.
* Pausing a recurring campaign's beat entry in the admin pauses the campaign.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from campaigns import queue, runs
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.recurrence import next_occurrence
from core.audit import SCHEDULER, audit_record
from core.errors import InvalidInput
from delivery.policy import local_time_fire_at

logger = logging.getLogger("herald.scheduling")

WAKE_RECURRING_TASK = "campaigns.wake_recurring_campaign"


def plan_schedule(campaign: PushCampaign, *, now: datetime) -> None:
    """Set status, fire_at, scheduled_at (recurring) and the local wall clock.

    A campaign with a recurrence or a scheduled_at is `scheduled`, else `draft`.
    Raises InvalidInput when a recurrence has no occurrence before end_at.
    """
    campaign.local_wall_clock = ""
    if campaign.recurrence:
        anchor = campaign.scheduled_at or now
        first = next_occurrence(
            campaign.recurrence, after=anchor - timedelta(microseconds=1), anchor=anchor
        )
        if campaign.end_at is not None and first >= campaign.end_at:
            raise InvalidInput(
                "The recurrence has no occurrence before end_at.", details={"field": "end_at"}
            )
        campaign.recurrence_anchor = anchor
        campaign.scheduled_at = campaign.fire_at = first
        campaign.status = CampaignStatus.SCHEDULED
    elif campaign.scheduled_at is not None:
        campaign.recurrence_anchor = None
        campaign.status = CampaignStatus.SCHEDULED
        campaign.fire_at = campaign.scheduled_at
        if campaign.deliver_in_user_timezone:
            wall_clock = campaign.scheduled_at.replace(tzinfo=None)
            campaign.local_wall_clock = wall_clock.isoformat()
            campaign.fire_at = max(now, local_time_fire_at(wall_clock))
    else:
        campaign.recurrence_anchor = None
        campaign.status = CampaignStatus.DRAFT
        campaign.fire_at = None


def arm_if_due(campaign_id: uuid.UUID) -> None:
    """Enqueue the ETA wake-up if the campaign comes due within the ETA window.

    Raises queue.EnqueueFailed. Campaigns further out are armed by the sweeper.
    """
    window = timedelta(seconds=settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS)
    campaign = PushCampaign.objects.select_related("periodic_task").get(pk=campaign_id)
    if campaign.status != CampaignStatus.SCHEDULED or campaign.fire_at is None:
        return
    if campaign.fire_at - timezone.now() > window or is_paused(campaign):
        return
    version = campaign.schedule_version
    queue.enqueue_fire(campaign.id, version, campaign.fire_at)
    PushCampaign.objects.filter(pk=campaign.id, schedule_version=version).update(
        armed_version=version
    )


def is_paused(campaign: PushCampaign) -> bool:
    task = campaign.periodic_task
    return task is not None and not task.enabled


def campaign_fire_scheduled(*, campaign_id: uuid.UUID, version: int) -> bool:
    """scheduled -> sending if still at `version`, due and not paused.

    Called by the ETA wake-up, beat and the sweeper; one of any number of racing
    callers wins the conditional UPDATE. Returns whether this call fired.
    """
    with transaction.atomic():
        paused = PushCampaign.objects.filter(
            pk=campaign_id, periodic_task__isnull=False, periodic_task__enabled=False
        ).exists()
        if paused:
            return False
        recurrence = (
            PushCampaign.objects.filter(pk=campaign_id).values_list("recurrence", flat=True).first()
        )
        now = timezone.now()
        trigger = CampaignRun.Trigger.RECURRENCE if recurrence else CampaignRun.Trigger.SCHEDULE
        campaign = runs.run_begin(
            campaign_id=campaign_id,
            allowed=Q(status=CampaignStatus.SCHEDULED, schedule_version=version, fire_at__lte=now),
            trigger=trigger,
            now=now,
        )
        if campaign is None:
            return False
        audit_record(
            action="campaign.sent",
            project_id=campaign.project_id,
            obj=campaign,
            changes={"run": campaign.last_run_number, "trigger": str(trigger)},
            actor=SCHEDULER,
        )
    runs.run_launch(campaign)
    return True


def campaign_wake(*, campaign_id: uuid.UUID) -> bool:
    """A wake-up without a version (beat): fire if due, else arm the ETA."""
    campaign = PushCampaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
        return False
    if campaign.fire_at is not None and campaign.fire_at <= timezone.now():
        return campaign_fire_scheduled(campaign_id=campaign_id, version=campaign.schedule_version)
    arm_if_due(campaign_id)
    return False


def campaign_after_run(*, campaign: PushCampaign, now: datetime) -> dict[str, Any]:
    """The campaign fields once its current run is over (called by the finisher).

    One-shot: `sent`. Recurring: back to `scheduled` at the next occurrence (after
    the run's own occurrence and after now, so a long outage fires once, not in a
    burst), or `sent` when no occurrence is left before end_at.
    """
    if campaign.recurrence and campaign.recurrence_anchor is not None:
        after = max(campaign.scheduled_at or now, now)
        upcoming = next_occurrence(
            campaign.recurrence, after=after, anchor=campaign.recurrence_anchor
        )
        if campaign.end_at is None or upcoming < campaign.end_at:
            return {
                "status": CampaignStatus.SCHEDULED,
                "scheduled_at": upcoming,
                "fire_at": upcoming,
                "schedule_version": F("schedule_version") + 1,
            }
    return {"status": CampaignStatus.SENT, "completed_at": now}


def sync_periodic_task(campaign_id: uuid.UUID) -> None:
    """Mirror a recurring campaign in django-celery-beat (visible, pausable).

    The beat entry only wakes the campaign up; `fire_at` decides. It is removed
    when the campaign stops recurring or is deleted, and disabled when it ends.
    """
    campaign = PushCampaign.objects.select_related("periodic_task").filter(pk=campaign_id).first()
    if campaign is None:
        return
    task = campaign.periodic_task
    if not campaign.recurrence:
        if task is not None:
            PushCampaign.objects.filter(pk=campaign.pk).update(periodic_task=None)
            task.delete()
        return
    schedule = _beat_schedule(campaign.recurrence)
    defaults: dict[str, Any] = {
        "task": WAKE_RECURRING_TASK,
        "args": json.dumps([str(campaign.pk)]),
        "interval": schedule if isinstance(schedule, IntervalSchedule) else None,
        "crontab": schedule if isinstance(schedule, CrontabSchedule) else None,
        "description": f"Wakes recurring campaign '{campaign.name}'. Disable to pause it.",
        "expires": campaign.end_at,
    }
    if campaign.status not in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
        defaults["enabled"] = False
    task, _ = PeriodicTask.objects.update_or_create(
        name=f"campaign {campaign.pk}", defaults=defaults
    )
    if campaign.periodic_task_id != task.pk:
        PushCampaign.objects.filter(pk=campaign.pk).update(periodic_task=task)


def _beat_schedule(recurrence: dict[str, Any]) -> IntervalSchedule | CrontabSchedule:
    if "every_seconds" in recurrence:
        schedule, _ = IntervalSchedule.objects.get_or_create(
            every=int(recurrence["every_seconds"]), period=IntervalSchedule.SECONDS
        )
        return schedule
    tz = recurrence.get("timezone") or "UTC"
    if "cron" in recurrence:
        minute, hour, day_of_month, month, day_of_week = recurrence["cron"].split()
    else:
        hour, minute = (str(int(p)) for p in recurrence.get("at", "00:00").split(":"))
        every = int(recurrence["every_days"])
        day_of_month, month, day_of_week = ("*" if every == 1 else f"*/{every}"), "*", "*"
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
        timezone=tz,
    )
    return crontab


def schedules_live() -> QuerySet[PushCampaign]:
    """Scheduled campaigns the sweeper fires when their `fire_at` comes (not paused);
    filtered on fire_at it reads the (status, fire_at) index."""
    return PushCampaign.objects.filter(status=CampaignStatus.SCHEDULED).exclude(
        periodic_task__enabled=False
    )


def oldest_due_schedule(*, now: datetime) -> datetime | None:
    """The `fire_at` of the longest-overdue live schedule (None: nothing is due):
    how far the sweeper is behind (the metrics' schedule lag)."""
    due = schedules_live().filter(fire_at__lte=now).order_by("fire_at")
    return due.values_list("fire_at", flat=True).first()


def campaigns_sweep_scheduled() -> dict[str, int]:
    """Fire every due scheduled campaign and arm those coming due within the window.

    Runs periodically (django-celery-beat); the database, not the broker, decides
    what fires, so a lost or duplicated wake-up changes nothing.
    """
    now = timezone.now()
    fired = armed = 0
    live = schedules_live()
    for campaign_id, version in live.filter(fire_at__lte=now).values_list("id", "schedule_version"):
        try:
            fired += campaign_fire_scheduled(campaign_id=campaign_id, version=version)
        except queue.EnqueueFailed:
            continue  # failed with the reason on the campaign
    window = now + timedelta(seconds=settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS)
    upcoming = live.filter(fire_at__lte=window).exclude(armed_version=F("schedule_version"))
    for campaign_id in upcoming.values_list("id", flat=True):
        try:
            arm_if_due(campaign_id)
            armed += 1
        except queue.EnqueueFailed:
            break  # broker down: the next sweep tries again; due ones still fire
    return {"fired": fired, "armed": armed}
