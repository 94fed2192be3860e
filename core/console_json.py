"""The console's JSON endpoints: the API's body rules and its error envelope.

Console endpoints are admin views (session login, `admin_site.admin_view`), not DRF
views, but they read a body and answer errors exactly as the API does: a body that
is not a JSON object is INVALID_BODY, an ApplicationError is its envelope.

    @console_json(methods=("POST",))
    def my_endpoint(request, ...) -> dict: ...   # the answer, as JSON (200)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import ParseError

from core.errors import ApplicationError, envelope
from core.parsers import ObjectJSONParser

JsonView = Callable[..., Any]


def request_object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body (`{}` when empty), by the API's own parser."""
    if not request.body:
        return {}
    try:
        data: dict[str, Any] = ObjectJSONParser().parse(io.BytesIO(request.body))
    except ParseError as exc:
        raise ApplicationError(str(exc.detail), code="INVALID_BODY") from exc
    return data


def error_response(error: ApplicationError) -> JsonResponse:
    """An ApplicationError as the API answers it: its status and envelope."""
    body = envelope(error.code, error.message, error.details)
    return JsonResponse(body, status=error.status, headers=error.headers)


def console_json(*, methods: Collection[str]) -> Callable[[JsonView], Callable[..., JsonResponse]]:
    """Wrap a view returning a JSON-able answer: 200 with it, or the error envelope."""

    def decorate(view: JsonView) -> Callable[..., JsonResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                response = JsonResponse(
                    envelope("METHOD_NOT_ALLOWED", f"Use {', '.join(methods)}."), status=405
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return JsonResponse(view(request, *args, **kwargs))
            except ApplicationError as error:
                return error_response(error)

        return wrapper

    return decorate
