"""Service health (database and broker reachability, no auth, for load balancers) and
the schema view behind /api/schema."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from config.celery import app
from core.errors import envelope

logger = logging.getLogger("herald.health")


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


@csrf_exempt  # read-only; a probe POSTing here gets the JSON 405, not an HTML 403
def healthz(request: HttpRequest) -> JsonResponse:
    if request.method != "GET":
        not_allowed = JsonResponse(
            envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'),
            status=405,
        )
        not_allowed["Allow"] = "GET"
        return not_allowed
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        **{name: "ok" if ok else "unreachable" for name, ok in checks.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)


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


class RedocView(SpectacularRedocView):
    """``/api/redoc``. Redoc's bundle always draws its vendor's logo from
    cdn.redoc.ly (and hides it if that fails); Herald loads nothing from a CDN, so the
    page forbids images from elsewhere and the browser never asks."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = "img-src 'self' data:"
        return response
