"""delivery.W001: the claim lease must outlast a late renewal."""

from __future__ import annotations

from django.core.checks import run_checks


def _w001() -> list[str]:
    return [m.id for m in run_checks() if m.id == "delivery.W001"]


def test_the_default_settings_pass(settings) -> None:
    assert (settings.HERALD_CLAIM_LEASE_SECONDS, settings.HERALD_CLAIM_RENEW_SECONDS) == (30, 10)
    assert _w001() == []


def test_a_lease_shorter_than_two_renewals_warns(settings) -> None:
    settings.HERALD_CLAIM_LEASE_SECONDS = 19
    assert _w001() == ["delivery.W001"]
    settings.HERALD_CLAIM_RENEW_SECONDS = 9.5  # two renewals fit again
    assert _w001() == []
    settings.HERALD_CLAIM_RENEW_SECONDS = 0
    assert _w001() == ["delivery.W001"]
