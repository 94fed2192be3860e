"""The composer's widgets and JSON views, server side: each widget becomes the API's
value, refusals carry the API's codes next to the right widget and change nothing, and
the estimate and preview count and build with the API's own functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from campaigns import services
from campaigns.models import PushCampaign
from campaigns.recurrence import describe_recurrence
from tests.campaigns.test_admin import campaign_form, form_errors
from tests.console import url
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    ProjectFactory,
    PushTokenFactory,
    SegmentFactory,
)


def test_every_widget_round_trips_into_the_api_payload(staff: Client) -> None:
    project = ProjectFactory.create(default_timezone="Europe/Paris")
    when = (timezone.now() + timedelta(days=30)).astimezone(ZoneInfo("Europe/Paris"))
    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            platforms=["android", "ios"],
            tags="spring, promo, spring",
            quiet_hours_0="22:00",
            quiet_hours_1="08:00:00",
            quiet_hours_2="skip",
            ttl_seconds_0="3",
            ttl_seconds_1="days",
            recurrence_0="hours",
            recurrence_1="6",
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1="09:00:00",
            schedule_timezone="Europe/Paris",
            localizations=json.dumps({"fr": {"title": "Bonjour", "body": "Salut"}}),
            actions=json.dumps([{"id": "open", "title": "Open", "url": "myapp://x"}]),
            targeting=json.dumps({"countries": {"include": ["FR"], "exclude": ["DE"]}}),
        ),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert campaign.platforms == ["ios", "android"]
    assert campaign.tags == ["spring", "promo"]
    assert campaign.quiet_hours == {"start": "22:00", "end": "08:00", "action": "skip"}
    assert campaign.ttl_seconds == 3 * 86400
    assert campaign.recurrence == {"every_seconds": 6 * 3600}
    paris_nine = datetime.combine(when.date(), datetime.min.time().replace(hour=9)).replace(
        tzinfo=ZoneInfo("Europe/Paris")
    )
    assert campaign.recurrence_anchor == paris_nine.astimezone(UTC)
    assert campaign.localizations == {"fr": {"title": "Bonjour", "body": "Salut"}}
    assert campaign.actions == [{"id": "open", "title": "Open", "url": "myapp://x"}]
    assert campaign.targeting == {"countries": {"include": ["FR"], "exclude": ["DE"]}}


@pytest.mark.parametrize(
    ("parts", "recurrence"),
    [
        ({"recurrence_0": "minutes", "recurrence_1": "15"}, {"every_seconds": 900}),
        (
            {
                "recurrence_0": "days",
                "recurrence_1": "2",
                "recurrence_2": "07:30",
                "recurrence_4": "Asia/Tokyo",
            },
            {"every_days": 2, "at": "07:30", "timezone": "Asia/Tokyo"},
        ),
        (
            {
                "recurrence_0": "cron",
                "recurrence_3": "0 12 * * 1,5",
                "recurrence_4": "Europe/Paris",
            },
            {"cron": "0 12 * * 1,5", "timezone": "Europe/Paris"},
        ),
    ],
)
def test_recurrence_builder_gives_the_api_shape(
    staff: Client, parts: dict[str, str], recurrence: dict[str, Any]
) -> None:
    project = ProjectFactory.create()

    response = staff.post(url("campaigns_pushcampaign_add"), campaign_form(project, **parts))

    assert response.status_code == 302
    assert PushCampaign.objects.get().recurrence == recurrence


def test_every_refused_widget_shows_its_error_at_once_and_nothing_is_written(
    staff: Client, db_state: Any
) -> None:
    project = ProjectFactory.create()
    before = db_state()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            title="",
            quiet_hours_0="22:00",
            recurrence_0="cron",
            recurrence_3="every monday",
            ttl_seconds_0="60",
            ttl_seconds_1="days",
            targeting=json.dumps({"countries": {"include": [1]}}),
            platforms=["ios", "watch"],
        ),
    )

    assert form_errors(response) == {
        "title": ["title is required. (MISSING_TITLE)"],
        "platforms": ["Unknown platform(s): watch. (VALIDATION_ERROR)"],
        "targeting": ["targeting.countries.include must be a list of strings. (VALIDATION_ERROR)"],
        "recurrence": ["'every monday' is not a 5-field cron expression. (VALIDATION_ERROR)"],
        "quiet_hours": ["quiet_hours.end must be 'HH:MM'. (VALIDATION_ERROR)"],
        "ttl_seconds": ["ttl_seconds must be between 0 and 2419200. (VALIDATION_ERROR)"],
    }
    form = response.context["adminform"].form
    assert form.fields["targeting"].widget.attrs["data-error-path"] == (
        "targeting.countries.include"
    )
    assert db_state() == before


def test_a_stored_schedule_is_shown_in_its_zone_and_kept_when_unchanged(staff: Client) -> None:
    project = ProjectFactory.create(default_timezone="America/New_York")
    campaign = CampaignFactory.create(project=project, title="T", body="B")
    when = (timezone.now() + timedelta(days=10)).replace(second=0, microsecond=0)
    services.campaign_update(
        project=project, campaign_id=campaign.pk, fields={"scheduled_at": when}
    )
    change = url("campaigns_pushcampaign_change", campaign.pk)

    form = staff.get(change).context["adminform"].form
    local = when.astimezone(ZoneInfo("America/New_York"))
    assert form.initial["schedule_timezone"] == "America/New_York"
    shown = form["scheduled_at"].value()
    assert (shown.date(), shown.hour, shown.minute) == (local.date(), local.hour, local.minute)

    # Saving the page as shown changes nothing about the schedule.
    response = staff.post(
        change,
        campaign_form(
            None,
            name=campaign.name,
            title="T",
            body="B",
            scheduled_at_0=local.strftime("%Y-%m-%d"),
            scheduled_at_1=local.strftime("%H:%M:%S"),
            schedule_timezone="America/New_York",
        ),
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.scheduled_at, campaign.schedule_version) == (when, 1)


# --- JSON views ---------------------------------------------------------------------


def post(staff: Client, name: str, object_id: str, body: dict[str, Any]) -> Any:
    return staff.post(
        url(f"campaigns_pushcampaign_composer_{name}", object_id),
        json.dumps(body),
        content_type="application/json",
    )


def test_estimate_counts_unsaved_targeting_like_the_audience_api(staff: Client) -> None:
    project = ProjectFactory.create()
    for country, platform, provider in [
        ("FR", "ios", "apns"),
        ("FR", "web", "fcm"),
        ("DE", "android", "fcm"),
    ]:
        user = AppUserFactory.create(project=project, attributes={"country": country})
        PushTokenFactory.create(
            project=project, app_user=user, platform=platform, provider=provider
        )
    body = {
        "project": str(project.pk),
        "platforms": ["ios", "web"],
        "targeting": {"countries": {"include": ["fr"]}},
        "segment_id": None,
    }

    answer = post(staff, "estimate", "add", body)

    assert answer.status_code == 200
    assert answer.json() == {
        "total": 2,
        "by_provider": {"apns": 1, "fcm": 1, "webpush": 0},
        "by_platform": {"ios": 1, "android": 0, "web": 1},
    }
    # Saved, the same campaign answers the same through the API's function.
    saved = CampaignFactory.create(
        project=project, platforms=["ios", "web"], targeting={"countries": {"include": ["fr"]}}
    )
    assert services.campaign_audience(project=project, campaign_id=saved.pk) == answer.json()
    assert post(staff, "estimate", str(saved.pk), {}).json()["total"] == 3


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"targeting": {"countries": "FR"}}, 400, "VALIDATION_ERROR", "targeting.countries"),
        ({"segment_id": "nope"}, 400, "INVALID_SEGMENT_ID", "segment_id"),
        (
            {"targeting": {"user_data": {"include": {"platform": "ios"}}}},
            400,
            "VALIDATION_ERROR",
            "targeting.user_data.include",
        ),
    ],
)
def test_estimate_refuses_what_the_api_refuses(
    staff: Client, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    project = ProjectFactory.create()

    answer = post(staff, "estimate", "add", {"project": str(project.pk), **body})

    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["details"]["field"] == field


def test_estimate_of_another_projects_segment_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()
    foreign = SegmentFactory.create()

    answer = post(
        staff, "estimate", "add", {"project": str(project.pk), "segment_id": str(foreign.pk)}
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_SEGMENT_ID"


def test_preview_builds_the_localized_payload_with_the_real_builders(staff: Client) -> None:
    campaign = CampaignFactory.create()
    content = {
        "title": "Sale",
        "body": "Now",
        "localizations": {"fr": {"title": "Soldes"}},
        "actions": [{"id": "go", "title": "Go"}],
        "image_url": "https://example.com/a.png",
    }

    answer = post(staff, "preview", str(campaign.pk), {"language": "fr-CA", "content": content})

    assert answer.status_code == 200
    preview = answer.json()
    assert (preview["title"], preview["body"]) == ("Soldes", "Now")  # per-field fallback
    assert preview["actions"] == [{"id": "go", "title": "Go"}]
    assert preview["limit"] == 4096 and preview["too_large"] == []
    fcm_and_apns = {"apns", "fcm_android", "fcm_ios", "fcm_web"}
    assert preview["largest"] == max(preview["sizes"][key] for key in fcm_and_apns)
    assert set(preview["sizes"]) == {*fcm_and_apns, "webpush"}
    assert preview["limits"] == {**dict.fromkeys(fcm_and_apns, 4096), "webpush": 3993}


def test_preview_reports_the_same_overflow_a_save_refuses(staff: Client) -> None:
    project = ProjectFactory.create()
    content = {"title": "T", "body": "x" * 4000}

    answer = post(
        staff, "preview", "add", {"project": str(project.pk), "language": "", "content": content}
    )

    assert answer.status_code == 200
    assert answer.json()["largest"] > 4096
    assert {r["provider"] for r in answer.json()["too_large"]} == {"apns", "fcm", "webpush"}
    missing = post(staff, "preview", "add", {"project": str(project.pk), "content": {"body": "b"}})
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "MISSING_TITLE")


PERSONAL = {
    "title": 'Hi {{ first_name | default: "there" }}',
    "body": "Deals in {{ city }}",
    "localizations": {"fr": {"title": 'Salut {{ first_name | default: "toi" }}'}},
}


def test_preview_as_a_user_renders_their_values_like_the_api_preview(staff: Client) -> None:
    campaign = CampaignFactory.create(**PERSONAL)
    project = campaign.project
    AppUserFactory.create(
        project=project,
        external_id="ada",
        attributes={"first_name": "Ada", "city": "Lyon", "language": "fr"},
    )

    as_ada = post(staff, "preview", str(campaign.pk), {"external_id": "ada", "content": PERSONAL})
    nobody = post(staff, "preview", str(campaign.pk), {"language": "", "content": PERSONAL})
    ada_default_text = post(
        staff,
        "preview",
        str(campaign.pk),
        {"external_id": "ada", "language": "", "content": PERSONAL},
    )

    assert as_ada.status_code == 200
    # The user's language (fr) by default, their attributes in the placeholders.
    assert (as_ada.json()["language"], as_ada.json()["title"]) == ("fr", "Salut Ada")
    assert as_ada.json()["body"] == "Deals in Lyon"
    assert as_ada.json()["placeholders"] == ["city", "first_name"]
    # The same answer as the API's preview of the saved campaign for that user.
    api = services.campaign_preview(project=project, campaign_id=campaign.pk, external_id="ada")
    assert {k: v for k, v in as_ada.json().items() if k != "payloads"} == {
        k: v for k, v in api.items() if k != "payloads"
    }
    assert (nobody.json()["title"], nobody.json()["body"]) == ("Hi there", "Deals in ")
    assert (ada_default_text.json()["language"], ada_default_text.json()["title"]) == (
        "",
        "Hi Ada",
    )


@pytest.mark.parametrize(
    ("sample", "status", "code", "field"),
    [
        ({"external_id": "nobody"}, 404, "NOT_FOUND", "external_id"),
        ({"external_id": "someone-else"}, 404, "NOT_FOUND", "external_id"),  # other project's
        ({"external_id": ""}, 400, "INVALID_EXTERNAL_ID", "external_id"),
        ({"external_id": 42}, 400, "INVALID_EXTERNAL_ID", "external_id"),
        ({"external_id": "x" * 1000}, 400, "INVALID_EXTERNAL_ID", "external_id"),
        ({"language": "not a tag"}, 400, "VALIDATION_ERROR", "language"),
    ],
)
def test_preview_as_an_unknown_or_bad_user_is_refused_with_the_api_envelope(
    staff: Client, sample: dict[str, Any], status: int, code: str, field: str
) -> None:
    project = ProjectFactory.create()
    AppUserFactory.create(external_id="someone-else", attributes={"first_name": "Eve"})

    answer = post(
        staff, "preview", "add", {"project": str(project.pk), "content": PERSONAL, **sample}
    )

    assert answer.status_code == status
    error = answer.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field)
    assert set(error) == {"code", "message", "details"}


def test_sample_users_are_the_projects_newest_twenty(staff: Client) -> None:
    project = ProjectFactory.create()
    for i in range(25):
        AppUserFactory.create(project=project, external_id=f"u{i:02d}")
    AppUserFactory.create(external_id="foreign")
    campaign = CampaignFactory.create(project=project)

    added = post(staff, "sample_users", "add", {"project": str(project.pk)})
    changed = post(staff, "sample_users", str(campaign.pk), {})
    no_project = post(staff, "sample_users", "add", {})

    assert added.status_code == 200
    assert added.json() == {"external_ids": [f"u{i:02d}" for i in range(24, 4, -1)]}
    assert changed.json() == added.json()
    assert (no_project.status_code, no_project.json()["error"]["details"]) == (
        400,
        {"field": "project"},
    )


def test_recurrence_reading_and_refusal(staff: Client) -> None:
    project = ProjectFactory.create()
    recurrence = {"cron": "0 12 * * 1,5", "timezone": "Europe/Paris"}

    answer = post(
        staff, "recurrence", "add", {"project": str(project.pk), "recurrence": recurrence}
    )
    bad = post(
        staff, "recurrence", "add", {"project": str(project.pk), "recurrence": {"cron": "0 12 * *"}}
    )

    assert answer.json()["text"] == "at 12:00 on Mon and Fri, Europe/Paris"
    assert (bad.status_code, bad.json()["error"]["details"]["field"]) == (400, "recurrence.cron")


@pytest.mark.parametrize(
    ("recurrence", "text"),
    [
        ({"cron": "30 9 * * 1-5", "timezone": "UTC"}, "at 09:30 on Mon to Fri, UTC"),
        ({"cron": "*/15 * * * *", "timezone": "UTC"}, "every 15 minutes, UTC"),
        ({"cron": "0 */2 * * *", "timezone": "UTC"}, "every 2 hours at minute 00, UTC"),
        ({"cron": "0 9 1 1 *", "timezone": "UTC"}, "at 09:00 on day 1 of the month in Jan, UTC"),
        ({"every_seconds": 7200}, "every 2 hours"),
        (
            {"every_days": 1, "at": "09:00", "timezone": "Asia/Tokyo"},
            "every day at 09:00, Asia/Tokyo",
        ),
    ],
)
def test_describe_recurrence(recurrence: dict[str, Any], text: str) -> None:
    assert describe_recurrence(recurrence) == text


def test_composer_views_hide_other_campaigns_and_need_a_login(
    staff: Client, client: Client
) -> None:
    unknown = post(staff, "estimate", "00000000-0000-0000-0000-000000000000", {})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
    anonymous = client.post(
        url("campaigns_pushcampaign_composer_estimate", "add"),
        "{}",
        content_type="application/json",
    )
    assert anonymous.status_code == 302  # to the login page
