"""Per-key request rate limits: a burst tier (per second) and a sustained tier (per
minute), each a fixed-window counter in the cache (Redis in production).

Every request counts once against both tiers of its key (an API key, or a staff
user); over either limit it is refused with 429 RATE_LIMITED and ``Retry-After``
(seconds until that tier's window ends), and a refused request uses up nothing of
the tier that would have let it through. A counter is one atomic ``incr`` of a key
that expires with its window, so a check costs the same however busy the key is
(DRF's SimpleRateThrottle keeps a list of every request time in the window and
rewrites it on each request: O(limit)). Fixed windows can let through up to twice
a tier's limit across a window boundary; the burst tier bounds how fast that can
happen. Every answer carries the tightest tier's ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds) and both tiers in
``X-RateLimit-Policy`` (`RateLimitHeadersMiddleware`). docs/api.md, "Rate limits".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

KEY_PREFIX = "rl"
STATE_ATTRIBUTE = "herald_rate_limit"


@dataclass(frozen=True, slots=True)
class Tier:
    limit: int
    seconds: int


@dataclass(frozen=True, slots=True)
class TierState:
    tier: Tier
    count: int  # requests in the current window, this one included
    reset: float  # seconds until the window ends
    key: str

    @property
    def remaining(self) -> int:
        return max(0, self.tier.limit - self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.tier.limit


def tiers() -> tuple[Tier, ...]:
    """The configured tiers; a limit of 0 turns that tier off."""
    configured = (
        Tier(settings.HERALD_API_BURST_PER_SECOND, 1),
        Tier(settings.HERALD_API_RATE_PER_MINUTE, 60),
    )
    return tuple(tier for tier in configured if tier.limit > 0)


def counter_key(ident: str, tier: Tier, window: int) -> str:
    return f"{KEY_PREFIX}:{tier.seconds}:{ident}:{window}"


def count_in_window(ident: str, tier: Tier, now: float) -> TierState:
    """Add one to ``ident``'s counter in ``tier``'s window at ``now``: the one counter
    mechanism (the API tiers and the failed-authentication limit)."""
    window = int(now // tier.seconds)
    key = counter_key(ident, tier, window)
    # The window's key lives one window longer than the window, then expires.
    if cache.add(key, 1, timeout=2 * tier.seconds):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this is the first
            cache.set(key, 1, timeout=2 * tier.seconds)
            count = 1
    return TierState(tier, count, (window + 1) * tier.seconds - now, key)


def peek_window(ident: str, tier: Tier, now: float) -> TierState:
    """``ident``'s count in ``tier``'s window at ``now``, without adding to it."""
    window = int(now // tier.seconds)
    key = counter_key(ident, tier, window)
    return TierState(tier, int(cache.get(key) or 0), (window + 1) * tier.seconds - now, key)


def count_request(ident: str, now: float | None = None) -> list[TierState]:
    """Count one request of ``ident`` in every tier's current window."""
    now = time.time() if now is None else now
    return [count_in_window(ident, tier, now) for tier in tiers()]


def uncount(states: list[TierState]) -> list[TierState]:
    """A refused request does not use up the tiers that would have let it through:
    their counters are given the request back."""
    kept = []
    for state in states:
        if state.exceeded:
            kept.append(state)
            continue
        try:
            count = cache.decr(state.key)
        except ValueError:  # expired meanwhile: nothing to give back
            count = 0
        kept.append(TierState(state.tier, count, state.reset, state.key))
    return kept


class ApiRateThrottle(BaseThrottle):
    """DRF throttle for every API view (REST_FRAMEWORK DEFAULT_THROTTLE_CLASSES)."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return True  # refused by authentication, not counted
        states = count_request(str(user.pk))
        refused = [state for state in states if state.exceeded]
        if refused:
            states = uncount(states)
            self._wait = max(state.reset for state in refused)
        setattr(request._request, STATE_ATTRIBUTE, states)
        return not refused

    def wait(self) -> float | None:
        return self._wait


# --- failed authentication, per client IP -------------------------------------------
# After HERALD_AUTH_FAILURES_PER_MINUTE failed credential checks from one IP in a
# (fixed) minute, that IP's requests carrying credentials are refused before any key
# is checked, until the minute ends: a guesser gets a few tries a minute, not a
# database lookup per request. Successful requests do not count. Used by the API's
# authentication classes (core/auth.py; the MCP HTTP door is one of their views) and
# the console's login form (core/login.py). docs/api.md, "Rate limits".

AUTH_FAILURE_IDENT = "authfail"


def auth_failure_tier() -> Tier | None:
    limit = settings.HERALD_AUTH_FAILURES_PER_MINUTE
    return Tier(limit, 60) if limit > 0 else None


def auth_failures_wait(client_ip: str | None, now: float | None = None) -> float | None:
    """Seconds until ``client_ip`` may try credentials again; None while it may.
    A request without a known IP (none to count against) is never held back."""
    tier = auth_failure_tier()
    if tier is None or not client_ip:
        return None
    now = time.time() if now is None else now
    state = peek_window(f"{AUTH_FAILURE_IDENT}:{client_ip}", tier, now)
    return state.reset if state.count >= tier.limit else None


def auth_failure_record(client_ip: str | None, now: float | None = None) -> None:
    """Count one failed credential check from ``client_ip``."""
    tier = auth_failure_tier()
    if tier is None or not client_ip:
        return
    now = time.time() if now is None else now
    count_in_window(f"{AUTH_FAILURE_IDENT}:{client_ip}", tier, now)


def rate_limit_headers(states: list[TierState]) -> dict[str, str]:
    """The tightest tier (fewest requests left, then the longest wait) in
    X-RateLimit-*, and every tier in X-RateLimit-Policy ("limit;w=seconds")."""
    tightest = min(states, key=lambda state: (state.remaining, -state.reset))
    return {
        "X-RateLimit-Limit": str(tightest.tier.limit),
        "X-RateLimit-Remaining": str(tightest.remaining),
        "X-RateLimit-Reset": str(max(1, math.ceil(tightest.reset))),
        "X-RateLimit-Policy": ", ".join(f"{s.tier.limit};w={s.tier.seconds}" for s in states),
    }


class RateLimitHeadersMiddleware:
    """Adds the rate limit headers to the answer of any request the throttle counted
    (API views; 429s included)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        states = getattr(request, STATE_ATTRIBUTE, None)
        if states:
            for name, value in rate_limit_headers(states).items():
                response[name] = value
        return response
