"""Celery tasks of the audience app (an interface: load, call one service)."""

from __future__ import annotations

from celery import shared_task

from segments.events import events_purge
from segments.services import segment_refresh_counts


@shared_task(name="segments.refresh_segment_counts")
def refresh_segment_counts_task() -> int:
    """Periodic (every 15 minutes, django-celery-beat): recount every segment.

    Idempotent: it only overwrites member_count/evaluated_at with a fresh COUNT.
    Sends never use these counts; they resolve membership at send time.
    """
    return segment_refresh_counts()


@shared_task(name="segments.purge_events")
def purge_events_task() -> int:
    """Periodic (daily): delete app events past HERALD_EVENT_RETENTION_DAYS.

    Idempotent: a second run finds nothing older than the cutoff.
    """
    return events_purge()
