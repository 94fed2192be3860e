"""The console's segments pages: app users list their attributes."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.console import url
from tests.factories import (
    AppUserFactory,
)


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
