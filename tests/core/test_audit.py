"""The audit trail: the append-only model, core's actions per door (console, API,
commands), console logins, the read API with its filters and errors, and retention.

Campaign, test push, MCP and scheduler events: tests/campaigns/test_audit.py;
segments: tests/segments/test_audit.py.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from core.audit import SCHEDULER, Actor, acting_as, audit_events_purge, audit_record
from core.models import ApiKey, AuditEvent, Project
from delivery.simulators.credentials import DemoCredentials
from tests.console import project_form, url
from tests.factories import ProjectFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db

UA = "Mozilla/5.0 (audit test)"
LOGIN_ACTIONS = ("console.login", "console.logout", "console.login_failed")


def trail(*, skip_logins: bool = True) -> list[dict[str, Any]]:
    """Every event, oldest first, as the fields a test compares."""
    rows = AuditEvent.objects.order_by("id").values(
        "action",
        "project_id",
        "actor_kind",
        "actor",
        "actor_user_id",
        "via",
        "ip",
        "user_agent",
        "object_type",
        "object_id",
        "object_repr",
        "changes",
    )
    return [dict(row) for row in rows if not (skip_logins and row["action"] in LOGIN_ACTIONS)]


def trail_json() -> str:
    """All events with every column, as text: what a secret must never appear in."""
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def brief(rows: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(row[name] for name in names) for row in rows]


def masked(key: ApiKey) -> str:
    return f"hk_{key.prefix}_…"


# --- the model is append-only ---------------------------------------------------------


def test_an_event_cannot_be_changed_or_deleted() -> None:
    event = audit_record(action="project.updated", project_id=None, object_type="project")
    before = list(AuditEvent.objects.values())

    event.action = "project.created"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(action="project.created")

    assert list(AuditEvent.objects.values()) == before


def test_nothing_set_is_the_system_and_a_door_names_the_actor() -> None:
    audit_record(action="project.updated", project_id=None)
    with acting_as(Actor(kind="command", name="seed_demo", via="command")):
        audit_record(action="project.updated", project_id=None)
        audit_record(action="campaign.sent", project_id=None, actor=SCHEDULER)

    assert brief(trail(), "actor_kind", "actor", "via") == [
        ("system", "system", "worker"),
        ("command", "seed_demo", "command"),
        ("system", "scheduler", "worker"),
    ]


# --- console: projects, credentials, API keys ----------------------------------------


def staff_user() -> Any:
    return get_user_model().objects.get(username="ops")


def test_console_credential_change_records_field_names_never_values(
    staff: Client, demo_credentials: DemoCredentials
) -> None:
    project = ProjectFactory.create(name="Acme")
    pem = demo_credentials.auth_key_pem

    response = staff.post(
        url("core_project_change", project.pk),
        project_form(
            project,
            name="Acme iOS",
            apns_team_id="TEAM123456",
            set_apns_auth_key=pem,
            set_fcm_service_account=json.dumps(demo_credentials.service_account_info),
        ),
        HTTP_USER_AGENT=UA,
    )

    assert response.status_code == 302
    user = staff_user()
    who = {
        "project_id": project.pk,
        "actor_kind": "user",
        "actor": "ops",
        "actor_user_id": user.pk,
        "via": "console",
        "ip": "127.0.0.1",
        "user_agent": UA,
        "object_type": "project",
        "object_id": str(project.pk),
        "object_repr": "Acme iOS",
    }
    assert trail() == [
        {**who, "action": "project.updated", "changes": {"fields": ["name"]}},
        {
            **who,
            "action": "project.credentials_changed",
            "changes": {"fields": ["apns_auth_key", "apns_team_id", "fcm_service_account"]},
        },
    ]
    stored = trail_json()
    private_key = demo_credentials.service_account_info["private_key"]
    for secret in (pem, private_key):
        for line in secret.strip().splitlines()[1:-1]:  # the key material, not BEGIN/END
            assert line not in stored


def test_console_save_without_changes_records_nothing(staff: Client) -> None:
    project = ProjectFactory.create(name="Acme")

    response = staff.post(url("core_project_change", project.pk), project_form(project))

    assert response.status_code == 302
    assert trail() == []


def test_console_refused_credentials_record_nothing(staff: Client) -> None:
    project = ProjectFactory.create(name="Acme")

    response = staff.post(
        url("core_project_change", project.pk),
        project_form(project, name="Renamed", set_apns_auth_key="not a key"),
    )

    assert response.status_code == 200  # the form again, with the refusal
    assert Project.objects.get().name == "Acme"
    assert trail() == []


def test_console_api_key_create_and_revoke(staff: Client) -> None:
    project = ProjectFactory.create(name="Acme")

    staff.post(
        url("core_apikey_add"),
        {"project": str(project.pk), "name": "CI", "scope": "client", "_save": "Save"},
    )
    key = ApiKey.objects.get()
    staff.post(
        url("core_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]}
    )
    staff.post(  # revoking again: nothing happens, nothing is recorded
        url("core_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]}
    )

    assert brief(
        trail(), "action", "actor", "via", "object_type", "object_id", "object_repr", "changes"
    ) == [
        ("api_key.created", "ops", "console", "apikey", str(key.pk), str(key), {"scope": "client"}),
        ("api_key.revoked", "ops", "console", "apikey", str(key.pk), str(key), {}),
    ]
    assert key.prefix in str(key) and key.secret_hash not in trail_json()


# --- console logins -----------------------------------------------------------------


@pytest.fixture
def operator(settings: Any) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_user(
        "alice", "alice@example.com", "right-password", is_staff=True
    )


def test_console_login_logout_and_failed_login(operator: Any) -> None:
    client = Client(HTTP_USER_AGENT=UA)
    login = "/ops/login/?next=/ops/"

    failed = client.post(login, {"username": "alice", "password": "wrong-password"})
    assert failed.status_code == 200
    assert (
        client.post(login, {"username": "alice", "password": "right-password"}).status_code == 302
    )
    assert client.post("/ops/logout/").status_code == 200

    who: dict[str, Any] = {
        "project_id": None,
        "actor_kind": "user",
        "actor": "alice",
        "via": "console",
        "ip": "127.0.0.1",
        "user_agent": UA,
        "object_type": "user",
        "changes": {},
    }
    user = {"actor_user_id": operator.pk, "object_id": str(operator.pk), "object_repr": "alice"}
    assert trail(skip_logins=False) == [
        {
            **who,
            "action": "console.login_failed",
            "actor_user_id": None,
            "object_id": "",
            "object_repr": "alice",
        },
        {**who, **user, "action": "console.login"},
        {**who, **user, "action": "console.logout"},
    ]
    assert "wrong-password" not in trail_json() and "right-password" not in trail_json()


# --- the REST API --------------------------------------------------------------------


def test_api_vapid_generation_is_recorded_without_the_private_key() -> None:
    project = ProjectFactory.create(name="Acme")
    key, raw = create_api_key(project)

    response = api_client(raw).post(
        f"/admin/projects/{project.pk}/webpush/vapid",
        {"subject": "mailto:ops@example.com"},
        HTTP_USER_AGENT=UA,
    )

    assert response.status_code == 200
    project.refresh_from_db()
    assert trail() == [
        {
            "action": "project.vapid_generated",
            "project_id": project.pk,
            "actor_kind": "api_key",
            "actor": masked(key),
            "actor_user_id": None,
            "via": "api",
            "ip": "127.0.0.1",
            "user_agent": UA,
            "object_type": "project",
            "object_id": str(project.pk),
            "object_repr": "Acme",
            "changes": {"rotated": False},
        }
    ]
    private_pem = project.webpush_vapid_private_key.reveal()
    for line in private_pem.strip().splitlines()[1:-1]:
        assert line not in trail_json()


def test_api_refused_vapid_generation_records_nothing() -> None:
    project = ProjectFactory.create()
    _, raw = create_api_key(project)

    response = api_client(raw).post(
        f"/admin/projects/{project.pk}/webpush/vapid", {"subject": "not a contact"}
    )

    assert response.status_code == 400
    assert trail() == []


# --- commands -------------------------------------------------------------------------


def test_create_project_is_recorded_as_the_command(
    tmp_path: Path, demo_credentials: DemoCredentials
) -> None:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(demo_credentials.auth_key_pem)
    out = io.StringIO()

    call_command(
        "create_project",
        "Acme",
        "--json",
        "--apns-team-id=TEAM123456",
        "--apns-key-id=KEY1234567",
        f"--apns-key-file={key_file}",
        "--apns-topic=com.example.app",
        stdout=out,
    )

    project = Project.objects.get()
    key = ApiKey.objects.get()
    rows = trail()
    assert brief(rows, "action", "object_type", "object_id", "changes") == [
        ("project.created", "project", str(project.pk), {}),
        (
            "project.credentials_changed",
            "project",
            str(project.pk),
            {"fields": ["apns_auth_key", "apns_key_id", "apns_team_id", "apns_topic"]},
        ),
        ("api_key.created", "apikey", str(key.pk), {"scope": "admin"}),
    ]
    for row in rows:
        assert (row["project_id"], row["actor_kind"], row["actor"], row["via"]) == (
            project.pk,
            "command",
            "create_project",
            "command",
        )
        assert row["ip"] is None and row["actor_user_id"] is None
        assert row["user_agent"].startswith("manage.py create_project (os user ")
    raw = json.loads(out.getvalue())["api_key"]
    assert raw not in trail_json()
    for line in demo_credentials.auth_key_pem.strip().splitlines()[1:-1]:
        assert line not in trail_json()


def test_a_refused_create_project_records_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "AuthKey.p8"
    bad.write_text("not a key")

    with pytest.raises(CommandError):
        call_command("create_project", "Acme", f"--apns-key-file={bad}", stdout=io.StringIO())

    assert Project.objects.count() == 0
    assert trail() == []


def test_ensure_admin_is_recorded(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    call_command(
        "ensure_admin", "--username=root", "--password=long-password", stdout=io.StringIO()
    )

    user = get_user_model().objects.get(username="root")
    assert brief(trail(), "action", "actor", "via", "object_id", "changes") == [
        (
            "user.created",
            "ensure_admin",
            "command",
            str(user.pk),
            {"fields": ["is_active", "is_staff", "is_superuser", "password"]},
        )
    ]
    assert "long-password" not in trail_json()


# --- GET /admin/projects/{id}/audit ------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(project: Project | None, minutes: int, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "action": "campaign.sent",
        "actor_kind": "api_key",
        "actor": "hk_aaaaaaaaaaaa_…",
        "via": "api",
        "object_type": "pushcampaign",
        "object_id": "c-1",
        "object_repr": "Spring sale",
        **fields,
    }
    return AuditEvent.objects.create(
        project_id=project.pk if project else None, at=T0 + timedelta(minutes=minutes), **values
    )


def audit_url(project: Project) -> str:
    return f"/admin/projects/{project.pk}/audit"


@pytest.fixture
def history() -> tuple[Project, str, list[AuditEvent]]:
    project = ProjectFactory.create()
    _, raw = create_api_key(project)
    rows = [
        event(project, 0, action="campaign.created", actor="ops", actor_kind="user", via="console"),
        event(project, 1, ip="10.0.0.7", user_agent=UA, changes={"run": 1}),
        event(project, 2, action="segment.deleted", object_type="segment", object_id="s-1"),
        event(ProjectFactory.create(), 3),  # another project's
        event(None, 4, action="console.login"),
    ]
    return project, raw, rows


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_the_api_answers_the_projects_events_newest_first(history: Any) -> None:
    project, raw, rows = history

    response = api_client(raw).get(audit_url(project))

    assert ids(response) == [rows[2].pk, rows[1].pk, rows[0].pk]
    assert response.json()["next"] is None
    assert response.json()["results"][1] == {
        "id": rows[1].pk,
        "at": "2026-03-01T12:01:00Z",
        "project_id": str(project.pk),
        "actor_kind": "api_key",
        "actor": "hk_aaaaaaaaaaaa_…",
        "actor_user_id": None,
        "via": "api",
        "ip": "10.0.0.7",
        "user_agent": UA,
        "action": "campaign.sent",
        "object_type": "pushcampaign",
        "object_id": "c-1",
        "object_repr": "Spring sale",
        "changes": {"run": 1},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "ops"}, [0]),
        ({"action": "campaign.sent"}, [1]),
        ({"object_type": "segment"}, [2]),
        ({"object_type": "pushcampaign", "object_id": "c-1"}, [1, 0]),
        ({"since": "2026-03-01T12:01:00Z"}, [2, 1]),
        ({"until": "2026-03-01T12:01:00+00:00"}, [0]),
        ({"since": "2026-03-01T13:00:30+01:00", "until": "2026-03-01T12:02:00Z"}, [1]),
        ({"actor": "nobody"}, []),
    ],
)
def test_the_api_filters(history: Any, query: dict[str, str], expected: list[int]) -> None:
    project, raw, rows = history

    response = api_client(raw).get(audit_url(project), query)

    assert ids(response) == [rows[i].pk for i in expected]


def test_the_api_pages_with_a_cursor(history: Any) -> None:
    project, raw, rows = history
    client = api_client(raw)

    first = client.get(audit_url(project), {"limit": 2})
    second = client.get(audit_url(project), {"limit": 2, "cursor": first.json()["next"]})

    assert ids(first) == [rows[2].pk, rows[1].pk]
    assert ids(second) == [rows[0].pk]
    assert second.json()["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"action": "Campaign Sent"}, "action"),
        ({"action": ""}, "action"),
        ({"actor": ""}, "actor"),
        ({"actor": "x" * 201}, "actor"),
        ({"object_type": "push-campaign"}, "object_type"),
        ({"object_id": "x" * 65}, "object_id"),
        ({"object_id": "c-\x001"}, "object_id"),
        ({"actor": "ops\x00"}, "actor"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-01T12:00:00"}, "since"),  # no offset
        ({"until": "9999-12-31T23:59:59-23:59"}, "until"),  # overflows UTC
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_filters_are_400_naming_the_field(
    history: Any, query: dict[str, str], field: str
) -> None:
    project, raw, _ = history

    response = api_client(raw).get(audit_url(project), query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": field})


def test_who_may_read_the_trail(history: Any, staff: Client) -> None:
    project, _, rows = history
    _, client_key = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    _, other_key = create_api_key(ProjectFactory.create())

    forbidden = api_client(client_key).get(audit_url(project))
    hidden = api_client(other_key).get(audit_url(project))
    anonymous = api_client().get(audit_url(project))
    unknown = staff.get("/admin/projects/not-a-uuid/audit")

    assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "FORBIDDEN")
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert ids(staff.get(audit_url(project))) == [rows[2].pk, rows[1].pk, rows[0].pk]


# --- the console page -----------------------------------------------------------------


def test_the_console_page_lists_filters_and_never_edits(history: Any, staff: Client) -> None:
    project, _, rows = history

    listed = staff.get(url("core_auditevent_changelist"), {"project_id": str(project.pk)})
    searched = staff.get(
        url("core_auditevent_changelist"), {"q": "ops", "project_id": str(project.pk)}
    )
    detail = staff.get(url("core_auditevent_change", rows[1].pk))

    assert [row.pk for row in listed.context["cl"].result_list] == [r.pk for r in rows[2::-1]]
    assert [row.pk for row in searched.context["cl"].result_list] == [rows[0].pk]
    assert detail.status_code == 200 and "10.0.0.7" in detail.content.decode()
    assert staff.get(url("core_auditevent_add")).status_code == 403
    assert staff.post(url("core_auditevent_delete", rows[1].pk), {"post": "yes"}).status_code == 403
    assert staff.post(url("core_auditevent_change", rows[1].pk), {}).status_code == 403
    assert AuditEvent.objects.filter(pk=rows[1].pk).exists()


# --- retention -------------------------------------------------------------------------


def test_the_purge_deletes_what_is_past_retention() -> None:
    old = event(None, 0)
    kept = event(None, 60 * 24)
    later = T0 + timedelta(days=30, minutes=1)

    assert audit_events_purge(now=later, retention_days=0) == 0  # 0 keeps everything
    assert audit_events_purge(now=later, retention_days=31) == 0
    assert audit_events_purge(now=later, retention_days=30) == 1
    assert audit_events_purge(now=later, retention_days=30) == 0  # idempotent

    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not AuditEvent.objects.filter(pk=old.pk).exists()


def test_the_purge_reads_the_setting(settings: Any) -> None:
    event(None, 0)
    settings.HERALD_AUDIT_RETENTION_DAYS = 0
    assert audit_events_purge(now=T0 + timedelta(days=1000)) == 0
    settings.HERALD_AUDIT_RETENTION_DAYS = 365
    assert audit_events_purge(now=T0 + timedelta(days=366)) == 1


# --- console deletes: the trail outlives what it describes ----------------------------


def test_console_project_and_key_deletes_are_recorded_and_outlive_them(staff: Client) -> None:
    project = ProjectFactory.create(name="Doomed")
    key, _ = create_api_key(project, name="old key")
    other = ProjectFactory.create(name="Also doomed")

    assert staff.post(url("core_apikey_delete", key.pk), {"post": "yes"}).status_code == 302
    assert staff.post(url("core_project_delete", project.pk), {"post": "yes"}).status_code == 302
    staff.post(
        url("core_project_changelist"),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )

    assert not Project.objects.exists() and not ApiKey.objects.exists()
    assert brief(trail(), "action", "project_id", "actor", "object_type", "object_repr") == [
        ("api_key.deleted", project.pk, "ops", "apikey", str(key)),
        ("project.deleted", project.pk, "ops", "project", "Doomed"),
        ("project.deleted", other.pk, "ops", "project", "Also doomed"),
    ]
    response = staff.get(url("core_auditevent_changelist"), {"project_id": str(project.pk)})
    assert response.status_code == 200  # listed, though the project is gone


def test_rotating_a_key_is_recorded_with_the_grace() -> None:
    project = ProjectFactory()
    key, _ = create_api_key(project)
    out = io.StringIO()

    call_command("rotate_api_key", key.prefix, "--grace-hours", "2", "--json", stdout=out)

    new_key = ApiKey.objects.exclude(pk=key.pk).get()
    key.refresh_from_db()
    assert key.expires_at is not None
    rows = [r for r in trail() if r["action"] == "api_key.rotated"]
    assert brief(rows, "object_id", "actor", "via", "changes") == [
        (
            str(key.pk),
            "rotate_api_key",
            "command",
            {
                "replaced_by": str(new_key),
                "old_key_until": key.expires_at.isoformat(),
                "grace_seconds": 7200,
            },
        )
    ]
