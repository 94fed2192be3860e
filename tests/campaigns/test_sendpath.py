"""Issue 11's send path through the engine: delivery ids, silent pushes, personalized
text, explicit-push overrides and state, the preview route.

Task functions are called directly (tests/campaigns/test_sending.py's `drive`), pushes
go over HTTP/2 + TLS to the in-process simulators, which keep what they accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns import services
from campaigns.models import CampaignRun, CampaignStatus, PushCampaign
from campaigns.runs import campaign_stats
from campaigns.validation import validate_create
from delivery.credentials import provider_config
from delivery.models import PushDelivery
from delivery.providers import runtime
from delivery.providers.base import OutgoingPush
from tests.campaigns.test_sending import drive
from tests.factories import AppUserFactory, PushTokenFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_sim")]


@pytest.fixture
def kept(sim):
    sim.reset(config=True)
    for simulator in sim._simulators().values():
        simulator.behaviour.update({"keep_payloads": True})

    def payloads() -> dict[str, dict[str, Any]]:
        stats = sim.stats(tokens=True)
        return {**stats["apns"]["payloads"], **stats["fcm"]["payloads"]}

    return payloads


def base(project) -> str:
    return f"/admin/projects/{project.id}/push/campaigns"


def create(project, **fields) -> PushCampaign:
    payload = {"title": "Hi", "body": "There", **fields}
    return services.campaign_create(project=project, fields=validate_create(payload))


def people(project):
    """Ana (iOS, French), Bob (Android, no first name), and a token with no user."""
    ana = AppUserFactory(project=project, attributes={"first_name": "ana", "language": "fr"})
    bob = AppUserFactory(project=project, attributes={"city": "Lyon"})
    return {
        "ana": PushTokenFactory(project=project, app_user=ana),
        "bob": PushTokenFactory(
            project=project, app_user=bob, provider="fcm", platform="android", token="f" * 150
        ),
        "nobody": PushTokenFactory(project=project, app_user=None),
    }


def delivery_of(token) -> PushDelivery:
    return PushDelivery.objects.get(token=token)


def test_every_push_carries_its_delivery_id(project, broker, kept):
    tokens = people(project)
    campaign = create(project)
    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)

    got = kept()
    assert got[tokens["ana"].token]["payload"]["herald_delivery_id"] == str(
        delivery_of(tokens["ana"]).pk
    )
    assert got[tokens["bob"].token]["data"]["herald_delivery_id"] == str(
        delivery_of(tokens["bob"]).pk
    )
    assert got[tokens["ana"].token]["payload"]["herald_campaign_id"] == str(campaign.id)


def test_a_silent_campaign_reaches_both_simulators_as_background_data(project, broker, kept):
    tokens = people(project)
    campaign = create(project, silent=True, data={"sync": "inbox"})
    assert campaign.priority == "normal"  # a new silent campaign defaults to normal

    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign_stats(campaign)["sent"] == 3
    assert CampaignRun.objects.get(campaign=campaign).silent is True
    got = kept()
    apns = got[tokens["ana"].token]
    assert apns["payload"] == {
        "aps": {"content-available": 1},
        "sync": "inbox",
        "herald_campaign_id": str(campaign.id),
        "herald_delivery_id": str(delivery_of(tokens["ana"]).pk),
    }
    assert apns["headers"]["apns-push-type"] == "background"
    assert apns["headers"]["apns-priority"] == "5"
    fcm = got[tokens["bob"].token]
    assert "notification" not in fcm and "notification" not in fcm["android"]
    assert fcm["android"]["priority"] == "NORMAL"
    assert fcm["data"]["sync"] == "inbox"


def test_the_apns_simulator_refuses_a_background_push_at_priority_10(sim, project):
    token = PushTokenFactory(project=project)
    push = OutgoingPush(
        ref="1",
        token=token.token,
        payload={"aps": {"content-available": 1}},
        headers={"apns-push-type": "background", "apns-priority": "10"},
    )
    [result] = runtime.send_batch(provider_config(project, "apns"), [push])

    assert (result.outcome, result.reason) == ("failed", "BadPriority")


def test_a_personalized_campaign_sends_each_user_their_text(project, broker, kept):
    tokens = people(project)
    campaign = create(
        project,
        title='Hi {{ first_name | capitalize | default: "there" }}',
        body="Sale in {{ city | default: 'your city' }} for {{ external_id }}",
        localizations={"fr": {"title": "Salut {{ first_name | upcase }}"}},
    )

    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)

    got = kept()
    assert got[tokens["ana"].token]["payload"]["aps"]["alert"] == {
        "title": "Salut ANA",
        "body": f"Sale in your city for {tokens['ana'].app_user.external_id}",
    }
    assert got[tokens["bob"].token]["notification"] == {
        "title": "Hi there",
        "body": f"Sale in Lyon for {tokens['bob'].app_user.external_id}",
    }
    assert got[tokens["nobody"].token]["payload"]["aps"]["alert"] == {
        "title": "Hi there",
        "body": "Sale in your city for ",
    }
    assert campaign_stats(PushCampaign.objects.get(pk=campaign.pk))["sent"] == 3


def test_an_oversized_personalized_payload_fails_that_delivery_only(project, broker, kept):
    tokens = people(project)
    long_bio = AppUserFactory(project=project, attributes={"bio": "b" * 300})
    too_long = PushTokenFactory(project=project, app_user=long_bio)
    campaign = create(project, body="x" * 3600 + "{{ bio }} {{ bio }}")

    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)

    row = delivery_of(too_long)
    # 3600 + 2 x 256 characters (a value's bound) of body, in an APNs payload with ids.
    assert (row.status, row.error_message) == ("failed", "payload too large (4258 bytes)")
    assert {delivery_of(t).status for t in tokens.values()} == {"sent"}
    assert too_long.token not in kept()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign_stats(campaign)["failed"] == 1


def test_explicit_push_overrides_its_run_only_and_leaves_the_draft_a_draft(
    api, project, broker, kept
):
    tokens = people(project)
    campaign = create(
        project, title="Campaign title", localizations={"fr": {"title": "Titre", "body": "Corps"}}
    )

    response = api.client.post(
        f"{base(project)}/{campaign.id}/push",
        {
            "user_ids": [tokens["ana"].app_user.external_id],
            "title": "Just for you, {{ first_name }}",
        },
    )
    assert response.status_code == 200, response.json()
    drive(campaign, broker)

    run = CampaignRun.objects.get(campaign=campaign, number=1)
    assert (run.trigger, run.status, run.title_override, run.silent) == (
        "explicit",
        "sent",
        "Just for you, {{ first_name }}",
        False,
    )
    # The override wins over the French title; the French body is still used.
    assert kept()[tokens["ana"].token]["payload"]["aps"]["alert"] == {
        "title": "Just for you, ana",
        "body": "Corps",
    }
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run, campaign.sent_at) == ("draft", 0, None)
    assert campaign_stats(campaign)["sent"] == 0  # stats follow the campaign's own runs

    # Still a draft: editable, and its own send is run 2 and ends sent as always.
    patched = api.client.patch(f"{base(project)}/{campaign.id}", {"title": "New"})
    assert patched.status_code == 200
    services.campaign_send(project=project, campaign_id=campaign.id)
    drive(campaign, broker)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.current_run, campaign.last_run_number) == ("sent", 2, 2)
    assert campaign_stats(campaign)["sent"] == 3


def test_an_explicit_silent_push_of_a_loud_campaign(api, project, broker, kept):
    tokens = people(project)
    campaign = create(project, sound="default", badge=2)

    response = api.client.post(
        f"{base(project)}/{campaign.id}/push",
        {"device_ids": [tokens["bob"].pk], "silent": True, "data": {"k": "v"}},
    )
    assert response.status_code == 200
    drive(campaign, broker)

    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.silent, run.data_override, run.status) == (True, {"k": "v"}, "sent")
    message = kept()[tokens["bob"].token]
    assert message["data"] == {
        "k": "v",
        "herald_campaign_id": str(campaign.id),
        "herald_delivery_id": str(delivery_of(tokens["bob"]).pk),
    }
    assert message["android"] == {"priority": "HIGH", "collapse_key": f"c-{campaign.id}"}
    assert "notification" not in message


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"title": "{{ oops"}, "INVALID_PLACEHOLDER", "title"),
        ({"silent": "yes"}, "VALIDATION_ERROR", "silent"),
        ({"body": ""}, "MISSING_BODY", "body"),
    ],
)
def test_refused_explicit_overrides_change_nothing(api, project, broker, body, code, field):
    tokens = people(project)
    campaign = create(project)

    response = api.client.post(
        f"{base(project)}/{campaign.id}/push", {"device_ids": [tokens["bob"].pk], **body}
    )

    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["details"]["field"]) == (
        code,
        field,
    )
    assert CampaignRun.objects.count() == 0 and PushDelivery.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "code", "details"),
    [
        (
            {"title": "Hi {{ name | shout }}"},
            "INVALID_PLACEHOLDER",
            {"field": "title", "position": 3, "problem": "unknown_filter"},
        ),
        (
            {"body": "Hi {{ name"},
            "INVALID_PLACEHOLDER",
            {"field": "body", "position": 3, "problem": "unclosed"},
        ),
        (
            {"localizations": {"fr": {"body": "a }} b"}}},
            "INVALID_PLACEHOLDER",
            {"field": "localizations.fr.body", "position": 2, "problem": "unopened"},
        ),
        ({"silent": True, "sound": "default"}, "VALIDATION_ERROR", {"field": "sound"}),
        ({"silent": True, "badge": 0}, "VALIDATION_ERROR", {"field": "badge"}),
        (
            {"silent": True, "actions": [{"id": "a", "title": "A"}]},
            "VALIDATION_ERROR",
            {"field": "actions"},
        ),
        (
            {"body": " ".join(f"{{{{ k{i} }}}}" for i in range(21))},
            "INVALID_PLACEHOLDER",
            {"field": "title", "problem": "too_many_names", "limit": 20},
        ),
    ],
)
def test_refused_campaign_content(api, project, fields, code, details):
    response = api.client.post(base(project), {"title": "T", "body": "B", **fields})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["details"] == details
    assert PushCampaign.objects.count() == 0


def test_patching_silent_on_checks_the_stored_content(api, project):
    campaign = create(project, badge=3)

    response = api.client.patch(f"{base(project)}/{campaign.id}", {"silent": True})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "badge"}
    campaign.refresh_from_db()
    assert campaign.silent is False


def test_a_silent_test_push_is_accepted(api, project, kept):
    token = PushTokenFactory(project=project)

    response = api.client.post(
        f"{base(project)}/test",
        {
            "title": "T",
            "body": "B",
            "silent": True,
            "device_token": token.token,
            "provider": "apns",
        },
    )

    assert response.status_code == 200, response.json()
    got = kept()[token.token]
    assert got["headers"]["apns-push-type"] == "background"
    assert got["payload"]["herald_delivery_id"] == str(response.json()["delivery_id"])


def test_preview_renders_for_a_registered_user_or_attributes(api, project):
    tokens = people(project)
    campaign = create(
        project,
        title='Hi {{ first_name | default: "there" }}',
        localizations={"fr": {"title": "Salut {{ first_name }}"}},
    )
    url = f"{base(project)}/{campaign.id}/preview"

    ana = api.client.post(url, {"external_id": tokens["ana"].app_user.external_id}).json()
    made_up = api.client.post(url, {"attributes": {"first_name": "Zoé"}}).json()
    nobody = api.client.post(url, {}).json()
    unknown = api.client.post(url, {"external_id": "ghost"})

    assert (ana["language"], ana["title"], ana["placeholders"]) == (
        "fr",
        "Salut ana",
        ["first_name"],
    )
    assert ana["payloads"]["apns"]["payload"]["aps"]["alert"]["title"] == "Salut ana"
    assert made_up["title"] == "Hi Zoé" and nobody["title"] == "Hi there"
    assert set(ana["payloads"]) == {"apns", "fcm_android", "fcm_ios", "fcm_web", "webpush"}
    assert ana["payloads"]["webpush"]["payload"]["notification"]["title"] == "Salut ana"
    assert ana["sizes"]["apns"] > 0
    assert ana["largest"] == max(v for k, v in ana["sizes"].items() if k != "webpush")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"external_id": "a", "attributes": {}}, "VALIDATION_ERROR"),
        ({"attributes": {"external_id": "x"}}, "INVALID_ATTRIBUTES"),
        ({"external_id": 3}, "INVALID_EXTERNAL_ID"),
        ({"language": "not a language"}, "VALIDATION_ERROR"),
        ({"other": 1}, "VALIDATION_ERROR"),
    ],
)
def test_preview_refusals(api, project, body, code):
    campaign = create(project)

    response = api.client.post(f"{base(project)}/{campaign.id}/preview", body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
