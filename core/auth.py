"""API-key and staff-session authentication, and the project scoping rule.

A key belongs to one project. Using it on another project's URL answers
404 NOT_FOUND rather than 403, so a key cannot probe which projects exist.
A revoked or expired key answers exactly like an unknown one (401 "Invalid API
key."). A client IP with too many failed credential checks this minute is refused
(429) before its key is looked at (core/throttling.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from core.access import is_member
from core.client_ip import client_ip
from core.errors import InvalidInput, NotFound
from core.models import ApiKey, Project, hash_secret
from core.throttling import auth_failure_record, auth_failures_wait

LAST_USED_RESOLUTION = timedelta(minutes=1)
T = TypeVar("T")


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """What `request.user` is for a request authenticated by an API key."""

    key_id: int
    project_id: uuid.UUID
    scope: str
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True

    @property
    def pk(self) -> str:
        return f"key:{self.key_id}"


def api_key_lookup(raw: str) -> ApiKey | None:
    """The key a raw `hk_<prefix>_<secret>` string proves, live or not; None if none."""
    parts = ApiKey.split(raw)
    if parts is None:
        return None
    prefix, secret = parts
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
        return None
    return key


def api_key_authenticate(raw: str, *, client_ip: str | None) -> ApiKey:
    """The live key behind a raw key string, its use recorded; else 401 "Invalid API key."

    The one check behind every door that takes a key: the REST API's Bearer and Basic
    headers, the MCP server over HTTP (the same header) and over stdio
    (HERALD_API_KEY, where there is no client IP). Unknown, revoked and expired keys
    get the same answer, so a caller learns nothing about which keys exist.

    The use is recorded (time and IP) at most once a minute, or sooner when the IP
    changed, so a busy key does not write on every request.
    """
    key = api_key_lookup(raw)
    now = timezone.now()
    if key is None or not key.is_live(now):
        raise exceptions.AuthenticationFailed("Invalid API key.")
    stale = key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION
    if stale or key.last_used_ip != client_ip:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=client_ip)
        key.last_used_at, key.last_used_ip = now, client_ip
    return key


def _limited_key_check(request: Request, check: Callable[[str | None], T]) -> T:
    """Run a credential check for a request that carries credentials: refused with
    429 while its IP is over the failed-check limit (before any key is looked at),
    and a failure counted against the IP."""
    ip = client_ip(request._request)
    wait = auth_failures_wait(ip)
    if wait is not None:
        raise exceptions.Throttled(wait=wait, detail=TOO_MANY_FAILURES)
    try:
        return check(ip)
    except exceptions.AuthenticationFailed:
        auth_failure_record(ip)
        raise


TOO_MANY_FAILURES = "Too many failed authentication attempts from this address."


def client_key_refused(scope: str, *, allow_client_keys: bool) -> bool:
    """Client-scoped keys (shipped inside apps) may call only the registration API."""
    return scope == ApiKey.Scope.CLIENT and not allow_client_keys


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        key = _limited_key_check(request, lambda ip: self._check(header, ip))
        principal = ApiKeyPrincipal(key_id=key.pk, project_id=key.project_id, scope=key.scope)
        return principal, key

    def _check(self, header: list[bytes], ip: str | None) -> ApiKey:
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        return api_key_authenticate(raw, client_ip=ip)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="herald"'


def _basic_credentials(header: list[bytes]) -> tuple[str, str]:
    """(username, password) of `Authorization: Basic <base64>`; 401 when malformed."""
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Malformed Authorization header.")
    try:
        decoded = base64.b64decode(header[1], validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise exceptions.AuthenticationFailed("Malformed Basic credentials.") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise exceptions.AuthenticationFailed("Malformed Basic credentials.")
    return username, password


class BasicApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Basic base64(<project id>:<api key>)`, as MoEngage's clients
    send it; only on the routes that list it (the MoEngage door). The username must
    be the key's project id; otherwise the same checks as a Bearer key."""

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"basic":
            return None
        key = _limited_key_check(request, lambda ip: self._check(header, ip))
        principal = ApiKeyPrincipal(key_id=key.pk, project_id=key.project_id, scope=key.scope)
        return principal, key

    @staticmethod
    def _check(header: list[bytes], ip: str | None) -> ApiKey:
        username, raw = _basic_credentials(header)
        key = api_key_authenticate(raw, client_ip=ip)
        if username.strip().lower() != str(key.project_id):
            raise exceptions.AuthenticationFailed(
                "The Basic username must be the API key's project id."
            )
        return key

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="herald"'


def raw_api_key(request: Request) -> str | None:
    """The raw key an authenticated request carried (Bearer, or Basic's password);
    None for a staff session. For checks made with the key itself (MoEngage's
    signature), since only its hash is stored."""
    if not isinstance(request.user, ApiKeyPrincipal):
        return None
    header = authentication.get_authorization_header(request).split()
    if len(header) != 2:
        return None
    if header[0].lower() == b"basic":
        return _basic_credentials(header)[1]
    return header[1].decode("ascii")


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in staff user (the admin) may call the API from the browser."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result


class IsAuthenticatedForProject(permissions.BasePermission):
    """Authenticated, and client-scoped keys only on registration views."""

    message = "This API key may only call the device registration API."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            raise exceptions.NotAuthenticated("Authentication required.")
        if isinstance(user, ApiKeyPrincipal):
            allowed = bool(getattr(view, "allow_client_keys", False))
            return not client_key_refused(user.scope, allow_client_keys=allowed)
        return True


def api_key_project(raw: str, project_id: uuid.UUID) -> tuple[Project, ApiKeyPrincipal]:
    """A raw key's authority over a project outside HTTP (the MCP stdio server): the
    same 401 UNAUTHENTICATED, 403 FORBIDDEN (client keys) and 404 NOT_FOUND (another
    project) as a request with that key on that project's URL; the project and the
    key's principal (what each operation's permission is checked against). There is no
    client IP to record or limit: the caller runs on this machine."""
    key = api_key_authenticate(raw, client_ip=None)
    if client_key_refused(key.scope, allow_client_keys=False):
        raise exceptions.PermissionDenied(IsAuthenticatedForProject.message)
    if key.project_id != project_id:
        raise NotFound("Project not found.")
    principal = ApiKeyPrincipal(key_id=key.pk, project_id=key.project_id, scope=key.scope)
    return Project.objects.get(pk=project_id), principal


def parse_uuid(value: Any, *, code: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{field} must be a UUID.", code=code, details={"field": field}) from exc


def project_for_request(request: Request, project_id: str | None) -> Project:
    """The project a request acts on, or 404.

    `project_id` None means an alias route (`/admin/push`): the key's project, or
    for staff the `project_id` query parameter. Staff see only the projects they
    are members of (core/access.py); what they may do there is the view's check.
    """
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        if project_id is None:
            return Project.objects.get(pk=user.project_id)
        try:
            wanted = uuid.UUID(project_id)
        except ValueError as exc:
            raise NotFound("Project not found.") from exc
        if wanted != user.project_id:
            raise NotFound("Project not found.")
        return Project.objects.get(pk=wanted)
    if project_id is None:
        project_id = request.query_params.get("project_id")
        if not project_id:
            raise InvalidInput(
                "Staff sessions must name the project: ?project_id=<uuid>.",
                details={"field": "project_id"},
            )
    try:
        project = Project.objects.get(pk=uuid.UUID(project_id))
    except (ValueError, Project.DoesNotExist) as exc:
        raise NotFound("Project not found.") from exc
    # A project the user is no member of is as absent as another project for a key.
    if not is_member(user, project):
        raise NotFound("Project not found.")
    return project
