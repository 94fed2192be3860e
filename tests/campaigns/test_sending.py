"""The campaign side of delivery, task functions called directly (no worker).

Pushes really go out over HTTP/2 + TLS to the in-process simulators; the broker is
the real one (messages read back with the `broker` fixture).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import sending, services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.validation import validate_create
from delivery.models import DeliveryClaim, PushDelivery, PushToken
from delivery.services import UNKNOWN_OUTCOME
from tests.factories import PushTokenFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]


def send(project, **fields) -> PushCampaign:
    payload = {"title": "Hi", "body": "There", **fields}
    campaign = services.campaign_create(project=project, fields=validate_create(payload))
    return services.campaign_send(project=project, campaign_id=campaign.id)


def tokens(project, count, provider="apns"):
    if provider == "apns":
        return [PushTokenFactory(project=project) for _ in range(count)]
    return [
        PushTokenFactory(project=project, provider="fcm", platform="android", token=f"f{i:0150d}")
        for i in range(count)
    ]


def drive(campaign, broker) -> None:
    """Run what the broker holds for this campaign until nothing is left (a worker)."""
    for _ in range(50):
        tasks = broker.drain()
        if not tasks:
            return
        for task in tasks:
            if task.name == "campaigns.fan_out_campaign":
                sending.run_fan_out(campaign_id=campaign.id, run=task.args[1])
            elif task.name == "campaigns.send_campaign_batch":
                _, run, first, last = task.args
                sending.run_batch(
                    campaign_id=campaign.id, run=run, first_token_id=first, last_token_id=last
                )
    raise AssertionError("the campaign kept enqueueing work")


def test_missing_credentials_fail_the_run_fast(api, broker):
    tokens(api.project, 3)  # api.project has no credentials at all
    campaign = send(api.project)
    drive(campaign, broker)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert campaign.last_error == (
        "APNs credentials are not configured for this project (missing topic; "
        "team id + key id + .p8 key, or a certificate)."
    )
    assert CampaignRun.objects.get(campaign=campaign).status == "failed"
    assert PushDelivery.objects.count() == 0


def test_broadcast_sends_each_token_once_and_repeats_add_nothing(project, broker, sim, settings):
    settings.HERALD_FANOUT_CHUNK_SIZE = 4
    everyone = tokens(project, 5) + tokens(project, 5, "fcm")
    campaign = send(project)
    drive(campaign, broker)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign_stats(campaign) == {
        "targeted": 10,
        "sent": 10,
        "failed": 0,
        "invalid_tokens": 0,
        "skipped": 0,
        "unknown": 0,
        "pending": 0,
    }
    # A redelivered fan-out and batch change nothing and send nothing.
    sending.run_fan_out(campaign_id=campaign.id, run=1)
    first, last = everyone[0].pk, everyone[-1].pk
    sending.run_batch(campaign_id=campaign.id, run=1, first_token_id=first, last_token_id=last)
    assert PushDelivery.objects.filter(campaign=campaign).count() == 10
    stats = sim.stats(tokens=True)
    assert stats["apns"]["accepted"] + stats["fcm"]["accepted"] == 10
    assert stats["apns"]["duplicates"] == stats["fcm"]["duplicates"] == 0


def test_transient_failures_are_retried_then_given_up(project, broker, sim, settings):
    settings.HERALD_RETRY_BASE_SECONDS = 0.05
    settings.HERALD_MAX_ATTEMPTS = 3
    flaky, hopeless, fine = tokens(project, 3)
    sim.configure(
        {
            "apns": {
                "transient_failures": {flaky.token: 1, hopeless.token: 5},
                "transient_status": 503,
            }
        }
    )
    campaign = send(project)
    drive(campaign, broker)
    rows = {d.token_id: d for d in PushDelivery.objects.filter(campaign=campaign)}
    assert (rows[flaky.pk].status, rows[flaky.pk].attempts) == ("sent", 2)
    assert (rows[fine.pk].status, rows[fine.pk].attempts) == ("sent", 1)
    assert (rows[hopeless.pk].status, rows[hopeless.pk].attempts) == ("failed", 3)
    assert rows[hopeless.pk].error_message.startswith("gave up after 3 attempts: ")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert (campaign_stats(campaign)["sent"], campaign_stats(campaign)["failed"]) == (2, 1)


def test_dead_tokens_are_retired(project, broker):
    from tests.campaigns.conftest import DEAD_APNS

    PushTokenFactory(project=project, token=DEAD_APNS)
    campaign = send(project)
    drive(campaign, broker)
    token = PushToken.objects.get(token=DEAD_APNS)
    assert (token.active, token.invalid_reason) == (False, "Unregistered")
    assert token.invalidated_at is not None
    assert PushDelivery.objects.get(campaign=campaign).status == "invalid_token"


def test_cancel_mid_run_skips_what_was_not_sent(project, broker, sim):
    tokens(project, 4)
    campaign = send(project)
    for task in broker.drain():
        sending.run_fan_out(campaign_id=campaign.id, run=task.args[1])
    services.campaign_cancel(project=project, campaign_id=campaign.id)
    drive(campaign, broker)
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.status == "cancelled"
    assert set(PushDelivery.objects.values_list("status", "error_message")) == {
        ("skipped", "campaign no longer sending")
    }
    assert sim.stats()["apns"]["requests_total"] == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign_stats(campaign)["skipped"] == 4 and campaign_stats(campaign)["pending"] == 0


def redrive_and_finish(campaign, broker) -> None:
    """One sweep re-drives the run with one batch task; running it ends the run."""
    assert sending.runs_sweep_stalled()["redriven"] == 1
    [batch] = broker.drain()
    assert batch.name == "campaigns.send_campaign_batch"
    _, run, first, last = batch.args
    sending.run_batch(campaign_id=campaign.id, run=run, first_token_id=first, last_token_id=last)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def final_stats(*, targeted: int, sent: int, unknown: int) -> dict[str, int]:
    return {
        "targeted": targeted,
        "sent": sent,
        "failed": 0,
        "invalid_tokens": 0,
        "skipped": 0,
        "unknown": unknown,
        "pending": 0,
    }


def test_sweeper_closes_orphaned_claims_as_unknown_and_redrives_the_rest(project, broker, settings):
    """A row claimed with no lease row (claimed by a release before claims had
    one) and older than the lease: its outcome is unknown, and it is counted so."""
    settings.HERALD_STALL_SECONDS = 0
    settings.HERALD_CLAIM_LEASE_SECONDS = 60
    tokens(project, 3)
    campaign = send(project)
    for task in broker.drain():
        sending.run_fan_out(campaign_id=campaign.id, run=task.args[1])
    broker.drain()  # the batch task is lost
    lost = PushDelivery.objects.filter(campaign=campaign).order_by("id")[0]
    PushDelivery.objects.filter(pk=lost.pk).update(
        claim="00000000-0000-0000-0000-000000000001",
        claimed_at=timezone.now() - timedelta(minutes=2),
        attempts=1,
    )
    CampaignRun.objects.filter(campaign=campaign).update(
        last_progress_at=timezone.now() - timedelta(minutes=5)
    )
    redrive_and_finish(campaign, broker)
    lost.refresh_from_db()
    assert (lost.status, lost.error_message) == ("unknown", UNKNOWN_OUTCOME)
    assert campaign_stats(campaign) == final_stats(targeted=3, sent=2, unknown=1)


def test_a_dead_workers_expired_claim_redrives_its_run_at_once_and_counts_unknown(
    api, project, broker, settings
):
    """No waiting for HERALD_STALL_SECONDS: the run of an expired claim is re-driven
    by the next sweep, and what was in flight is counted (and listed) as unknown."""
    settings.HERALD_STALL_SECONDS = 3600
    settings.HERALD_CLAIM_LEASE_SECONDS = 30
    tokens(project, 4)
    campaign = send(project)
    for task in broker.drain():
        sending.run_fan_out(campaign_id=campaign.id, run=task.args[1])
    broker.drain()  # the worker holding the batch task died
    rows = list(PushDelivery.objects.filter(campaign=campaign).order_by("id"))
    claim = uuid.uuid4()
    long_ago = timezone.now() - timedelta(minutes=1)
    PushDelivery.objects.filter(campaign=campaign).update(
        claim=claim, claimed_at=long_ago, attempts=1
    )
    DeliveryClaim.objects.create(
        id=claim,
        campaign=campaign,
        run=1,
        guarantee="at_most_once",
        started={"apns": rows[0].pk},
        claimed_at=long_ago,
        renewed_at=long_ago,
    )

    redrive_and_finish(campaign, broker)

    assert campaign_stats(campaign) == final_stats(targeted=4, sent=3, unknown=1)
    assert CampaignRun.objects.get(campaign=campaign).stats == campaign_stats(campaign)
    listed = api.client.get(
        f"/admin/projects/{project.id}/push/campaigns/{campaign.id}/deliveries",
        {"status": "unknown"},
    )
    assert listed.status_code == 200
    assert [(d["token_id"], d["status"], d["error_message"]) for d in listed.json()["results"]] == [
        (rows[0].token_id, "unknown", UNKNOWN_OUTCOME)
    ]


def test_a_batch_applies_per_user_policy_to_its_slice(project, broker, sim):
    """Quiet hours make the engine look at rows before claiming them (the slice of
    the batch that is due); skipped rows are never sent and the run still ends."""
    now = timezone.now()
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "action": "skip",
    }
    tokens(project, 3)
    campaign = send(project, quiet_hours=window)
    drive(campaign, broker)
    assert set(PushDelivery.objects.values_list("status", "error_message")) == {
        ("skipped", "quiet_hours")
    }
    assert sim.stats()["apns"]["requests_total"] == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign_stats(campaign)["skipped"] == 3


def test_results_are_written_only_to_rows_that_still_hold_the_claim(project):
    """The engine's last guard: a row another task claimed, or closed, meanwhile is
    left as that task wrote it."""
    from delivery.services import RESULT_FIELDS, _bulk_update, _load

    mine, theirs = uuid.uuid4(), uuid.uuid4()
    campaign = send(project)
    token_rows = tokens(project, 3)
    created = [
        PushDelivery.objects.create(
            campaign=campaign, run=1, token=t, provider="apns", claim=claim, status=status
        )
        for t, claim, status in zip(
            token_rows, [mine, theirs, mine], ["queued", "queued", "failed"], strict=True
        )
    ]
    rows = _load(PushDelivery.objects.filter(pk__in=[d.pk for d in created]).order_by("id"))
    for row in rows:
        row.status, row.error_message = "sent", "written"
    _bulk_update(rows, RESULT_FIELDS, claim=mine)
    after = list(PushDelivery.objects.order_by("id").values_list("status", "error_message"))
    assert after == [("sent", "written"), ("queued", ""), ("failed", "")]
