"""Herald's reference web push client, served at stable URLs (docs/api.md,
"Reference service worker").

`/webpush/sw.js` is the service worker a site copies (a worker must come from the
origin it serves); `/webpush/herald-webpush.js` is the page helper that subscribes and
registers. Both are files of this repository (delivery/webpush_client/), read once per
process; an ETag lets browsers and sites revalidate instead of downloading again.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import etag

from core.errors import envelope

CLIENT_DIR = Path(__file__).resolve().parent / "webpush_client"
CLIENT_FILES = ("sw.js", "herald-webpush.js")


@cache
def _client_file(name: str) -> tuple[bytes, str]:
    content = (CLIENT_DIR / name).read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:32]


def _client_etag(request: HttpRequest, name: str) -> str:
    return _client_file(name)[1]


@csrf_exempt  # read-only; a POST gets the JSON 405, not the CSRF 403
def webpush_client_file(request: HttpRequest, name: str) -> HttpResponse:
    """One of CLIENT_FILES (the URL pattern admits no other name) as JavaScript.

    `no-cache` makes every use revalidate (a cheap 304 with the ETag), so a Herald
    upgrade is seen at once by whoever loads the helper from here.
    """
    if request.method not in ("GET", "HEAD"):
        not_allowed = JsonResponse(
            envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'), status=405
        )
        not_allowed["Allow"] = "GET, HEAD"
        return not_allowed
    return _client_file_response(request, name)


@etag(_client_etag)
def _client_file_response(request: HttpRequest, name: str) -> HttpResponse:
    response = HttpResponse(_client_file(name)[0], content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response
