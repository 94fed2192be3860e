"""The periodic member-count refresh (called directly, as Celery would run it)."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from segments.models import Segment
from segments.tasks import refresh_segment_counts_task
from tests.segments.helpers import make_project, make_user

pytestmark = pytest.mark.django_db


def test_refresh_counts_every_segment_of_every_project() -> None:
    one, two = make_project("one"), make_project("two")
    for i in range(3):
        make_user(one, f"a{i}", {"country": "US" if i else "FR"})
    make_user(two, "b0", {"country": "US"})
    us_one = Segment.objects.create(
        project=one, name="US", rules={"attr": "country", "op": "eq", "value": "US"}
    )
    everyone_one = Segment.objects.create(project=one, name="all", rules={})
    us_two = Segment.objects.create(
        project=two, name="US", rules={"attr": "country", "op": "eq", "value": "US"}
    )
    before = timezone.now()

    assert refresh_segment_counts_task() == 3

    counts = {s.pk: (s.member_count, s.evaluated_at) for s in Segment.objects.all()}
    assert counts[us_one.pk][0] == 2
    assert counts[everyone_one.pk][0] == 3
    assert counts[us_two.pk][0] == 1
    evaluated = {at for _, at in counts.values()}
    assert len(evaluated) == 1
    (at,) = evaluated
    assert at is not None and at >= before


def test_refresh_skips_a_segment_with_broken_rules(caplog: pytest.LogCaptureFixture) -> None:
    project = make_project()
    make_user(project, "u")
    broken = Segment.objects.create(project=project, name="bad", rules={"attr": "x", "op": "??"})
    fine = Segment.objects.create(project=project, name="ok", rules={})
    with caplog.at_level(logging.WARNING, logger="herald.segments"):
        assert refresh_segment_counts_task() == 1
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert (broken.member_count, fine.member_count) == (None, 1)
    assert f"segment {broken.pk} has invalid rules" in caplog.text
