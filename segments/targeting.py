"""Campaign targeting: the owner of a campaign's `targeting` object beyond its shape.

`validate_targeting` is the database half of its validation (every targeting.segments
id is a segment of the project), called by campaigns.services on create and PATCH;
`targeting_filter` narrows an audience by it, for resolve_audience (segments/audience.py).
Segment rules are read through `stored_rules` and compiled through `compile_rules`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db.models import (
    Exists,
    OuterRef,
    QuerySet,
)

from core.errors import InvalidInput
from core.models import Project
from delivery.models import PushToken
from segments.models import AppUser, Segment
from segments.rules import ATTRIBUTE_KEY_RE, RESERVED_ATTRS, compile_rules, stored_rules
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


def _check_user_data_keys(targeting: Mapping[str, Any], *, status: int = 400) -> None:
    """user_data names custom attributes: keys of the grammar's shape, none reserved.

    The key goes into the compiled SQL as a JSON path, and a reserved name (platform,
    created_at, ...) would compile as a column test that `in` cannot express.
    """
    user_data = targeting.get("user_data") or {}
    for side in ("include", "exclude"):
        for key in user_data.get(side) or {}:
            if ATTRIBUTE_KEY_RE.fullmatch(key) and key not in RESERVED_ATTRS:
                continue
            field = f"targeting.user_data.{side}"
            raise InvalidInput(
                f"{field}: '{key}' is not a custom attribute name (letters, digits, _ . : -; "
                f"max 64; not one of {', '.join(RESERVED_ATTRS)}).",
                status=status,
                details={"field": field, "key": key},
            )


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


class UnknownTargetingSegments(InvalidInput):
    """targeting.segments names ids that are not segments of the project.

    INVALID_SEGMENT_ID, the code `segment_id` uses. 400 when a campaign is saved with
    them (`validate_targeting`); 409 when a saved campaign's targeting names a segment
    deleted since (`targeting_filter`): the request is fine, the campaign is not, and
    targeting nobody in silence would hide it.
    """

    code = "INVALID_SEGMENT_ID"


def _parse_segment_ids(segment_ids: Iterable[Any]) -> dict[str, uuid.UUID | None]:
    """Each distinct raw id (input order) and its uuid, None when it is not one."""
    parsed: dict[str, uuid.UUID | None] = {}
    for raw in segment_ids:
        try:
            parsed[str(raw)] = uuid.UUID(str(raw))
        except ValueError:
            parsed[str(raw)] = None
    return parsed


def _project_segments(
    project: Project, parsed: Mapping[str, uuid.UUID | None]
) -> tuple[dict[uuid.UUID, Segment], list[str]]:
    """The project's segments among `parsed` (one query), and the raw ids that are not."""
    wanted = {u for u in parsed.values() if u is not None}
    found = {s.pk: s for s in Segment.objects.filter(project=project, pk__in=wanted)}
    unknown = [raw for raw, u in parsed.items() if u is None or u not in found]
    return found, unknown


def unknown_segment_ids(*, project: Project, segment_ids: Iterable[Any]) -> list[str]:
    """Ids in `segment_ids` that are not segments of `project`. Input order, once each."""
    return _project_segments(project, _parse_segment_ids(segment_ids))[1]


def _targeted_segment_ids(targeting: Mapping[str, Any]) -> list[Any]:
    include, exclude = _include_exclude(targeting, "segments")
    return [*include, *exclude]


def validate_targeting(*, project: Project, targeting: Mapping[str, Any] | None) -> None:
    """The checks of a campaign's targeting that need the database (create and PATCH).

    Every targeting.segments id must be a segment of `project`: a name, an unknown
    uuid or another project's id would otherwise be stored and target nobody. And
    user_data keys must be custom attribute names (VALIDATION_ERROR otherwise).
    The shape of `targeting` is checked before, by campaigns.validation.
    """
    if not targeting:
        return
    _check_user_data_keys(targeting)
    unknown = unknown_segment_ids(project=project, segment_ids=_targeted_segment_ids(targeting))
    if unknown:
        raise UnknownTargetingSegments(
            "targeting.segments names segments that are not segments of this project: "
            f"{', '.join(unknown)}. Use ids from GET /admin/projects/{{projectId}}/segments.",
            details={"field": "targeting.segments", "segment_ids": unknown},
        )


def _segment_rules(project: Project, targeting: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The clean rules of every targeted segment, by raw id (one query).

    A segment deleted since the campaign was saved raises UnknownTargetingSegments,
    one whose rules no longer validate StoredRulesInvalid: neither can be honoured,
    and both are for an operator to fix, not for a retry.
    """
    parsed = _parse_segment_ids(_targeted_segment_ids(targeting))
    if not parsed:
        return {}
    found, unknown = _project_segments(project, parsed)
    if unknown:
        raise UnknownTargetingSegments(
            "targeting.segments names segments that are not segments of this project "
            f"(deleted, or never were): {', '.join(unknown)}. Remove them from the "
            "campaign's targeting.",
            status=409,
            details={"field": "targeting.segments", "segment_ids": unknown},
        )
    rules: dict[str, dict[str, Any]] = {}
    for raw, pk in parsed.items():
        assert pk is not None
        rules[raw] = stored_rules(found[pk])
    return rules


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
    A targeted segment that is not the project's (deleted since) raises
    UnknownTargetingSegments, one whose stored rules no longer validate
    StoredRulesInvalid: both InvalidInput, never a silent empty audience.

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
    _check_user_data_keys(targeting, status=409)
    user_data = targeting.get("user_data") or {}
    include.extend(_user_data_nodes(user_data.get("include") or {}))
    exclude.extend(_user_data_nodes(user_data.get("exclude") or {}))
    segments = _segment_rules(project, targeting)
    segments_in, segments_out = _include_exclude(targeting, "segments")
    if segments_in:
        include.append({"any": [segments[str(raw)] for raw in dict.fromkeys(segments_in)]})
    if segments_out:
        exclude.extend(segments[str(raw)] for raw in dict.fromkeys(segments_out))
    return include, exclude
