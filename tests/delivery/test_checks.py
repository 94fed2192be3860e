"""delivery.W001: the claim lease must cover the slowest sub-batch."""

from __future__ import annotations

from django.core.checks import run_checks

from delivery.checks import slowest_sub_batch_seconds


def _w001() -> list[str]:
    return [m.id for m in run_checks() if m.id == "delivery.W001"]


def test_the_default_settings_pass() -> None:
    assert slowest_sub_batch_seconds() == 160.0  # ceil(1000 / 64) waves x 10 s
    assert _w001() == []


def test_a_lease_shorter_than_the_slowest_sub_batch_warns(settings) -> None:
    settings.HERALD_CLAIM_LEASE_SECONDS = 160
    assert _w001() == ["delivery.W001"]
    settings.HERALD_SEND_CHUNK_SIZE = 500  # 8 waves x 10 s = 80 s: covered again
    assert _w001() == []
