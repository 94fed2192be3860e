"""factory_boy factories for the models tests build most often.

Rows made here skip validation and services on purpose: a test puts a campaign in
any state (e.g. `CampaignFactory(status="sent")`) and then drives the API or a
service from there.
"""

from __future__ import annotations

import factory
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import CampaignRun, PushCampaign
from core.models import ApiKey, Project
from delivery.models import PushDelivery, PushToken
from segments.models import AppUser, Segment


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")


def create_api_key(
    project: Project,
    *,
    scope: str = ApiKey.Scope.ADMIN,
    revoked: bool = False,
    name: str = "test key",
) -> tuple[ApiKey, str]:
    """A stored key and the raw `hk_<prefix>_<secret>` string a client sends."""
    raw, prefix, secret_hash = ApiKey.generate()
    key = ApiKey.objects.create(
        project=project,
        name=name,
        scope=scope,
        prefix=prefix,
        secret_hash=secret_hash,
        revoked_at=timezone.now() if revoked else None,
    )
    return key, raw


def api_client(raw_key: str | None = None) -> APIClient:
    """A DRF test client sending JSON, with `Authorization: Bearer <raw_key>` if given."""
    client = APIClient()
    client.default_format = "json"
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


class AppUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AppUser

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
    attributes = factory.LazyFunction(dict)


class PushTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PushToken

    project = factory.SubFactory(ProjectFactory)
    app_user = factory.SubFactory(AppUserFactory, project=factory.SelfAttribute("..project"))
    token = factory.Sequence(lambda n: f"{n:064x}")
    provider = "apns"
    platform = "ios"


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Segment {n}")
    rules = factory.LazyFunction(dict)


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PushCampaign

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    title = "Hello"
    body = "World"
    scheduled_at = None
    # The scheduler fires on fire_at; for a plain one-shot schedule it is scheduled_at.
    fire_at = factory.SelfAttribute("scheduled_at")


class CampaignRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CampaignRun

    campaign = factory.SubFactory(CampaignFactory)
    number = factory.Sequence(lambda n: n + 1)
    trigger = CampaignRun.Trigger.SEND


class PushDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PushDelivery

    campaign = factory.SubFactory(CampaignFactory)
    run = 1
    token = factory.SubFactory(
        PushTokenFactory, project=factory.SelfAttribute("..campaign.project")
    )
    app_user = factory.SelfAttribute("token.app_user")
    provider = factory.SelfAttribute("token.provider")
