"""Database plumbing shared by the apps' set-based hot paths."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper


@contextmanager
def binary_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """A psycopg cursor with server-side binding on the Django connection (so inside its
    transaction), for `%b` (binary) parameters: arrays of 1,000 values are sent without
    the per-element quoting Django's client-side cursors do in Python (bench/events.py:
    an `IN (...)` of 1,000 quoted literals cost more than the rest of a batch). Wrapped
    as Django wraps its own cursors, so query logging and execute wrappers still see it.
    PostgreSQL only."""
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    try:
        yield connection._prepare_cursor(raw)  # type: ignore[attr-defined]
    finally:
        raw.close()
