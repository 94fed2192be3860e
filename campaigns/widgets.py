"""The composer's form fields and widgets: what an operator clicks, turned into API values.

Two kinds (docs/decisions.md, "Console composer"):

- Fixed shapes are Django MultiValueFields (quiet hours, recurrence, TTL) or stock
  choice fields (platforms, tags, the schedule's zone): they work without JavaScript
  and `compress` into exactly the value the API takes.
- Variable-length shapes (localizations, actions, targeting) keep the API's JSON in a
  textarea that `campaigns/static/campaigns/composer.js` replaces with a row editor
  and serialises back into on every change. The server still gets the API's JSON.

No field here judges a value: whatever it cannot turn into the API's shape is passed
on as typed, so `campaigns.validation` (the one owner) refuses it with its own code.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Sequence
from functools import cache
from typing import Any

from django import forms

from campaigns.validation import PLATFORMS

_UNITS: tuple[tuple[str, int], ...] = (
    ("days", 86400),
    ("hours", 3600),
    ("minutes", 60),
    ("seconds", 1),
)


@cache
def timezone_choices() -> list[tuple[str, str]]:
    """Every IANA zone, UTC first (the selects of the schedule and the recurrence)."""
    zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z and z[0].isupper())
    return [("UTC", "UTC"), *((z, z.replace("_", " ")) for z in zones)]


def _labelled(widget: forms.Widget, label: str, **attrs: str) -> forms.Widget:
    """A sub-widget with its own accessible name (a MultiWidget renders no labels)."""
    widget.attrs.update({"aria-label": label, **attrs})
    return widget


def _int_or_raw(text: str | None) -> int | str | None:
    """An integer when the text is one; otherwise the text, for the validator to refuse."""
    if text in (None, ""):
        return None
    try:
        return int(str(text))
    except ValueError:
        return text


class JsonEditorWidget(forms.Textarea):
    """The API's JSON in a textarea that composer.js turns into a row editor.

    `editor` names the editor composer.js builds ("localizations", "actions",
    "targeting"); `options` is what it needs to offer (e.g. the project's segments).
    Without JavaScript the textarea stays, and still takes the API's JSON.
    """

    def __init__(self, editor: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"rows": 4, "class": "vLargeTextField composer-json"})
        self.editor = editor
        self.options = options or {}

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"]["attrs"]["data-composer"] = self.editor
        context["widget"]["attrs"]["data-options"] = json.dumps(self.options)
        return context


class PlatformsField(forms.MultipleChoiceField):
    """Checkboxes for ios / android / web; none ticked is every platform (`[]`)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "choices", [(p, {"ios": "iOS"}.get(p, p.capitalize())) for p in PLATFORMS]
        )
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "None ticked: every platform.")
        super().__init__(**kwargs)

    def valid_value(self, value: str) -> bool:
        return True  # the API's validator names an unknown platform


class CommaListField(forms.CharField):
    """ "vip, spring sale" <-> ["vip", "spring sale"] (tags)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [part.strip() for part in text.split(",") if part.strip()]


_WHOLE = re.compile(r"-?[0-9]+")


class MillisecondsListField(forms.CharField):
    """ "200, 100, 200" <-> [200, 100, 200] (vibrate). A part that is not a whole number
    is passed on as typed, for the validator to name (`vibrate[1]`)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[int | str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        parts = (part.strip() for part in text.replace(" ", ",").split(","))
        return [int(part) if _WHOLE.fullmatch(part) else part for part in parts if part]


class _Multi(forms.MultiWidget):
    """A MultiWidget whose parts carry `data-part` (composer.js lays them out in a row)."""

    def __init__(self, widgets: Sequence[forms.Widget], part: str) -> None:
        for widget in widgets:
            widget.attrs["data-part"] = part
        super().__init__(widgets)


class QuietHoursWidget(_Multi):
    def __init__(self) -> None:
        super().__init__(
            [
                _labelled(forms.TimeInput(attrs={"type": "time"}), "Quiet hours start"),
                _labelled(forms.TimeInput(attrs={"type": "time"}), "Quiet hours end"),
                _labelled(
                    forms.Select(
                        choices=[("defer", "defer to the end"), ("skip", "skip the user")]
                    ),
                    "During quiet hours",
                ),
            ],
            "quiet_hours",
        )

    def decompress(self, value: Any) -> list[Any]:
        if not isinstance(value, dict):
            return [None, None, "defer"]
        return [value.get("start"), value.get("end"), value.get("action", "defer")]


class QuietHoursField(forms.MultiValueField):
    """Start and end pickers plus what happens inside: `{start, end, action}` or None."""

    widget = QuietHoursWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (
            forms.CharField(required=False),
            forms.CharField(required=False),
            forms.CharField(required=False),
        )
        kwargs.setdefault("required", False)
        super().__init__(fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[Any]) -> dict[str, str] | None:
        if not data_list:
            return None
        start, end, action = (data_list + [None] * 3)[:3]
        if not start and not end:
            return None
        # <input type=time> may answer HH:MM:SS when seconds are shown: the API takes HH:MM.
        return {
            "start": (start or "")[:5],
            "end": (end or "")[:5],
            "action": action or "defer",
        }


RECURRENCE_KINDS = [
    ("", "Does not repeat"),
    ("minutes", "Every N minutes"),
    ("hours", "Every N hours"),
    ("days", "Every N days, at a time"),
    ("cron", "Cron expression"),
    ("seconds", "Every N seconds"),
]


class RecurrenceWidget(_Multi):
    def __init__(self) -> None:
        super().__init__(
            [
                _labelled(forms.Select(choices=RECURRENCE_KINDS), "Repeat"),
                _labelled(
                    forms.NumberInput(attrs={"min": "1", "class": "vIntegerField"}), "Every N"
                ),
                _labelled(forms.TimeInput(attrs={"type": "time"}), "At (time of day)"),
                _labelled(
                    forms.TextInput(attrs={"placeholder": "0 12 * * 1,5", "size": "16"}),
                    "Cron expression",
                ),
                _labelled(forms.Select(choices=timezone_choices()), "Recurrence time zone"),
            ],
            "recurrence",
        )

    def decompress(self, value: Any) -> list[Any]:
        if not isinstance(value, dict):
            return ["", None, "09:00", "", "UTC"]
        zone = value.get("timezone", "UTC")
        if "cron" in value:
            return ["cron", None, None, value["cron"], zone]
        if "every_days" in value:
            return ["days", value["every_days"], value.get("at", "00:00"), "", zone]
        seconds = int(value.get("every_seconds", 0))
        for kind, size in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
            if seconds % size == 0:
                return [kind, seconds // size, None, "", zone]
        return ["seconds", seconds, None, "", zone]  # pragma: no cover - size 1 divides


class RecurrenceField(forms.MultiValueField):
    """Every N minutes / hours / seconds, every N days at a time, or cron, in a zone:
    the API's `recurrence` (`every_seconds`, `every_days` + `at`, `cron`) or None."""

    widget = RecurrenceWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = tuple(forms.CharField(required=False) for _ in range(5))
        kwargs.setdefault("required", False)
        super().__init__(fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[Any]) -> dict[str, Any] | None:
        if not data_list:
            return None
        kind, every, at, cron, zone = (data_list + [None] * 5)[:5]
        zone = zone or "UTC"
        count = _int_or_raw(every)
        if kind in ("seconds", "minutes", "hours"):
            size = {"seconds": 1, "minutes": 60, "hours": 3600}[kind]
            return {"every_seconds": count * size if isinstance(count, int) else count}
        if kind == "days":
            return {"every_days": count, "at": (at or "00:00")[:5], "timezone": zone}
        if kind == "cron":
            return {"cron": cron or "", "timezone": zone}
        return None


class DurationWidget(_Multi):
    def __init__(self) -> None:
        super().__init__(
            [
                _labelled(forms.NumberInput(attrs={"min": "0", "class": "vIntegerField"}), "TTL"),
                _labelled(forms.Select(choices=[(u, u) for u, _ in _UNITS]), "TTL unit"),
            ],
            "ttl",
        )

    def decompress(self, value: Any) -> list[Any]:
        if value is None:
            return [None, "hours"]
        seconds = int(value)
        for unit, size in _UNITS:
            if seconds and seconds % size == 0:
                return [seconds // size, unit]
        return [seconds, "seconds"]


class DurationField(forms.MultiValueField):
    """A number and a unit -> seconds (ttl_seconds); empty is None (no TTL)."""

    widget = DurationWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (forms.CharField(required=False), forms.CharField(required=False))
        kwargs.setdefault("required", False)
        super().__init__(fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[Any]) -> int | str | None:
        if not data_list:
            return None
        amount = _int_or_raw(data_list[0])
        size = dict(_UNITS).get(data_list[1] or "seconds", 1)
        return amount * size if isinstance(amount, int) else amount
