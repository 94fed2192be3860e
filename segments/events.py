"""App events: what users did after a push (opens, clicks, goal events).

Segments owns events because they are facts about app users, as attributes are.
Ingestion (validation, idempotent storage) lives here; what an event *means* for a
campaign (open and click counts, conversions) is the campaigns app's, and nothing here
imports campaigns (DESIGN.md, "Shape"). So campaigns registers a listener at start-up
and ingestion hands it every newly stored event, inside the transaction that stored
them: a batch and the counts it feeds commit together, and a retried batch (same
``event_id``s) reaches no listener a second time.

A batch is linear and bounded: at most ``MAX_BATCH`` events, each checked on its own
(a bad one is refused with its index and a code, the others go on), then one query per
kind of reference (users by external id, users by id, deliveries) and one
``INSERT ... ON CONFLICT (project_id, event_id) DO NOTHING RETURNING`` for the lot.
The contract: docs/api.md, "Events"; storage and figures: docs/decisions.md, "App events".
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from core.db import binary_cursor, delete_in_id_windows
from core.errors import InvalidInput
from core.models import Project
from delivery.models import PushDelivery
from segments.models import AppUser, Event
from segments.rules import ATTRIBUTE_KEY_RE, canonical_date_value
from segments.rules.values import parse_instant

PUSH_OPENED: Final = "push_opened"
PUSH_CLICKED: Final = "push_clicked"
RESERVED_EVENT_NAMES: Final = frozenset({PUSH_OPENED, PUSH_CLICKED})

MAX_BATCH: Final = 1000
MAX_EVENT_ID: Final = 64
MAX_NAME: Final = 64
MAX_ACTION_ID: Final = 64
MAX_EXTERNAL_ID: Final = 255  # segments.services.MAX_EXTERNAL_ID (AppUser.external_id)
MAX_PROPERTIES: Final = 50
MAX_PROPERTY_STRING: Final = 1024
MAX_PROPERTIES_BYTES: Final = 4096
MAX_NUMBER: Final = 2**53
MAX_DELIVERY_ID: Final = 2**63 - 1
# A device clock a little ahead is tolerated; a week-old offline queue is not refused.
MAX_FUTURE: Final = timedelta(minutes=5)
MAX_AGE: Final = timedelta(days=30)
# A device's clock may run behind the server's: an event stamped up to this much
# before its push was sent is taken as happening when the push was sent (it cannot
# have come earlier); further back, it is refused.
CLOCK_SKEW: Final = timedelta(seconds=60)
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CONTROL_CHARS_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
EVENT_FIELDS: Final = frozenset(
    {
        "event_id",
        "external_id",
        "user_id",
        "name",
        "properties",
        "occurred_at",
        "delivery_id",
        "action_id",
    }
)
# A push the device may have shown: sent, or in flight when a worker died (an
# ``unknown`` row: the open is the proof it arrived). docs/api.md, "Events".
_SHOWN_STATUSES: Final = frozenset({PushDelivery.Status.SENT, PushDelivery.Status.UNKNOWN})
# SQLite binds at most 32,766 parameters per statement; 9 columns per row.
_SQLITE_ROWS_PER_INSERT: Final = 500


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """The push an event refers to, as ingestion found it (already checked to be the
    project's and the user's)."""

    id: int
    campaign_id: uuid.UUID | None  # None for a test push
    run: int
    provider: str
    platform: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One newly stored event (never a duplicate of an earlier ``event_id``)."""

    id: int
    project_id: uuid.UUID
    app_user_id: uuid.UUID
    name: str
    properties: Mapping[str, Any]
    occurred_at: datetime
    action_id: str  # push_clicked: the button; "" otherwise
    delivery: DeliveryRef | None


EventListener = Callable[[Sequence[IngestedEvent]], None]

_listeners: list[EventListener] = []


def register_event_listener(listener: EventListener) -> None:
    """Hand every batch of newly stored events to ``listener`` (idempotent)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unregister_event_listener(listener: EventListener) -> None:
    """Stop handing batches to ``listener`` (tests; a no-op if it was not registered)."""
    if listener in _listeners:
        _listeners.remove(listener)


def event_listeners() -> tuple[EventListener, ...]:
    return tuple(_listeners)


# ------------------------------------------------------------------- the answer


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused event: its position in the batch, its event_id if it had a usable
    one (None otherwise), a stable code and a message."""

    index: int
    event_id: str | None
    code: str
    message: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    stored: tuple[IngestedEvent, ...] = ()  # what the listeners were handed, in batch order


class EventRefused(Exception):
    """An event of a batch that cannot be stored; the batch goes on without it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------- the batch


def clean_event_batch(events: Any) -> list[Any]:
    """The batch's list of events, or 400 (nothing is stored) when the envelope is wrong."""
    if events is None:
        raise InvalidInput(
            "events is required.", code="MISSING_EVENTS", details={"field": "events"}
        )
    if not isinstance(events, list):
        raise InvalidInput(
            "events must be a list of event objects.",
            code="INVALID_EVENTS",
            details={"field": "events"},
        )
    if not events:
        raise InvalidInput(
            "events must hold at least one event.",
            code="INVALID_EVENTS",
            details={"field": "events"},
        )
    if len(events) > MAX_BATCH:
        raise InvalidInput(
            f"A batch holds at most {MAX_BATCH} events; split it.",
            code="TOO_MANY_EVENTS",
            details={"field": "events", "max": MAX_BATCH, "given": len(events)},
        )
    return events


@dataclass(slots=True)
class _Candidate:
    """An event whose own fields are valid; references not yet resolved."""

    index: int
    event_id: str
    name: str
    properties: dict[str, Any]
    properties_json: str
    occurred_at: datetime
    external_id: str | None
    user_id: uuid.UUID | None
    delivery_id: int | None
    action_id: str
    app_user_id: uuid.UUID | None = None
    delivery: DeliveryRef | None = None


def _string(event: Mapping[str, Any], key: str, *, maximum: int, code: str) -> str:
    value = event[key]
    if not isinstance(value, str) or not value or len(value) > maximum:
        raise EventRefused(code, f"{key} must be a string of 1-{maximum} characters.")
    if not value.strip() or CONTROL_CHARS_RE.search(value):
        raise EventRefused(code, f"{key} must not be blank or hold control characters.")
    return value


def _clean_properties(value: Any) -> tuple[dict[str, Any], str]:
    """A flat object of strings, finite numbers, booleans and nulls, bounded.

    ISO dates and date-times are stored in the canonical forms the segment rule engine
    compares (as user attributes are), so a goal filter reads them the same way.
    """
    if not isinstance(value, dict):
        raise EventRefused("INVALID_PROPERTIES", "properties must be a JSON object.")
    if len(value) > MAX_PROPERTIES:
        raise EventRefused("INVALID_PROPERTIES", f"At most {MAX_PROPERTIES} properties.")
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if not ATTRIBUTE_KEY_RE.fullmatch(key):
            raise EventRefused(
                "INVALID_PROPERTIES",
                f"'{key[:70]}' is not a property name (a letter or _, then letters, digits, "
                "_ . : -; max 64).",
            )
        if item is None or isinstance(item, bool):
            clean[key] = item
        elif isinstance(item, int | float):
            if not math.isfinite(item) or abs(item) > MAX_NUMBER:
                raise EventRefused(
                    "INVALID_PROPERTIES", f"properties.{key}: numbers must be within ±2^53."
                )
            clean[key] = item
        elif isinstance(item, str):
            if len(item) > MAX_PROPERTY_STRING:
                raise EventRefused(
                    "INVALID_PROPERTIES",
                    f"properties.{key}: strings are limited to {MAX_PROPERTY_STRING} characters.",
                )
            canonical = canonical_date_value(item) if item[:1].isdigit() else None
            clean[key] = canonical if canonical is not None else item
        else:
            raise EventRefused(
                "INVALID_PROPERTIES",
                f"properties.{key}: values must be a string, number, boolean or null "
                "(properties are flat).",
            )
    text = _json(clean)  # what is stored: measured once, written as is
    if len(text) > MAX_PROPERTIES_BYTES // 4 and len(text.encode()) > MAX_PROPERTIES_BYTES:
        raise EventRefused(
            "INVALID_PROPERTIES", f"properties are limited to {MAX_PROPERTIES_BYTES} bytes of JSON."
        )
    return clean, text


def _clean_occurred_at(value: Any, *, now: datetime) -> datetime:
    if value is None:
        return now
    moment = parse_instant(value) if isinstance(value, str) and len(value) <= 64 else None
    if moment is None:
        raise EventRefused(
            "INVALID_OCCURRED_AT",
            "occurred_at must be an ISO-8601 date-time with a UTC offset, e.g. "
            "'2026-12-01T09:30:00Z'.",
        )
    try:
        moment = moment.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59-23:59 is past year 9999 in UTC
        raise EventRefused("INVALID_OCCURRED_AT", "occurred_at is out of range.") from exc
    if moment > now + MAX_FUTURE:
        raise EventRefused(
            "OCCURRED_AT_IN_FUTURE", "occurred_at is more than 5 minutes in the future."
        )
    if moment < now - MAX_AGE:
        raise EventRefused("OCCURRED_AT_TOO_OLD", "occurred_at is more than 30 days in the past.")
    return moment


def _clean_event(index: int, event: Any, *, now: datetime) -> _Candidate:
    """One event's own fields, in a fixed order so the same input gets the same code."""
    if not isinstance(event, dict):
        raise EventRefused("INVALID_EVENT", "An event must be a JSON object.")
    stray = sorted(str(key) for key in event if key not in EVENT_FIELDS)
    if stray:
        raise EventRefused("INVALID_EVENT", f"Unknown field '{stray[0][:70]}'.")
    if event.get("event_id") is None:
        raise EventRefused("MISSING_EVENT_ID", "event_id is required.")
    event_id = _string(event, "event_id", maximum=MAX_EVENT_ID, code="INVALID_EVENT_ID")
    name = event.get("name")
    if name is None:
        raise EventRefused("MISSING_NAME", "name is required.")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise EventRefused("INVALID_NAME", "name must be 1-64 characters of A-Z a-z 0-9 _ . : -.")
    external_id = user_id = None
    if event.get("external_id") is not None and event.get("user_id") is not None:
        raise EventRefused("INVALID_USER", "Give external_id or user_id, not both.")
    if event.get("external_id") is not None:
        external_id = _string(
            event, "external_id", maximum=MAX_EXTERNAL_ID, code="INVALID_EXTERNAL_ID"
        )
    if event.get("user_id") is not None:
        raw = event["user_id"]
        try:
            user_id = uuid.UUID(raw) if isinstance(raw, str) and len(raw) <= 36 else None
        except ValueError:
            user_id = None
        if user_id is None:
            raise EventRefused("INVALID_USER_ID", "user_id must be an app user's UUID.")
    delivery_id = event.get("delivery_id")
    if delivery_id is not None and (
        isinstance(delivery_id, bool)
        or not isinstance(delivery_id, int)
        or not 1 <= delivery_id <= MAX_DELIVERY_ID
    ):
        raise EventRefused(
            "INVALID_DELIVERY_ID", "delivery_id must be a positive integer (a push's id)."
        )
    if external_id is None and user_id is None and delivery_id is None:
        raise EventRefused(
            "MISSING_USER", "Name the user: external_id or user_id (or a delivery_id)."
        )
    if name in RESERVED_EVENT_NAMES and delivery_id is None:
        raise EventRefused("MISSING_DELIVERY_ID", f"{name} requires the push's delivery_id.")
    action_id = ""
    if event.get("action_id") is not None:
        if name != PUSH_CLICKED:
            raise EventRefused("INVALID_ACTION_ID", f"action_id is for {PUSH_CLICKED} only.")
        action_id = _string(event, "action_id", maximum=MAX_ACTION_ID, code="INVALID_ACTION_ID")
    elif name == PUSH_CLICKED:
        raise EventRefused("MISSING_ACTION_ID", f"{PUSH_CLICKED} requires the button's action_id.")
    properties, properties_json = (
        _clean_properties(event["properties"])
        if event.get("properties") is not None
        else ({}, "{}")
    )
    return _Candidate(
        index=index,
        event_id=event_id,
        name=name,
        properties=properties,
        properties_json=properties_json,
        occurred_at=_clean_occurred_at(event.get("occurred_at"), now=now),
        external_id=external_id,
        user_id=user_id,
        delivery_id=delivery_id,
        action_id=action_id,
    )


@dataclass(slots=True)
class _Delivery:
    ref: DeliveryRef
    app_user_id: uuid.UUID | None
    status: str


@dataclass
class _References:
    """What a batch's events refer to, each kind found with one query."""

    users_by_external_id: dict[str, uuid.UUID] = field(default_factory=dict)
    user_ids: set[uuid.UUID] = field(default_factory=set)
    deliveries: dict[int, _Delivery] = field(default_factory=dict)


def _load_references(project: Project, candidates: Sequence[_Candidate]) -> _References:
    external_ids = sorted({c.external_id for c in candidates if c.external_id is not None})
    user_ids = sorted({c.user_id for c in candidates if c.user_id is not None})
    delivery_ids = sorted({c.delivery_id for c in candidates if c.delivery_id is not None})
    found = _References()
    connection = connections[Event.objects.db]
    if connection.vendor == "postgresql":
        # Each kind is one `= ANY(array)` with binary parameters: Django's IN (...) of
        # up to 1,000 quoted literals cost more than the rest of a batch (bench/events.py).
        with binary_cursor(connection) as cursor:
            if external_ids:
                cursor.execute(
                    "SELECT external_id, id FROM app_users"
                    " WHERE project_id = %b AND external_id = ANY(%b)",
                    [project.id, external_ids],
                )
                found.users_by_external_id = dict(cursor.fetchall())
            if user_ids:
                cursor.execute(
                    "SELECT id FROM app_users WHERE project_id = %b AND id = ANY(%b)",
                    [project.id, user_ids],
                )
                found.user_ids = {row[0] for row in cursor.fetchall()}
            if delivery_ids:
                # The delivery's project is its token's (a test push has no campaign).
                cursor.execute(
                    "SELECT d.id, d.app_user_id, d.campaign_id, d.run, d.provider, t.platform,"
                    " d.sent_at, d.status FROM push_deliveries d"
                    " JOIN push_tokens t ON t.id = d.token_id"
                    " WHERE d.id = ANY(%b) AND t.project_id = %b",
                    [delivery_ids, project.id],
                )
                _add_deliveries(found, cursor.fetchall())
        return found
    if external_ids:
        found.users_by_external_id = dict(
            AppUser.objects.filter(project=project, external_id__in=external_ids).values_list(
                "external_id", "id"
            )
        )
    if user_ids:
        found.user_ids = set(
            AppUser.objects.filter(project=project, id__in=user_ids).values_list("id", flat=True)
        )
    if delivery_ids:
        rows = PushDelivery.objects.filter(id__in=delivery_ids, token__project=project).values_list(
            "id", "app_user_id", "campaign_id", "run", "provider", "token__platform", "sent_at",
            "status",
        )  # fmt: skip
        _add_deliveries(found, rows)
    return found


def _add_deliveries(found: _References, rows: Iterable[Sequence[Any]]) -> None:
    for pk, app_user_id, campaign_id, run, provider, platform, sent_at, status in rows:
        ref = DeliveryRef(
            id=pk,
            campaign_id=campaign_id,
            run=run,
            provider=provider,
            platform=platform,
            sent_at=sent_at,
        )
        found.deliveries[pk] = _Delivery(ref=ref, app_user_id=app_user_id, status=status)


def _resolve(candidate: _Candidate, found: _References) -> None:
    """Set the candidate's user and delivery, or refuse it (no other project's rows are
    ever found, so another project's user or push reads exactly as a missing one)."""
    if candidate.external_id is not None:
        candidate.app_user_id = found.users_by_external_id.get(candidate.external_id)
        if candidate.app_user_id is None:
            raise EventRefused("UNKNOWN_USER", "No user of this project has this external_id.")
    elif candidate.user_id is not None:
        if candidate.user_id not in found.user_ids:
            raise EventRefused("UNKNOWN_USER", "No user of this project has this user_id.")
        candidate.app_user_id = candidate.user_id
    if candidate.delivery_id is None:
        return
    delivery = found.deliveries.get(candidate.delivery_id)
    if delivery is None:
        raise EventRefused("UNKNOWN_DELIVERY", "No push of this project has this delivery_id.")
    if candidate.app_user_id is None:
        if delivery.app_user_id is None:
            raise EventRefused(
                "MISSING_USER", "This push was sent to no known user: name the user."
            )
        candidate.app_user_id = delivery.app_user_id
    elif delivery.app_user_id != candidate.app_user_id:
        raise EventRefused("DELIVERY_USER_MISMATCH", "This push was not sent to this user.")
    sent_at = delivery.ref.sent_at
    if delivery.status not in _SHOWN_STATUSES or sent_at is None:
        raise EventRefused(
            "DELIVERY_NOT_SENT", f"This push has not been sent (status {delivery.status})."
        )
    if candidate.occurred_at < sent_at:
        if candidate.occurred_at < sent_at - CLOCK_SKEW:
            raise EventRefused(
                "OCCURRED_BEFORE_DELIVERY",
                "occurred_at is more than 60 seconds before the push was sent.",
            )
        candidate.occurred_at = sent_at  # a device clock slightly behind the server's
    candidate.delivery = delivery.ref


@transaction.atomic
def events_ingest(*, project: Project, events: Any, now: datetime | None = None) -> IngestResult:
    """Store a batch of app events idempotently; refuse bad ones one by one.

    The envelope (a list of 1-1000) is checked first: InvalidInput, nothing stored.
    Then every event is cleaned on its own; its references (user, delivery) are
    looked up for the whole batch at once; the good ones are inserted with ON CONFLICT
    DO NOTHING, so an event_id stored before (or earlier in the batch) counts as a
    duplicate; the newly stored ones go to every registered listener in this
    transaction (a listener raising rolls the batch back).
    """
    batch = clean_event_batch(events)
    now = now or timezone.now()
    rejected: list[Rejection] = []
    candidates: list[_Candidate] = []
    for index, event in enumerate(batch):
        try:
            candidates.append(_clean_event(index, event, now=now))
        except EventRefused as refused:
            rejected.append(_rejection(index, event, refused))
    found = _load_references(project, candidates)
    good: dict[str, _Candidate] = {}
    duplicates = 0
    for candidate in candidates:
        try:
            _resolve(candidate, found)
        except EventRefused as refused:
            rejected.append(_rejection(candidate.index, batch[candidate.index], refused))
            continue
        if candidate.event_id in good:
            duplicates += 1  # the same event twice in one batch counts once
        else:
            good[candidate.event_id] = candidate
    rejected.sort(key=lambda rejection: rejection.index)
    inserted = _insert(project, list(good.values()), received_at=now)
    duplicates += len(good) - len(inserted)
    stored = tuple(
        IngestedEvent(
            id=inserted[c.event_id],
            project_id=project.id,
            app_user_id=c.app_user_id,  # type: ignore[arg-type]  # set by _resolve
            name=c.name,
            properties=c.properties,
            occurred_at=c.occurred_at,
            action_id=c.action_id,
            delivery=c.delivery,
        )
        for c in good.values()
        if c.event_id in inserted
    )
    if stored:
        for listener in event_listeners():
            listener(stored)
    return IngestResult(
        accepted=len(stored), duplicates=duplicates, rejected=rejected, stored=stored
    )


def _rejection(index: int, event: Any, refused: EventRefused) -> Rejection:
    event_id = event.get("event_id") if isinstance(event, dict) else None
    usable = isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID
    return Rejection(
        index=index,
        event_id=event_id if usable else None,
        code=refused.code,
        message=refused.message,
    )


# ------------------------------------------------------------------- storage


def _insert(
    project: Project, rows: Sequence[_Candidate], *, received_at: datetime
) -> dict[str, int]:
    """Insert the rows whose event_id is new to the project: {event_id: id} of those.

    One ``INSERT ... SELECT FROM unnest(arrays)`` on PostgreSQL (a handful of
    parameters however large the batch); multi-row VALUES on SQLite. Both take
    ``ON CONFLICT DO NOTHING RETURNING``, so a concurrent batch with the same
    event_id waits for the other's commit and then skips it.
    """
    if not rows:
        return {}
    connection = connections[Event.objects.db]
    table = connection.ops.quote_name(Event._meta.db_table)
    columns = (
        "project_id, app_user_id, name, properties, occurred_at, received_at, event_id,"
        " delivery_id, action_id"
    )
    conflict = "ON CONFLICT (project_id, event_id) DO NOTHING RETURNING id, event_id"
    inserted: dict[str, int] = {}
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO {table} ({columns}) "  # noqa: S608  (identifiers are ours)
            "SELECT %b, v.app_user_id, v.name, v.properties::jsonb, v.occurred_at, %b,"
            " v.event_id, v.delivery_id, v.action_id "
            "FROM unnest(%b::uuid[], %b::varchar[], %b::text[], %b::timestamptz[],"
            " %b::varchar[], %b::bigint[], %b::varchar[])"
            " AS v(app_user_id, name, properties, occurred_at, event_id, delivery_id,"
            " action_id) "
            f"{conflict}"
        )
        with binary_cursor(connection) as cursor:
            cursor.execute(
                sql,
                [
                    project.id,
                    received_at,
                    [row.app_user_id for row in rows],
                    [row.name for row in rows],
                    [row.properties_json for row in rows],
                    [row.occurred_at for row in rows],
                    [row.event_id for row in rows],
                    [row.delivery_id for row in rows],
                    [row.action_id for row in rows],
                ],
            )
            return {event_id: pk for pk, event_id in cursor.fetchall()}
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, _SQLITE_ROWS_PER_INSERT):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            # UUIDs as SQLite stores them (hex), through the model's own fields.
            user_field = Event._meta.get_field("app_user")
            project_id = Event._meta.get_field("project").get_db_prep_save(project.id, connection)
            received = connection.ops.adapt_datetimefield_value(received_at)
            for row in chunk:
                params += [
                    project_id,
                    user_field.get_db_prep_save(row.app_user_id, connection),
                    row.name,
                    row.properties_json,
                    connection.ops.adapt_datetimefield_value(row.occurred_at),
                    received,
                    row.event_id,
                    row.delivery_id,
                    row.action_id,
                ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values} {conflict}",  # noqa: S608
                params,
            )
            inserted.update((event_id, pk) for pk, event_id in cursor.fetchall())
    return inserted


def _json(properties: Mapping[str, Any]) -> str:
    return json.dumps(properties, ensure_ascii=False, separators=(",", ":"))


def _chunks(rows: Sequence[_Candidate], size: int) -> Iterable[Sequence[_Candidate]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# ------------------------------------------------------------------- retention


PURGE_ID_WINDOW: Final = 50_000


def events_purge(*, now: datetime | None = None, retention_days: int | None = None) -> int:
    """Delete events that occurred more than HERALD_EVENT_RETENTION_DAYS ago (0 keeps
    everything); returns how many. Idempotent; meant to run daily.

    Linear in what it deletes, in short transactions: one query finds the id range
    holding old events (the time index), then windows of PURGE_ID_WINDOW ids are
    deleted by primary key range, each its own statement, so no lock or transaction
    spans the whole purge. Rollups computed from the events stay (they are counts).
    """
    days = settings.HERALD_EVENT_RETENTION_DAYS if retention_days is None else retention_days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = Event.objects.filter(occurred_at__lt=cutoff)
    return delete_in_id_windows(old, window=PURGE_ID_WINDOW)
