"""The operator console (/ops/): pages render, secrets stay hidden, writes go
through the same services and validation as the API."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CampaignRun, PushCampaign
from core.admin import EstimatedCountPaginator
from core.models import ApiKey, Project, hash_secret
from delivery.models import PushDelivery, PushToken
from delivery.simulators.credentials import DemoCredentials, ensure_demo_credentials
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    SegmentFactory,
    api_client,
    create_api_key,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

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
DbState = Callable[[], dict[str, list[dict[str, Any]]]]


@pytest.fixture
def staff(db: None, settings: Any) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-password")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def demo_credentials(tmp_path_factory: pytest.TempPathFactory) -> DemoCredentials:
    return ensure_demo_credentials(tmp_path_factory.mktemp("simulators"))


@pytest.fixture
def configured_project(db: None, demo_credentials: DemoCredentials) -> Project:
    return ProjectFactory.create(
        name="Configured",
        apns_team_id=demo_credentials.team_id,
        apns_key_id=demo_credentials.key_id,
        apns_auth_key=demo_credentials.auth_key_pem,
        apns_topic=demo_credentials.topic,
        fcm_service_account=demo_credentials.service_account_info,
    )


def messages_of(response: Response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def secret_lines(credentials: DemoCredentials) -> list[str]:
    """The base64 body lines of both stored private keys."""
    apns = credentials.auth_key_pem.splitlines()[1:-1]
    fcm = str(credentials.service_account_info["private_key"]).splitlines()[1:-1]
    return [line for line in apns + fcm if line]


# --- every page renders ------------------------------------------------------------


@pytest.fixture
def some_of_everything(configured_project: Project) -> dict[str, Any]:
    key, _ = create_api_key(configured_project, name="ci key")
    user = AppUserFactory.create(
        project=configured_project,
        external_id="u-1",
        attributes={"country": "FR", "language": "fr"},
    )
    token = PushTokenFactory.create(project=configured_project, app_user=user)
    segment = SegmentFactory.create(
        project=configured_project,
        rules={"all": [{"attr": "language", "op": "eq", "value": "fr"}]},
    )
    campaign = CampaignFactory.create(
        project=configured_project,
        segment=segment,
        status="sent",
        current_run=1,
    )
    CampaignRunFactory.create(
        campaign=campaign, number=1, status="sent", targeted=3, sent=2, invalid_tokens=1
    )
    delivery = PushDeliveryFactory.create(campaign=campaign, token=token, status="sent")
    return {
        "core_project": configured_project,
        "core_apikey": key,
        "segments_appuser": user,
        "segments_segment": segment,
        "delivery_pushtoken": token,
        "delivery_pushdelivery": delivery,
        "campaigns_pushcampaign": campaign,
    }


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


def test_delivery_log_is_read_only(staff: Client, some_of_everything: dict[str, Any]) -> None:
    delivery = some_of_everything["delivery_pushdelivery"]
    assert staff.get(url("delivery_pushdelivery_add")).status_code == 403
    assert staff.post(url("delivery_pushdelivery_delete", delivery.pk)).status_code == 403
    page = staff.get(url("delivery_pushdelivery_change", delivery.pk)).content.decode()
    assert 'name="_save"' not in page


def test_campaign_deliveries_link_filters_the_delivery_log(
    staff: Client, some_of_everything: dict[str, Any]
) -> None:
    campaign = some_of_everything["campaigns_pushcampaign"]
    other = PushDeliveryFactory.create(status="failed", error_message="BadDeviceToken")
    page = staff.get(url("campaigns_pushcampaign_change", campaign.pk)).content.decode()
    link = re.search(r'href="([^"]*pushdelivery/\?campaign__id__exact=[^"]+)"', page)
    assert link is not None

    response = staff.get(link.group(1).replace("&amp;", "&"))

    assert response.status_code == 200
    shown = [row.pk for row in response.context["cl"].result_list]
    assert shown == [some_of_everything["delivery_pushdelivery"].pk]
    assert other.pk not in shown


def test_app_user_changelist_shows_attributes_and_searches_external_id(
    staff: Client, some_of_everything: dict[str, Any]
) -> None:
    AppUserFactory.create(project=some_of_everything["core_project"], external_id="someone-else")

    response = staff.get(url("segments_appuser_changelist"), {"q": "u-1"})

    rows = list(response.context["cl"].result_list)
    assert [u.external_id for u in rows] == ["u-1"]
    page = response.content.decode()
    assert '<td class="field-country">FR</td>' in page
    assert '<td class="field-language">fr</td>' in page


# --- projects: credentials are write-only ------------------------------------------


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


def project_form(project: Project, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": project.name,
        "apns_team_id": project.apns_team_id,
        "apns_key_id": project.apns_key_id,
        "set_apns_auth_key": "",
        "set_apns_certificate": "",
        "apns_topic": project.apns_topic,
        "apns_endpoint": project.apns_endpoint,
        "apns_ca_file": project.apns_ca_file,
        "set_fcm_service_account": "",
        "fcm_endpoint": project.fcm_endpoint,
        "fcm_ca_file": project.fcm_ca_file,
        "default_timezone": project.default_timezone,
        "default_quiet_hours": "null",
        "default_throttle_per_minute": "",
        "frequency_cap_per_day": "",
        "delivery_guarantee": project.delivery_guarantee,
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    data.update(overrides)
    return data


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
    assert configured_project.apns_auth_key == demo_credentials.auth_key_pem
    assert configured_project.fcm_service_account == demo_credentials.service_account_info


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
    assert configured_project.apns_auth_key == other.auth_key_pem.strip() + "\n"
    assert configured_project.fcm_service_account == {}
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
    assert configured_project.apns_auth_key == demo_credentials.auth_key_pem
    assert configured_project.fcm_service_account == demo_credentials.service_account_info


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
    assert project.fcm_service_account == demo_credentials.service_account_info
    assert project.apns_auth_key == ""
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


def test_token_deactivate_and_reactivate_actions(staff: Client) -> None:
    active = PushTokenFactory.create()
    dead = PushTokenFactory.create(
        active=False, invalidated_at=timezone.now(), invalid_reason="Unregistered"
    )

    response = staff.post(
        url("delivery_pushtoken_changelist"),
        {"action": "deactivate_tokens", "_selected_action": [active.pk, dead.pk]},
        follow=True,
    )

    assert messages_of(response) == [("success", "Deactivated 1 token(s).")]
    active.refresh_from_db()
    dead.refresh_from_db()
    assert (active.active, active.invalid_reason) == (False, "deactivated by ops in the admin")
    assert active.invalidated_at is not None
    assert dead.invalid_reason == "Unregistered"

    response = staff.post(
        url("delivery_pushtoken_changelist"),
        {"action": "reactivate_tokens", "_selected_action": [active.pk, dead.pk]},
        follow=True,
    )

    assert messages_of(response) == [("success", "Reactivated 2 token(s).")]
    assert list(PushToken.objects.values_list("active", "invalidated_at", "invalid_reason")) == [
        (True, None, ""),
        (True, None, ""),
    ]


# --- campaign actions go through the services ----------------------------------------


def run_action(staff: Client, action: str, *campaigns: PushCampaign) -> Response:
    return staff.post(
        url("campaigns_pushcampaign_changelist"),
        {"action": action, "_selected_action": [str(c.pk) for c in campaigns]},
        follow=True,
    )


def test_send_now_moves_a_draft_to_sending_and_enqueues_the_fan_out(
    staff: Client, broker: Any
) -> None:
    draft = CampaignFactory.create(name="Spring sale")

    response = run_action(staff, "send_now", draft)

    assert messages_of(response) == [("success", "Send: 1 campaign.")]
    draft.refresh_from_db()
    assert (draft.status, draft.current_run) == ("sending", 1)
    run = CampaignRun.objects.get(campaign=draft)
    assert (run.number, run.trigger, run.status) == (1, "send", "sending")
    assert [(t.name, t.args) for t in broker.drain()] == [
        ("campaigns.fan_out_campaign", [str(draft.pk), 1])
    ]


def test_cancel_moves_a_scheduled_campaign_to_cancelled(staff: Client) -> None:
    scheduled = CampaignFactory.create(
        status="scheduled", scheduled_at=timezone.now() + timedelta(days=1), schedule_version=1
    )

    response = run_action(staff, "cancel", scheduled)

    assert messages_of(response) == [("success", "Cancel: 1 campaign.")]
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.schedule_version) == ("cancelled", 2)


def test_duplicate_makes_a_new_draft(staff: Client) -> None:
    sent = CampaignFactory.create(
        name="Launch", status="sent", title="Hi", body="There", current_run=1
    )

    response = run_action(staff, "duplicate", sent)

    assert messages_of(response) == [("success", "Duplicate: 1 campaign.")]
    copy = PushCampaign.objects.exclude(pk=sent.pk).get()
    assert (copy.name, copy.status, copy.title, copy.body, copy.current_run) == (
        "Launch (copy)",
        "draft",
        "Hi",
        "There",
        0,
    )
    sent.refresh_from_db()
    assert sent.status == "sent"


def test_action_in_the_wrong_state_reports_the_error_and_changes_nothing(
    staff: Client, db_state: DbState, broker: Any
) -> None:
    sent = CampaignFactory.create(name="Old news", status="sent")
    scheduled = CampaignFactory.create(
        name="Later", status="scheduled", scheduled_at=timezone.now() + timedelta(days=1)
    )
    before = db_state()

    response = run_action(staff, "send_now", sent, scheduled)

    assert messages_of(response) == [
        ("error", 'Send "Old news": ALREADY_SENT: The campaign is already sent.'),
        (
            "error",
            'Send "Later": ALREADY_SCHEDULED: The campaign is scheduled; it fires at its '
            "scheduled_at. PATCH scheduled_at to null first to send it now.",
        ),
    ]
    assert db_state() == before
    assert broker.drain() == []


def test_a_refused_campaign_does_not_stop_the_others(staff: Client, broker: Any) -> None:
    draft = CampaignFactory.create(name="Fine")
    cancelled = CampaignFactory.create(name="Gone", status="cancelled")

    response = run_action(staff, "cancel", draft, cancelled)
    assert messages_of(response) == [
        (
            "error",
            'Cancel "Fine": NOT_CANCELLABLE: Only scheduled or sending campaigns can be '
            "cancelled; this one is draft.",
        ),
        (
            "error",
            'Cancel "Gone": NOT_CANCELLABLE: Only scheduled or sending campaigns can be '
            "cancelled; this one is cancelled.",
        ),
    ]

    response = run_action(staff, "send_now", cancelled, draft)

    assert messages_of(response) == [
        ("error", 'Send "Gone": ALREADY_SENT: The campaign is already cancelled.'),
        ("success", "Send: 1 campaign."),
    ]
    assert list(PushCampaign.objects.order_by("name").values_list("name", "status")) == [
        ("Fine", "sending"),
        ("Gone", "cancelled"),
    ]


# --- campaign forms validate like the API ----------------------------------------------


def campaign_form(project: Project | None, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "",
        "title": "Hello",
        "body": "World",
        "data": "{}",
        "localizations": "{}",
        "image_url": "",
        "url": "",
        "actions": "[]",
        "sound": "",
        "badge": "",
        "segment": "",
        "platforms": "[]",
        "targeting": "{}",
        "tags": "[]",
        "scheduled_at_0": "",
        "scheduled_at_1": "",
        "recurrence": "null",
        "end_at_0": "",
        "end_at_1": "",
        "quiet_hours": "null",
        "local_time_missed": "next_day",
        "throttle_per_minute": "",
        "priority": "high",
        "ttl_seconds": "",
        "collapse_key": "",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    if project is not None:
        data["project"] = str(project.pk)
    data.update(overrides)
    return data


def form_errors(response: Response) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


def test_admin_creates_a_draft_through_the_service(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            data='{"screen": "home"}',
            localizations='{"fr": {"title": "Bonjour"}}',
            platforms='["IOS", "ios"]',
        ),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert (campaign.project_id, campaign.name, campaign.title, campaign.status) == (
        project.pk,
        "Hello",  # defaults to the title, as in the API
        "Hello",
        "draft",
    )
    assert campaign.data == {"screen": "home"}
    assert campaign.localizations == {"fr": {"title": "Bonjour"}}
    assert campaign.platforms == ["ios"]  # normalised by the validator


def test_admin_creates_a_scheduled_campaign(staff: Client) -> None:
    project = ProjectFactory.create()
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0, second=0)

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1=when.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version) == (
        "scheduled",
        when,
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        (
            {"title": "  "},
            {"title": ["title is required. (MISSING_TITLE)"]},
        ),
        (
            {"data": '{"aps": {"alert": "x"}}'},
            {"data": ["data must not contain the reserved key 'aps'. (INVALID_DATA)"]},
        ),
        (
            {"data": '"text"'},
            {"data": ["data must be a JSON object. (INVALID_DATA)"]},
        ),
        (
            {"scheduled_at_0": "2020-01-01", "scheduled_at_1": "10:00:00"},
            {"scheduled_at": ["scheduled_at is in the past. (SCHEDULED_AT_IN_PAST)"]},
        ),
        (
            {"actions": '[{"id": "a", "title": ""}]'},
            {"actions": ["actions[0].title must not be blank. (VALIDATION_ERROR)"]},
        ),
        (
            {"localizations": '{"fr": {"subtitle": "x"}}'},
            {"localizations": ["localizations.fr has unknown keys: subtitle. (VALIDATION_ERROR)"]},
        ),
        (
            {"recurrence": '{"every_days": 1}', "deliver_in_user_timezone": "on"},
            {
                "deliver_in_user_timezone": [
                    "deliver_in_user_timezone applies to one-shot schedules, not to "
                    "recurrences. (VALIDATION_ERROR)"
                ]
            },
        ),
        (
            {"image_url": "ftp://example.com/a.png"},
            {"image_url": ["image_url must be an http(s) URL. (VALIDATION_ERROR)"]},
        ),
        (
            {"localizations": json.dumps({f"es-{i:03d}": {"title": "t"} for i in range(301)})},
            {
                "localizations": [
                    "At most 300 localizations (one per language); got 301. (VALIDATION_ERROR)"
                ]
            },
        ),
        (
            # The form's JSON parser takes NaN, which no payload can carry.
            {"data": '{"x": NaN}'},
            {"data": ["data must be plain JSON text. (INVALID_DATA)"]},
        ),
        (
            {"data": json.dumps({"blob": "x" * 5000})},
            {
                "data": [
                    "data is 5011 bytes of JSON; a payload is at most 4096 bytes. "
                    "Shorten the data. (PAYLOAD_TOO_LARGE)"
                ]
            },
        ),
    ],
)
def test_invalid_campaign_is_refused_with_the_api_error_and_nothing_is_written(
    staff: Client, broker: Any, overrides: dict[str, str], errors: dict[str, list[str]]
) -> None:
    project = ProjectFactory.create()

    response = staff.post(url("campaigns_pushcampaign_add"), campaign_form(project, **overrides))

    assert response.status_code == 200
    assert form_errors(response) == errors
    assert PushCampaign.objects.count() == 0
    assert broker.drain() == []


def test_segment_of_another_project_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()
    foreign = SegmentFactory.create(name="Theirs")

    response = staff.post(
        url("campaigns_pushcampaign_add"), campaign_form(project, segment=str(foreign.pk))
    )

    assert form_errors(response) == {
        "segment": ["segment_id is not a segment of this project. (INVALID_SEGMENT_ID)"]
    }
    assert PushCampaign.objects.count() == 0


def test_payload_over_4096_bytes_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(project, body="x" * 3000, data='{"blob": "%s"}' % ("y" * 1500)),
    )

    errors = form_errors(response)
    assert list(errors) == ["__all__"]
    assert re.fullmatch(
        r"The (apns|fcm) payload would be \d+ bytes; the limit is 4096\. "
        r"Shorten the text or data\. \(PAYLOAD_TOO_LARGE\)",
        errors["__all__"][0],
    )
    assert PushCampaign.objects.count() == 0


def test_admin_edit_is_a_patch_through_the_service(staff: Client, db_state: DbState) -> None:
    campaign = CampaignFactory.create(name="Draft", title="Old", body="Body")
    when = (timezone.now() + timedelta(days=3)).replace(microsecond=0, second=0)

    response = staff.post(
        url("campaigns_pushcampaign_change", campaign.pk),
        campaign_form(
            None,
            name="Draft",
            title="New",
            body="Body",
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1=when.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.title, campaign.status, campaign.scheduled_at) == ("New", "scheduled", when)
    assert campaign.schedule_version == 1

    # An invalid edit changes nothing.
    before = db_state()
    response = staff.post(
        url("campaigns_pushcampaign_change", campaign.pk),
        campaign_form(None, name="", title="New", body="Body"),
    )
    assert form_errors(response) == {"name": ["name must not be blank. (VALIDATION_ERROR)"]}
    assert db_state() == before


def test_sent_campaigns_are_view_only(staff: Client, db_state: DbState) -> None:
    sent = CampaignFactory.create(status="sent", title="Done")
    before = db_state()

    page = staff.get(url("campaigns_pushcampaign_change", sent.pk)).content.decode()
    response = staff.post(
        url("campaigns_pushcampaign_change", sent.pk), campaign_form(None, title="Changed")
    )

    assert 'name="_save"' not in page
    assert response.status_code == 403
    delete = staff.post(url("campaigns_pushcampaign_delete", sent.pk), {"post": "yes"})
    assert delete.status_code == 403
    assert db_state() == before


def test_admin_delete_of_a_draft_goes_through_the_service(staff: Client) -> None:
    draft = CampaignFactory.create()

    response = staff.post(url("campaigns_pushcampaign_delete", draft.pk), {"post": "yes"})

    assert response.status_code == 302
    assert PushCampaign.objects.count() == 0


def test_bulk_delete_is_not_offered_for_campaigns(staff: Client) -> None:
    CampaignFactory.create()

    response = staff.get(url("campaigns_pushcampaign_changelist"))

    choices = [value for value, _ in response.context["action_form"].fields["action"].choices]
    assert choices == ["", "send_now", "cancel", "duplicate"]


# --- service refusals the form cannot foresee ------------------------------------------


def test_send_with_the_broker_down_reports_send_failed(staff: Client, broken_broker: str) -> None:
    draft = CampaignFactory.create(name="Flash sale")

    response = run_action(staff, "send_now", draft)

    assert messages_of(response) == [
        (
            "error",
            'Send "Flash sale": SEND_FAILED: The send could not be started; the campaign is '
            "now failed. Retry /send.",
        )
    ]
    draft.refresh_from_db()
    assert draft.status == "failed"


def test_edit_refused_by_the_service_shows_its_error(staff: Client, broken_broker: str) -> None:
    campaign = CampaignFactory.create(name="Soon", title="T", body="B")
    soon = (timezone.now() + timedelta(minutes=2)).replace(microsecond=0)
    change_url = url("campaigns_pushcampaign_change", campaign.pk)

    response = staff.post(
        change_url,
        campaign_form(
            None,
            name="Soon",
            title="T",
            body="B",
            scheduled_at_0=soon.strftime("%Y-%m-%d"),
            scheduled_at_1=soon.strftime("%H:%M:%S"),
        ),
    )

    assert (response.status_code, response["Location"]) == (302, change_url)
    assert messages_of(response) == [
        (
            "error",
            "RESCHEDULE_FAILED: The campaign was updated but its schedule could not be "
            "re-armed; it is now failed. Send it, or fix the broker and PATCH scheduled_at "
            "again.",
        )
    ]
    campaign.refresh_from_db()
    assert campaign.status == "failed"


# --- big tables -------------------------------------------------------------------------


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


def test_campaign_forms_keep_csrf_protection(db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser("csrf", "csrf@example.com", "pw-csrf-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    project = ProjectFactory.create()

    response = client.post(url("campaigns_pushcampaign_add"), campaign_form(project))

    assert response.status_code == 403
    assert PushCampaign.objects.count() == 0


def test_recurrence_without_an_occurrence_before_end_at_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()
    end = timezone.now() + timedelta(hours=1)

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            recurrence='{"cron": "0 9 1 1 *"}',  # every 1 January, 09:00 UTC
            end_at_0=end.strftime("%Y-%m-%d"),
            end_at_1=end.strftime("%H:%M:%S"),
        ),
    )

    assert form_errors(response) == {
        "end_at": ["The recurrence has no occurrence before end_at. (VALIDATION_ERROR)"]
    }
    assert PushCampaign.objects.count() == 0


def test_recurring_campaign_links_its_beat_schedule(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(project, recurrence='{"every_days": 1, "at": "09:00"}'),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert campaign.status == "scheduled"
    assert campaign.recurrence == {"every_days": 1, "at": "09:00", "timezone": "UTC"}
    assert campaign.periodic_task_id is not None
    page = staff.get(url("campaigns_pushcampaign_change", campaign.pk)).content.decode()
    task_url = url("django_celery_beat_periodictask_change", campaign.periodic_task_id)
    assert f'<a href="{task_url}">Periodic task {campaign.periodic_task_id}</a>' in page
