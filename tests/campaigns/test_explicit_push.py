"""POST .../campaigns/{id}/push (explicit lists) and GET .../audience."""

from __future__ import annotations

import pytest

from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from delivery.models import PushDelivery
from tests.factories import AppUserFactory, CampaignFactory, PushTokenFactory

pytestmark = pytest.mark.django_db


def url(project, campaign, action):
    return f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/{action}"


@pytest.fixture
def people(project):
    ana = AppUserFactory(project=project, external_id="ana")
    bob = AppUserFactory(project=project, external_id="bob")
    return {
        "ana_ios": PushTokenFactory(project=project, app_user=ana),
        "ana_android": PushTokenFactory(
            project=project,
            app_user=ana,
            provider="fcm",
            platform="android",
            token="f" + "a" * 150,
        ),
        "bob_ios": PushTokenFactory(project=project, app_user=bob),
        "dead": PushTokenFactory(project=project, app_user=bob, active=False),
    }


def test_push_to_devices_and_users_creates_a_run_for_exactly_them(api, project, people, broker):
    campaign = CampaignFactory(project=project)
    response = api.client.post(
        url(project, campaign, "push"),
        {
            "device_ids": [str(people["bob_ios"].pk), people["dead"].token, "nope"],
            "user_ids": ["ana", "ghost"],
            "data": {"coupon": "X1"},
        },
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "invalid_device_ids": [people["dead"].token, "nope", "ghost"],
        "run": 1,
        "targeted": 3,
    }
    rows = PushDelivery.objects.filter(campaign=campaign, run=1)
    assert set(rows.values_list("token_id", flat=True)) == {
        people["bob_ios"].pk,
        people["ana_ios"].pk,
        people["ana_android"].pk,
    }
    run = CampaignRun.objects.get(campaign=campaign, number=1)
    assert (run.trigger, run.data_override, run.fanout_done) == ("explicit", {"coupon": "X1"}, True)
    campaign.refresh_from_db()
    # An explicit push is a run of its own: the draft stays a draft (and stays editable).
    assert (campaign.status, campaign.current_run, campaign.last_run_number) == ("draft", 0, 1)
    [task] = broker.drain()
    assert task.name == "campaigns.send_campaign_batch"
    assert task.args[:2] == [str(campaign.id), 1]


def test_push_again_after_sent_is_a_new_run(api, project, people, broker):
    campaign = CampaignFactory(project=project, status=CampaignStatus.SENT, current_run=1)
    CampaignRun.objects.create(campaign=campaign, number=1, trigger="send", status="sent")
    response = api.client.post(url(project, campaign, "push"), {"user_ids": ["bob"]})
    assert response.json()["run"] == 2 and response.json()["targeted"] == 1


def test_nothing_reachable_starts_nothing(api, project, people, broker):
    campaign = CampaignFactory(project=project)
    response = api.client.post(url(project, campaign, "push"), {"device_ids": ["nope"]})
    assert response.json() == {"invalid_device_ids": ["nope"], "run": None, "targeted": 0}
    assert PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
    assert broker.drain() == []


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"device_ids": [str(i) for i in range(1001)]}, 413, "TOO_MANY_DEVICES"),
        ({"device_ids": ["1"] * 600, "user_ids": ["a"] * 401}, 413, "TOO_MANY_DEVICES"),
        ({}, 400, "VALIDATION_ERROR"),
        ({"device_ids": "abc"}, 400, "VALIDATION_ERROR"),
        ({"device_ids": [True]}, 400, "VALIDATION_ERROR"),
        ({"device_ids": [0]}, 400, "VALIDATION_ERROR"),
        ({"device_ids": [-3]}, 400, "VALIDATION_ERROR"),
        ({"device_ids": [" "]}, 400, "VALIDATION_ERROR"),
        ({"device_ids": ["x" * 513]}, 400, "VALIDATION_ERROR"),
        # user_ids are external ids, in the shape registration accepts (one validator)
        ({"user_ids": [""]}, 400, "INVALID_EXTERNAL_ID"),
        ({"user_ids": [0]}, 400, "INVALID_EXTERNAL_ID"),
        ({"user_ids": [" "]}, 400, "INVALID_EXTERNAL_ID"),
        ({"user_ids": ["ana\x01"]}, 400, "INVALID_EXTERNAL_ID"),
        ({"user_ids": ["a" * 256]}, 400, "INVALID_EXTERNAL_ID"),
        ({"user_ids": ["ana"], "data": []}, 400, "INVALID_DATA"),
        ({"user_ids": ["ana"], "data": {"x": "y" * 5000}}, 400, "PAYLOAD_TOO_LARGE"),
        ({"user_ids": ["ana"], "extra": 1}, 400, "VALIDATION_ERROR"),
    ],
)
def test_refused_pushes_change_nothing(api, project, people, broker, payload, status, code):
    campaign = CampaignFactory(project=project)
    response = api.client.post(url(project, campaign, "push"), payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert CampaignRun.objects.count() == 0 and PushDelivery.objects.count() == 0
    assert broker.drain() == []


def test_a_user_id_that_is_not_a_string_is_refused_naming_the_entry(api, project, people, broker):
    """`user_ids: [0]` was pushed as the external id "0"; the schema says strings."""
    campaign = CampaignFactory(project=project)
    response = api.client.post(url(project, campaign, "push"), {"user_ids": ["ana", 0]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_EXTERNAL_ID"
    assert response.json()["error"]["details"] == {"field": "user_ids[1]"}
    assert CampaignRun.objects.count() == 0 and PushDelivery.objects.count() == 0
    assert broker.drain() == []


def test_device_ids_take_row_ids_as_integers_and_token_strings(api, project, people, broker):
    campaign = CampaignFactory(project=project)
    token = people["ana_ios"]
    response = api.client.post(
        url(project, campaign, "push"), {"device_ids": [token.id, f" {token.token} "]}
    )
    assert response.status_code == 200
    assert response.json()["invalid_device_ids"] == []
    assert response.json()["targeted"] == 1


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("scheduled", "ALREADY_SCHEDULED"),
        ("sending", "ALREADY_SENT"),
        ("cancelled", "NOT_PUSHABLE"),
    ],
)
def test_push_refused_in_busy_states(api, project, people, state, code):
    campaign = CampaignFactory(project=project, status=state)
    response = api.client.post(url(project, campaign, "push"), {"user_ids": ["ana"]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == code
    assert PushDelivery.objects.count() == 0


def test_push_on_another_projects_campaign_is_not_found(api, project, people):
    other = CampaignFactory()
    response = api.client.post(
        f"/admin/projects/{project.id}/push/campaigns/{other.id}/push", {"user_ids": ["ana"]}
    )
    assert response.status_code == 404


def test_audience_counts_by_provider_and_platform(api, project, people):
    campaign = CampaignFactory(project=project, platforms=["ios"])
    response = api.client.get(url(project, campaign, "audience"))
    assert response.status_code == 200
    assert response.json() == {
        "total": 2,
        "by_provider": {"apns": 2, "fcm": 0, "webpush": 0},
        "by_platform": {"ios": 2, "android": 0, "web": 0},
    }
    everyone = CampaignFactory(project=project)
    assert api.client.get(url(project, everyone, "audience")).json()["total"] == 3
