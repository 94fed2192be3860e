"""The error envelope for what DRF and Django answer themselves: unknown routes, 405,
415, 413 and unexpected 500s - always `{"error": {"code", "message", "details"}}`,
JSON, and never a stack trace.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import RequestFactory

from core.errors import handler400, handler403, handler404, handler500
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# --- unknown routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/admin",
        "/admin/projects",
        "/admin/projects/x/push",
        "/admin/push/a/b/c",
        "/admin/projects/x/push/campaigns/y/sendd",
        "/v1/anything",
        "/healthz/extra",
    ],
)
@pytest.mark.parametrize("authenticated", [True, False])
def test_unknown_routes_are_404_in_the_envelope(api, path, authenticated):
    client = api.client
    if not authenticated:
        client.credentials()

    for method in ("get", "post", "delete"):
        response = getattr(client, method)(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == error("NOT_FOUND", "Not found.")


# --- 405 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", ""),
        ("delete", ""),
        ("patch", ""),
        ("put", "/{id}"),
        ("post", "/{id}"),
        ("get", "/{id}/send"),
        ("delete", "/{id}/send"),
        ("get", "/{id}/cancel"),
        ("post", "/{id}/runs"),
        ("delete", "/{id}/deliveries"),
        ("post", "/{id}/audience"),
        ("get", "/{id}/push"),
        ("get", "/test"),
    ],
)
def test_a_method_a_route_does_not_have_is_405(api, db_state, method, path):
    client, project = api
    campaign = CampaignFactory(project=project)
    before = db_state()

    response = getattr(client, method)(base(project.id) + path.replace("{id}", str(campaign.id)))

    assert response.status_code == 405
    assert response.json() == error("METHOD_NOT_ALLOWED", f'Method "{method.upper()}" not allowed.')
    assert db_state() == before


# --- 415 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"title": "t", "body": "b"}'),
        ("application/x-www-form-urlencoded", b"title=t&body=b"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="title"'
                                            b"\r\n\r\nt\r\n--x--\r\n"),
        ("application/xml", b"<campaign/>"),
        ("application/jsonx", b"{}"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("patch", [False, True], ids=["create", "patch"])
def test_a_body_that_is_not_json_is_415(api, db_state, content_type, body, patch):
    client, project = api
    campaign = CampaignFactory(project=project)
    before = db_state()
    url = f"{base(project.id)}/{campaign.id}" if patch else base(project.id)

    response = (client.patch if patch else client.post)(url, body, content_type=content_type)

    media = content_type.split(";")[0] if "multipart" not in content_type else content_type
    assert response.status_code == 415
    assert response.json() == error(
        "UNSUPPORTED_MEDIA_TYPE", f'Unsupported media type "{media}" in request.'
    )
    assert db_state() == before


def test_json_with_a_charset_is_accepted(api):
    client, project = api

    response = client.post(
        base(project.id),
        b'{"title": "t", "body": "b"}',
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 201


# --- 413 ------------------------------------------------------------------------------

LIMIT = 1024 * 1024


@pytest.mark.parametrize("patch", [False, True], ids=["create", "patch"])
def test_a_body_over_1_mb_is_413(api, db_state, settings, patch):
    client, project = api
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == LIMIT
    campaign = CampaignFactory(project=project)
    body = json.dumps({"title": "t", "body": "b" * LIMIT}).encode()
    assert len(body) > LIMIT
    before = db_state()
    url = f"{base(project.id)}/{campaign.id}" if patch else base(project.id)

    response = (client.patch if patch else client.post)(url, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == error("REQUEST_TOO_LARGE", "The request body is too large.")
    assert db_state() == before


def test_a_body_of_exactly_the_limit_is_parsed(api, db_state):
    client, project = api
    prefix, suffix = b'{"title": "', b'", "body": "b"}'
    body = prefix + b"t" * (LIMIT - len(prefix) - len(suffix)) + suffix
    assert len(body) == LIMIT
    before = db_state()

    response = client.post(base(project.id), body, content_type="application/json")

    # Parsed, then refused by the field rule: 400, not 413.
    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR", "title must be at most 500 characters.", {"field": "title"}
    )
    assert db_state() == before


# --- 500: a real failure, reported by operation, without internals -------------------


@contextlib.contextmanager
def table_missing(table: str) -> Iterator[None]:
    """Rename a table for the duration, inside a savepoint that is then rolled back.

    Every query on it fails in the database driver - a real unexpected error, not a
    mock - and the rollback restores the table (DDL is transactional on both
    PostgreSQL and SQLite).
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
        yield
        transaction.set_rollback(True)


FAILURES = [
    ("get", "", None, "LIST_FAILED"),
    ("post", "", {"title": "t", "body": "b"}, "CREATE_FAILED"),
    ("get", "/{id}", None, "FETCH_FAILED"),
    ("patch", "/{id}", {"title": "x"}, "UPDATE_FAILED"),
    ("delete", "/{id}", None, "DELETE_FAILED"),
    ("post", "/{id}/send", None, "SEND_FAILED"),
    ("post", "/{id}/cancel", None, "CANCEL_FAILED"),
    ("get", "/{id}/deliveries", None, "LIST_FAILED"),
    ("get", "/{id}/runs", None, "LIST_FAILED"),
    ("get", "/{id}/audience", None, "FETCH_FAILED"),
    ("post", "/{id}/push", {"device_ids": ["ab" * 32]}, "EXPLICIT_PUSH_FAILED"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "code"), FAILURES, ids=[f[3] + f[1] for f in FAILURES]
)
def test_an_unexpected_failure_is_500_named_after_the_operation(
    api, db_state, caplog, method, path, body, code
):
    client, project = api
    campaign = CampaignFactory(project=project)
    before = db_state()

    with table_missing("push_campaigns"):
        response = getattr(client, method)(
            base(project.id) + path.replace("{id}", str(campaign.id)), body
        )

    assert response.status_code == 500
    # Exactly the envelope: no traceback, no SQL, no table name.
    assert response.json() == error(code, "Internal error.")
    assert db_state() == before
    # The traceback went to the log instead.
    [record] = [r for r in caplog.records if r.name == "herald.errors"]
    assert record.exc_info is not None
    assert "push_campaigns" in str(record.exc_info[1])


def test_the_alias_reports_the_same_failure_codes(api):
    client, _project = api

    with table_missing("push_campaigns"):
        listed = client.get("/admin/push")
        created = client.post("/admin/push", {"title": "t", "body": "b"})

    assert (listed.status_code, listed.json()) == (500, error("LIST_FAILED", "Internal error."))
    assert (created.status_code, created.json()) == (
        500,
        error("CREATE_FAILED", "Internal error."),
    )


# --- Django's own handlers (outside DRF) ----------------------------------------------


@pytest.mark.parametrize(
    ("handler", "status", "code", "message"),
    [
        (handler400, 400, "BAD_REQUEST", "Bad request."),
        (handler403, 403, "FORBIDDEN", "Forbidden."),
        (handler404, 404, "NOT_FOUND", "Not found."),
        (handler500, 500, "INTERNAL_ERROR", "Internal error."),
    ],
)
def test_django_handlers_render_the_envelope(handler, status, code, message):
    request = RequestFactory().get("/anything")
    args = (request,) if handler is handler500 else (request, Exception("internal detail"))

    response = handler(*args)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == error(code, message)
