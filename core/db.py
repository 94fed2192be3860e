"""Database plumbing shared by the apps' set-based hot paths."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Max, Min, QuerySet


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


def delete_in_id_windows(old: QuerySet[Any], *, window: int) -> int:
    """Delete ``old`` (rows with an integer ``id``) in windows of ``window`` ids, each
    its own statement and transaction, so no lock or transaction spans a large purge;
    returns how many. One query finds the id range (read on the caller's time index).
    The retention purges (app events, the audit trail) share it."""
    bounds = old.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return 0
    deleted = 0
    for low in range(bounds["low"], bounds["high"] + 1, window):
        count, _ = old.filter(id__gte=low, id__lt=low + window).delete()
        deleted += count
    return deleted
