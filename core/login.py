"""The console's login form, with the API's per-IP limit on failed credential checks.

Django's admin login has no limit of its own, so a password could be guessed as fast
as the server answers. Failed logins count against the client IP in the same counter
as failed API keys (core/throttling.py): after HERALD_AUTH_FAILURES_PER_MINUTE
failures in a minute from one IP, the form refuses every login from it, with a
message saying how long to wait, before any password is checked.
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from core.client_ip import client_ip
from core.throttling import auth_failure_record, auth_failures_wait

# What a wrong username or password (or an account that may not log in) raises.
FAILED_LOGIN_CODES = frozenset({"invalid_login", "inactive"})


class RateLimitedLoginForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "rate_limited": "Too many failed logins from your address. Try again in %(seconds)s s.",
    }

    def clean(self) -> dict[str, Any]:
        ip = client_ip(self.request) if self.request is not None else None
        wait = auth_failures_wait(ip)
        if wait is not None:
            raise ValidationError(
                self.error_messages["rate_limited"],
                code="rate_limited",
                params={"seconds": max(1, math.ceil(wait))},
            )
        try:
            return super().clean()
        except ValidationError as exc:
            if getattr(exc, "code", None) in FAILED_LOGIN_CODES:
                auth_failure_record(ip)
            raise
