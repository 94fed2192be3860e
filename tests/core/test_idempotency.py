"""The Idempotency-Key mechanism (core/idempotency.py), through the campaign create door.

The doors themselves (send, explicit push, test push, registration) and the
16-thread race are in tests/campaigns/test_idempotency.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from drf_spectacular.generators import SchemaGenerator

from campaigns.models import PushCampaign
from core.errors import envelope
from core.idempotency import idempotency_claim, request_fingerprint
from core.models import IdempotencyKey
from core.tasks import expire_idempotency_keys_task
from tests.factories import ProjectFactory, api_client, create_api_key

pytestmark = pytest.mark.django_db

CAMPAIGN = {"title": "Hello", "body": "World"}


def create_url(project: Any) -> str:
    return f"/admin/projects/{project.id}/push/campaigns"


def post(api: Any, key: str | None, body: dict[str, Any], url: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.client.post(url or create_url(api.project), body, format="json", **headers)


def test_the_same_key_and_body_replays_the_first_answer_and_creates_once(api):
    first = post(api, "order-1", CAMPAIGN)
    again = post(api, "order-1", CAMPAIGN)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert first.headers.get("Idempotent-Replayed") is None
    assert again.headers["Idempotent-Replayed"] == "true"
    assert PushCampaign.objects.filter(project=api.project).count() == 1


def test_key_order_of_the_body_does_not_matter(api):
    first = post(api, "k", {"title": "Hello", "body": "World"})
    again = post(api, "k", {"body": "World", "title": "Hello"})

    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert PushCampaign.objects.count() == 1


def test_the_same_key_with_another_body_is_refused_and_changes_nothing(api):
    post(api, "k", CAMPAIGN)
    stored = list(IdempotencyKey.objects.values())

    response = post(api, "k", {**CAMPAIGN, "title": "Other"})

    assert response.status_code == 422
    assert response.json() == envelope(
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was used for a different request; use a new key.",
        {"field": "Idempotency-Key"},
    )
    assert list(PushCampaign.objects.values_list("title", flat=True)) == ["Hello"]
    assert list(IdempotencyKey.objects.values()) == stored


def test_the_same_key_on_another_operation_is_refused(api):
    campaign_id = post(api, "k", CAMPAIGN).json()["id"]

    response = post(api, "k", {}, url=f"{create_url(api.project)}/{campaign_id}/send")

    assert (response.status_code, response.json()["error"]["code"]) == (
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert PushCampaign.objects.get().status == "draft"


def test_a_quoted_key_is_the_same_key(api):
    post(api, "abc", CAMPAIGN)

    again = post(api, '"abc"', CAMPAIGN)

    assert again.headers["Idempotent-Replayed"] == "true"
    assert PushCampaign.objects.count() == 1


def test_keys_are_per_project(api):
    other = ProjectFactory()
    _key, raw = create_api_key(other)

    def post_other() -> Any:
        return api_client(raw).post(
            create_url(other), CAMPAIGN, format="json", HTTP_IDEMPOTENCY_KEY="shared"
        )

    mine = post(api, "shared", CAMPAIGN)
    theirs = post_other()
    theirs_again = post_other()

    assert theirs.status_code == 201
    assert theirs.headers.get("Idempotent-Replayed") is None
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs_again.headers["Idempotent-Replayed"] == "true"
    assert theirs_again.json()["id"] == theirs.json()["id"]
    assert PushCampaign.objects.filter(project=other).count() == 1
    assert PushCampaign.objects.filter(project=api.project).count() == 1


@pytest.mark.parametrize(
    "key", ["", " ", " x", "x\t", "x" * 256, "caf\N{LATIN SMALL LETTER E WITH ACUTE}", '"x" ']
)
def test_a_malformed_key_is_refused_and_nothing_is_created(api, key):
    response = post(api, key, CAMPAIGN)

    assert response.status_code == 400
    assert response.json() == envelope(
        "INVALID_IDEMPOTENCY_KEY",
        "Idempotency-Key must be 1-255 printable ASCII characters, not starting or ending"
        " with a space.",
        {"field": "Idempotency-Key"},
    )
    assert (PushCampaign.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_a_key_of_255_printable_characters_is_taken(api):
    key = ("A b~" * 64)[:254] + "!"

    post(api, key, CAMPAIGN)
    again = post(api, key, CAMPAIGN)

    assert again.headers["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get().key == key


def test_a_validation_error_is_stored_and_replayed(api):
    first = post(api, "k", {"body": "no title"})
    again = post(api, "k", {"body": "no title"})

    assert first.status_code == again.status_code == 400
    assert first.json()["error"]["code"] == "MISSING_TITLE"
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_5xx_is_not_stored_so_the_same_key_may_run_again(api, broken_broker, broker):
    campaign_id = post(api, None, CAMPAIGN).json()["id"]
    url = f"{create_url(api.project)}/{campaign_id}/send"

    failed = post(api, "send-1", {}, url=url)
    broken_broker.restore()
    retried = post(api, "send-1", {}, url=url)
    replayed = post(api, "send-1", {}, url=url)

    assert failed.status_code == 500 and failed.json()["error"]["code"] == "SEND_FAILED"
    assert retried.status_code == 200 and retried.headers.get("Idempotent-Replayed") is None
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == retried.content
    campaign = PushCampaign.objects.get()
    assert (campaign.status, campaign.current_run) == ("sending", 2)
    assert [t.name for t in broker.drain()] == ["campaigns.fan_out_campaign"]


def test_a_request_still_running_with_the_key_gets_409_with_retry_after(api):
    fingerprint = request_fingerprint(method="POST", path=create_url(api.project), body=CAMPAIGN)
    idempotency_claim(project=api.project, key="k", fingerprint=fingerprint)

    response = post(api, "k", CAMPAIGN)

    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"
    assert response.json() == envelope(
        "IDEMPOTENCY_KEY_IN_USE",
        "A request with this Idempotency-Key is still running; retry shortly.",
        {"field": "Idempotency-Key", "retry_after": 1},
    )
    assert PushCampaign.objects.count() == 0


def test_a_first_request_that_never_answered_is_taken_over_after_the_claim_timeout(api):
    fingerprint = request_fingerprint(method="POST", path=create_url(api.project), body=CAMPAIGN)
    idempotency_claim(project=api.project, key="k", fingerprint=fingerprint)
    IdempotencyKey.objects.update(claimed_at=timezone.now() - timedelta(minutes=6))

    response = post(api, "k", CAMPAIGN)

    assert response.status_code == 201
    assert PushCampaign.objects.count() == 1
    assert IdempotencyKey.objects.get().response_status == 201


def test_a_key_older_than_24_hours_is_a_new_key_even_before_the_sweep(api):
    post(api, "k", CAMPAIGN)
    IdempotencyKey.objects.update(claimed_at=timezone.now() - timedelta(hours=24, seconds=1))

    again = post(api, "k", {**CAMPAIGN, "title": "Tomorrow"})
    replayed = post(api, "k", {**CAMPAIGN, "title": "Tomorrow"})

    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") is None
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == again.content
    assert sorted(PushCampaign.objects.values_list("title", flat=True)) == ["Hello", "Tomorrow"]


def test_the_expiry_task_deletes_keys_older_than_24_hours_only(api):
    for key in ("old", "young"):
        post(api, key, {**CAMPAIGN, "title": key})
    now = timezone.now()
    IdempotencyKey.objects.filter(key="old").update(claimed_at=now - timedelta(hours=25))
    IdempotencyKey.objects.filter(key="young").update(claimed_at=now - timedelta(hours=23))

    assert expire_idempotency_keys_task() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]
    assert expire_idempotency_keys_task() == 0


def test_the_expiry_task_is_declared_as_a_periodic_task_every_hour():
    task = PeriodicTask.objects.get(task="core.expire_idempotency_keys")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")


def test_the_schema_documents_the_header_on_exactly_the_idempotent_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
            if "Idempotency-Key" in headers:
                documented.add((method, path.rstrip("/")))
                assert {"409", "422"} <= set(operation["responses"]), (method, path)

    campaigns = "/admin/projects/{project_id}/push/campaigns"
    assert documented == {
        ("post", campaigns),
        ("post", f"{campaigns}/{{campaign_id}}/send"),
        ("post", f"{campaigns}/{{campaign_id}}/push"),
        ("post", f"{campaigns}/test"),
        ("post", "/admin/push"),
        ("post", "/admin/push/{campaign_id}/send"),
        ("post", "/admin/push/{campaign_id}/push"),
        ("post", "/admin/push/test"),
        ("post", "/v1/projects/{project_id}/tokens"),
        ("post", "/admin/projects/{project_id}/compat/moengage/push"),
        ("post", "/admin/compat/moengage/push"),
    }
