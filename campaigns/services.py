"""Campaign writes: every state change is one conditional UPDATE (DESIGN.md).

Broker work happens after the database transaction has committed, so a worker
never wakes up to a row it cannot see yet; if the broker then refuses, the
campaign is moved to `failed` (never left in a stale `sending`/`scheduled`) and
the caller gets SEND_FAILED / RESCHEDULE_FAILED.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns import queue, runs, scheduling
from campaigns.content import (
    RunOverrides,
    campaign_content,
    check_payload_size,
    payload_preview,
    reaches_browsers,
)
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.validation import CampaignFields, campaign_segment, check_campaign
from core.audit import audit_record, with_fields
from core.errors import ApplicationError, Conflict, NotFound, UpstreamFailure
from core.models import Project
from delivery.payloads import PushContent
from delivery.services import NewDelivery, deliveries_create
from segments.audience import resolve_audience
from segments.models import AppUser, Segment
from segments.selectors import audience_counts, explicit_tokens
from segments.targeting import validate_targeting

logger = logging.getLogger("herald.campaigns")

# A change to any of these re-plans the schedule (and makes old wake-ups stale).
SCHEDULE_FIELDS = {"scheduled_at", "recurrence", "deliver_in_user_timezone", "end_at"}
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
SENDABLE = (CampaignStatus.DRAFT, CampaignStatus.FAILED)
CANCELLABLE = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING)


class SendFailed(ApplicationError):
    status = 500
    code = "SEND_FAILED"


class RescheduleFailed(UpstreamFailure):
    code = "RESCHEDULE_FAILED"


def _get(project: Project, campaign_id: uuid.UUID) -> PushCampaign:
    try:
        return PushCampaign.objects.get(pk=campaign_id, project=project)
    except PushCampaign.DoesNotExist as exc:
        raise NotFound("Campaign not found.") from exc


def _already_sent(status: str) -> Conflict:
    return Conflict(
        f"The campaign is already {status}.", code="ALREADY_SENT", details={"status": status}
    )


def _apply(campaign: PushCampaign, fields: CampaignFields) -> list[str]:
    """Set the clean fields on the row (every key of CampaignFields is a model field
    of the same name, but segment_id / segment_name, which must name a segment of the
    project)."""
    validate_targeting(project=campaign.project, targeting=fields.get("targeting"))
    changed = []
    if "segment_id" in fields or "segment_name" in fields:
        campaign.segment = campaign_segment(
            project=campaign.project,
            segment_id=fields.get("segment_id"),
            segment_name=fields.get("segment_name"),
        )
        changed.append("segment")
    for name, value in fields.items():
        if name not in ("segment_id", "segment_name"):
            setattr(campaign, name, value)
            changed.append(name)
    return changed


def _duplicate_name(name: str) -> Conflict:
    return Conflict(
        f"A campaign named '{name}' already exists in this project.",
        code="DUPLICATE_CAMPAIGN_NAME",
        details={"field": "name", "name": name},
    )


def _check_unique_name(campaign: PushCampaign) -> None:
    """A campaign whose name must be its own (`unique_name`, set by compatible front
    doors) may not share it with any campaign of the project. The partial unique
    constraint `campaign_unique_name_per_project` settles races among such campaigns
    (the loser's IntegrityError becomes the same 409)."""
    if not campaign.unique_name:
        return
    others = PushCampaign.objects.filter(project=campaign.project, name=campaign.name)
    if campaign.pk is not None:
        others = others.exclude(pk=campaign.pk)
    if others.exists():
        raise _duplicate_name(campaign.name)


def _name_taken(project: Project, name: str, *, exclude: uuid.UUID | None = None) -> bool:
    """Another campaign of the project that claims `name` (after a lost race)."""
    rows = PushCampaign.objects.filter(project=project, name=name, unique_name=True)
    return rows.exclude(pk=exclude).exists() if exclude is not None else rows.exists()


def _schedule_failed(campaign_id: uuid.UUID, reason: str) -> None:
    """scheduled -> failed when its wake-up could not be armed (no run has started)."""
    PushCampaign.objects.filter(pk=campaign_id, status=CampaignStatus.SCHEDULED).update(
        status=CampaignStatus.FAILED, last_error=reason[:500], updated_at=timezone.now()
    )


SCHEDULE_STATE = ["status", "scheduled_at", "fire_at", "recurrence_anchor", "local_wall_clock"]


def _audit(action: str, campaign: PushCampaign, **changes: Any) -> None:
    """One audit event about `campaign` (inside the caller's transaction)."""
    audit_record(action=action, project_id=campaign.project_id, obj=campaign, changes=changes)


def _audit_scheduled(campaign: PushCampaign) -> None:
    _audit(
        "campaign.scheduled",
        campaign,
        scheduled_at=campaign.scheduled_at.isoformat() if campaign.scheduled_at else None,
        recurring=bool(campaign.recurrence),
    )


def _given_fields(fields: CampaignFields) -> list[str]:
    """The campaign fields a write names, as the audit trail shows them (the segment
    however it was named)."""
    return ["segment" if name in ("segment_id", "segment_name") else name for name in fields]


def _prepare(campaign: PushCampaign, fields: CampaignFields, *, adding: bool) -> list[str]:
    """Apply validated `fields` to `campaign` (not saved) and run every check that
    needs the project or the campaign itself: references (segment, targeting), the
    schedule, end_at after scheduled_at, the built payload sizes. Raises
    InvalidInput; returns the names of the fields that change."""
    changed = _apply(campaign, fields)
    if adding or "name" in fields:
        _check_unique_name(campaign)
    if adding or SCHEDULE_FIELDS & set(fields):
        if not adding and "scheduled_at" not in fields and campaign.recurrence_anchor is not None:
            campaign.scheduled_at = campaign.recurrence_anchor  # keep the anchor
        scheduling.plan_schedule(campaign, now=timezone.now())
        changed += SCHEDULE_STATE
    check_campaign(campaign)
    return changed


def campaign_check(
    *, project: Project, campaign: PushCampaign | None, fields: CampaignFields
) -> None:
    """Every check campaign_create (campaign None) or campaign_update would make of
    `fields`, without saving anything: the admin form runs it to put errors on its
    fields before it calls the service."""
    probe = PushCampaign(project=project) if campaign is None else copy.copy(campaign)
    _prepare(probe, fields, adding=campaign is None)


def campaign_create(
    *, project: Project, fields: CampaignFields, unique_name: bool = False
) -> PushCampaign:
    """Create a draft, or a scheduled campaign when scheduled_at is given.

    `unique_name`: the name must be the campaign's alone in the project (a compatible
    front door's rule): 409 DUPLICATE_CAMPAIGN_NAME when another campaign has it."""
    try:
        with transaction.atomic():
            campaign = PushCampaign(project=project, unique_name=unique_name)
            _prepare(campaign, fields, adding=True)
            if campaign.status == CampaignStatus.SCHEDULED:
                campaign.schedule_version = 1
            campaign.save()
            scheduling.sync_periodic_task(campaign.id)
            audit_record(
                action="campaign.created",
                project_id=project.pk,
                obj=campaign,
                changes=with_fields(_given_fields(fields)),
            )
            if campaign.status == CampaignStatus.SCHEDULED:
                _audit_scheduled(campaign)
    except IntegrityError as exc:
        if unique_name and _name_taken(project, fields.get("name", "")):
            raise _duplicate_name(fields.get("name", "")) from exc
        raise
    if campaign.status == CampaignStatus.SCHEDULED:
        try:
            scheduling.arm_if_due(campaign.id)
        except queue.EnqueueFailed as exc:
            _schedule_failed(campaign.id, f"Could not arm the schedule: {exc}")
    campaign.refresh_from_db()
    return campaign


def campaign_update(
    *, project: Project, campaign_id: uuid.UUID, fields: CampaignFields
) -> PushCampaign:
    """PATCH a draft or scheduled campaign.

    scheduled_at on a draft promotes it to scheduled; scheduled_at null demotes a
    scheduled campaign to draft. Any schedule change bumps schedule_version so a
    wake-up task enqueued for the old time finds itself stale and does nothing.
    """
    with transaction.atomic():
        campaign = _get(project, campaign_id)
        campaign = PushCampaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in EDITABLE:
            raise _already_sent(campaign.status)
        was = campaign.status
        changed = _prepare(campaign, fields, adding=False)
        replanned = bool(SCHEDULE_FIELDS & set(fields))
        if replanned:
            campaign.schedule_version = F("schedule_version") + 1
            changed.append("schedule_version")
        try:
            with transaction.atomic():
                campaign.save(update_fields=[*dict.fromkeys(changed), "updated_at"])
        except IntegrityError as exc:
            if campaign.unique_name and _name_taken(project, campaign.name, exclude=campaign.pk):
                raise _duplicate_name(campaign.name) from exc
            raise
        scheduling.sync_periodic_task(campaign.id)
        audit_record(
            action="campaign.updated",
            project_id=project.pk,
            obj=campaign,
            changes=with_fields(_given_fields(fields)),
        )
        if replanned and campaign.status == CampaignStatus.SCHEDULED:
            _audit_scheduled(campaign)
        elif was == CampaignStatus.SCHEDULED and campaign.status == CampaignStatus.DRAFT:
            _audit("campaign.unscheduled", campaign)
    if replanned and campaign.status == CampaignStatus.SCHEDULED:
        try:
            scheduling.arm_if_due(campaign.id)
        except queue.EnqueueFailed as exc:
            _schedule_failed(campaign.id, f"Could not re-arm the schedule: {exc}")
            raise RescheduleFailed(
                "The campaign was updated but its schedule could not be re-armed; "
                "it is now failed. Send it, or fix the broker and PATCH scheduled_at again.",
                details={"status": CampaignStatus.FAILED},
            ) from exc
    campaign.refresh_from_db()
    return campaign


def campaign_delete(*, project: Project, campaign_id: uuid.UUID) -> None:
    """Hard-delete a draft or scheduled campaign; any wake-up task then finds nothing.

    With its runs and their deliveries: a draft keeps the explicit pushes made from
    it, and deleting it deletes their record too (docs/api.md)."""
    with transaction.atomic():
        # Lock the row first: QuerySet.delete() selects the rows and then deletes by id,
        # so without the lock a send committing in between was deleted under it (a 500
        # on the FK of its new run, or a sending campaign gone).
        row = (
            PushCampaign.objects.select_for_update()
            .filter(pk=campaign_id, project=project)
            .values_list("status", "periodic_task_id", "name")
            .first()
        )
        if row is None:
            raise NotFound("Campaign not found.")
        status, task_id, name = row
        if status not in EDITABLE:
            raise _already_sent(status)
        PushCampaign.objects.filter(pk=campaign_id).delete()
        if task_id is not None:
            PeriodicTask.objects.filter(pk=task_id).delete()
        audit_record(
            action="campaign.deleted",
            project_id=project.pk,
            object_type="pushcampaign",
            object_id=campaign_id,
            object_repr=name,
            changes={"status": status},
        )


def campaign_send(
    *, project: Project, campaign_id: uuid.UUID, trigger: str = CampaignRun.Trigger.SEND
) -> PushCampaign:
    """draft|failed -> sending (a new run), then enqueue its fan-out."""
    with transaction.atomic():
        campaign = runs.run_begin(
            campaign_id=campaign_id,
            allowed=Q(project=project, status__in=SENDABLE),
            trigger=trigger,
            now=timezone.now(),
        )
        if campaign is None:
            status = _get(project, campaign_id).status
            if status == CampaignStatus.SCHEDULED:
                raise Conflict(
                    "The campaign is scheduled; it fires at its scheduled_at. "
                    "PATCH scheduled_at to null first to send it now.",
                    code="ALREADY_SCHEDULED",
                    details={"status": status},
                )
            raise _already_sent(status)
        _audit("campaign.sent", campaign, run=campaign.last_run_number, trigger=str(trigger))
    try:
        runs.run_launch(campaign)
    except queue.EnqueueFailed as exc:
        raise SendFailed(
            "The send could not be started; the campaign is now failed. Retry /send.",
            details={"status": CampaignStatus.FAILED},
        ) from exc
    campaign.refresh_from_db()
    return campaign


def campaign_cancel(*, project: Project, campaign_id: uuid.UUID) -> PushCampaign:
    """scheduled|sending -> cancelled. Batches not yet sent see it and stop; the
    run's waiting rows are closed and its numbers settled by a task (or the sweeper)."""
    now = timezone.now()
    with transaction.atomic():
        won = PushCampaign.objects.filter(
            pk=campaign_id, project=project, status__in=CANCELLABLE
        ).update(
            status=CampaignStatus.CANCELLED,
            schedule_version=F("schedule_version") + 1,
            completed_at=now,
            updated_at=now,
        )
        if not won:
            status = _get(project, campaign_id).status
            raise Conflict(
                f"Only scheduled or sending campaigns can be cancelled; this one is {status}.",
                code="NOT_CANCELLABLE",
                details={"status": status},
            )
        had_run = runs.run_cancel(campaign_id=campaign_id, now=now)
        scheduling.sync_periodic_task(campaign_id)
        campaign = PushCampaign.objects.get(pk=campaign_id)
        _audit("campaign.cancelled", campaign, **({"run": campaign.current_run} if had_run else {}))
    if had_run:
        try:
            queue.enqueue_close_run(campaign_id, campaign.current_run)
        except queue.EnqueueFailed:
            logger.warning("Could not enqueue the close of %s; the sweeper will", campaign_id)
    return campaign


@transaction.atomic
def campaign_duplicate(*, campaign: PushCampaign) -> PushCampaign:
    """A new draft with the same content and targeting (admin action)."""
    copy = PushCampaign.objects.get(pk=campaign.pk)
    copy.pk = uuid.uuid4()
    copy.name = f"{campaign.name} (copy)"[:200]
    copy.unique_name = False  # a copy is an ordinary campaign (its name may repeat)
    copy.status = CampaignStatus.DRAFT
    copy.scheduled_at = copy.fire_at = copy.recurrence_anchor = None
    copy.recurrence = None
    copy.periodic_task = None
    copy.local_wall_clock = ""
    copy.schedule_version = 0
    copy.armed_version = 0
    copy.current_run = copy.last_run_number = 0
    copy.last_error = ""
    copy.sent_at = copy.completed_at = None
    copy.save(force_insert=True)
    _audit("campaign.created", copy, fields=[], duplicate_of=str(campaign.pk))
    return copy


MAX_EXPLICIT_DEVICES = 1000
PUSHABLE = (CampaignStatus.DRAFT, CampaignStatus.SENT, CampaignStatus.FAILED)


class TooManyDevices(ApplicationError):
    status = 413
    code = "TOO_MANY_DEVICES"


@dataclass(frozen=True)
class ExplicitPush:
    run: int | None
    targeted: int
    invalid_device_ids: list[str]


def campaign_push_explicit(
    *,
    project: Project,
    campaign_id: uuid.UUID,
    device_ids: list[str],
    user_ids: list[str],
    overrides: RunOverrides | None = None,
    platforms: list[str] | None = None,
) -> ExplicitPush:
    """A new run of the campaign to exactly these devices/users (Azure-style push).

    Allowed on draft, sent and failed campaigns, repeatedly: each call is a run of
    its own (trigger `explicit`), ignoring the campaign's segment and targeting, with
    `overrides` (data, title, body, silent) for that run only. The campaign's status
    does not change: a draft used for explicit pushes stays an editable draft
    (docs/decisions.md, "Explicit pushes"). The rows are created here (at most 1000),
    so the run needs no fan-out; unknown or inactive entries are reported back, and
    nothing is started if none is reachable. `platforms` (none: all) limits the
    tokens reached, for the MoEngage door's targetPlatform.
    """
    if len(device_ids) + len(user_ids) > MAX_EXPLICIT_DEVICES:
        raise TooManyDevices(
            f"At most {MAX_EXPLICIT_DEVICES} device_ids and user_ids per push.",
            details={"limit": MAX_EXPLICIT_DEVICES},
        )
    campaign = _get(project, campaign_id)
    if overrides is not None:
        check_payload_size(campaign, overrides)
    tokens, invalid = explicit_tokens(
        project=project, device_ids=device_ids, user_ids=user_ids, platforms=platforms
    )
    targets = list(tokens.order_by("id").values_list("id", "app_user_id", "provider"))
    if not targets:
        return ExplicitPush(run=None, targeted=0, invalid_device_ids=invalid)
    with transaction.atomic():
        started = runs.run_begin(
            campaign_id=campaign_id,
            allowed=Q(project=project, status__in=PUSHABLE),
            trigger=CampaignRun.Trigger.EXPLICIT,
            now=timezone.now(),
            overrides=overrides,
            targeted=len(targets),
            fanout_done=True,
        )
        if started is None:
            status = _get(project, campaign_id).status
            if status == CampaignStatus.SCHEDULED:
                raise Conflict(
                    "The campaign is scheduled; push to a list once it is a draft or sent.",
                    code="ALREADY_SCHEDULED",
                    details={"status": status},
                )
            raise Conflict(
                f"The campaign is {status}; push to a list when it is draft, sent or failed.",
                code="ALREADY_SENT" if status == CampaignStatus.SENDING else "NOT_PUSHABLE",
                details={"status": status},
            )
        run = started.last_run_number
        deliveries_create(
            campaign_id=campaign_id,
            run=run,
            tokens=[NewDelivery(t, u, p) for t, u, p in targets],
        )
        _audit(
            "campaign.pushed",
            started,
            run=run,
            targeted=len(targets),
            invalid_device_ids=len(invalid),
            overrides=sorted(
                name
                for name in ("data", "title", "body", "silent")
                if overrides is not None and getattr(overrides, name) not in (None, "")
            ),
        )
    try:
        runs.run_launch(
            started,
            enqueue=lambda: queue.enqueue_batch(campaign_id, run, targets[0][0], targets[-1][0]),
        )
    except queue.EnqueueFailed as exc:
        raise SendFailed(
            "The push could not be started; the campaign is now failed.",
            details={"status": CampaignStatus.FAILED},
        ) from exc
    return ExplicitPush(run=run, targeted=len(targets), invalid_device_ids=invalid)


def campaign_preview(
    *,
    project: Project,
    campaign_id: uuid.UUID,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """The saved campaign's notification and payloads for one sample user
    (`content_preview`)."""
    campaign = _get(project, campaign_id)
    return content_preview(
        project=project,
        content=campaign_content(campaign),
        external_id=external_id,
        attributes=attributes,
        language=language,
        webpush=reaches_browsers(campaign.platforms),
    )


def content_preview(
    *,
    project: Project,
    content: PushContent,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    language: str | None = None,
    webpush: bool = True,
) -> dict[str, Any]:
    """Content's notification and payloads as one sample user would get them
    (`content.payload_preview`): a registered user of the project by external id
    (NOT_FOUND, details `{"field": "external_id"}`, otherwise: no other project's
    user), or made-up attributes, or nobody (placeholders take their defaults). The
    language is `language`, else the user's. The one sample-user lookup behind the
    API's preview of a saved campaign and the console composer's of unsaved content.
    `webpush` false leaves the web push payload out (content no browser gets).
    """
    values: dict[str, Any] = dict(attributes or {})
    if external_id is not None:
        user = AppUser.objects.filter(project=project, external_id=external_id).first()
        if user is None:
            raise NotFound(
                "No app user with that external_id in this project.",
                details={"field": "external_id"},
            )
        values = {**user.attributes, "external_id": user.external_id}
    if language is None:
        language = values.get("language") if isinstance(values.get("language"), str) else ""
    return payload_preview(
        content, language=language or "", now=timezone.now(), values=values, webpush=webpush
    )


def audience_of(
    *,
    project: Project,
    segment: Segment | None,
    targeting: dict[str, Any] | None,
    platforms: list[str] | None,
) -> dict[str, Any]:
    """How many active tokens a segment + targeting + platforms reach now, by provider
    and platform: the one count behind the API's /audience and the console's estimate."""
    tokens = resolve_audience(
        project=project, segment=segment, targeting=targeting, platforms=platforms
    )
    return audience_counts(tokens)


def campaign_audience(*, project: Project, campaign_id: uuid.UUID) -> dict[str, Any]:
    """How many active tokens the campaign would reach if it were sent now."""
    campaign = _get(project, campaign_id)
    return audience_of(
        project=project,
        segment=campaign.segment,
        targeting=campaign.targeting,
        platforms=campaign.platforms,
    )


def audience_estimate(*, project: Project, fields: CampaignFields) -> dict[str, Any]:
    """The audience of unsaved targeting (clean `segment_id`, `targeting`, `platforms`
    from `campaigns.validation`), checked against the project as a save would check it
    (INVALID_SEGMENT_ID, user_data keys): the console's live estimate."""
    targeting = fields.get("targeting") or {}
    validate_targeting(project=project, targeting=targeting)
    return audience_of(
        project=project,
        segment=campaign_segment(
            project=project,
            segment_id=fields.get("segment_id"),
            segment_name=fields.get("segment_name"),
        ),
        targeting=targeting,
        platforms=fields.get("platforms") or [],
    )
