"""The console in a real browser: styled, its scripts alive, no sideways scrolling.

Issue 10 as an operator met it: with DEBUG off every /static/admin/* file answered
404, so the console was unstyled and its JavaScript dead.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser import Console

pytestmark = pytest.mark.browser


def test_the_console_is_styled_and_its_assets_load(console: Console) -> None:
    failed: list[str] = []
    console.page.on(
        "response",
        lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    console.goto("/ops/")
    page: Any = console.page
    # Django admin's stylesheet is applied (its header bar), and so is Herald's.
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg == "rgb(30, 27, 75)"
    assert page.evaluate("typeof window.Herald.json") == "function"
    assert re.search(r"Herald", page.title())
    console.assert_fits_width()
    console.shot("home")
    assert failed == []
    assert console.console_errors == []
