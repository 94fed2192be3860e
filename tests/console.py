"""Helpers for the operator console (/ops/) tests; its fixtures (staff, configured_project,
some_of_everything) are in tests/conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.messages import get_messages
from django.urls import reverse

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

    from core.models import Project


def messages_of(response: Response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def project_form(project: Project, **overrides: Any) -> dict[str, Any]:
    """The project page's POST as the console sends it, secrets left empty (kept)."""
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
