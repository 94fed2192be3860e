"""Segment, targeting and explicit-list sends reach exactly the expected tokens.

Real worker, simulators over HTTP/2 + TLS; per-token simulator counts are the proof.
"""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.validation import validate_create
from delivery.models import PushToken
from segments.models import AppUser, Segment
from tests.e2e.conftest import drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PEOPLE = [
    # external id, attributes, providers
    ("fr-pro", {"country": "FR", "language": "fr", "plan": "pro"}, ["apns", "fcm"]),
    ("fr-free", {"country": "FR", "language": "fr", "plan": "free"}, ["fcm"]),
    ("de-pro", {"country": "DE", "language": "de", "plan": "pro"}, ["apns"]),
    ("us-pro", {"country": "US", "language": "en", "plan": "pro"}, ["fcm"]),
    ("us-free", {"country": "US", "language": "en", "plan": "free"}, ["apns"]),
]


@pytest.fixture
def world(simulators):
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    tokens: dict[str, list[str]] = {}
    for external_id, attributes, providers in PEOPLE:
        user = AppUser.objects.create(
            project=project, external_id=external_id, attributes=attributes
        )
        for n, provider in enumerate(providers):
            value = (
                f"{abs(hash(external_id)):x}{n}".ljust(64, "a")
                if provider == "apns"
                else (f"tok-{external_id}-{n}-" + "x" * 140)
            )
            PushToken.objects.create(
                project=project,
                app_user=user,
                token=value,
                provider=provider,
                platform="ios" if provider == "apns" else "android",
            )
            tokens.setdefault(external_id, []).append(value)
    return project, tokens


def sent(simulators) -> set[str]:
    counts = _accepted(simulators)["tokens"]
    assert set(counts.values()) <= {1}, "a token was sent twice"
    return set(counts)


def finish(campaign) -> None:
    assert wait_for(
        lambda: PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT,
        timeout=60,
    )


def finish_run(campaign, number: int) -> None:
    """An explicit push's run settles on its own; the campaign's status stays."""
    assert wait_for(
        lambda: CampaignRun.objects.filter(
            campaign=campaign,
            number=number,
            status=CampaignRun.Status.SENT,
            settled_at__isnull=False,
        ).exists(),
        timeout=60,
    )


def test_segment_send(world, simulators, start_worker):
    project, tokens = world
    start_worker()
    segment = Segment.objects.create(
        project=project,
        name="European pros",
        rules={
            "all": [
                {"attr": "country", "op": "in", "value": ["FR", "DE"]},
                {"attr": "plan", "op": "eq", "value": "pro"},
            ]
        },
    )
    fields = validate_create({"title": "Hi", "body": "B", "segment_id": str(segment.id)})
    campaign = services.campaign_create(project=project, fields=fields)
    services.campaign_send(project=project, campaign_id=campaign.id)
    finish(campaign)
    assert sent(simulators) == {*tokens["fr-pro"], *tokens["de-pro"]}


def test_targeting_send(world, simulators, start_worker):
    project, tokens = world
    start_worker()
    fields = validate_create(
        {
            "title": "Hi",
            "body": "B",
            "targeting": {
                "countries": {"include": ["FR", "US"]},
                "users": {"exclude": ["us-free"]},
            },
            "platforms": ["android"],
        }
    )
    campaign = services.campaign_create(project=project, fields=fields)
    services.campaign_send(project=project, campaign_id=campaign.id)
    finish(campaign)
    android = {
        t for t in PushToken.objects.filter(platform="android").values_list("token", flat=True)
    }
    assert sent(simulators) == (
        {*tokens["fr-pro"], *tokens["fr-free"], *tokens["us-pro"]} & android
    )


def test_explicit_list_push(world, simulators, start_worker):
    project, tokens = world
    start_worker()
    campaign = services.campaign_create(
        project=project, fields=validate_create({"title": "Hi", "body": "B"})
    )
    device = PushToken.objects.get(token=tokens["us-free"][0])
    pushed = services.campaign_push_explicit(
        project=project,
        campaign_id=campaign.id,
        device_ids=[str(device.pk), "unknown-token"],
        user_ids=["de-pro"],
    )
    assert pushed.invalid_device_ids == ["unknown-token"]
    finish_run(campaign, 1)
    assert sent(simulators) == {*tokens["us-free"], *tokens["de-pro"]}
    assert PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
    # Again, to a user only: a second run to exactly that user's devices.
    simulators.reset()
    again = services.campaign_push_explicit(
        project=project, campaign_id=campaign.id, device_ids=[], user_ids=["fr-pro"]
    )
    assert again.run == 2
    finish_run(campaign, 2)
    assert sent(simulators) == set(tokens["fr-pro"])
    assert PushCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
