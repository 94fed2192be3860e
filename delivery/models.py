"""Device tokens and the per-token delivery log.

Delivery knows no campaign states: a PushDelivery points at its campaign only so
results can be listed and counted per campaign and run (DESIGN.md, "Shape").
"""

from __future__ import annotations

from django.db import models

from core.models import DeliveryGuarantee, Project


class Provider(models.TextChoices):
    APNS = "apns", "APNs"
    FCM = "fcm", "FCM"
    # Standard Web Push (RFC 8030/8291/8292): the token is the subscription endpoint.
    WEBPUSH = "webpush", "Web Push"


class Platform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    WEB = "web", "Web"


class PushToken(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="push_tokens")
    app_user = models.ForeignKey(
        "segments.AppUser",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="push_tokens",
    )
    # APNs/FCM: the device token. Web push: the subscription's endpoint URL, which
    # push services make up to ~2 KB long (still under the btree limit of the
    # unique index below; varchar widening rewrites nothing in PostgreSQL).
    token = models.CharField(max_length=2048)
    provider = models.CharField(max_length=8, choices=Provider.choices)
    platform = models.CharField(max_length=8, choices=Platform.choices)
    active = models.BooleanField(default=True)
    locale = models.CharField(max_length=35, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    app_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_registered_at = models.DateTimeField(auto_now_add=True)
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalid_reason = models.CharField(max_length=200, blank=True)
    # Web push only: the subscription's {"p256dh", "auth"} (base64url, as the browser
    # gave them); null for APNs and FCM. `auth` is a secret: never serialized.
    keys = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "push_tokens"
        constraints = [
            models.UniqueConstraint(
                fields=("project", "provider", "token"), name="push_token_unique_per_provider"
            )
        ]
        indexes = [
            # Fan-out streams active tokens of a project per provider in id order.
            models.Index(fields=("project", "active", "provider", "id"), name="token_fanout"),
            models.Index(fields=("app_user", "active"), name="token_user_active"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.token[:12]}…"


class PushDelivery(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        INVALID_TOKEN = "invalid_token", "Invalid token"
        SKIPPED = "skipped", "Skipped"
        # The worker died with the request possibly in flight and the project's
        # policy is at-most-once: the provider may or may not have it.
        UNKNOWN = "unknown", "Unknown"

    # No single-column FK indexes on campaign and app_user: the composite indexes
    # below lead with them, and every index costs each of a row's three writes.
    campaign = models.ForeignKey(
        "campaigns.PushCampaign",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
        db_index=False,
    )
    run = models.PositiveIntegerField(default=0)
    token = models.ForeignKey(PushToken, on_delete=models.CASCADE, related_name="deliveries")
    app_user = models.ForeignKey(
        "segments.AppUser",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    provider = models.CharField(max_length=8, choices=Provider.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error_message = models.CharField(max_length=500, blank=True)
    provider_msg_id = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # A batch claims rows (claim + claimed_at) just before sending them; the claim's
    # DeliveryClaim row says which of them may have been started and keeps the lease.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Not to be sent before this: a retry after a transient failure (429/5xx/network),
    # the user's local delivery time, the end of quiet hours, or a throttle slot.
    not_before = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "push_deliveries"
        verbose_name_plural = "push deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "run", "token"), name="delivery_unique_per_run"
            )
        ]
        indexes = [
            models.Index(fields=("campaign", "status"), name="delivery_campaign_status"),
            models.Index(fields=("campaign", "run", "id"), name="delivery_campaign_run"),
            # Throttling counts a run's recent claims; the frequency cap a user's sends.
            models.Index(fields=("campaign", "run", "claimed_at"), name="delivery_run_claimed"),
            models.Index(fields=("app_user", "sent_at"), name="delivery_user_sent"),
            # What batches, the sweeper and "is the run finished?" look for: the queued
            # rows of a run by token id. Partial, so a run that is mostly sent costs
            # nothing to search; without it those queries walked the whole run
            # (quadratic in its size: bench/fanout.py).
            models.Index(
                fields=("campaign", "run", "token"),
                condition=models.Q(status="queued"),
                name="delivery_run_queued",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class DeliveryClaim(models.Model):
    """The lease and write-ahead progress of one claim (a sending sub-batch).

    While a task sends the rows it claimed it keeps `renewed_at` fresh; before it
    lets a push start it records, per provider, the highest row id it admitted
    (`started`). A claim not renewed for HERALD_CLAIM_LEASE_SECONDS belongs to a dead
    worker: its unrecorded rows up to `started` may have reached the provider (they
    become unknown, or are re-queued under at-least-once), the rest never left and
    go back to the queue. Rows are found through (campaign, run), the scope every
    claim has; the row is deleted once every result is written.
    """

    id = models.UUIDField(primary_key=True, editable=False)
    campaign = models.ForeignKey(
        "campaigns.PushCampaign",
        on_delete=models.CASCADE,
        null=True,
        related_name="+",
        db_index=False,
    )
    run = models.PositiveIntegerField(default=0)
    guarantee = models.CharField(max_length=16, choices=DeliveryGuarantee.choices)
    started = models.JSONField(default=dict)  # provider -> highest admitted row id
    claimed_at = models.DateTimeField()
    renewed_at = models.DateTimeField()

    class Meta:
        # No index but the key: the table holds one row per sub-batch being sent.
        db_table = "delivery_claims"

    def __str__(self) -> str:
        return f"claim {self.pk}"
