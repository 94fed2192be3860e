"""The operator console (/ops/) as a whole and core's pages: every page renders,
project secrets stay hidden and are validated, API keys are shown once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from core.admin import EstimatedCountPaginator
from core.fields import reveal_service_account
from core.models import ApiKey, Project, hash_secret
from delivery.models import PushDelivery
from delivery.simulators.credentials import DemoCredentials, ensure_demo_credentials
from tests.console import messages_of, project_form, url
from tests.factories import (
    ProjectFactory,
    PushDeliveryFactory,
    api_client,
    create_api_key,
)

CHANGELISTS = [
    "core_project",
    "core_apikey",
    "segments_appuser",
    "segments_segment",
    "delivery_pushtoken",
    "delivery_pushdelivery",
    "campaigns_pushcampaign",
]
ADDABLE = [name for name in CHANGELISTS if name != "delivery_pushdelivery"]


def secret_lines(credentials: DemoCredentials) -> list[str]:
    """The base64 body lines of both stored private keys."""
    apns = credentials.auth_key_pem.splitlines()[1:-1]
    fcm = str(credentials.service_account_info["private_key"]).splitlines()[1:-1]
    return [line for line in apns + fcm if line]


# --- every page renders ------------------------------------------------------------


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelist_renders(staff: Client, some_of_everything: dict[str, Any], name: str) -> None:
    response = staff.get(url(f"{name}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("name", CHANGELISTS)
def test_change_page_renders(staff: Client, some_of_everything: dict[str, Any], name: str) -> None:
    response = staff.get(url(f"{name}_change", some_of_everything[name].pk))
    assert response.status_code == 200


@pytest.mark.parametrize("name", ADDABLE)
def test_add_page_renders(staff: Client, name: str) -> None:
    assert staff.get(url(f"{name}_add")).status_code == 200


def test_project_change_form_never_shows_stored_secrets(
    staff: Client, configured_project: Project, demo_credentials: DemoCredentials
) -> None:
    response = staff.get(url("core_project_change", configured_project.pk))

    page = response.content.decode()
    assert response.status_code == 200
    assert "PRIVATE KEY" not in page
    assert [line for line in secret_lines(demo_credentials) if line in page] == []
    assert str(demo_credentials.service_account_info["private_key_id"]) not in page
    assert "APNs: configured (token auth, production)<br>FCM: configured (project herald-demo)" in (
        page
    )
    assert re.search(r'<textarea name="set_apns_auth_key"[^>]*>\s*</textarea>', page)
    assert re.search(r'<textarea name="set_fcm_service_account"[^>]*>\s*</textarea>', page)


def test_project_credentials_show_missing_for_a_new_project(staff: Client) -> None:
    project = ProjectFactory.create()

    page = staff.get(url("core_project_change", project.pk)).content.decode()

    assert (
        "APNs: missing (topic; team id + key id + .p8 key, or a certificate)<br>"
        "FCM: missing (service account JSON)"
    ) in page


def test_saving_a_project_with_empty_secret_fields_keeps_the_stored_secrets(
    staff: Client, configured_project: Project, demo_credentials: DemoCredentials
) -> None:
    response = staff.post(
        url("core_project_change", configured_project.pk),
        project_form(configured_project, name="Renamed", apns_endpoint="127.0.0.1:2197"),
    )

    assert response.status_code == 302
    configured_project.refresh_from_db()
    assert configured_project.name == "Renamed"
    assert configured_project.apns_endpoint == "127.0.0.1:2197"
    assert configured_project.apns_auth_key.reveal() == demo_credentials.auth_key_pem
    assert (
        reveal_service_account(configured_project.fcm_service_account)
        == demo_credentials.service_account_info
    )


def test_filled_secret_fields_overwrite_and_clear_removes(
    staff: Client, configured_project: Project, tmp_path: Path
) -> None:
    other = ensure_demo_credentials(tmp_path)

    staff.post(
        url("core_project_change", configured_project.pk),
        project_form(
            configured_project,
            set_apns_auth_key=other.auth_key_pem,
            clear_fcm_service_account="on",
        ),
    )

    configured_project.refresh_from_db()
    assert configured_project.apns_auth_key.reveal() == other.auth_key_pem.strip() + "\n"
    assert reveal_service_account(configured_project.fcm_service_account) == {}
    assert configured_project.has_apns_credentials
    assert not configured_project.has_fcm_credentials


def test_invalid_credentials_are_refused_and_nothing_changes(
    staff: Client, configured_project: Project, demo_credentials: DemoCredentials
) -> None:
    response = staff.post(
        url("core_project_change", configured_project.pk),
        project_form(
            configured_project,
            set_apns_auth_key="not a key",
            set_fcm_service_account='{"type": "service_account"}',
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {
        "set_apns_auth_key": [
            "Not a PEM private key: paste the whole .p8 file, BEGIN/END lines included."
        ],
        "set_fcm_service_account": [
            "Missing keys: project_id, private_key, client_email, token_uri."
        ],
    }
    configured_project.refresh_from_db()
    assert configured_project.apns_auth_key.reveal() == demo_credentials.auth_key_pem
    assert (
        reveal_service_account(configured_project.fcm_service_account)
        == demo_credentials.service_account_info
    )


def test_delivery_guarantee_is_set_in_the_admin_and_a_bad_one_changes_nothing(
    staff: Client, configured_project: Project
) -> None:
    change = url("core_project_change", configured_project.pk)

    refused = staff.post(
        change, project_form(configured_project, name="Renamed", delivery_guarantee="twice")
    )
    assert refused.status_code == 200
    assert list(refused.context["adminform"].form.errors) == ["delivery_guarantee"]
    configured_project.refresh_from_db()
    assert (configured_project.name, configured_project.delivery_guarantee) == (
        "Configured",
        "at_most_once",
    )

    saved = staff.post(change, project_form(configured_project, delivery_guarantee="at_least_once"))
    assert saved.status_code == 302
    configured_project.refresh_from_db()
    assert configured_project.delivery_guarantee == "at_least_once"


def test_project_add_creates_through_the_service(
    staff: Client, demo_credentials: DemoCredentials
) -> None:
    data = project_form(
        Project(name="New app"),
        set_fcm_service_account=str(demo_credentials.fcm_service_account_file.read_text()),
    )

    response = staff.post(url("core_project_add"), data)

    assert response.status_code == 302
    project = Project.objects.get()
    assert project.name == "New app"
    assert (
        reveal_service_account(project.fcm_service_account) == demo_credentials.service_account_info
    )
    assert project.apns_auth_key.reveal() == ""
    assert response["Location"] == url("core_project_changelist")


# --- API keys: shown once, stored hashed ---------------------------------------------


def test_api_key_add_shows_the_key_once_and_stores_only_its_hash(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("core_apikey_add"),
        {"project": str(project.pk), "name": "CI", "scope": "client", "_save": "Save"},
        follow=True,
    )

    warnings = [text for level, text in messages_of(response) if level == "warning"]
    page = response.content.decode()
    match = re.search(r"(hk_[0-9a-f]{12}_[A-Za-z0-9_-]{43})", page)
    assert match is not None
    raw = match.group(1)
    assert warnings == [f"Copy this API key now, it will not be shown again: {raw}"]
    key = ApiKey.objects.get()
    assert (key.project_id, key.name, key.scope) == (project.pk, "CI", "client")
    parts = ApiKey.split(raw)
    assert parts is not None
    prefix, secret = parts
    assert prefix == key.prefix
    assert key.secret_hash == hash_secret(secret)
    assert secret not in key.secret_hash
    assert api_client(raw).get("/admin/push").status_code == 403  # client scope: registration only
    # Never again: not on the list, not on the key's own page.
    assert raw not in staff.get(url("core_apikey_changelist")).content.decode()
    detail = staff.get(url("core_apikey_change", key.pk)).content.decode()
    assert raw not in detail and secret not in detail
    assert key.secret_hash not in detail
    assert f"hk_{key.prefix}_…" in detail


def test_api_key_add_prefills_the_project_from_the_project_page_link(
    staff: Client, configured_project: Project
) -> None:
    page = staff.get(url("core_project_change", configured_project.pk)).content.decode()
    assert f'href="{url("core_apikey_add")}?project={configured_project.pk}"' in page

    add = staff.get(url("core_apikey_add"), {"project": str(configured_project.pk)})

    assert add.context["adminform"].form.initial["project"] == str(configured_project.pk)


def test_revoke_action_revokes_only_active_keys(staff: Client) -> None:
    project = ProjectFactory.create()
    active, raw = create_api_key(project, name="active")
    revoked, _ = create_api_key(project, name="old", revoked=True)
    revoked_at = revoked.revoked_at

    response = staff.post(
        url("core_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [active.pk, revoked.pk]},
        follow=True,
    )

    assert messages_of(response) == [("success", "Revoked 1 API key. 1 already revoked.")]
    active.refresh_from_db()
    revoked.refresh_from_db()
    assert active.revoked_at is not None
    assert revoked.revoked_at == revoked_at
    assert api_client(raw).get("/admin/push").status_code == 401


# --- tokens ------------------------------------------------------------------------


@pytest.mark.django_db
def test_unfiltered_big_table_pages_use_the_planner_estimate() -> None:
    PushDeliveryFactory.create_batch(3)
    queryset = PushDelivery.objects.order_by("-id")

    class SmallThreshold(EstimatedCountPaginator):
        EXACT_UP_TO = 0

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE push_deliveries")
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", ["push_deliveries"]
            )
            estimate = cursor.fetchone()[0]
        assert SmallThreshold(queryset, 100).count == estimate
    else:
        assert SmallThreshold(queryset, 100).count == 3
    # Filtered lists, and tables under the threshold, are counted exactly.
    assert SmallThreshold(queryset.filter(status="queued"), 100).count == 3
    assert EstimatedCountPaginator(queryset, 100).count == 3
