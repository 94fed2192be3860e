"""Campaign HTTP API: every route's success shape, the aliases, lookups and pagination.

Error codes of the input validation are in test_validation.py, state transitions in
test_state_machine.py, auth and cross-project isolation in tests/core/test_auth.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import campaign_stats
from delivery.models import PushDelivery
from tests.factories import (
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db

FAN_OUT = "campaigns.fan_out_campaign"
FIRE = "campaigns.fire_scheduled_campaign"
ZERO_STATS = {
    "targeted": 0,
    "sent": 0,
    "failed": 0,
    "invalid_tokens": 0,
    "skipped": 0,
    "unknown": 0,
    "pending": 0,
}


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def iso(value: datetime | None) -> str | None:
    """A datetime as DRF renders it (UTC, 'Z' suffix)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def representation(campaign: PushCampaign) -> dict[str, Any]:
    """What the API must answer for a row, built field by field from the database."""
    campaign.refresh_from_db()
    return {
        "id": str(campaign.id),
        "project_id": str(campaign.project_id),
        "name": campaign.name,
        "title": campaign.title,
        "body": campaign.body,
        "data": campaign.data,
        "segment_id": str(campaign.segment_id) if campaign.segment_id else None,
        "status": campaign.status,
        "scheduled_at": iso(campaign.scheduled_at),
        "stats": campaign_stats(campaign),
        "localizations": campaign.localizations,
        "image_url": campaign.image_url,
        "icon": campaign.icon,
        "web_badge": campaign.web_badge,
        "url": campaign.url,
        "actions": campaign.actions,
        "sound": campaign.sound,
        "badge": campaign.badge,
        "vibrate": campaign.vibrate,
        "require_interaction": campaign.require_interaction,
        "renotify": campaign.renotify,
        "tag": campaign.tag,
        "collapse_key": campaign.collapse_key,
        "priority": campaign.priority,
        "ttl_seconds": campaign.ttl_seconds,
        "platforms": campaign.platforms,
        "targeting": campaign.targeting,
        "tags": campaign.tags,
        "goals": campaign.goals,
        "recurrence": campaign.recurrence,
        "end_at": iso(campaign.end_at),
        "quiet_hours": campaign.quiet_hours,
        "deliver_in_user_timezone": campaign.deliver_in_user_timezone,
        "local_time_missed": campaign.local_time_missed,
        "silent": campaign.silent,
        "throttle_per_minute": campaign.throttle_per_minute,
        "fire_at": iso(campaign.fire_at),
        "current_run": campaign.current_run,
        "last_error": campaign.last_error,
        "created_at": iso(campaign.created_at),
        "updated_at": iso(campaign.updated_at),
        "sent_at": iso(campaign.sent_at),
        "completed_at": iso(campaign.completed_at),
    }


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# --- create -----------------------------------------------------------------------


def test_create_minimal_campaign_is_a_draft_named_after_its_title(api, broker):
    client, project = api

    response = client.post(base(project.id), {"title": "Sale", "body": "50% off"})

    assert response.status_code == 201
    campaign = PushCampaign.objects.get()
    assert response.json() == representation(campaign)
    assert response.json() | {"id": "x", "created_at": "x", "updated_at": "x"} == {
        "id": "x",
        "project_id": str(project.id),
        "name": "Sale",
        "title": "Sale",
        "body": "50% off",
        "data": {},
        "segment_id": None,
        "status": "draft",
        "scheduled_at": None,
        "stats": ZERO_STATS,
        "localizations": {},
        "image_url": "",
        "icon": "",
        "web_badge": "",
        "url": "",
        "actions": [],
        "sound": "",
        "badge": None,
        "vibrate": [],
        "require_interaction": False,
        "renotify": False,
        "tag": "",
        "collapse_key": "",
        "priority": "high",
        "ttl_seconds": None,
        "platforms": [],
        "targeting": {},
        "tags": [],
        "goals": [],
        "recurrence": None,
        "end_at": None,
        "quiet_hours": None,
        "deliver_in_user_timezone": False,
        "local_time_missed": "next_day",
        "throttle_per_minute": None,
        "silent": False,
        "fire_at": None,
        "current_run": 0,
        "last_error": "",
        "created_at": "x",
        "updated_at": "x",
        "sent_at": None,
        "completed_at": None,
    }
    assert campaign.project_id == project.id
    assert broker.drain() == []


def test_create_default_name_is_the_title_cut_to_200_characters(api):
    client, project = api

    response = client.post(base(project.id), {"title": "t" * 500, "body": "b"})

    assert response.status_code == 201
    assert response.json()["name"] == "t" * 200
    assert PushCampaign.objects.get().name == "t" * 200


def test_create_with_every_optional_field_stores_the_clean_values(api):
    client, project = api
    segment = SegmentFactory(project=project)
    end_at = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    payload = {
        "title": "Hello",
        "body": "World",
        "name": "Spring sale",
        "data": {"deep_link": "app://sale", "n": 3},
        "segment_id": str(segment.id),
        "localizations": {
            "fr": {
                "title": "Bonjour",
                "body": "Monde",
                "image_url": "https://cdn.example.com/fr.png",
                "actions": {"buy": "Acheter"},
            },
            "pt-BR": {"body": "Olá"},
        },
        "image_url": "https://cdn.example.com/a.png",
        "icon": "https://cdn.example.com/icon.png",
        "web_badge": "https://cdn.example.com/badge.png",
        "url": "app://sale",
        "actions": [
            {
                "id": "buy",
                "title": "Buy",
                "url": "https://example.com/buy",
                "icon": "https://cdn.example.com/cart.png",
            }
        ],
        "sound": "default",
        "badge": 3,
        "vibrate": [200, 100, 200],
        "require_interaction": True,
        "renotify": True,
        "tag": "spring",
        "collapse_key": "sale",
        "priority": "normal",
        "ttl_seconds": 3600,
        "platforms": ["android", "IOS", "ios"],
        "targeting": {"countries": {"include": ["FR"], "exclude": []}},
        "tags": ["promo", "spring", "promo"],
        "end_at": end_at.isoformat(),
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "deliver_in_user_timezone": True,
        "local_time_missed": "skip",
        "throttle_per_minute": 600,
    }

    response = client.post(base(project.id), payload)

    assert response.status_code == 201, response.json()
    campaign = PushCampaign.objects.get()
    body = response.json()
    assert body == representation(campaign)
    normalized = ("platforms", "tags", "quiet_hours")
    assert {k: body[k] for k in payload if k not in normalized} == {
        **{k: v for k, v in payload.items() if k not in normalized},
        "end_at": iso(end_at),
    }
    # Normalized: platforms lowercased, deduplicated, in canonical order; tags deduplicated;
    # quiet hours get their default action.
    assert body["platforms"] == ["ios", "android"]
    assert body["tags"] == ["promo", "spring"]
    assert body["quiet_hours"] == {"start": "22:00", "end": "08:00", "action": "defer"}
    assert campaign.segment_id == segment.id
    assert campaign.status == PushCampaign.Status.DRAFT


def test_create_scheduled_beyond_the_eta_window_is_scheduled_and_not_armed(api, broker, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    when = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "scheduled_at": when.isoformat()}
    )

    assert response.status_code == 201
    campaign = PushCampaign.objects.get()
    assert response.json()["status"] == "scheduled"
    assert response.json()["scheduled_at"] == iso(when)
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version) == (
        "scheduled",
        when,
        1,
    )
    assert campaign.armed_version == 0
    assert broker.drain() == []


def test_create_scheduled_within_the_eta_window_enqueues_one_wake_up_with_that_eta(
    api, broker, settings
):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    when = (timezone.now() + timedelta(seconds=120)).replace(microsecond=0)

    response = client.post(
        base(project.id),
        {"title": "t", "body": "b", "scheduled_at": when.astimezone(UTC).isoformat()},
    )

    assert response.status_code == 201
    campaign = PushCampaign.objects.get()
    assert (campaign.status, campaign.schedule_version, campaign.armed_version) == (
        "scheduled",
        1,
        1,
    )
    [task] = broker.drain()
    assert (task.name, task.args, task.kwargs) == (FIRE, [str(campaign.id), 1], {})
    assert datetime.fromisoformat(task.eta) == when


def test_scheduled_at_with_an_offset_is_stored_and_returned_in_utc(api):
    client, project = api
    local = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    text = local.astimezone(timezone.get_fixed_timezone(120)).isoformat()  # +02:00

    response = client.post(base(project.id), {"title": "t", "body": "b", "scheduled_at": text})

    assert response.status_code == 201
    assert text.endswith("+02:00")
    assert response.json()["scheduled_at"] == iso(local)
    assert response.json()["scheduled_at"].endswith("Z")


def test_create_with_a_segment_of_this_project(api):
    client, project = api
    segment = SegmentFactory(project=project)

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "segment_id": str(segment.id)}
    )

    assert response.status_code == 201
    assert response.json()["segment_id"] == str(segment.id)
    assert PushCampaign.objects.get().segment_id == segment.id


def test_create_with_segment_null_targets_everyone(api):
    client, project = api

    response = client.post(base(project.id), {"title": "t", "body": "b", "segment_id": None})

    assert response.status_code == 201
    assert response.json()["segment_id"] is None


# --- fetch ------------------------------------------------------------------------


def test_fetch_a_campaign(api):
    client, project = api
    campaign = CampaignFactory(project=project, data={"k": "v"}, tags=["a"])

    response = client.get(f"{base(project.id)}/{campaign.id}")

    assert response.status_code == 200
    assert response.json() == representation(campaign)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_routes_accept_an_optional_trailing_slash(api, suffix):
    client, project = api
    campaign = CampaignFactory(project=project)

    assert client.get(f"{base(project.id)}{suffix}").status_code == 200
    assert client.get(f"{base(project.id)}/{campaign.id}{suffix}").status_code == 200
    assert client.get(f"{base(project.id)}/{campaign.id}/runs{suffix}").status_code == 200
    assert client.get(f"{base(project.id)}/{campaign.id}/deliveries{suffix}").status_code == 200


def test_fetch_unknown_campaign_is_not_found(api):
    client, project = api

    response = client.get(f"{base(project.id)}/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")


BAD_IDS = ["123", "not-a-uuid", "00000000-0000-0000-0000-00000000000g", "%20", "x" * 300]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/send"),
        ("post", "/cancel"),
        ("get", "/deliveries"),
        ("get", "/runs"),
        ("get", "/audience"),
        ("post", "/push"),
    ],
)
@pytest.mark.parametrize("prefix", ["project", "alias"])
def test_a_malformed_campaign_id_is_invalid_campaign_id_on_every_route(
    api, db_state, broker, method, suffix, prefix
):
    client, project = api
    CampaignFactory(project=project)
    before = db_state()
    root = base(project.id) if prefix == "project" else "/admin/push"

    for bad_id in BAD_IDS:
        response = getattr(client, method)(f"{root}/{bad_id}{suffix}", {"title": "x"})
        assert response.status_code == 400, bad_id
        assert response.json() == error(
            "INVALID_CAMPAIGN_ID", "campaignId must be a UUID.", {"field": "campaignId"}
        )
    assert db_state() == before
    assert broker.drain() == []


# --- update / delete --------------------------------------------------------------


def test_patch_changes_only_the_given_fields(api):
    client, project = api
    campaign = CampaignFactory(project=project, title="Old", body="Body", name="N")
    old_updated_at = campaign.updated_at

    response = client.patch(
        f"{base(project.id)}/{campaign.id}", {"title": "New", "data": {"x": "1"}}
    )

    assert response.status_code == 200
    assert response.json() == representation(campaign)
    assert (campaign.title, campaign.body, campaign.name, campaign.data) == (
        "New",
        "Body",
        "N",
        {"x": "1"},
    )
    assert campaign.status == "draft"
    assert campaign.schedule_version == 0
    assert campaign.updated_at > old_updated_at


def test_patch_segment_to_another_of_this_project_and_back_to_null(api):
    client, project = api
    segment = SegmentFactory(project=project)
    campaign = CampaignFactory(project=project)
    url = f"{base(project.id)}/{campaign.id}"

    first = client.patch(url, {"segment_id": str(segment.id)})
    second = client.patch(url, {"segment_id": None})

    assert first.status_code == 200
    assert first.json()["segment_id"] == str(segment.id)
    assert second.status_code == 200
    assert second.json()["segment_id"] is None
    campaign.refresh_from_db()
    assert campaign.segment_id is None


def test_patch_scheduled_campaign_content_keeps_its_schedule(api, broker):
    client, project = api
    when = timezone.now() + timedelta(days=1)
    campaign = CampaignFactory(
        project=project, status="scheduled", scheduled_at=when, schedule_version=3
    )

    response = client.patch(f"{base(project.id)}/{campaign.id}", {"body": "Changed"})

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version, campaign.body) == (
        "scheduled",
        when,
        3,
        "Changed",
    )
    assert broker.drain() == []


def test_patch_unknown_campaign_is_not_found(api):
    client, project = api

    response = client.patch(f"{base(project.id)}/{uuid.uuid4()}", {"title": "x"})

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")


def test_delete_a_draft_removes_the_row_and_its_runs(api):
    client, project = api
    campaign = CampaignFactory(project=project)
    CampaignRunFactory(campaign=campaign, number=1, status="failed")
    other = CampaignFactory(project=project)

    response = client.delete(f"{base(project.id)}/{campaign.id}")

    assert response.status_code == 204
    assert response.content == b""
    assert list(PushCampaign.objects.values_list("id", flat=True)) == [other.id]
    assert CampaignRun.objects.count() == 0


def test_delete_unknown_campaign_is_not_found(api, db_state):
    client, project = api
    CampaignFactory(project=project)
    before = db_state()

    response = client.delete(f"{base(project.id)}/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")
    assert db_state() == before


# --- send / cancel ----------------------------------------------------------------


def test_send_starts_run_one_and_enqueues_exactly_one_fan_out(api, broker):
    client, project = api
    campaign = CampaignFactory(project=project)

    with time_machine.travel(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC), tick=False):
        response = client.post(f"{base(project.id)}/{campaign.id}/send")

    assert response.status_code == 200
    assert response.json() == representation(campaign)
    assert campaign.status == "sending"
    assert campaign.current_run == 1
    assert campaign.sent_at == datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert response.json()["sent_at"] == "2031-05-06T07:08:09Z"
    run = CampaignRun.objects.get()
    assert (run.campaign_id, run.number, run.trigger, run.status) == (
        campaign.id,
        1,
        "send",
        "sending",
    )
    assert [(t.name, t.args, t.eta) for t in broker.drain()] == [
        (FAN_OUT, [str(campaign.id), 1], None)
    ]


def test_send_unknown_campaign_is_not_found(api, broker):
    client, project = api

    response = client.post(f"{base(project.id)}/{uuid.uuid4()}/send")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")
    assert broker.drain() == []


def test_cancel_a_sending_campaign_cancels_its_open_run(api):
    client, project = api
    campaign = CampaignFactory(project=project, status="sending", current_run=2)
    done = CampaignRunFactory(campaign=campaign, number=1, status="sent")
    open_run = CampaignRunFactory(campaign=campaign, number=2, status="sending")

    response = client.post(f"{base(project.id)}/{campaign.id}/cancel")

    assert response.status_code == 200
    assert response.json() == representation(campaign)
    assert campaign.status == "cancelled"
    assert campaign.completed_at is not None
    open_run.refresh_from_db()
    done.refresh_from_db()
    assert (open_run.status, done.status) == ("cancelled", "sent")
    assert open_run.completed_at == campaign.completed_at


def test_cancel_unknown_campaign_is_not_found(api):
    client, project = api

    response = client.post(f"{base(project.id)}/{uuid.uuid4()}/cancel")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")


# --- runs -------------------------------------------------------------------------


def test_runs_lists_every_run_newest_first_with_stats(api):
    client, project = api
    campaign = CampaignFactory(project=project, current_run=2)
    first = CampaignRunFactory(
        campaign=campaign, number=1, status="sent", targeted=10, sent=7, failed=1,
        invalid_tokens=1, skipped=1, completed_at=timezone.now(),
    )  # fmt: skip
    second = CampaignRunFactory(
        campaign=campaign, number=2, trigger="explicit", targeted=5, sent=2, error=""
    )
    CampaignRunFactory(campaign=CampaignFactory(project=project), number=1)

    response = client.get(f"{base(project.id)}/{campaign.id}/runs")

    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "number": 2,
                "trigger": "explicit",
                "silent": False,
                "status": "sending",
                "stats": {
                    "targeted": 5,
                    "sent": 2,
                    "failed": 0,
                    "invalid_tokens": 0,
                    "skipped": 0,
                    "unknown": 0,
                    "pending": 3,
                },
                "error": "",
                "started_at": iso(second.started_at),
                "completed_at": None,
            },
            {
                "number": 1,
                "trigger": "send",
                "silent": False,
                "status": "sent",
                "stats": {
                    "targeted": 10,
                    "sent": 7,
                    "failed": 1,
                    "invalid_tokens": 1,
                    "skipped": 1,
                    "unknown": 0,
                    "pending": 0,
                },
                "error": "",
                "started_at": iso(first.started_at),
                "completed_at": iso(first.completed_at),
            },
        ]
    }


def test_runs_of_a_never_sent_campaign_is_empty(api):
    client, project = api
    campaign = CampaignFactory(project=project)

    response = client.get(f"{base(project.id)}/{campaign.id}/runs")

    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_runs_of_unknown_campaign_is_not_found(api):
    client, project = api

    response = client.get(f"{base(project.id)}/{uuid.uuid4()}/runs")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")


# --- deliveries -------------------------------------------------------------------


def delivery_json(delivery: PushDelivery) -> dict[str, Any]:
    delivery.refresh_from_db()
    token = delivery.token
    return {
        "id": delivery.id,
        "run": delivery.run,
        "token_id": token.id,
        "token": token.token,
        "provider": delivery.provider,
        "platform": token.platform,
        "app_user_id": str(delivery.app_user_id) if delivery.app_user_id else None,
        "external_id": delivery.app_user.external_id if delivery.app_user else None,
        "status": delivery.status,
        "error_message": delivery.error_message,
        "provider_message_id": delivery.provider_msg_id,
        "attempts": delivery.attempts,
        "created_at": iso(delivery.created_at),
        "sent_at": iso(delivery.sent_at),
    }


def test_deliveries_lists_per_token_results_in_id_order(api):
    client, project = api
    campaign = CampaignFactory(project=project, status="sent", current_run=1)
    sent = PushDeliveryFactory(
        campaign=campaign, status="sent", provider_msg_id="apns-1", attempts=1,
        sent_at=timezone.now(),
    )  # fmt: skip
    android = PushTokenFactory(project=project, provider="fcm", platform="android", app_user=None)
    invalid = PushDeliveryFactory(
        campaign=campaign, token=android, status="invalid_token", error_message="Unregistered"
    )
    PushDeliveryFactory(campaign=CampaignFactory(project=project))  # another campaign's

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries")

    assert response.status_code == 200
    assert response.json() == {
        "results": [delivery_json(sent), delivery_json(invalid)],
        "next": None,
    }
    assert response.json()["results"][1]["app_user_id"] is None
    assert response.json()["results"][1]["external_id"] is None
    assert response.json()["results"][0]["provider_message_id"] == "apns-1"


@pytest.mark.parametrize("status", ["queued", "sent", "failed", "invalid_token", "skipped"])
def test_deliveries_filter_by_status(api, status):
    client, project = api
    campaign = CampaignFactory(project=project, status="sent", current_run=1)
    rows = {
        s: PushDeliveryFactory(campaign=campaign, status=s)
        for s in ("queued", "sent", "failed", "invalid_token", "skipped")
    }

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"status": status})

    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == [rows[status].id]


def test_deliveries_filter_by_run(api):
    client, project = api
    campaign = CampaignFactory(project=project, status="sent", current_run=2)
    token = PushTokenFactory(project=project)
    PushDeliveryFactory(campaign=campaign, token=token, run=1)
    second = PushDeliveryFactory(campaign=campaign, token=token, run=2)

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"run": "2"})
    unknown = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"run": "7"})

    assert [d["id"] for d in response.json()["results"]] == [second.id]
    assert unknown.status_code == 200
    assert unknown.json() == {"results": [], "next": None}


@pytest.mark.parametrize("status", ["bogus", "SENT", "sent,failed", "draft"])
def test_deliveries_unknown_status_is_a_validation_error(api, status):
    client, project = api
    campaign = CampaignFactory(project=project)

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"status": status})

    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR",
        "status must be one of queued, sent, failed, invalid_token, skipped, unknown.",
        {"field": "status"},
    )


@pytest.mark.parametrize(
    "run",
    [
        *("x", "-1", "1.0", "\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}", ""),
        # the schema's bounds, 1..2^31-1 (the run column): no zero or huge value slips by
        *("0", "2147483648", "9" * 30, "9" * 5000),
    ],
)
def test_deliveries_bad_run_is_a_validation_error(api, run):
    client, project = api
    campaign = CampaignFactory(project=project)

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"run": run})

    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR", "run must be a run number.", {"field": "run"}
    )


def test_deliveries_pages_walk_every_row_exactly_once(api):
    client, project = api
    campaign = CampaignFactory(project=project, status="sent", current_run=1)
    ids = [PushDeliveryFactory(campaign=campaign).id for _ in range(7)]
    url = f"{base(project.id)}/{campaign.id}/deliveries"

    seen: list[int] = []
    pages = 0
    params: dict[str, str] = {"limit": "3"}
    while True:
        body = client.get(url, params).json()
        pages += 1
        seen += [d["id"] for d in body["results"]]
        if body["next"] is None:
            break
        params = {"limit": "3", "cursor": body["next"]}

    assert seen == sorted(ids)
    assert pages == 3


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        base64.urlsafe_b64encode(b'["x"]').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"id": 1}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    ],
)
def test_deliveries_bad_cursor_is_a_validation_error(api, cursor):
    client, project = api
    campaign = CampaignFactory(project=project)

    response = client.get(f"{base(project.id)}/{campaign.id}/deliveries", {"cursor": cursor})

    assert response.status_code == 400
    assert response.json() == error("VALIDATION_ERROR", "cursor is not valid.", {"field": "cursor"})


def test_deliveries_of_unknown_campaign_is_not_found(api):
    client, project = api

    response = client.get(f"{base(project.id)}/{uuid.uuid4()}/deliveries")

    assert response.status_code == 404
    assert response.json() == error("NOT_FOUND", "Campaign not found.")


# --- list and pagination ------------------------------------------------------------


def make_campaigns(project, count: int) -> list[PushCampaign]:
    """`count` campaigns created one second apart, oldest first."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        with time_machine.travel(start + timedelta(seconds=i), tick=False):
            rows.append(CampaignFactory(project=project, name=f"c{i}"))
    return rows


def test_list_is_newest_first_and_only_this_project(api):
    client, project = api
    rows = make_campaigns(project, 3)
    CampaignFactory(project=ProjectFactory())

    response = client.get(base(project.id))

    assert response.status_code == 200
    assert response.json() == {
        "results": [representation(c) for c in reversed(rows)],
        "next": None,
    }


def test_list_empty_project(api):
    client, project = api

    response = client.get(base(project.id))

    assert response.json() == {"results": [], "next": None}


def walk(client, url: str, limit: int, **extra: str) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    params: dict[str, str] = {"limit": str(limit), **extra}
    while True:
        response = client.get(url, params)
        assert response.status_code == 200
        body = response.json()
        pages += 1
        assert len(body["results"]) <= limit
        seen += [c["id"] for c in body["results"]]
        if body["next"] is None:
            return seen, pages
        params = {"limit": str(limit), "cursor": body["next"], **extra}


@pytest.mark.parametrize(("limit", "pages"), [(1, 7), (2, 4), (3, 3), (6, 2), (7, 1), (8, 1)])
def test_cursor_walks_all_pages_exactly_once_newest_first(api, limit, pages):
    client, project = api
    rows = make_campaigns(project, 7)

    seen, page_count = walk(client, base(project.id), limit)

    assert seen == [str(c.id) for c in reversed(rows)]
    assert page_count == pages


def test_cursor_breaks_ties_on_equal_created_at_by_id(api):
    client, project = api
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        rows = [CampaignFactory(project=project) for _ in range(5)]

    seen, _ = walk(client, base(project.id), 2)

    assert seen == sorted((str(c.id) for c in rows), key=uuid.UUID, reverse=True)


def test_cursor_is_stable_when_newer_campaigns_arrive_between_pages(api):
    client, project = api
    rows = make_campaigns(project, 4)

    first = client.get(base(project.id), {"limit": "2"}).json()
    with time_machine.travel(datetime(2031, 1, 1, tzinfo=UTC), tick=False):
        CampaignFactory(project=project)  # newer than everything: not on page 2
    second = client.get(base(project.id), {"limit": "2", "cursor": first["next"]}).json()

    assert [c["id"] for c in first["results"] + second["results"]] == [
        str(c.id) for c in reversed(rows)
    ]
    assert second["next"] is None


def test_list_filter_by_status(api):
    client, project = api
    CampaignFactory(project=project, status="draft")
    sent = CampaignFactory(project=project, status="sent")

    response = client.get(base(project.id), {"status": "sent"})

    assert [c["id"] for c in response.json()["results"]] == [str(sent.id)]


def test_list_unknown_status_is_a_validation_error(api):
    client, project = api

    response = client.get(base(project.id), {"status": "done"})

    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR",
        "status must be one of draft, scheduled, sending, sent, cancelled, failed.",
        {"field": "status"},
    )


def test_limit_default_is_50_and_200_is_accepted(api):
    client, project = api
    PushCampaign.objects.bulk_create(
        [PushCampaign(project=project, name=f"c{i}", title="t", body="b") for i in range(201)]
    )

    default = client.get(base(project.id)).json()
    biggest = client.get(base(project.id), {"limit": "200"}).json()

    assert len(default["results"]) == 50
    assert default["next"] is not None
    assert len(biggest["results"]) == 200
    assert biggest["next"] is not None


@pytest.mark.parametrize(
    "limit", ["0", "201", "-1", "abc", "1.5", "1e2", "\N{SUPERSCRIPT TWO}", "99999999999999999999"]
)
def test_limit_out_of_bounds_is_a_validation_error(api, limit):
    client, project = api

    response = client.get(base(project.id), {"limit": limit})

    assert response.status_code == 400
    assert response.json() == error(
        "VALIDATION_ERROR", "limit must be an integer between 1 and 200.", {"field": "limit"}
    )


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "a",
        b64(b"not json"),
        b64(b"\xff\xfe\xfd"),
        b64(b'"a string"'),
        b64(b"[]"),
        b64(b'["2030-01-01T00:00:00+00:00"]'),
        b64(b'["2030-01-01T00:00:00+00:00", "not-a-uuid"]'),
        b64(b'["yesterday", "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"]'),
        b64(b'[1, "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"]'),
        b64(b"[null, null]"),
        b64(b'["0001-01-01T00:00:00+05:00", "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"]'),
        b64(b'["2030-01-01T00:00:00", "8c7d3a4e-4f6b-4b8e-9a55-1a2b3c4d5e6f"]'),
        b64(b"[" * 100_000),
    ],
)
def test_bad_cursor_is_a_validation_error(api, cursor):
    client, project = api
    make_campaigns(project, 2)

    response = client.get(base(project.id), {"cursor": cursor})

    assert response.status_code == 400
    assert response.json() == error("VALIDATION_ERROR", "cursor is not valid.", {"field": "cursor"})


# --- short aliases (project taken from the key) --------------------------------------


def test_alias_create_list_fetch_and_send(api, broker):
    client, project = api

    created = client.post("/admin/push", {"title": "Alias", "body": "b"})
    campaign = PushCampaign.objects.get()
    listed = client.get("/admin/push")
    fetched = client.get(f"/admin/push/{campaign.id}")
    sent = client.post(f"/admin/push/{campaign.id}/send")

    assert created.status_code == 201
    assert campaign.project_id == project.id
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["results"]] == [str(campaign.id)]
    assert fetched.status_code == 200
    assert fetched.json()["title"] == "Alias"
    assert sent.status_code == 200
    assert sent.json()["status"] == "sending"
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


def test_alias_fetch_of_another_projects_campaign_is_not_found(api, db_state, broker):
    client, _project = api
    foreign = CampaignFactory(project=ProjectFactory())
    before = db_state()

    fetched = client.get(f"/admin/push/{foreign.id}")
    sent = client.post(f"/admin/push/{foreign.id}/send")
    patched = client.patch(f"/admin/push/{foreign.id}", {"title": "x"})
    deleted = client.delete(f"/admin/push/{foreign.id}")

    for response in (fetched, sent, patched, deleted):
        assert response.status_code == 404
        assert response.json() == error("NOT_FOUND", "Campaign not found.")
    assert db_state() == before
    assert broker.drain() == []


def test_representation_is_json_serializable_round_trip(api):
    client, project = api
    campaign = CampaignFactory(project=project, data={"nested": {"list": [1, 2.5, None, True]}})

    response = client.get(f"{base(project.id)}/{campaign.id}")

    assert json.loads(response.content)["data"] == {"nested": {"list": [1, 2.5, None, True]}}
