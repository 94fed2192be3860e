"""No provider private key leaves Herald readable (issue 14): a realistic flow -
credentials stored by `create_project` and pasted in the console, test pushes sent
through the simulators, the console's project pages listed, a credentials error
triggered - then a dump of the whole database, every log record and every response
body and command output are searched for the keys' PEM body lines. None is found.
The search is shown to find them in plaintext, so it can fail.
"""

from __future__ import annotations

import io
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import Client

from core.models import Project
from delivery.simulators.credentials import ensure_demo_credentials
from delivery.simulators.server import SimulatorServer
from tests.console import url
from tests.core.test_admin import project_form
from tests.factories import AppUserFactory, PushTokenFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db(transaction=True)

APNS_TOKEN = "ab" * 32
FCM_TOKEN = "f" + "y" * 150


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines between BEGIN and END: the key material itself."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def leaks(text: str, needles: list[str]) -> list[str]:
    return [needle for needle in needles if needle in text]


def database_dump() -> str:
    """The whole test database as text, the way an operator would back it up."""
    if connection.vendor != "postgresql":
        connection.ensure_connection()
        return "\n".join(connection.connection.iterdump())
    params = connection.settings_dict
    argv = ["pg_dump", "--no-owner", "-h", params["HOST"] or "127.0.0.1", "-U", params["USER"]]
    if params["PORT"]:
        argv += ["-p", str(params["PORT"])]
    dumped = subprocess.run(
        [*argv, params["NAME"]], capture_output=True, text=True, check=True, timeout=60
    )
    return dumped.stdout


def test_no_private_key_is_readable_in_the_database_logs_or_any_response(
    api: Any,
    web_project: Project,
    sim: SimulatorServer,
    staff: Client,
    tmp_path: Path,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    captured: list[str] = []
    creds = sim.credentials
    pasted = ensure_demo_credentials(tmp_path / "pasted")

    # Credentials stored by the command line ...
    out = io.StringIO()
    call_command(
        "create_project",
        "From files",
        "--apns-team-id",
        creds.team_id,
        "--apns-key-id",
        creds.key_id,
        "--apns-key-file",
        str(creds.apns_key_file),
        "--apns-topic",
        creds.topic,
        "--fcm-service-account-file",
        str(creds.fcm_service_account_file),
        stdout=out,
    )
    captured.append(out.getvalue())
    from_files = Project.objects.get(name="From files")
    # ... and pasted into the console, then every project page looked at.
    response = staff.post(
        url("core_project_change", from_files.pk),
        project_form(from_files, set_apns_auth_key=pasted.auth_key_pem),
        follow=True,
    )
    assert response.status_code == 200
    captured.append(response.content.decode())
    for page in (
        url("core_project_changelist"),
        url("core_project_change", from_files.pk),
        url("core_project_change", web_project.pk),
        "/ops/",
    ):
        response = staff.get(page)
        assert response.status_code == 200, page
        captured.append(response.content.decode())

    # Test pushes through the simulators, to each provider.
    user = AppUserFactory.create(project=web_project)
    PushTokenFactory.create(
        project=web_project, app_user=user, token=FCM_TOKEN, provider="fcm", platform="android"
    )
    test_url = f"/admin/projects/{web_project.id}/push/campaigns/test"
    for body in (
        {"device_token": APNS_TOKEN, "provider": "apns"},
        {"app_user_id": str(user.id)},
    ):
        response = api.client.post(test_url, {"title": "T", "body": "B", **body})
        assert response.status_code == 200, response.json()
        captured.append(response.content.decode())

    # A credentials error: a project whose key was written under a key since dropped.
    in_use = list(settings.HERALD_SECRETS_KEYS)
    settings.HERALD_SECRETS_KEYS = [Fernet.generate_key().decode()]
    orphan = Project.objects.create(
        name="Orphaned",
        apns_team_id=creds.team_id,
        apns_key_id=creds.key_id,
        apns_auth_key=pasted.auth_key_pem,
        apns_topic=creds.topic,
    )
    settings.HERALD_SECRETS_KEYS = in_use
    _, raw_key = create_api_key(orphan)
    refused = api_client(raw_key).post(
        f"/admin/projects/{orphan.id}/push/campaigns/test",
        {"title": "T", "body": "B", "device_token": APNS_TOKEN, "provider": "apns"},
    )
    assert refused.status_code == 502
    assert "APNs credentials are unreadable" in refused.json()["error"]["message"]
    captured.append(refused.content.decode())
    captured.append(repr(list(Project.objects.all())) + str(orphan.__dict__))

    vapid = web_project.webpush_vapid_private_key.reveal()  # the test may look; no one else
    needles = [
        *pem_body_lines(creds.auth_key_pem),
        *pem_body_lines(str(creds.service_account_info["private_key"])),
        *pem_body_lines(pasted.auth_key_pem),
        *pem_body_lines(vapid),
    ]
    dump = database_dump()
    logs = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )

    # The search works: it finds the material in plaintext, and it sees the projects
    # table (the dump holds the stored tokens) and the logs of the pushes.
    assert len(leaks(creds.auth_key_pem + vapid, needles)) >= 6
    assert Project.objects.get(pk=from_files.pk).apns_auth_key.token in dump
    assert caplog.records
    assert leaks(dump, needles) == []
    assert leaks(logs, needles) == []
    assert leaks("\n".join(captured), needles) == []
