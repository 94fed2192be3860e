"""Service health, no auth, for load balancers and orchestrators: ``/healthz`` (the web
process answers; database and broker reachable) and ``/readyz`` (also a live worker
and a recent sweep, so work gets done); ``/metrics`` for Prometheus (staff or the
metrics token, core/metrics.py); and the views behind /api/schema, /api/docs and
/api/redoc."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from config.celery import app
from core.csp import HEADER as CSP_HEADER
from core.csp import csp_header
from core.errors import envelope
from core.metrics import CONTENT_TYPE, metrics_access, render_metrics
from core.models import SWEEP_HEARTBEAT, Heartbeat

logger = logging.getLogger("herald.health")
PING_TIMEOUT_SECONDS = 1.0


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any driver error means "unreachable" here, nothing is retried
        logger.warning("healthz: database unreachable", exc_info=True)
        return False


def _broker_ok() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # kombu/redis/socket errors all mean "unreachable"
        logger.warning("healthz: broker unreachable", exc_info=True)
        return False


def _get_only(request: HttpRequest) -> JsonResponse:
    not_allowed = JsonResponse(
        envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'),
        status=405,
    )
    not_allowed["Allow"] = "GET"
    return not_allowed


@csrf_exempt  # read-only; a probe POSTing here gets the JSON 405, not an HTML 403
def healthz(request: HttpRequest) -> JsonResponse:
    if request.method != "GET":
        return _get_only(request)
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        **{name: "ok" if ok else "unreachable" for name, ok in checks.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)


def _live_workers() -> list[str]:
    """Names of Celery workers answering a ping: the first answer ends the wait, so
    a healthy cluster answers in milliseconds and a dead one in PING_TIMEOUT."""
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_SECONDS, limit=1)
    except Exception:  # the broker is down or refused the broadcast: no worker reachable
        logger.warning("readyz: worker ping failed", exc_info=True)
        return []
    return sorted(name for reply in replies or [] for name in reply)


def _sweep_age_seconds() -> float | None:
    """Seconds since the campaign sweeper last ran (None: never)."""
    beat = Heartbeat.objects.filter(name=SWEEP_HEARTBEAT).values_list("at", flat=True).first()
    return None if beat is None else (timezone.now() - beat).total_seconds()


@csrf_exempt
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to take traffic and get work done: the database and broker answer, at
    least one worker answers a ping, and the sweeper (sent by beat, run by a worker)
    ran recently. 503 names what is missing."""
    if request.method != "GET":
        return _get_only(request)
    database, broker = _database_ok(), _broker_ok()
    workers = _live_workers() if broker else []
    age = _sweep_age_seconds() if database else None
    stale_after = max(60, 4 * settings.HERALD_SWEEP_INTERVAL_SECONDS)
    scheduler_ok = age is not None and age <= stale_after
    ready = database and broker and bool(workers) and scheduler_ok
    body: dict[str, Any] = {
        "status": "ready" if ready else "unavailable",
        "database": "ok" if database else "unreachable",
        "broker": "ok" if broker else "unreachable",
        "workers": {"status": "ok" if workers else "none answered", "answered": workers},
        "scheduler": {
            "status": "ok" if scheduler_ok else ("never ran" if age is None else "stale"),
            "last_sweep_seconds_ago": None if age is None else round(age, 1),
            "stale_after_seconds": stale_after,
        },
    }
    return JsonResponse(body, status=200 if ready else 503)


_REFUSALS = {
    401: (
        "UNAUTHENTICATED",
        "Sign in as a superuser or send Authorization: Bearer <metrics token>.",
    ),
    403: ("FORBIDDEN", "Only superusers may read the metrics (they span every project)."),
}


@csrf_exempt
def metrics(request: HttpRequest) -> HttpResponse:
    """The node's metrics in the Prometheus text format (docs/api.md, "Metrics")."""
    if request.method != "GET":
        return _get_only(request)
    refused = metrics_access(request)
    if refused is not None:
        code, message = _REFUSALS[refused]
        response = JsonResponse(envelope(code, message), status=refused)
        if refused == 401:
            response["WWW-Authenticate"] = 'Bearer realm="herald-metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE)


class _BrowserYamlRenderer(OpenApiYamlRenderer):
    media_type = "text/plain"


class SchemaView(SpectacularAPIView):
    """``/api/schema``: YAML by default, JSON on request (``?format=json`` or
    ``Accept: application/json``), as drf-spectacular answers. A browser (it accepts
    text/html) gets the YAML as ``text/plain``, so it shows the schema instead of
    downloading a file of a type it does not know."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        renderer, media_type = super().perform_content_negotiation(request, force)
        if renderer.format == "yaml" and "text/html" in request.headers.get("Accept", ""):
            return _BrowserYamlRenderer(), "text/plain"
        return renderer, media_type


# The API docs pages' policy: Herald's, but Redoc's bundle inserts <style> elements
# (styled-components) and Swagger UI's page and bundle use inline styles, so style-src
# allows them here (never in the console); Redoc runs its search in a worker it makes
# from a blob: URL of its own code; images only from Herald and data: URLs (Redoc
# always draws its vendor's logo from cdn.redoc.ly: the browser must not ask). Scripts
# stay 'self' only. docs/decisions.md, "Console hardening".
DOCS_CSP = {
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "worker-src": ["'self'", "blob:"],
}


class SwaggerView(SpectacularSwaggerSplitView):
    """``/api/docs``. drf-spectacular's split view: Swagger UI's initialisation script
    is served by this same URL (``?script``) instead of inline in the page, so the
    page runs under ``script-src 'self'``."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response[CSP_HEADER] = csp_header(DOCS_CSP)
        return response


class RedocView(SpectacularRedocView):
    """``/api/redoc``, with no inline script (REDOC_UI_SETTINGS stays empty: drf-spectacular
    inlines them as a script) under the docs pages' policy."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response[CSP_HEADER] = csp_header(DOCS_CSP)
        return response
