"""Times as the console shows them: always with their zone ("2026-12-01 09:00 Europe/Paris").

One helper for every console page (list columns, read-only fields, the dashboard,
the campaign pages), so no time is ever shown without saying which clock it is on.
Bookkeeping times (created, sent, last seen) are shown in the server's zone
(settings.TIME_ZONE, UTC by default); a schedule is shown in the zone it was set in
(the project's default zone unless the campaign says otherwise).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.contrib import admin

EMPTY = "—"


def zone_named(name: str | None) -> tzinfo:
    """The zone called `name`; the server's zone for an empty or unknown name."""
    for candidate in (name, settings.TIME_ZONE, "UTC"):
        if candidate:
            try:
                return zoneinfo.ZoneInfo(candidate)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return zoneinfo.ZoneInfo("UTC")


def format_time(value: datetime | None, zone: str | None = None, *, seconds: bool = False) -> str:
    """`value` on the clock of `zone` (default: the server's), followed by the zone's
    name: "2026-12-01 09:00 Europe/Paris". None (never happened) reads as a dash."""
    if value is None:
        return EMPTY
    tz = zone_named(zone)
    local = value.astimezone(tz) if value.tzinfo is not None else value.replace(tzinfo=tz)
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {tz}"


def zoned(
    field: str, description: str, zone_of: Callable[[Any], str | None] | None = None
) -> Callable[[Any, Any], str]:
    """A ModelAdmin display method showing `field` with its zone, sortable by the field.

        created = zoned("created_at", "Created")       # in the class body
        list_display = (..., "created")                # or readonly_fields / fields

    `zone_of(obj)` names the zone to show it in (e.g. the project's); default the
    server's.
    """

    @admin.display(description=description, ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        return format_time(getattr(obj, field), zone_of(obj) if zone_of is not None else None)

    show.__name__ = f"{field}_zoned"
    return show
