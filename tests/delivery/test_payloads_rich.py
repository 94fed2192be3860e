"""Rich content in the payload builders (issue 12): icon, web badge, tag, renotify,
require_interaction, vibrate, button icons, localized image and button titles.

Pure functions, so no database. Exact payloads per provider; docs/api.md ("Web push
payloads") and docs/decisions.md ("Rich notification content") say why each goes where.
"""

from datetime import UTC, datetime

from delivery.payloads import (
    Action,
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    build_webpush,
    payload_size_report,
    select_display,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

RICH = PushContent(
    title="Sale",
    body="50% off",
    localizations={
        "fr": {
            "title": "Soldes",
            "image_url": "https://cdn.example.com/fr.png",
            "actions": {"buy": "Acheter"},
        },
        "fr-CA": {"actions": {"later": "Plus tard"}},
        "de": {"body": "50 % Rabatt"},
    },
    image_url="https://cdn.example.com/en.png",
    icon="https://cdn.example.com/icon.png",
    web_badge="https://cdn.example.com/badge.png",
    url="https://example.com/sale",
    actions=(
        Action("buy", "Buy", "https://example.com/buy", "https://cdn.example.com/cart.png"),
        Action("later", "Later"),
    ),
    vibrate=(200, 100, 1500),
    require_interaction=True,
    renotify=True,
    tag="sale-2026",
    collapse_key="sale",
    collapse_id_default="c-1",
    campaign_id="1",
)


# --- localization of the image and the button titles ------------------------------------


def test_display_falls_back_field_by_field_exact_tag_then_base_then_default() -> None:
    assert select_display(RICH, "fr-CA").image_url == "https://cdn.example.com/fr.png"  # base
    assert [a.title for a in select_display(RICH, "fr-CA").actions] == ["Acheter", "Plus tard"]
    assert [a.title for a in select_display(RICH, "fr").actions] == ["Acheter", "Later"]
    assert select_display(RICH, "de").image_url == "https://cdn.example.com/en.png"
    assert [a.title for a in select_display(RICH, "de").actions] == ["Buy", "Later"]
    assert [a.title for a in select_display(RICH, "").actions] == ["Buy", "Later"]
    # Ids, urls and icons stay the campaign's.
    assert select_display(RICH, "fr").actions[0] == Action(
        "buy", "Acheter", "https://example.com/buy", "https://cdn.example.com/cart.png"
    )


def test_a_localized_title_for_an_action_the_campaign_lacks_is_ignored() -> None:
    content = PushContent(
        title="T",
        body="B",
        actions=(Action("a", "A"),),
        localizations={"fr": {"actions": {"gone": "Parti"}}},
    )

    assert select_display(content, "fr").actions == (Action("a", "A"),)


def test_localized_display_is_known_from_the_content() -> None:
    assert RICH.localized_display
    assert not PushContent(
        title="T", body="B", localizations={"fr": {"title": "x"}}
    ).localized_display


# --- web push -----------------------------------------------------------------------------


def test_web_push_notification_carries_every_option_named_as_the_notifications_api() -> None:
    payload, headers = build_webpush(RICH, Recipient(language="fr", platform="web"), now=NOW)

    assert payload == {
        "notification": {
            "title": "Soldes",
            "body": "50% off",
            "image": "https://cdn.example.com/fr.png",
            "icon": "https://cdn.example.com/icon.png",
            "badge": "https://cdn.example.com/badge.png",
            "tag": "sale-2026",
            "renotify": True,
            "requireInteraction": True,
            "vibrate": [200, 100, 1500],
            "actions": [
                {"action": "buy", "title": "Acheter", "icon": "https://cdn.example.com/cart.png"},
                {"action": "later", "title": "Later"},
            ],
        },
        "action_urls": {"buy": "https://example.com/buy"},
        "url": "https://example.com/sale",
        "herald_campaign_id": "1",
    }
    assert headers["Topic"] == "sale"  # the collapse key, not the tag


def test_web_push_tag_defaults_to_the_collapse_key_and_false_options_are_left_out() -> None:
    content = PushContent(title="T", body="B", collapse_key="k", renotify=True)
    untagged = PushContent(title="T", body="B", collapse_id_default="c-1")

    notification = build_webpush(content, Recipient(), now=NOW)[0]["notification"]
    assert notification == {"title": "T", "body": "B", "tag": "k", "renotify": True}
    # No tag of its own: the campaign id default is APNs'/Android's, not the web's.
    assert build_webpush(untagged, Recipient(), now=NOW)[0]["notification"] == {
        "title": "T",
        "body": "B",
    }


def test_silent_web_push_carries_no_display_option() -> None:
    content = PushContent(
        title="T", body="B", silent=True, vibrate=(100,), tag="t", icon="https://i"
    )

    assert build_webpush(content, Recipient(), now=NOW)[0] == {"silent": True}


# --- FCM ----------------------------------------------------------------------------------


def test_fcm_android_gets_tag_vibrate_timings_and_the_localized_image() -> None:
    message = build_fcm(RICH, Recipient(language="fr", platform="android"), now=NOW)

    assert message["notification"] == {
        "title": "Soldes",
        "body": "50% off",
        "image": "https://cdn.example.com/fr.png",
    }
    assert message["android"] == {
        "priority": "HIGH",
        "collapse_key": "sale",
        "notification": {
            "tag": "sale-2026",
            "image": "https://cdn.example.com/fr.png",
            "vibrate_timings": ["0.2s", "0.1s", "1.5s"],
        },
    }
    # The icon URL is not Android's icon (a drawable name in the app).
    assert "icon" not in message["android"]["notification"]
    assert message["data"]["actions"] == (
        '[{"id":"buy","title":"Acheter","url":"https://example.com/buy",'
        '"icon":"https://cdn.example.com/cart.png"},{"id":"later","title":"Later"}]'
    )


def test_fcm_android_tag_falls_back_to_the_collapse_key_then_the_campaign_id() -> None:
    keyed = PushContent(title="T", body="B", collapse_key="k", collapse_id_default="c-1")
    default = PushContent(title="T", body="B", collapse_id_default="c-1")

    android = Recipient(platform="android")
    assert build_fcm(keyed, android, now=NOW)["android"]["notification"] == {"tag": "k"}
    assert build_fcm(default, android, now=NOW)["android"]["notification"] == {"tag": "c-1"}


def test_fcm_vibrate_timings_are_protobuf_durations() -> None:
    content = PushContent(title="T", body="B", vibrate=(0, 1, 10, 999, 1000, 10000))

    timings = build_fcm(content, Recipient(platform="android"), now=NOW)["android"]["notification"]
    assert timings["vibrate_timings"] == ["0s", "0.001s", "0.01s", "0.999s", "1s", "10s"]


def test_fcm_web_block_gets_the_web_options_without_repeating_title_body_image() -> None:
    message = build_fcm(RICH, Recipient(language="fr-CA", platform="web"), now=NOW)

    assert message["webpush"]["notification"] == {
        "icon": "https://cdn.example.com/icon.png",
        "badge": "https://cdn.example.com/badge.png",
        "tag": "sale-2026",
        "renotify": True,
        "requireInteraction": True,
        "vibrate": [200, 100, 1500],
        "actions": [
            {"action": "buy", "title": "Acheter", "icon": "https://cdn.example.com/cart.png"},
            {"action": "later", "title": "Plus tard"},
        ],
    }
    assert message["notification"]["image"] == "https://cdn.example.com/fr.png"


def test_fcm_ios_block_asks_for_the_service_extension_when_only_a_localization_has_an_image() -> (
    None
):
    content = PushContent(
        title="T", body="B", localizations={"fr": {"image_url": "https://cdn.example.com/fr.png"}}
    )

    french = build_fcm(content, Recipient(language="fr", platform="ios"), now=NOW)
    english = build_fcm(content, Recipient(language="en", platform="ios"), now=NOW)
    assert french["apns"]["payload"] == {"aps": {"mutable-content": 1}}
    assert "payload" not in english["apns"]


# --- APNs ---------------------------------------------------------------------------------


def test_apns_gets_the_localized_image_and_button_titles_with_icons() -> None:
    payload, headers = build_apns(RICH, Recipient(language="fr", platform="ios"), now=NOW)

    assert payload == {
        "aps": {
            "alert": {"title": "Soldes", "body": "50% off"},
            "mutable-content": 1,
            "category": "herald.2actions",
        },
        "url": "https://example.com/sale",
        "image_url": "https://cdn.example.com/fr.png",
        "actions": [
            {
                "id": "buy",
                "title": "Acheter",
                "url": "https://example.com/buy",
                "icon": "https://cdn.example.com/cart.png",
            },
            {"id": "later", "title": "Later"},
        ],
        "herald_campaign_id": "1",
    }
    # Web-only options have no APNs counterpart; the collapse id stays the collapse key.
    assert headers["apns-collapse-id"] == "sale"


def test_personalized_text_keeps_the_recipients_localized_display() -> None:
    recipient = Recipient(language="fr", platform="web", text=("Salut ana", "B"))

    notification = build_webpush(RICH, recipient, now=NOW)[0]["notification"]
    assert (notification["title"], notification["image"]) == (
        "Salut ana",
        "https://cdn.example.com/fr.png",
    )


# --- size check ---------------------------------------------------------------------------


def test_the_size_check_measures_the_localized_image_of_each_language() -> None:
    long_image = "https://cdn.example.com/" + "i" * 1990
    content = PushContent(
        title="T",
        body="x" * 2000,
        localizations={"fr": {"image_url": long_image}, "de": {"title": "D"}},
    )

    report = payload_size_report(content)
    assert {(r.provider, r.language) for r in report} == {
        ("apns", "fr"),
        ("fcm", "fr"),
        ("webpush", "fr"),
    }
    assert payload_size_report(content, webpush=False) == [
        r for r in report if r.provider != "webpush"
    ]
