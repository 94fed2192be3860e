"""The console's campaign page, server side: its JSON views count what the API counts,
its buttons go through the services, and bad input changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from campaigns import services
from campaigns.models import CampaignRun, PushCampaign
from campaigns.runs import campaign_stats, run_stats
from core.models import Project
from delivery.models import PushDelivery
from delivery.simulators.server import SimulatorServer
from tests.campaigns.conftest import wire
from tests.console import messages_of, url
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    PushTokenFactory,
)

DbState = Callable[[], dict[str, list[dict[str, Any]]]]


def sending_campaign(**run: Any) -> PushCampaign:
    campaign = CampaignFactory.create(status="sending", current_run=1, sent_at=timezone.now())
    CampaignRunFactory.create(
        campaign=campaign,
        number=1,
        status="sending",
        **{"targeted": 10, "sent": 4, "failed": 1, "invalid_tokens": 1, **run},
    )
    return campaign


def test_progress_answers_campaign_stats_with_rate_and_eta(staff: Client) -> None:
    campaign = sending_campaign()
    CampaignRun.objects.filter(campaign=campaign).update(
        started_at=timezone.now() - timedelta(seconds=60)
    )

    body = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()

    campaign.refresh_from_db()
    assert body["stats"] == campaign_stats(campaign)
    assert body["stats"] == {
        "targeted": 10,
        "sent": 4,
        "failed": 1,
        "invalid_tokens": 1,
        "skipped": 0,
        "unknown": 0,
        "pending": 4,
    }
    assert (body["status"], body["sending"], body["done"], body["percent"]) == (
        "sending",
        True,
        6,
        60.0,
    )
    # 6 done in ~60 s: 0.1/s, so the 4 pending take ~40 s.
    assert body["rate_per_second"] == 0.1
    assert 38 <= body["eta_seconds"] <= 40
    assert body["run"]["number"] == 1 and body["run"]["started_at"].endswith(" UTC")


def test_progress_times_carry_the_project_zone(staff: Client) -> None:
    campaign = sending_campaign()
    Project.objects.filter(pk=campaign.project_id).update(default_timezone="Europe/Paris")

    body = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()

    assert body["run"]["started_at"].endswith(" Europe/Paris")
    assert body["updated_at"].endswith(" Europe/Paris")


def test_progress_after_a_cancel_keeps_the_counts(staff: Client) -> None:
    campaign = sending_campaign()
    before = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()["stats"]

    response = staff.post(url("campaigns_pushcampaign_cancel", campaign.pk), follow=True)

    assert messages_of(response) == [
        ("success", f'Cancelled "{campaign.name}"; what was sent stays counted.')
    ]
    body = staff.get(url("campaigns_pushcampaign_progress", campaign.pk)).json()
    assert (body["status"], body["sending"], body["run"]["status"]) == (
        "cancelled",
        False,
        "cancelled",
    )
    assert body["stats"] == before
    assert body["eta_seconds"] is None


def test_progress_of_an_unknown_campaign_is_a_404_envelope(staff: Client) -> None:
    response = staff.get(
        url("campaigns_pushcampaign_progress", "00000000-0000-0000-0000-000000000000")
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_breakdown_sums_equal_the_runs_rows(staff: Client) -> None:
    campaign = CampaignFactory.create(status="sent", current_run=2)
    CampaignRunFactory.create(campaign=campaign, number=1, status="sent")
    CampaignRunFactory.create(campaign=campaign, number=2, status="sent")
    at = timezone.now().replace(microsecond=0)
    rows: list[tuple[str, str, str, str]] = [
        ("sent", "apns", "ios", ""),
        ("sent", "apns", "ios", ""),
        ("sent", "fcm", "android", ""),
        ("failed", "fcm", "android", "QuotaExceeded"),
        ("invalid_token", "apns", "ios", "BadDeviceToken"),
        ("invalid_token", "fcm", "web", "UNREGISTERED"),
        ("invalid_token", "apns", "ios", "BadDeviceToken"),
        ("skipped", "fcm", "android", "campaign cancelled"),
        ("queued", "apns", "ios", ""),
    ]
    for i, (status, provider, platform, reason) in enumerate(rows):
        token = PushTokenFactory.create(
            project=campaign.project, provider=provider, platform=platform
        )
        attempted = status not in ("queued", "skipped")
        PushDeliveryFactory.create(
            campaign=campaign,
            run=2,
            token=token,
            status=status,
            error_message=reason,
            claimed_at=at + timedelta(seconds=i % 3) if attempted else None,
            sent_at=at + timedelta(seconds=i % 3) if status == "sent" else None,
        )
    PushDeliveryFactory.create(campaign=campaign, run=1, status="failed", error_message="Other")

    body = staff.get(url("campaigns_pushcampaign_breakdown", campaign.pk, 2)).json()

    stats = run_stats(campaign.pk, 2)
    assert body["total"] == len(rows) == stats["targeted"]
    assert body["by_status"] == {
        "queued": stats["pending"],
        "sent": stats["sent"],
        "failed": stats["failed"],
        "invalid_token": stats["invalid_tokens"],
        "skipped": stats["skipped"],
        "unknown": stats["unknown"],
    }
    assert body["by_status"] == {
        "queued": 1,
        "sent": 3,
        "failed": 1,
        "invalid_token": 3,
        "skipped": 1,
        "unknown": 0,
    }
    assert body["by_provider"] == {"apns": 5, "fcm": 4, "webpush": 0}
    assert body["by_platform"] == {"ios": 5, "android": 3, "web": 1}
    assert body["reasons"] == [
        {"reason": "BadDeviceToken", "status": "invalid_token", "count": 2},
        {"reason": "QuotaExceeded", "status": "failed", "count": 1},
        {"reason": "UNREGISTERED", "status": "invalid_token", "count": 1},
        {"reason": "campaign cancelled", "status": "skipped", "count": 1},
    ]
    timeline = body["timeline"]
    assert timeline["unit"] == "second"
    plotted = sum(
        p["sent"] + p["failed"] + p["invalid_token"] + p["unknown"] for p in timeline["points"]
    )
    assert plotted == 7  # every attempted row once (not the queued or skipped ones)
    assert [p["label"] for p in timeline["points"]] == [
        f"{at + timedelta(seconds=s):%Y-%m-%d %H:%M:%S} UTC" for s in range(3)
    ]
    links = body["links"]
    assert links["status"]["failed"].endswith(
        f"?campaign__id__exact={campaign.pk}&run=2&status__exact=failed"
    )
    # The link lists exactly the rows counted.
    listed = staff.get(links["status"]["invalid_token"]).context["cl"].result_list
    assert sorted(r.status for r in listed) == ["invalid_token"] * 3
    listed = staff.get(links["reasons"][0]).context["cl"].result_list
    assert [r.error_message for r in listed] == ["BadDeviceToken"] * 2


def test_breakdown_of_run_0_is_the_current_run_and_unknown_runs_are_404(staff: Client) -> None:
    campaign = sending_campaign()
    PushDeliveryFactory.create(campaign=campaign, run=1, status="sent")

    assert staff.get(url("campaigns_pushcampaign_breakdown", campaign.pk, 0)).json()["run"] == 1
    response = staff.get(url("campaigns_pushcampaign_breakdown", campaign.pk, 7))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NO_SUCH_RUN"


def test_send_asks_first_stating_the_audience_size(staff: Client, broker: Any) -> None:
    draft = CampaignFactory.create(name="Spring sale")
    for provider, platform in (("apns", "ios"), ("fcm", "android"), ("fcm", "web")):
        PushTokenFactory.create(project=draft.project, provider=provider, platform=platform)
    PushTokenFactory.create(project=draft.project, active=False)

    page = staff.get(url("campaigns_pushcampaign_send", draft.pk))

    audience = services.campaign_audience(project=draft.project, campaign_id=draft.pk)
    assert audience["total"] == 3
    assert page.context["audience"] == audience
    html = page.content.decode()
    assert '<strong data-field="audience-total">3</strong> devices' in html
    assert 'value="Yes, send to 3 devices"' in html
    draft.refresh_from_db()
    assert draft.status == "draft"  # asking sends nothing
    assert broker.drain() == []

    response = staff.post(url("campaigns_pushcampaign_send", draft.pk), follow=True)

    assert messages_of(response) == [("success", 'Sending "Spring sale" now.')]
    assert response.redirect_chain[-1][0] == url("campaigns_pushcampaign_change", draft.pk)
    draft.refresh_from_db()
    assert (draft.status, draft.current_run) == ("sending", 1)
    assert [(t.name, t.args) for t in broker.drain()] == [
        ("campaigns.fan_out_campaign", [str(draft.pk), 1])
    ]


def test_send_refused_by_the_service_changes_nothing(staff: Client, db_state: DbState) -> None:
    sent = CampaignFactory.create(status="sent", current_run=1)
    CampaignRunFactory.create(campaign=sent, number=1, status="sent")
    before = db_state()

    response = staff.post(url("campaigns_pushcampaign_send", sent.pk), follow=True)

    assert messages_of(response) == [("error", "Send: ALREADY_SENT: The campaign is already sent.")]
    assert db_state() == before


def test_cancel_refused_changes_nothing_and_get_is_not_allowed(
    staff: Client, db_state: DbState
) -> None:
    draft = CampaignFactory.create()
    before = db_state()

    assert staff.get(url("campaigns_pushcampaign_cancel", draft.pk)).status_code == 405
    response = staff.post(url("campaigns_pushcampaign_cancel", draft.pk), follow=True)

    assert messages_of(response) == [
        (
            "error",
            "Cancel: NOT_CANCELLABLE: Only scheduled or sending campaigns can be "
            "cancelled; this one is draft.",
        )
    ]
    assert db_state() == before


def test_duplicate_opens_the_new_draft(staff: Client) -> None:
    sent = CampaignFactory.create(status="sent", current_run=1, name="Launch", title="New!")

    response = staff.post(url("campaigns_pushcampaign_duplicate", sent.pk), follow=True)

    copy = PushCampaign.objects.exclude(pk=sent.pk).get()
    assert (copy.name, copy.title, copy.status, copy.current_run) == (
        "Launch (copy)",
        "New!",
        "draft",
        0,
    )
    assert response.redirect_chain[-1][0] == url("campaigns_pushcampaign_change", copy.pk)
    assert messages_of(response) == [("success", 'Duplicated "Launch" as a new draft.')]


def post_test(staff: Client, campaign: PushCampaign, body: Any) -> Any:
    return staff.post(
        url("campaigns_pushcampaign_test", campaign.pk),
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
    )


def test_test_push_to_an_external_id_sends_the_campaign_content(
    staff: Client, sim: SimulatorServer, clean_sim: None
) -> None:
    project = wire(ProjectFactory.create(), sim)
    campaign = CampaignFactory.create(project=project, title="Hi", body="There")
    user = AppUserFactory.create(project=project, external_id="alice")
    token = PushTokenFactory.create(project=project, app_user=user, token="ab" * 32)

    response = post_test(staff, campaign, {"external_id": "alice"})

    assert response.status_code == 200, response.json()
    body = response.json()
    delivery = PushDelivery.objects.get(pk=body["delivery_id"])
    assert body == {
        "delivery_id": delivery.pk,
        "provider": "apns",
        "provider_message_id": delivery.provider_msg_id,
        "status": "sent",
    }
    assert (delivery.token_id, delivery.campaign_id, delivery.status) == (token.pk, None, "sent")


def test_test_push_bad_input_is_a_clear_error_and_sends_nothing(
    staff: Client, db_state: DbState
) -> None:
    campaign = CampaignFactory.create()
    AppUserFactory.create(project=campaign.project, external_id="no-token")
    before = db_state()
    cases = [
        ("not json", 400, "INVALID_BODY"),
        ([1], 400, "INVALID_BODY"),
        ({}, 400, "MISSING_TARGET"),
        ({"external_id": "nobody"}, 404, "UNKNOWN_USER"),
        ({"external_id": "no-token"}, 404, "NO_ACTIVE_TOKEN"),
        ({"device_token": "ab" * 32}, 400, "MISSING_PROVIDER"),
        ({"device_token": "ab" * 32, "provider": "mail"}, 400, "INVALID_PROVIDER"),
        ({"external_id": "x", "title": "sneaky"}, 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        response = post_test(staff, campaign, body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    assert response.json()["error"]["details"] == {"field": "title"}
    assert db_state() == before

    response = staff.get(url("campaigns_pushcampaign_test", campaign.pk))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_the_page_shows_the_results_panel_and_the_buttons_its_status_allows(
    staff: Client,
) -> None:
    draft = CampaignFactory.create()
    sending = sending_campaign()

    draft_page = staff.get(url("campaigns_pushcampaign_change", draft.pk)).content.decode()
    sending_page = staff.get(url("campaigns_pushcampaign_change", sending.pk)).content.decode()

    for page in (draft_page, sending_page):
        assert 'id="herald-campaign-panel"' in page
        assert "campaigns/campaign.js" in page
        assert ">Send test</button>" in page and ">Duplicate</button>" in page
    assert ">Send now</a>" in draft_page and ">Cancel campaign</button>" not in draft_page
    assert ">Send now</a>" not in sending_page and ">Cancel campaign</button>" in sending_page
    assert 'data-sending="1"' in sending_page and 'data-sending="0"' in draft_page
