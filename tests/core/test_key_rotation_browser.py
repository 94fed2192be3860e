"""Issue 14, as an operator meets it: create a key that expires, rotate it without
downtime, see the new key once and when the old one stops working."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine

from core.models import ApiKey
from core.timefmt import format_time
from tests.browser import Console
from tests.factories import ProjectFactory, api_client

pytestmark = pytest.mark.browser

KEY_RE = re.compile(r"hk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
INVALID = {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API key.", "details": {}}}


def status(raw: str) -> int:
    return int(api_client(raw).get("/admin/push").status_code)


def test_create_an_expiring_key_rotate_it_and_the_old_key_stops_at_its_expiry(
    console: Console,
) -> None:
    from playwright.sync_api import expect

    project = ProjectFactory(name="Acme")
    page: Any = console.page

    # Create a key that expires in 30 days: shown once.
    console.goto(f"/ops/core/apikey/add/?project={project.pk}")
    page.get_by_label("Name").fill("backend")
    page.get_by_label("Expires").select_option(label="In 30 days")
    page.get_by_role("button", name="Save", exact=True).click()
    warning = page.locator(".messagelist .warning")
    expect(warning).to_contain_text("Copy this API key now, it will not be shown again")
    found = KEY_RE.search(warning.inner_text())
    assert found is not None
    old_raw = found.group(0)
    old = ApiKey.objects.get()
    assert old.expires_at is not None
    lifetime = old.expires_at - old.created_at
    assert timedelta(days=30) - timedelta(seconds=5) < lifetime <= timedelta(days=30)
    assert status(old_raw) == 200
    console.shot("created")

    # Its page offers rotation; rotate with one hour of grace.
    console.goto(f"/ops/core/apikey/{old.pk}/change/")
    expect(page.locator("[data-key-state]")).to_have_text("Active")
    page.locator("[data-action=rotate-key]").click()
    page.get_by_label("Old key keeps working for").select_option(label="1 hour")
    console.shot("rotate-form")
    page.get_by_role("button", name="Rotate the key").click()

    warning = page.locator(".messagelist .warning")
    expect(warning).to_contain_text("Copy this API key now, it will not be shown again")
    found = KEY_RE.search(warning.inner_text())
    assert found is not None
    new_raw = found.group(0)
    old.refresh_from_db()
    assert old.expires_at is not None and old.replaced_by is not None
    new = old.replaced_by
    expect(page.locator(".messagelist .info")).to_have_text(
        f"The old key hk_{old.prefix}_… keeps working until {format_time(old.expires_at)}; "
        "switch your clients before then."
    )
    expect(page.get_by_text(f"Replaces {old}")).to_be_visible()
    console.shot("rotated")
    assert new_raw != old_raw and new.name == "backend"
    assert new.expires_at is not None
    assert new.expires_at - new.created_at >= lifetime - timedelta(seconds=5)

    # Shown once: reloading the new key's page does not show it again.
    page.reload()
    assert new_raw not in page.content()

    # The list says the old key is expiring soon; both keys work during the grace.
    console.goto("/ops/core/apikey/")
    expect(page.locator("[data-key-state=expiring]")).to_have_count(1)
    expect(page.locator("[data-key-state=active]")).to_have_count(1)
    console.assert_fits_width()
    console.shot("list")
    assert (status(old_raw), status(new_raw)) == (200, 200)

    # From the old key's expiry on it answers like an unknown key; the new one works.
    with time_machine.travel(old.expires_at, tick=False):
        refused = api_client(old_raw).get("/admin/push")
        assert (refused.status_code, refused.json()) == (401, INVALID)
        assert status(new_raw) == 200
    assert console.console_errors == []
