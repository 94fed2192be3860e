"""A URLconf for the reference service worker's browser tests: Herald's own routes plus
a stand-in for a customer's site, which serves a copy of Herald's sw.js from its own
path (as docs/api.md, "Reference service worker", tells sites to) and an empty page.

The site is reached as http://localhost:<port> and Herald as http://127.0.0.1:<port>:
two origins on one live server, so the worker's and the helper's calls to Herald are
cross-origin, as they are on a real site.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns
from delivery.views import CLIENT_DIR

SITE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A shop</title></head>
<body><h1>A shop</h1>
<script>
  // What the worker posts to open windows (silent pushes), for the tests to read.
  window.heraldMessages = [];
  navigator.serviceWorker.addEventListener("message", (e) => window.heraldMessages.push(e.data));
</script>
</body></html>
"""


# The stand-in site is not Herald: it answers with a policy of its own (an open one),
# so Herald's Content-Security-Policy middleware leaves its responses alone.
SITE_CSP = "default-src * 'unsafe-inline' 'unsafe-eval' data: blob:"


def site_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(SITE_PAGE, headers={"Content-Security-Policy": SITE_CSP})


def site_worker(request: HttpRequest) -> HttpResponse:
    """The site's copy of Herald's worker: the same bytes, from the site's path."""
    return HttpResponse(
        (CLIENT_DIR / "sw.js").read_bytes(),
        content_type="text/javascript",
        headers={"Content-Security-Policy": SITE_CSP},
    )


urlpatterns = [
    path("shop/", site_page),
    path("shop/herald-sw.js", site_worker),
    *urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
