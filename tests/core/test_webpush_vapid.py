"""VAPID keys per project: the credential owner's checks, generate/rotate through the
API and the console, the client's public-key read, and the private key never shown."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.credentials import (
    InvalidCredentials,
    clean_vapid_subject,
    p256_public_point,
    vapid_public_key_of,
    webpush_missing,
)
from core.models import ApiKey, Project
from core.services import project_generate_vapid, project_update
from delivery.credentials import MissingCredentials, provider_config
from delivery.providers.base import WebPushConfig
from tests.segments.helpers import client_for, error, make_project

pytestmark = pytest.mark.django_db

SUBJECT = "mailto:ops@example.com"


def admin_url(project: Project) -> str:
    return f"/admin/projects/{project.id}/webpush/vapid"


def public_url(project: Project) -> str:
    return f"/v1/projects/{project.id}/webpush/vapid-public-key"


def secret_body(pem: str) -> str:
    """The base64 body of a PEM, without its BEGIN/END lines: what a leak would show."""
    return "".join(pem.strip().splitlines()[1:-1])


@pytest.mark.parametrize(
    "subject", ["mailto:ops@example.com", "https://example.com/contact", " mailto:a@b.c "]
)
def test_good_subjects(subject: str) -> None:
    assert clean_vapid_subject(subject) == subject.strip()


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "",
        "ops@example.com",
        "http://example.com",
        "mailto:",
        "https://",
        "mailto:a b@c",
        "https://example.com/" + "a" * 200,
        42,
    ],
)
def test_bad_subjects(subject: Any) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        clean_vapid_subject(subject)
    assert caught.value.details == {"field": "webpush_vapid_subject"}


def test_generate_then_rotate_through_the_service() -> None:
    project = make_project()
    assert webpush_missing(project) == ["VAPID key pair", "VAPID subject (mailto: or https:)"]

    project, rotated = project_generate_vapid(project=project, subject=SUBJECT)
    assert rotated is False
    stored = Project.objects.get(pk=project.pk)
    key = serialization.load_pem_private_key(
        stored.webpush_vapid_private_key.reveal().encode(), None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert (
        vapid_public_key_of(stored.webpush_vapid_private_key.reveal())
        == stored.webpush_vapid_public_key
    )
    assert p256_public_point(stored.webpush_vapid_public_key) is not None
    assert stored.webpush_vapid_subject == SUBJECT
    assert webpush_missing(stored) == [] and stored.has_webpush_credentials

    first = stored.webpush_vapid_private_key.reveal()
    _, rotated = project_generate_vapid(project=stored, subject="https://example.com")
    assert rotated is True
    assert Project.objects.get(pk=project.pk).webpush_vapid_private_key != first


def test_a_bad_subject_changes_nothing() -> None:
    project = make_project()
    with pytest.raises(InvalidCredentials):
        project_generate_vapid(project=project, subject="nope")
    stored = Project.objects.get(pk=project.pk)
    assert (stored.webpush_vapid_private_key.reveal(), stored.webpush_vapid_public_key) == ("", "")


def test_project_update_cleans_vapid_fields() -> None:
    project = make_project()
    with pytest.raises(InvalidCredentials) as caught:
        project_update(project=project, fields={"webpush_vapid_private_key": "not a key"})
    assert caught.value.details == {"field": "webpush_vapid_private_key"}
    with pytest.raises(InvalidCredentials) as caught:
        project_update(project=project, fields={"webpush_vapid_public_key": "AAAA"})
    assert caught.value.details == {"field": "webpush_vapid_public_key"}


def test_sending_web_push_needs_the_vapid_keys_then_uses_them() -> None:
    project = make_project()
    with pytest.raises(MissingCredentials, match="missing VAPID key pair"):
        provider_config(project, "webpush")
    project_generate_vapid(project=project, subject=SUBJECT)
    config = provider_config(project, "webpush")
    assert isinstance(config, WebPushConfig)
    assert (config.vapid_public_key, config.subject) == (project.webpush_vapid_public_key, SUBJECT)


# ------------------------------------------------------------------------- API


def test_generate_and_rotate_through_the_api() -> None:
    project = make_project()
    admin = client_for(project)

    response = admin.post(admin_url(project), {"subject": SUBJECT})
    assert response.status_code == 200
    project.refresh_from_db()
    assert response.json() == {
        "public_key": project.webpush_vapid_public_key,
        "subject": SUBJECT,
        "rotated": False,
    }
    first_private = project.webpush_vapid_private_key.reveal()
    assert secret_body(first_private) not in response.content.decode()

    response = admin.post(admin_url(project), {"subject": SUBJECT})
    assert response.status_code == 200 and response.json()["rotated"] is True
    project.refresh_from_db()
    assert project.webpush_vapid_private_key.reveal() != first_private
    assert response.json()["public_key"] == project.webpush_vapid_public_key
    assert secret_body(project.webpush_vapid_private_key.reveal()) not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ({}, "INVALID_CREDENTIALS", {"field": "webpush_vapid_subject"}),
        ({"subject": "ops@example.com"}, "INVALID_CREDENTIALS", {"field": "webpush_vapid_subject"}),
        ({"subject": SUBJECT, "private_key": "x"}, "VALIDATION_ERROR", {"field": "private_key"}),
    ],
)
def test_api_refusals_change_nothing(body: dict[str, Any], code: str, details: Any) -> None:
    project = make_project()
    assert error(client_for(project).post(admin_url(project), body)) == (400, code, details)
    project.refresh_from_db()
    assert (
        project.webpush_vapid_private_key.reveal() == "" and project.webpush_vapid_public_key == ""
    )


def test_client_keys_read_the_public_key_only() -> None:
    project = make_project()
    app = client_for(project, scope=ApiKey.Scope.CLIENT)
    assert error(app.get(public_url(project)))[:2] == (409, "VAPID_NOT_CONFIGURED")

    project_generate_vapid(project=project, subject=SUBJECT)
    project.refresh_from_db()
    response = app.get(public_url(project))
    assert response.status_code == 200
    assert response.json() == {"public_key": project.webpush_vapid_public_key}
    # ... and may not generate keys.
    assert error(app.post(admin_url(project), {"subject": SUBJECT}))[:2] == (403, "FORBIDDEN")


def test_another_projects_key_gets_404() -> None:
    project, other = make_project("mine"), make_project("theirs")
    project_generate_vapid(project=other, subject=SUBJECT)
    admin = client_for(project)
    app = client_for(project, scope=ApiKey.Scope.CLIENT)
    assert error(admin.post(admin_url(other), {"subject": SUBJECT}))[:2] == (404, "NOT_FOUND")
    assert error(app.get(public_url(other)))[:2] == (404, "NOT_FOUND")
    before = other.webpush_vapid_private_key.reveal()
    other.refresh_from_db()
    assert other.webpush_vapid_private_key.reveal() == before


# --------------------------------------------------------------------- console


def test_console_generates_then_warns_before_rotating(staff: Any) -> None:
    project = make_project()
    page = f"/ops/core/project/{project.pk}/vapid/"

    response = staff.get(page)
    assert response.status_code == 200
    assert "breaks every existing" not in response.content.decode()

    response = staff.post(page, {"subject": "nope"})
    assert response.status_code == 200
    assert "mailto: address or an https: URL" in response.content.decode()
    project.refresh_from_db()
    assert project.webpush_vapid_private_key.reveal() == ""

    response = staff.post(page, {"subject": SUBJECT})
    assert response.status_code == 302
    project.refresh_from_db()
    first = project.webpush_vapid_private_key.reveal()
    assert first and project.webpush_vapid_subject == SUBJECT

    response = staff.get(page)
    assert "breaks every existing web push subscription" in response.content.decode()
    response = staff.post(page, {"subject": SUBJECT}, follow=True)
    assert "Rotated the VAPID keys" in response.content.decode()
    project.refresh_from_db()
    assert project.webpush_vapid_private_key.reveal() != first


def test_console_pages_never_show_the_private_key(staff: Any) -> None:
    project = make_project()
    project_generate_vapid(project=project, subject=SUBJECT)
    project.refresh_from_db()
    secret = secret_body(project.webpush_vapid_private_key.reveal())
    for page in (
        "/ops/core/project/",
        f"/ops/core/project/{project.pk}/change/",
        f"/ops/core/project/{project.pk}/vapid/",
    ):
        response = staff.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert secret not in body, page
        assert "PRIVATE KEY" not in body, page
    change = staff.get(f"/ops/core/project/{project.pk}/change/").content.decode()
    assert project.webpush_vapid_public_key in change


def test_saving_the_project_form_keeps_the_keys(staff: Any) -> None:
    """The form has no VAPID inputs: saving other settings leaves the keys alone."""
    project = make_project()
    project_generate_vapid(project=project, subject=SUBJECT)
    project.refresh_from_db()
    page = staff.get(f"/ops/core/project/{project.pk}/change/")
    form = page.context["adminform"].form
    assert not {name for name in form.fields if "vapid" in name}
