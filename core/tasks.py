"""Celery tasks of core (an interface: call one service)."""

from __future__ import annotations

from celery import shared_task

from core.audit import audit_events_purge
from core.idempotency import idempotency_keys_expire

EXPIRE_IDEMPOTENCY_KEYS_TASK = "core.expire_idempotency_keys"


@shared_task(name=EXPIRE_IDEMPOTENCY_KEYS_TASK)
def expire_idempotency_keys_task() -> int:
    """Periodic (hourly, django-celery-beat): delete idempotency keys past 24 h.

    Idempotent: a key is expired by its age alone, so a repeated run deletes nothing
    more. Lookups ignore expired keys anyway; this only keeps the table small.
    """
    return idempotency_keys_expire()


PURGE_AUDIT_EVENTS_TASK = "core.purge_audit_events"


@shared_task(name=PURGE_AUDIT_EVENTS_TASK)
def purge_audit_events_task() -> int:
    """Periodic (daily): delete audit events past HERALD_AUDIT_RETENTION_DAYS.

    Idempotent: a second run finds nothing older than the cutoff.
    """
    return audit_events_purge()
