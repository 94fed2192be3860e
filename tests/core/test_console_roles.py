"""Console roles in a real browser (issue 14): each role logs in and sees what it may
do and not what it may not; nobody sees another project's rows."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from campaigns.models import PushCampaign
from core.models import Project
from tests.browser import VIEWPORT
from tests.factories import CampaignFactory, ProjectFactory, add_member

pytestmark = pytest.mark.browser

PASSWORD = "role-password-1"


@pytest.fixture
def projects(transactional_db: None) -> tuple[Project, Project, PushCampaign, PushCampaign]:
    mine, theirs = ProjectFactory(name="Acme app"), ProjectFactory(name="Other app")
    ours = CampaignFactory(project=mine, name="Spring sale")
    other = CampaignFactory(project=theirs, name="Secret launch")
    return mine, theirs, ours, other


@pytest.fixture
def login_as(
    browser: Any, live_server: Any, settings: Any, projects: Any
) -> Iterator[Callable[[str], Any]]:
    """Log in as a fresh staff user holding ``role`` in the first project."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    contexts: list[Any] = []

    def login(role: str) -> Any:
        user = get_user_model().objects.create_user(role, password=PASSWORD, is_staff=True)
        add_member(user, projects[0], role)
        context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(live_server.url + "/ops/login/?next=/ops/")
        page.get_by_label("Username").fill(role)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/ops/$"))
        page.base = live_server.url
        return page

    yield login
    for context in contexts:
        context.close()


def _open(page: Any, path: str) -> Any:
    return page.goto(page.base + path)


def _campaign_page(page: Any, campaign: PushCampaign) -> Any:
    return _open(page, f"/ops/campaigns/pushcampaign/{campaign.pk}/change/")


def test_a_viewer_reads_but_has_no_buttons_to_act(login_as: Any, projects: Any) -> None:
    _, _, ours, other = projects
    page = login_as("viewer")

    _open(page, "/ops/campaigns/pushcampaign/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "Spring sale" in rows.first.inner_text()
    assert page.get_by_text("Secret launch").count() == 0
    assert page.locator(".object-tools a.addlink").count() == 0  # no "Add campaign"

    _campaign_page(page, ours)
    assert page.get_by_text("Spring sale").count() > 0
    assert page.locator('[data-tool="send"]').count() == 0
    assert page.get_by_role("button", name="Send test").count() == 0
    assert page.locator('input[name="_save"]').count() == 0

    assert _open(page, "/ops/campaigns/pushcampaign/add/").status == 403
    assert _open(page, f"/ops/campaigns/pushcampaign/{ours.pk}/send/").status == 403
    # Another project's campaign: the console says it does not exist.
    _campaign_page(page, other)
    assert page.get_by_text("Secret launch").count() == 0
    assert "exist" in page.locator(".messagelist").inner_text()  # "... doesn't exist"


def test_an_editor_composes_but_cannot_send_or_see_credentials(
    login_as: Any, projects: Any
) -> None:
    mine, _, ours, _ = projects
    page = login_as("editor")

    _open(page, "/ops/campaigns/pushcampaign/")
    assert page.locator(".object-tools a.addlink").count() == 1
    _open(page, "/ops/campaigns/pushcampaign/add/")
    project_choices = page.locator("#id_project option").all_inner_texts()
    assert [c for c in project_choices if c.strip("-")] == ["Acme app"]

    _campaign_page(page, ours)
    assert page.locator('input[name="_save"]').count() == 1  # a draft: editable
    assert page.locator('[data-tool="send"]').count() == 0
    assert page.get_by_role("button", name="Send test").count() == 0

    _open(page, f"/ops/core/project/{mine.pk}/change/")
    assert page.locator('textarea[name="set_apns_auth_key"]').count() == 0
    assert page.locator('input[name="_save"]').count() == 0
    assert page.get_by_role("link", name="Add a member").count() == 0
    assert _open(page, "/ops/core/projectmembership/add/").status == 403


def test_a_sender_gets_the_send_buttons(login_as: Any, projects: Any) -> None:
    ours = projects[2]
    page = login_as("sender")

    _campaign_page(page, ours)
    assert page.locator('[data-tool="send"]').count() == 1
    page.get_by_role("button", name="Send test").click()
    assert page.locator("#herald-test-push").is_visible()
    page.locator('#herald-test-push [data-action="close"]').click()
    page.locator('[data-tool="send"] a').click()
    page.wait_for_url(re.compile(r"/send/$"))
    assert (
        page.get_by_text("Send “Spring sale” now?").count()
        + page.get_by_text('Send "Spring sale" now?').count()
        > 0
    )


def test_an_admin_edits_credentials_and_adds_members(login_as: Any, projects: Any) -> None:
    mine = projects[0]
    page = login_as("admin")
    get_user_model().objects.create_user("newcomer", password=PASSWORD, is_staff=True)

    _open(page, "/ops/core/project/")
    assert page.locator("#result_list tbody tr").count() == 1
    _open(page, f"/ops/core/project/{mine.pk}/change/")
    assert page.locator('textarea[name="set_apns_auth_key"]').count() == 1
    page.get_by_role("link", name="Add a member").click()
    page.wait_for_url(re.compile(r"/projectmembership/add/"))
    assert page.locator("#id_project option").all_inner_texts()[1:] == ["Acme app"]
    page.select_option("#id_project", label="Acme app")
    page.select_option("#id_user", label="newcomer")
    page.select_option("#id_role", label="Herald sender")
    page.locator('input[name="_save"]').click()
    page.wait_for_url(re.compile(r"/projectmembership/$"))
    _open(page, f"/ops/core/project/{mine.pk}/change/")
    assert page.get_by_text("newcomer — sender").count() == 1
