"""delivery.payloads for issue 11: silent pushes, the delivery id, personalized text.

Pure functions, no database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from delivery.payloads import (
    DELIVERY_ID_KEY,
    LONGEST_DELIVERY_ID,
    Action,
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    encode_json,
    payload_size_report,
    personal_text,
    sent_size,
    text_size,
    with_delivery_id,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

SILENT = PushContent(
    title="Sync",
    body="unused",
    data={"sync": "inbox", "n": 2},
    url="myapp://inbox",
    image_url="https://cdn.example.com/i.png",  # display-only: never in a silent push
    actions=(Action("open", "Open"),),
    sound="default",
    badge=1,
    collapse_key="sync",
    priority="normal",
    ttl_seconds=60,
    campaign_id="c1",
    silent=True,
)


def test_silent_apns_is_a_background_push() -> None:
    payload, headers = build_apns(SILENT, Recipient(language="fr"), now=NOW)

    assert payload == {
        "aps": {"content-available": 1},
        "sync": "inbox",
        "n": 2,
        "url": "myapp://inbox",
        "herald_campaign_id": "c1",
    }
    assert headers == {
        "apns-push-type": "background",
        "apns-priority": "5",
        "apns-expiration": str(int(NOW.timestamp()) + 60),
        "apns-collapse-id": "sync",
    }


def test_silent_apns_priority_is_5_even_when_high_is_asked() -> None:
    _, headers = build_apns(
        PushContent(title="T", body="B", silent=True, priority="high"), Recipient(), now=NOW
    )

    assert headers == {"apns-push-type": "background", "apns-priority": "5"}


def test_silent_fcm_is_data_only_on_every_platform() -> None:
    data = {"sync": "inbox", "n": "2", "url": "myapp://inbox", "herald_campaign_id": "c1"}

    android = build_fcm(SILENT, Recipient(platform="android"), now=NOW)
    ios = build_fcm(SILENT, Recipient(platform="ios"), now=NOW)
    web = build_fcm(SILENT, Recipient(platform="web"), now=NOW)

    assert android == {
        "data": data,
        "android": {"priority": "NORMAL", "ttl": "60s", "collapse_key": "sync"},
    }
    assert ios == {
        "data": data,
        "apns": {
            "headers": {
                "apns-push-type": "background",
                "apns-priority": "5",
                "apns-expiration": str(int(NOW.timestamp()) + 60),
                "apns-collapse-id": "sync",
            },
            "payload": {"aps": {"content-available": 1}},
        },
    }
    assert web == {"data": data, "webpush": {"headers": {"TTL": "60", "Urgency": "normal"}}}


def test_silent_android_priority_follows_the_content() -> None:
    content = PushContent(title="T", body="B", silent=True, priority="high")

    message = build_fcm(content, Recipient(platform="android"), now=NOW)

    assert message["android"] == {"priority": "HIGH"}


def test_silent_content_is_never_personalized() -> None:
    content = PushContent(title="Hi {{ name }}", body="B", silent=True)

    assert content.placeholder_names == ()
    assert not content.personalized


def test_delivery_id_is_added_to_a_copy() -> None:
    apns, _ = build_apns(PushContent(title="T", body="B"), Recipient(), now=NOW)
    fcm = build_fcm(PushContent(title="T", body="B", data={"k": "v"}), Recipient(), now=NOW)
    bare = build_fcm(PushContent(title="T", body="B"), Recipient(platform="web"), now=NOW)

    assert with_delivery_id("apns", apns, "17")[DELIVERY_ID_KEY] == "17"
    assert DELIVERY_ID_KEY not in apns
    assert with_delivery_id("fcm", fcm, "17")["data"] == {"k": "v", DELIVERY_ID_KEY: "17"}
    assert fcm["data"] == {"k": "v"}
    assert with_delivery_id("fcm", bare, "9")["data"] == {DELIVERY_ID_KEY: "9"}
    assert "data" not in bare


def test_sizes_count_the_longest_delivery_id() -> None:
    assert len(LONGEST_DELIVERY_ID) == 19
    apns, _ = build_apns(PushContent(title="T", body="B"), Recipient(), now=NOW)

    assert sent_size("apns", apns) == len(encode_json(apns)) + len(
        f',"{DELIVERY_ID_KEY}":"{LONGEST_DELIVERY_ID}"'
    )


def test_personal_text_fills_the_chosen_localization() -> None:
    content = PushContent(
        title='Hi {{ first_name | default: "there" }}',
        body="Plain",
        localizations={"fr": {"title": "Salut {{ first_name | capitalize }}"}},
    )

    assert content.placeholder_names == ("first_name",)
    assert personal_text(content, "en", {"first_name": "ana"}) == ("Hi ana", "Plain")
    assert personal_text(content, "fr-CA", {"first_name": "ana"}) == ("Salut Ana", "Plain")
    assert personal_text(content, "en", {}) == ("Hi there", "Plain")


def test_builders_use_the_recipients_rendered_text() -> None:
    content = PushContent(title="Hi {{ a }}", body="B")
    recipient = Recipient(platform="android", text=("Hi Ana", "B!"))

    payload, _ = build_apns(content, recipient, now=NOW)
    message = build_fcm(content, recipient, now=NOW)

    assert payload["aps"]["alert"] == {"title": "Hi Ana", "body": "B!"}
    assert message["notification"] == {"title": "Hi Ana", "body": "B!"}


def test_text_size_is_what_the_text_adds_to_a_payload_without_it() -> None:
    content = PushContent(title="{{ a }}", body="B", data={"k": "v"})
    text = ('Ana "quoted" é', "😀\n")
    for platform in ("ios", "android", "web"):
        empty = Recipient(platform=platform, text=("", ""))
        full = Recipient(platform=platform, text=text)
        base = sent_size("fcm", build_fcm(content, empty, now=NOW))
        assert sent_size("fcm", build_fcm(content, full, now=NOW)) == base + text_size(text)
    base = sent_size("apns", build_apns(content, Recipient(text=("", "")), now=NOW)[0])
    assert sent_size("apns", build_apns(content, Recipient(text=text), now=NOW)[0]) == (
        base + text_size(text)
    )


def test_the_size_check_measures_personalized_text_as_written() -> None:
    content = PushContent(title="T", body="x" * 3950 + "{{ bio }}")

    assert payload_size_report(content, webpush=False) == []
