"""The run lifecycle (campaigns.runs): stats that never lie, nothing that wedges.

Task functions are called directly (no worker); pushes really go to the in-process
simulators and the broker is the real one (tests/campaigns/test_sending.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import runs, scheduling, sending, services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign, empty_stats
from campaigns.runs import campaign_stats
from campaigns.validation import validate_create
from core.errors import Conflict
from delivery.models import PushDelivery
from segments.models import Segment
from tests.campaigns.test_sending import drive, send, tokens
from tests.factories import CampaignFactory, CampaignRunFactory, PushTokenFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]


def _hhmm(delta: timedelta) -> str:
    return (timezone.now() + delta).astimezone(UTC).strftime("%H:%M")


def stats(**counts: int) -> dict[str, int]:
    return {**empty_stats(), **counts}


def test_cancel_with_deferred_rows_settles_exact_stats(project, broker, api):
    """Issue 9, item 2: quiet hours hold three rows back, one is sent, then cancel.
    The stats used to stay at zeros for good while the rows said 1 sent / 3 skipped."""
    for _ in range(3):
        PushTokenFactory(project=project, timezone="UTC")
    # Twelve hours away from UTC: outside the quiet window.
    PushTokenFactory(project=project, timezone="Pacific/Kiritimati")
    quiet = {"start": _hhmm(-timedelta(hours=1)), "end": _hhmm(timedelta(hours=1))}
    campaign = send(project, quiet_hours=quiet)
    drive(campaign, broker)
    assert campaign_stats(campaign) == stats(targeted=4, sent=1, pending=3)

    response = api.client.post(f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/cancel")
    assert response.status_code == 200
    assert [t.name for t in broker.drain()] == ["campaigns.close_run"]
    runs.run_close(campaign_id=campaign.id, run=1)  # the close task

    final = stats(targeted=4, sent=1, skipped=3)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign_stats(campaign) == final
    body = api.client.get(f"/admin/projects/{project.id}/push/campaigns/{campaign.id}").json()
    assert body["stats"] == final
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.status, run.stats, run.settled_at is not None) == ("cancelled", final, True)
    assert set(PushDelivery.objects.filter(status="skipped").values_list("error_message")) == {
        ("campaign cancelled",)
    }


def test_a_lost_close_task_is_done_by_the_sweeper(project, broker, api):
    for _ in range(2):
        PushTokenFactory(project=project, timezone="UTC")
    quiet = {"start": _hhmm(-timedelta(hours=1)), "end": _hhmm(timedelta(hours=1))}
    campaign = send(project, quiet_hours=quiet)
    drive(campaign, broker)
    services.campaign_cancel(project=project, campaign_id=campaign.id)
    broker.drain()  # the close task is lost

    assert sending.runs_sweep_stalled()["closed"] == 2

    campaign.refresh_from_db()
    assert campaign_stats(campaign) == stats(targeted=2, skipped=2)
    assert sending.runs_sweep_stalled()["closed"] == 0  # settled: nothing left to do


def test_rows_skipped_at_fan_out_count_as_skipped_while_sending(project, broker):
    """Issue 9, item 2: rows whose local time had passed counted as `pending`."""
    PushTokenFactory(project=project, timezone="Pacific/Kiritimati")
    PushTokenFactory(project=project, timezone="Pacific/Honolulu")
    PushTokenFactory(project=project, timezone="UTC")
    wall_clock = (timezone.now() + timedelta(hours=3)).replace(tzinfo=None)
    campaign = services.campaign_create(
        project=project,
        fields=validate_create(
            {
                "title": "Hi",
                "body": "There",
                "scheduled_at": wall_clock.isoformat() + "Z",
                "deliver_in_user_timezone": True,
                "local_time_missed": "skip",
            }
        ),
    )
    PushCampaign.objects.filter(pk=campaign.pk).update(fire_at=timezone.now())
    assert scheduling.campaign_fire_scheduled(
        campaign_id=campaign.pk, version=campaign.schedule_version
    )
    broker.drain()
    sending.run_fan_out(campaign_id=campaign.pk, run=1)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    # UTC+14 is already past the wall clock: skipped; the other two wait for theirs.
    assert campaign_stats(campaign) == stats(targeted=3, skipped=1, pending=2)


@pytest.mark.django_db(transaction=True)
def test_cancel_racing_the_end_of_a_run_never_deadlocks(project):
    """Issue 9, item 3: cancel locked push_campaigns then campaign_runs, the finisher
    the other way round: DeadlockDetected, a 500 CANCEL_FAILED, about 1 in 60."""
    errors: list[BaseException] = []
    for _ in range(60):
        campaign = CampaignFactory(project=project, status="sending", current_run=1)
        CampaignRunFactory(campaign=campaign, number=1, status="sending", fanout_done=True)
        token = PushTokenFactory(project=project)
        PushDelivery.objects.create(
            campaign=campaign, run=1, token=token, provider="apns", status="sent"
        )
        barrier = threading.Barrier(2)

        def cancel(campaign: PushCampaign = campaign, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                services.campaign_cancel(project=project, campaign_id=campaign.pk)
            except Conflict:
                pass  # the run finished first: 409 NOT_CANCELLABLE is the right answer
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        def finish(campaign: PushCampaign = campaign, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                runs.run_maybe_finish(campaign_id=campaign.pk, run=1)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=cancel), threading.Thread(target=finish)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        runs.run_close(campaign_id=campaign.pk, run=1)  # the close task, if cancelled
        campaign.refresh_from_db()
        run = CampaignRun.objects.get(campaign=campaign)
        assert (campaign.status, run.status) in {("sent", "sent"), ("cancelled", "cancelled")}
        assert run.stats == stats(targeted=1, sent=1)
        assert run.settled_at is not None


def test_stored_rules_that_no_longer_validate_fail_the_run_at_once(project, broker):
    """Issue 9, item 1: a segment saved with an op the API refuses kept its campaign
    `sending` for good (KeyError in the fan-out, re-driven every minute)."""
    tokens(project, 2)
    segment = Segment.objects.create(
        project=project,
        name="US (bad op)",
        rules={"all": [{"attr": "country", "op": "equals", "value": "US"}]},
    )
    campaign = services.campaign_create(
        project=project,
        fields=validate_create({"title": "Hi", "body": "There", "segment_id": str(segment.pk)}),
    )
    services.campaign_send(project=project, campaign_id=campaign.pk)
    drive(campaign, broker)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert "US (bad op)" in campaign.last_error
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.status, run.error) == ("failed", campaign.last_error)
    assert PushDelivery.objects.count() == 0


def test_a_run_whose_task_keeps_failing_is_redriven_a_bounded_number_of_times(
    project, broker, settings, monkeypatch
):
    """An error retrying cannot cure, of a kind nobody foresaw: the sweeper re-drives
    the run HERALD_MAX_REDRIVES times, the operator sees the error meanwhile, and then
    the run fails with it instead of being re-driven forever."""
    settings.HERALD_STALL_SECONDS = 0
    settings.HERALD_MAX_REDRIVES = 3
    tokens(project, 1)
    campaign = send(project)

    def broken_fan_out(campaign: Any, run: int) -> None:  # a fault we cannot cause
        raise RuntimeError("boom")

    monkeypatch.setattr(sending, "_fan_out", broken_fan_out)

    def run_enqueued() -> None:
        for task in broker.drain():
            assert task.name == "campaigns.fan_out_campaign"
            with pytest.raises(RuntimeError):
                sending.run_fan_out(campaign_id=campaign.pk, run=1)

    run_enqueued()
    campaign.refresh_from_db()
    assert (campaign.status, campaign.last_error) == ("sending", "Fan-out: RuntimeError: boom")
    for attempt in range(3):
        result = sending.runs_sweep_stalled()
        assert (result["redriven"], result["gave_up"]) == (1, 0), attempt
        run_enqueued()
    assert sending.runs_sweep_stalled()["gave_up"] == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert campaign.last_error == (
        "Stopped after 3 attempts without progress. Last error: Fan-out: RuntimeError: boom"
    )
    assert broker.drain() == []
    assert sending.runs_sweep_stalled() == {"redriven": 0, "gave_up": 0, "closed": 0}
