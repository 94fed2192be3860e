"""Placeholders in push text: ``Hi {{ first_name | default: "there" }}`` (Liquid-like).

A small, fixed language, parsed by hand (no ``eval``, no Django template engine, no
attribute or item access): a tag is ``{{ name }}`` followed by any number of
``| filter`` steps, where ``name`` is one flat key of the recipient's own values
(an AppUser attribute, or ``external_id``) and the filters are:

* ``default: "text"`` (or ``'text'``): used when the value is missing, null or empty;
* ``upcase``, ``downcase``, ``capitalize`` (first character upper, the rest lower).

Filters apply left to right. A missing value with no ``default`` renders as the empty
string. Literal ``{{`` and ``}}`` cannot appear outside a tag (they are refused as
unbalanced braces), and a default text cannot contain ``}}``.

Pure like ``delivery/payloads.py``: no models, no settings. Text is compiled once
per campaign content (``compile_text``) and rendered per recipient (``render``),
which is a join of a few strings. Every rendered value is cut to
``MAX_VALUE_CHARS`` characters, so a rendered text is at most its template's length
plus that much per tag. Docs: docs/api.md, "Personalization".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_VALUE_CHARS: Final = 256
"""Characters of one rendered value (after filters); longer values are cut."""

MAX_DEFAULT_CHARS: Final = 200
MAX_NAMES: Final = 20
"""Distinct value names one push's texts may use (the send path reads each per row)."""
FILTERS: Final = ("default", "upcase", "downcase", "capitalize")

# The shape of an attribute name (segments' ATTRIBUTE_KEY_RE; delivery may not import
# segments), which also covers ``external_id``.
NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_FILTER_RE: Final = re.compile(
    r"\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(\"[^\"]*\"|'[^']*'|\S*))?\s*", re.ASCII
)
_NAME_AT_START: Final = re.compile(r"\s*([^\s|]*)\s*")

OPEN: Final = "{{"
CLOSE: Final = "}}"


class TemplateSyntaxError(ValueError):
    """Text that is not a valid template: ``problem`` is a short stable word
    (``unclosed``, ``unopened``, ``empty``, ``bad_name``, ``unknown_filter``,
    ``bad_argument``); ``position`` the character index of the offending tag."""

    def __init__(self, problem: str, message: str, position: int) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    filters: tuple[tuple[str, str], ...]  # (filter, argument or "")

    def render(self, values: Mapping[str, Any]) -> str:
        text = value_text(values.get(self.name))
        for name, argument in self.filters:
            if name == "default":
                if not text:
                    text = argument
            elif text:
                if name == "upcase":
                    text = text.upper()
                elif name == "downcase":
                    text = text.lower()
                else:  # capitalize
                    text = text[:1].upper() + text[1:].lower()
        return text[:MAX_VALUE_CHARS]


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled text: literal strings and placeholders, in order."""

    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(part.name for part in self.parts if isinstance(part, Placeholder))

    @property
    def is_static(self) -> bool:
        return not self.names

    def render(self, values: Mapping[str, Any]) -> str:
        return "".join(
            [part if part.__class__ is str else part.render(values) for part in self.parts]  # type: ignore[union-attr]
        )


def value_text(value: Any) -> str:
    """A recipient's value as text: strings as they are, numbers as written, booleans
    ``true``/``false``, a list of scalars joined by ``", "``; null, missing and
    objects are empty (names are flat keys: nothing inside a value is reachable)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        items = (value_text(item) for item in value if not isinstance(item, list | dict))
        return ", ".join(items)[:MAX_VALUE_CHARS]
    return ""


def compile_text(text: str) -> Template:
    """Parse ``text``; raise ``TemplateSyntaxError`` for anything but literal text and
    well-formed tags. Linear in the length of the text."""
    parts: list[str | Placeholder] = []
    position = 0
    while True:
        start = text.find(OPEN, position)
        literal_end = len(text) if start < 0 else start
        stray = text.find(CLOSE, position, literal_end)
        if stray >= 0:
            raise TemplateSyntaxError(
                "unopened", f"'}}}}' at character {stray} closes no '{{{{'.", stray
            )
        if literal_end > position:
            parts.append(text[position:literal_end])
        if start < 0:
            break
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            raise TemplateSyntaxError(
                "unclosed", f"'{{{{' at character {start} is never closed by '}}}}'.", start
            )
        parts.append(_placeholder(text[start + len(OPEN) : end], start))
        position = end + len(CLOSE)
    return Template(text=text, parts=tuple(parts))


def literal(text: str) -> Template:
    """``text`` as it is, placeholders or not."""
    return Template(text=text, parts=(text,) if text else ())


def compile_lenient(text: str) -> Template:
    """``compile_text``, or the text as a literal when it does not parse: stored text
    saved before placeholders existed (or under older rules) sends as it always did."""
    try:
        return compile_text(text)
    except TemplateSyntaxError:
        return literal(text)


def _placeholder(inner: str, position: int) -> Placeholder:
    if OPEN in inner:
        raise TemplateSyntaxError(
            "unclosed", f"'{{{{' at character {position} is never closed by '}}}}'.", position
        )
    head = _NAME_AT_START.match(inner)
    assert head is not None  # the pattern matches any string
    name = head.group(1)
    if not name:
        if not inner.strip():
            raise TemplateSyntaxError(
                "empty", f"The tag at character {position} names no value.", position
            )
        raise TemplateSyntaxError(
            "bad_name", f"The tag at character {position} must start with a name.", position
        )
    if not NAME_RE.fullmatch(name):
        raise TemplateSyntaxError(
            "bad_name",
            f"'{name[:64]}' (character {position}) is not a value name "
            "(letters, digits, _ . : -; at most 64; not starting with a digit).",
            position,
        )
    filters: list[tuple[str, str]] = []
    at = head.end()
    while at < len(inner):
        match = _FILTER_RE.match(inner, at)
        if match is None:
            raise TemplateSyntaxError(
                "bad_argument",
                f"The tag at character {position} has unexpected text "
                f"'{inner[at:][:40]}'; filters are written '| name'.",
                position,
            )
        filters.append(_filter(match.group(1), match.group(2), position))
        at = match.end()
    return Placeholder(name=name, filters=tuple(filters))


def _filter(name: str, argument: str | None, position: int) -> tuple[str, str]:
    if name not in FILTERS:
        raise TemplateSyntaxError(
            "unknown_filter",
            f"Unknown filter '{name[:40]}' (character {position}); "
            f"the filters are {', '.join(FILTERS)}.",
            position,
        )
    if name != "default":
        if argument is not None:
            raise TemplateSyntaxError(
                "bad_argument", f"'{name}' takes no argument (character {position}).", position
            )
        return name, ""
    if (
        argument is None
        or len(argument) < 2
        or argument[0] not in "\"'"
        or (argument[-1] != argument[0])
    ):
        raise TemplateSyntaxError(
            "bad_argument",
            f'default needs a quoted text, e.g. default: "there" (character {position}).',
            position,
        )
    text = argument[1:-1]
    if len(text) > MAX_DEFAULT_CHARS:
        raise TemplateSyntaxError(
            "bad_argument",
            f"A default is at most {MAX_DEFAULT_CHARS} characters (character {position}).",
            position,
        )
    return name, text
