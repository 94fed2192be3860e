"""A broadcast through real workers to the simulators over HTTP/2 + TLS.

Checks the issue's promises end to end: exact final stats, dead tokens retired,
transient failures retried, and — with a worker SIGKILLed mid-campaign and a
replacement started — recovery within seconds: no token sent twice and only what was
in flight unknown (at-most-once), or every token sent (at-least-once).
"""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from campaigns import services
from campaigns.analytics import campaign_analytics
from campaigns.models import CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.tasks import sweep_campaigns_task
from campaigns.validation import validate_create
from core.models import ApiKey, Project
from core.services import project_generate_vapid
from delivery.models import DeliveryClaim, PushDelivery, PushToken
from delivery.providers import runtime
from delivery.simulators.credentials import ensure_demo_credentials
from segments.models import AppUser
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.factories import api_client, create_api_key

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_RETRIES = {"HERALD_RETRY_BASE_SECONDS": "0.2", "HERALD_RETRY_MAX_SECONDS": "2"}


def _project(simulators: Simulators) -> Project:
    info = simulators.info
    creds = ensure_demo_credentials(Path(info["cert_dir"]), fcm_base_url=info["fcm_endpoint"])
    project = Project.objects.create(
        name="e2e",
        apns_team_id=creds.team_id,
        apns_key_id=creds.key_id,
        apns_auth_key=creds.auth_key_pem,
        apns_topic=creds.topic,
        apns_endpoint=info["apns_endpoint"],
        apns_ca_file=str(creds.ca_file),
        fcm_service_account=creds.service_account_info,
        fcm_endpoint=info["fcm_endpoint"],
        fcm_ca_file=str(creds.ca_file),
        webpush_ca_file=str(creds.ca_file),
    )
    project, _ = project_generate_vapid(project=project, subject="mailto:e2e@example.com")
    return project


def _subscriptions(project: Project, simulators: Simulators, count: int) -> list[str]:
    """Browsers subscribed at the web push simulator; the endpoints (the tokens)."""
    minted = simulators.subscribe(count)
    users = AppUser.objects.bulk_create(
        [AppUser(project=project, external_id=f"web-{secrets.token_hex(6)}") for _ in minted]
    )
    PushToken.objects.bulk_create(
        [
            PushToken(
                project=project,
                app_user=u,
                token=m["endpoint"],
                keys=m["keys"],
                provider="webpush",
                platform="web",
            )
            for u, m in zip(users, minted, strict=True)
        ]
    )
    return [m["endpoint"] for m in minted]


def _tokens(project: Project, provider: str, count: int, *, prefix: str = "") -> list[str]:
    users = AppUser.objects.bulk_create(
        [
            AppUser(project=project, external_id=f"{provider}-{prefix}{i}-{secrets.token_hex(4)}")
            for i in range(count)
        ]
    )
    if provider == "apns":
        values = [secrets.token_hex(32) for _ in range(count)]
        platform = "ios"
    else:
        values = [f"{prefix}f{secrets.token_urlsafe(110)}" for _ in range(count)]
        platform = "android"
    PushToken.objects.bulk_create(
        [
            PushToken(project=project, app_user=u, token=t, provider=provider, platform=platform)
            for u, t in zip(users, values, strict=True)
        ]
    )
    return values


def _send(project: Project, **extra: Any) -> PushCampaign:
    fields = validate_create({"title": "Hello", "body": "World", "name": "e2e", **extra})
    campaign = services.campaign_create(project=project, fields=fields)
    return services.campaign_send(project=project, campaign_id=campaign.id)


GOAL = {
    "name": "Purchase",
    "event": "purchase",
    "filter": {"attr": "value", "op": "gt", "value": 0},
}


def _status(campaign: PushCampaign) -> str:
    return PushCampaign.objects.values_list("status", flat=True).get(pk=campaign.pk)


def _accepted(simulators: Simulators) -> dict[str, Any]:
    stats = simulators.stats(tokens=True)
    return {
        "apns": stats["apns"],
        "fcm": stats["fcm"],
        "webpush": stats["webpush"],
        "tokens": Counter(
            {**stats["apns"]["tokens"], **stats["fcm"]["tokens"], **stats["webpush"]["tokens"]}
        ),
    }


def test_broadcast_with_dead_bad_and_flaky_tokens(simulators, start_worker, settings):
    simulators.reset()
    drain_broker()
    project = _project(simulators)
    apns_ok = _tokens(project, "apns", 1200)
    fcm_ok = _tokens(project, "fcm", 1200)
    apns_dead = _tokens(project, "apns", 150)
    fcm_dead = _tokens(project, "fcm", 150)
    web_ok = _subscriptions(project, simulators, 300)
    web_dead = _subscriptions(project, simulators, 40)
    # Malformed APNs tokens (not hex): APNs answers 400 BadDeviceToken.
    bad = AppUser.objects.create(project=project, external_id="bad")
    bad_tokens = [f"not-a-hex-token-{i}" for i in range(50)]
    PushToken.objects.bulk_create(
        [
            PushToken(project=project, app_user=bad, token=t, provider="apns", platform="ios")
            for t in bad_tokens
        ]
    )
    simulators.configure(
        {
            "apns": {
                "invalid_tokens": apns_dead,
                "transient_failures": dict.fromkeys(apns_ok[:60], 2),
                "transient_status": 429,
                "retry_after": 1,
            },
            "fcm": {
                "invalid_tokens": fcm_dead,
                "transient_failures": dict.fromkeys(fcm_ok[:60], 2),
                "transient_status": 503,
            },
            "webpush": {
                "invalid_tokens": web_dead,
                "transient_failures": dict.fromkeys(web_ok[:30], 2),
                "transient_status": 429,
                "retry_after": 1,
            },
        }
    )
    start_worker(env=FAST_RETRIES)
    campaign = _send(project, goals=[GOAL], actions=[{"id": "buy", "title": "Buy"}])

    assert wait_for(lambda: _status(campaign) == CampaignStatus.SENT, timeout=120)

    campaign.refresh_from_db()
    total = 1200 * 2 + 150 * 2 + 50 + 300 + 40
    assert campaign_stats(campaign) == {
        "targeted": total,
        "sent": 2700,
        "failed": 0,
        "invalid_tokens": 390,
        "skipped": 0,
        "unknown": 0,
        "pending": 0,
    }
    accepted = _accepted(simulators)
    for provider in ("apns", "fcm", "webpush"):
        assert accepted[provider]["duplicates"] == 0
    assert set(accepted["tokens"]) == set(apns_ok) | set(fcm_ok) | set(web_ok)
    assert set(accepted["tokens"].values()) == {1}
    # The web push simulator decrypted every payload it accepted.
    assert accepted["webpush"]["accepted"] == 300
    assert accepted["webpush"]["decrypted_bytes_max"] > 0
    # Transient failures were answered and retried: 2 refusals each.
    assert accepted["apns"]["by_status"].get("429") == 120
    assert accepted["fcm"]["by_status"].get("503") == 120
    assert accepted["webpush"]["by_status"].get("429") == 60
    for flaky_tokens in (apns_ok[:60], web_ok[:30]):
        flaky = PushDelivery.objects.filter(campaign=campaign, token__token__in=flaky_tokens)
        assert set(flaky.values_list("status", "attempts")) == {("sent", 3)}
    # Dead and malformed tokens are retired with the provider's reason.
    dead = PushToken.objects.filter(token__in=[*apns_dead, *fcm_dead, *bad_tokens, *web_dead])
    assert dead.filter(active=True).count() == 0
    assert set(dead.values_list("invalid_reason", flat=True)) == {
        "Unregistered",
        "UNREGISTERED",
        "BadDeviceToken",
        "Gone",
    }
    sent_rows = PushDelivery.objects.filter(campaign=campaign, status="sent")
    assert sent_rows.count() == sum(accepted["tokens"].values())
    assert sent_rows.exclude(provider_msg_id="").count() == 2700
    # Settling the run counted analytics' sent breakdown from the same rows.
    analytics = campaign_analytics(campaign)
    assert analytics["totals"]["sent"] == 2700
    assert {p: n["sent"] for p, n in analytics["by_provider"].items()} == {
        "apns": 1200,
        "fcm": 1200,
        "webpush": 300,
    }
    assert sum(point["sent"] for point in analytics["series"]["points"]) == 2700
    _report_engagement_through_the_api(project, campaign, sent_rows)


def _report_engagement_through_the_api(
    project: Project, campaign: PushCampaign, sent_rows: Any
) -> None:
    """The app's half of the loop: each push carried its delivery id; the app reports
    opens, clicks and purchases with it through the events API (a client key, batches
    of 1,000, one batch sent twice), and the analytics count each once."""
    sent = list(sent_rows.order_by("id").values_list("id", flat=True))
    events: list[dict[str, Any]] = []
    for n, delivery_id in enumerate(sent[:900]):  # 900 opens
        events.append({"event_id": f"o{n}", "name": "push_opened", "delivery_id": delivery_id})
    for n, delivery_id in enumerate(sent[:300]):  # 300 of them click
        events.append(
            {
                "event_id": f"c{n}",
                "name": "push_clicked",
                "delivery_id": delivery_id,
                "action_id": "buy",
            }
        )
    for n, delivery_id in enumerate(sent[200:320]):  # 120 buy; 20 of them twice
        for again in range(2 if n < 20 else 1):
            events.append(
                {
                    "event_id": f"p{n}-{again}",
                    "name": "purchase",
                    "delivery_id": delivery_id,
                    "properties": {"value": 9.99},
                }
            )
    _, key = create_api_key(project, scope=ApiKey.Scope.CLIENT)
    client = api_client(key)
    url = f"/v1/projects/{project.pk}/events"
    batches = [events[i : i + 1000] for i in range(0, len(events), 1000)]
    for batch in [*batches, batches[0]]:  # the first batch is retried
        answer = client.post(url, {"events": batch})
        assert answer.status_code == 200, answer.content
        assert answer.json()["rejected"] == []
    analytics = campaign_analytics(campaign)
    assert analytics["totals"]["opened"] == 900
    assert analytics["totals"]["clicked"] == 300
    assert analytics["totals"]["converted"] == 120
    assert analytics["clicks_by_action"] == {"buy": 300}
    assert analytics["rates"]["open_rate"] == pytest.approx(900 / 2700, abs=1e-6)
    assert [goal["converted"] for goal in analytics["goals"]] == [120]
    opened_by_provider = {p: n["opened"] for p, n in analytics["by_provider"].items()}
    assert sum(opened_by_provider.values()) == 900


def test_worker_stopped_mid_campaign_then_replaced_sends_each_token_exactly_once(
    simulators, start_worker, settings
):
    """`kill` (SIGTERM) mid-campaign: the worker finishes what it holds, a new one
    takes the rest, and every token is accepted exactly once."""
    simulators.reset()
    drain_broker()
    settings.HERALD_STALL_SECONDS = 2
    project = _project(simulators)
    tokens = _tokens(project, "apns", 1500) + _tokens(project, "fcm", 1500)
    simulators.configure({"all": {"latency_ms": 40}})
    slow = {
        "HERALD_APNS_CONCURRENCY": "10",
        "HERALD_FCM_CONCURRENCY": "10",
        "HERALD_SEND_CHUNK_SIZE": "50",
        "HERALD_FANOUT_CHUNK_SIZE": "250",
    }
    first = start_worker(env=slow)
    campaign = _send(project)

    def accepted_total() -> int:
        stats = simulators.stats()
        return int(stats["apns"]["accepted"] + stats["fcm"]["accepted"])

    assert wait_for(lambda: accepted_total() >= 600, timeout=60)
    first.shutdown()  # SIGTERM to the worker: Celery's warm shutdown
    assert accepted_total() < len(tokens), "the campaign finished before the stop"
    simulators.configure({"all": {"latency_ms": 0}})
    start_worker(env={**slow, "HERALD_STALL_SECONDS": "2"})
    assert wait_for(
        lambda: _status(campaign) == CampaignStatus.SENT,
        timeout=120,
        every=1.0,
        tick=sweep_campaigns_task,
    )
    accepted = _accepted(simulators)
    assert set(accepted["tokens"]) == set(tokens)
    assert set(accepted["tokens"].values()) == {1}
    campaign.refresh_from_db()
    assert (
        campaign_stats(campaign)["sent"] == len(tokens) and campaign_stats(campaign)["failed"] == 0
    )


# A dead worker's claims expire within seconds here (renewed every 0.5 s, lease 3 s).
CRASH_KNOBS = {
    "HERALD_APNS_CONCURRENCY": "10",
    "HERALD_FCM_CONCURRENCY": "10",
    "HERALD_SEND_CHUNK_SIZE": "400",
    "HERALD_FANOUT_CHUNK_SIZE": "500",
    "HERALD_RESULT_FLUSH_ROWS": "20",
    "HERALD_CLAIM_RENEW_SECONDS": "0.5",
    "HERALD_CLAIM_LEASE_SECONDS": "3",
    "HERALD_STALL_SECONDS": "3",
}
POOL = 2


def unknown_bound() -> int:
    """What a SIGKILL may leave unknown per the engine's write-ahead: per pool
    process and provider, the requests in flight plus what was admitted ahead of
    them (slices waiting on the sender, one slice and one concurrency of lookahead),
    plus one unflushed window of results."""
    concurrency = int(CRASH_KNOBS["HERALD_APNS_CONCURRENCY"])
    per_provider = concurrency + 3 * runtime.slice_size_for(concurrency) + concurrency
    return POOL * (2 * per_provider + int(CRASH_KNOBS["HERALD_RESULT_FLUSH_ROWS"]))


@pytest.mark.parametrize("guarantee", ["at_most_once", "at_least_once"])
def test_worker_killed_mid_campaign_recovers_in_seconds(
    simulators, start_worker, settings, guarantee
):
    """SIGKILL mid-send, a replacement worker at once: the dead worker's claims
    expire after the short lease, the sweeper re-drives the run, and the campaign
    ends `sent`. At-most-once: no token twice, and only what was in flight unknown;
    at-least-once: every token sent, repeats with one collapse id."""
    simulators.reset()
    drain_broker()
    settings.HERALD_STALL_SECONDS = 3
    settings.HERALD_CLAIM_LEASE_SECONDS = 3
    project = _project(simulators)
    project.delivery_guarantee = guarantee
    project.save(update_fields=["delivery_guarantee"])
    tokens = _tokens(project, "apns", 1500) + _tokens(project, "fcm", 1500)
    simulators.configure({"all": {"latency_ms": 40}})
    first = start_worker(env=CRASH_KNOBS, concurrency=POOL)
    campaign = _send(project)

    def accepted_total() -> int:
        stats = simulators.stats()
        return int(stats["apns"]["accepted"] + stats["fcm"]["accepted"])

    assert wait_for(lambda: accepted_total() >= 600, timeout=60)
    first.kill()
    assert accepted_total() < len(tokens), "the campaign finished before the kill; slow it down"
    claimed = PushDelivery.objects.filter(campaign=campaign, status="queued", claim__isnull=False)
    left_claimed = claimed.count()

    simulators.configure({"all": {"latency_ms": 0}})
    start_worker(env=CRASH_KNOBS, concurrency=POOL)
    assert wait_for(
        lambda: _status(campaign) == CampaignStatus.SENT,
        timeout=120,
        every=0.5,
        tick=sweep_campaigns_task,  # the periodic sweeper, as beat would run it
    )

    accepted = _accepted(simulators)
    rows = PushDelivery.objects.filter(campaign=campaign)
    assert rows.count() == len(tokens)
    assert DeliveryClaim.objects.count() == 0
    sent = set(rows.filter(status="sent").values_list("token__token", flat=True))
    unknown = set(rows.filter(status="unknown").values_list("token__token", flat=True))
    assert set(rows.values_list("status", flat=True)) <= {"sent", "unknown"}
    assert left_claimed > 0  # the kill did leave claims behind for the sweeper
    campaign.refresh_from_db()
    assert campaign_stats(campaign)["pending"] == 0 and campaign_stats(campaign)["failed"] == 0
    assert (campaign_stats(campaign)["sent"], campaign_stats(campaign)["unknown"]) == (
        len(sent),
        len(unknown),
    )
    if guarantee == "at_most_once":
        assert accepted["apns"]["duplicates"] == 0 and accepted["fcm"]["duplicates"] == 0
        assert sent | unknown == set(tokens)
        # What the provider accepted is every sent row plus some of the unknown ones.
        assert sent <= set(accepted["tokens"]) <= sent | unknown
        assert len(unknown) <= unknown_bound()
    else:
        assert unknown == set() and sent == set(tokens)
        assert set(accepted["tokens"]) == set(tokens)  # not one token left unsent
        repeats = sum(n - 1 for n in accepted["tokens"].values())
        assert repeats <= unknown_bound()
        # Every copy carried the campaign's one collapse id (APNs header, FCM
        # android.collapse_key and notification tag): the device shows it once.
        stats = simulators.stats(tokens=True)
        for provider in ("apns", "fcm"):
            assert stats[provider]["collapse_ids"] == {
                f"c-{campaign.pk}": stats[provider]["accepted"]
            }
