"""The audit trail's one writer, and who is acting (docs/decisions.md, "Audit trail").

Services record what they did (`audit_record`), inside their own transaction, so a
rolled-back action leaves no event and every door - REST API, console, management
commands, MCP tools, the scheduler - is covered without remembering to. Doors only
say who is acting:

* HTTP: `AuditRequestMiddleware` (after Django's authentication middleware) keeps the
  request in a context variable; the actor is read from it when an event is written,
  after DRF has authenticated the request (DRF sets `user` and `auth` on the
  underlying HttpRequest too): a staff user, or an API key (its prefix). Paths under
  /ops/ are the console, the rest the API. The IP is core.client_ip's (the
  connection's, or behind HERALD_TRUSTED_PROXIES proxies the client's they forward).
* Commands subclass `AuditedCommand` (actor: the command, with the OS user).
* The MCP server wraps each tool call in `acting_as` (the key's prefix, via mcp).
* Nothing set: a Celery task or the scheduler, recorded as system via worker; the
  scheduler's firing names itself (`SCHEDULER`).

Field names and small facts only, never a credential's value; no writes on the
per-token send path.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.management.base import BaseCommand
from django.db import models
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from core.client_ip import client_ip
from core.db import delete_in_id_windows
from core.models import KEY_PREFIX, ApiKey, AuditEvent

ActorKind = AuditEvent.ActorKind
Via = AuditEvent.Via

USER_AGENT_MAX = 300
REPR_MAX = 200
CONSOLE_PREFIX = "/ops/"


@dataclass(frozen=True)
class Actor:
    """Who acts, through which door, from where."""

    kind: str
    name: str
    via: str
    user_id: int | None = None
    ip: str | None = None
    user_agent: str = ""


SYSTEM = Actor(kind=ActorKind.SYSTEM, name="system", via=Via.WORKER)
SCHEDULER = Actor(kind=ActorKind.SYSTEM, name="scheduler", via=Via.WORKER)

_actor: ContextVar[Actor | None] = ContextVar("herald_audit_actor", default=None)
_request: ContextVar[HttpRequest | None] = ContextVar("herald_audit_request", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Events recorded inside the block name `actor` (a door says who is acting)."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def masked_key(prefix: str) -> str:
    """How an API key is shown everywhere: its prefix, never its secret."""
    return f"{KEY_PREFIX}{prefix}_…"


def api_key_actor(key: ApiKey, *, via: str, ip: str | None = None, user_agent: str = "") -> Actor:
    return Actor(
        kind=ActorKind.API_KEY,
        name=masked_key(key.prefix),
        via=via,
        ip=ip,
        user_agent=user_agent[:USER_AGENT_MAX],
    )


def command_actor(name: str) -> Actor:
    """A management command, run by an OS user (shown in `user_agent`)."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no login name (some containers)
        os_user = "unknown"
    return Actor(
        kind=ActorKind.COMMAND,
        name=name,
        via=Via.COMMAND,
        user_agent=f"manage.py {name} (os user {os_user})"[:USER_AGENT_MAX],
    )


def _client_ip(request: HttpRequest) -> str | None:
    return client_ip(request)


def actor_for_request(request: HttpRequest, *, via: str | None = None) -> Actor:
    """The actor of an HTTP request, once authenticated: a staff user (session) or an
    API key (DRF's `auth` is the ApiKey row); via console under /ops/, else api."""
    door = via or (Via.CONSOLE if request.path.startswith(CONSOLE_PREFIX) else Via.API)
    ip = _client_ip(request)
    agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX]
    key = getattr(request, "auth", None)
    if isinstance(key, ApiKey):
        return api_key_actor(key, via=door, ip=ip, user_agent=agent)
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        key_id = getattr(user, "key_id", None)  # an ApiKeyPrincipal without `auth`
        if key_id is not None:
            prefix = ApiKey.objects.filter(pk=key_id).values_list("prefix", flat=True).first()
            return api_key_actor(ApiKey(prefix=prefix or "?"), via=door, ip=ip, user_agent=agent)
        return Actor(
            kind=ActorKind.USER,
            name=user.get_username(),
            via=door,
            user_id=user.pk,
            ip=ip,
            user_agent=agent,
        )
    return Actor(kind=ActorKind.SYSTEM, name="anonymous", via=door, ip=ip, user_agent=agent)


def current_actor() -> Actor:
    """Who is acting now: the door's `acting_as`, else the HTTP request's user, else
    the system (a Celery task)."""
    actor = _actor.get()
    if actor is not None:
        return actor
    request = _request.get()
    if request is not None:
        return actor_for_request(request)
    return SYSTEM


def audit_record(
    *,
    action: str,
    project_id: uuid.UUID | str | None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    object_repr: str = "",
    changes: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    """Append one event. Call it inside the acting service's transaction, after the
    change succeeded, so a refused or rolled-back action leaves nothing.

    `obj` fills object_type (its model name), object_id and object_repr. `changes`:
    changed field names (`{"fields": [...]}`) and small facts, never secret values.
    """
    who = actor or current_actor()
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = obj.pk if object_id in ("", None) else object_id
        object_repr = object_repr or str(obj)
    return AuditEvent.objects.create(
        project_id=project_id,
        actor_kind=who.kind,
        actor=who.name[:200],
        actor_user_id=who.user_id,
        via=who.via,
        ip=who.ip,
        user_agent=who.user_agent[:USER_AGENT_MAX],
        action=action,
        object_type=object_type,
        object_id="" if object_id is None else str(object_id),
        object_repr=object_repr[:REPR_MAX],
        changes=dict(changes or {}),
    )


# --- doors -------------------------------------------------------------------------


class AuditRequestMiddleware:
    """Keeps the request in the audit context while it is served (the HTTP door).

    After AuthenticationMiddleware; the actor is resolved only when an event is
    written, by then DRF has put the API key or staff user on the request."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            response: HttpResponse = self.get_response(request)
        finally:
            _request.reset(token)
        return response


class AuditedCommand(BaseCommand):
    """A management command whose writes are recorded as `command` (its name and the
    OS user). Herald's mutating commands subclass it instead of BaseCommand."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        name = type(self).__module__.rsplit(".", 1)[-1]
        with acting_as(command_actor(name)):
            return super().execute(*args, **options)


# Console logins: Django's auth signals (sent by contrib.auth's login, logout and
# authenticate), recorded via console whatever the URL. The username attempted is
# kept on a failure; the password never reaches the signal (Django masks it).


def _login_actor(request: HttpRequest | None, name: str, user_id: int | None) -> Actor:
    ip = _client_ip(request) if request is not None else None
    agent = request.META.get("HTTP_USER_AGENT", "") if request is not None else ""
    return Actor(
        kind=ActorKind.USER,
        name=name,
        via=Via.CONSOLE,
        user_id=user_id,
        ip=ip,
        user_agent=agent[:USER_AGENT_MAX],
    )


@receiver(user_logged_in, dispatch_uid="herald_audit_login")
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit_record(
        action="console.login",
        project_id=None,
        obj=user,
        actor=_login_actor(request, user.get_username(), user.pk),
    )


@receiver(user_logged_out, dispatch_uid="herald_audit_logout")
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:  # logging out without a session: nothing happened
        return
    audit_record(
        action="console.logout",
        project_id=None,
        obj=user,
        actor=_login_actor(request, user.get_username(), user.pk),
    )


@receiver(user_login_failed, dispatch_uid="herald_audit_login_failed")
def _login_failed(
    sender: Any, credentials: Mapping[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action="console.login_failed",
        project_id=None,
        object_type="user",
        object_repr=username,
        actor=_login_actor(request, username, None),
    )


def with_fields(fields: Sequence[str], **facts: Any) -> dict[str, Any]:
    """`changes` of an update: the changed field names, sorted (a door's order may be a
    set's), each once."""
    return {"fields": sorted(set(fields)), **facts}


# --- retention -----------------------------------------------------------------------

PURGE_ID_WINDOW = 10_000


def audit_events_purge(*, now: Any = None, retention_days: int | None = None) -> int:
    """Delete events older than HERALD_AUDIT_RETENTION_DAYS (0 keeps them forever);
    returns how many. The one place events are deleted. Idempotent, run daily.

    Bounded batches: the id range of old events (read on the time index), then
    windows of PURGE_ID_WINDOW ids, each its own statement and transaction.
    """
    days = settings.HERALD_AUDIT_RETENTION_DAYS if retention_days is None else retention_days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = AuditEvent.objects.filter(at__lt=cutoff)
    return delete_in_id_windows(old, window=PURGE_ID_WINDOW)
