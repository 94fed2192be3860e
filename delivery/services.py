"""The delivery engine: claim queued rows, send them, record every result.

It knows nothing of campaign states (DESIGN.md): callers hand it a project, the
content and which rows to attempt; it returns counts so the caller can keep its
own stats. Exactly-once within a run rests on three things:

* the unique (campaign, run, token) row, created before any send;
* a claim (conditional UPDATE of queued, unclaimed rows) taken right before
  sending, so two tasks holding the same batch never both send a row;
* results written conditionally on that claim, in small flushes as they arrive.

While it sends, the task renews its claim's lease (a DeliveryClaim row) and records
there, before a push may start, how far each provider's rows were admitted. A claim
whose lease ran out belongs to a dead worker: `deliveries_expire_claims` puts the
rows that never started back in the queue, and the admitted, unrecorded ones (in
flight at the crash) become `unknown` or, for an at-least-once project, are queued
to be sent again (docs/decisions.md, "Delivery engine").

This is the per-token hot path (bench/fanout.py), so rows travel as plain
`_Row` records loaded with one `values_list` (no model instances, no JSON
decoding of user attributes) and every lookup goes through the primary key.
Personalized content adds to each row only the values its placeholders name (one
JSON key each, read in SQL); each distinct rendered text is built once, and every
push gets its delivery id as a shallow copy of the shared payload (bench/outgoing.py).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Now
from django.utils import timezone

from core.audit import audit_record
from core.models import DeliveryGuarantee, Project
from delivery import metrics
from delivery.credentials import MissingCredentials, provider_config
from delivery.models import DeliveryClaim, PushDelivery, PushToken
from delivery.payloads import (
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    build_webpush,
    payload_limit,
    sent_size,
    text_size,
    text_templates,
    with_delivery_id,
)
from delivery.policy import DeliveryPolicy, quiet_until, zone
from delivery.providers import runtime
from delivery.providers.base import Outcome, OutgoingPush, PushResult
from delivery.providers.runtime import SenderConfig
from delivery.templating import Template

logger = logging.getLogger("herald.delivery")

Status = PushDelivery.Status
UNKNOWN_OUTCOME = "the worker stopped while this push was in flight; not sent again (at-most-once)"
RESENDING = "queued again: the worker stopped while this push was in flight (at-least-once)"
# Pushes are admitted (recorded as possibly started) up to this many, and at most one
# provider concurrency, beyond what the senders ask for: fewer claim-row writes for
# a few more unknowns after a crash. A whole concurrency ahead, so a result flush on
# the task thread (tens of ms at 250 rows) never leaves a sender waiting for its
# next admission (bench/fanout.py: 64 cost ~15% of the throughput at APNs
# concurrency 500; a sub-batch's APNs share is admitted in one write).
ADMIT_STEP = 512


@dataclass
class BatchOutcome:
    """What one call attempted and how it ended (counts of final outcomes only).

    Rows sent back for a retry are not counted: they stay queued with their own
    `not_before`, which is what the caller looks at to schedule the next attempt.
    """

    sent: int = 0
    failed: int = 0
    invalid_tokens: int = 0
    skipped: int = 0
    unknown: int = 0
    attempted: int = 0
    throttled: bool = False  # the rate limit held rows back

    def add(self, other: BatchOutcome) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.invalid_tokens += other.invalid_tokens
        self.skipped += other.skipped
        self.unknown += other.unknown
        self.attempted += other.attempted
        self.throttled = self.throttled or other.throttled


@dataclass(slots=True)
class _Row:
    """One delivery as the engine handles it: what sending needs, then its result.

    The result fields carry the names of PushDelivery's columns so `_bulk_update`
    can write them back.
    """

    pk: int
    campaign_id: uuid.UUID | None
    run: int
    token_id: int
    app_user_id: uuid.UUID | None
    provider: str
    attempts: int
    token: str
    platform: str
    language: str  # the user's language attribute, else the token's locale
    timezone: str  # the user's timezone attribute, else the token's
    # The values personalized content names (attributes, external_id); else None.
    values: dict[str, Any] | None = None
    keys: dict[str, str] | None = None  # a web push subscription's p256dh and auth
    status: str = Status.QUEUED
    sent_at: datetime | None = None
    provider_msg_id: str = ""
    error_message: str = ""
    not_before: datetime | None = None
    claim: uuid.UUID | None = None
    claimed_at: datetime | None = None


def _load(rows: QuerySet[PushDelivery], names: Sequence[str] = ()) -> list[_Row]:
    """The rows with their token and the two user attributes sending looks at, plus
    the user's values for `names` (a personalized content's placeholder names: each
    an attribute key read in SQL, or `external_id`) when there are any."""
    named = {
        f"placeholder_{i}": F("app_user__external_id")
        if name == "external_id"
        else KeyTransform(name, "app_user__attributes")
        for i, name in enumerate(names)
    }
    values = rows.annotate(
        user_language=KeyTextTransform("language", "app_user__attributes"),
        user_timezone=KeyTextTransform("timezone", "app_user__attributes"),
        **named,
    ).values_list(
        "id",
        "campaign_id",
        "run",
        "token_id",
        "app_user_id",
        "provider",
        "attempts",
        "token__token",
        "token__platform",
        "token__locale",
        "token__timezone",
        "user_language",
        "user_timezone",
        "token__keys",
        *named,
    )
    return [
        _Row(
            pk=pk,
            campaign_id=campaign_id,
            run=run,
            token_id=token_id,
            app_user_id=app_user_id,
            provider=provider,
            attempts=attempts,
            token=token,
            platform=platform,
            language=user_language or locale,
            timezone=user_timezone or token_tz,
            values=dict(zip(names, personal, strict=True)) if personal else None,
            keys=keys,
        )
        for (
            pk,
            campaign_id,
            run,
            token_id,
            app_user_id,
            provider,
            attempts,
            token,
            platform,
            locale,
            token_tz,
            user_language,
            user_timezone,
            keys,
            *personal,
        ) in values
    ]


@dataclass
class _Recorder:
    """Collects per-row results until the next flush writes them in one statement,
    with the flush's metrics counts (published once it is written)."""

    claim: uuid.UUID
    now: datetime
    rows: list[_Row] = field(default_factory=list)
    dead_tokens: dict[int, tuple[str, str]] = field(default_factory=dict)  # (provider, reason)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)
    # {(provider, status, reason label): n} and {(provider, reason label): n}
    counted: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    retried: Counter[tuple[str, str]] = field(default_factory=Counter)


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Capped exponential backoff with jitter; a provider's Retry-After wins if longer."""
    base = settings.HERALD_RETRY_BASE_SECONDS * (2 ** max(0, attempt - 1))
    delay = min(settings.HERALD_RETRY_MAX_SECONDS, base) * (0.5 + random.random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.HERALD_RETRY_MAX_SECONDS))
    return delay


def _frequency_allowed(candidates: list[_Row], cap: int, now: datetime) -> set[int]:
    """Ids of candidates within the per-user cap of distinct campaign runs in 24 h."""
    users = {c.app_user_id for c in candidates if c.app_user_id is not None}
    seen: dict[uuid.UUID, set[tuple[uuid.UUID | None, int]]] = defaultdict(set)
    recent = (
        PushDelivery.objects.filter(
            app_user_id__in=users,
            campaign__isnull=False,
            status=Status.SENT,
            sent_at__gte=now - timedelta(hours=24),
        )
        .values_list("app_user_id", "campaign_id", "run")
        .distinct()
    )
    for user_id, campaign_id, run in recent:
        seen[user_id].add((campaign_id, run))
    allowed = set()
    for candidate in candidates:
        if candidate.app_user_id is None:
            allowed.add(candidate.pk)
            continue
        runs = seen[candidate.app_user_id]
        key = (candidate.campaign_id, candidate.run)
        if key in runs or len(runs) < cap:
            runs.add(key)
            allowed.add(candidate.pk)
    return allowed


def _unclaimed(ids: Iterable[int] | QuerySet[Any]) -> QuerySet[PushDelivery]:
    return PushDelivery.objects.filter(id__in=ids, status=Status.QUEUED, claim__isnull=True)


def _apply_policy(
    candidates: list[_Row], policy: DeliveryPolicy, now: datetime
) -> tuple[list[_Row], BatchOutcome]:
    """Skip or defer what the policy says; return the rows that may be sent now."""
    outcome = BatchOutcome()
    skip: dict[str, list[int]] = defaultdict(list)
    defer: list[_Row] = []
    ready: list[_Row] = []
    for candidate in candidates:
        if policy.quiet_hours:
            tz = zone(candidate.timezone, policy.default_timezone)
            until = quiet_until(policy.quiet_hours, tz, now)
            if until is not None:
                if policy.quiet_hours.get("action") == "skip":
                    skip["quiet_hours"].append(candidate.pk)
                else:
                    candidate.not_before = until
                    defer.append(candidate)
                continue
        ready.append(candidate)
    if policy.frequency_cap_per_day is not None and ready:
        allowed = _frequency_allowed(ready, policy.frequency_cap_per_day, now)
        skip["frequency_cap"].extend(c.pk for c in ready if c.pk not in allowed)
        ready = [c for c in ready if c.pk in allowed]
    for reason, ids in skip.items():
        closed = _unclaimed(ids).update(status=Status.SKIPPED, error_message=reason)
        metrics.count_skipped(reason, closed)
        outcome.skipped += closed
    if defer:
        _bulk_update(defer, ["not_before"], claim=None)
    return ready, outcome


def _throttle_allowance(policy: DeliveryPolicy, now: datetime) -> int | None:
    """How many rows may be claimed now without exceeding the per-minute rate.

    Counts the run's claims in the last 60 s (sent_at is the claim time) and hands
    out at most a twelfth of the rate at a time, so sends spread over the minute.
    """
    if policy.rate_per_minute is None or policy.rate_scope is None:
        return None
    campaign_id, run = policy.rate_scope
    recent = PushDelivery.objects.filter(
        campaign_id=campaign_id, run=run, claimed_at__gt=now - timedelta(seconds=60)
    ).count()
    room = max(0, policy.rate_per_minute - recent)
    return min(room, max(1, policy.rate_per_minute // 12))


def _claim(
    rows: QuerySet[PushDelivery],
    now: datetime,
    policy: DeliveryPolicy,
    guarantee: str,
    names: Sequence[str] = (),
) -> tuple[uuid.UUID, list[_Row], BatchOutcome]:
    """Claim the rows that may go now; return them loaded, in id order.

    Rows are looked at before claiming only when a per-user rule (quiet hours,
    frequency cap) or the rate limit needs them; otherwise the claim is one UPDATE
    over the ids of `rows`. The claim's lease row is written in the same
    transaction, admitting nothing yet.
    """
    claim = uuid.uuid4()
    outcome = BatchOutcome()
    if policy.deadline is not None and now >= policy.deadline:
        outcome.skipped = _unclaimed(rows.values("id")).update(
            status=Status.SKIPPED, error_message="expired"
        )
        metrics.count_skipped("expired", outcome.skipped)
        return claim, [], outcome
    needs_rows = bool(
        policy.quiet_hours
        or policy.frequency_cap_per_day is not None
        or policy.rate_per_minute is not None
    )
    if needs_rows:
        candidates = sorted(_load(rows), key=lambda row: row.pk)
        ready, outcome = _apply_policy(candidates, policy, now)
        ids = [row.pk for row in ready]
    else:
        ids = list(rows.values_list("id", flat=True))
    if not ids:
        return claim, [], outcome
    with transaction.atomic():
        if policy.rate_lock is not None:
            policy.rate_lock()
        allowance = _throttle_allowance(policy, now)
        if allowance is not None:
            outcome.throttled = len(ids) > allowance
            ids = ids[:allowance]
        taken = _unclaimed(ids).filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        if taken.update(claim=claim, claimed_at=now, attempts=F("attempts") + 1):
            scope = PushDelivery.objects.filter(id__in=ids, claim=claim)
            campaign_id, run = scope.values_list("campaign_id", "run")[0]
            DeliveryClaim.objects.create(
                id=claim,
                campaign_id=campaign_id,
                run=run,
                guarantee=guarantee,
                started={},
                claimed_at=now,
                renewed_at=Now(),
            )
    claimed = _load(PushDelivery.objects.filter(id__in=ids, claim=claim).order_by("id"), names)
    return claim, claimed, outcome


class _Outgoing:
    """Builds each row's OutgoingPush, or the reason it cannot be sent.

    Rows that see the same payload share one build: per (provider, language,
    platform), or for personalized content per (provider, platform, rendered
    text), plus the language when localizations change the image or button titles
    (``PushContent.localized_display``). Each push is that payload plus its row's
    delivery id. Personalized payloads are measured once per distinct text (the
    size of the payload with empty text, once per provider, platform and display
    language, plus the text's own bytes); one over the limit fails its rows alone.
    Content without placeholders was measured when it was saved.
    """

    def __init__(self, content: PushContent, now: datetime) -> None:
        self.content = content
        self.now = now
        self.personalized = content.personalized
        self.built: dict[tuple[str, Recipient], tuple[dict[str, Any], dict[str, str]] | str] = {}
        self.templates: dict[str, tuple[Template, Template]] = {}
        self.base_sizes: dict[tuple[str, str, str], int] = {}

    def __call__(self, row: _Row) -> OutgoingPush | str:
        if self.personalized:
            templates = self.templates.get(row.language)
            if templates is None:
                templates = self.templates[row.language] = text_templates(
                    self.content, row.language
                )
            values = row.values or {}
            text = (templates[0].render(values), templates[1].render(values))
            language = row.language if self.content.localized_display else ""
            recipient = Recipient(language=language, platform=row.platform, text=text)
        else:
            recipient = Recipient(language=row.language, platform=row.platform)
        key = (row.provider, recipient)
        built = self.built.get(key)
        if built is None:
            built = self._build(row.provider, recipient)
            self.built[key] = built
        if isinstance(built, str):
            return built
        payload, headers = built
        return OutgoingPush(
            ref=str(row.pk),
            token=row.token,
            payload=with_delivery_id(row.provider, payload, str(row.pk)),
            headers=headers,
            keys=row.keys,
        )

    def _build(
        self, provider: str, recipient: Recipient
    ) -> tuple[dict[str, Any], dict[str, str]] | str:
        if recipient.text is not None:
            size = self._base_size(provider, recipient) + text_size(recipient.text)
            if size > payload_limit(provider):
                return f"payload too large ({size} bytes)"
        built = _build(provider, self.content, recipient, self.now)
        if provider == "webpush" and recipient.text is None:
            # Measured once per distinct payload. The save-time check measures web
            # push too, except for campaigns whose platforms leave web out, which an
            # explicit push (deaf to platforms) can still send to a browser.
            size = sent_size(provider, built[0])
            if size > payload_limit(provider):
                return f"payload too large ({size} bytes)"
        return built

    def _base_size(self, provider: str, recipient: Recipient) -> int:
        key = (provider, recipient.platform, recipient.language)
        size = self.base_sizes.get(key)
        if size is None:
            empty = Recipient(recipient.language, recipient.platform, text=("", ""))
            payload = _build(provider, self.content, empty, self.now)[0]
            size = self.base_sizes[key] = sent_size(provider, payload)
        return size


def _build(
    provider: str, content: PushContent, recipient: Recipient, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """The provider's (payload, headers) for a recipient."""
    if provider == "apns":
        return build_apns(content, recipient, now=now)
    if provider == "webpush":
        return build_webpush(content, recipient, now=now)
    return build_fcm(content, recipient, now=now), {}


def _record(recorder: _Recorder, row: _Row, result: PushResult) -> None:
    """Turn one provider result into the row's new state (written later, in bulk),
    and count it for the metrics: the one place results are recorded."""
    reason = result.reason
    outcome = recorder.outcome
    row.claim = recorder.claim
    row.claimed_at = recorder.now
    if result.outcome == Outcome.SENT:
        row.status = Status.SENT
        row.sent_at = recorder.now
        row.provider_msg_id = (result.provider_message_id or "")[:200]
        reason = ""
        outcome.sent += 1
        recorder.counted[(row.provider, Status.SENT, "")] += 1
    elif result.outcome == Outcome.INVALID_TOKEN:
        row.status = Status.INVALID_TOKEN
        recorder.dead_tokens[row.token_id] = (row.provider, reason)
        outcome.invalid_tokens += 1
        label = metrics.reason_label(reason, result.status_code)
        recorder.counted[(row.provider, Status.INVALID_TOKEN, label)] += 1
    elif result.outcome == Outcome.RETRY and row.attempts < settings.HERALD_MAX_ATTEMPTS:
        delay = backoff_seconds(row.attempts, result.retry_after)
        row.not_before = recorder.now + timedelta(seconds=delay)
        row.claim = None
        row.claimed_at = None
        recorder.retried[(row.provider, metrics.reason_label(reason, result.status_code))] += 1
        reason = f"retrying: {reason}"
    else:
        label = metrics.reason_label(reason, result.status_code)
        if result.outcome == Outcome.RETRY:
            reason = f"gave up after {row.attempts} attempts: {reason}"
        row.status = Status.FAILED
        outcome.failed += 1
        recorder.counted[(row.provider, Status.FAILED, label)] += 1
    row.error_message = reason[:500]
    recorder.rows.append(row)


RESULT_FIELDS = (
    "status",
    "sent_at",
    "provider_msg_id",
    "error_message",
    "not_before",
    "claim",
    "claimed_at",
)


def _bulk_update(rows: Sequence[_Row], fields: Sequence[str], *, claim: uuid.UUID | None) -> None:
    """Write per-row values of `fields` for `rows` still queued and holding `claim`
    (None: still unclaimed), so a row another task has taken meanwhile stays as it is.

    On PostgreSQL one `UPDATE ... FROM unnest(arrays)`: Django's bulk_update builds a
    CASE WHEN per row and field, which bench/fanout.py measured at ~2.4 ms of worker
    CPU per delivery — seven times the cost of sending it. Elsewhere (the embedded
    SQLite default) Django's bulk_update.
    """
    if not rows:
        return
    connection = connections[PushDelivery.objects.db]
    if connection.vendor != "postgresql":
        scope = PushDelivery.objects.filter(
            id__in=[row.pk for row in rows], status=Status.QUEUED, claim=claim
        )
        instances = [
            PushDelivery(pk=row.pk, **{name: getattr(row, name) for name in fields}) for row in rows
        ]
        scope.bulk_update(instances, list(fields), batch_size=1000)
        return
    meta = PushDelivery._meta
    model_fields = [meta.get_field(name) for name in fields]
    columns = ['"id"'] + [f'"{f.column}"' for f in model_fields]  # type: ignore[union-attr]
    arrays = ["%s::bigint[]"] + [f"%s::{f.db_type(connection)}[]" for f in model_fields]
    params: list[Any] = [[row.pk for row in rows]]
    for model_field in model_fields:
        params.append(
            [
                model_field.get_db_prep_save(getattr(row, model_field.name), connection)  # type: ignore[union-attr]
                for row in rows
            ]
        )
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    # The rows' own run, id range and token range, beside the join by id: whichever
    # index the planner picks (the primary key, delivery_campaign_run or
    # delivery_run_queued), it then reads only this write's slice, whatever its
    # statistics say. They are stale during a big send (`claim = <new uuid>` is
    # always estimated at one row), and without the ranges bench/fanout.py saw each
    # write scan the run's queued rows, the whole run or the whole table: 2-4x the
    # Postgres CPU once results were written in several flushes per sub-batch.
    written = {(row.campaign_id, row.run) for row in rows}
    (campaign_id, run), *others = written
    if others or campaign_id is None:
        raise ValueError("_bulk_update writes the rows of one campaign run")
    ids = [row.pk for row in rows]
    tokens = [row.token_id for row in rows]
    # Only identifiers from the model's own metadata are interpolated; values are params.
    sql = (
        f'UPDATE "{meta.db_table}" AS d SET {assignments} '  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(columns)}) "
        'WHERE d."id" = v."id" AND d."campaign_id" = %s AND d."run" = %s '
        'AND d."id" BETWEEN %s AND %s AND d."token_id" BETWEEN %s AND %s '
        'AND d."status" = %s AND d."claim" IS NOT DISTINCT FROM %s::uuid'
    )
    bounds = [min(ids), max(ids), min(tokens), max(tokens)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, campaign_id, run, *bounds, Status.QUEUED.value, claim])


def _write(recorder: _Recorder) -> None:
    """Flush: one conditional bulk UPDATE, so only rows still holding this claim
    change; then the recorded rows are off the recorder and their counts published."""
    if not recorder.dead_tokens:  # one statement: no transaction to open and commit
        _bulk_update(recorder.rows, RESULT_FIELDS, claim=recorder.claim)
    else:
        with transaction.atomic():
            _bulk_update(recorder.rows, RESULT_FIELDS, claim=recorder.claim)
            tokens_retire(dead_tokens=recorder.dead_tokens, now=recorder.now)
    recorder.rows = []
    recorder.dead_tokens = {}
    metrics.publish_results(recorder.counted, recorder.retried)
    recorder.counted = Counter()
    recorder.retried = Counter()


def tokens_retire(*, dead_tokens: dict[int, tuple[str, str]], now: datetime) -> int:
    """Deactivate the tokens a provider called invalid: {token id: (provider,
    reason)}. Tokens already inactive stay as they are; returns how many changed."""
    by_reason: dict[tuple[str, str], list[int]] = defaultdict(list)
    for token_id, (provider, reason) in dead_tokens.items():
        by_reason[(provider, reason[:200])].append(token_id)
    retired = 0
    for (provider, reason), token_ids in by_reason.items():
        changed = PushToken.objects.filter(id__in=token_ids, active=True).update(
            active=False, invalidated_at=now, invalid_reason=reason
        )
        metrics.count_retired(provider, changed)
        retired += changed
    return retired


AUDITED_TOKEN_IDS = 100


@transaction.atomic
def tokens_set_active(
    *, tokens: QuerySet[PushToken], active: bool, reason: str = "", now: datetime | None = None
) -> int:
    """An operator's manual override (the console's token actions): deactivate
    `tokens` with `reason`, or reactivate them; those already so stay as they are.
    Returns how many changed. Audited as push_token.deactivated / .reactivated, one
    event per project with the count and the first AUDITED_TOKEN_IDS ids (not the
    token strings). Not the provider's verdict (`tokens_retire`), which is not an
    operator action."""
    targets = tokens.filter(active=not active)
    counted = targets.order_by("project_id").values("project_id").annotate(count=Count("id"))
    per_project = {row["project_id"]: row["count"] for row in counted}
    samples = {
        project_id: list(
            targets.filter(project_id=project_id)
            .order_by("id")
            .values_list("id", flat=True)[:AUDITED_TOKEN_IDS]
        )
        for project_id in per_project
    }
    if active:
        changed = targets.update(active=True, invalidated_at=None, invalid_reason="")
    else:
        changed = targets.update(
            active=False, invalidated_at=now or timezone.now(), invalid_reason=reason[:200]
        )
    action = "push_token.reactivated" if active else "push_token.deactivated"
    for project_id, count in per_project.items():
        ids = samples[project_id]
        audit_record(
            action=action,
            project_id=project_id,
            object_type="pushtoken",
            object_id=ids[0] if count == 1 else "",
            object_repr=f"{count} token{'s' if count != 1 else ''}",
            changes={"count": count, "token_ids": ids},
        )
    return changed


def deliveries_send(
    *,
    project: Project,
    content: PushContent,
    rows: QuerySet[PushDelivery],
    policy: DeliveryPolicy | None = None,
) -> BatchOutcome:
    """Apply the policy to the due, queued rows among `rows` (all of one campaign
    run), claim the rest, send them and record the results as they arrive.

    Provider calls go through the process-wide sender runtime (one long-lived
    client per provider config). Rows whose provider has no credentials fail with
    that reason; transient failures stay queued with a `not_before` retry time.
    `attempted` counts rows claimed and sent; `skipped` rows the policy closed.
    """
    now = timezone.now()
    claim, claimed, outcome = _claim(
        rows,
        now,
        policy or DeliveryPolicy(),
        project.delivery_guarantee,
        content.placeholder_names,
    )
    outcome.attempted = len(claimed)
    if not claimed:
        return outcome
    recorder = _Recorder(claim=claim, now=now, outcome=outcome)
    by_provider: dict[str, list[_Row]] = defaultdict(list)
    for row in claimed:
        by_provider[row.provider].append(row)
    outgoing = _Outgoing(content, now)
    jobs: list[_Job] = []
    for provider, provider_rows in by_provider.items():
        try:
            config = provider_config(project, provider)
        except MissingCredentials as exc:
            for row in provider_rows:
                _record(recorder, row, _final_failure(row.pk, str(exc)))
            continue
        job = _Job(provider, config, [], [])
        for row in provider_rows:
            push = outgoing(row)
            if isinstance(push, str):
                _record(recorder, row, _final_failure(row.pk, push))
            else:
                job.rows.append(row)
                job.pushes.append(push)
        if job.rows:
            jobs.append(job)
    if _send_and_record(recorder, jobs):
        DeliveryClaim.objects.filter(pk=claim).delete()
    return recorder.outcome


@dataclass(frozen=True, slots=True)
class _Job:
    """One provider's share of a claim, in row id order, with each row's push."""

    provider: str
    config: SenderConfig
    rows: list[_Row]
    pushes: list[OutgoingPush]


def _renew(claim: uuid.UUID, started: dict[str, int] | None = None) -> bool:
    """Renew the claim's lease (and record what may start); False if it was lost."""
    changes: dict[str, Any] = {"renewed_at": Now()}
    if started is not None:
        changes["started"] = started
    return DeliveryClaim.objects.filter(pk=claim).update(**changes) == 1


def _send_and_record(recorder: _Recorder, jobs: list[_Job]) -> bool:
    """Stream the jobs' pushes out and their results in, until every push is answered.

    The order of writes is the crash guarantee: a push starts only after the claim
    row says it may have (`started`, written ahead a slice at a time), and results
    are flushed every HERALD_RESULT_FLUSH_ROWS rows or HERALD_RESULT_FLUSH_SECONDS,
    so a dead worker leaves unrecorded only what was in flight or in the last
    window. The lease is renewed with every admission and at least every
    HERALD_CLAIM_RENEW_SECONDS. Returns False when the claim was given up (lost to
    the sweeper, or the senders stopped answering): its leftover rows are then the
    sweeper's.
    """
    flush_rows = settings.HERALD_RESULT_FLUSH_ROWS
    flush_every = settings.HERALD_RESULT_FLUSH_SECONDS
    renew_every = settings.HERALD_CLAIM_RENEW_SECONDS
    stuck_after = 3 * settings.HERALD_PROVIDER_TIMEOUT_SECONDS + renew_every
    claim = recorder.claim
    stream = runtime.SendStream(
        [(job.config, job.pushes) for job in jobs],
        notify_rows=flush_rows,
    )
    steps = [
        max(runtime.slice_size(job.config), min(ADMIT_STEP, job.config.concurrency)) for job in jobs
    ]
    admitted = [0] * len(jobs)
    started: dict[str, int] = {}
    renewed = last_news = time.monotonic()
    pending_since: float | None = None
    kept = True
    while True:
        finished = stream.done
        wanted = stream.wanted()
        clock = time.monotonic()
        limits = admitted
        if wanted is not None:  # (a want the loop raised before an admission landed: none)
            limits = [
                min(len(job.rows), max(have, want + step)) if want else have
                for job, have, want, step in zip(jobs, admitted, wanted, steps, strict=True)
            ]
        if limits != admitted:
            for job, limit in zip(jobs, limits, strict=True):
                if limit:
                    started[job.provider] = job.rows[limit - 1].pk
            kept = _renew(claim, started)
            if kept:
                admitted = limits
                stream.admit(limits)
            renewed = last_news = clock
        elif clock - renewed >= renew_every:
            kept = _renew(claim)
            renewed = clock
        results = stream.take()
        for job_index, index, result in results:
            _record(recorder, jobs[job_index].rows[index], result)
        if results:
            last_news = clock
            if pending_since is None:
                pending_since = clock
        if recorder.rows and (
            finished
            or not kept
            or len(recorder.rows) >= flush_rows
            or clock - (pending_since or clock) >= flush_every
        ):
            _write(recorder)
            pending_since = None
        if not kept:
            logger.warning("Claim %s expired while sending; the sweeper has its rows", claim)
            stream.cancel()
            return False
        if finished:
            break
        if clock - last_news > stuck_after:
            logger.error("Senders stopped answering; leaving claim %s to expire", claim)
            stream.cancel()
            if recorder.rows:
                _write(recorder)
            return False
        due = renewed + renew_every
        if pending_since is not None:
            due = min(due, pending_since + flush_every)
        stream.wait(max(0.0, due - time.monotonic()))
    stream.result()  # a sender bug surfaces here; the claim then expires
    if recorder.rows:
        _write(recorder)
    return True


def _final_failure(pk: int, reason: str) -> PushResult:
    return PushResult(ref=str(pk), outcome=Outcome.FAILED, provider_message_id=None, reason=reason)


@dataclass(frozen=True, slots=True)
class ExpiredClaim:
    """What closing one dead worker's claim did to its run's rows."""

    campaign_id: uuid.UUID | None
    run: int
    unknown: int  # admitted, unrecorded, at-most-once: closed as unknown
    resent: int  # admitted, unrecorded, at-least-once: queued to be sent again
    released: int  # never started: back in the queue


def deliveries_expire_claims() -> list[ExpiredClaim]:
    """Close every claim not renewed for HERALD_CLAIM_LEASE_SECONDS (its worker died).

    Rows the claim admitted and never recorded may have reached the provider: under
    at-most-once they become `unknown`, under at-least-once they are queued again.
    Rows it never admitted go back to the queue unsent. The lease is judged on the
    database's clock, so workers' clocks do not matter.
    """
    stale = Now() - timedelta(seconds=settings.HERALD_CLAIM_LEASE_SECONDS)
    closed = []
    for claim_id in DeliveryClaim.objects.filter(renewed_at__lt=stale).values_list("id", flat=True):
        with transaction.atomic():
            claim = (
                DeliveryClaim.objects.select_for_update(skip_locked=True)
                .filter(pk=claim_id, renewed_at__lt=stale)
                .first()
            )
            if claim is None:
                continue  # renewed meanwhile, or another sweeper has it
            held = PushDelivery.objects.filter(
                campaign_id=claim.campaign_id, run=claim.run, status=Status.QUEUED, claim=claim.id
            )
            admitted = reduce(
                Q.__or__,
                (Q(provider=p, id__lte=last) for p, last in claim.started.items()),
                Q(pk__in=[]),
            )
            unknown = resent = 0
            if claim.guarantee == DeliveryGuarantee.AT_LEAST_ONCE:
                resent = held.filter(admitted).update(
                    claim=None, claimed_at=None, not_before=None, error_message=RESENDING
                )
            else:
                unknown = held.filter(admitted).update(
                    status=Status.UNKNOWN, error_message=UNKNOWN_OUTCOME
                )
            released = held.update(claim=None, claimed_at=None, attempts=F("attempts") - 1)
            claim.delete()
        metrics.count_unknown(unknown)
        closed.append(ExpiredClaim(claim.campaign_id, claim.run, unknown, resent, released))
    return closed


def deliveries_expire_orphaned_claims(*, rows: QuerySet[PushDelivery]) -> int:
    """Close rows claimed with no claim row (claimed before claims had lease rows)
    and older than the lease, as unknown. Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.HERALD_CLAIM_LEASE_SECONDS)
    lease = DeliveryClaim.objects.filter(pk=OuterRef("claim"))
    closed = (
        rows.filter(status=Status.QUEUED, claim__isnull=False, claimed_at__lt=cutoff)
        .exclude(Exists(lease))
        .update(status=Status.UNKNOWN, error_message=UNKNOWN_OUTCOME)
    )
    metrics.count_unknown(closed)
    return closed


def deliveries_skip(*, rows: QuerySet[PushDelivery], reason: str) -> int:
    """Close queued, unclaimed rows without sending (cancelled, expired, capped)."""
    closed = rows.filter(status=Status.QUEUED, claim__isnull=True).update(
        status=Status.SKIPPED, error_message=reason[:500]
    )
    metrics.count_skipped(reason, closed)
    return closed


@dataclass(frozen=True, slots=True)
class NewDelivery:
    token_id: int
    app_user_id: uuid.UUID | None
    provider: str
    not_before: datetime | None = None
    skip_reason: str = ""  # created already skipped (e.g. local time passed)


def deliveries_create(
    *,
    campaign_id: uuid.UUID,
    run: int,
    tokens: Iterable[NewDelivery],
) -> None:
    """Insert one row per token; rows that already exist stay as they are.

    On PostgreSQL one `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`
    per call (the fan-out's chunk), with no model instances; elsewhere bulk_create.
    """
    new_rows = list(tokens)
    if not new_rows:
        return
    connection = connections[PushDelivery.objects.db]
    if connection.vendor != "postgresql":
        PushDelivery.objects.bulk_create(
            [
                PushDelivery(
                    campaign_id=campaign_id,
                    run=run,
                    token_id=new.token_id,
                    app_user_id=new.app_user_id,
                    provider=new.provider,
                    not_before=new.not_before,
                    status=Status.SKIPPED if new.skip_reason else Status.QUEUED,
                    error_message=new.skip_reason,
                )
                for new in new_rows
            ],
            ignore_conflicts=True,
            batch_size=1000,
        )
        return
    sql = (
        f"INSERT INTO {connection.ops.quote_name(PushDelivery._meta.db_table)} "  # noqa: S608
        "(campaign_id, run, token_id, app_user_id, provider, not_before, status,"
        " error_message, provider_msg_id, attempts, created_at) "
        "SELECT %s, %s, v.token_id, v.app_user_id, v.provider, v.not_before, v.status,"
        " v.error_message, '', 0, %s "
        "FROM unnest(%s::bigint[], %s::uuid[], %s::varchar[], %s::timestamptz[],"
        " %s::varchar[], %s::varchar[])"
        " AS v(token_id, app_user_id, provider, not_before, status, error_message) "
        "ON CONFLICT DO NOTHING"
    )
    params: list[Any] = [
        campaign_id,
        run,
        timezone.now(),
        [new.token_id for new in new_rows],
        [new.app_user_id for new in new_rows],
        [new.provider for new in new_rows],
        [new.not_before for new in new_rows],
        [Status.SKIPPED if new.skip_reason else Status.QUEUED for new in new_rows],
        [new.skip_reason for new in new_rows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def deliveries_create_from_tokens(
    *, campaign_id: uuid.UUID, run: int, tokens: QuerySet[PushToken]
) -> tuple[int, int] | None:
    """Insert a queued, due-now row for each token of `tokens` (one ordered, sliced
    chunk of an audience); rows that already exist stay as they are.

    Returns the chunk's first and last token id, or None when it is empty. On
    PostgreSQL the tokens never leave the database: one statement selects the chunk,
    inserts its rows and reports its span (bench/fanout.py: the fan-out of 1M tokens
    was a third of the run's CPU in Python).
    """
    connection = connections[PushDelivery.objects.db]
    if connection.vendor != "postgresql":
        chunk = list(tokens.values_list("id", "app_user_id", "provider"))
        if not chunk:
            return None
        deliveries_create(
            campaign_id=campaign_id,
            run=run,
            tokens=[
                NewDelivery(token_id, user_id, provider) for token_id, user_id, provider in chunk
            ],
        )
        return chunk[0][0], chunk[-1][0]
    chunk_sql, chunk_params = tokens.values_list(
        "id", "app_user_id", "provider"
    ).query.sql_with_params()
    sql = (
        f"WITH chunk (token_id, app_user_id, provider) AS ({chunk_sql}), "  # noqa: S608
        f"created AS (INSERT INTO {connection.ops.quote_name(PushDelivery._meta.db_table)} "
        "(campaign_id, run, token_id, app_user_id, provider, status, error_message,"
        " provider_msg_id, attempts, created_at) "
        "SELECT %s, %s, token_id, app_user_id, provider, %s, '', '', 0, %s FROM chunk "
        "ON CONFLICT DO NOTHING) "
        "SELECT min(token_id), max(token_id) FROM chunk"
    )
    params: list[Any] = [*chunk_params, campaign_id, run, Status.QUEUED.value, timezone.now()]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        first, last = cursor.fetchone()
    return None if first is None else (first, last)


def providers_without_credentials(project: Project, providers: Sequence[str]) -> list[str]:
    missing = []
    for provider in providers:
        try:
            provider_config(project, provider)
        except MissingCredentials as exc:
            missing.append(str(exc))
    return missing


@dataclass(frozen=True)
class TestPushResult:
    delivery: PushDelivery
    result: PushResult


def delivery_send_one(
    *, project: Project, token: PushToken, content: PushContent
) -> TestPushResult:
    """Send one push now (test pushes): one attempt, one row without a campaign.

    No retry: the caller wants to know at once whether credentials and token work.
    An invalid-token answer retires the token like any send would.
    """
    now = timezone.now()
    delivery = PushDelivery.objects.create(
        campaign=None,
        run=0,
        token=token,
        app_user=token.app_user,
        provider=token.provider,
        attempts=1,
    )
    delivery.token = token
    try:
        config = provider_config(project, token.provider)
    except MissingCredentials as exc:
        result = _final_failure(delivery.pk, str(exc))
    else:
        row = _load(PushDelivery.objects.filter(pk=delivery.pk), content.placeholder_names)[0]
        push = _Outgoing(content, now)(row)
        if isinstance(push, str):
            result = _final_failure(delivery.pk, push)
        else:
            result = runtime.send_batch(config, [push])[0]
    delivery.status = {
        Outcome.SENT: Status.SENT,
        Outcome.INVALID_TOKEN: Status.INVALID_TOKEN,
    }.get(result.outcome, Status.FAILED)
    delivery.error_message = "" if result.outcome == Outcome.SENT else result.reason[:500]
    delivery.provider_msg_id = (result.provider_message_id or "")[:200]
    delivery.sent_at = now if result.outcome == Outcome.SENT else None
    delivery.save(update_fields=["status", "error_message", "provider_msg_id", "sent_at"])
    if result.outcome == Outcome.INVALID_TOKEN:
        tokens_retire(dead_tokens={token.pk: (token.provider, result.reason)}, now=now)
    reason = metrics.reason_label(result.reason, result.status_code)
    metrics.publish_results({(token.provider, delivery.status, reason): 1}, {})
    return TestPushResult(delivery=delivery, result=result)
