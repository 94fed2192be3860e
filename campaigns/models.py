"""Push campaigns and their runs.

A campaign's status moves only by conditional UPDATEs in campaigns.services and,
for everything about a run (start, fail, finish), campaigns.runs (DESIGN.md,
"Campaign states"); nothing here changes state on save.
"""

from __future__ import annotations

import uuid

from django.db import models

from core.models import Project

STAT_KEYS = ("targeted", "sent", "failed", "invalid_tokens", "skipped", "unknown", "pending")


def empty_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


# What local-time delivery does for users whose wall-clock time already passed.
LOCAL_TIME_MISSED_CHOICES = [("next_day", "Deliver at that time the next day"), ("skip", "Skip")]


class PushCampaign(models.Model):
    Status = CampaignStatus

    class Priority(models.TextChoices):
        HIGH = "high", "High"
        NORMAL = "normal", "Normal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    title = models.CharField(max_length=500)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    segment = models.ForeignKey(
        "segments.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
    )
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every schedule change: a wake-up task carrying an older version is stale.
    schedule_version = models.PositiveIntegerField(default=0)
    # The schedule_version a wake-up task was last enqueued for (the sweeper arms
    # campaigns that come due within the ETA window and are not armed yet).
    armed_version = models.PositiveIntegerField(default=0)
    # Content and delivery options (validated at create/patch time).
    localizations = models.JSONField(default=dict, blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    # Rich web/Android options (docs/api.md, "Campaign fields"): the web notification
    # icon and monochrome badge image, the notification tag, and the
    # Notifications API's requireInteraction / renotify / vibrate (milliseconds).
    icon = models.URLField(max_length=2000, blank=True)
    web_badge = models.URLField(max_length=2000, blank=True)
    url = models.CharField(max_length=2000, blank=True)
    actions = models.JSONField(default=list, blank=True)
    sound = models.CharField(max_length=200, blank=True)
    badge = models.PositiveIntegerField(null=True, blank=True)
    vibrate = models.JSONField(default=list, blank=True)
    require_interaction = models.BooleanField(default=False)
    renotify = models.BooleanField(default=False)
    tag = models.CharField(max_length=64, blank=True)
    collapse_key = models.CharField(max_length=64, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.HIGH)
    ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    platforms = models.JSONField(default=list, blank=True)
    targeting = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # Conversion goals: [{name, event, filter, window_hours, primary}] (validation.py).
    goals = models.JSONField(default=list, blank=True)
    recurrence = models.JSONField(null=True, blank=True)
    # First occurrence of a recurrence; interval recurrences count from it.
    recurrence_anchor = models.DateTimeField(null=True, blank=True)
    # The django-celery-beat entry that mirrors a recurrence: the operator sees it
    # (and can pause it) in the admin; disabling it pauses the campaign.
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    end_at = models.DateTimeField(null=True, blank=True)
    quiet_hours = models.JSONField(null=True, blank=True)
    deliver_in_user_timezone = models.BooleanField(default=False)
    # With deliver_in_user_timezone: the wall-clock time of scheduled_at as written
    # ("2026-12-01T09:00:00"), and what to do for users whose time already passed.
    local_wall_clock = models.CharField(max_length=32, blank=True)
    local_time_missed = models.CharField(
        max_length=10,
        choices=LOCAL_TIME_MISSED_CHOICES,
        default="next_day",
    )
    # When the next run starts: scheduled_at, or for local-time delivery the moment
    # the earliest time zone (UTC+14) reaches the wall-clock time.
    fire_at = models.DateTimeField(null=True, blank=True)
    throttle_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # A data-only (background) push: no alert, sound or badge (docs/api.md).
    silent = models.BooleanField(default=False)
    # The name is this campaign's alone in its project: set by the compatible front
    # doors whose reference makes names identifiers (campaigns/compat/). The partial
    # unique constraint below settles two concurrent requests with one name; the
    # Herald API leaves it False and keeps allowing repeated names.
    unique_name = models.BooleanField(default=False, editable=False)
    # Bookkeeping.
    # The run the campaign's status and stats follow (sends, schedules, recurrences);
    # explicit pushes are runs of their own that leave it (and the status) alone.
    current_run = models.PositiveIntegerField(default=0)
    # The highest run number given out, explicit runs included (run numbers are
    # unique per campaign).
    last_run_number = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "push_campaigns"
        # core/access.py: what the sender role adds to the editor's.
        permissions = [("send_pushcampaign", "Can send, schedule, cancel and test-push")]
        indexes = [
            models.Index(fields=("project", "-created_at", "-id"), name="campaign_project_created"),
            models.Index(fields=("status", "fire_at"), name="campaign_status_fire_at"),
            # The dashboard's recent campaigns across projects (newest send first).
            models.Index(fields=("-sent_at", "-id"), name="campaign_sent"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=("project", "name"),
                condition=models.Q(unique_name=True),
                name="campaign_unique_name_per_project",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        return self.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


class CampaignRun(models.Model):
    """One occurrence of a campaign: a send, a scheduled fire, a recurrence, a push."""

    class Trigger(models.TextChoices):
        SEND = "send", "Send now"
        SCHEDULE = "schedule", "Scheduled"
        RECURRENCE = "recurrence", "Recurring"
        EXPLICIT = "explicit", "Explicit list"

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    campaign = models.ForeignKey(PushCampaign, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    # The scheduled occurrence this run fired for (scheduled and recurring runs).
    occurrence = models.DateTimeField(null=True, blank=True)
    # Explicit pushes may replace the campaign's data, title, body and silent flag
    # for their run only ("" / null: the campaign's).
    data_override = models.JSONField(null=True, blank=True)
    title_override = models.CharField(max_length=500, blank=True)
    body_override = models.TextField(blank=True)
    # Whether this run's pushes were silent (the campaign's flag, or the explicit
    # push's): analytics leave silent runs out of open rates.
    silent = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    # Counters are bumped with F() by concurrent batch tasks (no row lock) until the
    # run settles; then they are the exact counts of its rows (campaigns.runs).
    targeted = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    invalid_tokens = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Rows whose worker died with the request in flight (at-most-once projects).
    unknown = models.PositiveIntegerField(default=0)
    # True once every delivery row of the run exists (the fan-out has finished).
    fanout_done = models.BooleanField(default=False)
    # Why the run failed; while it is sending, the last error a task of it raised.
    error = models.CharField(max_length=500, blank=True)
    # Sweeper re-drives since the run last made progress (bounded: HERALD_MAX_REDRIVES).
    redrives = models.PositiveIntegerField(default=0)
    # When the counters were recounted from the rows and frozen (no row is queued).
    settled_at = models.DateTimeField(null=True, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "campaign_runs"
        ordering = ("-number",)
        constraints = [
            models.UniqueConstraint(fields=("campaign", "number"), name="run_unique_number")
        ]
        indexes = [
            # Conversions look for the campaigns with a run started recently, explicit
            # pushes included (engagement.goals_by_event); the dashboard reads runs by day.
            models.Index(fields=("started_at",), name="run_started_at"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} run {self.number}"

    @property
    def stats(self) -> dict[str, int]:
        done = self.sent + self.failed + self.invalid_tokens + self.skipped + self.unknown
        return {
            "targeted": self.targeted,
            "sent": self.sent,
            "failed": self.failed,
            "invalid_tokens": self.invalid_tokens,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "pending": max(0, self.targeted - done),
        }


# --- engagement: what users did after a push (campaigns/engagement.py writes these) ---


def _counted_campaign() -> models.ForeignKey[PushCampaign]:
    """The campaign of an engagement counting row: deleted with it by Django's delete
    collector, but no database FK, whose check would cost each counted row a lookup
    (docs/decisions.md, "Engagement and conversions")."""
    return models.ForeignKey(
        PushCampaign,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )


class DeliveryEngagement(models.Model):
    """A delivery that was opened (and whether it was clicked): one row per delivery,
    so its first open and its first click count once however often they are reported."""

    delivery_id = models.BigIntegerField(primary_key=True)
    campaign = _counted_campaign()
    run = models.PositiveIntegerField()
    opened_at = models.DateTimeField()
    clicked = models.BooleanField(default=False)

    class Meta:
        db_table = "campaign_delivery_engagement"
        # Leads with campaign: deleting a campaign finds its rows through it.
        indexes = [models.Index(fields=("campaign", "run"), name="engagement_campaign_run")]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} opened"


class DeliveryClick(models.Model):
    """One (delivery, action) click, counted once."""

    campaign = _counted_campaign()
    delivery_id = models.BigIntegerField()
    action_id = models.CharField(max_length=64)

    class Meta:
        db_table = "campaign_delivery_clicks"
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "delivery_id", "action_id"), name="click_unique_action"
            )
        ]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} clicked {self.action_id}"


class Conversion(models.Model):
    """A user converted for one goal of one run: counted once per (run, goal, user)."""

    campaign = _counted_campaign()
    run = models.PositiveIntegerField()
    goal_index = models.PositiveSmallIntegerField()
    app_user_id = models.UUIDField()
    # The delivery the conversion is attributed to and the event that made it.
    delivery_id = models.BigIntegerField()
    event_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "campaign_conversions"
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "run", "goal_index", "app_user_id"),
                name="conversion_unique_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} run {self.run} goal {self.goal_index}: {self.app_user_id}"


class EngagementMetric(models.TextChoices):
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked (deliveries)"
    ACTION = "action", "Clicks per action"
    CONVERTED = "converted", "Converted (per goal)"


class EngagementBucket(models.Model):
    """Per-minute rollup: how many of `metric` happened in `minute` for a run, by
    provider and platform (and action id / goal index in `key`). Analytics read these
    rows only (docs/decisions.md, "Engagement rollups")."""

    campaign = _counted_campaign()
    run = models.PositiveIntegerField()
    minute = models.DateTimeField()
    metric = models.CharField(max_length=16, choices=EngagementMetric.choices)
    key = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=8)
    platform = models.CharField(max_length=8)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "campaign_engagement_buckets"
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "run", "minute", "metric", "key", "provider", "platform"),
                name="engagement_bucket_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.key} {self.minute:%Y-%m-%d %H:%M}: {self.count}"
