"""gunicorn settings `run_stack --production` passes (`--config python:config.gunicorn`).

When a web worker process exits, the arbiter drops its live-gauge metrics files
(prometheus-client's multiprocess mode; PROMETHEUS_MULTIPROC_DIR is in the
environment run_stack hands down; core/metrics.py, docs/deploy.md "Metrics").
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
