"""Rotating the secrets key (issue 14): credentials written under key A, keys set to
[B, A], `rotate_secrets`, then a worker that knows only B sends a broadcast to every
provider through the simulators - and the database holds no readable private key."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from campaigns.models import CampaignStatus
from delivery.simulators.credentials import ensure_demo_credentials
from tests.campaigns.test_credentials_no_leak import database_dump, leaks, pem_body_lines
from tests.e2e.conftest import drain_broker, wait_for
from tests.e2e.test_delivery import _accepted, _project, _send, _status, _subscriptions, _tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_after_rotation_a_worker_with_only_the_new_key_sends_to_every_provider(
    simulators: Any, start_worker: Any, settings: Any
) -> None:
    simulators.reset()
    drain_broker()
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HERALD_SECRETS_KEYS = [key_a]
    project = _project(simulators)
    apns, fcm = _tokens(project, "apns", 40), _tokens(project, "fcm", 40)
    web = _subscriptions(project, simulators, 20)
    vapid = project.webpush_vapid_private_key.reveal()
    settings.HERALD_SECRETS_KEYS = [key_b, key_a]
    out = io.StringIO()

    call_command("rotate_secrets", stdout=out)

    assert out.getvalue().splitlines()[-1] == (
        "Done: 1 projects, 3 secrets re-encrypted, 0 already under the newest key, 0 unreadable."
    )
    settings.HERALD_SECRETS_KEYS = [key_b]
    start_worker(env={"HERALD_SECRETS_KEY": key_b})
    campaign = _send(project)

    assert wait_for(lambda: _status(campaign) == CampaignStatus.SENT, timeout=120)
    accepted = _accepted(simulators)
    assert set(accepted["tokens"]) == set(apns) | set(fcm) | set(web)
    assert set(accepted["tokens"].values()) == {1}
    info = simulators.info
    demo = ensure_demo_credentials(Path(info["cert_dir"]), fcm_base_url=info["fcm_endpoint"])
    needles = pem_body_lines(vapid) + pem_body_lines(demo.auth_key_pem)
    needles += pem_body_lines(str(demo.service_account_info["private_key"]))
    assert leaks(demo.auth_key_pem, needles)  # the search can find them
    assert leaks(database_dump(), needles) == []
