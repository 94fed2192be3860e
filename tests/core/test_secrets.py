"""Credentials encrypted at rest (core/secrets.py, core/fields.py): what is stored,
the data migration both ways, rotation, the key's configuration and its checks."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from core.checks import secrets_key_configured
from core.fields import reveal_service_account
from core.management.commands.run_stack import production_problems
from core.models import Project
from core.secrets import (
    Sealed,
    SecretsKeyMissing,
    SecretUnreadable,
    configured_keys,
    ensure_local_key,
    looks_sealed,
)
from delivery.credentials import MissingCredentials, apns_config, fcm_config, webpush_config
from delivery.simulators.credentials import DemoCredentials
from tests.factories import ProjectFactory

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
STORED_SECRETS_SQL = (
    "SELECT apns_auth_key, apns_certificate, webpush_vapid_private_key, fcm_service_account "
    "FROM projects WHERE id = %s"
)


def stored_row(project: Project) -> tuple[Any, ...]:
    """The secret columns exactly as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute(STORED_SECRETS_SQL, [project.pk])
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def stored_account(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value)


def body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines()[1:-1] if line]


# --- what is stored ----------------------------------------------------------------


def test_a_sealed_value_never_shows_itself() -> None:
    sealed = Sealed.seal("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")

    assert looks_sealed(sealed.token) and "abc" not in sealed.token
    assert (str(sealed), repr(sealed), f"{sealed}") == ("<sealed>",) * 3
    assert sealed.reveal().splitlines()[1] == "abc"
    assert bool(sealed) and not Sealed() and str(Sealed()) == "<sealed: empty>"


@pytest.mark.django_db
def test_the_database_and_dumpdata_hold_only_tokens(
    configured_project: Project, demo_credentials: DemoCredentials
) -> None:
    auth_key, certificate, vapid, account = stored_row(configured_project)
    info = stored_account(account)

    assert looks_sealed(auth_key) and (certificate, vapid) == ("", "")
    assert looks_sealed(info["private_key"])
    # The non-secret parts stay readable for the console's status line.
    assert info["project_id"] == "herald-demo" and info["client_email"]
    dump = io.StringIO()
    call_command("dumpdata", "core.project", stdout=dump)
    secrets = body_lines(demo_credentials.auth_key_pem) + body_lines(
        demo_credentials.service_account_info["private_key"]
    )
    assert [line for line in secrets if line in dump.getvalue()] == []
    assert auth_key in dump.getvalue()  # the dump carries the token, restorable


@pytest.mark.django_db
def test_loaddata_restores_a_dump_without_encrypting_twice(
    configured_project: Project, demo_credentials: DemoCredentials, tmp_path: Path
) -> None:
    dump = tmp_path / "projects.json"
    call_command("dumpdata", "core.project", output=str(dump))
    Project.objects.filter(pk=configured_project.pk).update(apns_auth_key="")

    call_command("loaddata", str(dump), stdout=io.StringIO())

    restored = Project.objects.get(pk=configured_project.pk)
    assert restored.apns_auth_key.reveal() == demo_credentials.auth_key_pem
    assert apns_config(restored).auth_key_pem == demo_credentials.auth_key_pem


@pytest.mark.django_db
def test_presence_checks_and_status_lines_do_not_decrypt(
    configured_project: Project, settings: Any
) -> None:
    settings.HERALD_SECRETS_KEYS = [KEY_B]  # the stored tokens are unreadable now
    project = Project.objects.get(pk=configured_project.pk)

    assert project.has_apns_credentials and project.has_fcm_credentials
    with pytest.raises(SecretUnreadable):
        project.apns_auth_key.reveal()


# --- the data migration --------------------------------------------------------------


def _historical_apps(migration: str) -> Any:
    return MigrationLoader(connection).project_state(("core", migration)).apps


@pytest.mark.django_db
def test_the_migration_encrypts_plaintext_rows_and_its_reverse_decrypts(
    demo_credentials: DemoCredentials,
) -> None:
    migration = MigrationExecutor(connection).loader.get_migration(
        "core", "0007_credentials_encrypted_at_rest"
    )
    module = __import__(migration.__module__, fromlist=["encrypt_rows"])
    project = ProjectFactory.create()
    pem = demo_credentials.auth_key_pem
    account = demo_credentials.service_account_info
    plain = _historical_apps("0006_heartbeats").get_model("core", "Project")
    plain.objects.filter(pk=project.pk).update(
        apns_auth_key=pem, fcm_service_account=account, webpush_vapid_private_key=""
    )
    assert stored_row(project)[0] == pem  # as an old release left it

    module.encrypt_rows(_historical_apps("0006_heartbeats"), None)
    first = stored_row(project)
    module.encrypt_rows(_historical_apps("0006_heartbeats"), None)  # again: unchanged

    assert stored_row(project) == first
    assert looks_sealed(first[0]) and looks_sealed(stored_account(first[3])["private_key"])
    loaded = Project.objects.get(pk=project.pk)
    assert loaded.apns_auth_key.reveal() == pem
    assert reveal_service_account(loaded.fcm_service_account) == account

    module.decrypt_rows(_historical_apps("0006_heartbeats"), None)

    auth_key, _, vapid, stored = stored_row(project)
    assert (auth_key, vapid, stored_account(stored)) == (pem, "", account)


# --- rotation ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_rotation_re_encrypts_under_the_new_key_and_sending_configs_still_build(
    settings: Any, demo_credentials: DemoCredentials
) -> None:
    settings.HERALD_SECRETS_KEYS = [KEY_A]
    project = ProjectFactory.create(
        apns_team_id=demo_credentials.team_id,
        apns_key_id=demo_credentials.key_id,
        apns_auth_key=demo_credentials.auth_key_pem,
        apns_topic=demo_credentials.topic,
        fcm_service_account=demo_credentials.service_account_info,
        webpush_vapid_private_key=demo_credentials.auth_key_pem,  # a P-256 key too
        webpush_vapid_public_key="x",
        webpush_vapid_subject="mailto:ops@example.com",
    )
    ProjectFactory.create()  # no secrets: nothing to do
    settings.HERALD_SECRETS_KEYS = [KEY_B, KEY_A]
    out = io.StringIO()

    call_command("rotate_secrets", "--batch-size", "1", stdout=out)

    first, *rest = out.getvalue().splitlines()
    # Projects go in id (UUID) order: the one without secrets may come first.
    assert first in {
        f"1/2 projects: {n} secrets re-encrypted, 0 already under the newest key" for n in (0, 3)
    }
    assert rest == [
        "2/2 projects: 3 secrets re-encrypted, 0 already under the newest key",
        "Done: 2 projects, 3 secrets re-encrypted, 0 already under the newest key, 0 unreadable.",
    ]
    settings.HERALD_SECRETS_KEYS = [KEY_B]  # the old key dropped
    rotated = Project.objects.get(pk=project.pk)
    assert apns_config(rotated).auth_key_pem == demo_credentials.auth_key_pem
    assert fcm_config(rotated).service_account_info == demo_credentials.service_account_info
    assert webpush_config(rotated).vapid_private_key == demo_credentials.auth_key_pem
    again = io.StringIO()
    call_command("rotate_secrets", stdout=again)
    assert again.getvalue().splitlines()[-1] == (
        "Done: 2 projects, 0 secrets re-encrypted, 3 already under the newest key, 0 unreadable."
    )
    assert stored_row(rotated) == stored_row(project)


@pytest.mark.django_db
def test_rotation_names_what_no_key_opens_and_fails_after_the_rest(
    settings: Any, configured_project: Project
) -> None:
    settings.HERALD_SECRETS_KEYS = [KEY_A]
    readable = ProjectFactory.create(apns_auth_key="-----BEGIN x-----\nabc\n-----END x-----\n")
    before = stored_row(configured_project)
    out = io.StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("rotate_secrets", stdout=out)

    assert str(refused.value) == (
        f"No configured key decrypts: project {configured_project.pk} apns_auth_key; "
        f"project {configured_project.pk} fcm_service_account. Add the key they were written "
        "with to HERALD_SECRETS_KEY and run again, or paste these credentials anew."
    )
    assert stored_row(configured_project) == before
    assert Project.objects.get(pk=readable.pk).apns_auth_key.reveal().splitlines()[1] == "abc"


@pytest.mark.django_db
def test_a_credential_no_key_opens_fails_sending_with_a_message_naming_no_secret(
    settings: Any, configured_project: Project
) -> None:
    settings.HERALD_SECRETS_KEYS = [KEY_A]
    project = Project.objects.get(pk=configured_project.pk)

    with pytest.raises(MissingCredentials) as apns:
        apns_config(project)
    with pytest.raises(MissingCredentials) as fcm:
        fcm_config(project)

    assert str(apns.value) == (
        "APNs credentials are unreadable: a stored credential cannot be decrypted with the "
        "configured HERALD_SECRETS_KEY (was its key removed before `manage.py rotate_secrets` "
        "ran?)"
    )
    assert str(fcm.value).startswith("FCM credentials are unreadable: ")


# --- the key's configuration --------------------------------------------------------


def test_a_local_install_generates_its_key_once_readable_only_by_its_owner(
    settings: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "var" / "secrets.key"
    settings.HERALD_SECRETS_KEYS = []
    settings.HERALD_SECRETS_LOCAL_KEY_FILE = key_file

    first = configured_keys()

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first == [key_file.read_text().strip()] == configured_keys()
    assert ensure_local_key(key_file) == first[0]
    assert Sealed.seal("x").reveal() == "x"
    assert secrets_key_configured() == []


def test_a_deployment_without_a_key_is_refused_everywhere(settings: Any) -> None:
    settings.HERALD_SECRETS_KEYS = []
    settings.HERALD_SECRETS_LOCAL_KEY_FILE = None  # SECRET_KEY is set

    [error] = secrets_key_configured()
    assert (error.id, error.msg) == (
        "core.E001",
        "HERALD_SECRETS_KEY is not set (required when SECRET_KEY is set)",
    )
    assert "HERALD_SECRETS_KEY (Fernet keys, comma-separated, the same on every node)" in (
        production_problems()
    )
    with pytest.raises(SecretsKeyMissing, match=r"^HERALD_SECRETS_KEY is not set\. "):
        Sealed.seal("x")
    assert Sealed.seal("").token == ""  # nothing to encrypt needs no key


def test_a_malformed_key_is_named_by_position_never_echoed(settings: Any) -> None:
    settings.HERALD_SECRETS_KEYS = [KEY_A, "not-a-key"]

    [error] = secrets_key_configured()

    assert error.msg == (
        "HERALD_SECRETS_KEY: key 2 of 2 is not a Fernet key (32 url-safe base64-encoded bytes)"
    )
    assert "not-a-key" not in error.msg + str(error.hint)
    assert production_problems()[-1] == error.msg


def test_make_run_generates_the_local_key_before_anything_else_and_says_so(
    settings: Any, tmp_path: Path
) -> None:
    from core.management.commands.run_stack import Command

    key_file = tmp_path / "secrets.key"
    settings.HERALD_SECRETS_KEYS = []
    settings.HERALD_SECRETS_LOCAL_KEY_FILE = key_file
    out = io.StringIO()
    command = Command(stdout=out)

    command._local_secrets_key()
    command._local_secrets_key()  # kept: said once

    assert out.getvalue().splitlines() == [
        f"Generated the local secrets key {key_file} (encrypts provider credentials; set "
        "HERALD_SECRETS_KEY in production, docs/deploy.md)."
    ]
    Fernet(key_file.read_text().strip())  # a valid key
