"""App users (the people behind device tokens) and segments (saved audience rules)."""

from __future__ import annotations

import uuid

from django.db import models

from core.models import Project


class AppUser(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="app_users")
    external_id = models.CharField(max_length=255)
    # country, language, timezone, app_version and custom keys; types are kept.
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "app_users"
        # core/access.py: the app-facing registration API (client keys hold only this).
        permissions = [("register_device", "Can register devices and report events")]
        constraints = [
            models.UniqueConstraint(
                fields=("project", "external_id"), name="app_user_unique_external_id"
            )
        ]
        indexes = [models.Index(fields=("project", "created_at"), name="app_user_project_created")]

    def __str__(self) -> str:
        return self.external_id

    @property
    def language(self) -> str:
        value = (self.attributes or {}).get("language")
        return value if isinstance(value, str) else ""


class Segment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    member_count = models.PositiveIntegerField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "segments"
        ordering = ("name",)
        indexes = [models.Index(fields=("project", "name"), name="segment_project_name")]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """What an app user did (segments/events.py ingests them): append-only, high volume.

    Designed for 10-100x the deliveries (docs/decisions.md, "App events"): no index
    but the primary key, the idempotency key (project, event_id) and a BRIN on
    occurred_at (a time-ordered btree on SQLite), all made by migration 0004.
    `delivery_id` is a plain bigint and `app_user` carries no database constraint,
    so deleting a campaign or a user never scans this table (a deleted user's events
    go with the retention purge); a project's events go with the project, found
    through the (project, event_id) index.
    """

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    app_user = models.ForeignKey(
        AppUser,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    name = models.CharField(max_length=64)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    event_id = models.CharField(max_length=64)
    delivery_id = models.BigIntegerField(null=True, blank=True)
    action_id = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "events"
        constraints = [
            models.UniqueConstraint(fields=("project", "event_id"), name="event_unique_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.event_id})"
