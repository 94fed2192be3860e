"""Browser-facing security: the Content-Security-Policy and the other headers on every
kind of response, no inline code in the console's HTML, the HERALD_HTTPS switch
(secure cookies, HSTS, the proxy header, the redirect), and the idle session timeout.

The browser side of the policy (pages still working under it) is
tests/core/test_console_csp.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import PushCampaign
from core.models import ApiKey
from core.session_timeout import idle_time
from tests.factories import ProjectFactory, create_api_key

ROOT = Path(__file__).resolve().parents[2]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self'; worker-src 'self' blob:"
)
EXPIRED = "Your session expired after 8 hours without activity. Log in again."
PASSWORD = "ops-password"


def _common_headers(response: Any) -> dict[str, str | None]:
    return {
        name: response.headers.get(name)
        for name in (
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cross-Origin-Opener-Policy",
            "Strict-Transport-Security",
        )
    }


PLAIN_HTTP_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Strict-Transport-Security": None,  # only over https, with HERALD_HTTPS
}


# --- headers on every kind of response ---------------------------------------------


def test_console_api_health_and_error_responses_carry_the_policy(
    staff: Client, client: Client
) -> None:
    project = ProjectFactory.create()
    _key, raw = create_api_key(project, scope=ApiKey.Scope.ADMIN)
    api = Client(headers={"Authorization": f"Bearer {raw}"})
    responses = {
        "console page": staff.get("/ops/"),
        "login page": client.get("/ops/login/"),
        "API list": api.get(f"/admin/projects/{project.pk}/push/campaigns"),
        "API 401": client.get(f"/admin/projects/{project.pk}/push/campaigns"),
        "unknown route": client.get("/no/such/route"),
        "healthz": client.get("/healthz"),
        "static file": client.get("/static/console/console.js"),
    }
    assert {name: r.status_code for name, r in responses.items()} == {
        "console page": 200,
        "login page": 200,
        "API list": 200,
        "API 401": 401,
        "unknown route": 404,
        "healthz": 200,
        "static file": 200,
    }
    for name, response in responses.items():
        assert response.headers["Content-Security-Policy"] == CSP, name
        assert _common_headers(response) == PLAIN_HTTP_HEADERS, name


def test_the_docs_pages_have_their_own_policy_and_no_inline_script(client: Client) -> None:
    docs = client.get("/api/docs")
    redoc = client.get("/api/redoc")
    script = client.get("/api/docs?script=")
    for response in (docs, redoc):
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"] == DOCS_CSP
        assert _common_headers(response) == PLAIN_HTTP_HEADERS
        assert inline_code(response.content.decode()) == []
    # Swagger UI's initialisation is a script file served by the same view.
    assert '<script src="/api/docs?script="></script>' in docs.content.decode()
    assert script.status_code == 200
    assert script.headers["Content-Type"] == "application/javascript"
    assert b'const ui = SwaggerUIBundle({\n  url: "/api/schema"' in script.content


class _InlineCode(HTMLParser):
    """Collects what a script-src 'self' / style-src 'self' policy would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name == "style":
                self.found.append(f"<{tag} style>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")
        data_block = named.get("type") == "application/json"  # json_script: not run
        self._in_inline_script = tag == "script" and "src" not in named and not data_block

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.found.append(f"<script>{data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False


def inline_code(html: str) -> list[str]:
    parser = _InlineCode()
    parser.feed(html)
    return parser.found


def test_the_console_html_has_no_inline_script_handler_or_style(
    staff: Client, some_of_everything: dict[str, Any]
) -> None:
    ProjectFactory.create(name="Second")  # the dashboard's project switch appears
    campaign = some_of_everything["campaigns_pushcampaign"]
    PushCampaign.objects.filter(pk=campaign.pk).update(status="sending")  # a progress bar
    pages = [
        "/ops/",
        "/ops/campaigns/pushcampaign/",
        "/ops/campaigns/pushcampaign/add/",
        f"/ops/campaigns/pushcampaign/add/?project={some_of_everything['core_project'].pk}",
        f"/ops/campaigns/pushcampaign/{campaign.pk}/change/",
        "/ops/segments/segment/",
        "/ops/segments/segment/add/",
        f"/ops/segments/segment/{some_of_everything['segments_segment'].pk}/change/",
        "/ops/segments/appuser/",
        f"/ops/segments/appuser/{some_of_everything['segments_appuser'].pk}/change/",
        "/ops/delivery/pushtoken/",
        "/ops/delivery/pushdelivery/",
        f"/ops/delivery/pushdelivery/{some_of_everything['delivery_pushdelivery'].pk}/change/",
        "/ops/core/project/",
        f"/ops/core/project/{some_of_everything['core_project'].pk}/change/",
        "/ops/core/apikey/",
        "/ops/auth/user/",
    ]
    found = {}
    for path in pages:
        response = staff.get(path)
        assert response.status_code == 200, path
        if problems := inline_code(response.content.decode()):
            found[path] = problems
    assert found == {}
    dashboard = staff.get("/ops/").content.decode()
    assert '<select id="dash-project" name="project" data-autosubmit>' in dashboard
    assert '<span class="sent" data-width="' in dashboard
    listing = staff.get("/ops/campaigns/pushcampaign/").content.decode()
    assert '<span class="herald-badge herald-status-sending">Sending</span>' in listing


def test_the_login_page_has_no_inline_code(client: Client) -> None:
    assert inline_code(client.get("/ops/login/").content.decode()) == []


# --- the TLS switch ----------------------------------------------------------------

SETTINGS_PRINTED = [
    "HERALD_HTTPS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_AGE",
    "SESSION_EXPIRE_AT_BROWSER_CLOSE",
    "X_FRAME_OPTIONS",
]
PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    f"print(json.dumps({{k: getattr(s, k, None) for k in {SETTINGS_PRINTED!r}}}))"
)


def _child(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh process reading the settings from this environment (and nothing of ours)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HERALD_", "SECURE_", "SECRET_KEY", "DEBUG"))
    }
    child_env = {
        **base,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "HERALD_VAR_DIR": str(tmp_path),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _settings_of(tmp_path: Path, **env: str) -> dict[str, Any]:
    child = _child(["-c", PRINT_SETTINGS], tmp_path, **env)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_plain_http_is_the_default(tmp_path: Path) -> None:
    """`make run` serves http on 127.0.0.1: no secure-only cookie, no HSTS, no redirect."""
    assert _settings_of(tmp_path) == {
        "HERALD_HTTPS": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_AGE": 8 * 3600,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        "X_FRAME_OPTIONS": "DENY",
    }


def test_the_https_switch_turns_on_secure_cookies_hsts_and_the_proxy_header(
    tmp_path: Path,
) -> None:
    configured = _settings_of(
        tmp_path,
        HERALD_HTTPS="1",
        HERALD_PROXY_SSL_HEADER="X-Forwarded-Proto",
        HERALD_HSTS_INCLUDE_SUBDOMAINS="1",
        HERALD_SSL_REDIRECT="1",
        HERALD_SESSION_IDLE_MINUTES="90",
    )
    assert configured == {
        "HERALD_HTTPS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_AGE": 90 * 60,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        "X_FRAME_OPTIONS": "DENY",
    }
    # HSTS can be shortened (a first rollout) or left off; the redirect is opt-in.
    shorter = _settings_of(tmp_path, HERALD_HTTPS="1", HERALD_HSTS_SECONDS="300")
    assert (shorter["SECURE_HSTS_SECONDS"], shorter["SECURE_SSL_REDIRECT"]) == (300, False)


def _deploy_warnings(tmp_path: Path, **env: str) -> list[str]:
    production = {
        "SECRET_KEY": "k" * 20 + "-production-secret-key-of-fifty-characters",
        "HERALD_SECRETS_KEY": Fernet.generate_key().decode(),
        **env,
    }
    child = _child(["manage.py", "check", "--deploy"], tmp_path, **production)
    assert child.returncode == 0, child.stderr
    output = child.stdout + child.stderr
    return sorted({word.rstrip(")") for word in output.split() if word.startswith("(security.")})


def test_django_deploy_checks_pass_with_the_switch_on(tmp_path: Path) -> None:
    assert _deploy_warnings(tmp_path) == [
        "(security.W004",
        "(security.W008",
        "(security.W012",
        "(security.W016",
    ]
    # With the switch: only the two opt-ins a deployment decides on (docs/deploy.md).
    assert _deploy_warnings(tmp_path, HERALD_HTTPS="1", HERALD_SSL_REDIRECT="1") == [
        "(security.W005",
        "(security.W021",
    ]
    assert (
        _deploy_warnings(
            tmp_path,
            HERALD_HTTPS="1",
            HERALD_SSL_REDIRECT="1",
            HERALD_HSTS_INCLUDE_SUBDOMAINS="1",
            HERALD_HSTS_PRELOAD="1",
        )
        == []
    )


@pytest.fixture
def https_behind_proxy(settings: Any) -> None:
    """What HERALD_HTTPS=1 HERALD_PROXY_SSL_HEADER=X-Forwarded-Proto sets."""
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.usefixtures("https_behind_proxy")
def test_behind_a_tls_proxy_responses_carry_hsts_and_cookies_are_secure(db: None) -> None:
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    proxied = Client(headers={"X-Forwarded-Proto": "https"})
    assert proxied.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000"
    # Plain http (no proxy header): browsers ignore HSTS there, Django does not send it.
    assert "Strict-Transport-Security" not in Client().get("/healthz").headers

    login = proxied.post("/ops/login/", {"username": "ops", "password": PASSWORD})
    assert login.status_code == 302
    session = login.cookies["sessionid"]
    assert (session["secure"], session["httponly"], session["samesite"]) == (True, True, "Lax")
    assert (session["max-age"], session["expires"]) == ("", "")  # ends with the browser
    fresh = Client(headers={"X-Forwarded-Proto": "https"})
    csrf = fresh.get("/ops/login/").cookies["csrftoken"]
    assert (csrf["secure"], csrf["httponly"], csrf["samesite"]) == (True, "", "Lax")


def test_the_optional_redirect_sends_http_to_https_but_not_the_probes(
    settings: Any, db: None
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    plain = Client()
    console = plain.get("/ops/login/")
    assert (console.status_code, console.headers["Location"]) == (
        301,
        "https://testserver/ops/login/",
    )
    assert plain.get("/healthz").status_code == 200
    assert plain.get("/readyz").status_code in (200, 503)
    proxied = Client(headers={"X-Forwarded-Proto": "https"})
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert proxied.get("/ops/login/").status_code == 200


# --- the idle timeout --------------------------------------------------------------


@pytest.fixture
def operator(db: None, settings: Any) -> Client:
    """A console user logged in through the login form, as a browser would."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    client = Client()
    response = client.post("/ops/login/", {"username": "ops", "password": PASSWORD})
    assert response.status_code == 302
    return client


def _stored(client: Client) -> Session:
    return Session.objects.get(session_key=client.cookies["sessionid"].value)


def _session_writes(queries: CaptureQueriesContext) -> int:
    return sum(q["sql"].startswith('UPDATE "django_session"') for q in queries.captured_queries)


def _age_by(client: Client, seconds: int) -> None:
    """As if the last refresh had happened `seconds` earlier."""
    stored = _stored(client)
    stored.expire_date -= timedelta(seconds=seconds)
    stored.save(update_fields=["expire_date"])


def test_a_login_lasts_the_idle_time_in_a_browser_session_cookie(operator: Client) -> None:
    expected = timezone.now() + timedelta(hours=8)
    assert abs((_stored(operator).expire_date - expected).total_seconds()) < 5
    cookie = operator.cookies["sessionid"]
    assert (cookie["max-age"], cookie["expires"], cookie["httponly"]) == ("", "", True)


def test_requests_within_a_minute_do_not_write_the_session(operator: Client) -> None:
    before = _stored(operator).expire_date
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert operator.get("/ops/").status_code == 200
    assert _session_writes(queries) == 0
    assert _stored(operator).expire_date == before


def test_a_request_after_a_minute_moves_the_expiry_once(operator: Client) -> None:
    _age_by(operator, 90)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert operator.get("/ops/").status_code == 200
    assert _session_writes(queries) == 1
    expected = timezone.now() + timedelta(hours=8)
    assert abs((_stored(operator).expire_date - expected).total_seconds()) < 5


def test_background_polls_do_not_keep_the_session_alive(operator: Client) -> None:
    _age_by(operator, 3600)
    before = _stored(operator).expire_date
    with CaptureQueriesContext(connection) as queries:
        response = operator.get("/ops/", headers={"X-Herald-Background": "1"})
    assert response.status_code == 200
    assert _session_writes(queries) == 0
    assert _stored(operator).expire_date == before


def test_a_session_from_before_the_timeout_is_shortened(operator: Client) -> None:
    _age_by(operator, -14 * 24 * 3600)  # two weeks longer: Django's old default age
    assert operator.get("/ops/").status_code == 200
    expected = timezone.now() + timedelta(hours=8)
    assert abs((_stored(operator).expire_date - expected).total_seconds()) < 5


def test_an_expired_session_is_sent_to_log_in_with_the_reason(operator: Client) -> None:
    stored = _stored(operator)
    stored.expire_date = timezone.now() - timedelta(seconds=1)
    stored.save(update_fields=["expire_date"])
    sessions_before = list(Session.objects.order_by("pk").values())

    response = operator.get("/ops/campaigns/pushcampaign/")

    assert (response.status_code, response.headers["Location"]) == (
        302,
        "/ops/login/?next=/ops/campaigns/pushcampaign/",
    )
    assert response.cookies["sessionid"]["max-age"] == 0  # the dead cookie is dropped
    assert list(Session.objects.order_by("pk").values()) == sessions_before
    login = operator.get(response.headers["Location"])
    assert login.status_code == 200
    assert [str(m) for m in login.context["messages"]] == [EXPIRED]
    assert EXPIRED in login.content.decode()
    # Once said, not again.
    assert EXPIRED not in operator.get("/ops/login/").content.decode()


def test_a_first_visit_is_not_told_its_session_expired(client: Client, db: None) -> None:
    assert EXPIRED not in client.get("/ops/login/").content.decode()
    assert EXPIRED not in client.get("/ops/", follow=True).content.decode()


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(8 * 3600, "8 hours"), (3600, "1 hour"), (90 * 60, "90 minutes"), (60, "1 minute")],
)
def test_the_idle_time_reads_as_an_operator_says_it(seconds: int, said: str) -> None:
    assert idle_time(seconds) == said
