"""Provider payloads built from campaign content and one recipient.

Everything here is a pure function of its arguments: no models, no database, no
settings, no clock (callers pass ``now``). That keeps the builders cheap enough to run
once per device during fan-out, testable without Django, and usable by the API layer
to refuse oversized content at create/patch time with exactly the bytes the senders
will later put on the wire (see ``encode_json`` and ``payload_size_report``).

What the builders do *not* add, because it belongs to the sender or the project:
the device token, ``apns-topic`` (the project's bundle id) and authentication.

Returned dicts are fresh at the top levels, but nested values taken from
``PushContent.data`` are shared with the content, not copied (copying every nested
value per device would cost fan-out time for no benefit): treat results as read-only.

Two things vary per delivery rather than per content, and are applied on top of a
built (cached) payload instead of rebuilding it: the delivery id
(``with_delivery_id``, a shallow copy with one key) and personalized text (rendered
by ``personal_text`` and handed to the builders as ``Recipient.text``).

What each provider gets of the rich content (icon, web badge, tag, vibration,
require-interaction, renotify, button icons, localized image and button titles) is
listed in docs/decisions.md, "Rich notification content".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from delivery.providers.webpush import MAX_PLAINTEXT_BYTES, webpush_headers
from delivery.templating import Template, compile_lenient, literal

MAX_PAYLOAD_BYTES: Final = 4096
"""APNs rejects alert payloads above 4096 bytes; FCM's limit for a message is the same."""

WEBPUSH_MAX_PAYLOAD_BYTES: Final = MAX_PLAINTEXT_BYTES
"""Push services accept 4096-byte bodies; RFC 8291's one-record encryption adds 103
bytes (header with the sender's key, tag, padding delimiter), leaving 3993 of JSON."""

WEBPUSH_DEFAULT_TTL_SECONDS: Final = 4 * 7 * 24 * 3600
"""RFC 8030 requires a TTL header; four weeks when the campaign names none (as FCM's
default)."""


def payload_limit(provider: str) -> int:
    """The largest payload ``provider`` accepts, in bytes of JSON as sent."""
    return WEBPUSH_MAX_PAYLOAD_BYTES if provider == "webpush" else MAX_PAYLOAD_BYTES


APNS_COLLAPSE_ID_MAX_BYTES: Final = 64
"""Apple refuses an ``apns-collapse-id`` longer than 64 bytes (the whole push fails)."""

PRIORITY_HIGH: Final = "high"
PRIORITY_NORMAL: Final = "normal"

CAMPAIGN_ID_KEY: Final = "herald_campaign_id"
"""Custom-data key the apps read to attribute opens to a campaign."""

DELIVERY_ID_KEY: Final = "herald_delivery_id"
"""Custom-data key (APNs top level, FCM ``data``) holding the push_deliveries id as a
decimal string, on every push; apps echo it back as ``delivery_id`` in events."""

LONGEST_DELIVERY_ID: Final = str(2**63 - 1)
"""The longest id a delivery can have (a bigint, 19 digits): sizes are measured with
it, so content accepted at save is never refused for the id it gets at send time."""

_APNS_PRIORITY: Final = {PRIORITY_HIGH: "10", PRIORITY_NORMAL: "5"}
_ANDROID_PRIORITY: Final = {PRIORITY_HIGH: "HIGH", PRIORITY_NORMAL: "NORMAL"}
_WEBPUSH_URGENCY: Final = {PRIORITY_HIGH: "high", PRIORITY_NORMAL: "normal"}

# FCM refuses these data keys (and prefixes); "aps" would collide on iOS via FCM.
_FCM_DROPPED_DATA_KEYS: Final = frozenset({"aps", "from", "message_type"})
_FCM_DROPPED_DATA_PREFIXES: Final = ("google.", "gcm.")

# Used only to measure: the expiry timestamp it yields has the same number of digits
# (10) as any real send date between 2001 and 2286, so the measured size is exact.
_SIZE_CHECK_NOW: Final = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Action:
    """A notification button. ``id`` is what the app receives when it is tapped;
    ``icon`` is an http(s) image URL (web shows it; apps read it from ``actions``)."""

    id: str
    title: str
    url: str = ""
    icon: str = ""


@dataclass(frozen=True, slots=True)
class Display:
    """What a recipient's language changes besides the text: the image and the button
    titles, after localization fallback (``select_display``)."""

    image_url: str
    actions: tuple[Action, ...]


_NO_DISPLAY: Final = Display("", ())
"""A silent push's: nothing display-only is sent."""


@dataclass(frozen=True, slots=True)
class PushContent:
    """Everything about a push that is the same for every recipient of a campaign.

    ``collapse_key`` is the operator's choice; ``collapse_id_default`` is the caller's
    fallback (e.g. ``"c-<campaign id>"``) so a rare duplicate delivery displays once.
    ``category`` is an APNs notification category the app has registered; when it is
    empty and there are actions, a stable ``herald.<n>actions`` id is derived instead,
    so an app can register one category per button count and read the button titles
    from the ``actions`` custom key.

    A localization is ``{"title", "body", "image_url", "actions": {id: title}}``, any
    subset (``select_text``, ``select_display``). ``tag`` is the web/Android
    notification tag (a newer notification with the same tag replaces the shown one);
    empty, the web tag is ``collapse_key`` (``web_tag``). ``icon``, ``web_badge``,
    ``require_interaction``, ``renotify`` and ``vibrate`` (milliseconds) are the
    Notifications API options of the same meaning.
    """

    title: str
    body: str
    data: Mapping[str, Any] = field(default_factory=dict)
    localizations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    image_url: str = ""
    icon: str = ""
    web_badge: str = ""
    url: str = ""
    actions: Sequence[Action] = ()
    sound: str = ""
    badge: int | None = None
    vibrate: Sequence[int] = ()
    require_interaction: bool = False
    renotify: bool = False
    tag: str = ""
    collapse_key: str = ""
    collapse_id_default: str = ""
    priority: str = PRIORITY_HIGH
    ttl_seconds: int | None = None
    category: str = ""
    campaign_id: str = ""
    silent: bool = False
    _localization_index: Mapping[str, tuple[Mapping[str, Any], ...]] = field(
        init=False, repr=False, compare=False
    )
    _templates: Mapping[str, Template] = field(init=False, repr=False, compare=False)
    placeholder_names: tuple[str, ...] = field(init=False, compare=False)
    """Every value name the texts' placeholders use, sorted; empty: not personalized."""
    localized_display: bool = field(init=False, compare=False)
    """Whether some localization sets an image or button titles: only then does a
    recipient's language change a payload beyond its text (``select_display``)."""

    def __post_init__(self) -> None:
        # Built once per content (once per batch during fan-out), so choosing a
        # recipient's text is two dict look-ups instead of a scan of every
        # localization per device: the size check builds a payload per localization,
        # and a scan per build made it quadratic (issue 9).
        object.__setattr__(self, "_localization_index", _index_localizations(self.localizations))
        # Placeholders are compiled once per content too; rendering is per recipient.
        # A silent push shows no text, so it has nothing to personalize.
        templates = {} if self.silent else _compile_texts(self)
        object.__setattr__(self, "_templates", templates)
        names = sorted({name for template in templates.values() for name in template.names})
        object.__setattr__(self, "placeholder_names", tuple(names))
        localized_display = any(  # the localizations that can be chosen
            loc.get("image_url") or loc.get("actions")
            for locs in self._localization_index.values()
            for loc in locs
        )
        object.__setattr__(self, "localized_display", localized_display)

    @property
    def personalized(self) -> bool:
        return bool(self.placeholder_names)

    @property
    def web_tag(self) -> str:
        """The web notification tag: ``tag``, else the collapse key (what it always was);
        ``""``: none (each push is a notification of its own)."""
        return self.tag or self.collapse_key


@dataclass(frozen=True, slots=True)
class Recipient:
    """The per-device facts that change a payload.

    ``platform`` (``ios``/``android``/``web``) does not change the payloads built today
    (an FCM message carries every platform's block); it is here so callers hand over
    one recipient record and the builders can specialise later without new signatures.
    """

    language: str = ""
    platform: str = ""
    text: tuple[str, str] | None = None
    """``(title, body)`` already chosen and rendered for this recipient
    (``personal_text``); None: chosen from ``language`` by ``select_text``. The image
    and button titles are chosen from ``language`` either way."""


@dataclass(frozen=True, slots=True)
class PayloadTooLarge:
    """One provider payload, for one language, that a provider would refuse.

    ``language`` is the localization key as the operator wrote it, or ``""`` for the
    default title/body.
    """

    provider: str
    language: str
    size: int
    limit: int


def encode_json(obj: object) -> bytes:
    """Encode ``obj`` exactly as the senders put it on the wire.

    Compact separators and raw UTF-8 (not ``\\uXXXX`` escapes), so the size check and
    the providers count the same bytes and multibyte text costs what it really costs.
    Raises ``ValueError`` for NaN/Infinity (not JSON) and ``UnicodeEncodeError`` (a
    ``ValueError``) for lone surrogates, which input validation should refuse first.
    """
    return _json_text(obj).encode("utf-8")


def select_text(content: PushContent, language: str) -> tuple[str, str]:
    """Return the ``(title, body)`` to show a user whose language is ``language``.

    Localization keys are matched case-insensitively with ``_`` and ``-`` equivalent:
    first the exact tag (``pt-BR``), then its base language (``pt``). Each field falls
    back on its own - a ``pt-BR`` entry with only a title takes its body from ``pt``,
    then from the default body - so operators can localize one field at a time. Empty
    strings count as missing, because an empty title or body is never what was meant.
    """
    candidates = _matching_localizations(content, language)
    title = next((loc["title"] for loc in candidates if loc.get("title")), content.title)
    body = next((loc["body"] for loc in candidates if loc.get("body")), content.body)
    return title, body


def select_display(content: PushContent, language: str) -> Display:
    """Return the image and buttons to show a user whose language is ``language``.

    The same rule as ``select_text``, field by field: the image from the exact tag,
    else the base language, else the campaign's; each button's title likewise by its
    id (a localization may translate one button only). Button ids, urls and icons are
    the campaign's. Constant time in the number of localizations; called once per
    build, and builds are shared by every recipient of a language (delivery.services).
    """
    candidates = _matching_localizations(content, language)
    if not candidates:
        return Display(content.image_url, tuple(content.actions))
    image_url = next(
        (loc["image_url"] for loc in candidates if loc.get("image_url")), content.image_url
    )
    titles = [loc["actions"] for loc in candidates if loc.get("actions")]
    if not titles or not content.actions:
        return Display(image_url, tuple(content.actions))
    actions = tuple(
        replace(
            action, title=next((t[action.id] for t in titles if t.get(action.id)), action.title)
        )
        for action in content.actions
    )
    return Display(image_url, actions)


def text_templates(content: PushContent, language: str) -> tuple[Template, Template]:
    """``select_text``'s title and body for ``language``, compiled: render them with a
    recipient's values (the recipient's attributes and external_id)."""
    title, body = select_text(content, language)
    templates = content._templates
    return templates.get(title) or literal(title), templates.get(body) or literal(body)


def personal_text(
    content: PushContent, language: str, values: Mapping[str, Any]
) -> tuple[str, str]:
    """The title and body a recipient with ``language`` and ``values`` gets."""
    title, body = text_templates(content, language)
    return title.render(values), body.render(values)


def text_size(text: tuple[str, str]) -> int:
    """What a ``(title, body)`` adds to a payload built with ``("", "")``, in bytes.

    Exact because each appears once in every payload that shows text (APNs
    ``aps.alert``, FCM ``notification``): the send path measures each distinct
    personalized text by its strings, not by encoding the whole payload again.
    """
    return len(encode_json(text[0])) + len(encode_json(text[1])) - 4


def with_delivery_id(provider: str, payload: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    """``payload`` (as built for ``provider``) plus the delivery id, without touching it:
    a shallow copy of the top level (APNs, web push) or of the message and its
    ``data`` (FCM), so one built payload serves every row that shares it."""
    if provider != "fcm":
        return {**payload, DELIVERY_ID_KEY: delivery_id}
    data = payload.get("data")
    return {
        **payload,
        "data": {**data, DELIVERY_ID_KEY: delivery_id} if data else {DELIVERY_ID_KEY: delivery_id},
    }


def normalize_language(tag: str) -> str:
    """The form language tags are compared in: ``pt_BR``, ``pt-br`` and ``PT-BR`` agree.

    Public so input validation can refuse two localizations that would collide here.
    """
    return tag.strip().replace("_", "-").lower()


def build_apns(
    content: PushContent, recipient: Recipient, *, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """Build the APNs ``(payload, headers)`` for one device.

    Custom data sits next to ``aps`` because that is where iOS apps read it. A data
    key can never replace ``aps`` (it would remove the alert); Herald's own keys
    (``url``, ``image_url``, ``actions``, ``herald_campaign_id``) win over data keys
    of the same name when the campaign sets them, and leave the data value in place
    when it does not. ``image_url`` goes into custom data (with ``mutable-content``)
    because APNs cannot attach images itself: the app's notification service
    extension downloads it. The image and the button titles are the recipient
    language's (``select_display``); button icons ride in ``actions`` for the app to
    draw. The web-only options (icon, web badge, tag, vibrate, require_interaction,
    renotify) have no APNs counterpart and are not sent.

    A silent push is a background notification as Apple defines it: ``aps`` holds
    only ``content-available: 1`` (no alert, sound or badge), ``apns-push-type:
    background`` and ``apns-priority: 5`` (Apple refuses 10 for it), and nothing
    display-only (image, buttons) rides along; the custom data does.
    """
    _require_aware(now)
    display = _NO_DISPLAY
    if content.silent:
        aps: dict[str, Any] = {"content-available": 1}
    else:
        title, body = recipient.text or select_text(content, recipient.language)
        display = select_display(content, recipient.language)
        aps = {"alert": {"title": title, "body": body}}
        aps.update(_apns_aps_options(content, display.image_url))

    payload: dict[str, Any] = {"aps": aps}
    for key, value in content.data.items():
        if key != "aps":
            payload[key] = value
    if content.url:
        payload["url"] = content.url
    if display.image_url:
        payload["image_url"] = display.image_url
    if display.actions:
        payload["actions"] = _actions_as_data(display.actions)
    if content.campaign_id:
        payload[CAMPAIGN_ID_KEY] = content.campaign_id

    headers = {"apns-push-type": "background" if content.silent else "alert"}
    headers.update(_apns_headers(content, now))
    return payload, headers


FCM_PLATFORMS: Final = ("android", "ios", "web")


def build_webpush(
    content: PushContent, recipient: Recipient, *, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """Build the web push ``(payload, headers)`` for one browser subscription.

    The payload is the JSON a service worker receives (after the sender encrypts it):
    ``notification`` holds what ``showNotification`` takes, named as the
    Notifications API names them (``title``, ``body``, ``image``, ``icon``, ``badge``
    from ``web_badge``, ``tag`` from ``web_tag``, ``renotify``, ``requireInteraction``,
    ``vibrate``, ``actions`` as ``{action, title, icon?}``; options left at the API's
    default are omitted); ``url`` is the landing URL and ``action_urls`` maps an action
    id to its URL, so the worker can open the right page on a click; ``data`` is the
    campaign's custom data as JSON values (web push carries JSON, unlike FCM's
    strings); the campaign and delivery ids sit at the top level, as on APNs, for
    ``push_opened`` / ``push_clicked``. Text, image and button titles are the
    recipient language's. A silent push has no ``notification`` and ``"silent":
    true``: browsers still expect a subscription created with ``userVisibleOnly`` to
    show something, so what to do with it is the worker's call. The headers are TTL,
    Urgency (from the priority) and Topic (from the collapse key).
    """
    _require_aware(now)
    payload: dict[str, Any] = {}
    if content.silent:
        payload["silent"] = True
    else:
        title, body = recipient.text or select_text(content, recipient.language)
        display = select_display(content, recipient.language)
        notification: dict[str, Any] = {"title": title, "body": body}
        if display.image_url:
            notification["image"] = display.image_url
        notification.update(_web_notification_options(content, display))
        urls = {a.id: a.url for a in display.actions if a.url}
        if urls:
            payload["action_urls"] = urls
        payload["notification"] = notification
    if content.url:
        payload["url"] = content.url
    if content.data:
        payload["data"] = dict(content.data)
    if content.campaign_id:
        payload[CAMPAIGN_ID_KEY] = content.campaign_id
    ttl = _ttl(content)
    headers = webpush_headers(
        ttl_seconds=ttl if ttl is not None else WEBPUSH_DEFAULT_TTL_SECONDS,
        priority=_priority(content),
        collapse_key=content.collapse_key,
    )
    return payload, headers


def build_fcm(content: PushContent, recipient: Recipient, *, now: datetime) -> dict[str, Any]:
    """Build the FCM HTTP v1 ``message`` object for one device, without ``token``.

    FCM only accepts string values in ``data``, so other values are JSON-encoded and
    the app decodes them (``actions`` arrives as a JSON string too). Keys FCM reserves
    (``from``, ``message_type``, ``google.*``, ``gcm.*``) are dropped: FCM would
    reject the whole message for them, failing every Android and web device of the
    campaign. ``aps`` is dropped too, because FCM copies data keys to the top level of
    the APNs payload on iOS, where it would collide with the real ``aps``.
    ``reserved_data_keys`` lets the API refuse all of these up front. The same
    precedence as APNs applies: the campaign's own ``url``/``actions``/campaign id win
    over data keys of the same name when set.

    Android's ``click_action`` is an intent action the app must declare, not a URL, so
    it is set only from an explicit ``category`` (the field FCM maps it to on iOS) and
    never from the derived ``herald.<n>actions`` id, which an Android app would not
    know: a ``click_action`` with no matching activity makes taps do nothing.
    The web ``fcm_options.link`` is set only for https URLs, which FCM requires.

    Rich content: the image and button titles are the recipient language's; button
    icons ride in the ``actions`` data key. Android gets ``tag`` (the campaign's tag,
    else the collapse key or its default) and ``vibrate_timings`` (durations); its
    ``icon`` is a drawable resource name in the app, not a URL, so the ``icon`` URL is
    not mapped there. The web block gets the Notifications API options as web push
    does (``build_webpush``), title, body and image aside.

    A silent push is a data-only message: no ``notification`` anywhere (top level,
    android, webpush), the Android priority as the content says (``normal`` is
    Google's recommendation for data messages and what a silent campaign defaults
    to), and an ``apns`` block that is a background notification (see
    ``build_apns``), so iOS devices reached through FCM get it the same way.
    """
    _require_aware(now)
    collapse_key = content.collapse_key or content.collapse_id_default

    message: dict[str, Any] = {}
    display = _NO_DISPLAY
    if not content.silent:
        title, body = recipient.text or select_text(content, recipient.language)
        display = select_display(content, recipient.language)
        notification: dict[str, Any] = {"title": title, "body": body}
        if display.image_url:
            notification["image"] = display.image_url
        message["notification"] = notification

    data = {
        key: value if isinstance(value, str) else _json_text(value)
        for key, value in content.data.items()
        if not _is_dropped_from_fcm_data(key)
    }
    if content.url:
        data["url"] = content.url
    if display.actions:
        data["actions"] = _json_text(_actions_as_data(display.actions))
    if content.campaign_id:
        data[CAMPAIGN_ID_KEY] = content.campaign_id

    if data:
        message["data"] = data
    # A message goes to one device: only its platform's block is sent (smaller on the
    # wire, and the size check then measures what that device's message costs). An
    # unknown platform gets all three.
    platform = recipient.platform if recipient.platform in FCM_PLATFORMS else ""
    if platform in ("", "android"):
        message["android"] = _android_config(content, display, collapse_key)
    if platform in ("", "ios"):
        message["apns"] = _fcm_apns_config(content, display, now)
    if platform in ("", "web"):
        message["webpush"] = _webpush_config(content, display)
    return message


def reserved_data_keys(data: Mapping[str, Any]) -> list[str]:
    """Return the keys of ``data`` some builder drops, in order, for input validation.

    The builders drop them so a send never fails on them; the API layer can use this
    to tell the operator instead of silently losing those values on some platforms.
    """
    return [key for key in data if _is_dropped_from_fcm_data(key)]


def payload_size_report(content: PushContent, *, webpush: bool = True) -> list[PayloadTooLarge]:
    """List every payload of ``content`` a provider would refuse; empty means fine.

    Checked at campaign create/patch time (and for test pushes) so oversized content
    is refused with PAYLOAD_TOO_LARGE instead of failing on every device at send time.
    The default text and each localization are checked as a recipient with that
    language would receive them (including per-field fallback, localized image and
    button titles), because a long translation alone can overflow. Sizes are of
    ``encode_json`` output, the bytes the senders send: the APNs payload, for FCM the
    largest of the per-platform messages (android, ios, web), each as a device of that
    platform gets it, and the web push JSON (3,993 bytes at most: 4,096 once
    encrypted, ``payload_limit``) unless ``webpush`` is false (content that cannot
    reach a browser, e.g. a campaign whose platforms leave web out).

    Linear in the number of localizations: one APNs, three FCM and one web push build
    per language, each a constant-time text look-up (see ``PushContent``). Input
    validation caps how many localizations there can be.

    Every payload is measured with the longest delivery id it can carry
    (``LONGEST_DELIVERY_ID``). Personalized text is measured as written, placeholders
    and all: what a recipient gets depends on their values, so a rendered payload
    over the limit is refused per delivery at send time instead.

    Raises ``ValueError`` for content the builders refuse (unknown priority, negative
    TTL, NaN or lone surrogates in text or data): validate those fields first.
    """
    report: list[PayloadTooLarge] = []
    for language in ("", *content.localizations):
        apns_payload, _ = build_apns(content, Recipient(language=language), now=_SIZE_CHECK_NOW)
        fcm_messages = (
            build_fcm(content, Recipient(language, platform), now=_SIZE_CHECK_NOW)
            for platform in FCM_PLATFORMS
        )
        sizes = [
            ("apns", sent_size("apns", apns_payload)),
            ("fcm", max(sent_size("fcm", message) for message in fcm_messages)),
        ]
        if webpush:
            web_payload, _ = build_webpush(content, Recipient(language, "web"), now=_SIZE_CHECK_NOW)
            sizes.append(("webpush", sent_size("webpush", web_payload)))
        for provider, size in sizes:
            limit = payload_limit(provider)
            if size > limit:
                report.append(PayloadTooLarge(provider, language, size, limit))
    return report


def sent_size(provider: str, payload: dict[str, Any]) -> int:
    """Bytes of ``payload`` on the wire once it carries the longest delivery id."""
    return len(encode_json(with_delivery_id(provider, payload, LONGEST_DELIVERY_ID)))


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` of UTF-8 without splitting a character.

    Byte limits (like ``apns-collapse-id``'s) are not character limits: slicing the
    string by length could still be too long, and slicing the bytes could leave half
    a character, which is not valid UTF-8.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _json_text(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _compile_texts(content: PushContent) -> dict[str, Template]:
    """Each distinct title/body (default and localized) that has placeholders ->
    its compiled template. Stored text that does not parse is sent literally
    (``compile_lenient``); input validation refuses it for new text."""
    texts = {content.title, content.body}
    for localizations in content._localization_index.values():  # the ones that can be chosen
        for localization in localizations:
            texts.update(localization[key] for key in ("title", "body") if key in localization)
    compiled = (compile_lenient(text) for text in texts if "{{" in text)
    return {template.text: template for template in compiled if not template.is_static}


def _index_localizations(
    localizations: Mapping[str, Mapping[str, Any]],
) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Normalized tag -> the first two localizations whose key normalizes to it.

    Two, not one: when keys collide (``pt`` and ``PT``) and the recipient's tag has no
    subtag, the second one stands in as the base-language fallback, as it always did.
    """
    index: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for key, localization in localizations.items():
        normalized = normalize_language(key)
        found = index.get(normalized, ())
        if len(found) < 2:
            index[normalized] = (*found, localization)
    return index


def _matching_localizations(content: PushContent, language: str) -> tuple[Mapping[str, Any], ...]:
    """Localizations to try for ``language``, most specific first: exact tag, then base.

    If two keys normalize to the same tag (``pt_BR`` and ``pt-br``), the first one in
    the mapping wins, so the choice is stable. Constant time in the number of
    localizations (``PushContent`` indexes them once).
    """
    index = content._localization_index
    wanted = normalize_language(language)
    if not index or not wanted:
        return ()
    base = wanted.split("-", 1)[0]
    if base == wanted:
        return index.get(wanted, ())
    exact, base_match = index.get(wanted, ()), index.get(base, ())
    return exact[:1] + base_match[:1]


def _require_aware(now: datetime) -> None:
    # A naive datetime's timestamp() is read in the server's local zone, which would
    # shift every expiry by the UTC offset.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


def _priority(content: PushContent) -> str:
    if content.priority not in _APNS_PRIORITY:
        raise ValueError(f"unknown priority {content.priority!r}")
    return content.priority


def _ttl(content: PushContent) -> int | None:
    if content.ttl_seconds is not None and content.ttl_seconds < 0:
        raise ValueError("ttl_seconds must not be negative")
    return content.ttl_seconds


def _category(content: PushContent) -> str:
    if content.category:
        return content.category
    if content.actions:
        return f"herald.{len(content.actions)}actions"
    return ""


def _apns_aps_options(content: PushContent, image_url: str) -> dict[str, Any]:
    """The ``aps`` keys shared by direct APNs and FCM's ``apns`` block, alert aside;
    ``image_url`` is the recipient language's (``select_display``)."""
    aps: dict[str, Any] = {}
    if content.sound:
        aps["sound"] = content.sound
    if content.badge is not None:
        aps["badge"] = content.badge
    if image_url:
        aps["mutable-content"] = 1
    category = _category(content)
    if category:
        aps["category"] = category
    return aps


def _apns_headers(content: PushContent, now: datetime) -> dict[str, str]:
    """Priority, expiry and collapse headers, shared by direct APNs and FCM.

    ``apns-expiration`` of 0 means "deliver now or never"; omitting it lets Apple
    store the push for its default period, which is what no TTL means.
    """
    priority = _APNS_PRIORITY[_priority(content)]
    headers = {"apns-priority": "5" if content.silent else priority}
    ttl = _ttl(content)
    if ttl is not None:
        expiration = 0 if ttl == 0 else int(now.timestamp()) + ttl
        headers["apns-expiration"] = str(expiration)
    collapse_id = truncate_utf8(
        content.collapse_key or content.collapse_id_default, APNS_COLLAPSE_ID_MAX_BYTES
    )
    if collapse_id:
        headers["apns-collapse-id"] = collapse_id
    return headers


def _actions_as_data(actions: Sequence[Action]) -> list[dict[str, str]]:
    result = []
    for action in actions:
        item = {"id": action.id, "title": action.title}
        if action.url:
            item["url"] = action.url
        if action.icon:
            item["icon"] = action.icon
        result.append(item)
    return result


def _web_notification_options(content: PushContent, display: Display) -> dict[str, Any]:
    """The ``showNotification`` options besides title, body and image, shared by web
    push and FCM's web block, named as the Notifications API names them. Options at
    the API's default (false, empty) are left out: the worker passes the object on."""
    options: dict[str, Any] = {}
    if content.icon:
        options["icon"] = content.icon
    if content.web_badge:
        options["badge"] = content.web_badge
    tag = content.web_tag
    if tag:
        options["tag"] = tag
        if content.renotify:  # the API refuses renotify without a tag
            options["renotify"] = True
    if content.require_interaction:
        options["requireInteraction"] = True
    if content.vibrate:
        options["vibrate"] = list(content.vibrate)
    if display.actions:
        options["actions"] = [_web_action(action) for action in display.actions]
    return options


def _web_action(action: Action) -> dict[str, str]:
    item = {"action": action.id, "title": action.title}
    if action.icon:
        item["icon"] = action.icon
    return item


def _duration(milliseconds: int) -> str:
    """Milliseconds as a protobuf Duration in JSON (``200`` -> ``"0.2s"``), which is
    how FCM's ``vibrate_timings`` takes them."""
    seconds, millis = divmod(milliseconds, 1000)
    return f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s"


def _is_dropped_from_fcm_data(key: str) -> bool:
    return key in _FCM_DROPPED_DATA_KEYS or key.startswith(_FCM_DROPPED_DATA_PREFIXES)


def _android_config(content: PushContent, display: Display, collapse_key: str) -> dict[str, Any]:
    android: dict[str, Any] = {"priority": _ANDROID_PRIORITY[_priority(content)]}
    ttl = _ttl(content)
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
    if collapse_key:
        android["collapse_key"] = collapse_key
    notification = dict(_android_notification_items(content, display, collapse_key))
    if notification and not content.silent:
        android["notification"] = notification
    return android


def _android_notification_items(
    content: PushContent, display: Display, collapse_key: str
) -> Iterator[tuple[str, Any]]:
    tag = content.tag or collapse_key
    if tag:
        # A tag replaces the notification already in the drawer, the visible half of
        # collapsing (collapse_key only drops undelivered messages).
        yield "tag", tag
    if content.sound:
        yield "sound", content.sound
    if display.image_url:
        yield "image", display.image_url
    if content.category:
        yield "click_action", content.category
    if content.vibrate:
        yield "vibrate_timings", [_duration(ms) for ms in content.vibrate]


def _fcm_apns_config(content: PushContent, display: Display, now: datetime) -> dict[str, Any]:
    if content.silent:
        headers = {"apns-push-type": "background", **_apns_headers(content, now)}
        return {"headers": headers, "payload": {"aps": {"content-available": 1}}}
    config: dict[str, Any] = {"headers": _apns_headers(content, now)}
    aps = _apns_aps_options(content, display.image_url)
    if aps:
        config["payload"] = {"aps": aps}
    return config


def _webpush_config(content: PushContent, display: Display) -> dict[str, Any]:
    """Web specifics only: title, body and image come from the top-level
    ``notification``, which FCM merges in, so they are not sent (and paid for) twice;
    the other Notifications API options are web push's own (``build_webpush``)."""
    headers: dict[str, str] = {}
    ttl = _ttl(content)
    if ttl is not None:
        headers["TTL"] = str(ttl)
    headers["Urgency"] = _WEBPUSH_URGENCY[_priority(content)]
    webpush: dict[str, Any] = {"headers": headers}
    if content.silent:  # data only: the service worker gets `data`, nothing is shown
        return webpush
    options = _web_notification_options(content, display)
    if options:
        webpush["notification"] = options
    if _is_https_url(content.url):
        webpush["fcm_options"] = {"link": content.url}
    return webpush


def _is_https_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket; not a link FCM would take
        return False
    return parts.scheme.lower() == "https" and bool(parts.netloc)
