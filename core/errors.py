"""One error hierarchy and one renderer for the `{"error": {...}}` envelope.

Services raise `ApplicationError` subclasses with a stable code; the DRF exception
handler and Django's handler404/handler500 render every failure the same way, so
clients only ever parse one shape (DESIGN.md, "HTTP API").
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger("herald.errors")


class ApplicationError(Exception):
    """A failure with a stable code, an HTTP status and optional details."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}
        self.headers = headers or {}  # e.g. Retry-After, sent with the envelope


class InvalidInput(ApplicationError):
    status = 400
    code = "VALIDATION_ERROR"


class NotFound(ApplicationError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ApplicationError):
    status = 409
    code = "CONFLICT"


class UpstreamFailure(ApplicationError):
    """A dependency (broker, provider) refused; the state was rolled back."""

    status = 502
    code = "UPSTREAM_FAILED"


class InternalFailure(ApplicationError):
    status = 500
    code = "INTERNAL_ERROR"


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ParseError, "INVALID_BODY"),
    (drf.NotAuthenticated, "UNAUTHENTICATED"),
    (drf.AuthenticationFailed, "UNAUTHENTICATED"),
    (drf.PermissionDenied, "FORBIDDEN"),
    (drf.NotFound, "NOT_FOUND"),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (drf.NotAcceptable, "NOT_ACCEPTABLE"),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (drf.Throttled, "RATE_LIMITED"),
    (drf.ValidationError, "VALIDATION_ERROR"),
]


def _drf_message(exc: drf.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, str):
        return str(detail)
    return "Invalid input."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF EXCEPTION_HANDLER: every error, expected or not, in the envelope.

    Unexpected exceptions become a 500 whose code names the operation that failed
    (the view's `failure_codes[method]`, e.g. CREATE_FAILED); the traceback goes to the log,
    never to the client.
    """
    view = context.get("view")
    request = context.get("request")
    method = getattr(request, "method", "") or ""
    failure_code = getattr(view, "failure_codes", {}).get(method, "INTERNAL_ERROR")
    where = type(view).__name__ if view else "request"
    return exception_response(exc, failure_code=failure_code, where=where)


def exception_response(exc: Exception, *, failure_code: str, where: str) -> Response:
    """The envelope, HTTP status and headers for any exception: the one renderer of
    the REST API's errors and the MCP tools' (campaigns/mcp_server). `failure_code`
    names an unexpected failure (logged with `where`, never shown)."""
    if isinstance(exc, ApplicationError):
        return Response(
            envelope(exc.code, exc.message, exc.details), status=exc.status, headers=exc.headers
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(envelope("REQUEST_TOO_LARGE", "The request body is too large."), status=413)
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "BAD_REQUEST")
        details: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, drf.ValidationError) and not isinstance(exc.detail, str):
            details = {"fields": exc.detail}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait is not None:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            details = {"retry_after": int(headers["Retry-After"])}
        if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
            headers["WWW-Authenticate"] = 'Bearer realm="herald"'
        message = _drf_message(exc)
        if isinstance(exc, drf.NotFound):
            message = "Not found."
        return Response(envelope(code, message, details), status=exc.status_code, headers=headers)
    logger.exception("Unhandled error in %s", where)
    return Response(envelope(failure_code, "Internal error."), status=500)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(envelope("NOT_FOUND", "Not found."), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(envelope("INTERNAL_ERROR", "Internal error."), status=500)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(envelope("BAD_REQUEST", "Bad request."), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(envelope("FORBIDDEN", "Forbidden."), status=403)
