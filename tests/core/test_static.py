"""The console's static files are served with DEBUG off, and `/` leads to the console.

Issue 10 as an operator met it in `make run`: every /static/admin/* file answered
404 (runserver serves no static files with DEBUG off), so the console was unstyled
and its JavaScript dead; `/` and "View site" answered a JSON 404.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse


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


STATIC_REF = re.compile(r"""(?:href|src)=["'](/static/[^"'?#]+)""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")


def _request() -> Any:
    request = RequestFactory().get("/ops/")
    request.user = get_user_model()(is_superuser=True, is_staff=True)
    return request


def _console_pages() -> list[str]:
    """The dashboard, and every registered model's list, add and change pages."""
    pages = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
        first = model_admin.get_queryset(_request()).first()
        if first is not None:
            pages.append(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            )
    return pages


def test_every_static_asset_the_console_references_answers_200(
    some_of_everything: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    """In `make run`'s configuration: DEBUG off, collectstatic's output served by WhiteNoise
    (not the apps' folders), every page's CSS/JS/images and what the CSS points at."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.WHITENOISE_USE_FINDERS = False
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # a new handler: WhiteNoise reads STATIC_ROOT when it starts
    client.force_login(
        get_user_model().objects.create_superuser("static", "static@example.com", "x")
    )
    assets: set[str] = set()
    for page in _console_pages():
        response = client.get(page)
        assert response.status_code in (200, 403), page
        assets.update(STATIC_REF.findall(response.content.decode()))
    assert any(a.endswith("console/console.css") for a in assets)
    checked: set[str] = set()
    broken: list[str] = []
    while assets - checked:
        asset = (assets - checked).pop()
        checked.add(asset)
        response = client.get(asset)
        if response.status_code != 200:
            broken.append(f"{response.status_code} {asset}")
            continue
        if asset.endswith(".css"):
            css = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
            for ref in CSS_URL.findall(css):
                if not ref.startswith(("data:", "http:", "https:", "#")):
                    assets.add(posixpath.normpath(posixpath.join(posixpath.dirname(asset), ref)))
    assert broken == []
    assert len(checked) > 10
