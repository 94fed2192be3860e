"""Projects and their API keys: the tenant boundary every other table hangs off."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.db import models

from core.credentials import apns_missing, fcm_missing


class DeliveryGuarantee(models.TextChoices):
    """What happens to a push whose worker died with the request in flight."""

    AT_MOST_ONCE = "at_most_once", "At most once (unknown outcomes are not re-sent)"
    AT_LEAST_ONCE = "at_least_once", "At least once (re-sent; the device collapses repeats)"


class Project(models.Model):
    """A tenant: one app (or family of apps) with its own provider credentials.

    Credentials are write-only: no serializer or admin list shows them, and
    `__str__`/`repr` never include them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    # APNs token auth (.p8) or certificate auth.
    apns_team_id = models.CharField(max_length=20, blank=True)
    apns_key_id = models.CharField(max_length=20, blank=True)
    apns_auth_key = models.TextField(blank=True, help_text="Contents of the .p8 key (write-only).")
    apns_certificate = models.TextField(
        blank=True, help_text="PEM certificate + key, for certificate auth (write-only)."
    )
    apns_topic = models.CharField(max_length=200, blank=True, help_text="Bundle id.")
    apns_use_sandbox = models.BooleanField(default=False)
    apns_endpoint = models.CharField(
        max_length=200, blank=True, help_text="host:port override (simulators, proxies)."
    )
    apns_ca_file = models.CharField(max_length=500, blank=True)
    # FCM HTTP v1: service-account JSON.
    fcm_service_account = models.JSONField(default=dict, blank=True)
    fcm_endpoint = models.CharField(max_length=200, blank=True)
    fcm_ca_file = models.CharField(max_length=500, blank=True)
    # Defaults applied to campaigns that don't set their own.
    default_timezone = models.CharField(max_length=64, default="UTC")
    default_quiet_hours = models.JSONField(null=True, blank=True)
    default_throttle_per_minute = models.PositiveIntegerField(null=True, blank=True)
    frequency_cap_per_day = models.PositiveIntegerField(null=True, blank=True)
    # After a worker crash: leave in-flight pushes unknown, or send them again
    # (docs/decisions.md, "Delivery engine").
    delivery_guarantee = models.CharField(
        max_length=16, choices=DeliveryGuarantee.choices, default=DeliveryGuarantee.AT_MOST_ONCE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "projects"
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def has_apns_credentials(self) -> bool:
        """Complete enough to send to APNs (core.credentials decides)."""
        return not apns_missing(self)

    @property
    def has_fcm_credentials(self) -> bool:
        """Complete enough to send to FCM (core.credentials decides)."""
        return not fcm_missing(self)


KEY_PREFIX = "hk_"


def hash_secret(secret: str) -> str:
    """Keys are 256-bit random, so a fast hash is enough (no dictionary to attack)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    """A project's API key. Only the SHA-256 of the secret is stored.

    The full key reads `hk_<prefix>_<secret>`; the prefix finds the row, the
    hash proves the secret.
    """

    class Scope(models.TextChoices):
        ADMIN = "admin", "Admin (campaigns, segments, registration)"
        CLIENT = "client", "Client (device registration only)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.ADMIN)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_keys"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({KEY_PREFIX}{self.prefix}_…)"

    @classmethod
    def generate(cls) -> tuple[str, str, str]:
        """Return (full key, prefix, secret hash) for a new key."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        return f"{KEY_PREFIX}{prefix}_{secret}", prefix, hash_secret(secret)

    @staticmethod
    def split(raw_key: str) -> tuple[str, str] | None:
        if not raw_key.startswith(KEY_PREFIX):
            return None
        prefix, sep, secret = raw_key[len(KEY_PREFIX) :].partition("_")
        if not sep or not prefix or not secret or len(prefix) > 16:
            return None
        return prefix, secret


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` on one project, and the first answer given to it.

    The unique (project, key) constraint is the concurrency guard: of two requests
    racing with one key, exactly one inserts the row and runs; the other finds it.
    `response_status` is null while that first request runs. `claimed_at` is when
    it started (and the lease its completion must still hold); rows expire 24 h
    after it. Written and read only by core/idempotency.py (docs/api.md,
    "Idempotency keys").
    """

    # The unique constraint below leads with project_id, so no index of its own.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and canonical JSON body of the first request.
    fingerprint = models.CharField(max_length=64)
    claimed_at = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "idempotency_keys"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "key"], name="idempotency_keys_project_key_uniq"
            )
        ]
        indexes = [models.Index(fields=["claimed_at"], name="idempotency_keys_claimed_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.response_status or 'running'})"
