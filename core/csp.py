"""Content-Security-Policy on every response (docs/decisions.md, "Console hardening").

One policy, `settings.HERALD_CSP` (directive -> sources, the shape of Django 6.0's
`SECURE_CSP`), is sent with every response that does not carry its own; a view that
needs a different one (the API docs pages, core/views.py) sets the header itself from
`csp_header(...)`, and the middleware leaves it alone. No nonces: nothing Herald serves
has an inline script, so `script-src 'self'` needs none. On Django 6 this module
becomes `django.middleware.csp.ContentSecurityPolicyMiddleware` + `SECURE_CSP` and the
docs views' `csp_override`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def csp_header(changes: Mapping[str, Sequence[str]] | None = None) -> str:
    """The header value of `settings.HERALD_CSP` with `changes` replacing whole
    directives (an empty list drops one)."""
    policy: dict[str, Sequence[str]] = dict(settings.HERALD_CSP)
    policy.update(changes or {})
    return "; ".join(
        " ".join([directive, *sources]) for directive, sources in policy.items() if sources
    )


class ContentSecurityPolicyMiddleware:
    """Adds `Content-Security-Policy` unless the response already has one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = csp_header()
        return response
