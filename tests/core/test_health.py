"""GET /healthz: database and broker reachability, checked for real (no auth)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthy(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_broker_unreachable_is_503_until_it_is_back(client, broken_broker):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}

    broken_broker.restore()

    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_are_405_in_the_envelope(method):
    # A real client enforces CSRF; a health probe must still get the JSON 405.
    response = getattr(Client(enforce_csrf_checks=True), method)("/healthz")

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {
        "error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": f'Method "{method.upper()}" not allowed.',
            "details": {},
        }
    }
