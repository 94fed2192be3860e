"""What app events mean for campaigns: opens, clicks, conversions, and their rollups.

Ingestion (segments/events.py) hands `record_engagement` every batch of newly stored
events inside the transaction that stored them; everything here commits or rolls
back with the batch. Invariants:

* a delivery's first open counts once (campaign_delivery_engagement, keyed by the
  delivery), its first click once (the same row's `clicked`, flipped once), each
  (delivery, action) click once (campaign_delivery_clicks), each (run, goal, user)
  conversion once (campaign_conversions). Counting only the rows an
  `INSERT ... ON CONFLICT DO NOTHING RETURNING` (or a guarded UPDATE ... RETURNING)
  reports as new makes a repeated or concurrent report count nothing twice.
* every count also lands in a per-minute bucket (campaign_engagement_buckets, one
  upsert `count = count + excluded.count` per batch); analytics read the buckets and
  the run counters only (campaigns/analytics.py), never the events.
* set-based: a batch costs a fixed handful of statements, whatever its size.

Semantics (docs/decisions.md, "Engagement and conversions"): a click implies an
open; a conversion is view-through - the goal event happened within the goal's
window after a push of the run was *sent* to the user (sent_at <= occurred_at <=
sent_at + window, both edges inclusive), whether or not it was opened.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Count, Field, Model, QuerySet
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from campaigns.models import (
    CampaignRun,
    Conversion,
    DeliveryClick,
    DeliveryEngagement,
    EngagementBucket,
    EngagementMetric,
    PushCampaign,
)
from campaigns.validation import MAX_GOAL_WINDOW_HOURS, clean_stored_goal
from core.db import binary_cursor
from core.errors import InvalidInput
from delivery.models import PushDelivery
from segments.events import PUSH_CLICKED, PUSH_OPENED, DeliveryRef, IngestedEvent
from segments.rules import evaluate_properties

logger = logging.getLogger("herald.engagement")

Metric = EngagementMetric
# Rows per INSERT statement: a batch of 1000 events stays one statement per table,
# far below SQLite's 32,766 bound parameters.
CHUNK = 1000
# Campaigns whose latest run started longer ago than the longest window plus this
# slack are not searched for conversions: a run's pushes go out within days of its
# start (local-time delivery, quiet hours and throttling delay them by < 2 days).
SEND_SLACK = timedelta(days=7)


class BucketKey(NamedTuple):
    campaign_id: uuid.UUID
    run: int
    minute: datetime
    metric: str
    key: str
    provider: str
    platform: str


Buckets = Counter[BucketKey]


def minute_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


# ------------------------------------------------------------------ raw SQL helpers


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _column(model: type[Model], name: str) -> str:
    """The quoted column of a field (attname: `campaign_id` for the FK)."""
    column = _field(model, name).column
    assert column is not None
    return connection.ops.quote_name(column)


def _array_element(value: Any) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | uuid.UUID):
        return str(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal ('{a,"b c"}') of uuids, ints, bools, datetimes and
    strings, cast by the statement. One string parameter instead of a list: the
    project's client-side binding quotes a list element by element, which cost a
    quarter of a batch (bench/analytics.py)."""
    return "{" + ",".join(_array_element(v) for v in values) + "}"


def _insert(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str],
    action: str,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT `rows` (values of the fields named in `columns`, attnames) with
    `ON CONFLICT (conflict) <action>`; the RETURNING columns of the rows written.

    PostgreSQL: one statement per call, `SELECT * FROM unnest(%s::type[], ...)` - one
    array parameter per column, so parsing and planning cost the same for 10 rows or
    10,000. SQLite (>= 3.35 for RETURNING): a VALUES list per CHUNK rows, values
    prepared as the ORM would store them (uuid hex, naive UTC text).
    """
    if not rows:
        return []
    fields = [_field(model, c) for c in columns]
    quote = connection.ops.quote_name
    names = ", ".join(_column(model, c) for c in columns)
    head = f"INSERT INTO {quote(model._meta.db_table)} ({names}) "
    tail = f" ON CONFLICT ({', '.join(_column(model, c) for c in conflict)}) {action}"
    if returning:
        tail += f" RETURNING {', '.join(_column(model, c) for c in returning)}"
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
            cursor.execute(
                f"{head}SELECT * FROM unnest({arrays}){tail}",  # noqa: S608 (names, %s)
                [_array_literal(column) for column in zip(*rows, strict=True)],
            )
            return cursor.fetchall() if returning else []
        prepare = [f.get_db_prep_value for f in fields]
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            params = [
                prep(value, connection)
                for row in chunk
                for prep, value in zip(prepare, row, strict=True)
            ]
            cursor.execute(f"{head}VALUES {', '.join([placeholder] * len(chunk))}{tail}", params)
            if returning:
                out.extend(cursor.fetchall())
    return out


def _insert_returning(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """The rows that were new: INSERT ... ON CONFLICT DO NOTHING RETURNING."""
    return _insert(
        model, columns, rows, conflict=conflict, action="DO NOTHING", returning=returning
    )


BUCKET_COLUMNS = ("campaign_id", "run", "minute", "metric", "key", "provider", "platform", "count")


def bump_buckets(buckets: Mapping[BucketKey, int]) -> None:
    """Add `buckets` to the rollup: one upsert (`count = count + excluded.count`), in
    key order so concurrent batches lock rows in the same order."""
    if not buckets:
        return
    table = connection.ops.quote_name(EngagementBucket._meta.db_table)
    count = connection.ops.quote_name("count")
    _insert(
        EngagementBucket,
        BUCKET_COLUMNS,
        [(*key, n) for key, n in sorted(buckets.items())],
        conflict=BUCKET_COLUMNS[:-1],
        action=f"DO UPDATE SET {count} = {table}.{count} + excluded.{count}",
    )


# ------------------------------------------------------------------- opens, clicks


def _earliest(events: Iterable[IngestedEvent], key: Any) -> dict[Any, IngestedEvent]:
    first: dict[Any, IngestedEvent] = {}
    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        first.setdefault(key(event), event)
    return first


def _ref(event: IngestedEvent) -> DeliveryRef:
    assert event.delivery is not None
    return event.delivery


def _bucket(event: IngestedEvent, metric: str, key: str = "") -> BucketKey:
    ref = _ref(event)
    assert ref.campaign_id is not None
    return BucketKey(
        ref.campaign_id,
        ref.run,
        minute_of(event.occurred_at),
        metric,
        key,
        ref.provider,
        ref.platform,
    )


def _record_touches(events: Sequence[IngestedEvent], buckets: Buckets) -> None:
    """push_opened / push_clicked of campaign deliveries (test pushes have none)."""
    touches = [
        e
        for e in events
        if e.name in (PUSH_OPENED, PUSH_CLICKED)
        and e.delivery is not None
        and e.delivery.campaign_id is not None
    ]
    if not touches:
        return
    # A click implies an open: the first touch of a delivery opens it.
    opens = _earliest(touches, lambda e: _ref(e).id)
    new = _insert_returning(
        DeliveryEngagement,
        ("delivery_id", "campaign_id", "run", "opened_at", "clicked"),
        [(d, _ref(e).campaign_id, _ref(e).run, e.occurred_at, False) for d, e in opens.items()],
        conflict=("delivery_id",),
        returning=("delivery_id",),
    )
    for (delivery_id,) in new:
        buckets[_bucket(opens[delivery_id], Metric.OPENED)] += 1

    clicks = [e for e in touches if e.name == PUSH_CLICKED]
    if not clicks:
        return
    first_clicks = _earliest(clicks, lambda e: _ref(e).id)
    table = connection.ops.quote_name(DeliveryEngagement._meta.db_table)
    ids = sorted(first_clicks)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET clicked = %s WHERE delivery_id IN "  # noqa: S608
            f"({', '.join(['%s'] * len(ids))}) AND clicked = %s RETURNING delivery_id",
            [True, *ids, False],
        )
        for (delivery_id,) in cursor.fetchall():
            buckets[_bucket(first_clicks[delivery_id], Metric.CLICKED)] += 1

    per_action = _earliest(clicks, lambda e: (_ref(e).id, e.action_id))
    new_actions = _insert_returning(
        DeliveryClick,
        ("campaign_id", "delivery_id", "action_id"),
        [(_ref(e).campaign_id, d, a) for (d, a), e in per_action.items()],
        conflict=("campaign_id", "delivery_id", "action_id"),
        returning=("delivery_id", "action_id"),
    )
    for delivery_id, action_id in new_actions:
        event = per_action[(delivery_id, action_id)]
        buckets[_bucket(event, Metric.ACTION, action_id)] += 1


# --------------------------------------------------------------------- conversions


@dataclass(frozen=True, slots=True)
class Goal:
    campaign_id: uuid.UUID
    index: int
    event: str
    filter: Mapping[str, Any] | None
    window: timedelta


@dataclass(slots=True)
class _Candidate:
    event: IngestedEvent
    delivery_id: int
    sent_at: datetime
    provider: str
    platform: str


def goals_by_event(
    *, project_ids: Iterable[uuid.UUID], since: datetime
) -> dict[tuple[uuid.UUID, str], list[Goal]]:
    """(project, event name) -> the goals of campaigns that may have pushes within a
    window of `since` or later: a run of theirs started after since - window - slack.

    Runs, not the campaign's `sent_at`: an explicit push starts a run without touching
    its campaign (a draft stays a draft), and its pushes convert like any other."""
    horizon = since - timedelta(hours=MAX_GOAL_WINDOW_HOURS) - SEND_SLACK
    found: dict[tuple[uuid.UUID, str], list[Goal]] = defaultdict(list)
    recent = CampaignRun.objects.filter(
        started_at__gte=horizon, campaign__project_id__in=set(project_ids)
    ).values("campaign_id")
    rows = (
        PushCampaign.objects.filter(pk__in=recent)
        .exclude(goals=[])
        .values_list("id", "project_id", "goals")
    )
    for campaign_id, project_id, goals in rows:
        for index, stored in enumerate(goals if isinstance(goals, list) else ()):
            try:
                goal = clean_stored_goal(index, stored)
            except InvalidInput as exc:
                # One goal no longer valid (edited outside the API) must not fail the
                # whole batch of every project's events: it counts nothing until fixed.
                logger.warning(
                    "campaign %s: ignoring goal %d: %s %s",
                    campaign_id,
                    index,
                    exc.message,
                    exc.details,
                )
                continue
            found[(project_id, goal["event"])].append(
                Goal(
                    campaign_id=campaign_id,
                    index=index,
                    event=goal["event"],
                    filter=goal["filter"],
                    window=timedelta(hours=goal["window_hours"]),
                )
            )
    return found


def _record_conversions(events: Sequence[IngestedEvent], buckets: Buckets) -> None:
    if not events:
        return
    since = min(e.occurred_at for e in events)
    goals = goals_by_event(project_ids={e.project_id for e in events}, since=since)
    if not goals:
        return
    goal_events = [e for e in events if (e.project_id, e.name) in goals]
    if not goal_events:
        return
    campaign_ids = {g.campaign_id for gs in goals.values() for g in gs}
    widest = max(g.window for gs in goals.values() for g in gs)
    low = min(e.occurred_at for e in goal_events) - widest
    high = max(e.occurred_at for e in goal_events)
    # The users' sent pushes of those campaigns in the batch's span: the
    # (app_user, sent_at) index; bounded by the batch's users and their pushes.
    pushes: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for row in _sent_pushes({e.app_user_id for e in goal_events}, campaign_ids, low, high):
        pushes[row[0]].append(row[1:])
    if not pushes:
        return
    # (campaign, run, goal, user) -> the earliest matching event and, for it, the
    # latest push of that run sent at or before it (whose provider/platform it counts under).
    best: dict[tuple[uuid.UUID, int, int, uuid.UUID], _Candidate] = {}
    matches: dict[tuple[int, uuid.UUID, int], bool] = {}
    now = timezone.now()
    for event in goal_events:
        event_goals = goals[(event.project_id, event.name)]
        for delivery_id, campaign_id, run, sent_at, provider, platform in pushes.get(
            event.app_user_id, ()
        ):
            for goal in event_goals:
                if goal.campaign_id != campaign_id:
                    continue
                if not sent_at <= event.occurred_at <= sent_at + goal.window:
                    continue
                cache_key = (event.id, campaign_id, goal.index)
                if cache_key not in matches:
                    matches[cache_key] = goal.filter is None or evaluate_properties(
                        goal.filter, event.properties, now=now
                    )
                if not matches[cache_key]:
                    continue
                key = (campaign_id, run, goal.index, event.app_user_id)
                if _better(best.get(key), event, sent_at, delivery_id):
                    best[key] = _Candidate(event, delivery_id, sent_at, provider, platform)
    if not best:
        return
    new = _insert_returning(
        Conversion,
        (
            "campaign_id",
            "run",
            "goal_index",
            "app_user_id",
            "delivery_id",
            "event_id",
            "occurred_at",
        ),
        [
            (campaign_id, run, index, user, c.delivery_id, c.event.id, c.event.occurred_at)
            for (campaign_id, run, index, user), c in best.items()
        ],
        conflict=("campaign_id", "run", "goal_index", "app_user_id"),
        returning=("campaign_id", "run", "goal_index", "app_user_id"),
    )
    for campaign_id, run, index, user in new:
        key = (_uuid(campaign_id), run, index, _uuid(user))
        c = best[key]
        buckets[
            BucketKey(
                key[0],
                run,
                minute_of(c.event.occurred_at),
                Metric.CONVERTED,
                str(index),
                c.provider,
                c.platform,
            )
        ] += 1


def _sent_pushes(
    users: set[uuid.UUID], campaign_ids: set[uuid.UUID], low: datetime, high: datetime
) -> Iterable[tuple[Any, ...]]:
    """(user, delivery, campaign, run, sent_at, provider, platform) of the users' pushes
    of those campaigns sent between low and high."""
    if connection.vendor == "postgresql":
        # Binary arrays: Django's IN (...) of a batch's user ids cost more in Python
        # quoting than the query itself (bench/events.py).
        with binary_cursor(connection) as cursor:
            cursor.execute(
                "SELECT d.app_user_id, d.id, d.campaign_id, d.run, d.sent_at, d.provider,"
                " t.platform FROM push_deliveries d JOIN push_tokens t ON t.id = d.token_id"
                " WHERE d.app_user_id = ANY(%b) AND d.campaign_id = ANY(%b)"
                " AND d.status = %b AND d.sent_at >= %b AND d.sent_at <= %b",
                [list(users), list(campaign_ids), PushDelivery.Status.SENT.value, low, high],
            )
            return list(cursor.fetchall())
    return (
        PushDelivery.objects.filter(
            app_user_id__in=users,
            campaign_id__in=campaign_ids,
            status=PushDelivery.Status.SENT,
            sent_at__gte=low,
            sent_at__lte=high,
        )
        .order_by()
        .values_list(
            "app_user_id", "id", "campaign_id", "run", "sent_at", "provider", "token__platform"
        )
    )


def _better(
    seen: _Candidate | None, event: IngestedEvent, sent_at: datetime, delivery_id: int
) -> bool:
    """The earliest event converts; for one event, the latest push before it counts."""
    if seen is None:
        return True
    if seen.event is not event:
        return (event.occurred_at, event.id) < (seen.event.occurred_at, seen.event.id)
    return (sent_at, delivery_id) > (seen.sent_at, seen.delivery_id)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# ------------------------------------------------------------------------ listener


def record_engagement(events: Sequence[IngestedEvent]) -> None:
    """The event listener (registered in CampaignsConfig.ready): count a batch of
    newly stored events' opens, clicks and conversions, and bump their rollups.

    Runs inside ingestion's transaction; an error aborts the batch (nothing counted).
    """
    if not events:
        return
    buckets: Buckets = Counter()
    _record_touches(events, buckets)
    _record_conversions(events, buckets)
    bump_buckets(buckets)


# ----------------------------------------------------------------- sends (settle)


def record_run_sends(*, campaign_id: uuid.UUID, run: int, rows: QuerySet[PushDelivery]) -> None:
    """Replace the run's sent/failed buckets by a recount of its rows (`rows`): one
    GROUP BY over the run (minute of sent_at, or of the claim for a failure, status,
    provider, token platform). Called when the run settles (campaigns.runs), inside
    its transaction, so the send path itself does no per-row work for analytics and
    a re-settle replaces rather than adds."""
    EngagementBucket.objects.filter(
        campaign_id=campaign_id, run=run, metric__in=(Metric.SENT, Metric.FAILED)
    ).delete()
    status_metric: dict[str, str] = {
        PushDelivery.Status.SENT: Metric.SENT,
        PushDelivery.Status.FAILED: Metric.FAILED,
    }
    counts = (
        rows.filter(status__in=list(status_metric))
        .order_by()
        .annotate(bucket=Trunc(Coalesce("sent_at", "claimed_at", "created_at"), "minute"))
        .values_list("bucket", "status", "provider", "token__platform")
        .annotate(n=Count("id"))
        .values_list("bucket", "status", "provider", "token__platform", "n")
    )
    EngagementBucket.objects.bulk_create(
        EngagementBucket(
            campaign_id=campaign_id,
            run=run,
            minute=bucket,
            metric=status_metric[status],
            key="",
            provider=provider,
            platform=platform,
            count=n,
        )
        for bucket, status, provider, platform, n in counts
    )
