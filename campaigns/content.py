"""Clean content fields -> PushContent (the pure payload builders' input), and the size check.

The one place content becomes a ``PushContent`` and the one place PAYLOAD_TOO_LARGE
is raised, for campaigns (API, admin, commands, explicit pushes) and test pushes
alike, so both are measured and refused the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaigns.models import CampaignRun, PushCampaign
from core.errors import InvalidInput
from delivery.payloads import (
    FCM_PLATFORMS,
    MAX_PAYLOAD_BYTES,
    PRIORITY_HIGH,
    Action,
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    build_webpush,
    payload_limit,
    payload_size_report,
    personal_text,
    select_display,
    sent_size,
)
from delivery.templating import MAX_NAMES

# The fields a push's content is made of, a campaign's and a test push's alike: the
# builders' input minus what Herald derives itself (collapse id, category, campaign id).
CONTENT_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(PushContent)
    if f.init and f.name not in ("collapse_id_default", "category", "campaign_id")
)


def push_content(
    fields: Mapping[str, Any], *, collapse_id_default: str = "", campaign_id: str = ""
) -> PushContent:
    """The content of a push from clean field values (``campaigns.validation`` output).

    Only ``title`` and ``body`` are required; absent fields take the model's defaults.
    """
    return PushContent(
        title=fields["title"],
        body=fields["body"],
        data=fields.get("data") or {},
        localizations=fields.get("localizations") or {},
        image_url=fields.get("image_url", ""),
        icon=fields.get("icon", ""),
        web_badge=fields.get("web_badge", ""),
        url=fields.get("url", ""),
        actions=tuple(
            Action(id=a["id"], title=a["title"], url=a.get("url", ""), icon=a.get("icon", ""))
            for a in fields.get("actions") or ()
        ),
        sound=fields.get("sound", ""),
        badge=fields.get("badge"),
        vibrate=tuple(fields.get("vibrate") or ()),
        require_interaction=fields.get("require_interaction", False),
        renotify=fields.get("renotify", False),
        tag=fields.get("tag", ""),
        collapse_key=fields.get("collapse_key", ""),
        collapse_id_default=collapse_id_default,
        priority=fields.get("priority", PRIORITY_HIGH),
        ttl_seconds=fields.get("ttl_seconds"),
        campaign_id=campaign_id,
        silent=fields.get("silent", False),
    )


@dataclass(frozen=True)
class RunOverrides:
    """What one run replaces of its campaign's content (an explicit push's `data`,
    `title`, `body`, `silent`); empty / None: the campaign's own."""

    data: dict[str, Any] | None = None
    title: str = ""
    body: str = ""
    silent: bool | None = None

    @classmethod
    def of(cls, run: CampaignRun) -> RunOverrides:
        """A run's stored overrides; its `silent` is always set (decided at its start)."""
        return cls(run.data_override, run.title_override, run.body_override, run.silent)


def campaign_content(campaign: PushCampaign, overrides: RunOverrides | None = None) -> PushContent:
    """The content of a campaign's pushes, with a run's overrides applied.

    An overridden title or body replaces that text for every language: the
    localizations' entries for it are not used for the run (an override is what the
    operator wants everyone to read).
    """
    fields = {name: getattr(campaign, name) for name in CONTENT_FIELDS}
    if overrides is not None:
        if overrides.data is not None:
            fields["data"] = overrides.data
        if overrides.silent is not None:
            fields["silent"] = overrides.silent
        replaced = {name for name in ("title", "body") if getattr(overrides, name)}
        for name in replaced:
            fields[name] = getattr(overrides, name)
        if replaced:
            kept = (
                (language, {k: v for k, v in texts.items() if k not in replaced})
                for language, texts in fields["localizations"].items()
            )
            fields["localizations"] = {language: texts for language, texts in kept if texts}
    return push_content(
        fields, collapse_id_default=f"c-{campaign.id}", campaign_id=str(campaign.id)
    )


def check_content_size(content: PushContent, *, webpush: bool = True) -> None:
    """Refuse content whose built APNs or FCM payload would exceed 4096 bytes or whose
    web push JSON would exceed 3,993 (4,096 once encrypted; skipped when ``webpush`` is
    false: content that goes to no browser), or whose placeholders name more than
    MAX_NAMES values (each is a column the send path reads).

    PAYLOAD_TOO_LARGE names the worst payload in the message (the one furthest over its
    limit) and lists every overflowing one (provider, language or null for the default
    text, size, limit).
    """
    if len(content.placeholder_names) > MAX_NAMES:
        raise InvalidInput(
            f"The texts name {len(content.placeholder_names)} different values in "
            f"placeholders; at most {MAX_NAMES}.",
            code="INVALID_PLACEHOLDER",
            details={"field": "title", "problem": "too_many_names", "limit": MAX_NAMES},
        )
    report = payload_size_report(content, webpush=webpush)
    if report:
        worst = max(report, key=lambda r: r.size - r.limit)
        raise InvalidInput(
            f"The {worst.provider} payload would be {worst.size} bytes; "
            f"the limit is {worst.limit}. Shorten the text or data.",
            code="PAYLOAD_TOO_LARGE",
            details={
                "limit": worst.limit,
                "payloads": [
                    {
                        "provider": r.provider,
                        "language": r.language or None,
                        "size": r.size,
                        "limit": r.limit,
                    }
                    for r in report
                ],
            },
        )


def reaches_browsers(platforms: Sequence[str]) -> bool:
    """Whether a campaign with these ``platforms`` sends web push (empty: every one)."""
    return not platforms or "web" in platforms


def check_payload_size(campaign: PushCampaign, overrides: RunOverrides | None = None) -> None:
    """``check_content_size`` for a campaign as it would be sent (see there); web push
    is measured unless the campaign's ``platforms`` leave web out."""
    check_content_size(
        campaign_content(campaign, overrides), webpush=reaches_browsers(campaign.platforms)
    )


def payload_preview(
    content: PushContent,
    *,
    language: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
    webpush: bool = True,
) -> dict[str, Any]:
    """What a recipient whose language is `language` gets, built by the real builders.

    The text, image and buttons after localization fallback (what the console's iOS /
    Android / web mock-ups show) with the text's placeholders filled from `values` (a
    sample user's attributes and external_id; none: every placeholder takes its
    default), the payloads themselves (APNs headers and payload, FCM's message per
    platform, the web push headers and JSON unless `webpush` is false, as the send
    path builds them, `herald_delivery_id` aside) and the byte size of each as sent
    (with the longest delivery id) with its limit (`limits`; `largest` and `limit`
    are APNs' and FCM's, 4096), plus every payload of any language that is over its
    limit (`payload_size_report`, the check a save makes).
    """
    title, body = personal_text(content, language, values or {})
    text = None if content.silent else (title, body)
    display = select_display(content, language)
    apns_payload, apns_headers = build_apns(
        content, Recipient(language=language, platform="ios", text=text), now=now
    )
    payloads: dict[str, Any] = {"apns": {"headers": apns_headers, "payload": apns_payload}}
    sizes = {"apns": sent_size("apns", apns_payload)}
    for platform in FCM_PLATFORMS:
        recipient = Recipient(language=language, platform=platform, text=text)
        message = build_fcm(content, recipient, now=now)
        payloads[f"fcm_{platform}"] = message
        sizes[f"fcm_{platform}"] = sent_size("fcm", message)
    largest = max(sizes.values())
    limits = dict.fromkeys(sizes, MAX_PAYLOAD_BYTES)
    if webpush:
        web_recipient = Recipient(language=language, platform="web", text=text)
        web_payload, web_headers = build_webpush(content, web_recipient, now=now)
        payloads["webpush"] = {"headers": web_headers, "payload": web_payload}
        sizes["webpush"] = sent_size("webpush", web_payload)
        limits["webpush"] = payload_limit("webpush")
    return {
        "language": language,
        "silent": content.silent,
        "placeholders": list(content.placeholder_names),
        "title": title,
        "body": body,
        "image_url": "" if content.silent else display.image_url,
        "url": content.url,
        "actions": [] if content.silent else [_preview_action(a) for a in display.actions],
        "sizes": sizes,
        "limits": limits,
        "largest": largest,
        "limit": MAX_PAYLOAD_BYTES,
        "too_large": [
            {
                "provider": r.provider,
                "language": r.language or None,
                "size": r.size,
                "limit": r.limit,
            }
            for r in payload_size_report(content, webpush=webpush)
        ],
        "payloads": payloads,
    }


def _preview_action(action: Action) -> dict[str, str]:
    item = {"id": action.id, "title": action.title}
    if action.icon:
        item["icon"] = action.icon
    return item
