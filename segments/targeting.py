"""Campaign targeting: a campaign's `targeting` object narrowing its audience.

Next to audience resolution (segments/audience.py), which is its one caller; segment
rules are compiled through the public `compile_rules`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import (
    Exists,
    OuterRef,
    QuerySet,
)

from core.models import Project
from delivery.models import PushToken
from segments.models import AppUser, Segment
from segments.rules import compile_rules
from segments.rules.values import DAY

# ---------------------------------------------------------------------- targeting


def _include_exclude(targeting: Mapping[str, Any], key: str) -> tuple[list[Any], list[Any]]:
    rule = targeting.get(key) or {}
    return list(rule.get("include") or []), list(rule.get("exclude") or [])


def _language_node(languages: list[str]) -> dict[str, Any]:
    """A language matches itself and its regional variants ("en" matches "en-GB")."""
    nodes: list[dict[str, Any]] = [{"attr": "language", "op": "in", "value": languages}]
    for language in languages:
        nodes.append({"attr": "language", "op": "starts_with", "value": f"{language}-"})
        nodes.append({"attr": "language", "op": "starts_with", "value": f"{language}_"})
    return {"any": nodes}


def _user_data_nodes(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    nodes = []
    for key, wanted in mapping.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        scalars = [v for v in values if isinstance(v, str | int | float | bool)]
        if scalars:
            nodes.append({"attr": key, "op": "in", "value": scalars})
        else:
            nodes.append({"any": []})  # nothing can match an empty list
    return nodes


def _segment_rules(project: Project, ids: list[Any]) -> list[Mapping[str, Any]]:
    wanted = []
    for raw in ids:
        try:
            wanted.append(uuid.UUID(str(raw)))
        except ValueError:
            continue
    segments = Segment.objects.filter(project=project, pk__in=wanted)
    return list(segments.values_list("rules", flat=True))


def targeting_filter(
    tokens: QuerySet[PushToken],
    targeting: Mapping[str, Any],
    *,
    project: Project,
    now: datetime,
    segment_rules: Mapping[str, Any] | None = None,
) -> QuerySet[PushToken]:
    """Narrow `tokens` by a campaign's `targeting` (every present key ANDed).

    Token-level: platforms (token.platform), app_versions (token.app_version) and
    subscribed_age {from, to} (whole days since the token was registered — when
    the device subscribed). User-level: countries (upper-cased), languages (a code
    matches its regional variants), users (external ids), segments (member of any
    included, of none excluded) and user_data {include: {key: value | [values]},
    exclude: {...}} on attributes (JSON equality, as the `in` operator). A token
    without a user fails every user-level include and passes every exclude.
    Unknown segment ids are ignored, so an include naming only unknown segments
    reaches no one rather than everyone.

    `segment_rules` (the campaign's own segment, validated) is one more include.
    Every user-level include and exclude is compiled into one users subquery
    (`app_user_id IN (SELECT id FROM app_users WHERE ...)`), so PostgreSQL scans
    app_users once and hashes the members once: a subquery per condition group
    made it join app_users twice (docs/decisions.md, "Audience queries at 1M users").
    """
    tokens = _token_targeting(tokens, targeting, now)
    include, exclude = _user_targeting(targeting, project)
    if segment_rules is not None:
        include.insert(0, segment_rules)
    users = AppUser.objects.filter(project=project)
    if include:
        members = users.filter(compile_rules({"all": include}, now=now))
        if exclude:  # the exact complement (NULL-safe), as a rule's `not` compiles
            members = members.filter(compile_rules({"any": exclude}, now=now, negate=True))
        return tokens.filter(app_user__in=members.values("id"))
    if exclude:  # tokens without a user pass an exclude: NOT EXISTS keeps them
        excluded = users.filter(pk=OuterRef("app_user_id")).filter(
            compile_rules({"any": exclude}, now=now)
        )
        return tokens.exclude(Exists(excluded))
    return tokens


def _token_targeting(
    tokens: QuerySet[PushToken], targeting: Mapping[str, Any], now: datetime
) -> QuerySet[PushToken]:
    platforms_in, platforms_out = _include_exclude(targeting, "platforms")
    if platforms_in:
        tokens = tokens.filter(platform__in=[p.lower() for p in platforms_in])
    if platforms_out:
        tokens = tokens.exclude(platform__in=[p.lower() for p in platforms_out])
    versions_in, versions_out = _include_exclude(targeting, "app_versions")
    if versions_in:
        tokens = tokens.filter(app_version__in=versions_in)
    if versions_out:
        tokens = tokens.exclude(app_version__in=versions_out)
    age = targeting.get("subscribed_age") or {}
    if "from" in age:
        tokens = tokens.filter(created_at__lte=now - int(age["from"]) * DAY)
    if "to" in age:
        tokens = tokens.filter(created_at__gt=now - (int(age["to"]) + 1) * DAY)
    return tokens


def _user_targeting(
    targeting: Mapping[str, Any], project: Project
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The user-level include and exclude rule nodes of `targeting`."""
    include: list[Mapping[str, Any]] = []
    exclude: list[Mapping[str, Any]] = []
    countries_in, countries_out = _include_exclude(targeting, "countries")
    if countries_in:
        include.append({"attr": "country", "op": "in", "value": [c.upper() for c in countries_in]})
    if countries_out:
        exclude.append({"attr": "country", "op": "in", "value": [c.upper() for c in countries_out]})
    languages_in, languages_out = _include_exclude(targeting, "languages")
    if languages_in:
        include.append(_language_node(languages_in))
    if languages_out:
        exclude.append(_language_node(languages_out))
    users_in, users_out = _include_exclude(targeting, "users")
    if users_in:
        include.append({"attr": "external_id", "op": "in", "value": users_in})
    if users_out:
        exclude.append({"attr": "external_id", "op": "in", "value": users_out})
    user_data = targeting.get("user_data") or {}
    include.extend(_user_data_nodes(user_data.get("include") or {}))
    exclude.extend(_user_data_nodes(user_data.get("exclude") or {}))
    segments_in, segments_out = _include_exclude(targeting, "segments")
    if segments_in:
        include.append({"any": _segment_rules(project, segments_in)})
    if segments_out:
        exclude.extend(_segment_rules(project, segments_out))
    return include, exclude
