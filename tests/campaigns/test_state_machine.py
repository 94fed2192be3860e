"""The campaign state machine (DESIGN.md, "Campaign states"), driven through the API
and the scheduler's entry points, with the real broker and a real broker outage.

    draft --send--> sending                 draft --PATCH scheduled_at--> scheduled
    scheduled --PATCH scheduled_at:null--> draft      draft|scheduled --DELETE--> gone
    scheduled|sending --cancel--> cancelled           failed --send--> sending
    scheduled --fire (current version, due)--> sending
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from campaigns import queue
from campaigns.models import CampaignRun, PushCampaign
from campaigns.scheduling import campaign_fire_scheduled, campaigns_sweep_scheduled
from campaigns.tasks import fire_scheduled_campaign_task
from tests.factories import CampaignFactory, CampaignRunFactory

pytestmark = pytest.mark.django_db

FAN_OUT = "campaigns.fan_out_campaign"
FIRE = "campaigns.fire_scheduled_campaign"
NOW = datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC)
ALL_STATUSES = ("draft", "scheduled", "sending", "sent", "cancelled", "failed")


def base(project_id: object) -> str:
    return f"/admin/projects/{project_id}/push/campaigns"


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def in_status(project, status: str, **fields: Any) -> PushCampaign:
    """A campaign as the state machine leaves it in `status`."""
    if status == "scheduled":
        fields = {"scheduled_at": NOW + timedelta(days=1), "schedule_version": 1, **fields}
    if status in ("sending", "sent", "failed"):
        fields = {"current_run": 1, "sent_at": NOW - timedelta(hours=1), **fields}
    if status in ("sent", "cancelled"):
        fields = {"completed_at": NOW - timedelta(minutes=30), **fields}
    return CampaignFactory(project=project, status=status, **fields)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


# --- allowed transitions through the API -------------------------------------------


def test_draft_send_becomes_sending_with_run_one(api, broker, frozen):
    client, project = api
    campaign = in_status(project, "draft")

    response = client.post(f"{base(project.id)}/{campaign.id}/send")

    assert response.status_code == 200
    assert response.json()["status"] == "sending"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run, campaign.sent_at) == ("sending", 1, NOW)
    assert list(CampaignRun.objects.values_list("number", "trigger", "status")) == [
        (1, "send", "sending")
    ]
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


def test_failed_send_again_starts_run_two(api, broker, frozen):
    client, project = api
    campaign = in_status(project, "failed", last_error="Could not start the send: down")
    CampaignRunFactory(campaign=campaign, number=1, status="failed")

    response = client.post(f"{base(project.id)}/{campaign.id}/send")

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run, campaign.last_error, campaign.sent_at) == (
        "sending",
        2,
        "",
        NOW,
    )
    assert list(CampaignRun.objects.order_by("number").values_list("number", "status")) == [
        (1, "failed"),
        (2, "sending"),
    ]
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 2])]


def test_draft_patch_scheduled_at_becomes_scheduled(api, broker, frozen, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    campaign = in_status(project, "draft")
    when = NOW + timedelta(hours=3)

    response = client.patch(
        f"{base(project.id)}/{campaign.id}", {"scheduled_at": "2031-06-01T15:00:00Z"}
    )

    assert response.status_code == 200
    assert response.json()["status"] == "scheduled"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at, campaign.fire_at) == ("scheduled", when, when)
    assert (campaign.schedule_version, campaign.armed_version) == (1, 0)
    assert broker.drain() == []  # beyond the ETA window: the sweeper arms it later


def test_draft_patch_scheduled_at_due_soon_enqueues_the_wake_up(api, broker, frozen, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    campaign = in_status(project, "draft")

    response = client.patch(
        f"{base(project.id)}/{campaign.id}", {"scheduled_at": "2031-06-01T12:04:00+00:00"}
    )

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.status, campaign.schedule_version, campaign.armed_version) == (
        "scheduled",
        1,
        1,
    )
    [task] = broker.drain()
    assert (task.name, task.args) == (FIRE, [str(campaign.id), 1])
    assert datetime.fromisoformat(task.eta) == NOW + timedelta(minutes=4)


def test_scheduled_patch_scheduled_at_null_goes_back_to_draft(api, broker, frozen):
    client, project = api
    campaign = in_status(project, "scheduled", schedule_version=4, armed_version=4)

    response = client.patch(f"{base(project.id)}/{campaign.id}", {"scheduled_at": None})

    assert response.status_code == 200
    assert response.json()["status"] == "draft"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at, campaign.fire_at) == ("draft", None, None)
    assert campaign.schedule_version == 5  # the armed wake-up (version 4) is now stale
    assert broker.drain() == []


def test_scheduled_patch_to_a_new_time_bumps_the_version(api, broker, frozen):
    client, project = api
    campaign = in_status(project, "scheduled", schedule_version=2)

    response = client.patch(
        f"{base(project.id)}/{campaign.id}", {"scheduled_at": "2031-07-01T00:00:00Z"}
    )

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version) == (
        "scheduled",
        datetime(2031, 7, 1, tzinfo=UTC),
        3,
    )


@pytest.mark.parametrize("status", ["draft", "scheduled"])
def test_delete_removes_draft_and_scheduled_campaigns(api, broker, status):
    client, project = api
    campaign = in_status(project, status)

    response = client.delete(f"{base(project.id)}/{campaign.id}")

    assert response.status_code == 204
    assert not PushCampaign.objects.filter(pk=campaign.pk).exists()
    assert broker.drain() == []


@pytest.mark.parametrize("status", ["scheduled", "sending"])
def test_cancel_scheduled_or_sending(api, broker, frozen, status):
    client, project = api
    campaign = in_status(project, status, schedule_version=1)

    response = client.post(f"{base(project.id)}/{campaign.id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.completed_at, campaign.schedule_version) == (
        "cancelled",
        NOW,
        2,
    )
    assert broker.drain() == []


# --- refused transitions: 409, nothing changed, nothing enqueued ------------------------


@pytest.fixture
def refused(api, db_state, broker):
    client, project = api

    def check(method: str, status: str, suffix: str, body: Any, expected: dict) -> None:
        campaign = in_status(project, status)
        before = db_state()
        url = f"{base(project.id)}/{campaign.id}{suffix}"
        response = getattr(client, method)(url, body)
        assert response.status_code == 409
        assert response.json() == expected
        assert db_state() == before
        assert broker.drain() == []

    return check


def already_sent(status: str) -> dict[str, Any]:
    return error("ALREADY_SENT", f"The campaign is already {status}.", {"status": status})


def test_send_on_scheduled_is_already_scheduled(refused):
    refused(
        "post",
        "scheduled",
        "/send",
        None,
        error(
            "ALREADY_SCHEDULED",
            "The campaign is scheduled; it fires at its scheduled_at. "
            "PATCH scheduled_at to null first to send it now.",
            {"status": "scheduled"},
        ),
    )


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled"])
def test_send_is_refused_once_past_draft(refused, status):
    refused("post", status, "/send", None, already_sent(status))


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled", "failed"])
@pytest.mark.parametrize(
    "body", [{"title": "New"}, {"scheduled_at": "2099-01-01T00:00:00Z"}, {"scheduled_at": None}]
)
def test_patch_is_refused_unless_draft_or_scheduled(refused, status, body):
    refused("patch", status, "", body, already_sent(status))


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled", "failed"])
def test_delete_is_refused_unless_draft_or_scheduled(refused, status):
    refused("delete", status, "", None, already_sent(status))


@pytest.mark.parametrize("status", ["draft", "sent", "cancelled", "failed"])
def test_cancel_is_refused_unless_scheduled_or_sending(refused, status):
    refused(
        "post",
        status,
        "/cancel",
        None,
        error(
            "NOT_CANCELLABLE",
            f"Only scheduled or sending campaigns can be cancelled; this one is {status}.",
            {"status": status},
        ),
    )


def test_every_status_has_its_transitions_covered():
    """Guard: a new status must get its allowed/refused transitions tested here."""
    assert tuple(PushCampaign.Status.values) == ALL_STATUSES


# --- the scheduled fire -----------------------------------------------------------


def scheduled(project, *, at: datetime, version: int = 1) -> PushCampaign:
    return CampaignFactory(
        project=project, status="scheduled", scheduled_at=at, schedule_version=version
    )


def test_fire_with_the_current_version_when_due_starts_a_scheduled_run(api, broker, frozen):
    campaign = scheduled(api.project, at=NOW - timedelta(seconds=1), version=3)

    fired = campaign_fire_scheduled(campaign_id=campaign.id, version=3)

    assert fired is True
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run, campaign.sent_at) == ("sending", 1, NOW)
    run = CampaignRun.objects.get()
    assert (run.number, run.trigger, run.status, run.occurrence) == (
        1,
        "schedule",
        "sending",
        NOW - timedelta(seconds=1),
    )
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


def test_fire_exactly_at_the_scheduled_time(api, broker, frozen):
    campaign = scheduled(api.project, at=NOW)

    assert campaign_fire_scheduled(campaign_id=campaign.id, version=1) is True
    assert len(broker.drain()) == 1


@pytest.mark.parametrize("version", [0, 2, 99])
def test_fire_with_a_stale_version_does_nothing(api, broker, db_state, frozen, version):
    campaign = scheduled(api.project, at=NOW - timedelta(minutes=1), version=1)
    before = db_state()

    assert campaign_fire_scheduled(campaign_id=campaign.id, version=version) is False
    assert db_state() == before
    assert broker.drain() == []


def test_fire_before_the_time_does_nothing(api, broker, db_state, frozen):
    campaign = scheduled(api.project, at=NOW + timedelta(microseconds=1))
    before = db_state()

    assert campaign_fire_scheduled(campaign_id=campaign.id, version=1) is False
    assert db_state() == before
    assert broker.drain() == []


@pytest.mark.parametrize("status", ["draft", "sending", "sent", "cancelled", "failed"])
def test_fire_of_a_campaign_no_longer_scheduled_does_nothing(api, broker, db_state, frozen, status):
    campaign = CampaignFactory(
        project=api.project,
        status=status,
        scheduled_at=NOW - timedelta(minutes=1),
        schedule_version=1,
    )
    before = db_state()

    assert campaign_fire_scheduled(campaign_id=campaign.id, version=1) is False
    assert db_state() == before
    assert broker.drain() == []


def test_fire_of_a_deleted_campaign_does_nothing(api, broker):
    assert campaign_fire_scheduled(campaign_id=uuid.uuid4(), version=1) is False
    assert broker.drain() == []


def test_a_duplicated_wake_up_fires_once(api, broker, frozen):
    campaign = scheduled(api.project, at=NOW - timedelta(minutes=1))

    results = [fire_scheduled_campaign_task(str(campaign.id), 1) for _ in range(3)]

    assert results == [True, False, False]
    assert CampaignRun.objects.count() == 1
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


def test_a_wake_up_from_before_a_patch_is_stale(api, broker, settings):
    """Create due soon (armed v1), PATCH to a new time (armed v2): only v2 fires."""
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    with time_machine.travel(NOW, tick=False):
        client.post(
            base(project.id), {"title": "t", "body": "b", "scheduled_at": "2031-06-01T12:01:00Z"}
        )
        campaign = PushCampaign.objects.get()
        client.patch(f"{base(project.id)}/{campaign.id}", {"scheduled_at": "2031-06-01T12:02:00Z"})
    wake_ups = broker.drain()

    assert [(t.name, t.args) for t in wake_ups] == [
        (FIRE, [str(campaign.id), 1]),
        (FIRE, [str(campaign.id), 2]),
    ]
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert fire_scheduled_campaign_task(str(campaign.id), 1) is False
        assert fire_scheduled_campaign_task(str(campaign.id), 2) is True
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run) == ("sending", 1)
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


def test_a_wake_up_after_cancel_or_unschedule_does_nothing(api, broker, frozen):
    client, project = api
    cancelled = scheduled(project, at=NOW - timedelta(seconds=5))
    unscheduled = scheduled(project, at=NOW + timedelta(seconds=5))
    client.post(f"{base(project.id)}/{cancelled.id}/cancel")
    client.patch(f"{base(project.id)}/{unscheduled.id}", {"scheduled_at": None})

    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        assert fire_scheduled_campaign_task(str(cancelled.id), 1) is False
        assert fire_scheduled_campaign_task(str(unscheduled.id), 1) is False

    cancelled.refresh_from_db()
    unscheduled.refresh_from_db()
    assert (cancelled.status, unscheduled.status) == ("cancelled", "draft")
    assert CampaignRun.objects.count() == 0
    assert broker.drain() == []


# --- the sweeper ------------------------------------------------------------------


def test_sweep_fires_due_campaigns_and_arms_those_inside_the_window(api, broker, frozen, settings):
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    project = api.project
    due = scheduled(project, at=NOW - timedelta(hours=2))
    soon = scheduled(project, at=NOW + timedelta(minutes=4), version=2)
    armed = CampaignFactory(
        project=project,
        status="scheduled",
        scheduled_at=NOW + timedelta(minutes=3),
        schedule_version=1,
        armed_version=1,
    )
    later = scheduled(project, at=NOW + timedelta(hours=1))
    draft = CampaignFactory(project=project, scheduled_at=NOW - timedelta(hours=1))

    result = campaigns_sweep_scheduled()

    assert result == {"fired": 1, "armed": 1}
    statuses = dict(PushCampaign.objects.values_list("id", "status"))
    assert statuses == {
        due.id: "sending",
        soon.id: "scheduled",
        armed.id: "scheduled",
        later.id: "scheduled",
        draft.id: "draft",
    }
    soon.refresh_from_db()
    later.refresh_from_db()
    assert (soon.armed_version, later.armed_version) == (2, 0)
    tasks = sorted(broker.drain(), key=lambda t: t.name)
    assert [(t.name, t.args) for t in tasks] == [
        (FAN_OUT, [str(due.id), 1]),
        (FIRE, [str(soon.id), 2]),
    ]
    assert datetime.fromisoformat(tasks[1].eta) == NOW + timedelta(minutes=4)

    assert campaigns_sweep_scheduled() == {"fired": 0, "armed": 0}
    assert broker.drain() == []


def test_sweep_catches_a_campaign_whose_wake_up_was_lost(api, broker, settings):
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    client, project = api
    with time_machine.travel(NOW, tick=False):
        client.post(
            base(project.id), {"title": "t", "body": "b", "scheduled_at": "2031-06-01T12:01:00Z"}
        )
    broker.drain()  # the broker lost the ETA wake-up
    campaign = PushCampaign.objects.get()

    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        assert campaigns_sweep_scheduled() == {"fired": 1, "armed": 0}

    campaign.refresh_from_db()
    assert campaign.status == "sending"
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 1])]


# --- broker outage: never a stale sending/scheduled ------------------------------------


def test_send_with_the_broker_down_fails_the_campaign_and_its_run(api, broken_broker, broker):
    client, project = api
    campaign = in_status(project, "draft")

    response = client.post(f"{base(project.id)}/{campaign.id}/send")

    assert response.status_code == 500
    assert response.json() == error(
        "SEND_FAILED",
        "The send could not be started; the campaign is now failed. Retry /send.",
        {"status": "failed"},
    )
    campaign.refresh_from_db()
    assert campaign.status == "failed"
    assert campaign.last_error.startswith("Could not start the send: ")
    run = CampaignRun.objects.get()
    assert (run.number, run.status) == (1, "failed")
    assert run.error == campaign.last_error
    assert run.completed_at is not None

    # The broker comes back: failed -> sending with a new run.
    broken_broker.restore()
    retry = client.post(f"{base(project.id)}/{campaign.id}/send")

    assert retry.status_code == 200
    assert retry.json()["status"] == "sending"
    assert retry.json()["current_run"] == 2
    assert [(t.name, t.args) for t in broker.drain()] == [(FAN_OUT, [str(campaign.id), 2])]


def test_create_due_soon_with_the_broker_down_is_created_failed(api, broken_broker, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    when = timezone.now() + timedelta(seconds=60)

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "scheduled_at": when.isoformat()}
    )

    assert response.status_code == 201
    assert response.json()["status"] == "failed"
    campaign = PushCampaign.objects.get()
    assert campaign.status == "failed"
    assert campaign.last_error.startswith("Could not arm the schedule: ")
    assert response.json()["last_error"] == campaign.last_error


def test_create_far_ahead_with_the_broker_down_needs_no_broker(api, broken_broker, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300

    response = client.post(
        base(project.id), {"title": "t", "body": "b", "scheduled_at": "2099-01-01T00:00:00Z"}
    )

    assert response.status_code == 201
    assert response.json()["status"] == "scheduled"


def test_patch_due_soon_with_the_broker_down_is_reschedule_failed(api, broken_broker, settings):
    client, project = api
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    campaign = in_status(project, "draft")
    when = (timezone.now() + timedelta(seconds=60)).replace(microsecond=0)

    response = client.patch(f"{base(project.id)}/{campaign.id}", {"scheduled_at": when.isoformat()})

    assert response.status_code == 502
    assert response.json() == error(
        "RESCHEDULE_FAILED",
        "The campaign was updated but its schedule could not be re-armed; it is now failed. "
        "Send it, or fix the broker and PATCH scheduled_at again.",
        {"status": "failed"},
    )
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at, campaign.schedule_version) == (
        "failed",
        when,
        1,
    )
    assert campaign.last_error.startswith("Could not re-arm the schedule: ")


def test_scheduled_fire_with_the_broker_down_fails_the_campaign(api, broken_broker, frozen):
    campaign = scheduled(api.project, at=NOW - timedelta(seconds=1))

    with pytest.raises(queue.EnqueueFailed):
        campaign_fire_scheduled(campaign_id=campaign.id, version=1)

    campaign.refresh_from_db()
    assert campaign.status == "failed"
    assert campaign.last_error.startswith("Could not start the send: ")
    assert list(CampaignRun.objects.values_list("number", "trigger", "status")) == [
        (1, "schedule", "failed")
    ]


def test_the_fire_task_swallows_the_outage_after_failing_the_campaign(api, broken_broker, frozen):
    campaign = scheduled(api.project, at=NOW - timedelta(seconds=1))

    assert fire_scheduled_campaign_task(str(campaign.id), 1) is False

    campaign.refresh_from_db()
    assert campaign.status == "failed"


def test_sweep_with_the_broker_down_fails_due_ones_and_arms_nothing(
    api, broken_broker, frozen, settings
):
    settings.HERALD_SCHEDULE_ETA_WINDOW_SECONDS = 300
    due = scheduled(api.project, at=NOW - timedelta(minutes=1))
    soon = scheduled(api.project, at=NOW + timedelta(minutes=1))

    assert campaigns_sweep_scheduled() == {"fired": 0, "armed": 0}

    due.refresh_from_db()
    soon.refresh_from_db()
    assert (due.status, soon.status, soon.armed_version) == ("failed", "scheduled", 0)
