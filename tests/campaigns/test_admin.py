"""The console's campaign pages: actions and forms go through the same services and
validation as the API."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from campaigns.models import CampaignRun, PushCampaign
from core.models import Project
from tests.console import messages_of, url
from tests.factories import (
    CampaignFactory,
    CampaignRunFactory,
    ProjectFactory,
    PushDeliveryFactory,
    SegmentFactory,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

DbState = Callable[[], dict[str, list[dict[str, Any]]]]


def test_campaign_deliveries_link_filters_the_delivery_log(
    staff: Client, some_of_everything: dict[str, Any]
) -> None:
    campaign = some_of_everything["campaigns_pushcampaign"]
    other = PushDeliveryFactory.create(status="failed", error_message="BadDeviceToken")
    page = staff.get(url("campaigns_pushcampaign_change", campaign.pk)).content.decode()
    link = re.search(r'href="([^"]*pushdelivery/\?campaign__id__exact=[^"]+)"', page)
    assert link is not None

    response = staff.get(link.group(1).replace("&amp;", "&"))

    assert response.status_code == 200
    shown = [row.pk for row in response.context["cl"].result_list]
    assert shown == [some_of_everything["delivery_pushdelivery"].pk]
    assert other.pk not in shown


def run_action(staff: Client, action: str, *campaigns: PushCampaign) -> Response:
    return staff.post(
        url("campaigns_pushcampaign_changelist"),
        {"action": action, "_selected_action": [str(c.pk) for c in campaigns]},
        follow=True,
    )


def test_send_now_moves_a_draft_to_sending_and_enqueues_the_fan_out(
    staff: Client, broker: Any
) -> None:
    draft = CampaignFactory.create(name="Spring sale")

    response = run_action(staff, "send_now", draft)

    assert messages_of(response) == [("success", "Send: 1 campaign.")]
    draft.refresh_from_db()
    assert (draft.status, draft.current_run) == ("sending", 1)
    run = CampaignRun.objects.get(campaign=draft)
    assert (run.number, run.trigger, run.status) == (1, "send", "sending")
    assert [(t.name, t.args) for t in broker.drain()] == [
        ("campaigns.fan_out_campaign", [str(draft.pk), 1])
    ]


def test_cancel_moves_a_scheduled_campaign_to_cancelled(staff: Client) -> None:
    scheduled = CampaignFactory.create(
        status="scheduled", scheduled_at=timezone.now() + timedelta(days=1), schedule_version=1
    )

    response = run_action(staff, "cancel", scheduled)

    assert messages_of(response) == [("success", "Cancel: 1 campaign.")]
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.schedule_version) == ("cancelled", 2)


def test_duplicate_makes_a_new_draft(staff: Client) -> None:
    sent = CampaignFactory.create(
        name="Launch", status="sent", title="Hi", body="There", current_run=1
    )

    response = run_action(staff, "duplicate", sent)

    assert messages_of(response) == [("success", "Duplicate: 1 campaign.")]
    copy = PushCampaign.objects.exclude(pk=sent.pk).get()
    assert (copy.name, copy.status, copy.title, copy.body, copy.current_run) == (
        "Launch (copy)",
        "draft",
        "Hi",
        "There",
        0,
    )
    sent.refresh_from_db()
    assert sent.status == "sent"


def test_action_in_the_wrong_state_reports_the_error_and_changes_nothing(
    staff: Client, db_state: DbState, broker: Any
) -> None:
    sent = CampaignFactory.create(name="Old news", status="sent")
    scheduled = CampaignFactory.create(
        name="Later", status="scheduled", scheduled_at=timezone.now() + timedelta(days=1)
    )
    before = db_state()

    response = run_action(staff, "send_now", sent, scheduled)

    assert messages_of(response) == [
        ("error", 'Send "Old news": ALREADY_SENT: The campaign is already sent.'),
        (
            "error",
            'Send "Later": ALREADY_SCHEDULED: The campaign is scheduled; it fires at its '
            "scheduled_at. PATCH scheduled_at to null first to send it now.",
        ),
    ]
    assert db_state() == before
    assert broker.drain() == []


def test_a_refused_campaign_does_not_stop_the_others(staff: Client, broker: Any) -> None:
    draft = CampaignFactory.create(name="Fine")
    cancelled = CampaignFactory.create(name="Gone", status="cancelled")

    response = run_action(staff, "cancel", draft, cancelled)
    assert messages_of(response) == [
        (
            "error",
            'Cancel "Fine": NOT_CANCELLABLE: Only scheduled or sending campaigns can be '
            "cancelled; this one is draft.",
        ),
        (
            "error",
            'Cancel "Gone": NOT_CANCELLABLE: Only scheduled or sending campaigns can be '
            "cancelled; this one is cancelled.",
        ),
    ]

    response = run_action(staff, "send_now", cancelled, draft)

    assert messages_of(response) == [
        ("error", 'Send "Gone": ALREADY_SENT: The campaign is already cancelled.'),
        ("success", "Send: 1 campaign."),
    ]
    assert list(PushCampaign.objects.order_by("name").values_list("name", "status")) == [
        ("Fine", "sending"),
        ("Gone", "cancelled"),
    ]


# --- campaign forms validate like the API ----------------------------------------------


def campaign_form(project: Project | None, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "",
        "title": "Hello",
        "body": "World",
        "data": "{}",
        "localizations": "{}",
        "image_url": "",
        "url": "",
        "actions": "[]",
        "sound": "",
        "badge": "",
        "segment": "",
        "targeting": "{}",
        "tags": "",
        "scheduled_at_0": "",
        "scheduled_at_1": "",
        "schedule_timezone": "UTC",
        "recurrence_0": "",
        "end_at_0": "",
        "end_at_1": "",
        "quiet_hours_0": "",
        "quiet_hours_1": "",
        "quiet_hours_2": "defer",
        "local_time_missed": "next_day",
        "throttle_per_minute": "",
        "priority": "high",
        "ttl_seconds_0": "",
        "ttl_seconds_1": "hours",
        "collapse_key": "",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    if project is not None:
        data["project"] = str(project.pk)
    data.update(overrides)
    return data


def form_errors(response: Response) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


def test_admin_creates_a_draft_through_the_service(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            data='{"screen": "home"}',
            localizations='{"fr": {"title": "Bonjour"}}',
            platforms=["web", "ios"],
        ),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert (campaign.project_id, campaign.name, campaign.title, campaign.status) == (
        project.pk,
        "Hello",  # defaults to the title, as in the API
        "Hello",
        "draft",
    )
    assert campaign.data == {"screen": "home"}
    assert campaign.localizations == {"fr": {"title": "Bonjour"}}
    assert campaign.platforms == ["ios", "web"]  # normalised by the validator


def test_admin_creates_a_scheduled_campaign(staff: Client) -> None:
    project = ProjectFactory.create()
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0, second=0)

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1=when.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version) == (
        "scheduled",
        when,
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        (
            {"title": "  "},
            {"title": ["title is required. (MISSING_TITLE)"]},
        ),
        (
            {"data": '{"aps": {"alert": "x"}}'},
            {"data": ["data must not contain the reserved key 'aps'. (INVALID_DATA)"]},
        ),
        (
            {"data": '"text"'},
            {"data": ["data must be a JSON object. (INVALID_DATA)"]},
        ),
        (
            {"scheduled_at_0": "2020-01-01", "scheduled_at_1": "10:00:00"},
            {"scheduled_at": ["scheduled_at is in the past. (SCHEDULED_AT_IN_PAST)"]},
        ),
        (
            {"actions": '[{"id": "a", "title": ""}]'},
            {"actions": ["actions[0].title must not be blank. (VALIDATION_ERROR)"]},
        ),
        (
            {"localizations": '{"fr": {"subtitle": "x"}}'},
            {"localizations": ["localizations.fr has unknown keys: subtitle. (VALIDATION_ERROR)"]},
        ),
        (
            {"recurrence_0": "days", "recurrence_1": "1", "deliver_in_user_timezone": "on"},
            {
                "deliver_in_user_timezone": [
                    "deliver_in_user_timezone applies to one-shot schedules, not to "
                    "recurrences. (VALIDATION_ERROR)"
                ]
            },
        ),
        (
            {"image_url": "ftp://example.com/a.png"},
            {"image_url": ["image_url must be an http(s) URL. (VALIDATION_ERROR)"]},
        ),
        (
            {"localizations": json.dumps({f"es-{i:03d}": {"title": "t"} for i in range(301)})},
            {
                "localizations": [
                    "At most 300 localizations (one per language); got 301. (VALIDATION_ERROR)"
                ]
            },
        ),
        (
            # The form's JSON parser takes NaN, which no payload can carry.
            {"data": '{"x": NaN}'},
            {"data": ["data must be plain JSON text. (INVALID_DATA)"]},
        ),
        (
            {"data": json.dumps({"blob": "x" * 5000})},
            {
                "data": [
                    "data is 5011 bytes of JSON; a payload is at most 4096 bytes. "
                    "Shorten the data. (PAYLOAD_TOO_LARGE)"
                ]
            },
        ),
    ],
)
def test_invalid_campaign_is_refused_with_the_api_error_and_nothing_is_written(
    staff: Client, broker: Any, overrides: dict[str, str], errors: dict[str, list[str]]
) -> None:
    project = ProjectFactory.create()

    response = staff.post(url("campaigns_pushcampaign_add"), campaign_form(project, **overrides))

    assert response.status_code == 200
    assert form_errors(response) == errors
    assert PushCampaign.objects.count() == 0
    assert broker.drain() == []


def test_segment_of_another_project_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()
    foreign = SegmentFactory.create(name="Theirs")

    response = staff.post(
        url("campaigns_pushcampaign_add"), campaign_form(project, segment=str(foreign.pk))
    )

    assert form_errors(response) == {
        "segment": ["segment_id is not a segment of this project. (INVALID_SEGMENT_ID)"]
    }
    assert PushCampaign.objects.count() == 0


def test_payload_over_4096_bytes_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(project, body="x" * 3000, data='{"blob": "%s"}' % ("y" * 1500)),
    )

    errors = form_errors(response)
    assert list(errors) == ["__all__"]
    assert re.fullmatch(
        r"The (apns|fcm) payload would be \d+ bytes; the limit is 4096\. "
        r"Shorten the text or data\. \(PAYLOAD_TOO_LARGE\)",
        errors["__all__"][0],
    )
    assert PushCampaign.objects.count() == 0


def test_admin_edit_is_a_patch_through_the_service(staff: Client, db_state: DbState) -> None:
    campaign = CampaignFactory.create(name="Draft", title="Old", body="Body")
    when = (timezone.now() + timedelta(days=3)).replace(microsecond=0, second=0)

    response = staff.post(
        url("campaigns_pushcampaign_change", campaign.pk),
        campaign_form(
            None,
            name="Draft",
            title="New",
            body="Body",
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1=when.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.title, campaign.status, campaign.scheduled_at) == ("New", "scheduled", when)
    assert campaign.schedule_version == 1

    # An invalid edit changes nothing.
    before = db_state()
    response = staff.post(
        url("campaigns_pushcampaign_change", campaign.pk),
        campaign_form(None, name="", title="New", body="Body"),
    )
    assert form_errors(response) == {"name": ["name must not be blank. (VALIDATION_ERROR)"]}
    assert db_state() == before


def test_sent_campaigns_are_view_only(staff: Client, db_state: DbState) -> None:
    sent = CampaignFactory.create(status="sent", title="Done")
    before = db_state()

    page = staff.get(url("campaigns_pushcampaign_change", sent.pk)).content.decode()
    response = staff.post(
        url("campaigns_pushcampaign_change", sent.pk), campaign_form(None, title="Changed")
    )

    assert 'name="_save"' not in page
    assert response.status_code == 403
    delete = staff.post(url("campaigns_pushcampaign_delete", sent.pk), {"post": "yes"})
    assert delete.status_code == 403
    assert db_state() == before


def test_admin_delete_of_a_draft_goes_through_the_service(staff: Client) -> None:
    draft = CampaignFactory.create()

    response = staff.post(url("campaigns_pushcampaign_delete", draft.pk), {"post": "yes"})

    assert response.status_code == 302
    assert PushCampaign.objects.count() == 0


def test_bulk_delete_is_not_offered_for_campaigns(staff: Client) -> None:
    CampaignFactory.create()

    response = staff.get(url("campaigns_pushcampaign_changelist"))

    choices = [value for value, _ in response.context["action_form"].fields["action"].choices]
    assert choices == ["", "send_now", "cancel", "duplicate"]


# --- service refusals the form cannot foresee ------------------------------------------


def test_send_with_the_broker_down_reports_send_failed(staff: Client, broken_broker: str) -> None:
    draft = CampaignFactory.create(name="Flash sale")

    response = run_action(staff, "send_now", draft)

    assert messages_of(response) == [
        (
            "error",
            'Send "Flash sale": SEND_FAILED: The send could not be started; the campaign is '
            "now failed. Retry /send.",
        )
    ]
    draft.refresh_from_db()
    assert draft.status == "failed"


def test_edit_refused_by_the_service_shows_its_error(staff: Client, broken_broker: str) -> None:
    campaign = CampaignFactory.create(name="Soon", title="T", body="B")
    soon = (timezone.now() + timedelta(minutes=2)).replace(microsecond=0)
    change_url = url("campaigns_pushcampaign_change", campaign.pk)

    response = staff.post(
        change_url,
        campaign_form(
            None,
            name="Soon",
            title="T",
            body="B",
            scheduled_at_0=soon.strftime("%Y-%m-%d"),
            scheduled_at_1=soon.strftime("%H:%M:%S"),
        ),
    )

    assert (response.status_code, response["Location"]) == (302, change_url)
    assert messages_of(response) == [
        (
            "error",
            "RESCHEDULE_FAILED: The campaign was updated but its schedule could not be "
            "re-armed; it is now failed. Send it, or fix the broker and PATCH scheduled_at "
            "again.",
        )
    ]
    campaign.refresh_from_db()
    assert campaign.status == "failed"


# --- big tables -------------------------------------------------------------------------


def test_campaign_forms_keep_csrf_protection(db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser("csrf", "csrf@example.com", "pw-csrf-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    project = ProjectFactory.create()

    response = client.post(url("campaigns_pushcampaign_add"), campaign_form(project))

    assert response.status_code == 403
    assert PushCampaign.objects.count() == 0


def test_recurrence_without_an_occurrence_before_end_at_is_refused(staff: Client) -> None:
    project = ProjectFactory.create()
    end = timezone.now() + timedelta(hours=1)

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(
            project,
            recurrence_0="cron",  # every 1 January, 09:00 UTC
            recurrence_3="0 9 1 1 *",
            end_at_0=end.strftime("%Y-%m-%d"),
            end_at_1=end.strftime("%H:%M:%S"),
        ),
    )

    assert form_errors(response) == {
        "end_at": ["The recurrence has no occurrence before end_at. (VALIDATION_ERROR)"]
    }
    assert PushCampaign.objects.count() == 0


def test_recurring_campaign_links_its_beat_schedule(staff: Client) -> None:
    project = ProjectFactory.create()

    response = staff.post(
        url("campaigns_pushcampaign_add"),
        campaign_form(project, recurrence_0="days", recurrence_1="1", recurrence_2="09:00"),
    )

    assert response.status_code == 302
    campaign = PushCampaign.objects.get()
    assert campaign.status == "scheduled"
    assert campaign.recurrence == {"every_days": 1, "at": "09:00", "timezone": "UTC"}
    assert campaign.periodic_task_id is not None
    page = staff.get(url("campaigns_pushcampaign_change", campaign.pk)).content.decode()
    task_url = url("django_celery_beat_periodictask_change", campaign.periodic_task_id)
    assert f'<a href="{task_url}">Periodic task {campaign.periodic_task_id}</a>' in page


def test_a_sending_campaign_shows_its_run_live_in_the_list_and_on_its_page(
    staff: Client, django_assert_max_num_queries: Any
) -> None:
    """Issue 9, item 2: the admin read a snapshot written at the end of a run, so it
    showed targeted 0 / sent 0 for the whole send while the API showed progress."""
    sending = CampaignFactory.create(name="Going out", status="sending", current_run=2)
    CampaignRunFactory.create(campaign=sending, number=1, status="sent", targeted=9, sent=9)
    CampaignRunFactory.create(
        campaign=sending, number=2, status="sending", targeted=120, sent=45, failed=2
    )
    for _ in range(5):  # a page of campaigns costs no query per campaign for its numbers
        CampaignRunFactory.create(
            campaign=CampaignFactory.create(status="sent", current_run=1), number=1, status="sent"
        )

    with django_assert_max_num_queries(12):
        listing = staff.get(url("campaigns_pushcampaign_changelist"))

    row = next(r for r in listing.context["cl"].result_list if r.pk == sending.pk)
    admin_row = listing.context["cl"].model_admin
    assert (admin_row.targeted(row), admin_row.sent(row), admin_row.failed(row)) == (120, 45, 2)
    page = staff.get(url("campaigns_pushcampaign_change", sending.pk)).content.decode()
    # The page's Results panel (kept current by polling while sending) starts from them.
    for key, value in {
        "targeted": 120,
        "sent": 45,
        "failed": 2,
        "unknown": 0,
        "pending": 73,
    }.items():
        assert f'data-count="{key}">{value}<' in page


def test_a_sent_campaign_reads_in_words_not_json(staff: Client) -> None:
    """Issue 10: a campaign that can no longer be edited showed its fields as raw JSON."""
    campaign = CampaignFactory.create(
        status="sent",
        platforms=["ios", "android"],
        localizations={"fr": {"title": "Soldes", "body": "Tout à -20 %"}},
        actions=[{"id": "shop", "title": "Shop now", "url": "myapp://shop"}],
        targeting={"countries": {"include": ["FR", "BE"], "exclude": ["DE"]}},
        tags=["spring"],
        recurrence={"cron": "0 12 * * 1,5", "timezone": "Europe/Paris"},
        quiet_hours={"start": "22:00", "end": "08:00", "action": "defer"},
    )
    page = staff.get(url("campaigns_pushcampaign_change", campaign.pk)).content.decode()
    assert "iOS, Android" in page
    assert "<b>fr</b>: Soldes — Tout à -20 %" in page
    assert "Shop now (shop) → myapp://shop" in page
    assert "<b>countries</b>: include FR, BE · exclude DE" in page
    assert "at 12:00 on Mon and Fri, Europe/Paris" in page
    assert "22:00 to 08:00 in each user&#x27;s zone (defer)" in page
    assert "{&quot;fr&quot;" not in page and '{"fr"' not in page
