"""Browsers may call the app routes (/v1/) from any origin; nothing else (core/cors.py).

The reference service worker and page helper run on a customer's site and call
Herald cross-origin with a client key: the preflight must be answered without a key,
and every /v1/ answer, errors included, must be readable by the page.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from core.models import ApiKey
from segments.models import AppUser
from tests.factories import create_api_key
from tests.segments.helpers import make_project

pytestmark = pytest.mark.django_db

PREFLIGHT = {
    "Origin": "https://shop.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_a_preflight_of_an_app_route_is_allowed_without_a_key() -> None:
    project = make_project()
    response = Client().options(f"/v1/projects/{project.id}/events", headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.content == b""
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE"
    assert response["Access-Control-Allow-Headers"] == (
        "Authorization, Content-Type, Idempotency-Key"
    )
    assert response["Access-Control-Max-Age"] == "86400"
    assert "Access-Control-Allow-Credentials" not in response


def test_app_answers_and_their_errors_are_readable_from_any_origin() -> None:
    project = make_project()
    _key, raw = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    client = Client(HTTP_ORIGIN="https://shop.example")
    ok = client.put(
        f"/v1/projects/{project.id}/users/u-1",
        data=json.dumps({"attributes": {"plan": "pro"}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    refused = client.get(f"/v1/projects/{project.id}/webpush/vapid-public-key")
    for response, status in ((ok, 201), (refused, 401)):
        assert response.status_code == status
        assert response["Access-Control-Allow-Origin"] == "*"
        assert response["Access-Control-Expose-Headers"] == (
            "Retry-After, Idempotent-Replayed, X-RateLimit-Limit, X-RateLimit-Remaining, "
            "X-RateLimit-Reset, X-RateLimit-Policy"
        )
    assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
    assert AppUser.objects.get(project=project).attributes == {"plan": "pro"}


@pytest.mark.parametrize("path", ["/admin/push", "/healthz", "/ops/login/", "/webpush/sw.js"])
def test_other_routes_stay_same_origin(path: str) -> None:
    client = Client(HTTP_ORIGIN="https://shop.example")
    for response in (client.options(path, headers=PREFLIGHT), client.get(path)):
        assert "Access-Control-Allow-Origin" not in response


def test_an_options_request_that_is_not_a_preflight_reaches_the_view() -> None:
    """Without Access-Control-Request-Method it is a plain OPTIONS: the API answers it
    (here 401, no key), with the CORS header on."""
    project = make_project()
    response: Any = Client().options(f"/v1/projects/{project.id}/events")
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"
