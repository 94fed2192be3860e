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
