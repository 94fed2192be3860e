"""core.credentials: the one check on a project's APNs and FCM secrets, and the doors
that call it (project_update - so seed_demo and the admin -, create_project, the
provider configs)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.core.management.base import CommandError

from core.credentials import (
    InvalidCredentials,
    apns_missing,
    apns_status,
    clean_apns_auth_key,
    clean_apns_certificate,
    clean_fcm_service_account,
    fcm_missing,
    fcm_status,
    parse_fcm_service_account,
)
from core.fields import reveal_service_account
from core.models import ApiKey, Project
from core.services import project_update
from delivery.credentials import MissingCredentials, apns_config, fcm_config
from delivery.simulators.credentials import DemoCredentials
from tests.factories import ProjectFactory

P8_ERROR = "Not a PEM private key: paste the whole .p8 file, BEGIN/END lines included."


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def refusal(call: Any, *args: Any) -> tuple[str, str, dict[str, Any]]:
    with pytest.raises(InvalidCredentials) as excinfo:
        call(*args)
    return excinfo.value.code, excinfo.value.message, excinfo.value.details


# --- the cleaners --------------------------------------------------------------------


def test_a_p8_key_is_kept_with_one_trailing_newline(demo_credentials: DemoCredentials) -> None:
    pasted = f"\n  {demo_credentials.auth_key_pem.strip()}  \n\n"

    assert clean_apns_auth_key(pasted) == demo_credentials.auth_key_pem.strip() + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", P8_ERROR),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", P8_ERROR),
        (
            pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "An APNs .p8 key is an EC (P-256) private key.",
        ),
    ],
    ids=["text", "bad-base64", "rsa-key"],
)
def test_a_bad_p8_key_is_refused(text: str, message: str) -> None:
    assert refusal(clean_apns_auth_key, text) == (
        "INVALID_CREDENTIALS",
        message,
        {"field": "apns_auth_key"},
    )


def test_a_certificate_needs_its_private_key(demo_credentials: DemoCredentials) -> None:
    cert = demo_credentials.tls_cert_file.read_text()
    key = demo_credentials.tls_key_file.read_text()

    assert clean_apns_certificate(cert + key) == (cert + key).strip() + "\n"
    assert refusal(clean_apns_certificate, cert) == (
        "INVALID_CREDENTIALS",
        "Paste the certificate's private key after it (PEM).",
        {"field": "apns_certificate"},
    )
    assert refusal(clean_apns_certificate, key) == (
        "INVALID_CREDENTIALS",
        "No PEM certificate found.",
        {"field": "apns_certificate"},
    )


def test_a_service_account_is_returned_as_given(demo_credentials: DemoCredentials) -> None:
    text = demo_credentials.fcm_service_account_file.read_text()

    assert parse_fcm_service_account(text) == demo_credentials.service_account_info


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "authorized_user"}, '"type" must be "service_account".'),
        ({"private_key": "nope"}, '"private_key" is not a PEM private key.'),
        (
            {"private_key": pem(ec.generate_private_key(ec.SECP256R1()))},
            '"private_key" must be an RSA key.',
        ),
        ({"client_email": "", "token_uri": None}, "Missing keys: client_email, token_uri."),
    ],
    ids=["type", "not-pem", "ec-key", "missing"],
)
def test_a_bad_service_account_is_refused(
    demo_credentials: DemoCredentials, change: dict[str, Any], message: str
) -> None:
    info = {**demo_credentials.service_account_info, **change}

    assert refusal(clean_fcm_service_account, info) == (
        "INVALID_CREDENTIALS",
        message,
        {"field": "fcm_service_account"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "Not valid JSON."),
        ("[1]", "The service account must be a JSON object."),
        (
            '{"type": "service_account"}',
            "Missing keys: project_id, private_key, client_email, token_uri.",
        ),
    ],
)
def test_a_pasted_service_account_is_refused(text: str, message: str) -> None:
    assert refusal(parse_fcm_service_account, text) == (
        "INVALID_CREDENTIALS",
        message,
        {"field": "fcm_service_account"},
    )


# --- what a project lacks ------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_project_lacks_everything() -> None:
    project = ProjectFactory.create()

    assert apns_missing(project) == ["topic", "team id + key id + .p8 key, or a certificate"]
    assert fcm_missing(project) == ["service account JSON"]
    assert (project.has_apns_credentials, project.has_fcm_credentials) == (False, False)
    assert apns_status(project) == ("missing (topic; team id + key id + .p8 key, or a certificate)")
    assert fcm_status(project) == "missing (service account JSON)"


@pytest.mark.django_db
def test_a_configured_project_lacks_nothing(configured_project: Project) -> None:
    assert (apns_missing(configured_project), fcm_missing(configured_project)) == ([], [])
    assert apns_status(configured_project) == "configured (token auth, production)"
    assert fcm_status(configured_project) == "configured (project herald-demo)"
    assert apns_config(configured_project).topic == configured_project.apns_topic
    assert fcm_config(configured_project).project_id == "herald-demo"


@pytest.mark.django_db
def test_a_service_account_without_token_uri_cannot_send(configured_project: Project) -> None:
    info = dict(configured_project.fcm_service_account)
    del info["token_uri"]
    configured_project.fcm_service_account = info

    assert not configured_project.has_fcm_credentials
    assert fcm_status(configured_project) == "missing (service account keys: token_uri)"
    with pytest.raises(MissingCredentials) as excinfo:
        fcm_config(configured_project)
    assert str(excinfo.value) == (
        "FCM credentials are not configured for this project "
        "(missing service account keys: token_uri)."
    )


@pytest.mark.django_db
def test_a_send_without_a_topic_says_so(configured_project: Project) -> None:
    configured_project.apns_topic = ""

    with pytest.raises(MissingCredentials) as excinfo:
        apns_config(configured_project)

    assert str(excinfo.value) == (
        "APNs credentials are not configured for this project (missing topic)."
    )


# --- the doors -----------------------------------------------------------------------


@pytest.mark.django_db
def test_project_update_refuses_a_bad_key_and_changes_nothing(
    configured_project: Project, demo_credentials: DemoCredentials
) -> None:
    with pytest.raises(InvalidCredentials) as excinfo:
        project_update(
            project=configured_project,
            fields={"apns_topic": "com.other", "apns_auth_key": "not a key"},
        )

    assert (excinfo.value.message, excinfo.value.details) == (P8_ERROR, {"field": "apns_auth_key"})
    configured_project.refresh_from_db()
    assert configured_project.apns_topic == demo_credentials.topic
    assert configured_project.apns_auth_key.reveal() == demo_credentials.auth_key_pem


@pytest.mark.django_db
def test_project_update_removes_a_secret_given_empty(configured_project: Project) -> None:
    project_update(project=configured_project, fields={"fcm_service_account": {}})

    configured_project.refresh_from_db()
    assert reveal_service_account(configured_project.fcm_service_account) == {}


def create_project(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("create_project", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_create_project_stores_credentials_from_files(demo_credentials: DemoCredentials) -> None:
    body = create_project(
        "With creds",
        "--apns-team-id",
        demo_credentials.team_id,
        "--apns-key-id",
        demo_credentials.key_id,
        "--apns-key-file",
        str(demo_credentials.apns_key_file),
        "--apns-topic",
        demo_credentials.topic,
        "--fcm-service-account-file",
        str(demo_credentials.fcm_service_account_file),
    )

    project = Project.objects.get(pk=body["project_id"])
    assert (project.has_apns_credentials, project.has_fcm_credentials) == (True, True)
    assert project.apns_auth_key.reveal() == demo_credentials.auth_key_pem
    assert (
        reveal_service_account(project.fcm_service_account) == demo_credentials.service_account_info
    )
    assert project.apns_use_sandbox is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--apns-key-file", "not a key", P8_ERROR),
        ("--fcm-service-account-file", '{"type": "x"}', "Missing keys: project_id, "),
    ],
)
def test_create_project_refuses_bad_credentials_and_creates_nothing(
    tmp_path: Path, option: str, content: str, message: str
) -> None:
    bad = tmp_path / "secret"
    bad.write_text(content)

    with pytest.raises(CommandError) as excinfo:
        create_project("Broken", option, str(bad))

    assert str(excinfo.value).startswith(message)
    assert (Project.objects.count(), ApiKey.objects.count()) == (0, 0)
