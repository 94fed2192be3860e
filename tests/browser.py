"""Headless Chromium for the console's browser tests (a pytest plugin, see tests/conftest.py).

The browser is Debian's `chromium` package (HERALD_CHROMIUM, default /usr/bin/chromium)
driven by Playwright's Python package: Playwright's own browser download cannot work
on these machines. Without a Chromium the browser tests are skipped and the run says
so loudly at the end; with HERALD_REQUIRE_BROWSER=1 (set by .ci/run) they fail instead,
so CI cannot go green without having run them.

Fixtures:
- `browser`: one Chromium for the session.
- `console`: a fresh page (1280x900, the width the console must fit) logged in to
  /ops/ on pytest-django's live server as a superuser; `console.shot("name")` saves
  a full-page screenshot under var/test-artifacts/screenshots/<test>/ (git-ignored).

Playwright's sync API runs an event loop on the test thread, and Django refuses ORM
calls from a thread with a running loop; while the browser is up, `browser` lets them
through (DJANGO_ALLOW_ASYNC_UNSAFE), which is safe here: the test thread is the only
one touching its connection.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("HERALD_REQUIRE_BROWSER") == "1"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
OPERATOR = ("operator", "operator-password")

_skipped: list[str] = []


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HERALD_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (make setup)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the console in headless Chromium")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: from the first one on, Playwright's loop counts as running
    on the test thread, which `asyncio.run` (the provider tests) refuses."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_report_header(config: pytest.Config) -> str:
    reason = missing_browser()
    if reason is None:
        return f"browser tests: headless Chromium at {CHROMIUM}"
    return f"browser tests: WILL BE SKIPPED - {reason}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.section("BROWSER TESTS SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"{len(_skipped)} console browser test(s) did not run: {missing_browser()}",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def browser(django_db_setup: None) -> Iterator[Any]:
    # After the test database exists: Django refuses to create it once Playwright's
    # loop is running on this thread.
    reason = missing_browser()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"HERALD_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # From here on Playwright's loop counts as running on this thread (between calls
    # too), and Django would refuse every ORM call, fixtures' teardown included.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Running as root (CI containers) needs --no-sandbox; /dev/shm may be tiny.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
            if previous is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Console:
    """A logged-in console page plus the helpers the tests share."""

    def __init__(self, page: Any, base_url: str, artifacts: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.artifacts = artifacts
        self.console_errors: list[str] = []
        self._shots = 0

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def shot(self, name: str) -> Path:
        """A full-page screenshot from the top, numbered in the order the test took them."""
        self._shots += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{self._shots:02d}-{name}.png"
        # From the top: a full-page shot taken scrolled down draws the sticky parts
        # (the admin's nav sidebar, the composer's panels) halfway down the page.
        self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_fits_width(self) -> None:
        """No horizontal scrolling at the viewport width."""
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


@pytest.fixture
def console(
    browser: Any,
    live_server: Any,
    transactional_db: None,
    request: pytest.FixtureRequest,
    settings: Any,
) -> Iterator[Console]:
    from django.contrib.auth import get_user_model

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Playwright's wait_for_function runs its predicate through eval() in the page, which
    # the console's script-src refuses; the tests' predicates may. Herald's pages never
    # call eval: tests/core/test_console_csp.py visits them under the exact policy.
    settings.HERALD_CSP = {
        **settings.HERALD_CSP,
        "script-src": [*settings.HERALD_CSP["script-src"], "'unsafe-eval'"],
    }
    username, password = OPERATOR
    get_user_model().objects.create_superuser(username, f"{username}@example.com", password)
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(15_000)
    page = context.new_page()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
    shutil.rmtree(ARTIFACTS / name, ignore_errors=True)  # only this run's screenshots
    console = Console(page, live_server.url, ARTIFACTS / name)
    page.on(
        "console", lambda m: console.console_errors.append(m.text) if m.type == "error" else None
    )
    page.on("pageerror", lambda e: console.console_errors.append(str(e)))
    page.goto(live_server.url + "/ops/login/?next=/ops/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/ops/$"))
    try:
        yield console
        report = getattr(request.node, "herald_call_report", None)
        if report is not None and report.failed:
            console.shot("failure")
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.skipped and item.get_closest_marker("browser") is not None:
        _skipped.append(item.nodeid)
    if report.when == "call":
        item.herald_call_report = report  # type: ignore[attr-defined]
    return report
