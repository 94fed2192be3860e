"""Racing requests on one campaign: exactly one wins, the rest get 409/404, and the
broker carries exactly the wake-ups of the winner (DESIGN.md: "two racing requests
cannot both win").

Real threads, each with its own database connection, against committed rows
(transaction=True). CI runs this on PostgreSQL, where the requests truly overlap;
SQLite (IMMEDIATE transactions) serializes writers, so there it checks the same
outcome with the requests interleaved rather than overlapping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings

from campaigns.models import CampaignRun, PushCampaign
from core.models import ApiKey
from tests.concurrency import race
from tests.factories import CampaignFactory, ProjectFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
FAN_OUT = "campaigns.fan_out_campaign"
BACKEND = "postgresql" if settings.IS_POSTGRES else "sqlite"


@pytest.fixture
def keyed_project():
    project = ProjectFactory()
    _key, raw = create_api_key(project, scope=ApiKey.Scope.ADMIN)
    return project, raw


def outcome(response) -> tuple[int, str | None]:
    body = response.json() if response.content else {}
    return response.status_code, body.get("error", {}).get("code")


@pytest.mark.parametrize("backend", [BACKEND])
def test_concurrent_sends_exactly_one_wins_and_one_fan_out_is_enqueued(
    keyed_project, broker, backend
):
    project, raw = keyed_project
    campaign = CampaignFactory(project=project)
    url = f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/send"

    responses = race([lambda: api_client(raw).post(url) for _ in range(THREADS)])

    assert Counter(outcome(r) for r in responses) == {
        (200, None): 1,
        (409, "ALREADY_SENT"): THREADS - 1,
    }
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["details"] == {"status": "sending"}
            assert response.json()["error"]["message"] == "The campaign is already sending."
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run) == ("sending", 1)
    assert list(CampaignRun.objects.values_list("number", "status")) == [(1, "sending")]
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


@pytest.mark.parametrize("backend", [BACKEND])
def test_concurrent_send_and_delete_never_both_win(keyed_project, broker, backend):
    project, raw = keyed_project
    campaign = CampaignFactory(project=project)
    url = f"/admin/projects/{project.id}/push/campaigns/{campaign.id}"
    calls: list[Callable[[], Any]] = []
    for _ in range(THREADS // 2):
        calls.append(lambda: api_client(raw).post(f"{url}/send"))
        calls.append(lambda: api_client(raw).delete(url))

    responses = race(calls)

    outcomes = Counter(outcome(r) for r in responses)
    enqueued = [(t.name, t.args) for t in broker.drain()]
    row = PushCampaign.objects.filter(pk=campaign.pk).first()
    if outcomes[(200, None)]:
        # send won: every delete and every other send saw it sending.
        assert outcomes == {(200, None): 1, (409, "ALREADY_SENT"): THREADS - 1}
        assert row is not None
        assert row.status == "sending"
        assert enqueued == [(FAN_OUT, [str(campaign.id), 1])]
    else:
        # delete won: the rest found nothing.
        assert outcomes == {(204, None): 1, (404, "NOT_FOUND"): THREADS - 1}
        assert row is None
        assert enqueued == []
        assert CampaignRun.objects.count() == 0


@pytest.mark.parametrize("backend", [BACKEND])
def test_concurrent_cancels_of_a_scheduled_campaign_exactly_one_wins(
    keyed_project, broker, backend
):
    project, raw = keyed_project
    campaign = CampaignFactory(
        project=project,
        status="scheduled",
        scheduled_at="2099-01-01T00:00:00Z",
        schedule_version=1,
    )
    url = f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/cancel"

    responses = race([lambda: api_client(raw).post(url) for _ in range(THREADS)])

    assert Counter(outcome(r) for r in responses) == {
        (200, None): 1,
        (409, "NOT_CANCELLABLE"): THREADS - 1,
    }
    campaign.refresh_from_db()
    assert (campaign.status, campaign.schedule_version) == ("cancelled", 2)
    assert broker.drain() == []
