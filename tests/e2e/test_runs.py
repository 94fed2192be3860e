"""The run lifecycle through a real worker: nothing wedges, stats settle after a cancel.

Issue 9, items 1 and 2, as an operator met them: a campaign targeting a segment
whose stored rules no longer validate stayed `sending` for good; a cancelled
campaign whose rows were waiting kept all-zero stats for good.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.validation import validate_create
from delivery.models import PushDelivery, PushToken
from segments.models import Segment
from tests.e2e.conftest import Simulators, drain_broker, wait_for
from tests.e2e.test_delivery import _project, _tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _status(campaign: PushCampaign) -> str:
    return PushCampaign.objects.get(pk=campaign.pk).status


def _stats(campaign: PushCampaign) -> dict[str, int]:
    return campaign_stats(PushCampaign.objects.get(pk=campaign.pk))


def test_a_segment_with_rules_that_no_longer_validate_fails_the_send_at_once(
    simulators: Simulators, start_worker
):
    drain_broker()
    simulators.reset()
    project = _project(simulators)
    _tokens(project, "apns", 3)
    # Saved around the validator (as the admin used to allow): `equals` is not an op.
    segment = Segment.objects.create(
        project=project,
        name="Americans",
        rules={"all": [{"attr": "country", "op": "equals", "value": "US"}]},
    )
    campaign = services.campaign_create(
        project=project,
        fields=validate_create({"title": "Hi", "body": "There", "segment_id": str(segment.pk)}),
    )
    start_worker()
    services.campaign_send(project=project, campaign_id=campaign.pk)

    assert wait_for(lambda: _status(campaign) != CampaignStatus.SENDING, timeout=60)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert "Americans" in campaign.last_error
    assert CampaignRun.objects.get(campaign=campaign).status == "failed"
    assert PushDelivery.objects.count() == 0
    assert simulators.stats()["apns"]["requests_total"] == 0


def test_cancel_with_waiting_rows_settles_the_stats(simulators: Simulators, start_worker):
    drain_broker()
    simulators.reset()
    project = _project(simulators)
    sent_now = _tokens(project, "apns", 1)
    waiting = _tokens(project, "apns", 3)
    PushToken.objects.filter(token__in=sent_now).update(timezone="Pacific/Kiritimati")
    PushToken.objects.filter(token__in=waiting).update(timezone="UTC")
    now = timezone.now().astimezone(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
    }
    campaign = services.campaign_create(
        project=project,
        fields=validate_create({"title": "Hi", "body": "There", "quiet_hours": quiet}),
    )
    start_worker()
    services.campaign_send(project=project, campaign_id=campaign.pk)
    assert wait_for(lambda: _stats(campaign)["sent"] == 1, timeout=60)
    assert _stats(campaign)["pending"] == 3  # deferred to the end of quiet hours

    services.campaign_cancel(project=project, campaign_id=campaign.pk)

    final = {
        "targeted": 4,
        "sent": 1,
        "failed": 0,
        "invalid_tokens": 0,
        "skipped": 3,
        "unknown": 0,
        "pending": 0,
    }
    assert wait_for(lambda: _stats(campaign) == final, timeout=60)
    assert _status(campaign) == CampaignStatus.CANCELLED
    assert CampaignRun.objects.get(campaign=campaign).settled_at is not None
    assert simulators.stats()["apns"]["accepted"] == 1
