"""Fault-injection knobs and counters shared by the APNs and FCM simulators.

Tests and the e2e suite need *deterministic* faults ("the first 2 requests for this
token get 503, then it succeeds") as well as random ones for soak runs (seedable),
and they need to read back exactly what the provider saw: accepted messages per
token, so a duplicate send shows up as ``duplicates > 0``.

All mutation happens on the simulators' event-loop thread; other threads go through
``SimulatorServer`` (which hops onto the loop) or the control HTTP server.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from delivery.payloads import DELIVERY_ID_KEY

# Every push carries its own delivery id, so a verdict cache keyed by the raw body
# would never hit; its key leaves the id out (the id is digits, checked by nothing).
_DELIVERY_ID_RE = re.compile(rb'"' + DELIVERY_ID_KEY.encode() + rb'":"[0-9]*",?')


def verdict_key(body: bytes) -> bytes:
    """``body`` without its delivery id: one key for a campaign's whole payload."""
    return _DELIVERY_ID_RE.sub(b"", body, count=1)


KNOB_NAMES = (
    "keep_payloads",
    "latency_ms",
    "error_rate_429",
    "error_rate_5xx",
    "status_5xx",
    "invalid_tokens",
    "foreign_tokens",
    "transient_failures",
    "transient_status",
    "retry_after",
    "seed",
)


def _rate(name: str, value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return rate


def _status(name: str, value: Any, allowed: Iterable[int]) -> int:
    status = int(value)
    if status not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}")
    return status


@dataclass
class Behaviour:
    """How one simulated provider misbehaves. Changeable at run time via
    :meth:`update` (``POST /config`` on the control server).

    * ``latency_ms`` delays every answer (a sender timeout below it gives RETRY).
    * ``error_rate_429`` / ``error_rate_5xx`` inject random throttling / server
      errors (``status_5xx`` picks 500 or 503), drawn from ``random.Random(seed)``.
    * ``invalid_tokens`` are permanently gone (APNs 410 Unregistered, FCM 404
      UNREGISTERED); ``foreign_tokens`` belong to another app (APNs 400
      DeviceTokenNotForTopic, FCM 403 SENDER_ID_MISMATCH).
    * ``transient_failures`` ``{token: n}``: the first n requests for that token get
      ``transient_status`` (429 or 503), then it succeeds.
    * ``retry_after`` (seconds) is sent as Retry-After on injected 429/503.
    * ``keep_payloads``: keep the last accepted push per token (APNs headers and
      payload, FCM message) for tests to read back (``stats(tokens=True)``); off by
      default so a benchmark's simulator holds no bodies.
    """

    keep_payloads: bool = False
    latency_ms: float = 0.0
    error_rate_429: float = 0.0
    error_rate_5xx: float = 0.0
    status_5xx: int = 503
    invalid_tokens: set[str] = field(default_factory=set)
    foreign_tokens: set[str] = field(default_factory=set)
    transient_failures: dict[str, int] = field(default_factory=dict)
    transient_status: int = 503
    retry_after: float | None = None
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.update(self.as_dict())

    def update(self, knobs: Mapping[str, Any]) -> None:
        """Apply the given knobs (validated first, so a bad request changes nothing)."""
        unknown = set(knobs) - set(KNOB_NAMES)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        changes: dict[str, Any] = {}
        for name, value in knobs.items():
            if name == "keep_payloads":
                changes[name] = bool(value)
            elif name == "latency_ms":
                changes[name] = max(float(value), 0.0)
            elif name in ("error_rate_429", "error_rate_5xx"):
                changes[name] = _rate(name, value)
            elif name == "status_5xx":
                changes[name] = _status(name, value, (500, 502, 503, 504))
            elif name == "transient_status":
                changes[name] = _status(name, value, (429, 500, 502, 503, 504))
            elif name in ("invalid_tokens", "foreign_tokens"):
                if isinstance(value, str):
                    raise ValueError(f"{name} must be a list of tokens")
                changes[name] = {str(token) for token in value}
            elif name == "transient_failures":
                if not isinstance(value, Mapping):
                    raise ValueError("transient_failures must map token -> count")
                changes[name] = {str(t): int(n) for t, n in value.items() if int(n) > 0}
            elif name == "retry_after":
                changes[name] = None if value is None else max(float(value), 0.0)
            elif name == "seed":
                changes[name] = None if value is None else int(value)
        for name, value in changes.items():
            setattr(self, name, value)
        if "seed" in changes:
            self.rng = random.Random(self.seed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "keep_payloads": self.keep_payloads,
            "latency_ms": self.latency_ms,
            "error_rate_429": self.error_rate_429,
            "error_rate_5xx": self.error_rate_5xx,
            "status_5xx": self.status_5xx,
            "invalid_tokens": sorted(self.invalid_tokens),
            "foreign_tokens": sorted(self.foreign_tokens),
            "transient_failures": dict(self.transient_failures),
            "transient_status": self.transient_status,
            "retry_after": self.retry_after,
            "seed": self.seed,
        }

    def injected_status(self, token: str) -> int | None:
        """The fault status to answer for this request, if any (consumes one
        transient failure for the token)."""
        remaining = self.transient_failures.get(token)
        if remaining:
            if remaining <= 1:
                del self.transient_failures[token]
            else:
                self.transient_failures[token] = remaining - 1
            return self.transient_status
        if self.error_rate_429 and self.rng.random() < self.error_rate_429:
            return 429
        if self.error_rate_5xx and self.rng.random() < self.error_rate_5xx:
            return self.status_5xx
        return None


@dataclass
class ProviderStats:
    """What one simulated provider saw since the last reset.

    ``duplicates`` counts tokens accepted (2xx) more than once — for a campaign sent
    to distinct tokens it must stay 0. ``connections`` counts TLS connections
    accepted; ``auth_tokens`` counts credentials minted/verified (APNs: distinct
    provider JWTs verified; FCM: OAuth2 access tokens issued by ``/token``).
    """

    provider: str
    requests_total: int = 0
    accepted: int = 0
    duplicates: int = 0
    connections: int = 0
    auth_tokens: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    token_accepts: dict[str, int] = field(default_factory=dict)
    collapse_ids: Counter[str] = field(default_factory=Counter)
    payloads: dict[str, Any] = field(default_factory=dict)  # with keep_payloads

    def record(self, status: int, token: str, collapse_id: str = "", payload: Any = None) -> None:
        self.requests_total += 1
        self.by_status[status] += 1
        if 200 <= status < 300:  # web push accepts with 201
            self.accepted += 1
            if collapse_id:
                self.collapse_ids[collapse_id] += 1
            if payload is not None:
                self.payloads[token] = payload
            count = self.token_accepts.get(token, 0) + 1
            self.token_accepts[token] = count
            if count == 2:
                self.duplicates += 1

    def reset(self) -> None:
        self.requests_total = self.accepted = self.duplicates = 0
        self.connections = self.auth_tokens = 0
        self.by_status.clear()
        self.token_accepts.clear()
        self.collapse_ids.clear()
        self.payloads.clear()

    def snapshot(self, *, include_tokens: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requests_total": self.requests_total,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "connections": self.connections,
            "auth_tokens": self.auth_tokens,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
        }
        if include_tokens:
            data["tokens"] = dict(self.token_accepts)
            data["collapse_ids"] = dict(self.collapse_ids)
            data["payloads"] = dict(self.payloads)
        return data
