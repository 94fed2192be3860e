"""Helpers for the operator console (/ops/) tests; its fixtures (staff, configured_project,
some_of_everything) are in tests/conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.messages import get_messages
from django.urls import reverse

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response


def messages_of(response: Response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)
