"""The MoEngage-compatible send (POST .../compat/moengage/push): the reference's body
translated onto Herald's services, its error cases one by one (each changes
nothing), Basic auth, names claimed per project, goal filters mapped."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, transaction

from campaigns.compat.moengage import signature_for
from campaigns.models import CampaignRun, PushCampaign
from delivery.models import PushDelivery
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    ProjectFactory,
    PushTokenFactory,
    SegmentFactory,
    api_client,
    create_api_key,
)

pytestmark = pytest.mark.django_db


class Door:
    def __init__(self) -> None:
        self.project = ProjectFactory()
        _key, self.key = create_api_key(self.project)
        self.client = api_client(self.key)
        self.url = f"/admin/projects/{self.project.pk}/compat/moengage/push"

    def body(self, name: str = "Spring sale", **extra: Any) -> dict[str, Any]:
        app_id = str(self.project.pk)
        body = {
            "appId": app_id,
            "campaignName": name,
            "signature": signature_for(app_id, name, self.key),
            "requestType": "push",
            "targetPlatform": ["ANDROID", "IOS"],
            "targetAudience": "All Users",
            "campaignDelivery": {"type": "soon"},
            "payload": {
                "ANDROID": {
                    "title": "Sale",
                    "message": "50% off",
                    "imageUrl": "https://example.com/a.png",
                    "defaultAction": {"type": "DEEPLINKING", "value": "app://sale"},
                    "buttons": [{"name": "Shop", "action": {"value": "app://shop"}}],
                    "kvPairs": {"coupon": "SPRING"},
                    "summary": "ignored",
                },
                "IOS": {"title": "Sale", "message": "50% off", "subtitle": "ignored"},
            },
            "campaignTags": ["Transactional", "Accounts"],
        }
        body.update(extra)
        return body

    def post(self, body: Any) -> Any:
        return self.client.post(self.url, body, format="json")


@pytest.fixture
def door() -> Door:
    return Door()


def state() -> dict[str, list[Any]]:
    return {
        "campaigns": list(PushCampaign.objects.order_by("id").values()),
        "runs": list(CampaignRun.objects.order_by("id").values()),
        "deliveries": list(PushDelivery.objects.order_by("id").values()),
    }


def test_all_users_soon_creates_and_sends_the_translated_campaign(door, broker) -> None:
    answer = door.post(door.body())
    assert answer.status_code == 200, answer.content
    campaign = PushCampaign.objects.get()
    assert answer.json() == {
        "status": "success",
        "campaign_id": str(campaign.pk),
        "campaign_status": "sending",
        "created": True,
        "run": None,
        "targeted": None,
        "invalid_user_ids": [],
    }
    assert (campaign.name, campaign.title, campaign.body) == ("Spring sale", "Sale", "50% off")
    assert campaign.platforms == ["ios", "android"]
    assert campaign.image_url == "https://example.com/a.png"
    assert campaign.url == "app://sale"
    assert campaign.actions == [{"id": "button1", "title": "Shop", "url": "app://shop"}]
    assert campaign.data == {"coupon": "SPRING"}
    assert campaign.tags == ["Transactional", "Accounts"]
    assert campaign.segment is None and campaign.unique_name
    assert [t.name for t in broker.drain()] != []


def test_basic_auth_with_the_project_id_as_username(door, broker) -> None:
    client = api_client()
    token = base64.b64encode(f"{door.project.pk}:{door.key}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    answer = client.post(door.url, door.body(), format="json")
    assert answer.status_code == 200, answer.content
    wrong = base64.b64encode(f"{ProjectFactory().pk}:{door.key}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {wrong}")
    before = state()
    refused = client.post(door.url, door.body("Other name"), format="json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
    assert state() == before
    # The alias route takes the key's project.
    alias = door.client.post("/admin/compat/moengage/push", door.body("Third name"), format="json")
    assert alias.status_code == 200, alias.content


def test_custom_segment_later_is_scheduled_in_the_given_zone(door) -> None:
    segment = SegmentFactory(project=door.project, name="Canadians")
    delivery = {
        "type": "later",
        "date": "11/07/2099",
        "time": "04:33 PM",
        "timezone": "Asia/Kolkata",
    }
    body = door.body(
        targetAudience="Custom Segment", customSegmentName="Canadians", campaignDelivery=delivery
    )
    answer = door.post(body)
    assert answer.status_code == 200, answer.content
    campaign = PushCampaign.objects.get()
    assert answer.json()["campaign_status"] == "scheduled"
    assert campaign.segment == segment
    assert campaign.scheduled_at == datetime(2099, 11, 7, 11, 3, tzinfo=UTC)


def test_later_without_a_zone_uses_the_projects(door) -> None:
    door.project.default_timezone = "America/New_York"
    door.project.save()
    delivery = {"type": "later", "date": "01/15/2099", "time": "09:00 AM"}
    assert door.post(door.body(campaignDelivery=delivery)).status_code == 200
    assert PushCampaign.objects.get().scheduled_at == datetime(2099, 1, 15, 14, 0, tzinfo=UTC)


@time_machine.travel(datetime(2098, 1, 1, tzinfo=UTC), tick=False)
def test_periodic_is_an_every_days_recurrence_ending_after_end_date(door) -> None:
    delivery = {
        "type": "periodic",
        "endDate": "11/07/2099",
        "time": "04:55 PM",
        "timezone": "Asia/Kolkata",
        "repeatAfter": "2",
    }
    answer = door.post(door.body(campaignDelivery=delivery))
    assert answer.status_code == 200, answer.content
    campaign = PushCampaign.objects.get()
    assert campaign.recurrence == {"every_days": 2, "at": "16:55", "timezone": "Asia/Kolkata"}
    assert campaign.end_at == datetime(2099, 11, 7, 18, 30, tzinfo=UTC)  # 8th 00:00 IST
    assert campaign.status == "scheduled"


def test_user_audience_creates_then_reuses_the_campaign_and_pushes(door, broker) -> None:
    ana = AppUserFactory(project=door.project, external_id="ana")
    bob = AppUserFactory(project=door.project, external_id="bob")
    ana_ios = PushTokenFactory(project=door.project, app_user=ana)
    PushTokenFactory(
        project=door.project, app_user=ana, provider="webpush", platform="web", token="w" * 80
    )
    bob_android = PushTokenFactory(
        project=door.project, app_user=bob, provider="fcm", platform="android", token="f" * 150
    )
    users = {
        "attribute": "USER_ATTRIBUTE_UNIQUE_ID",
        "comparisonParameter": "in",
        "attributeValue": ["ana", "bob", "ghost"],
    }
    first = door.post(door.body("Order updates", targetAudience="User", targetUserAttributes=users))
    assert first.status_code == 200, first.content
    campaign = PushCampaign.objects.get()
    assert first.json() == {
        "status": "success",
        "campaign_id": str(campaign.pk),
        "campaign_status": "draft",
        "created": True,
        "run": 1,
        "targeted": 2,
        "invalid_user_ids": ["ghost"],
    }
    # Only the target platforms' tokens (ana's web subscription is not one).
    assert set(
        PushDelivery.objects.filter(campaign=campaign, run=1).values_list("token_id", flat=True)
    ) == {ana_ios.pk, bob_android.pk}

    again = door.body("Order updates", targetAudience="User")
    again["targetUserAttributes"] = {
        "attribute": "USER_ATTRIBUTE_UNIQUE_ID",
        "comparisonParameter": "is",
        "attributeValue": "bob",
    }
    for platform in ("ANDROID", "IOS"):
        again["payload"][platform]["message"] = "Your order shipped"
    second = door.post(again)
    assert second.status_code == 200, second.content
    assert second.json()["created"] is False
    assert second.json()["run"] == 2
    assert PushCampaign.objects.count() == 1
    run = CampaignRun.objects.get(campaign=campaign, number=2)
    assert (run.trigger, run.body_override) == ("explicit", "Your order shipped")
    assert list(PushDelivery.objects.filter(run=2).values_list("token_id", flat=True)) == [
        bob_android.pk
    ]


def test_a_second_all_users_request_with_the_name_is_a_duplicate(door, broker) -> None:
    assert door.post(door.body()).status_code == 200
    broker.drain()
    before = state()
    again = door.post(door.body(targetAudience="All Users"))
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "DUPLICATE_CAMPAIGN_NAME",
        "message": "A campaign named 'Spring sale' already exists in this project.",
        "details": {"field": "campaignName", "name": "Spring sale", "herald_field": "name"},
    }
    assert state() == before
    assert broker.drain() == []
    # A campaign made through Herald's API with the name also takes it.
    CampaignFactory(project=door.project, name="Summer sale")
    assert door.post(door.body("Summer sale")).json()["error"]["code"] == (
        "DUPLICATE_CAMPAIGN_NAME"
    )


def test_the_database_refuses_two_claims_of_one_name() -> None:
    """What settles two concurrent requests: the partial unique constraint."""
    project = ProjectFactory()
    CampaignFactory(project=project, name="Spring sale", unique_name=True)
    CampaignFactory(project=project, name="Spring sale")  # unclaimed names may repeat
    with pytest.raises(IntegrityError), transaction.atomic():
        CampaignFactory(project=project, name="Spring sale", unique_name=True)


def _without(key: str) -> Any:
    return lambda body: {k: v for k, v in body.items() if k != key}


def _with(**changes: Any) -> Any:
    return lambda body: {**body, **changes}


def _payload(platform: str, **changes: Any) -> Any:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body["payload"][platform].update(changes)
        return body

    return change


def _goal(attrs: Any) -> Any:
    return _with(conversionGoals=[{"name": "Cart", "eventName": "AddedToCart", "attrs": attrs}])


ERROR_CASES = [
    (_with(requestType="pull"), 400, "INVALID_REQUEST_TYPE", "requestType"),
    (_without("appId"), 400, "MISSING_APP_ID", "appId"),
    (_with(appId="6197120_DEBUG"), 400, "INVALID_APP_ID", "appId"),
    (_without("campaignName"), 400, "MISSING_CAMPAIGN_NAME", "campaignName"),
    (_with(campaignName="Sale"), 400, "CAMPAIGN_NAME_TOO_SHORT", "campaignName"),
    (_without("signature"), 400, "MISSING_SIGNATURE", "signature"),
    (_with(signature="0" * 64), 403, "INVALID_SIGNATURE", "signature"),
    (_with(campaignName="Spring sales"), 403, "INVALID_SIGNATURE", "signature"),
    (_with(extra=1), 400, "VALIDATION_ERROR", "extra"),
    (_without("targetPlatform"), 400, "VALIDATION_ERROR", "targetPlatform"),
    (_with(targetPlatform=["BLACKBERRY"]), 400, "VALIDATION_ERROR", "targetPlatform"),
    (_with(targetPlatform="ANDROID"), 400, "VALIDATION_ERROR", "targetPlatform"),
    (_with(targetAudience="Everyone"), 400, "VALIDATION_ERROR", "targetAudience"),
    (_with(targetAudience="Custom Segment"), 400, "VALIDATION_ERROR", "customSegmentName"),
    (
        _with(targetAudience="Custom Segment", customSegmentName="Nobody"),
        400,
        "INVALID_SEGMENT_ID",
        "customSegmentName",
    ),
    (_with(targetAudience="User"), 400, "VALIDATION_ERROR", "targetUserAttributes"),
    (
        _with(
            targetAudience="User",
            targetUserAttributes={
                "attribute": "USER_ATTRIBUTE_USER_EMAIL",
                "attributeValue": ["a"],
            },
        ),
        400,
        "UNSUPPORTED_USER_ATTRIBUTE",
        "targetUserAttributes.attribute",
    ),
    (
        _with(
            targetAudience="User",
            targetUserAttributes={
                "attribute": "USER_ATTRIBUTE_UNIQUE_ID",
                "attributeValue": [f"u{i}" for i in range(101)],
            },
        ),
        400,
        "TOO_MANY_USERS",
        "targetUserAttributes.attributeValue",
    ),
    (
        _with(
            targetAudience="User",
            targetUserAttributes={"attribute": "USER_ATTRIBUTE_UNIQUE_ID", "attributeValue": ["a"]},
            campaignDelivery={"type": "later", "date": "01/01/2099", "time": "10:00 AM"},
        ),
        400,
        "VALIDATION_ERROR",
        "campaignDelivery.type",
    ),
    (_with(campaignDelivery={"type": "asap"}), 400, "VALIDATION_ERROR", "campaignDelivery.type"),
    (
        _with(campaignDelivery={"type": "later", "date": "2099-01-01", "time": "10:00 AM"}),
        400,
        "VALIDATION_ERROR",
        "campaignDelivery.date",
    ),
    (
        _with(campaignDelivery={"type": "later", "date": "01/01/2099", "time": "25:00"}),
        400,
        "VALIDATION_ERROR",
        "campaignDelivery.time",
    ),
    (
        _with(
            campaignDelivery={
                "type": "later",
                "date": "01/01/2099",
                "time": "10:00 AM",
                "timezone": "Mars/Olympus",
            }
        ),
        400,
        "VALIDATION_ERROR",
        "campaignDelivery.timezone",
    ),
    (
        _with(campaignDelivery={"type": "later", "date": "01/01/2001", "time": "10:00 AM"}),
        400,
        "SCHEDULED_AT_IN_PAST",
        "campaignDelivery",
    ),
    (
        _with(campaignDelivery={"type": "periodic", "time": "10:00 AM", "repeatAfter": 0}),
        400,
        "VALIDATION_ERROR",
        "campaignDelivery.repeatAfter",
    ),
    (_without("payload"), 400, "VALIDATION_ERROR", "payload"),
    (
        _with(payload={"ANDROID": {"title": "a", "message": "b"}}),
        400,
        "VALIDATION_ERROR",
        "payload.IOS",
    ),
    (_payload("IOS", title="Other"), 400, "VALIDATION_ERROR", "payload.IOS.title"),
    (
        lambda body: _payload("IOS", title=" ")(_payload("ANDROID", title=" ")(body)),
        400,
        "MISSING_TITLE",
        "payload.ANDROID.title",
    ),
    (_payload("ANDROID", imageUrl="ftp://x"), 400, "VALIDATION_ERROR", "payload.ANDROID.imageUrl"),
    (_payload("ANDROID", kvPairs=[]), 400, "INVALID_DATA", "payload.ANDROID.kvPairs"),
    (_with(campaignTags="x"), 400, "VALIDATION_ERROR", "campaignTags"),
    (
        _goal({"name": "sku", "filter": "in the last", "value": "1", "type": "string"}),
        400,
        "UNSUPPORTED_GOAL_FILTER",
        "conversionGoals[0].attrs.filter",
    ),
    (
        _goal({"name": "day", "filter": "is", "value": "x", "type": "datetime"}),
        400,
        "UNSUPPORTED_GOAL_FILTER",
        "conversionGoals[0].attrs.type",
    ),
    (
        _goal({"name": "price", "filter": "is between", "value": "1", "type": "numeric"}),
        400,
        "VALIDATION_ERROR",
        "conversionGoals[0].attrs.value",
    ),
    (
        _goal({"name": "price", "filter": "is less than", "value": "nan", "type": "numeric"}),
        400,
        "VALIDATION_ERROR",
        "conversionGoals[0].attrs.value",
    ),
    (
        _with(conversionGoals=[{"name": "Cart", "eventName": "Added To Cart"}]),
        400,
        "VALIDATION_ERROR",
        "conversionGoals[0].event",
    ),
]


@pytest.mark.parametrize(("change", "status", "code", "field"), ERROR_CASES)
def test_each_error_case_is_answered_in_the_envelope_and_changes_nothing(
    door, broker, change, status, code, field
) -> None:
    SegmentFactory(project=door.project, name="Canadians")
    body = change(door.body())
    # Re-signed after the change (a change of the name must not fail on the signature),
    # but where the signature itself is the case.
    if {"signature", "campaignName", "appId"} <= set(body) and code != "INVALID_SIGNATURE":
        body["signature"] = signature_for(body["appId"], body["campaignName"], door.key)
    before = state()
    answer = door.post(body)
    assert answer.status_code == status, answer.content
    error = answer.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field), error
    assert error["message"]
    assert state() == before
    assert broker.drain() == []


@pytest.mark.parametrize(
    ("attrs", "rule"),
    [
        ({"name": "sku", "filter": "is", "value": "1008", "type": "string"},
         {"attr": "sku", "op": "eq", "value": "1008"}),
        ({"name": "sku", "filter": "does not start with", "value": "10", "type": "string"},
         {"not": {"attr": "sku", "op": "starts_with", "value": "10"}}),
        ({"name": "sku", "filter": "not in the following", "value": ["1", "2"], "type": "string"},
         {"attr": "sku", "op": "not_in", "value": ["1", "2"]}),
        ({"name": "sku", "filter": "does not exist", "type": "string"},
         {"attr": "sku", "op": "not_exists"}),
        ({"name": "price", "filter": "is between", "value": "899,999", "type": "numeric"},
         {"attr": "price", "op": "between", "value": [899, 999]}),
        ({"name": "price", "filter": "is greater than", "value": "9.5", "type": "double"},
         {"attr": "price", "op": "gt", "value": 9.5}),
        ({"name": "price", "filter": "is not equal to", "value": 999, "type": "numeric"},
         {"attr": "price", "op": "neq", "value": 999}),
    ],
)  # fmt: skip
def test_goal_filters_map_onto_herald_rules(door, attrs, rule) -> None:
    goals = [
        {"name": "Added To Cart", "eventName": "AddedTocart", "attrs": attrs},
        {"name": "Order Placed", "eventName": "OrderSuccess"},
    ]
    answer = door.post(door.body(conversionGoals=goals))
    assert answer.status_code == 200, answer.content
    assert PushCampaign.objects.get().goals == [
        {"name": "Added To Cart", "event": "AddedTocart", "filter": rule, "window_hours": 36,
         "primary": True},
        {"name": "Order Placed", "event": "OrderSuccess", "filter": None, "window_hours": 36,
         "primary": False},
    ]  # fmt: skip


def test_staff_sessions_and_client_keys_cannot_call_it(door, admin_client) -> None:
    before = state()
    staff = admin_client.post(door.url, door.body(), content_type="application/json")
    assert staff.status_code == 401
    _key, client_key = create_api_key(door.project, scope="client")
    as_client = api_client(client_key).post(door.url, door.body(), format="json")
    assert as_client.status_code == 403
    assert state() == before
