"""factory_boy factories for the models tests build most often.

Rows made here skip validation and services on purpose: a test puts a campaign in
any state (e.g. `CampaignFactory(status="sent")`) and then drives the API or a
service from there.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import CampaignRun, PushCampaign
from core.access import role_group_name
from core.models import ApiKey, Project, ProjectMembership
from delivery.models import PushDelivery, PushToken
from segments.models import AppUser, Segment


class _ModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    if TYPE_CHECKING:
        # factory_boy's metaclass makes `SomeFactory(...)` return a model instance,
        # which mypy cannot see; without this it types the call as the factory class.
        def __new__(cls, *args: Any, **kwargs: Any) -> Any: ...


class ProjectFactory(_ModelFactory):
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


def staff_user(username: str | None = None, **memberships: str) -> Any:
    """An active staff account (no superuser) with a role per project: ``staff_user(
    "ana", **{str(project.pk): "sender"})``; roles are core/access.py's."""
    user = get_user_model().objects.create_user(
        username=username or f"staff-{uuid.uuid4().hex[:8]}",
        password=None,  # unusable: force_login needs none, and hashing one is slow
        is_staff=True,
    )
    for project_id, role in memberships.items():
        add_member(user, Project.objects.get(pk=project_id), role)
    return user


def add_member(user: Any, project: Project, role: str) -> ProjectMembership:
    """Give ``user`` a role (viewer, editor, sender, admin) in ``project``."""
    return ProjectMembership.objects.create(
        user=user, project=project, role=Group.objects.get(name=role_group_name(role))
    )


def api_client(raw_key: str | None = None) -> APIClient:
    """A DRF test client sending JSON, with `Authorization: Bearer <raw_key>` if given."""
    client = APIClient()
    client.default_format = "json"
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


class AppUserFactory(_ModelFactory):
    class Meta:
        model = AppUser

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
    attributes = factory.LazyFunction(dict)


class PushTokenFactory(_ModelFactory):
    class Meta:
        model = PushToken

    project = factory.SubFactory(ProjectFactory)
    app_user = factory.SubFactory(AppUserFactory, project=factory.SelfAttribute("..project"))
    token = factory.Sequence(lambda n: f"{n:064x}")
    provider = "apns"
    platform = "ios"


class SegmentFactory(_ModelFactory):
    class Meta:
        model = Segment

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Segment {n}")
    rules = factory.LazyFunction(dict)


class CampaignFactory(_ModelFactory):
    class Meta:
        model = PushCampaign

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    title = "Hello"
    body = "World"
    scheduled_at = None
    # The scheduler fires on fire_at; for a plain one-shot schedule it is scheduled_at.
    fire_at = factory.SelfAttribute("scheduled_at")
    # Run numbers are given out from last_run_number; a campaign made with runs has
    # given out at least its current one.
    current_run = 0
    last_run_number = factory.SelfAttribute("current_run")


class CampaignRunFactory(_ModelFactory):
    class Meta:
        model = CampaignRun

    campaign = factory.SubFactory(CampaignFactory)
    number = factory.Sequence(lambda n: n + 1)
    trigger = CampaignRun.Trigger.SEND


class PushDeliveryFactory(_ModelFactory):
    class Meta:
        model = PushDelivery

    campaign = factory.SubFactory(CampaignFactory)
    run = 1
    token = factory.SubFactory(
        PushTokenFactory, project=factory.SelfAttribute("..campaign.project")
    )
    app_user = factory.SelfAttribute("token.app_user")
    provider = factory.SelfAttribute("token.provider")
