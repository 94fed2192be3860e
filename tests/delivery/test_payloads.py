"""Tests for delivery.payloads: exact provider payloads, fallbacks and the size check.

Pure functions, so no database: these run without the ``django_db`` marker.
"""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.payloads import (
    MAX_PAYLOAD_BYTES,
    Action,
    PayloadTooLarge,
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    encode_json,
    payload_size_report,
    reserved_data_keys,
    select_text,
    sent_size,
    truncate_utf8,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW_UNIX = 1767323045

FULL = PushContent(
    title="Sale",
    body="50% off",
    data={
        "screen": "offers",
        "count": 3,
        "nested": {"a": [1, True, None]},
        "aps": {"alert": "evil"},
        "from": "someone",
        "google.c.a.e": "1",
    },
    localizations={"fr": {"title": "Soldes", "body": "50 % de remise"}},
    image_url="https://cdn.example.com/i.png",
    url="https://example.com/offers",
    actions=(Action("open", "Open", "https://example.com/o"), Action("later", "Later")),
    sound="default",
    badge=3,
    collapse_key="spring-sale",
    collapse_id_default="c-123",
    priority="high",
    ttl_seconds=3600,
    campaign_id="123",
)
MINIMAL = PushContent(title="Hi", body="There")


# --- exact payloads -------------------------------------------------------------------


def test_build_apns_full_content() -> None:
    payload, headers = build_apns(FULL, Recipient(language="fr", platform="ios"), now=NOW)

    assert payload == {
        "aps": {
            "alert": {"title": "Soldes", "body": "50 % de remise"},
            "sound": "default",
            "badge": 3,
            "mutable-content": 1,
            "category": "herald.2actions",
        },
        "screen": "offers",
        "count": 3,
        "nested": {"a": [1, True, None]},
        "from": "someone",
        "google.c.a.e": "1",
        "url": "https://example.com/offers",
        "image_url": "https://cdn.example.com/i.png",
        "actions": [
            {"id": "open", "title": "Open", "url": "https://example.com/o"},
            {"id": "later", "title": "Later"},
        ],
        "herald_campaign_id": "123",
    }
    assert headers == {
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": str(NOW_UNIX + 3600),
        "apns-collapse-id": "spring-sale",
    }


def test_build_apns_minimal_content() -> None:
    payload, headers = build_apns(MINIMAL, Recipient(), now=NOW)

    assert payload == {"aps": {"alert": {"title": "Hi", "body": "There"}}}
    assert headers == {"apns-push-type": "alert", "apns-priority": "10"}
    assert encode_json(payload) == b'{"aps":{"alert":{"title":"Hi","body":"There"}}}'


def test_build_fcm_full_content() -> None:
    message = build_fcm(FULL, Recipient(language="fr"), now=NOW)

    assert message == {
        "notification": {
            "title": "Soldes",
            "body": "50 % de remise",
            "image": "https://cdn.example.com/i.png",
        },
        "data": {
            "screen": "offers",
            "count": "3",
            "nested": '{"a":[1,true,null]}',
            "url": "https://example.com/offers",
            "actions": (
                '[{"id":"open","title":"Open","url":"https://example.com/o"},'
                '{"id":"later","title":"Later"}]'
            ),
            "herald_campaign_id": "123",
        },
        "android": {
            "priority": "HIGH",
            "ttl": "3600s",
            "collapse_key": "spring-sale",
            "notification": {
                "tag": "spring-sale",
                "sound": "default",
                "image": "https://cdn.example.com/i.png",
            },
        },
        "apns": {
            "headers": {
                "apns-priority": "10",
                "apns-expiration": str(NOW_UNIX + 3600),
                "apns-collapse-id": "spring-sale",
            },
            "payload": {
                "aps": {
                    "sound": "default",
                    "badge": 3,
                    "mutable-content": 1,
                    "category": "herald.2actions",
                }
            },
        },
        "webpush": {
            "headers": {"TTL": "3600", "Urgency": "high"},
            "notification": {
                "tag": "spring-sale",
                "actions": [
                    {"action": "open", "title": "Open"},
                    {"action": "later", "title": "Later"},
                ],
            },
            "fcm_options": {"link": "https://example.com/offers"},
        },
    }


def test_build_fcm_minimal_content() -> None:
    message = build_fcm(MINIMAL, Recipient(), now=NOW)

    assert message == {
        "notification": {"title": "Hi", "body": "There"},
        "android": {"priority": "HIGH"},
        "apns": {"headers": {"apns-priority": "10"}},
        "webpush": {"headers": {"Urgency": "high"}},
    }


def test_build_fcm_sends_only_the_devices_platform_block() -> None:
    everything = build_fcm(FULL, Recipient(language="fr"), now=NOW)
    for platform, block in (("android", "android"), ("ios", "apns"), ("web", "webpush")):
        message = build_fcm(FULL, Recipient(language="fr", platform=platform), now=NOW)
        others = {"android", "apns", "webpush"} - {block}
        assert message == {k: v for k, v in everything.items() if k not in others}


def test_outputs_are_stable_bytes() -> None:
    first = encode_json(build_fcm(FULL, Recipient(language="fr"), now=NOW))
    second = encode_json(build_fcm(FULL, Recipient(language="fr"), now=NOW))

    assert first == second
    assert encode_json(build_fcm(MINIMAL, Recipient(), now=NOW)) == (
        b'{"notification":{"title":"Hi","body":"There"},"android":{"priority":"HIGH"},'
        b'"apns":{"headers":{"apns-priority":"10"}},'
        b'"webpush":{"headers":{"Urgency":"high"}}}'
    )


def test_encode_json_is_compact_utf8_and_refuses_nan() -> None:
    assert encode_json({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()
    with pytest.raises(ValueError):
        encode_json({"a": float("nan")})


# --- localization ---------------------------------------------------------------------

LOCALIZED = PushContent(
    title="Hello",
    body="Welcome",
    localizations={
        "pt": {"title": "Olá", "body": "Bem-vindo"},
        "pt_BR": {"title": "Oi"},
        "de": {"body": "Willkommen"},
        "fr": {"title": "", "body": "Bienvenue"},
    },
)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("pt", ("Olá", "Bem-vindo")),
        # Exact tag for the title; the missing body comes from the base language.
        ("pt-BR", ("Oi", "Bem-vindo")),
        ("PT_br", ("Oi", "Bem-vindo")),
        ("pt-br", ("Oi", "Bem-vindo")),
        # Unknown region: base language.
        ("pt-PT", ("Olá", "Bem-vindo")),
        ("PT", ("Olá", "Bem-vindo")),
        # Missing field falls back to the default text.
        ("de", ("Hello", "Willkommen")),
        ("de-AT", ("Hello", "Willkommen")),
        # Empty string counts as missing.
        ("fr", ("Hello", "Bienvenue")),
        ("es", ("Hello", "Welcome")),
        ("", ("Hello", "Welcome")),
        ("-", ("Hello", "Welcome")),
    ],
)
def test_select_text(language: str, expected: tuple[str, str]) -> None:
    assert select_text(LOCALIZED, language) == expected


def test_select_text_base_tag_does_not_match_regional_keys() -> None:
    content = PushContent(
        title="Hello", body="Welcome", localizations={"zh-Hant": {"title": "你好"}}
    )

    assert select_text(content, "zh") == ("Hello", "Welcome")
    assert select_text(content, "zh_hant_TW") == ("Hello", "Welcome")
    assert select_text(content, "ZH-HANT") == ("你好", "Welcome")


def test_select_text_first_of_equivalent_keys_wins() -> None:
    content = PushContent(
        title="T", body="B", localizations={"pt_BR": {"title": "1"}, "pt-br": {"title": "2"}}
    )

    assert select_text(content, "pt-BR") == ("1", "B")


def test_builders_use_the_recipient_language() -> None:
    recipient = Recipient(language="de_DE")

    payload, _ = build_apns(LOCALIZED, recipient, now=NOW)
    message = build_fcm(LOCALIZED, recipient, now=NOW)

    assert payload["aps"]["alert"] == {"title": "Hello", "body": "Willkommen"}
    assert message["notification"] == {"title": "Hello", "body": "Willkommen"}


# --- data merge -----------------------------------------------------------------------


def test_data_cannot_clobber_aps() -> None:
    content = PushContent(title="T", body="B", data={"aps": {"alert": "x"}, "k": "v"})

    payload, _ = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert payload == {"aps": {"alert": {"title": "T", "body": "B"}}, "k": "v"}
    assert message["data"] == {"k": "v"}


def test_campaign_fields_win_over_data_keys_when_set() -> None:
    data = {
        "url": "https://data.example/u",
        "image_url": "https://data.example/i.png",
        "actions": "data-actions",
        "herald_campaign_id": "forged",
    }
    content = PushContent(
        title="T",
        body="B",
        data=data,
        url="https://example.com/u",
        image_url="https://example.com/i.png",
        actions=(Action("a", "A"),),
        campaign_id="42",
    )

    payload, _ = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert {key: payload[key] for key in data} == {
        "url": "https://example.com/u",
        "image_url": "https://example.com/i.png",
        "actions": [{"id": "a", "title": "A"}],
        "herald_campaign_id": "42",
    }
    assert message["data"] == {
        "url": "https://example.com/u",
        "image_url": "https://data.example/i.png",
        "actions": '[{"id":"a","title":"A"}]',
        "herald_campaign_id": "42",
    }


def test_data_keys_pass_through_when_campaign_fields_unset() -> None:
    data = {"url": "myapp://x", "herald_campaign_id": "from-data"}
    content = PushContent(title="T", body="B", data=data)

    payload, _ = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert payload == {"aps": {"alert": {"title": "T", "body": "B"}}, **data}
    assert message["data"] == data
    assert "fcm_options" not in message["webpush"]


def test_fcm_drops_reserved_data_keys_and_reports_them() -> None:
    data = {
        "from": "x",
        "message_type": "x",
        "google.sent_time": "x",
        "gcm.notification.title": "x",
        "aps": {},
        "googleish": "kept",
        "ok": "kept",
    }
    content = PushContent(title="T", body="B", data=data)

    message = build_fcm(content, Recipient(), now=NOW)

    assert message["data"] == {"googleish": "kept", "ok": "kept"}
    assert reserved_data_keys(data) == [
        "from",
        "message_type",
        "google.sent_time",
        "gcm.notification.title",
        "aps",
    ]
    assert reserved_data_keys({"ok": 1}) == []


def test_fcm_data_values_are_strings() -> None:
    content = PushContent(
        title="T",
        body="B",
        data={"s": "text", "i": 1, "f": 1.5, "b": False, "n": None, "l": ["é", 2], "o": {}},
    )

    message = build_fcm(content, Recipient(), now=NOW)

    assert message["data"] == {
        "s": "text",
        "i": "1",
        "f": "1.5",
        "b": "false",
        "n": "null",
        "l": '["é",2]',
        "o": "{}",
    }


# --- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "apns_expiration", "android_ttl", "webpush_ttl"),
    [
        (None, None, None, None),
        (0, "0", "0s", "0"),
        (1, str(NOW_UNIX + 1), "1s", "1"),
        (86400, str(NOW_UNIX + 86400), "86400s", "86400"),
    ],
)
def test_ttl_headers(
    ttl: int | None,
    apns_expiration: str | None,
    android_ttl: str | None,
    webpush_ttl: str | None,
) -> None:
    content = PushContent(title="T", body="B", ttl_seconds=ttl)

    _, headers = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert headers.get("apns-expiration") == apns_expiration
    assert message["apns"]["headers"].get("apns-expiration") == apns_expiration
    assert message["android"].get("ttl") == android_ttl
    assert message["webpush"]["headers"].get("TTL") == webpush_ttl


def test_expiration_uses_absolute_time_whatever_the_zone_of_now() -> None:
    paris_now = NOW.astimezone(timezone(timedelta(hours=1)))
    content = PushContent(title="T", body="B", ttl_seconds=60)

    _, headers = build_apns(content, Recipient(), now=paris_now)

    assert headers["apns-expiration"] == str(NOW_UNIX + 60)


def test_naive_now_is_refused() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_apns(MINIMAL, Recipient(), now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_fcm(MINIMAL, Recipient(), now=naive)


def test_negative_ttl_and_unknown_priority_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        build_apns(PushContent(title="T", body="B", ttl_seconds=-1), Recipient(), now=NOW)
    with pytest.raises(ValueError, match="priority"):
        build_fcm(PushContent(title="T", body="B", priority="urgent"), Recipient(), now=NOW)


@pytest.mark.parametrize(
    ("priority", "apns", "android", "urgency"),
    [("high", "10", "HIGH", "high"), ("normal", "5", "NORMAL", "normal")],
)
def test_priority_mapping(priority: str, apns: str, android: str, urgency: str) -> None:
    content = PushContent(title="T", body="B", priority=priority)

    _, headers = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert headers["apns-priority"] == apns
    assert message["apns"]["headers"]["apns-priority"] == apns
    assert message["android"]["priority"] == android
    assert message["webpush"]["headers"]["Urgency"] == urgency


def test_collapse_id_default_used_when_no_collapse_key() -> None:
    content = PushContent(title="T", body="B", collapse_id_default="c-42")

    _, headers = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert headers["apns-collapse-id"] == "c-42"
    assert message["apns"]["headers"]["apns-collapse-id"] == "c-42"
    assert message["android"]["collapse_key"] == "c-42"
    assert message["android"]["notification"] == {"tag": "c-42"}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a" * 64, "a" * 64),
        ("a" * 65, "a" * 64),
        ("é" * 40, "é" * 32),  # 2-byte characters: 64 bytes exactly
        ("a" + "é" * 40, "a" + "é" * 31),  # 63 bytes: the 32nd é would straddle the limit
        ("😀" * 17, "😀" * 16),  # 4-byte characters
        ("ab" + "😀" * 16, "ab" + "😀" * 15),  # 62 bytes, no half emoji
        ("€" * 22, "€" * 21),  # 3-byte characters: 63 bytes
    ],
)
def test_collapse_id_truncated_to_64_bytes_on_character_boundary(key: str, expected: str) -> None:
    content = PushContent(title="T", body="B", collapse_key=key)

    _, headers = build_apns(content, Recipient(), now=NOW)
    message = build_fcm(content, Recipient(), now=NOW)

    assert headers["apns-collapse-id"] == expected
    assert len(expected.encode()) <= 64
    assert message["apns"]["headers"]["apns-collapse-id"] == expected
    # Android has no such limit: the full key is kept there.
    assert message["android"]["collapse_key"] == key


def test_truncate_utf8() -> None:
    assert truncate_utf8("héllo", 2) == "h"
    assert truncate_utf8("héllo", 3) == "hé"
    assert truncate_utf8("", 0) == ""


def test_category_explicit_and_derived() -> None:
    explicit = PushContent(title="T", body="B", category="OFFER", actions=(Action("a", "A"),))
    derived = PushContent(title="T", body="B", actions=(Action("a", "A"),))

    explicit_payload, _ = build_apns(explicit, Recipient(), now=NOW)
    derived_payload, _ = build_apns(derived, Recipient(), now=NOW)
    explicit_message = build_fcm(explicit, Recipient(), now=NOW)
    derived_message = build_fcm(derived, Recipient(), now=NOW)

    assert explicit_payload["aps"]["category"] == "OFFER"
    assert derived_payload["aps"]["category"] == "herald.1actions"
    assert explicit_message["apns"]["payload"]["aps"] == {"category": "OFFER"}
    assert derived_message["apns"]["payload"]["aps"] == {"category": "herald.1actions"}
    # Only an explicit category becomes Android's click_action (an intent action).
    assert explicit_message["android"]["notification"] == {"click_action": "OFFER"}
    assert "notification" not in derived_message["android"]


@pytest.mark.parametrize(
    "url", ["http://example.com/x", "myapp://offers", "https://", "https://[::1", "/relative"]
)
def test_webpush_link_only_for_https(url: str) -> None:
    message = build_fcm(PushContent(title="T", body="B", url=url), Recipient(), now=NOW)

    assert "fcm_options" not in message["webpush"]
    assert message["data"] == {"url": url}


def test_badge_zero_is_sent() -> None:
    payload, _ = build_apns(PushContent(title="T", body="B", badge=0), Recipient(), now=NOW)

    assert payload["aps"] == {"alert": {"title": "T", "body": "B"}, "badge": 0}


# --- size report ----------------------------------------------------------------------
#
# With title "T" and an empty body the FCM message is 82 bytes and the APNs payload
# 41 as built; the size check measures them as sent, with the longest delivery id
# (19 digits): APNs 84 (",\"herald_delivery_id\":\"<id>\"", 43 bytes more) and FCM 134
# (a "data" object holding the id, 52 more). The body appears once in each. So a body
# of 3962 ASCII bytes makes the FCM message exactly 4096.


def _sizes(content: PushContent, language: str = "") -> tuple[int, int]:
    """APNs size, and the largest per-platform FCM message (what the check measures)."""
    payload, _ = build_apns(content, Recipient(language=language), now=NOW)
    fcm = max(
        sent_size("fcm", build_fcm(content, Recipient(language, platform), now=NOW))
        for platform in ("android", "ios", "web")
    )
    return sent_size("apns", payload), fcm


def test_size_baseline() -> None:
    assert MAX_PAYLOAD_BYTES == 4096
    assert _sizes(PushContent(title="T", body="")) == (84, 134)


def test_size_report_default_text_at_the_limit() -> None:
    content = PushContent(title="T", body="x" * 3962)

    assert _sizes(content) == (4046, 4096)
    assert payload_size_report(content, webpush=False) == []


def test_size_report_default_text_just_over() -> None:
    content = PushContent(title="T", body="x" * 3963)

    assert payload_size_report(content, webpush=False) == [PayloadTooLarge("fcm", "", 4097, 4096)]


def test_size_report_apns_limit() -> None:
    at_limit = PushContent(title="T", body="x" * 4012)
    over = PushContent(title="T", body="x" * 4013)

    assert payload_size_report(at_limit, webpush=False) == [PayloadTooLarge("fcm", "", 4146, 4096)]
    assert payload_size_report(over, webpush=False) == [
        PayloadTooLarge("apns", "", 4097, 4096),
        PayloadTooLarge("fcm", "", 4147, 4096),
    ]


def test_size_report_counts_multibyte_characters_in_bytes() -> None:
    # "é" is 2 bytes of UTF-8 (not 1 character, nor a 6-byte \u00e9 escape), so 1981 of
    # them take the 3962 bytes that 3962 ASCII characters took above.
    at_limit = PushContent(title="T", body="é" * 1981)
    over = PushContent(title="T", body="é" * 1982)
    # 1004 four-byte characters: 4016 bytes, four over what APNs leaves for the body.
    emoji = PushContent(title="T", body="😀" * 1004)

    assert payload_size_report(at_limit, webpush=False) == []
    assert payload_size_report(over, webpush=False) == [PayloadTooLarge("fcm", "", 4098, 4096)]
    assert payload_size_report(emoji, webpush=False) == [
        PayloadTooLarge("apns", "", 4100, 4096),
        PayloadTooLarge("fcm", "", 4150, 4096),
    ]


def test_size_report_one_long_localization() -> None:
    under = PushContent(title="T", body="B", localizations={"de": {"body": "x" * 3962}})
    over = PushContent(
        title="T",
        body="B",
        localizations={"fr": {"title": "Salut"}, "de": {"body": "x" * 3963}},
    )

    assert payload_size_report(under, webpush=False) == []
    assert payload_size_report(over, webpush=False) == [PayloadTooLarge("fcm", "de", 4097, 4096)]


def test_size_report_localization_inherits_long_default_field() -> None:
    content = PushContent(
        title="T",
        body="x" * 3963,
        localizations={"fr": {"title": "T"}, "de": {"body": "short"}},
    )

    assert payload_size_report(content, webpush=False) == [
        PayloadTooLarge("fcm", "", 4097, 4096),
        PayloadTooLarge("fcm", "fr", 4097, 4096),
    ]


# --- property -------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=20)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=10,
)
_contents = st.builds(
    PushContent,
    title=_text,
    body=_text,
    data=st.dictionaries(_text | st.sampled_from(["aps", "url", "from"]), _json_values),
    localizations=st.dictionaries(
        _text | st.sampled_from(["fr", "pt-BR", "pt"]),
        st.fixed_dictionaries({}, optional={"title": _text, "body": _text}),
        max_size=3,
    ),
    image_url=_text,
    url=_text | st.just("https://example.com/x"),
    actions=st.lists(st.builds(Action, id=_text, title=_text, url=_text), max_size=3),
    sound=_text,
    badge=st.none() | st.integers(min_value=0, max_value=10**6),
    collapse_key=_text,
    collapse_id_default=_text,
    priority=st.sampled_from(["high", "normal"]),
    ttl_seconds=st.none() | st.integers(min_value=0, max_value=10**8),
    category=_text,
    campaign_id=_text,
)


def _round_trips(obj: Any) -> bool:
    return bool(json.loads(encode_json(obj)) == obj)


@settings(max_examples=200, deadline=None)
@given(content=_contents, language=_text | st.sampled_from(["fr", "pt_br", "PT"]))
def test_property_outputs_are_json_and_fcm_data_is_strings(
    content: PushContent, language: str
) -> None:
    recipient = Recipient(language=language)

    payload, headers = build_apns(content, recipient, now=NOW)
    message = build_fcm(content, recipient, now=NOW)

    assert all(isinstance(value, str) for value in message.get("data", {}).values())
    assert all(isinstance(value, str) for value in headers.values())
    assert _round_trips(payload)
    assert _round_trips(headers)
    assert _round_trips(message)
    assert len(headers.get("apns-collapse-id", "").encode()) <= 64
    assert isinstance(payload_size_report(content), list)
