"""Web push through the engine: a campaign reaches browser subscriptions beside APNs and
FCM devices, each payload encrypted for its browser, decrypted by the simulator and
counted once; a gone subscription is retired. Task functions are called directly
(tests/campaigns/test_sending.py's `drive`); the simulators run in-process over TLS.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns import services
from campaigns.validation import validate_create
from delivery.models import PushDelivery, PushToken
from segments.services import clean_token_registration, token_register
from tests.campaigns.test_sending import drive
from tests.factories import AppUserFactory, PushTokenFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]


def subscribe(project, sim, count: int) -> list[PushToken]:
    """Browsers subscribing: the simulator mints subscriptions, the app registers them."""
    tokens = []
    for n, subscription in enumerate(sim.mint_webpush_subscriptions(count)):
        user = AppUserFactory(project=project, attributes={"language": "fr" if n else "en"})
        body = {
            "provider": "webpush",
            "subscription": {"endpoint": subscription["endpoint"], "keys": subscription["keys"]},
            "external_id": user.external_id,
        }
        token, _ = token_register(project=project, registration=clean_token_registration(body))
        tokens.append(token)
    return tokens


def test_a_campaign_reaches_browsers_beside_phones(web_project, sim, broker) -> None:
    sim.configure({"webpush": {"keep_payloads": True}})
    browsers = subscribe(web_project, sim, 3)
    phone = PushTokenFactory(project=web_project, app_user=AppUserFactory(project=web_project))
    campaign = services.campaign_create(
        project=web_project,
        fields=validate_create(
            {
                "title": "Spring sale",
                "body": "20% off",
                "localizations": {"fr": {"title": "Soldes"}},
                "url": "https://example.com/sale",
                "actions": [{"id": "buy", "title": "Buy", "url": "https://example.com/buy"}],
                "data": {"screen": "sale", "n": 3},
                "collapse_key": "sale",
            }
        ),
    )

    services.campaign_send(project=web_project, campaign_id=campaign.id)
    drive(campaign, broker)

    stats = sim.stats(tokens=True)
    web = stats["webpush"]
    assert (web["accepted"], web["duplicates"]) == (3, 0)
    assert web["tokens"] == {b.token: 1 for b in browsers}
    assert stats["apns"]["tokens"] == {phone.token: 1}
    received: dict[str, Any] = web["payloads"]
    first = received[browsers[0].token]
    delivery = PushDelivery.objects.get(token=browsers[0])
    assert first == {
        "notification": {
            "title": "Spring sale",
            "body": "20% off",
            "tag": "sale",
            "actions": [{"action": "buy", "title": "Buy"}],
        },
        "action_urls": {"buy": "https://example.com/buy"},
        "url": "https://example.com/sale",
        "data": {"screen": "sale", "n": 3},
        "herald_campaign_id": str(campaign.id),
        "herald_delivery_id": str(delivery.pk),
    }
    assert received[browsers[1].token]["notification"]["title"] == "Soldes"  # French user
    assert set(
        PushDelivery.objects.filter(campaign=campaign).values_list("provider", "status")
    ) == {("webpush", "sent"), ("apns", "sent")}


def test_a_gone_subscription_is_retired(web_project, sim, broker) -> None:
    gone, alive = subscribe(web_project, sim, 2)
    sim.configure({"webpush": {"invalid_tokens": [gone.token]}})
    campaign = services.campaign_create(
        project=web_project, fields=validate_create({"title": "Hi", "body": "There"})
    )

    services.campaign_send(project=web_project, campaign_id=campaign.id)
    drive(campaign, broker)

    gone.refresh_from_db()
    alive.refresh_from_db()
    assert (gone.active, alive.active) == (False, True)
    assert PushDelivery.objects.get(token=gone).status == "invalid_token"
    assert PushDelivery.objects.get(token=alive).status == "sent"


def test_a_project_without_vapid_keys_fails_the_run_with_what_to_do(project, sim, broker) -> None:
    subscribe(project, sim, 1)
    campaign = services.campaign_create(
        project=project, fields=validate_create({"title": "Hi", "body": "There"})
    )

    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)

    campaign.refresh_from_db()
    assert campaign.status == "failed"
    assert "VAPID key pair" in campaign.last_error
