"""Device behaviour: the simulators act as the apps that receive their pushes.

When reporting is on, every push a simulator accepts (200) is appended to
``DeviceReporter.received`` - the only per-push work on the simulators' hot path; when
it is off the simulators hold no sink and do nothing at all. A tick on the simulators'
event loop drains that list, reads each payload's ``herald_delivery_id`` (APNs: a
top-level custom key; FCM: ``message.data``; pushes without it are skipped), and
decides from ``(seed, delivery id)`` alone whether the "user" opens the push, clicks one
of its actions and then does the goal event. So a push delivered twice plans the same
events with the same ``event_id``s (``sim-<delivery id>-open|click|goal``), which the
events API counts once. Events are released after a few seconds (``occurred_at`` is
then) and POSTed to Herald's events API (docs/api.md) in batches of up to 1,000, one
request in flight, about once a second; 429, 5xx and network errors are retried with
capped exponential backoff and jitter, anything else is logged and dropped. What waits
is bounded (``max_pending``). Nothing here needs Django (``python -m delivery.simulators``).
See docs/decisions.md, "Demo device behaviour".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import math
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from delivery.payloads import DELIVERY_ID_KEY

logger = logging.getLogger(__name__)

# The environment variable the API key comes from (never a command-line argument,
# which any local user can read in the process list).
API_KEY_ENV: Final = "HERALD_REPORT_API_KEY"
PUSH_OPENED: Final = "push_opened"
PUSH_CLICKED: Final = "push_clicked"
MAX_BATCH: Final = 1000  # the events API's limit per request
TICK_SECONDS: Final = 0.1
REQUEST_TIMEOUT_SECONDS: Final = 30.0
_EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DELIVERY_ID_RE = re.compile(r"^[0-9]{1,19}$")

KNOB_NAMES: Final = (
    "url",
    "api_key",
    "open_share",
    "click_share",
    "goal_share",
    "goal_event",
    "goal_properties",
    "delay_min_seconds",
    "delay_max_seconds",
    "seed",
    "batch_size",
    "flush_seconds",
    "max_attempts",
    "retry_base_seconds",
    "retry_max_seconds",
    "max_pending",
)


def _default_goal_properties() -> dict[str, Any]:
    return {"value": 9.99, "currency": "EUR"}


@dataclass(frozen=True)
class ReportingConfig:
    """How the simulated devices behave. Off while ``url`` is empty.

    * ``open_share`` of displayed pushes are opened; ``click_share`` of the opened ones
      are clicked (on one of the payload's actions: a push without actions is never
      clicked, since ``push_clicked`` needs an ``action_id``); ``goal_share`` of the
      opened ones lead to the ``goal_event`` with ``goal_properties``. Silent pushes
      (no alert) are never opened.
    * Each step comes ``delay_min_seconds``..``delay_max_seconds`` after the one before.
    * ``seed`` makes the decisions reproducible (None: a random seed per start).
    """

    url: str = ""
    api_key: str = field(default="", repr=False)
    open_share: float = 0.6
    click_share: float = 0.3
    goal_share: float = 0.2
    goal_event: str = "purchase"
    goal_properties: Mapping[str, Any] = field(default_factory=_default_goal_properties)
    delay_min_seconds: float = 1.0
    delay_max_seconds: float = 5.0
    seed: int | None = None
    batch_size: int = MAX_BATCH
    flush_seconds: float = 1.0
    max_attempts: int = 6
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 15.0
    max_pending: int = 100_000

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def updated(self, knobs: Mapping[str, Any]) -> ReportingConfig:
        """A copy with ``knobs`` applied, all validated first (a bad knob changes
        nothing: the caller keeps the old config)."""
        unknown = set(knobs) - set(KNOB_NAMES)
        if unknown:
            raise ValueError(f"unknown reporting knobs: {sorted(unknown)}")
        changes = {name: _clean_knob(name, value) for name, value in knobs.items()}
        config = replace(self, **changes)
        if config.delay_min_seconds > config.delay_max_seconds:
            raise ValueError("delay_min_seconds must not exceed delay_max_seconds")
        if config.url and not config.api_key:
            raise ValueError(f"an API key is needed to report (set {API_KEY_ENV})")
        return config

    def public(self) -> dict[str, Any]:
        """The knobs as the control server shows them: never the key itself."""
        data = asdict(self)
        data["goal_properties"] = dict(self.goal_properties)
        data["api_key"] = "set" if self.api_key else ""
        data["enabled"] = self.enabled
        return data

    def summary(self) -> str:
        """One line for the ready banner."""
        return (
            f"{self.open_share:.0%} open, {self.click_share:.0%} of opens click, "
            f"{self.goal_share:.0%} of opens send {self.goal_event!r}, "
            f"{self.delay_min_seconds:g}-{self.delay_max_seconds:g} s apart"
        )


def _share(name: str, value: Any) -> float:
    share = _number(name, value)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return share


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number") from exc
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number")
    return number


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be an integer")
    try:
        number = int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer") from exc
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return number


def _seconds(name: str, value: Any, high: float) -> float:
    seconds = _number(name, value)
    if not 0.0 <= seconds <= high:
        raise ValueError(f"{name} must be between 0 and {high:g}")
    return seconds


def _clean_knob(name: str, value: Any) -> Any:
    if name == "url":
        url = "" if value is None else str(value)
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError("url must be an http(s) URL (or empty to turn reporting off)")
        return url
    if name == "api_key":
        return "" if value is None else str(value)
    if name in ("open_share", "click_share", "goal_share"):
        return _share(name, value)
    if name == "goal_event":
        event = str(value)
        if not _EVENT_NAME_RE.match(event) or event in (PUSH_OPENED, PUSH_CLICKED):
            raise ValueError(
                "goal_event must be 1-64 characters of [A-Za-z0-9_.:-] and not a reserved name"
            )
        return event
    if name == "goal_properties":
        if not isinstance(value, Mapping) or not all(
            isinstance(key, str) and (item is None or isinstance(item, str | int | float | bool))
            for key, item in value.items()
        ):
            raise ValueError("goal_properties must be a flat object of strings, numbers, booleans")
        return dict(value)
    if name in ("delay_min_seconds", "delay_max_seconds"):
        return _seconds(name, value, 3600.0)
    if name == "seed":
        return None if value is None else _integer(name, value, -(2**63), 2**63 - 1)
    if name == "batch_size":
        return _integer(name, value, 1, MAX_BATCH)
    if name == "max_attempts":
        return _integer(name, value, 1, 20)
    if name == "max_pending":
        return _integer(name, value, 1, 10_000_000)
    if name == "flush_seconds":
        seconds = _seconds(name, value, 60.0)
        if seconds <= 0:
            raise ValueError("flush_seconds must be more than 0")
        return seconds
    return _seconds(name, value, 600.0)  # retry_base_seconds, retry_max_seconds


# --- reading pushes and planning events (pure) ----------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    """What a device needs to know about a push to react to it."""

    delivery_id: int
    action_ids: tuple[str, ...]
    silent: bool


def read_push(provider: str, payload: Any) -> ReceivedPush | None:
    """``payload`` is the APNs request body (bytes), the FCM ``message`` object or the
    decrypted web push JSON (an object). None when it carries no usable
    ``herald_delivery_id`` (or is not what we sent)."""
    if provider == "webpush":
        if not isinstance(payload, Mapping):
            return None
        notification = payload.get("notification")
        silent = not isinstance(notification, Mapping)
        custom: Mapping[str, Any] = payload
        buttons = notification.get("actions") if isinstance(notification, Mapping) else None
        # The Notifications API spells a button's id "action".
        actions: Any = [
            {"id": button.get("action")}
            for button in (buttons if isinstance(buttons, list) else [])
            if isinstance(button, Mapping)
        ]
    elif provider == "apns":
        try:
            document = json.loads(payload)
        except (TypeError, ValueError):
            return None
        if not isinstance(document, dict):
            return None
        aps = document.get("aps")
        silent = not (isinstance(aps, dict) and aps.get("alert"))
        custom = document
        actions = document.get("actions")
    else:
        if not isinstance(payload, Mapping):
            return None
        data = payload.get("data")
        custom = data if isinstance(data, Mapping) else {}
        silent = not _fcm_displays(payload)
        actions = custom.get("actions")
        if isinstance(actions, str):  # FCM data values are strings: JSON-encoded
            try:
                actions = json.loads(actions)
            except ValueError:
                actions = None
    delivery_id = _delivery_id(custom.get(DELIVERY_ID_KEY))
    if delivery_id is None:
        return None
    action_ids = tuple(
        str(action["id"])
        for action in (actions if isinstance(actions, list) else [])
        if isinstance(action, Mapping) and isinstance(action.get("id"), str) and action["id"]
    )
    return ReceivedPush(delivery_id=delivery_id, action_ids=action_ids, silent=silent)


def _fcm_displays(message: Mapping[str, Any]) -> bool:
    """A data-only FCM message (no notification block anywhere) is silent."""
    if message.get("notification"):
        return True
    for block in ("android", "webpush"):
        config = message.get(block)
        if isinstance(config, Mapping) and config.get("notification"):
            return True
    apns = message.get("apns")
    payload = apns.get("payload") if isinstance(apns, Mapping) else None
    aps = payload.get("aps") if isinstance(payload, Mapping) else None
    return isinstance(aps, Mapping) and bool(aps.get("alert"))


def _delivery_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and _DELIVERY_ID_RE.match(value) and int(value) > 0:
        return int(value)
    return None


def _draws(seed: int, delivery_id: int) -> list[float]:
    """Eight uniform numbers in [0, 1) that depend only on (seed, delivery id)."""
    digest = hashlib.blake2b(f"{seed}:{delivery_id}".encode(), digest_size=32).digest()
    return [int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in range(0, 32, 4)]


def iso_timestamp(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def plan_events(
    push: ReceivedPush, config: ReportingConfig, *, seed: int, received_at: float
) -> list[tuple[float, dict[str, Any]]]:
    """The events this push leads to, as ``(unix time it happens, event)`` in order."""
    if push.silent:
        return []
    u = _draws(seed, push.delivery_id)
    if u[0] >= config.open_share:
        return []
    low, high = config.delay_min_seconds, config.delay_max_seconds

    def later(start: float, draw: float) -> float:
        return start + low + draw * (high - low)

    did = push.delivery_id
    opened_at = later(received_at, u[1])
    events = [(opened_at, _event(f"sim-{did}-open", PUSH_OPENED, did, opened_at))]
    last = opened_at
    if push.action_ids and u[2] < config.click_share:
        clicked_at = later(opened_at, u[3])
        action_id = push.action_ids[int(u[4] * len(push.action_ids))]
        click = _event(f"sim-{did}-click", PUSH_CLICKED, did, clicked_at)
        click["action_id"] = action_id
        events.append((clicked_at, click))
        last = clicked_at
    if u[5] < config.goal_share:
        goal_at = later(last, u[6])
        goal = _event(f"sim-{did}-goal", config.goal_event, did, goal_at)
        goal["properties"] = dict(config.goal_properties)
        events.append((goal_at, goal))
    return events


def _event(event_id: str, name: str, delivery_id: int, at: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "name": name,
        "delivery_id": delivery_id,
        "occurred_at": iso_timestamp(at),
    }


# --- the reporter -----------------------------------------------------------------------


@dataclass
class ReporterStats:
    """What the reporter did since start (or the last reset)."""

    received: int = 0
    skipped: int = 0  # no herald_delivery_id, or not a payload we can read
    planned: Counter[str] = field(default_factory=Counter)  # by event name
    posts: int = 0  # requests answered 200
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by code
    failed_attempts: int = 0  # attempts that will be (or were to be) retried
    dropped: int = 0  # events given up on: final error, attempts exhausted, backlog full

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "skipped": self.skipped,
            "planned": dict(self.planned),
            "posts": self.posts,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "failed_attempts": self.failed_attempts,
            "dropped": self.dropped,
        }


class DeviceReporter:
    """Turns received pushes into events posted to the events API.

    ``start`` and ``close`` run on the simulators' loop; the simulators append
    ``(provider, payload)`` to ``received`` and nothing else.
    """

    def __init__(self, config: ReportingConfig) -> None:
        if not config.enabled:
            raise ValueError("reporting is off (no url)")
        self.config = config
        self.seed = config.seed if config.seed is not None else secrets.randbits(63)
        self.received: list[tuple[str, Any]] = []
        self.stats = ReporterStats()
        self._scheduled: list[tuple[float, int, dict[str, Any]]] = []  # heap by time
        self._order = 0
        self._outbox: list[dict[str, Any]] = []
        self._jitter = random.Random()  # retry jitter only, not the seeded decisions
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._post_task: asyncio.Task[None] | None = None

    def reconfigure(self, config: ReportingConfig) -> None:
        """New knobs for what comes next; what is planned or waiting is kept."""
        if config.seed is not None and config.seed != self.config.seed:
            self.seed = config.seed
        self.config = config

    @property
    def pending(self) -> int:
        return len(self._scheduled) + len(self._outbox) + len(self.received)

    def describe(self) -> dict[str, Any]:
        return {
            **self.config.public(),
            "effective_seed": self.seed,
            "pending": self.pending,
            "stats": self.stats.snapshot(),
        }

    def start(self) -> None:
        if self._task is None:
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for task in (self._task, self._post_task):
            if task is not None:
                task.cancel()
        for task in (self._task, self._post_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._post_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_post = loop.time()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.time()
            self.drain(now)
            self.release_due(now)
            if self._post_task is not None and self._post_task.done():
                self._post_task = None
            config = self.config
            if (
                self._post_task is None
                and self._outbox
                and (
                    len(self._outbox) >= config.batch_size
                    or loop.time() - last_post >= config.flush_seconds
                )
            ):
                batch = self._outbox[: config.batch_size]
                del self._outbox[: config.batch_size]
                self._post_task = loop.create_task(self.post(batch))
                last_post = loop.time()

    def drain(self, now: float) -> None:
        """Plan the events of every push received since the last drain."""
        received = self.received.copy()  # the simulators hold this very list: keep it
        self.received.clear()
        config, stats = self.config, self.stats
        stats.received += len(received)
        for provider, payload in received:
            push = read_push(provider, payload)
            if push is None:
                stats.skipped += 1
                continue
            for at, event in plan_events(push, config, seed=self.seed, received_at=now):
                if len(self._scheduled) + len(self._outbox) >= config.max_pending:
                    stats.dropped += 1
                    continue
                stats.planned[event["name"]] += 1
                self._order += 1
                heapq.heappush(self._scheduled, (at, self._order, event))

    def release_due(self, now: float) -> None:
        """Move the events whose time has come to the outbox, oldest first."""
        while self._scheduled and self._scheduled[0][0] <= now:
            self._outbox.append(heapq.heappop(self._scheduled)[2])

    async def post(self, batch: list[dict[str, Any]]) -> None:
        """POST one batch; retry what can succeed later, drop the rest with a log line."""
        config, stats = self.config, self.stats
        assert self._session is not None
        body = json.dumps({"events": batch}).encode()
        headers = {
            "Authorization": f"Bearer {config.api_key}",
            "Content-Type": "application/json",
        }
        for attempt in range(1, config.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with self._session.post(config.url, data=body, headers=headers) as response:
                    status = response.status
                    answer = await response.read()
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                problem = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, answer, problem = 0, b"", f"{type(exc).__name__}: {exc}"
            if status == 200:
                self._count_answer(answer, len(batch))
                return
            if status and status != 429 and status < 500:
                stats.dropped += len(batch)
                logger.warning(
                    "device behaviour: %s events refused by %s (%s): %s",
                    len(batch),
                    config.url,
                    problem,
                    _error_code(answer),
                )
                return
            stats.failed_attempts += 1
            if attempt == config.max_attempts:
                break
            await asyncio.sleep(self._backoff(attempt, retry_after))
        stats.dropped += len(batch)
        logger.warning(
            "device behaviour: gave up on %s events after %s attempts to %s (%s)",
            len(batch),
            config.max_attempts,
            config.url,
            problem,
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        config = self.config
        ceiling = min(config.retry_max_seconds, config.retry_base_seconds * 2 ** (attempt - 1))
        delay = ceiling * (0.5 + self._jitter.random() / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, config.retry_max_seconds)

    def _count_answer(self, answer: bytes, sent: int) -> None:
        stats = self.stats
        stats.posts += 1
        try:
            document = json.loads(answer)
            accepted = int(document["accepted"])
            duplicates = int(document["duplicates"])
            rejected = list(document["rejected"])
        except (ValueError, TypeError, KeyError):
            logger.warning("device behaviour: unexpected answer to %s events", sent)
            return
        stats.accepted += accepted
        stats.duplicates += duplicates
        codes = Counter(str(item.get("code", "")) for item in rejected if isinstance(item, dict))
        stats.rejected.update(codes)
        if codes:
            logger.warning("device behaviour: events refused: %s", dict(codes))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_code(answer: bytes) -> str:
    try:
        error = json.loads(answer)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, TypeError, KeyError):
        return answer[:200].decode("utf-8", "replace")
