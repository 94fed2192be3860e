"""A JSON parser that refuses oversized bodies and anything but a JSON object."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.errors import ApplicationError


class ObjectJSONParser(JSONParser):
    """Parses a JSON object body; arrays, scalars and bad UTF-8 are INVALID_BODY.

    DRF reads the stream directly, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE,
    so the size limit is enforced here (413 REQUEST_TOO_LARGE).
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApplicationError(
                f"The request body is larger than {limit} bytes.",
                code="REQUEST_TOO_LARGE",
                status=413,
            )
        try:
            data = json.loads(
                raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
            )
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError("The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object.")
        _check_storable(data, depth=0)
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """1e400 is valid JSON but overflows to inf, which cannot be stored or sent."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


MAX_DEPTH = 32


def _check_storable(value: Any, *, depth: int) -> None:
    """Refuse what JSON allows but the database or the providers cannot take.

    NUL characters and lone surrogates cannot be stored in PostgreSQL text/jsonb,
    and absurd nesting is never a real campaign: all are INVALID_BODY up front
    rather than a 500 halfway through a write.
    """
    if depth > MAX_DEPTH:
        raise ParseError(f"The request body is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_storable(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth=depth + 1)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ParseError("The request body contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParseError("The request body contains an unpaired surrogate.") from exc
