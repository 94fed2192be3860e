"""Celery tasks of the audience app (an interface: load, call one service)."""

from __future__ import annotations

from celery import shared_task

from segments.services import segment_refresh_counts


@shared_task(name="segments.refresh_segment_counts")
def refresh_segment_counts_task() -> int:
    """Periodic (every 15 minutes, django-celery-beat): recount every segment.

    Idempotent: it only overwrites member_count/evaluated_at with a fresh COUNT.
    Sends never use these counts; they resolve membership at send time.
    """
    return segment_refresh_counts()
