"""The delivery log as operators search it: by a user's external id or a provider
message id, with user, platform and provider columns, no query per row, zoned times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.console import url
from tests.factories import (
    AppUserFactory,
    CampaignFactory,
    PushDeliveryFactory,
    PushTokenFactory,
)

FCM_ID = "projects/herald-demo/messages/0:1234"


def _delivery_to(external_id: str, campaign: Any, **kwargs: Any) -> Any:
    user = AppUserFactory.create(project=campaign.project, external_id=external_id)
    token = PushTokenFactory.create(
        project=campaign.project,
        app_user=user,
        provider="fcm",
        platform="android",
    )
    return PushDeliveryFactory.create(campaign=campaign, token=token, **kwargs)


def test_search_by_external_id_shows_user_platform_and_provider(staff: Client) -> None:
    campaign = CampaignFactory.create()
    wanted = _delivery_to(
        "alice", campaign, status="sent", sent_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    )
    _delivery_to("bob", campaign, status="sent")

    response = staff.get(url("delivery_pushdelivery_changelist"), {"q": "alice"})

    assert [d.pk for d in response.context["cl"].result_list] == [wanted.pk]
    page = response.content.decode()
    assert '<td class="field-user">alice</td>' in page
    assert '<td class="field-platform">Android</td>' in page
    assert '<td class="field-provider">FCM</td>' in page
    assert '<td class="field-sent">2026-12-01 08:00 UTC</td>' in page


def test_search_by_provider_message_id(staff: Client) -> None:
    campaign = CampaignFactory.create()
    wanted = _delivery_to("carol", campaign, status="sent", provider_msg_id=FCM_ID)
    _delivery_to("dave", campaign, status="sent", provider_msg_id="projects/x/messages/other")

    response = staff.get(url("delivery_pushdelivery_changelist"), {"q": FCM_ID})

    assert [d.pk for d in response.context["cl"].result_list] == [wanted.pk]
    # An external id that is no provider id shape never matches a message id.
    assert (
        list(
            staff.get(url("delivery_pushdelivery_changelist"), {"q": "0:1234"})
            .context["cl"]
            .result_list
        )
        == []
    )


def test_filters_by_platform(staff: Client) -> None:
    campaign = CampaignFactory.create()
    android = _delivery_to("erin", campaign)
    PushDeliveryFactory.create(campaign=campaign)  # an iOS token (the factory's default)

    response = staff.get(url("delivery_pushdelivery_changelist"), {"token__platform": "android"})

    assert [d.pk for d in response.context["cl"].result_list] == [android.pk]


def test_the_log_costs_the_same_queries_for_more_rows(staff: Client) -> None:
    campaign = CampaignFactory.create()
    _delivery_to("u0", campaign)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(url("delivery_pushdelivery_changelist")).status_code == 200
        return len(captured)

    few = queries()
    for n in range(1, 6):
        _delivery_to(f"u{n}", campaign)
    assert queries() == few


def test_delivery_page_shows_times_with_their_zone(staff: Client) -> None:
    delivery = _delivery_to(
        "frank",
        CampaignFactory.create(),
        status="sent",
        sent_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    )
    page = staff.get(url("delivery_pushdelivery_change", delivery.pk)).content.decode()
    assert '<div class="readonly">2026-12-01 08:00 UTC</div>' in page
    assert "frank" in page
