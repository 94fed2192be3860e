"""API key lifecycle (issue 14): expiry, last use (time and IP), rotation without
downtime, and the per-IP limit on failed authentication (REST API with Bearer and
Basic, MCP over HTTP, the console's login form).

docs/api.md "Authentication" and "Rate limits"; docs/decisions.md "API key lifecycle".
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework import exceptions

from campaigns.management.commands.mcp_server import checked_project
from core.auth import api_key_project
from core.client_ip import client_ip
from core.errors import ApplicationError
from core.models import EXPIRING_SOON, ApiKey, KeyState, api_key_state_q
from core.services import api_key_create, api_key_rotate
from core.throttling import AUTH_FAILURE_IDENT, Tier, counter_key
from core.timefmt import format_time
from tests.console import messages_of, url
from tests.factories import ProjectFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db

NOW = datetime(2031, 6, 1, 12, 0, 30, tzinfo=UTC)  # 30 s into a minute window
INVALID = {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API key.", "details": {}}}
KEY_RE = r"hk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"


def keys_state() -> list[Any]:
    return list(ApiKey.objects.order_by("pk").values())


def get(raw: str, ip: str = "127.0.0.1", **extra: Any) -> Any:
    return api_client(raw).get("/admin/push", REMOTE_ADDR=ip, **extra)


def key_with_expiry(expires_at: datetime | None, **kwargs: Any) -> tuple[ApiKey, str]:
    key, raw = create_api_key(ProjectFactory(), **kwargs)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=expires_at)
    key.refresh_from_db()
    return key, raw


# --- the live rule: one function, its SQL form agrees ---------------------------------


@pytest.mark.parametrize(
    ("expires_in", "revoked", "state"),
    [
        (None, False, KeyState.ACTIVE),
        (EXPIRING_SOON + timedelta(seconds=1), False, KeyState.ACTIVE),
        (EXPIRING_SOON, False, KeyState.EXPIRING),
        (timedelta(microseconds=1), False, KeyState.EXPIRING),
        (timedelta(0), False, KeyState.EXPIRED),  # the expiry instant itself is expired
        (-timedelta(days=1), False, KeyState.EXPIRED),
        (timedelta(days=30), True, KeyState.REVOKED),
        (-timedelta(days=1), True, KeyState.REVOKED),
        (None, True, KeyState.REVOKED),
    ],
)
def test_key_state_and_its_query_agree(
    expires_in: timedelta | None, revoked: bool, state: KeyState
) -> None:
    key, _ = key_with_expiry(None if expires_in is None else NOW + expires_in, revoked=revoked)

    assert key.state_at(NOW) == state
    assert key.is_live(NOW) is (state in (KeyState.ACTIVE, KeyState.EXPIRING))
    for each in KeyState:
        matches = ApiKey.objects.filter(api_key_state_q(each, NOW)).filter(pk=key.pk).exists()
        assert matches is (each == state), each
    assert ApiKey.objects.live(NOW).filter(pk=key.pk).exists() is key.is_live(NOW)


# --- expiry -------------------------------------------------------------------------


def test_a_key_works_until_its_expiry_and_then_answers_like_an_unknown_key(db_state) -> None:
    key, raw = key_with_expiry(NOW)

    with time_machine.travel(NOW - timedelta(microseconds=1), tick=False):
        assert get(raw).status_code == 200
    key.refresh_from_db()
    used = (key.last_used_at, key.last_used_ip)
    before, keys_before = db_state(), keys_state()

    with time_machine.travel(NOW, tick=False):
        expired = get(raw)
        unknown = get("hk_000000000000_nope")

    assert expired.status_code == unknown.status_code == 401
    assert expired.json() == unknown.json() == INVALID
    assert expired["WWW-Authenticate"] == 'Bearer realm="herald"'
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == used  # a refused use is not recorded
    assert db_state() == before and keys_state() == keys_before


def test_an_expired_key_is_refused_on_every_door(monkeypatch: pytest.MonkeyPatch) -> None:
    key, raw = key_with_expiry(timezone.now() - timedelta(seconds=1))
    token = base64.b64encode(f"{key.project_id}:{raw}".encode()).decode()

    basic = api_client().post(
        "/admin/compat/moengage/push", {}, HTTP_AUTHORIZATION=f"Basic {token}"
    )
    assert (basic.status_code, basic.json()) == (401, INVALID)
    with pytest.raises(exceptions.AuthenticationFailed):
        api_key_project(raw, key.project_id)
    with pytest.raises(CommandError) as refused:
        checked_project(raw, str(key.project_id))
    assert str(refused.value) == f"HERALD_API_KEY ({key}) has expired."


def test_api_key_create_refuses_an_expiry_that_is_not_in_the_future() -> None:
    project = ProjectFactory()
    with time_machine.travel(NOW, tick=False):
        for bad in (NOW, NOW - timedelta(days=1)):
            with pytest.raises(ApplicationError) as refused:
                api_key_create(project=project, name="k", expires_at=bad)
            assert (refused.value.status, refused.value.code, refused.value.message) == (
                400,
                "VALIDATION_ERROR",
                "expires_at must be in the future.",
            )
            assert refused.value.details == {"field": "expires_at"}
        with pytest.raises(ApplicationError) as naive:
            api_key_create(project=project, name="k", expires_at=datetime(2032, 1, 1))
        assert naive.value.details == {"field": "expires_at"}
        key, _ = api_key_create(project=project, name="k", expires_at=NOW + timedelta(days=30))
    assert ApiKey.objects.get() == key
    assert key.expires_at == NOW + timedelta(days=30)


# --- last use: time and client IP -----------------------------------------------------


def test_last_use_records_the_client_ip_and_a_new_ip_at_once() -> None:
    key, raw = create_api_key(ProjectFactory())

    with time_machine.travel(NOW, tick=False):
        get(raw, "203.0.113.7")
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == (NOW, "203.0.113.7")

    with time_machine.travel(NOW + timedelta(seconds=20), tick=False):
        get(raw, "203.0.113.7")  # same IP within the minute: not written
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == (NOW, "203.0.113.7")

    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        get(raw, "2001:db8::1")  # another IP: written at once
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == (NOW + timedelta(seconds=30), "2001:db8::1")

    with time_machine.travel(NOW + timedelta(seconds=100), tick=False):
        api_key_project(raw, key.project_id)  # MCP over stdio: no client IP
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == (NOW + timedelta(seconds=100), None)


def test_basic_auth_records_the_ip_too() -> None:
    key, raw = create_api_key(ProjectFactory())
    token = base64.b64encode(f"{key.project_id}:{raw}".encode()).decode()
    api_client().post(
        "/admin/compat/moengage/push", {}, HTTP_AUTHORIZATION=f"Basic {token}", REMOTE_ADDR="::1"
    )
    key.refresh_from_db()
    assert key.last_used_ip == "::1"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.9", "10.0.0.2"),  # no trusted proxy: the header is the client's word
        (1, "198.51.100.9", "198.51.100.9"),
        (1, "6.6.6.6, 198.51.100.9", "198.51.100.9"),  # the left entry is forged
        (2, "6.6.6.6, 198.51.100.9, 10.0.0.1", "198.51.100.9"),
        (2, "198.51.100.9", "10.0.0.2"),  # fewer hops than proxies: not through them
        (1, "", "10.0.0.2"),
        (1, "not-an-ip", None),
    ],
)
def test_the_client_ip_behind_trusted_proxies(
    settings: Any, proxies: int, forwarded: str, expected: str | None
) -> None:
    settings.HERALD_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_a_key_records_the_forwarded_ip_behind_a_proxy(settings: Any) -> None:
    settings.HERALD_TRUSTED_PROXIES = 1
    key, raw = create_api_key(ProjectFactory())
    get(raw, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.9")
    key.refresh_from_db()
    assert key.last_used_ip == "198.51.100.9"


# --- rotation -----------------------------------------------------------------------


def test_rotation_keeps_both_keys_working_for_the_grace_then_only_the_new() -> None:
    old, old_raw = create_api_key(ProjectFactory(), scope=ApiKey.Scope.CLIENT, name="app")
    with time_machine.travel(NOW, tick=False):
        new, new_raw = api_key_rotate(key=old)

    assert (new.project_id, new.name, new.scope, new.expires_at) == (
        old.project_id,
        "app",
        "client",
        None,
    )
    assert re.fullmatch(KEY_RE, new_raw) and new_raw != old_raw
    assert (old.expires_at, old.revoked_at, old.replaced_by_id) == (
        NOW + timedelta(hours=24),
        None,
        new.pk,
    )
    old.refresh_from_db()
    assert (old.expires_at, old.replaced_by_id) == (NOW + timedelta(hours=24), new.pk)

    registration = "/v1/projects/{}/users/u-1"
    for raw in (old_raw, new_raw):
        with time_machine.travel(NOW + timedelta(hours=24) - timedelta(seconds=1), tick=False):
            answer = api_client(raw).put(registration.format(old.project_id), {})
            assert answer.status_code in (200, 201), answer.content
    with time_machine.travel(NOW + timedelta(hours=24), tick=False):
        assert api_client(old_raw).put(registration.format(old.project_id), {}).json() == INVALID
        assert api_client(new_raw).put(registration.format(old.project_id), {}).status_code == 200


def test_rotation_gives_the_new_key_the_old_ones_lifetime_from_now() -> None:
    project = ProjectFactory()
    with time_machine.travel(NOW, tick=False):
        old, _ = api_key_create(project=project, name="ci", expires_at=NOW + timedelta(days=90))
    later = NOW + timedelta(days=85)  # 5 days left: sooner than now + grace 7 days
    with time_machine.travel(later, tick=False):
        new, _ = api_key_rotate(key=old, grace=timedelta(days=7))

    assert new.expires_at == later + timedelta(days=90)
    assert old.expires_at == NOW + timedelta(days=90)  # rotation never lengthens a key's life


def test_rotation_with_no_grace_revokes_the_old_key_now() -> None:
    old, old_raw = create_api_key(ProjectFactory())
    with time_machine.travel(NOW, tick=False):
        new, new_raw = api_key_rotate(key=old, grace=timedelta(0))
        assert get(old_raw).json() == INVALID
        assert get(new_raw).status_code == 200
    assert (old.revoked_at, old.expires_at, old.replaced_by_id) == (NOW, None, new.pk)


@pytest.mark.parametrize("kind", ["revoked", "expired", "rotated", "negative grace"])
def test_refused_rotations_change_nothing(kind: str) -> None:
    expires = NOW - timedelta(seconds=1) if kind == "expired" else None
    key, _ = key_with_expiry(expires, revoked=kind == "revoked")
    grace = timedelta(hours=-1) if kind == "negative grace" else timedelta(hours=24)
    if kind == "rotated":
        with time_machine.travel(NOW - timedelta(hours=1), tick=False):
            successor, _ = api_key_rotate(key=key)
    before = keys_state()

    with time_machine.travel(NOW, tick=False), pytest.raises(ApplicationError) as refused:
        api_key_rotate(key=key, grace=grace)

    expected = {
        "revoked": (
            409,
            "API_KEY_NOT_LIVE",
            "This API key is revoked; only a live key can be rotated.",
            {"state": "revoked"},
        ),
        "expired": (
            409,
            "API_KEY_NOT_LIVE",
            "This API key is expired; only a live key can be rotated.",
            {"state": "expired"},
        ),
        "rotated": (
            409,
            "API_KEY_ALREADY_ROTATED",
            "This API key was already rotated; rotate the key that replaced it.",
            {"replaced_by": str(successor) if kind == "rotated" else ""},
        ),
        "negative grace": (
            400,
            "VALIDATION_ERROR",
            "grace must not be negative.",
            {"field": "grace"},
        ),
    }[kind]
    error = refused.value
    assert (error.status, error.code, error.message, error.details) == expected
    assert keys_state() == before


# --- failed authentication, per client IP -------------------------------------------


def fresh_ip() -> str:
    """An address of its own (TEST-NET-3), so no other test or run shares its counter."""
    return f"203.0.113.{random.randint(1, 254)}"


@pytest.fixture
def limited_ip(settings: Any) -> Iterator[str]:
    """Three failed checks a minute allowed, and an IP with no history around NOW."""
    settings.HERALD_AUTH_FAILURES_PER_MINUTE = 3
    ip = fresh_ip()
    tier = Tier(3, 60)
    ident = f"{AUTH_FAILURE_IDENT}:{ip}"
    keys = [counter_key(ident, tier, int(NOW.timestamp() // 60) + d) for d in (-1, 0, 1)]
    cache.delete_many(keys)
    yield ip
    cache.delete_many(keys)


RATE_LIMITED = {
    "error": {
        "code": "RATE_LIMITED",
        "message": "Too many failed authentication attempts from this address. "
        "Expected available in 30 seconds.",
        "details": {"retry_after": 30},
    }
}


def test_failed_checks_from_one_ip_are_limited_before_any_key_is_checked(
    limited_ip: str, db_state
) -> None:
    key, raw = create_api_key(ProjectFactory())
    failures = ["hk_000000000000_nope", f"{raw}x", "garbage"]

    with time_machine.travel(NOW, tick=False):
        ok_before = get(raw, limited_ip)  # successes do not count
        refused = [get(bad, limited_ip) for bad in failures]
        key.refresh_from_db()
        used = (key.last_used_at, key.last_used_ip)
        before, keys_before = db_state(), keys_state()
        limited = [get("hk_000000000000_nope", limited_ip), get(raw, limited_ip)]

    assert ok_before.status_code == 200
    assert [r.status_code for r in refused] == [401, 401, 401]
    for answer in limited:
        assert answer.status_code == 429
        assert answer["Retry-After"] == "30"
        assert answer.json() == RATE_LIMITED
    # Even the valid key was not looked at: its use is not recorded.
    key.refresh_from_db()
    assert (key.last_used_at, key.last_used_ip) == used
    assert db_state() == before and keys_state() == keys_before
    with time_machine.travel(NOW, tick=False):
        other = get(raw, "198.51.100.7")
    assert other.status_code == 200  # another IP with a valid key is not held back


def test_the_failed_check_limit_ends_with_its_minute(limited_ip: str) -> None:
    _key, raw = create_api_key(ProjectFactory())
    with time_machine.travel(NOW, tick=False):
        for _ in range(3):
            get("hk_000000000000_nope", limited_ip)
        assert get(raw, limited_ip).status_code == 429
    with time_machine.travel(NOW + timedelta(seconds=29), tick=False):
        assert get(raw, limited_ip)["Retry-After"] == "1"
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        assert get(raw, limited_ip).status_code == 200
        assert get("hk_000000000000_nope", limited_ip).status_code == 401


def test_requests_without_credentials_are_neither_counted_nor_limited(limited_ip: str) -> None:
    with time_machine.travel(NOW, tick=False):
        anonymous = [api_client().get("/admin/push", REMOTE_ADDR=limited_ip) for _ in range(5)]
        for _ in range(3):
            get("hk_000000000000_nope", limited_ip)
        after = api_client().get("/admin/push", REMOTE_ADDR=limited_ip)
    assert {r.status_code for r in anonymous} == {401}
    assert after.status_code == 401  # no credentials: nothing to guess, the usual 401


def test_basic_auth_failures_count_and_are_limited(limited_ip: str) -> None:
    key, raw = create_api_key(ProjectFactory())
    wrong_user = base64.b64encode(f"{ProjectFactory().pk}:{raw}".encode()).decode()
    right = base64.b64encode(f"{key.project_id}:{raw}".encode()).decode()

    def post(token: str) -> Any:
        return api_client().post(
            "/admin/compat/moengage/push",
            {},
            HTTP_AUTHORIZATION=f"Basic {token}",
            REMOTE_ADDR=limited_ip,
        )

    with time_machine.travel(NOW, tick=False):
        refused = [post(wrong_user), post("bm90LWJhc2lj"), post(wrong_user)]
        limited = post(right)
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert (limited.status_code, limited.json()) == (429, RATE_LIMITED)


@pytest.mark.django_db(transaction=True)
def test_the_mcp_http_door_is_limited_too(live_server: Any, settings: Any) -> None:
    """Over a real server: the client IP comes from X-Forwarded-For (one trusted proxy),
    so this test's address is its own."""
    settings.HERALD_AUTH_FAILURES_PER_MINUTE = 2
    settings.HERALD_TRUSTED_PROXIES = 1
    ip = fresh_ip()
    _key, raw = create_api_key(ProjectFactory())
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
    )

    def post(key: str, forwarded: str = ip) -> httpx2.Response:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {key}",
            "X-Forwarded-For": forwarded,
        }
        return httpx2.post(f"{live_server.url}/mcp", content=body, headers=headers)

    try:
        refused = [post("hk_000000000000_nope"), post("hk_000000000000_nope")]
        limited = post(raw)
        elsewhere = post(raw, forwarded="198.51.100.77")
    finally:
        now = datetime.now(UTC).timestamp()
        cache.delete_many(
            [
                counter_key(f"{AUTH_FAILURE_IDENT}:{ip}", Tier(2, 60), int(now // 60) + d)
                for d in (-1, 0)
            ]
        )
    assert [r.status_code for r in refused] == [401, 401]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert elsewhere.status_code == 200


def test_console_logins_are_limited_per_ip(limited_ip: str, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_superuser("ops", "ops@example.com", "right-password")
    login = url("login")

    def attempt(password: str, ip: str = limited_ip) -> Any:
        client = Client(REMOTE_ADDR=ip)
        return client.post(login, {"username": "ops", "password": password, "next": "/ops/"})

    with time_machine.travel(NOW, tick=False):
        wrong = [attempt("wrong") for _ in range(3)]
        limited = attempt("right-password")
        elsewhere = attempt("right-password", ip="198.51.100.200")

    for answer in wrong:
        assert answer.status_code == 200
        assert "Please enter the correct username and password" in answer.content.decode()
    assert limited.status_code == 200
    assert limited.context["form"].non_field_errors() == [
        "Too many failed logins from your address. Try again in 30 s."
    ]
    assert "_auth_user_id" not in limited.wsgi_request.session
    assert (elsewhere.status_code, elsewhere["Location"]) == (302, "/ops/")


# --- commands -----------------------------------------------------------------------


def run(*args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_create_project_can_give_the_first_key_an_expiry() -> None:
    with time_machine.travel(NOW, tick=False):
        body = json.loads(run("create_project", "Acme", "--expires-in", "30", json=True))
    key = ApiKey.objects.get()
    assert key.expires_at == NOW + timedelta(days=30)
    assert body["api_key"].startswith(f"hk_{key.prefix}_")
    with pytest.raises(CommandError, match=r"^--expires-in must be a number of days, at least 1"):
        run("create_project", "Other", "--expires-in", "0")
    assert ApiKey.objects.count() == 1


def test_rotate_api_key_prints_the_new_key_once_and_the_old_ones_end() -> None:
    old, _ = create_api_key(ProjectFactory(name="Acme"), name="ci")
    with time_machine.travel(NOW, tick=False):
        out = run("rotate_api_key", f"hk_{old.prefix}_…", "--grace-hours", "2")

    new = ApiKey.objects.exclude(pk=old.pk).get()
    lines = out.splitlines()
    assert lines[0] == 'Rotated "ci" of project "Acme".'
    match = re.fullmatch(rf"New API key: ({KEY_RE})", lines[1])
    assert match is not None and match.group(1).startswith(f"hk_{new.prefix}_")
    assert lines[2:] == [
        f"The old key hk_{old.prefix}_… works until 2031-06-01T14:00:30+00:00: "
        "switch your clients before then.",
        "Store the key now: only its hash is kept, it cannot be shown again.",
    ]
    assert get(match.group(1)).status_code == 200


def test_rotate_api_key_json_and_refusals() -> None:
    old, _ = create_api_key(ProjectFactory())
    with time_machine.travel(NOW, tick=False):
        body = json.loads(run("rotate_api_key", old.prefix, "--grace-hours", "0", json=True))
    assert set(body) == {"api_key", "expires_at", "old_key_expires_at", "old_key_revoked_at"}
    assert (body["expires_at"], body["old_key_expires_at"], body["old_key_revoked_at"]) == (
        None,
        None,
        NOW.isoformat(),
    )
    before = keys_state()
    with pytest.raises(CommandError, match=r"^No API key with the prefix 'nope'\.$"):
        run("rotate_api_key", "nope")
    with pytest.raises(CommandError, match=r"^This API key is revoked; only a live key can be"):
        run("rotate_api_key", old.prefix)
    with pytest.raises(CommandError, match=r"^--grace-hours must be a number of hours, 0 or more"):
        run("rotate_api_key", old.prefix, "--grace-hours", "-1")
    assert keys_state() == before


# --- console ------------------------------------------------------------------------

# Console tests keep the clock near the real one: the staff session would have
# expired by NOW.
SOON = (timezone.now() + timedelta(minutes=5)).replace(microsecond=0)


def test_console_add_form_sets_an_expiry(staff: Client) -> None:
    project = ProjectFactory()
    with time_machine.travel(SOON, tick=False):
        response = staff.post(
            url("core_apikey_add"),
            {"project": str(project.pk), "name": "CI", "scope": "admin", "expires_in": "90"},
            follow=True,
        )
    key = ApiKey.objects.get()
    assert key.expires_at == SOON + timedelta(days=90)
    [shown] = [text for level, text in messages_of(response) if level == "warning"]
    assert re.fullmatch(rf"Copy this API key now, it will not be shown again: {KEY_RE}", shown)


def test_console_lists_status_expiry_and_last_use(staff: Client) -> None:
    project = ProjectFactory()
    ids = {}
    for name, expires_in, revoked in [
        ("forever", None, False),
        ("soon", timedelta(days=2), False),
        ("gone", -timedelta(days=1), False),
        ("off", None, True),
    ]:
        key, _ = create_api_key(project, name=name, revoked=revoked)
        ApiKey.objects.filter(pk=key.pk).update(
            expires_at=None if expires_in is None else datetime.now(UTC) + expires_in,
            last_used_at=SOON,
            last_used_ip="198.51.100.4" if name == "forever" else None,
        )
        ids[name] = key.pk

    def listed(state: str) -> set[str]:
        response = staff.get(url("core_apikey_changelist"), {"state": state})
        return {key.name for key in response.context["cl"].result_list}

    assert listed("active") == {"forever"}
    assert listed("expiring") == {"soon"}
    assert listed("expired") == {"gone"}
    assert listed("revoked") == {"off"}
    page = staff.get(url("core_apikey_changelist")).content.decode()
    assert '<span data-key-state="expiring">Expiring soon</span>' in page
    assert f"{format_time(SOON)} from 198.51.100.4" in page
    assert f"{format_time(SOON)} (no IP)" in page
    assert ">Never<" in page
    project_page = staff.get(url("core_project_change", project.pk)).content.decode()
    assert '<span data-key-state="expired">Expired</span>' in project_page
    assert f"{format_time(SOON)} from 198.51.100.4" in project_page


def test_console_rotation_shows_the_new_key_once_and_the_old_keys_end(staff: Client) -> None:
    old, _ = create_api_key(ProjectFactory(), name="ci")
    detail = staff.get(url("core_apikey_change", old.pk)).content.decode()
    assert f'href="{url("core_apikey_rotate", old.pk)}"' in detail

    with time_machine.travel(SOON, tick=False):
        form = staff.get(url("core_apikey_rotate", old.pk))
        response = staff.post(url("core_apikey_rotate", old.pk), {"grace_hours": "1"})

    assert form.status_code == 200 and form.context["rotatable"] is True
    new = ApiKey.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302
    assert response["Location"] == url("core_apikey_change", new.pk)
    page = staff.get(response["Location"])
    [(warning, shown), (info, note)] = messages_of(page)
    match = re.fullmatch(rf"Copy this API key now, it will not be shown again: ({KEY_RE})", shown)
    assert warning == "warning" and match is not None
    assert (info, note) == (
        "info",
        f"The old key hk_{old.prefix}_… keeps working until "
        f"{format_time(SOON + timedelta(hours=1))}; "
        "switch your clients before then.",
    )
    assert "Replaces <a" in page.content.decode()
    old.refresh_from_db()
    assert (old.expires_at, old.replaced_by_id) == (SOON + timedelta(hours=1), new.pk)
    # Once only: the new key's page does not show it again.
    assert match.group(1) not in staff.get(url("core_apikey_change", new.pk)).content.decode()


def test_console_refuses_to_rotate_a_revoked_key(staff: Client) -> None:
    key, _ = create_api_key(ProjectFactory(), revoked=True)
    before = keys_state()

    page = staff.get(url("core_apikey_rotate", key.pk))
    posted = staff.post(url("core_apikey_rotate", key.pk), {"grace_hours": "24"})

    assert 'data-field="rotate-refused"' in page.content.decode()
    assert posted.status_code == 200
    assert "This API key is revoked; only a live key can be rotated." in posted.content.decode()
    assert (
        'data-action="rotate-key"'
        not in staff.get(url("core_apikey_change", key.pk)).content.decode()
    )
    assert keys_state() == before


def test_console_rotation_refuses_an_unknown_grace(staff: Client) -> None:
    key, _ = create_api_key(ProjectFactory())
    before = keys_state()
    posted = staff.post(url("core_apikey_rotate", key.pk), {"grace_hours": "5"})
    assert "Choose how long the old key keeps working." in posted.content.decode()
    assert keys_state() == before
