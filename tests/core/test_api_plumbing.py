"""The shared API plumbing (core/api.py, core/pagination.py) answers alike at every door.

Every list endpoint pages through core.pagination.keyset_page and parses `?limit=`
with one parser; every JSON door refuses unknown keys with one function. So a bad
limit, a tampered cursor or a stray key gets the same answer whichever app serves it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from campaigns.models import PushCampaign
from core.errors import envelope
from delivery.models import PushToken
from segments.models import Segment
from tests.factories import CampaignFactory, PushDeliveryFactory

pytestmark = pytest.mark.django_db

SOME_UUID = "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"
LIMIT_ERROR = envelope(
    "VALIDATION_ERROR",
    "limit must be an integer between 1 and 200.",
    {"field": "limit"},
)
CURSOR_ERROR = envelope(
    "VALIDATION_ERROR",
    "cursor is not valid.",
    {"field": "cursor"},
)


def cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def list_urls(project: Any) -> dict[str, str]:
    campaign = CampaignFactory(project=project, status="sent", current_run=1)
    PushDeliveryFactory(campaign=campaign)
    campaigns = f"/admin/projects/{project.id}/push/campaigns"
    return {
        "campaigns": campaigns,
        "campaigns alias": "/admin/push",
        "deliveries": f"{campaigns}/{campaign.id}/deliveries",
        "segments": f"/admin/projects/{project.id}/segments",
    }


def answers(client: Any, urls: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    result = {}
    for name, url in urls.items():
        response = client.get(url, params)
        result[name] = (response.status_code, response.json())
    return result


def test_an_empty_limit_is_refused_by_every_list(api):
    urls = list_urls(api.project)

    got = answers(api.client, urls, {"limit": ""})

    assert got == dict.fromkeys(urls, (400, LIMIT_ERROR))


@pytest.mark.parametrize(
    "position",
    [
        ["2030-01-01T00:00:00", SOME_UUID],  # a naive time
        ["0001-01-01T00:00:00+05:00", SOME_UUID],  # overflows when made UTC
    ],
)
def test_a_tampered_newest_first_cursor_is_refused_by_every_list_that_uses_one(api, position):
    urls = list_urls(api.project)
    del urls["deliveries"]

    got = answers(api.client, urls, {"cursor": cursor(position)})

    assert got == dict.fromkeys(urls, (400, CURSOR_ERROR))


@pytest.mark.parametrize("position", [[2**63], [-1], [True]])
def test_a_tampered_row_id_cursor_is_refused(api, position):
    url = list_urls(api.project)["deliveries"]

    response = api.client.get(url, {"cursor": cursor(position)})

    assert (response.status_code, response.json()) == (400, CURSOR_ERROR)


def test_every_json_door_names_the_same_stray_key_the_same_way(api):
    """Keys are checked in sorted order, so `aa` is named whatever order they came in."""
    project = api.project
    campaign = CampaignFactory(project=project)
    campaigns = f"/admin/projects/{project.id}/push/campaigns"
    stray = {"zz": 1, "aa": 1}
    doors = [
        ("post", campaigns, {"title": "t", "body": "b", **stray}),
        ("patch", f"{campaigns}/{campaign.id}", stray),
        ("post", f"{campaigns}/{campaign.id}/push", {"user_ids": ["x"], **stray}),
        ("post", f"{campaigns}/test", {"title": "t", "body": "b", **stray}),
        ("post", f"/admin/projects/{project.id}/segments", {"name": "n", **stray}),
        ("patch", f"/admin/projects/{project.id}/segments/{SOME_UUID}", stray),
        ("post", f"/admin/projects/{project.id}/segments/preview", {"rules": {}, **stray}),
        ("put", f"/v1/projects/{project.id}/users/ana", stray),
        ("post", f"/v1/projects/{project.id}/tokens", {"token": "ab", **stray}),
    ]

    got = [
        (lambda r: (r.status_code, r.json()))(getattr(api.client, method)(url, body))
        for method, url, body in doors
    ]

    refused = envelope(
        "VALIDATION_ERROR",
        "Unknown field 'aa'.",
        {"field": "aa"},
    )
    assert got == [(400, refused)] * len(doors)
    assert PushCampaign.objects.count() == 1
    assert (Segment.objects.count(), PushToken.objects.count()) == (0, 0)


def test_read_only_fields_are_named_as_such_by_campaigns_and_segments(api):
    project = api.project
    doors = [
        f"/admin/projects/{project.id}/push/campaigns",
        f"/admin/projects/{project.id}/segments",
    ]

    got = [api.client.post(url, {"name": "n", "id": SOME_UUID}).json() for url in doors]

    read_only = envelope(
        "VALIDATION_ERROR",
        "id is read-only.",
        {"field": "id"},
    )
    assert got == [read_only, read_only]
