"""App events: what users did after a push (opens, clicks, goal events).

Segments owns events because they are facts about app users, as attributes are.
Ingestion (validation, idempotent storage) lives here; what an event *means* for a
campaign (open and click counts, conversions) is the campaigns app's, and nothing here
imports campaigns (DESIGN.md, "Shape"). So campaigns registers a listener at start-up
and ingestion hands it every newly stored event, inside the transaction that stored
them: a batch and the counts it feeds commit together, and a retried batch (same
``event_id``s) reaches no listener a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

PUSH_OPENED: Final = "push_opened"
PUSH_CLICKED: Final = "push_clicked"
RESERVED_EVENT_NAMES: Final = frozenset({PUSH_OPENED, PUSH_CLICKED})


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """The push an event refers to, as ingestion found it (already checked to be the
    project's and the user's)."""

    id: int
    campaign_id: uuid.UUID | None  # None for a test push
    run: int
    provider: str
    platform: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One newly stored event (never a duplicate of an earlier ``event_id``)."""

    id: int
    project_id: uuid.UUID
    app_user_id: uuid.UUID
    name: str
    properties: Mapping[str, Any]
    occurred_at: datetime
    action_id: str  # push_clicked: the button; "" otherwise
    delivery: DeliveryRef | None


EventListener = Callable[[Sequence[IngestedEvent]], None]

_listeners: list[EventListener] = []


def register_event_listener(listener: EventListener) -> None:
    """Hand every batch of newly stored events to ``listener`` (idempotent)."""
    if listener not in _listeners:
        _listeners.append(listener)


def event_listeners() -> tuple[EventListener, ...]:
    return tuple(_listeners)
