"""A campaign's segments must resolve (issue 9, items 1 and 8).

`targeting.segments` is refused at create/PATCH unless every id is a segment of
this project; a segment deleted since, or one whose stored rules no longer validate,
makes GET /audience answer the typed error (409) instead of targeting nobody or 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import PushCampaign
from segments.models import Segment
from tests.factories import CampaignFactory, ProjectFactory, SegmentFactory
from tests.segments.helpers import EQUALS_REASON, EQUALS_RULE

pytestmark = pytest.mark.django_db


def base(project: Any) -> str:
    return f"/admin/projects/{project.id}/push/campaigns"


def not_this_projects_segments(project: Any) -> list[str]:
    """A segment's name, a deleted segment's id and another project's segment id."""
    named = SegmentFactory(project=project, name="VIP")
    deleted = SegmentFactory(project=project)
    deleted_id = str(deleted.pk)
    deleted.delete()
    foreign = SegmentFactory(project=ProjectFactory())
    return [named.name, deleted_id, str(foreign.pk)]


def envelope(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def refusal(ids: list[str]) -> dict[str, Any]:
    return envelope(
        "INVALID_SEGMENT_ID",
        "targeting.segments names segments that are not segments of this project: "
        f"{', '.join(ids)}. Use ids from GET /admin/projects/{{projectId}}/segments.",
        {"field": "targeting.segments", "segment_ids": ids},
    )


@pytest.mark.parametrize("side", ["include", "exclude"])
def test_create_refuses_targeting_segments_that_are_not_this_projects(api, db_state, side):
    client, project = api
    ids = not_this_projects_segments(project)
    mine = SegmentFactory(project=project)
    before = db_state()

    response = client.post(
        base(project),
        {"title": "t", "body": "b", "targeting": {"segments": {side: [str(mine.pk), *ids]}}},
    )

    assert response.status_code == 400
    assert response.json() == refusal(ids)
    assert db_state() == before


def test_patch_refuses_targeting_segments_that_are_not_this_projects(api, db_state):
    client, project = api
    ids = not_this_projects_segments(project)
    campaign = CampaignFactory(project=project, targeting={"countries": {"include": ["FR"]}})
    before = db_state()

    response = client.patch(
        f"{base(project)}/{campaign.pk}", {"targeting": {"segments": {"include": ids}}}
    )

    assert response.status_code == 400
    assert response.json() == refusal(ids)
    assert db_state() == before


def test_create_and_patch_accept_this_projects_segments(api):
    client, project = api
    one, two = SegmentFactory(project=project), SegmentFactory(project=project)
    targeting = {"segments": {"include": [str(one.pk)], "exclude": [str(two.pk)]}}

    created = client.post(base(project), {"title": "t", "body": "b", "targeting": targeting})
    patched = client.patch(
        f"{base(project)}/{created.json()['id']}",
        {"targeting": {"segments": {"include": [str(two.pk)]}}},
    )

    assert created.status_code == 201
    assert patched.status_code == 200
    assert PushCampaign.objects.get().targeting == {"segments": {"include": [str(two.pk)]}}


def test_audience_of_a_campaign_whose_targeting_segment_was_deleted_is_409(api):
    client, project = api
    gone = SegmentFactory(project=project)
    campaign = CampaignFactory(project=project, targeting={"segments": {"include": [str(gone.pk)]}})
    gone_id = str(gone.pk)
    gone.delete()  # targeting is JSON: nothing stops the delete

    response = client.get(f"{base(project)}/{campaign.pk}/audience")

    assert response.status_code == 409
    assert response.json() == envelope(
        "INVALID_SEGMENT_ID",
        "targeting.segments names segments that are not segments of this project "
        f"(deleted, or never were): {gone_id}. Remove them from the campaign's targeting.",
        {"field": "targeting.segments", "segment_ids": [gone_id]},
    )


@pytest.mark.parametrize("where", ["segment", "targeting"])
def test_audience_of_a_campaign_whose_segment_rules_no_longer_validate_is_409(api, where):
    client, project = api
    segment = SegmentFactory(project=project, name="old", rules=EQUALS_RULE)
    if where == "segment":
        campaign = CampaignFactory(project=project, segment=segment)
    else:
        targeting = {"segments": {"include": [str(segment.pk)]}}
        campaign = CampaignFactory(project=project, targeting=targeting)

    response = client.get(f"{base(project)}/{campaign.pk}/audience")

    assert response.status_code == 409
    assert response.json() == envelope(
        "INVALID_SEGMENT_RULES",
        f"Segment 'old' ({segment.pk}) has rules that no longer validate: {EQUALS_REASON} "
        "Fix the segment's rules (PATCH the segment, or edit it in the console).",
        {"segment_id": str(segment.pk), "path": "rules.op", "reason": EQUALS_REASON},
    )
    assert Segment.objects.get().rules == EQUALS_RULE


def test_create_refuses_user_data_keys_that_are_not_custom_attributes(api, db_state):
    client, project = api
    before = db_state()

    response = client.post(
        base(project),
        {"title": "t", "body": "b", "targeting": {"user_data": {"exclude": {"platform": "tv"}}}},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["details"] == {
        "field": "targeting.user_data.exclude",
        "key": "platform",
    }
    assert db_state() == before
