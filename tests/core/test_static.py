"""The console's static files are served with DEBUG off, and `/` leads to the console.

Issue 10 as an operator met it in `make run`: every /static/admin/* file answered
404 (runserver serves no static files with DEBUG off), so the console was unstyled
and its JavaScript dead; `/` and "View site" answered a JSON 404.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/admin/css/base.css", "text/css"),
        ("/static/admin/js/core.js", "text/javascript"),
    ],
)
def test_admin_static_files_are_served_with_debug_off(path: str, content_type: str) -> None:
    assert settings.DEBUG is False
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_an_unknown_static_file_is_still_a_404() -> None:
    assert Client().get("/static/admin/css/no-such-file.css").status_code == 404


def test_the_root_redirects_to_the_console() -> None:
    response = Client().get("/")
    assert (response.status_code, response["Location"]) == (302, "/ops/")
