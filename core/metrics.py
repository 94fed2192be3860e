"""Prometheus metrics plumbing: the node's registry for /metrics, who may read it,
HTTP requests by route, and a histogram that takes a batch of observations at once.

Every process of a node (gunicorn or runserver, each Celery pool child, beat)
writes its counters and histograms to its own files in PROMETHEUS_MULTIPROC_DIR
(config/settings.py sets it before anything imports prometheus_client);
`render_metrics` adds up all of them and the scrape-time collectors named in
HERALD_METRICS_COLLECTORS (values computed from the database and the broker when
scraped). Each node is scraped on its own (docs/deploy.md, "Metrics").

A write to a multiprocess value costs 4-6 us (an mmap write under a lock;
docs/decisions.md, "Metrics"), so hot paths count into plain Python first and
publish a batch at a time (`BatchHistogram.observe_counts`, delivery/metrics.py).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the Prometheus text format
# Route label of a request no URL pattern matched (404s of unknown paths).
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "herald_http_requests_total",
    "HTTP requests answered, by method, route pattern (never the raw path) and status.",
    ["method", "route", "status"],
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BatchHistogram(Histogram):
    """A Histogram that can also take many observations at once.

    `observe_counts` adds what `observe` would have added for a batch: `counts[i]`
    observations in bucket i (in the order of `bucket_bounds()`, +Inf last) and
    `total` to the sum. It touches the same per-bucket values `observe` does
    (prometheus-client 0.26; tests/core/test_metrics.py checks they agree), so a hot
    path pays one value write per non-empty bucket per batch instead of two per
    observation.
    """

    def bucket_bounds(self) -> list[float]:
        return list(self._upper_bounds)

    def observe_counts(self, counts: Sequence[int], total: float) -> None:
        self._raise_if_not_observable()
        if len(counts) != len(self._buckets):
            raise ValueError(f"{len(counts)} counts for {len(self._buckets)} buckets")
        if not any(counts):
            return
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


_GROUP = re.compile(r"\(\?P<(\w+)>")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@lru_cache(maxsize=1024)
def route_label(route: str) -> str:
    """A readable, bounded label for a matched URL pattern: parameters become
    `{name}`, regex anchors and optional trailing slashes go.

    `^admin/projects/(?P<project_id>[^/]+)/push/campaigns/(?P<campaign_id>[^/]+)/?$`
    becomes `admin/projects/{project_id}/push/campaigns/{campaign_id}`.
    """
    out: list[str] = []
    i = 0
    while i < len(route):
        group = _GROUP.match(route, i)
        if group is None:
            out.append(route[i])
            i += 1
            continue
        # Skip the group's body up to its balanced closing parenthesis.
        depth, j = 1, group.end()
        while j < len(route) and depth:
            if route[j] == "\\":
                j += 1
            elif route[j] == "(":
                depth += 1
            elif route[j] == ")":
                depth -= 1
            j += 1
        out.append("{" + group.group(1) + "}")
        i = j
    text = _CONVERTER.sub(r"{\1}", "".join(out))
    text = text.replace("^", "").replace("$", "").replace("/?", "").replace("\\", "")
    return "/" + text.lstrip("/")


class RequestMetricsMiddleware:
    """Counts every request Django routes, labelled by the matched URL pattern.

    Labelling by pattern keeps the series bounded: ids in paths would make one
    series per campaign or device. An unknown method is counted as `other`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = route_label(match.route) if match is not None and match.route else UNMATCHED_ROUTE
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


def metrics_access(request: HttpRequest) -> int | None:
    """None when the request may read /metrics (a superuser's session, or the bearer
    token HERALD_METRICS_TOKEN); else the status to refuse it with: 401 without valid
    credentials, 403 for any other signed-in user. The figures span every project, and
    a project's members see nothing of other projects (core/access.py)."""
    header = request.headers.get("Authorization", "")
    token = settings.HERALD_METRICS_TOKEN
    if header:
        scheme, _, given = header.partition(" ")
        valid = (
            bool(token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), token.encode())
        )
        return None if valid else 401
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 401
    return None if user.is_active and user.is_superuser else 403


def render_metrics() -> bytes:
    """The node's metrics in the Prometheus text format: every process's counters
    and histograms, added up, and the scrape-time collectors' values."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    for path in settings.HERALD_METRICS_COLLECTORS:
        registry.register(import_string(path)())
    return generate_latest(registry)


def metrics_dir_reset() -> int:
    """Empty the node's metrics folder (run_stack, when a node starts: nothing of it
    runs yet). Counters start again from zero, as Prometheus expects of a restart;
    left alone, the files of every process that ever ran would be added up forever.
    Returns how many files went."""
    removed = 0
    for path in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live-gauge files (gunicorn's child_exit, Celery's
    worker_process_shutdown). Its counters and histograms stay: what it counted
    happened, and a node's totals must not go down when a process is replaced."""
    multiprocess.mark_process_dead(pid, str(settings.PROMETHEUS_MULTIPROC_DIR))
