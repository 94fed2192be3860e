"""Idempotency-Key at each door that does work: send, explicit push, test push and
token registration (campaign create: tests/core/test_idempotency.py).

Pushes go to the in-process simulators over real HTTP/2; batches are run by calling
the task function, as a worker would. The race runs real threads, each with its own
connection, against committed rows on the real database.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from campaigns import sending
from campaigns.models import CampaignRun, PushCampaign
from core.models import ApiKey, IdempotencyKey
from delivery.models import PushDelivery, PushToken
from tests.concurrency import race
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    PushTokenFactory,
    api_client,
    create_api_key,
)

pytestmark = pytest.mark.usefixtures("clean_sim")

APNS_TOKENS = [f"{i:02x}" * 32 for i in range(1, 4)]


def campaigns_url(project: Any) -> str:
    return f"/admin/projects/{project.id}/push/campaigns"


def post(client: Any, url: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(url, body, format="json", **headers)


def run_batches(campaign: PushCampaign, broker: Any) -> None:
    """Run the enqueued send batches, as a worker would."""
    for task in broker.drain():
        assert task.name == "campaigns.send_campaign_batch"
        _, run, first, last = task.args
        sending.run_batch(
            campaign_id=campaign.id, run=run, first_token_id=first, last_token_id=last
        )


def apns_pushes(sim: Any) -> dict[str, int]:
    """How many pushes the APNs simulator accepted, per device token."""
    return dict(sim.stats(tokens=True)["apns"]["tokens"])


@pytest.mark.django_db
def test_send_replayed_with_its_key_starts_one_run(api, broker):
    campaign = CampaignFactory(project=api.project)
    url = f"{campaigns_url(api.project)}/{campaign.id}/send"

    first = post(api.client, url, {}, "send-1")
    again = post(api.client, url, {}, "send-1")

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert list(CampaignRun.objects.values_list("number", "status")) == [(1, "sending")]
    assert [t.name for t in broker.drain()] == ["campaigns.fan_out_campaign"]


@pytest.mark.django_db
def test_a_late_push_retry_after_the_run_ended_does_not_push_again(api, project, broker, sim):
    """The issue's double delivery: a retry arriving once the first run is `sent`."""
    for token in APNS_TOKENS:
        PushTokenFactory(project=project, token=token)
    campaign = CampaignFactory(project=project)
    url = f"{campaigns_url(project)}/{campaign.id}/push"
    body = {"device_ids": APNS_TOKENS}

    first = post(api.client, url, body, "push-1")
    run_batches(campaign, broker)
    assert CampaignRun.objects.get(campaign=campaign, number=1).status == "sent"
    retry = post(api.client, url, body, "push-1")

    assert first.json() == {"invalid_device_ids": [], "run": 1, "targeted": 3}
    assert (retry.status_code, retry.content) == (200, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert broker.drain() == []
    assert list(CampaignRun.objects.values_list("number", flat=True)) == [1]
    assert apns_pushes(sim) == dict.fromkeys(APNS_TOKENS, 1)

    # Without a key every call is a new run, as before.
    unkeyed = []
    for _ in range(2):
        unkeyed.append(post(api.client, url, body, None).json()["run"])
        run_batches(campaign, broker)
    assert unkeyed == [2, 3]
    assert apns_pushes(sim) == dict.fromkeys(APNS_TOKENS, 3)


@pytest.mark.django_db
def test_a_test_push_replayed_with_its_key_is_sent_once(api, project, sim):
    user = AppUserFactory(project=project)
    PushTokenFactory(project=project, app_user=user, token=APNS_TOKENS[0])
    url = f"{campaigns_url(project)}/test"
    body = {"title": "T", "body": "B", "app_user_id": str(user.id)}

    first = post(api.client, url, body, "test-1")
    again = post(api.client, url, body, "test-1")

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert PushDelivery.objects.count() == 1
    assert apns_pushes(sim) == {APNS_TOKENS[0]: 1}


@pytest.mark.django_db
def test_a_registration_replayed_with_its_key_answers_the_first_201(api):
    _key, raw = create_api_key(api.project, scope=ApiKey.Scope.CLIENT, name="app")
    client = api_client(raw)
    url = f"/v1/projects/{api.project.id}/tokens"
    body = {"token": APNS_TOKENS[0], "provider": "apns", "platform": "ios", "external_id": "ana"}

    first = post(client, url, body, "register-1")
    again = post(client, url, body, "register-1")
    unkeyed = post(client, url, body, None)

    assert (first.status_code, again.status_code, unkeyed.status_code) == (201, 201, 200)
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert PushToken.objects.count() == 1


THREADS = 16


@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_pushes_with_one_key_start_exactly_one_run(project, broker):
    _key, raw = create_api_key(project, name="racer")
    for token in APNS_TOKENS:
        PushTokenFactory(project=project, token=token)
    campaign = CampaignFactory(project=project)
    url = f"{campaigns_url(project)}/{campaign.id}/push"
    body = {"device_ids": APNS_TOKENS}

    responses = race([lambda: post(api_client(raw), url, body, "same") for _ in range(THREADS)])

    kinds = Counter(
        "ran"
        if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
        else "replayed"
        if r.status_code == 200
        else r.json()["error"]["code"]
        for r in responses
    )
    assert kinds["ran"] == 1
    assert kinds["replayed"] + kinds["IDEMPOTENCY_KEY_IN_USE"] == THREADS - 1
    ran = next(
        r for r in responses if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    )
    assert ran.json() == {"invalid_device_ids": [], "run": 1, "targeted": 3}
    for response in responses:
        if response.status_code == 200:
            assert response.content == ran.content
        else:
            assert (response.status_code, response.headers["Retry-After"]) == (409, "1")
    assert list(CampaignRun.objects.values_list("number", flat=True)) == [1]
    assert PushDelivery.objects.count() == 3
    assert [t.name for t in broker.drain()] == ["campaigns.send_campaign_batch"]
    assert IdempotencyKey.objects.get().response_status == 200
