"""`{% load herald_time %}` then `{{ value|zoned }}` or `{{ value|zoned:"Europe/Paris" }}`:
core.timefmt.format_time in templates."""

from __future__ import annotations

from datetime import datetime

from django import template

from core.timefmt import format_time

register = template.Library()


@register.filter
def zoned(value: datetime | None, zone: str | None = None) -> str:
    return format_time(value, zone)
