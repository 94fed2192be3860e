"""Console roles and key scopes (core/access.py): the same rule behind the REST API,
the console's pages and the MCP tools. A viewer cannot send, an editor cannot touch
credentials or schedule, a member of project A sees nothing of project B; a read-only
key reads and writes nothing. Every refusal changes nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import CampaignStatus, PushCampaign
from core import access
from core.models import ApiKey, Project
from segments.models import Segment
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    ProjectFactory,
    SegmentFactory,
    api_client,
    create_api_key,
    staff_user,
)

pytestmark = pytest.mark.django_db


def session(user: Any) -> APIClient:
    client = APIClient()
    client.default_format = "json"
    client.force_login(user)
    return client


def console(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def base(project: Project) -> str:
    return f"/admin/projects/{project.pk}/push/campaigns"


def forbidden(response: Any, perm: str) -> None:
    assert response.status_code == 403, response.content
    body = response.json()["error"]
    assert body["code"] == "FORBIDDEN"
    assert body["details"] == {"permission": perm}


# --- the groups ------------------------------------------------------------------------


def test_the_role_groups_hold_exactly_what_the_code_says() -> None:
    for role, perms in access.ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=access.role_group_name(role))
        held = {
            f"{app}.{codename}"
            for app, codename in group.permissions.values_list(
                "content_type__app_label", "codename"
            )
        }
        assert held == set(perms), role
    # Cumulative: each role holds everything of the one before it.
    roles = list(access.ROLE_PERMISSIONS.values())
    for smaller, larger in itertools.pairwise(roles):
        assert set(smaller) < set(larger)


def test_sync_role_groups_restores_a_tampered_group() -> None:
    viewer = Group.objects.get(name="Herald viewer")
    viewer.permissions.clear()
    access.sync_role_groups()
    assert viewer.permissions.count() == len(access.VIEWER_PERMISSIONS)


# --- the REST API, staff sessions --------------------------------------------------------


def test_a_viewer_reads_but_cannot_create_send_or_cancel(db_state: Any) -> None:
    project = ProjectFactory()
    draft = CampaignFactory(project=project)
    client = session(staff_user(**{str(project.pk): "viewer"}))

    assert client.get(base(project)).status_code == 200
    assert client.get(f"{base(project)}/{draft.pk}").status_code == 200
    before = db_state()
    forbidden(client.post(base(project), {"title": "t", "body": "b"}), access.ADD_CAMPAIGNS)
    forbidden(client.post(f"{base(project)}/{draft.pk}/send"), access.SEND_CAMPAIGNS)
    forbidden(client.post(f"{base(project)}/{draft.pk}/cancel"), access.SEND_CAMPAIGNS)
    forbidden(client.patch(f"{base(project)}/{draft.pk}", {"title": "x"}), access.CHANGE_CAMPAIGNS)
    forbidden(client.delete(f"{base(project)}/{draft.pk}"), access.DELETE_CAMPAIGNS)
    forbidden(
        client.post(f"{base(project)}/test", {"device_token": "t", "provider": "fcm"}),
        access.SEND_CAMPAIGNS,
    )
    forbidden(
        client.post(f"/admin/projects/{project.pk}/segments", {"name": "s", "rules": {}}),
        access.ADD_SEGMENTS,
    )
    assert db_state() == before
    message = client.post(base(project), {"title": "t", "body": "b"}).json()["error"]["message"]
    assert message == "Your role in this project does not allow you to create campaigns."


def test_an_editor_composes_but_cannot_schedule_send_or_touch_credentials(
    db_state: Any, broker: Any
) -> None:
    project = ProjectFactory()
    client = session(staff_user(**{str(project.pk): "editor"}))

    created = client.post(base(project), {"title": "t", "body": "b"})
    assert created.status_code == 201
    campaign_id = created.json()["id"]
    assert client.patch(f"{base(project)}/{campaign_id}", {"title": "u"}).status_code == 200

    later = (timezone.now() + timedelta(days=1)).isoformat()
    before = db_state()
    forbidden(
        client.post(base(project), {"title": "t", "body": "b", "scheduled_at": later}),
        access.SEND_CAMPAIGNS,
    )
    forbidden(
        client.patch(f"{base(project)}/{campaign_id}", {"scheduled_at": later}),
        access.SEND_CAMPAIGNS,
    )
    forbidden(client.post(f"{base(project)}/{campaign_id}/send"), access.SEND_CAMPAIGNS)
    forbidden(
        client.post(f"/admin/projects/{project.pk}/webpush/vapid", {"subject": "mailto:a@b.c"}),
        access.CHANGE_PROJECT,
    )
    assert db_state() == before
    assert broker.drain() == []


def test_a_sender_schedules_and_sends(broker: Any) -> None:
    project = ProjectFactory()
    client = session(staff_user(**{str(project.pk): "sender"}))
    later = (timezone.now() + timedelta(days=1)).isoformat()

    scheduled = client.post(base(project), {"title": "t", "body": "b", "scheduled_at": later})
    draft = client.post(base(project), {"title": "t2", "body": "b"})
    sent = client.post(f"{base(project)}/{draft.json()['id']}/send")

    assert (scheduled.status_code, scheduled.json()["status"]) == (201, "scheduled")
    assert (sent.status_code, sent.json()["status"]) == (200, "sending")
    forbidden(
        client.post(f"/admin/projects/{project.pk}/webpush/vapid", {"subject": "mailto:a@b.c"}),
        access.CHANGE_PROJECT,
    )


def test_an_admin_may_generate_vapid_keys() -> None:
    project = ProjectFactory()
    client = session(staff_user(**{str(project.pk): "admin"}))
    response = client.post(
        f"/admin/projects/{project.pk}/webpush/vapid", {"subject": "mailto:ops@example.com"}
    )
    assert response.status_code == 200, response.content


def test_a_member_of_project_a_sees_nothing_of_project_b(db_state: Any) -> None:
    mine, theirs = ProjectFactory(), ProjectFactory()
    campaign = CampaignFactory(project=theirs)
    client = session(staff_user(**{str(mine.pk): "admin"}))
    before = db_state()

    for response in (
        client.get(base(theirs)),
        client.get(f"{base(theirs)}/{campaign.pk}"),
        client.post(f"{base(theirs)}/{campaign.pk}/send"),
        client.get(f"/admin/projects/{theirs.pk}/segments"),
        client.get("/admin/push", {"project_id": str(theirs.pk)}),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "NOT_FOUND",
            "message": "Project not found.",
            "details": {},
        }
    assert db_state() == before
    assert client.get(base(mine)).status_code == 200


def test_staff_without_a_membership_see_no_project() -> None:
    project = ProjectFactory()
    client = session(staff_user())
    assert client.get(base(project)).status_code == 404


# --- the REST API, read-only keys ---------------------------------------------------------


def test_a_read_only_key_reads_and_writes_nothing(db_state: Any, broker: Any) -> None:
    project = ProjectFactory()
    draft = CampaignFactory(project=project)
    SegmentFactory(project=project)
    _, raw = create_api_key(project, scope=ApiKey.Scope.READ_ONLY)
    client = api_client(raw)

    assert client.get("/admin/push").status_code == 200
    assert client.get(f"/admin/push/{draft.pk}").status_code == 200
    assert client.get(f"{base(project)}/{draft.pk}/runs").status_code == 200
    assert client.get(f"/admin/projects/{project.pk}/segments").status_code == 200
    before = db_state()
    refused = client.post("/admin/push", {"title": "t", "body": "b"})
    forbidden(refused, access.ADD_CAMPAIGNS)
    assert refused.json()["error"]["message"] == (
        "This API key is read-only: it may not create campaigns."
    )
    forbidden(client.post(f"/admin/push/{draft.pk}/send"), access.SEND_CAMPAIGNS)
    forbidden(
        client.put(f"/v1/projects/{project.pk}/users/u1", {"attributes": {}}),
        access.REGISTER_DEVICES,
    )
    assert db_state() == before
    assert broker.drain() == []


def test_a_client_key_still_only_registers() -> None:
    project = ProjectFactory()
    _, raw = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    client = api_client(raw)
    assert client.put(f"/v1/projects/{project.pk}/users/u1", {"attributes": {}}).status_code in (
        200,
        201,
    )
    refused = client.get("/admin/push")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "This API key may only call the device registration API."
    )


# --- the console ------------------------------------------------------------------------


def test_the_console_lists_only_the_members_projects() -> None:
    mine, theirs = ProjectFactory(name="Mine"), ProjectFactory(name="Theirs")
    ours = CampaignFactory(project=mine, name="ours")
    other = CampaignFactory(project=theirs, name="other")
    client = console(staff_user(**{str(mine.pk): "viewer"}))

    listing = client.get(reverse("admin:campaigns_pushcampaign_changelist"))
    assert listing.status_code == 200
    shown = [c.pk for c in listing.context["cl"].result_list]
    assert shown == [ours.pk]
    assert "Theirs" not in listing.content.decode()
    projects = client.get(reverse("admin:core_project_changelist"))
    assert [p.pk for p in projects.context["cl"].result_list] == [mine.pk]
    # Another project's campaign is as absent as a deleted one.
    page = client.get(reverse("admin:campaigns_pushcampaign_change", args=[other.pk]))
    assert page.status_code == 302
    dashboard = client.get(reverse("admin:index"))
    assert [p.pk for p in dashboard.context["dashboard"]["projects"]] == [mine.pk]


def test_a_viewer_in_the_console_cannot_add_change_or_send(db_state: Any) -> None:
    project = ProjectFactory()
    draft = CampaignFactory(project=project)
    client = console(staff_user(**{str(project.pk): "viewer"}))
    before = db_state()

    assert client.get(reverse("admin:campaigns_pushcampaign_add")).status_code == 403
    page = client.get(reverse("admin:campaigns_pushcampaign_change", args=[draft.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert 'data-tool="send"' not in html
    assert "herald-test-push" not in html
    send = reverse("admin:campaigns_pushcampaign_send", args=[draft.pk])
    assert client.get(send).status_code == 403
    assert client.post(send).status_code == 403
    test_push = client.post(
        reverse("admin:campaigns_pushcampaign_test", args=[draft.pk]),
        {"external_id": "u"},
        content_type="application/json",
    )
    assert test_push.status_code == 403
    changelist = reverse("admin:campaigns_pushcampaign_changelist")
    client.post(changelist, {"action": "send_now", "_selected_action": [str(draft.pk)]})
    assert db_state() == before
    assert PushCampaign.objects.get(pk=draft.pk).status == CampaignStatus.DRAFT


def test_an_editor_in_the_console_cannot_change_credentials(db_state: Any) -> None:
    project = ProjectFactory(apns_team_id="TEAM1")
    client = console(staff_user(**{str(project.pk): "editor"}))
    change = reverse("admin:core_project_change", args=[project.pk])
    before = db_state()

    page = client.get(change)
    assert page.status_code == 200
    assert 'name="set_apns_auth_key"' not in page.content.decode()
    response = client.post(change, {"name": "renamed", "apns_team_id": "EVIL"})
    assert response.status_code == 403
    vapid = client.post(
        reverse("admin:core_project_vapid", args=[project.pk]), {"subject": "mailto:a@b.c"}
    )
    assert vapid.status_code == 403
    assert client.get(reverse("admin:core_apikey_add")).status_code == 403
    assert client.get(reverse("admin:core_projectmembership_add")).status_code == 403
    assert db_state() == before


def test_an_editor_may_compose_a_segment_but_not_in_another_project() -> None:
    mine, theirs = ProjectFactory(), ProjectFactory()
    client = console(staff_user(**{str(mine.pk): "editor"}))
    add = reverse("admin:segments_segment_add")
    rules = '{"attr": "country", "op": "eq", "value": "FR"}'

    refused = client.post(add, {"project": str(theirs.pk), "name": "x", "rules": rules})
    assert refused.status_code == 200  # the form again: not a choice
    assert "project" in refused.context["adminform"].form.errors
    done = client.post(add, {"project": str(mine.pk), "name": "fr", "rules": rules})
    assert done.status_code == 302, done.context["adminform"].form.errors if done.context else ""
    assert list(Segment.objects.values_list("project_id", "name")) == [(mine.pk, "fr")]


def test_a_project_admin_adds_a_member_to_their_project_only() -> None:
    mine, theirs = ProjectFactory(), ProjectFactory()
    admin_user = staff_user(**{str(mine.pk): "admin"})
    newcomer = staff_user("newcomer")
    client = console(admin_user)
    add = reverse("admin:core_projectmembership_add")
    sender = Group.objects.get(name="Herald sender")

    elsewhere = client.post(
        add, {"project": str(theirs.pk), "user": newcomer.pk, "role": sender.pk}
    )
    assert elsewhere.status_code == 200
    assert "project" in elsewhere.context["adminform"].form.errors
    done = client.post(add, {"project": str(mine.pk), "user": newcomer.pk, "role": sender.pk})
    assert done.status_code == 302
    assert access.projects_where(newcomer, access.SEND_CAMPAIGNS) == [mine.pk]
    page = client.get(reverse("admin:core_project_change", args=[mine.pk]))
    assert "newcomer — sender" in page.content.decode()


def test_the_app_user_test_push_needs_the_sender_role(db_state: Any) -> None:
    project = ProjectFactory()
    user = AppUserFactory(project=project)
    client = console(staff_user(**{str(project.pk): "editor"}))
    page = client.get(reverse("admin:segments_appuser_change", args=[user.pk]))
    assert page.status_code == 200
    assert page.context["test_push_url"] is None
    before = db_state()
    response = client.post(
        reverse("admin:app_user_test_push", args=[user.pk]),
        {"title": "T", "body": "B"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert db_state() == before


# --- membership writes -------------------------------------------------------------------


def test_project_member_set_replaces_the_role_and_refuses_non_staff(db_state: Any) -> None:
    from django.contrib.auth import get_user_model

    from core.errors import InvalidInput
    from core.services import project_member_remove, project_member_set

    project = ProjectFactory()
    user = staff_user("ana")
    first = project_member_set(project=project, user=user, role="viewer")
    second = project_member_set(project=project, user=user, role="sender")
    assert first.pk == second.pk
    assert access.projects_where(
        get_user_model().objects.get(pk=user.pk), access.SEND_CAMPAIGNS
    ) == [project.pk]

    customer = get_user_model().objects.create_user("customer")
    before = db_state()
    with pytest.raises(InvalidInput, match="Only active staff accounts"):
        project_member_set(project=project, user=customer, role="viewer")
    with pytest.raises(InvalidInput, match="role must be one of viewer, editor, sender, admin"):
        project_member_set(project=project, user=user, role="owner")
    assert db_state() == before
    project_member_remove(membership=second)
    assert access.projects_where(get_user_model().objects.get(pk=user.pk)) == []


def test_make_run_gives_the_demo_project_role_logins() -> None:
    from django.contrib.auth import authenticate

    from core.management.commands.run_stack import DEMO_ROLE_PASSWORD, demo_role_logins

    project = ProjectFactory()
    demo_role_logins(str(project.pk))
    demo_role_logins(str(project.pk))  # idempotent
    for role in ("viewer", "editor", "sender"):
        user = authenticate(username=role, password=DEMO_ROLE_PASSWORD)
        assert user is not None and user.is_staff and not user.is_superuser
        assert access.project_permissions(user) == {
            project.pk: frozenset(access.ROLE_PERMISSIONS[role])
        }


# --- the audit trail ---------------------------------------------------------------------


def test_the_audit_trail_is_the_project_admins(db_state: Any) -> None:
    from core.models import AuditEvent

    mine, theirs = ProjectFactory(), ProjectFactory()
    admin_user = staff_user(**{str(mine.pk): "admin", str(theirs.pk): "sender"})
    sender = staff_user(**{str(mine.pk): "sender"})
    newcomer = staff_user("newcomer")
    from core.services import project_member_remove, project_member_set

    membership = project_member_set(project=mine, user=newcomer, role="viewer")
    project_member_set(project=mine, user=newcomer, role="viewer")  # no change: no event
    project_member_set(project=mine, user=newcomer, role="editor")
    project_member_remove(membership=membership)
    events = AuditEvent.objects.filter(object_type="projectmembership").order_by("at", "id")
    assert [(e.action, e.changes) for e in events] == [
        ("member.added", {"user": "newcomer", "role": "viewer"}),
        ("member.role_changed", {"user": "newcomer", "role": "editor", "previous_role": "viewer"}),
        ("member.removed", {"user": "newcomer", "role": "editor"}),
    ]
    assert {e.project_id for e in events} == {mine.pk}

    url = f"/admin/projects/{mine.pk}/audit"
    listed = session(admin_user).get(url)
    assert listed.status_code == 200
    assert {e["action"] for e in listed.json()["results"]} >= {"member.added", "member.removed"}
    forbidden(session(sender).get(url), access.VIEW_AUDIT)
    forbidden(session(admin_user).get(f"/admin/projects/{theirs.pk}/audit"), access.VIEW_AUDIT)
    _, read_only = create_api_key(mine, scope=ApiKey.Scope.READ_ONLY)
    forbidden(api_client(read_only).get(url), access.VIEW_AUDIT)
    _, admin_key = create_api_key(mine)
    assert api_client(admin_key).get(url).status_code == 200

    page = console(admin_user).get(reverse("admin:core_auditevent_changelist"))
    assert page.status_code == 200
    assert {e.project_id for e in page.context["cl"].result_list} == {mine.pk}
    assert console(sender).get(reverse("admin:core_auditevent_changelist")).status_code == 403


def test_the_composer_shows_an_editor_only_their_projects_and_no_schedule() -> None:
    mine, theirs = ProjectFactory(), ProjectFactory()
    SegmentFactory(project=mine, name="ours")
    SegmentFactory(project=theirs, name="secret-segment")
    editor = console(staff_user(**{str(mine.pk): "editor"}))
    sender = console(staff_user(**{str(mine.pk): "sender"}))

    page = editor.get(reverse("admin:campaigns_pushcampaign_add"))
    form = page.context["adminform"].form
    html = page.content.decode()
    assert "secret-segment" not in html and str(theirs.pk) not in html
    assert [s.name for s in form.fields["segment"].queryset] == ["ours"]
    assert all(form.fields[n].disabled for n in ("scheduled_at", "end_at", "recurrence"))
    assert "Scheduling is the sender's role" in html

    allowed = sender.get(reverse("admin:campaigns_pushcampaign_add")).context["adminform"].form
    assert not any(allowed.fields[n].disabled for n in ("scheduled_at", "end_at", "recurrence"))


def test_a_staff_user_of_no_project_sees_no_figures() -> None:
    project = ProjectFactory()
    CampaignFactory(project=project, name="elsewhere")
    page = console(staff_user()).get(reverse("admin:index"))
    assert page.status_code == 200
    assert page.context["dashboard"] is None
    assert "You are not a member of any project yet." in page.content.decode()
    assert "elsewhere" not in page.content.decode()


def test_the_tag_filter_offers_only_the_members_projects_tags() -> None:
    mine, theirs = ProjectFactory(), ProjectFactory()
    CampaignFactory(project=mine, tags=["spring"])
    CampaignFactory(project=theirs, tags=["secret-tag"])
    page = console(staff_user(**{str(mine.pk): "viewer"})).get(
        reverse("admin:campaigns_pushcampaign_changelist")
    )
    html = page.content.decode()
    assert "?tag=spring" in html
    assert "secret-tag" not in html
