"""Idempotency keys: a client may retry a POST safely (docs/api.md, "Idempotency keys").

A request carrying `Idempotency-Key` first claims the key on its project by
inserting a row; the unique (project, key) constraint lets exactly one of any
number of racing requests win. The winner runs the operation and stores its answer;
a retry with the same key and the same request (method, path, canonical JSON body)
gets that answer again, marked `Idempotent-Replayed: true`, and runs nothing. The
same key with another request is 422 IDEMPOTENCY_KEY_REUSED; a retry while the first
is still running is 409 IDEMPOTENCY_KEY_IN_USE with Retry-After. A 5xx answer is
not stored (the operation rolled back), so the client may retry it with the same
key. Keys live 24 h from their first use and are deleted by
`expire_idempotency_keys_task`. Why these choices: docs/decisions.md, "Idempotency
keys".

The mechanism is a decorator on view methods (`@idempotent`), not a service: it is
about requests and answers, and services stay free of HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError, Conflict, InvalidInput
from core.models import IdempotencyKey, Project
from core.schema import error_responses

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# How long a key and its answer are kept, counted from the first request.
KEY_TTL = timedelta(hours=24)
# A first request that has not answered after this long is taken for dead (its
# process was killed), and a retry may run the operation instead.
CLAIM_TIMEOUT = timedelta(minutes=5)
RETRY_AFTER_SECONDS = 1
# Printable ASCII (what an RFC 8941 sf-string holds), not starting or ending with a
# space (HTTP would strip it). The schema states the same pattern.
KEY_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?$"
_KEY_RE = re.compile(KEY_PATTERN)

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key with the same request within 24 h answers the "
        "first answer again (header `Idempotent-Replayed: true`) without doing the work "
        "twice. 1-255 printable ASCII characters, not starting or ending with a space "
        "(optionally in double quotes, as an RFC 8941 string); otherwise 400 "
        "INVALID_IDEMPOTENCY_KEY. The same key with "
        "another request: 422 IDEMPOTENCY_KEY_REUSED. While the first request runs: 409 "
        "IDEMPOTENCY_KEY_IN_USE with Retry-After. Keys are per project."
    ),
)
# The answers the mechanism adds to an operation's schema.
IDEMPOTENCY_ERRORS = error_responses(409, 422)


class KeyReused(ApplicationError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class KeyInUse(Conflict):
    code = "IDEMPOTENCY_KEY_IN_USE"


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer given to a key, to be replayed."""

    status: int
    body: str


def parse_key(raw: str | None) -> str | None:
    """The key a request carries, None without the header; 400 if it is malformed.

    Stripe-style bare values and the IETF draft's quoted sf-string (`"abc"`) are both
    taken; the quotes are not part of the key (`""` alone is the two-character key).
    """
    if raw is None:
        return None
    key = raw[1:-1] if len(raw) > 2 and raw[0] == raw[-1] == '"' else raw
    if not _KEY_RE.match(key):
        raise InvalidInput(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters, "
            "not starting or ending with a space.",
            code="INVALID_IDEMPOTENCY_KEY",
            details={"field": HEADER},
        )
    return key


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, the path and the body as canonical JSON (sorted keys)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


def idempotency_claim(
    *, project: Project, key: str, fingerprint: str
) -> IdempotencyKey | StoredAnswer:
    """Claim `key` for a request: the claimed row (run the operation), or the answer
    to replay. KeyReused if the key was used for another request, KeyInUse while the
    first request with it is still running.
    """
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    project=project, key=key, fingerprint=fingerprint, claimed_at=now
                )
        except IntegrityError:
            pass  # the key exists: decide below from what it holds
        row = IdempotencyKey.objects.filter(project=project, key=key).first()
        if row is None:
            continue  # released or expired meanwhile: claim again
        if row.claimed_at <= now - KEY_TTL:
            # Expired but not yet swept: the key is free again.
            IdempotencyKey.objects.filter(pk=row.pk, claimed_at=row.claimed_at).delete()
            continue
        if row.fingerprint != fingerprint:
            raise KeyReused(
                f"This {HEADER} was used for a different request; use a new key.",
                details={"field": HEADER},
            )
        if row.response_status is not None:
            return StoredAnswer(status=row.response_status, body=row.response_body)
        if row.claimed_at <= now - CLAIM_TIMEOUT:
            # The first request died without answering: take its claim over.
            taken = IdempotencyKey.objects.filter(
                pk=row.pk, claimed_at=row.claimed_at, response_status__isnull=True
            ).update(claimed_at=now)
            if taken:
                row.claimed_at = now
                return row
            continue
        break
    raise KeyInUse(
        f"A request with this {HEADER} is still running; retry shortly.",
        details={"field": HEADER, "retry_after": RETRY_AFTER_SECONDS},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def idempotency_complete(*, claim: IdempotencyKey, status: int, body: str) -> None:
    """Store the answer, unless the claim was taken over meanwhile (then nothing)."""
    IdempotencyKey.objects.filter(
        pk=claim.pk, claimed_at=claim.claimed_at, response_status__isnull=True
    ).update(response_status=status, response_body=body, completed_at=timezone.now())


def idempotency_release(*, claim: IdempotencyKey) -> None:
    """Forget a claim whose request failed (5xx), so a retry with the key runs again."""
    IdempotencyKey.objects.filter(
        pk=claim.pk, claimed_at=claim.claimed_at, response_status__isnull=True
    ).delete()


def idempotency_keys_expire(*, now: datetime | None = None) -> int:
    """Delete keys older than KEY_TTL; the number deleted. Periodic (hourly)."""
    cutoff = (now or timezone.now()) - KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(claimed_at__lte=cutoff).delete()
    return deleted


Handler = Callable[..., Response]


def _status_of(exc: Exception) -> int:
    if isinstance(exc, Http404):
        return 404
    if isinstance(exc, ApplicationError):
        return exc.status
    if isinstance(exc, APIException):
        return exc.status_code
    return 500


def _replay(answer: StoredAnswer) -> Response:
    data = json.loads(answer.body) if answer.body else None
    return Response(data, status=answer.status, headers={REPLAYED_HEADER: "true"})


def idempotent(handler: Handler) -> Handler:
    """Make a view method (of a core.api.ProjectScopedView) honour `Idempotency-Key`.

    Without the header the method runs as before. The key is claimed after
    authentication, throttling and body parsing; answers the method gives (2xx and
    4xx, errors included) are stored, 5xx are not. Views also list
    IDEMPOTENCY_ERRORS in their schema responses; the header parameter is added here.
    """

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = parse_key(request.headers.get(HEADER))
        if key is None:
            return handler(view, request, *args, **kwargs)
        project = view.project(request, kwargs)
        fingerprint = request_fingerprint(
            method=request.method or "", path=request.path, body=request.data
        )
        claim = idempotency_claim(project=project, key=key, fingerprint=fingerprint)
        if isinstance(claim, StoredAnswer):
            return _replay(claim)
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            if _status_of(exc) >= 500:
                idempotency_release(claim=claim)
                raise
            response = view.handle_exception(exc)
        except BaseException:
            idempotency_release(claim=claim)
            raise
        if response.status_code >= 500:
            idempotency_release(claim=claim)
            return response
        body = JSONRenderer().render(response.data).decode() if response.data is not None else ""
        idempotency_complete(claim=claim, status=response.status_code, body=body)
        return response

    documented: Handler = extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)
    return documented
