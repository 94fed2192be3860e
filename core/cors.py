"""Cross-origin access to the app routes (`/v1/...`) for browsers.

A site's pages and its service worker call Herald from the site's origin: the page
helper reads the VAPID key and registers subscriptions, the worker reports
push_opened / push_clicked (docs/api.md, "Reference service worker"). Those calls
carry `Authorization` and a JSON body, so the browser first sends a preflight
OPTIONS and reads the answer only when Herald allows it. Any origin is allowed:
these routes are authorized by the client key a request carries, never by cookies
(`*` makes browsers leave cookies out), and client keys are public by design, so
an origin check would protect nothing (docs/decisions.md, "Reference service
worker"). The admin routes (`/admin/...`) and the console stay same-origin only.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

CLIENT_PREFIX = "/v1/"
ALLOW_METHODS = "GET, POST, PUT, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSE_HEADERS = (
    "Retry-After, Idempotent-Replayed, X-RateLimit-Limit, X-RateLimit-Remaining, "
    "X-RateLimit-Reset, X-RateLimit-Policy"
)
PREFLIGHT_MAX_AGE = "86400"


class ClientCorsMiddleware:
    """Answers preflights for `/v1/` itself (before authentication, which a preflight
    cannot pass: it carries no key) and lets any origin read `/v1/` answers, errors
    included, so a page sees Herald's error envelope rather than a CORS failure."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(CLIENT_PREFIX):
            return self.get_response(request)
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            response = self.get_response(request)
            response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response["Access-Control-Allow-Origin"] = "*"
        return response
