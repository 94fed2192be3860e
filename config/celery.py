"""The Celery app. Settings come from Django settings under the CELERY_ prefix."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def sync_periodic_tasks_at_beat_start(**_: Any) -> None:
    """Beat starts from the current settings (HERALD_SWEEP_INTERVAL_SECONDS ...).

    Celery's Django fix-up has set Django up by the time beat starts."""
    from campaigns.periodic import sync_periodic_tasks

    sync_periodic_tasks()


@worker_process_shutdown.connect
def mark_metrics_process_dead(pid: int, **_: Any) -> None:
    """A pool process is going: drop its live-gauge metrics files (core/metrics.py)."""
    from core.metrics import mark_process_dead

    mark_process_dead(pid)
