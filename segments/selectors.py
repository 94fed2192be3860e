"""Audience reads: segments, rule previews, audience counts and explicit device lists."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.errors import NotFound
from core.models import Project
from core.pagination import NEWEST_FIRST, keyset_page
from delivery.models import Platform, Provider, PushToken
from segments.models import AppUser, Segment
from segments.rules import compile_rules
from segments.rules.values import STORED_DATE_RE

PREVIEW_SAMPLE_SIZE = 10
# Token row ids are bigints; a token string is never this short or all digits.
_MAX_ID_DIGITS = 19


def segment_get(*, project: Project, segment_id: uuid.UUID) -> Segment:
    try:
        return Segment.objects.get(pk=segment_id, project=project)
    except Segment.DoesNotExist as exc:
        raise NotFound("Segment not found.") from exc


def segment_page(
    *, project: Project, cursor: str | None, limit: int
) -> tuple[list[Segment], str | None]:
    """Newest first, keyset-paginated on (created_at, id) like the campaign list."""
    qs = Segment.objects.filter(project=project)
    return keyset_page(qs, keys=NEWEST_FIRST, cursor=cursor, limit=limit, descending=True)


def segment_members(
    *, project: Project, rules: Mapping[str, Any], now: datetime | None = None
) -> QuerySet[AppUser]:
    """The project's users matching validated `rules`, evaluated now."""
    return AppUser.objects.filter(project=project).filter(
        compile_rules(rules, now=now or timezone.now())
    )


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[AppUser]


def segment_preview(
    *, project: Project, rules: Mapping[str, Any], now: datetime | None = None
) -> Preview:
    """How many users match, and the most recently created few of them.

    Two queries: a COUNT and a LIMIT on the (project, created_at) index, which stops
    as soon as it has found the sample.
    """
    members = segment_members(project=project, rules=rules, now=now)
    sample = list(
        members.order_by("-created_at", "-id").only("id", "external_id", "attributes")[
            :PREVIEW_SAMPLE_SIZE
        ]
    )
    count = len(sample) if len(sample) < PREVIEW_SAMPLE_SIZE else members.count()
    return Preview(count=count, sample=sample)


def audience_counts(tokens: QuerySet[PushToken]) -> dict[str, Any]:
    """Size of a token audience by provider and by platform, in one GROUP BY query.

    Every provider and platform is present (0 when none), so clients can rely on
    the keys.
    """
    by_provider = dict.fromkeys(Provider.values, 0)
    by_platform = dict.fromkeys(Platform.values, 0)
    total = 0
    rows = tokens.order_by().values("provider", "platform").annotate(n=Count("id"))
    for row in rows:
        by_provider[row["provider"]] = by_provider.get(row["provider"], 0) + row["n"]
        by_platform[row["platform"]] = by_platform.get(row["platform"], 0) + row["n"]
        total += row["n"]
    return {"total": total, "by_provider": by_provider, "by_platform": by_platform}


def _dedupe(values: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


def _is_row_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_ID_DIGITS


def explicit_tokens(
    *,
    project: Project,
    device_ids: list[str],
    user_ids: list[str],
    platforms: list[str] | None = None,
) -> tuple[QuerySet[PushToken], list[str]]:
    """Active tokens for an explicit list, and the entries that reach nothing.

    `platforms` (a compatible door's target platforms; none: every platform) narrows
    the tokens, so an entry with active tokens on other platforms only reaches nothing.

    `device_ids` are token row ids (all digits) or token strings (APNs hex matched
    case-insensitively); `user_ids` are external ids, each standing for all of that
    user's active tokens. `invalid` lists, in input order and once each, device ids
    that are unknown or inactive and user ids with no active token (device ids
    first, then user ids). Three queries whatever the list length.
    """
    devices = _dedupe(device_ids)
    users = _dedupe(user_ids)
    row_ids = [int(d) for d in devices if _is_row_id(d)]
    strings = {d for d in devices if not _is_row_id(d)}
    strings |= {s.lower() for s in strings}
    active = PushToken.objects.filter(project=project, active=True)
    if platforms:
        active = active.filter(platform__in=platforms)

    found = active.filter(Q(id__in=row_ids) | Q(token__in=strings)).values_list("id", "token")
    found_ids: set[str] = set()
    found_tokens: set[str] = set()
    for row_id, token in found:
        found_ids.add(str(row_id))
        found_tokens.add(token)
    invalid = [
        d
        for d in devices
        if (d not in found_ids if _is_row_id(d) else not {d, d.lower()} & found_tokens)
    ]
    reachable_users = set(
        active.filter(app_user__external_id__in=users).values_list(
            "app_user__external_id", flat=True
        )
    )
    invalid += [u for u in users if u not in reachable_users]

    selection = Q(id__in=row_ids) | Q(token__in=strings)
    if users:
        selection |= Q(app_user__external_id__in=users)
    tokens = active.filter(selection) if devices or users else active.none()
    return tokens, invalid


# How many of a project's newest users the console reads to learn its attribute keys.
ATTRIBUTE_SCAN_USERS = 500
ATTRIBUTE_EXAMPLES = 20
_EXAMPLE_MAX_CHARS = 64


@dataclass(frozen=True)
class SeenAttribute:
    """An attribute key found on recent users: its commonest JSON type and a few values."""

    name: str
    type: str  # string | number | boolean | date | array
    examples: list[Any]


def _attribute_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "date" if STORED_DATE_RE.fullmatch(value) else "string"
    if isinstance(value, list):
        return "array"
    return None


def attributes_seen(*, project: Project, users: int = ATTRIBUTE_SCAN_USERS) -> list[SeenAttribute]:
    """The attribute keys on the project's newest `users` users, sorted by name.

    For the segment editor's attribute picker, so bounded on purpose: one query that
    stops after `users` rows of the (project, created_at) index, whatever the size of
    app_users; a key only older users carry can still be typed by hand. Each key
    comes with its commonest type and up to ATTRIBUTE_EXAMPLES distinct short values
    (array attributes: their elements), to suggest values.
    """
    rows = (
        AppUser.objects.filter(project=project)
        .order_by("-created_at", "-id")
        .values_list("attributes", flat=True)[:users]
    )
    types: dict[str, Counter[str]] = {}
    examples: dict[str, dict[Any, None]] = {}
    for attributes in rows:
        for key, value in (attributes or {}).items():
            kind = _attribute_type(value)
            if kind is None:
                continue
            types.setdefault(key, Counter())[kind] += 1
            seen = examples.setdefault(key, {})
            for item in value if isinstance(value, list) else [value]:
                short = not isinstance(item, str) or len(item) <= _EXAMPLE_MAX_CHARS
                if short and len(seen) < ATTRIBUTE_EXAMPLES and not isinstance(item, list):
                    seen[item] = None
    return [
        SeenAttribute(
            name=key,
            type=types[key].most_common(1)[0][0],
            examples=sorted(examples[key], key=lambda v: (str(type(v)), v)),
        )
        for key in sorted(types)
    ]


RECENT_USERS = 20


def recent_external_ids(*, project: Project, limit: int = RECENT_USERS) -> list[str]:
    """The external ids of the project's newest `limit` users, newest first: the
    composer's "Preview as" suggestions. One query that stops after `limit` rows of the
    (project, created_at) index, whatever the size of app_users."""
    return list(
        AppUser.objects.filter(project=project)
        .order_by("-created_at", "-id")
        .values_list("external_id", flat=True)[:limit]
    )
