"""The console's idle timeout (docs/decisions.md, "Console hardening"; docs/deploy.md).

A session ends SESSION_COOKIE_AGE (HERALD_SESSION_IDLE_MINUTES) after it was last
saved. Django's SESSION_SAVE_EVERY_REQUEST would save it on every request: one UPDATE
of django_session per console request, the campaign page's progress poll included,
which would also keep a forgotten tab signed in forever. Instead a signed-in request
saves the session (moving its expiry) only when its stored expiry is more than
REFRESH_SECONDS old, so an operator costs at most one write a minute and the timeout
is exact to that minute; a request marked as background work (BACKGROUND_HEADER, sent
by the console's pollers) never moves it.

This module is also the SESSION_ENGINE: Django's database sessions, remembering the
expiry they were loaded with. The cookie is a browser-session cookie
(SESSION_EXPIRE_AT_BROWSER_CLOSE), so a console request still carrying it after the
server-side session expired is how the login page knows to say "your session expired".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.sessions.backends import db
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

REFRESH_SECONDS = 60
BACKGROUND_HEADER = "X-Herald-Background"
EXPIRED_MESSAGE = "Your session expired after {idle} without activity. Log in again."


class SessionStore(db.SessionStore):
    """Database sessions that remember the expiry stored with them when loaded."""

    loaded_expire_date: dt.datetime | None = None

    # Django's one hook that sees the stored row (django-stubs leave it undeclared).
    def _get_session_from_db(self) -> Any:
        stored = super()._get_session_from_db()  # type: ignore[misc]
        self.loaded_expire_date = stored.expire_date if stored is not None else None
        return stored


def idle_time(seconds: int) -> str:
    """SESSION_COOKIE_AGE as an operator reads it: "8 hours", "90 minutes"."""
    minutes = seconds // 60
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def session_needs_refresh(session: Any, *, now: dt.datetime) -> bool:
    """Whether the stored expiry lags a fresh one by REFRESH_SECONDS or more (or runs
    past it: a session from before the timeout was configured)."""
    stored = getattr(session, "loaded_expire_date", None)
    if stored is None:
        return False  # not stored yet: it is being created and saved with a fresh expiry
    lag = (now + dt.timedelta(seconds=settings.SESSION_COOKIE_AGE) - stored).total_seconds()
    return lag >= REFRESH_SECONDS or lag < 0


class SessionIdleTimeoutMiddleware:
    """After SessionMiddleware and MessageMiddleware: moves a signed-in session's expiry
    forward at most once a minute, and tells an operator whose session expired why
    they are asked to log in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        signed_in = session.get("_auth_user_id") is not None  # loads the session
        if signed_in:
            if not request.headers.get(BACKGROUND_HEADER) and session_needs_refresh(
                session, now=timezone.now()
            ):
                session.modified = True  # SessionMiddleware saves it with a new expiry
        elif (
            request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            and session.session_key is None  # the cookie's session is gone: it expired
            and request.path.startswith(reverse("admin:index"))
        ):
            idle = idle_time(settings.SESSION_COOKIE_AGE)
            messages.warning(request, EXPIRED_MESSAGE.format(idle=idle))
        return self.get_response(request)
