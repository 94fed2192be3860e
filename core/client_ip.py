"""The client IP of a request: what the failed-authentication limit counts against and
what an API key's `last_used_ip` records.

Without a proxy it is the TCP peer (REMOTE_ADDR). Behind HERALD_TRUSTED_PROXIES
reverse proxies, each appends the address it received from to X-Forwarded-For, so
the client is the entry that many places from the right; anything further left was
written by the client and proves nothing. A request with fewer entries did not come
through every proxy, so its peer is used. docs/deploy.md, "Behind a proxy".
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address as text, or None when the request carries no valid one."""
    proxies = settings.HERALD_TRUSTED_PROXIES
    if proxies > 0:
        forwarded = [
            hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()
        ]
        if len(forwarded) >= proxies:
            return _valid_ip(forwarded[-proxies])
    return _valid_ip(request.META.get("REMOTE_ADDR", ""))
