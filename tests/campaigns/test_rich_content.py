"""Rich content through the API and the engine (issue 12): what the whole content must
satisfy (silent pushes, localized button titles, renotify), what each simulator
received, and the web push size limit at save against what the simulator decrypted.

Task functions are called directly (tests/campaigns/test_sending.py's `drive`); the
simulators run in-process over TLS and keep the last payload per token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns import services
from campaigns.content import campaign_content
from campaigns.models import PushCampaign
from campaigns.validation import validate_create
from core.errors import ApplicationError
from delivery.models import PushDelivery
from delivery.payloads import (
    FCM_PLATFORMS,
    Recipient,
    build_fcm,
    build_webpush,
    encode_json,
    sent_size,
    with_delivery_id,
)
from tests.campaigns.test_sending import drive
from tests.campaigns.test_webpush_sending import subscribe
from tests.factories import AppUserFactory, CampaignFactory, PushTokenFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def base(project) -> str:
    return f"/admin/projects/{project.id}/push/campaigns"


RICH: dict[str, Any] = {
    "title": "Spring sale",
    "body": "20% off",
    "localizations": {
        "fr": {
            "title": "Soldes",
            "image_url": "https://cdn.example.com/fr.png",
            "actions": {"buy": "Acheter"},
        }
    },
    "image_url": "https://cdn.example.com/en.png",
    "icon": "https://cdn.example.com/icon.png",
    "web_badge": "https://cdn.example.com/badge.png",
    "url": "https://example.com/sale",
    "actions": [
        {
            "id": "buy",
            "title": "Buy",
            "url": "https://example.com/buy",
            "icon": "https://cdn.example.com/cart.png",
        },
        {"id": "later", "title": "Later"},
    ],
    "vibrate": [200, 100, 200],
    "require_interaction": True,
    "renotify": True,
    "tag": "spring",
    "collapse_key": "sale",
}


# --- what the whole content must satisfy ---------------------------------------------------


def refused_create(client, project, payload, field: str, message: str) -> None:
    before = PushCampaign.objects.count()
    response = client.post(base(project), {"title": "T", "body": "B", **payload})
    assert response.status_code == 400, response.content
    assert response.json() == {
        "error": {"code": "VALIDATION_ERROR", "message": message, "details": {"field": field}}
    }
    assert PushCampaign.objects.count() == before


def silent_message(field: str) -> str:
    return (
        f"A silent push shows no notification, so it cannot have {field}; "
        f"remove {field} or make the push not silent."
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"icon": "https://cdn.example.com/i.png"}, "icon"),
        ({"web_badge": "https://cdn.example.com/b.png"}, "web_badge"),
        ({"vibrate": [100]}, "vibrate"),
        ({"require_interaction": True}, "require_interaction"),
        ({"renotify": True, "tag": "t"}, "renotify"),
        ({"tag": "t"}, "tag"),
        (
            {"localizations": {"fr": {"image_url": "https://cdn.example.com/fr.png"}}},
            "localizations.fr.image_url",
        ),
        (
            {
                "actions": [{"id": "a", "title": "A"}],
                "localizations": {"de": {"actions": {"a": "Ä"}}},
            },
            "actions",  # the campaign's own buttons are named first
        ),
    ],
)
def test_a_silent_push_refuses_each_display_only_field(api, fields, field) -> None:
    refused_create(
        api.client, api.project, {"silent": True, **fields}, field, silent_message(field)
    )


def test_a_silent_push_accepts_what_is_not_display(api) -> None:
    response = api.client.post(
        base(api.project),
        {
            "title": "T",
            "body": "B",
            "silent": True,
            "collapse_key": "k",
            "vibrate": [],
            "require_interaction": False,
            "renotify": False,
            "localizations": {"fr": {"title": "Bonjour"}},
        },
    )

    assert response.status_code == 201, response.content


def test_silent_localized_buttons_are_named(api) -> None:
    campaign = CampaignFactory(project=api.project, silent=True)

    response = api.client.patch(
        f"{base(api.project)}/{campaign.id}", {"localizations": {"fr": {"actions": {"a": "Ä"}}}}
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "localizations.fr.actions"}
    campaign.refresh_from_db()
    assert campaign.localizations == {}


def test_a_localized_title_for_an_unknown_action_is_refused_naming_it(api) -> None:
    refused_create(
        api.client,
        api.project,
        {
            "actions": [{"id": "buy", "title": "Buy"}],
            "localizations": {"fr": {"actions": {"buy": "Acheter", "sell": "Vendre"}}},
        },
        "localizations.fr.actions.sell",
        "localizations.fr.actions.sell: the campaign has no action with id 'sell'; "
        "a localization translates the titles of the campaign's actions.",
    )


def test_patches_are_judged_against_the_stored_actions_and_localizations(api) -> None:
    campaign = CampaignFactory(
        project=api.project,
        actions=[{"id": "buy", "title": "Buy"}],
        localizations={"fr": {"actions": {"buy": "Acheter"}}},
    )
    url = f"{base(api.project)}/{campaign.id}"

    unknown = api.client.patch(url, {"localizations": {"de": {"actions": {"sell": "Verkaufen"}}}})
    dropped = api.client.patch(url, {"actions": [{"id": "open", "title": "Open"}]})
    both = api.client.patch(
        url,
        {
            "actions": [{"id": "open", "title": "Open"}],
            "localizations": {"fr": {"actions": {"open": "Ouvrir"}}},
        },
    )

    assert unknown.json()["error"]["details"] == {"field": "localizations.de.actions.sell"}
    assert dropped.json()["error"]["details"] == {"field": "localizations.fr.actions.buy"}
    assert both.status_code == 200, both.content
    campaign.refresh_from_db()
    assert campaign.localizations == {"fr": {"actions": {"open": "Ouvrir"}}}


RENOTIFY_MESSAGE = (
    "renotify alerts again when a notification replaces one with the same tag; "
    "set tag (or collapse_key, the tag's default) or turn renotify off."
)


def test_renotify_needs_a_tag_or_the_collapse_key_it_defaults_to(api) -> None:
    refused_create(api.client, api.project, {"renotify": True}, "renotify", RENOTIFY_MESSAGE)
    refused_create(
        api.client, api.project, {"renotify": True, "tag": ""}, "renotify", RENOTIFY_MESSAGE
    )
    for tagged in ({"tag": "t"}, {"collapse_key": "k"}):
        response = api.client.post(
            base(api.project), {"title": "T", "body": "B", "renotify": True, **tagged}
        )
        assert response.status_code == 201, response.content


def test_clearing_the_tag_of_a_renotifying_campaign_is_refused(api) -> None:
    campaign = CampaignFactory(project=api.project, renotify=True, tag="t")

    response = api.client.patch(f"{base(api.project)}/{campaign.id}", {"tag": ""})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "renotify"}
    campaign.refresh_from_db()
    assert campaign.tag == "t"


def test_a_test_push_checks_the_whole_content_as_a_campaign(api) -> None:
    response = api.client.post(
        f"{base(api.project)}/test",
        {
            "title": "T",
            "body": "B",
            "renotify": True,
            "device_token": "a" * 64,
            "provider": "apns",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "renotify"}
    assert PushDelivery.objects.count() == 0


# --- what each provider received -----------------------------------------------------------


def test_rich_content_reaches_every_simulator_in_each_users_language(
    web_project, sim, broker
) -> None:
    sim.reset(config=True)
    for simulator in sim._simulators().values():
        simulator.behaviour.update({"keep_payloads": True})
    english_browser, french_browser = subscribe(web_project, sim, 2)  # en, then fr
    french = AppUserFactory(project=web_project, attributes={"language": "fr-CA"})
    iphone = PushTokenFactory(project=web_project, app_user=french)
    android = PushTokenFactory(
        project=web_project, app_user=french, provider="fcm", platform="android", token="f" * 150
    )
    campaign = services.campaign_create(project=web_project, fields=validate_create(RICH))

    services.campaign_send(project=web_project, campaign_id=campaign.id)
    drive(campaign, broker)

    stats = sim.stats(tokens=True)
    web = stats["webpush"]["payloads"]
    assert web[english_browser.token]["notification"] == {
        "title": "Spring sale",
        "body": "20% off",
        "image": "https://cdn.example.com/en.png",
        "icon": "https://cdn.example.com/icon.png",
        "badge": "https://cdn.example.com/badge.png",
        "tag": "spring",
        "renotify": True,
        "requireInteraction": True,
        "vibrate": [200, 100, 200],
        "actions": [
            {"action": "buy", "title": "Buy", "icon": "https://cdn.example.com/cart.png"},
            {"action": "later", "title": "Later"},
        ],
    }
    french_web = web[french_browser.token]
    assert french_web["notification"]["title"] == "Soldes"
    assert french_web["notification"]["image"] == "https://cdn.example.com/fr.png"
    assert [a["title"] for a in french_web["notification"]["actions"]] == ["Acheter", "Later"]
    assert french_web["action_urls"] == {"buy": "https://example.com/buy"}
    assert french_web["url"] == "https://example.com/sale"

    fcm = stats["fcm"]["payloads"][android.token]
    assert fcm["notification"] == {
        "title": "Soldes",
        "body": "20% off",
        "image": "https://cdn.example.com/fr.png",
    }
    assert fcm["android"]["notification"] == {
        "tag": "spring",
        "image": "https://cdn.example.com/fr.png",
        "vibrate_timings": ["0.2s", "0.1s", "0.2s"],
    }
    assert fcm["data"]["actions"] == (
        '[{"id":"buy","title":"Acheter","url":"https://example.com/buy",'
        '"icon":"https://cdn.example.com/cart.png"},{"id":"later","title":"Later"}]'
    )

    apns = stats["apns"]["payloads"][iphone.token]["payload"]
    assert apns["aps"]["alert"] == {"title": "Soldes", "body": "20% off"}
    assert apns["aps"]["mutable-content"] == 1
    assert apns["image_url"] == "https://cdn.example.com/fr.png"
    assert apns["actions"] == [
        {
            "id": "buy",
            "title": "Acheter",
            "url": "https://example.com/buy",
            "icon": "https://cdn.example.com/cart.png",
        },
        {"id": "later", "title": "Later"},
    ]
    assert set(
        PushDelivery.objects.filter(campaign=campaign).values_list("provider", "status")
    ) == {("webpush", "sent"), ("fcm", "sent"), ("apns", "sent")}


def test_personalized_text_keeps_each_languages_image_and_buttons(web_project, sim, broker) -> None:
    sim.configure({"webpush": {"keep_payloads": True}})
    english, french = subscribe(web_project, sim, 2)
    fields = {
        **RICH,
        "title": 'Hi {{ first_name | default: "there" }}',
        "localizations": {
            "fr": {
                **RICH["localizations"]["fr"],
                "title": 'Salut {{ first_name | default: "toi" }}',
            }
        },
    }
    campaign = services.campaign_create(project=web_project, fields=validate_create(fields))

    services.campaign_send(project=web_project, campaign_id=campaign.id)
    drive(campaign, broker)

    web = sim.stats(tokens=True)["webpush"]["payloads"]
    assert (
        web[english.token]["notification"]["title"],
        web[french.token]["notification"]["title"],
    ) == (
        "Hi there",
        "Salut toi",
    )
    assert web[english.token]["notification"]["image"] == "https://cdn.example.com/en.png"
    assert web[french.token]["notification"]["image"] == "https://cdn.example.com/fr.png"
    assert web[french.token]["notification"]["actions"][0]["title"] == "Acheter"


# --- the web push limit at save, against what the simulator decrypts ---------------------


# A short collapse key keeps FCM's messages small (no 38-character campaign-id collapse
# key and tag on Android), so the web push JSON is the payload that reaches its limit
# first: FCM's are at most 75 bytes larger here, and their limit is 103 bytes higher.
SMALL_FCM = {"title": "T", "collapse_key": "k"}


def _sizes(campaign: PushCampaign) -> tuple[int, int]:
    """The web push JSON and the largest FCM message of a campaign, as the size check
    measures them (with the longest delivery id)."""
    content = campaign_content(campaign)
    web = sent_size("webpush", build_webpush(content, Recipient(platform="web"), now=NOW)[0])
    fcm = max(
        sent_size("fcm", build_fcm(content, Recipient(platform=platform), now=NOW))
        for platform in FCM_PLATFORMS
    )
    return web, fcm


def test_the_largest_web_push_accepted_at_save_is_decrypted_by_the_simulator(
    web_project, sim, broker
) -> None:
    sim.configure({"webpush": {"keep_payloads": True}})
    (browser,) = subscribe(web_project, sim, 1)
    # The body that brings the web push JSON to exactly 3,993 bytes (one byte per ASCII
    # character; every campaign id has the same length).
    empty_web, _ = _sizes(PushCampaign(project=web_project, body="", **SMALL_FCM))
    body = "x" * (3993 - empty_web)
    assert _sizes(PushCampaign(project=web_project, body=body, **SMALL_FCM)) == (3993, 4068)

    campaign = services.campaign_create(
        project=web_project, fields=validate_create({**SMALL_FCM, "body": body})
    )
    services.campaign_send(project=web_project, campaign_id=campaign.id)
    drive(campaign, broker)

    delivery = PushDelivery.objects.get(campaign=campaign)
    assert delivery.status == "sent"
    webpush = sim.stats(tokens=True)["webpush"]
    built = build_webpush(campaign_content(campaign), Recipient(platform="web"), now=NOW)[0]
    sent = with_delivery_id("webpush", built, str(delivery.pk))
    assert webpush["payloads"][browser.token] == sent
    # What the simulator decrypted is that JSON, byte for byte: 3,993 bytes with the
    # longest (19-digit) delivery id the check measures with, this row's id aside.
    assert webpush["decrypted_bytes_max"] == len(encode_json(sent))
    assert len(encode_json(sent)) == 3993 - 19 + len(str(delivery.pk))

    refusal = services_refusal(web_project, {**SMALL_FCM, "body": body + "x"})
    assert refusal == {
        "code": "PAYLOAD_TOO_LARGE",
        "details": {
            "limit": 3993,
            "payloads": [{"provider": "webpush", "language": None, "size": 3994, "limit": 3993}],
        },
    }


def services_refusal(project, fields: dict[str, Any]) -> dict[str, Any]:
    """The error a create through the service answers, and that nothing was stored."""
    before = PushCampaign.objects.count()
    with pytest.raises(ApplicationError) as refused:
        services.campaign_create(project=project, fields=validate_create(fields))
    assert PushCampaign.objects.count() == before
    return {"code": refused.value.code, "details": refused.value.details}


def test_a_campaign_that_reaches_no_browser_keeps_the_4096_byte_limit(api) -> None:
    # 4,000 bytes of web push JSON; FCM's messages 4,075, under their 4,096.
    fields = {**SMALL_FCM, "body": "x" * 3847}
    assert _sizes(PushCampaign(project=api.project, **fields)) == (4000, 4075)

    web = api.client.post(base(api.project), fields)
    phones = api.client.post(base(api.project), {**fields, "platforms": ["ios", "android"]})

    assert web.status_code == 400
    assert web.json()["error"]["details"]["payloads"] == [
        {"provider": "webpush", "language": None, "size": 4000, "limit": 3993}
    ]
    assert phones.status_code == 201, phones.content
    # ... and adding web to its platforms is judged again.
    added = api.client.patch(
        f"{base(api.project)}/{phones.json()['id']}", {"platforms": ["ios", "android", "web"]}
    )
    assert added.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert PushCampaign.objects.get().platforms == ["ios", "android"]
