"""create_project, seed_demo and ensure_admin: exact output, idempotence, working keys."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings

from campaigns.management.commands.seed_demo import demo_devices, simulator_subscriptions
from campaigns.models import PushCampaign
from core.credentials import webpush_missing
from core.fields import reveal_service_account
from core.management.commands.run_stack import REPORT_KEY_ENV, device_behaviour
from core.models import ApiKey, Project, hash_secret
from delivery.models import PushToken
from delivery.simulators.credentials import ensure_demo_credentials
from delivery.simulators.reporting import API_KEY_ENV
from segments.models import AppUser, Segment
from tests.factories import api_client

KEY_RE = r"hk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"


def run(*args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def stored_key(raw: str) -> ApiKey:
    """The row a raw key authenticates as, checked the way core.auth checks it."""
    parts = ApiKey.split(raw)
    assert parts is not None
    prefix, secret = parts
    key = ApiKey.objects.get(prefix=prefix)
    assert key.secret_hash == hash_secret(secret)
    assert secret not in key.secret_hash
    return key


def key_works(raw: str) -> bool:
    return api_client(raw).get("/admin/push").status_code == 200


@pytest.fixture(scope="session")
def simulator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulators")


@pytest.fixture
def demo_settings(settings: Settings, simulator_dir: Path) -> Settings:
    settings.HERALD_SIMULATOR_DIR = simulator_dir
    settings.HERALD_SIMULATOR_HOST = "127.0.0.1"
    settings.HERALD_SIMULATOR_APNS_PORT = 12197
    settings.HERALD_SIMULATOR_FCM_PORT = 12198
    settings.HERALD_SIMULATOR_WEBPUSH_PORT = 12196
    return settings


# --- create_project ------------------------------------------------------------


@pytest.mark.django_db
def test_create_project_prints_id_and_a_working_key_once() -> None:
    out = run("create_project", "Acme iOS")

    project = Project.objects.get()
    lines = out.splitlines()
    assert lines[0] == 'Created project "Acme iOS".'
    assert lines[1] == f"Project id: {project.id}"
    match = re.fullmatch(rf"API key:    ({KEY_RE})", lines[2])
    assert match is not None
    assert lines[3] == "Store the key now: only its hash is kept, it cannot be shown again."
    assert len(lines) == 4
    key = stored_key(match.group(1))
    assert (key.project_id, key.name, key.scope, key.revoked_at) == (
        project.id,
        "initial admin key",
        "admin",
        None,
    )
    assert key_works(match.group(1))


@pytest.mark.django_db
def test_create_project_json() -> None:
    out = run("create_project", "  Acme Android ", json=True)

    assert out.endswith("\n") and out.count("\n") == 1
    body = json.loads(out)
    assert set(body) == {"project_id", "api_key"}
    project = Project.objects.get()
    assert project.name == "Acme Android"
    assert body["project_id"] == str(project.id)
    assert re.fullmatch(KEY_RE, body["api_key"])
    assert stored_key(body["api_key"]).project_id == project.id
    assert key_works(body["api_key"])


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "   "])
def test_create_project_refuses_a_blank_name(name: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("create_project", name)

    assert str(excinfo.value) == "Project name must not be blank."
    assert Project.objects.count() == 0
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
def test_create_project_sets_the_delivery_guarantee() -> None:
    run("create_project", "Acme", delivery_guarantee="at_least_once")
    assert Project.objects.get().delivery_guarantee == "at_least_once"
    run("create_project", "Other")
    assert Project.objects.get(name="Other").delivery_guarantee == "at_most_once"


@pytest.mark.django_db
def test_create_project_refuses_an_unknown_delivery_guarantee_and_creates_nothing() -> None:
    with pytest.raises(CommandError) as excinfo:
        run("create_project", "Acme", delivery_guarantee="exactly_once")

    assert str(excinfo.value) == ("delivery_guarantee must be one of at_most_once, at_least_once.")
    assert Project.objects.count() == 0
    assert ApiKey.objects.count() == 0


# --- seed_demo ---------------------------------------------------------------------

DEMO_USERS = 40
# 40 users: one token each, plus a second platform for users 11, 20, 31, 40,
# plus an FCM web token for users 3 and 28 and a web push subscription for users 5,
# 15, 25 and 35.
DEMO_TOKENS = 50


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_mints_a_new_key_each_run(
    demo_settings: Settings,
) -> None:
    first = json.loads(run("seed_demo", users=DEMO_USERS, json=True))
    second = json.loads(run("seed_demo", users=DEMO_USERS, json=True))

    project = Project.objects.get()
    assert project.name == "Herald Demo"
    assert first == {
        "project_id": str(project.id),
        "api_key": first["api_key"],
        "users": DEMO_USERS,
        "tokens": DEMO_TOKENS,
    }
    assert second == {**first, "api_key": second["api_key"]}
    assert first["api_key"] != second["api_key"]
    assert AppUser.objects.filter(project=project).count() == DEMO_USERS
    assert PushToken.objects.filter(project=project).count() == DEMO_TOKENS
    assert sorted(Segment.objects.values_list("name", flat=True)) == ["French speakers", "Pro plan"]
    assert sorted(PushCampaign.objects.values_list("name", "status")) == [
        ("Pro feature launch", "draft"),
        ("Welcome tour", "draft"),
    ]
    keys = ApiKey.objects.filter(project=project)
    assert keys.count() == 2
    assert all(re.fullmatch(r"demo key \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", k.name) for k in keys)
    # Both keys work: earlier demo keys stay valid.
    assert stored_key(first["api_key"]).revoked_at is None
    assert key_works(first["api_key"]) and key_works(second["api_key"])


@pytest.mark.django_db
def test_seed_demo_with_more_users_adds_only_the_difference(
    demo_settings: Settings,
) -> None:
    run("seed_demo", users=DEMO_USERS, json=True)
    before = dict(PushToken.objects.values_list("token", "app_user__external_id"))
    vapid_key = Project.objects.get().webpush_vapid_public_key

    after = json.loads(run("seed_demo", users=60, json=True))

    # The VAPID keys are made once: new keys would break subscriptions made with them.
    assert Project.objects.get().webpush_vapid_public_key == vapid_key != ""

    subscribe = simulator_subscriptions()
    expected_tokens = sum(len(demo_devices(i, subscribe)) for i in range(1, 61))
    assert (after["users"], after["tokens"]) == (60, expected_tokens)
    assert expected_tokens == 75  # 69 phones and FCM web, 6 web push subscriptions
    now = dict(PushToken.objects.values_list("token", "app_user__external_id"))
    assert {t: now[t] for t in before} == before  # the first 40 users' tokens are untouched
    assert AppUser.objects.filter(external_id="demo-user-0060").exists()


@pytest.mark.django_db
def test_seed_demo_users_and_tokens_look_real(demo_settings: Settings) -> None:
    run("seed_demo", users=200, json=True)

    users = {u.external_id: u for u in AppUser.objects.all()}
    assert sorted(users)[:2] == ["demo-user-0001", "demo-user-0002"]
    assert set(users["demo-user-0001"].attributes) - {"first_name"} == {
        "country",
        "language",
        "timezone",
        "app_version",
        "plan",
        "sessions",
        "beta",
    }
    # Most users have a first name for the Welcome tour's placeholder, some do not.
    named = sum("first_name" in u.attributes for u in users.values())
    assert 100 < named < 200
    languages = Counter(u.attributes["language"] for u in users.values())
    assert {"en", "fr", "de", "es", "pt-BR"} <= set(languages)
    assert len({u.attributes["timezone"] for u in users.values()}) >= 8
    assert {u.attributes["plan"] for u in users.values()} == {"free", "pro"}
    assert all(isinstance(u.attributes["sessions"], int) for u in users.values())
    assert {u.attributes["beta"] for u in users.values()} == {True, False}

    tokens = list(PushToken.objects.select_related("app_user"))
    owners = {t.pk: t.app_user for t in tokens if t.app_user is not None}
    assert len(owners) == len(tokens)  # every demo token belongs to a user
    by_kind = Counter((t.provider, t.platform) for t in tokens)
    assert by_kind == {
        ("apns", "ios"): 110,
        ("fcm", "android"): 110,
        ("fcm", "web"): 8,
        ("webpush", "web"): 20,
    }
    for token in tokens:
        if token.provider == "apns":
            assert re.fullmatch(r"[0-9a-f]{64}", token.token)
        elif token.provider == "webpush":
            # The web push simulator's endpoints, with keys it can decrypt for.
            assert token.token.startswith("https://127.0.0.1:12196/push/")
            assert token.keys is not None and set(token.keys) == {"p256dh", "auth"}
        else:
            assert re.fullmatch(r"[A-Za-z0-9_-]{22}:APA91b[A-Za-z0-9_-]{120}", token.token)
        assert token.locale == owners[token.pk].attributes["language"]
    per_user = Counter(owners[t.pk].external_id for t in tokens if t.platform != "web")
    assert sum(1 for n in per_user.values() if n == 2) == 20  # users with iOS and Android


@pytest.mark.django_db
def test_seed_demo_points_credentials_at_the_simulators(
    demo_settings: Settings, simulator_dir: Path
) -> None:
    run("seed_demo", users=0, json=True)

    project = Project.objects.get()
    creds = ensure_demo_credentials(simulator_dir, fcm_base_url="https://127.0.0.1:12198")
    assert project.apns_team_id == creds.team_id
    assert project.apns_key_id == creds.key_id
    assert project.apns_auth_key.reveal() == creds.auth_key_pem
    assert project.apns_topic == "com.herald.demo"
    assert project.apns_endpoint == "127.0.0.1:12197"
    assert project.apns_ca_file == str(creds.ca_file)
    assert project.apns_use_sandbox is False
    assert reveal_service_account(project.fcm_service_account) == creds.service_account_info
    assert project.fcm_service_account["token_uri"] == "https://127.0.0.1:12198/token"
    assert project.fcm_endpoint == "https://127.0.0.1:12198"
    assert project.fcm_ca_file == str(creds.ca_file)
    assert project.webpush_ca_file == str(creds.ca_file)
    assert project.has_apns_credentials and project.has_fcm_credentials
    assert webpush_missing(project) == []


@pytest.mark.django_db
def test_seed_demo_text_output_prints_the_key_and_no_other_secret(
    demo_settings: Settings,
) -> None:
    run("seed_demo", users=10, json=True)

    out = run("seed_demo", users=12)

    project = Project.objects.get()
    newest = ApiKey.objects.filter(project=project).order_by("-created_at", "-id").first()
    assert newest is not None
    lines = out.splitlines()
    assert lines[0] == 'Demo project "Herald Demo" is ready.'
    assert lines[1] == f"Project id: {project.id}"
    match = re.fullmatch(rf"API key:    ({KEY_RE})", lines[2])
    assert match is not None and stored_key(match.group(1)).pk == newest.pk
    assert lines[3] == "Users:      12 (2 new)"
    assert lines[4] == "Tokens:     15 (3 new)"  # user 11 has iOS and Android
    assert lines[5] == (
        "Providers:  APNs 127.0.0.1:12197, FCM https://127.0.0.1:12198, "
        "web push https://127.0.0.1:12196 (the local simulators)"
    )
    assert lines[6] == "A new key is made on every run; earlier demo keys stay valid."
    assert len(lines) == 7
    assert out.count("hk_") == 1
    assert "PRIVATE KEY" not in out
    secret_lines = project.apns_auth_key.reveal().splitlines()[1:-1]
    secret_lines += project.fcm_service_account["private_key"].reveal().splitlines()[1:-1]
    assert not [line for line in secret_lines if line in out]
    assert project.fcm_service_account["private_key_id"] not in out
    vapid_lines = project.webpush_vapid_private_key.reveal().splitlines()[1:-1]
    assert vapid_lines and not [line for line in vapid_lines if line in out]


@pytest.mark.django_db
def test_seed_demo_refuses_a_negative_user_count(demo_settings: Settings) -> None:
    with pytest.raises(CommandError, match=r"^--users must be 0 or more\.$"):
        run("seed_demo", users=-1)
    assert Project.objects.count() == 0


# --- run_stack's device behaviour ----------------------------------------------------


@pytest.mark.django_db
def test_device_behaviour_gets_a_fresh_client_key_by_environment_only(
    demo_settings: Settings,
) -> None:
    demo = json.loads(run("seed_demo", users=0, json=True))
    options = {
        "project_id": demo["project_id"],
        "base_url": "http://127.0.0.1:8300",
        "open_share": 0.5,
        "click_share": 0.25,
        "goal_share": 0.1,
        "goal_event": "signup",
    }

    first_argv, first_env, _ = device_behaviour(**options)
    argv, env, line = device_behaviour(**options)

    project = Project.objects.get()
    assert set(env) == {REPORT_KEY_ENV} == {API_KEY_ENV}
    assert argv == [
        "--report-url",
        f"http://127.0.0.1:8300/v1/projects/{project.id}/events",
        "--report-open-share",
        "0.5",
        "--report-click-share",
        "0.25",
        "--report-goal-share",
        "0.1",
        "--report-goal-event",
        "signup",
    ]
    assert first_argv == argv and "hk_" not in " ".join(argv)
    assert (
        line == 'device behaviour on: 50% of pushes opened, 25% of those clicked, 10% send "signup"'
    )
    old, new = stored_key(first_env[REPORT_KEY_ENV]), stored_key(env[REPORT_KEY_ENV])
    assert old.revoked_at is not None and new.revoked_at is None  # one valid at a time
    assert (new.project_id, new.name, new.scope) == (project.id, "demo device behaviour", "client")
    # The demo's admin key is not touched; the device key may only do what an app does.
    assert stored_key(demo["api_key"]).revoked_at is None
    device = api_client(env[REPORT_KEY_ENV])
    assert device.put(f"/v1/projects/{project.id}/users/demo-user-9999", {}).status_code in (
        200,
        201,
    )
    assert device.get("/admin/push").status_code == 403
    assert api_client(first_env[REPORT_KEY_ENV]).get("/admin/push").status_code == 401


# --- ensure_admin ------------------------------------------------------------------


@pytest.mark.django_db
def test_ensure_admin_creates_then_updates_one_superuser(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    settings.HERALD_PUBLIC_URL = "http://127.0.0.1:8000"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    monkeypatch.delenv("HERALD_ADMIN_PASSWORD", raising=False)
    user_model = get_user_model()

    first = run("ensure_admin")
    user = user_model.objects.get()
    assert first == (
        'Created superuser "admin" (password from the demo default). '
        "Log in at http://127.0.0.1:8000/ops/\n"
    )
    assert (user.username, user.is_staff, user.is_superuser, user.is_active) == (
        "admin",
        True,
        True,
        True,
    )
    assert user.check_password("herald-admin")

    user_model.objects.filter(pk=user.pk).update(is_active=False, is_staff=False)
    monkeypatch.setenv("HERALD_ADMIN_PASSWORD", "from-the-environment")
    second = run("ensure_admin")
    user.refresh_from_db()
    assert second.startswith('Updated superuser "admin" (password from HERALD_ADMIN_PASSWORD).')
    assert user_model.objects.count() == 1
    assert (user.is_staff, user.is_superuser, user.is_active) == (True, True, True)
    assert user.check_password("from-the-environment")

    third = run("ensure_admin", username="admin", password="given-on-the-command-line")
    user.refresh_from_db()
    assert third.startswith('Updated superuser "admin" (password from --password).')
    assert user.check_password("given-on-the-command-line")
    assert "given-on-the-command-line" not in third
    assert user_model.objects.count() == 1


@pytest.mark.django_db
def test_ensure_admin_refuses_a_short_password() -> None:
    with pytest.raises(CommandError) as excinfo:
        run("ensure_admin", password="short")

    assert str(excinfo.value) == (
        "This password is too short. It must contain at least 8 characters."
    )
    assert get_user_model().objects.count() == 0
