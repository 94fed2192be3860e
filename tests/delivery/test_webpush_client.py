"""Herald serves its reference web push client at stable URLs (delivery/views.py);
what the files do is tested in Chromium (tests/delivery/test_webpush_worker.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from delivery.views import CLIENT_DIR


@pytest.mark.parametrize("name", ["sw.js", "herald-webpush.js"])
def test_the_files_are_served_as_javascript_and_revalidated(name: str) -> None:
    client = Client()
    response = client.get(f"/webpush/{name}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response.content == (CLIENT_DIR / name).read_bytes()
    again = client.get(f"/webpush/{name}", HTTP_IF_NONE_MATCH=response["ETag"])
    assert (again.status_code, again.content) == (304, b"")
    assert client.head(f"/webpush/{name}").status_code == 200


@pytest.mark.parametrize("path", ["/webpush/other.js", "/webpush/", "/webpush/../settings.py"])
def test_no_other_file_is_served(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_writing_is_refused_in_the_envelope() -> None:
    response = Client().post("/webpush/sw.js")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
