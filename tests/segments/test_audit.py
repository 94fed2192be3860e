"""Segment changes in the audit trail (API and console); app users and tokens are
device traffic and are not recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from campaigns.models import PushCampaign
from core.models import AuditEvent
from segments.models import Segment
from tests.console import url
from tests.factories import (
    CampaignFactory,
    ProjectFactory,
    SegmentFactory,
    api_client,
    create_api_key,
)

pytestmark = pytest.mark.django_db

RULES = {"all": [{"attr": "language", "op": "eq", "value": "fr"}]}


def trail() -> list[tuple[Any, ...]]:
    rows = AuditEvent.objects.exclude(action__startswith="console.").order_by("id")
    return list(
        rows.values_list(
            "action", "actor", "via", "object_type", "object_id", "object_repr", "changes"
        )
    )


def test_api_segment_create_update_delete_and_refusals() -> None:
    project = ProjectFactory.create()
    key, raw = create_api_key(project)
    client = api_client(raw)
    segments = f"/admin/projects/{project.pk}/segments"

    created = client.post(segments, {"name": "French", "rules": RULES}).json()
    one = f"{segments}/{created['id']}"
    assert client.patch(one, {"description": "fr speakers"}).status_code == 200
    assert client.patch(one, {"rules": {"bad": 1}}).status_code == 400
    CampaignFactory.create(project=project, segment_id=created["id"])
    assert client.delete(one).status_code == 409  # SEGMENT_IN_USE
    PushCampaign.objects.filter(segment_id=created["id"]).delete()
    assert client.delete(one).status_code == 204
    # Device traffic is not an operator action: nothing recorded.
    registered = api_client(raw).put(
        f"/v1/projects/{project.pk}/users/ana", {"attributes": {"language": "fr"}}
    )
    assert registered.status_code in (200, 201)

    who = (f"hk_{key.prefix}_…", "api", "segment", created["id"], "French")
    assert trail() == [
        ("segment.created", *who, {"fields": ["name", "rules"]}),
        ("segment.updated", *who, {"fields": ["description"]}),
        ("segment.deleted", *who, {}),
    ]


def test_console_segment_delete_goes_through_the_service(staff: Client) -> None:
    segment = SegmentFactory.create(name="Gone")

    response = staff.post(url("segments_segment_delete", segment.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Segment.objects.exists()
    assert trail() == [
        ("segment.deleted", "ops", "console", "segment", str(segment.pk), "Gone", {})
    ]


def test_console_bulk_delete_goes_through_the_service(staff: Client) -> None:
    first, second = SegmentFactory.create(name="A"), SegmentFactory.create(name="B")

    staff.post(
        url("segments_segment_changelist"),
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )

    assert not Segment.objects.exists()
    assert sorted(row[5] for row in trail()) == ["A", "B"]
    assert {row[0] for row in trail()} == {"segment.deleted"}
