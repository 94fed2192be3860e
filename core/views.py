"""Service health: database and broker reachability (no auth, for load balancers)."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

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
