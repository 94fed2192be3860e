"""Racing real requests: threads released together, each with its own DB connection.

Used against committed rows (`django_db(transaction=True)`): on PostgreSQL the calls
truly overlap; SQLite (IMMEDIATE transactions) serializes writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once in its own thread (and DB connection); results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = call()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a racing request never finished"
    if errors:
        raise errors[0]
    return results
