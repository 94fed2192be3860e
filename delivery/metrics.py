"""The delivery engine's metrics (docs/api.md, "Metrics").

The engine counts into plain Python while it records results (delivery/services.py:
`_record` per row, `_write` per flush) and publishes here once per flush, so the
per-push cost is a dict increment, not a multiprocess value write (4-6 us each;
docs/decisions.md, "Metrics"). Provider request latencies are tallied by the
senders (delivery/providers/latency.py) and drained into the histogram at the same
moments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from prometheus_client import Counter

from core.metrics import BatchHistogram
from delivery.providers import latency

DELIVERIES = Counter(
    "herald_deliveries_total",
    "Deliveries a provider answered (or that failed before a request), by final "
    "status (sent, failed, invalid_token) and reason.",
    ["provider", "status", "reason"],
)
RETRIES = Counter(
    "herald_delivery_retries_total",
    "Transient failures scheduled for another attempt, by reason.",
    ["provider", "reason"],
)
SKIPPED = Counter(
    "herald_deliveries_skipped_total",
    "Deliveries closed without sending (policy, expiry, cancelled run), by reason.",
    ["reason"],
)
UNKNOWN = Counter(
    "herald_deliveries_unknown_total",
    "Deliveries in flight when their worker died, closed as unknown (at-most-once).",
)
TOKENS_RETIRED = Counter(
    "herald_tokens_retired_total",
    "Device tokens deactivated because their provider said they are invalid.",
    ["provider"],
)
PROVIDER_LATENCY = BatchHistogram(
    "herald_provider_request_seconds",
    "Provider request latency: from the request's start to its answer or error.",
    ["provider"],
    buckets=latency.BOUNDS,
)

OTHER_REASON = "other"
# Distinct reason labels this process may create; any further ones count as `other`,
# so a provider answering free text can never blow up the series.
MAX_REASONS = 64
MAX_CACHED = 1024  # (reason, status) pairs remembered; the rest are classified each time
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,47}")
_labels: set[str] = set()
_cache: dict[tuple[str, int | None], str] = {}


def reason_label(reason: str, status_code: int | None = None) -> str:
    """A bounded label for a provider result's reason: the provider's own code
    (`Unregistered`, `UNREGISTERED`, `TooManyRequests`) or a transport word
    (`timeout`) as it is; `payload too large (5000 bytes)` -> `payload_too_large`,
    `InvalidPayload: ...` -> `InvalidPayload`; free text -> `http_<status>` when there
    was an answer, else `other`. Sent deliveries have no reason ("")."""
    if not reason:
        return ""
    key = (reason, status_code)
    label = _cache.get(key)
    if label is not None:
        return label
    head = reason.split(":", 1)[0].split(" (", 1)[0].strip().replace(" ", "_")
    if _CODE.fullmatch(head):
        label = head
    elif status_code is not None:
        label = f"http_{status_code}"
    else:
        label = OTHER_REASON
    if label not in _labels:
        if len(_labels) >= MAX_REASONS:
            label = OTHER_REASON
        else:
            _labels.add(label)
    if len(_cache) < MAX_CACHED:
        _cache[key] = label
    return label


def publish_results(
    deliveries: Mapping[tuple[str, str, str], int],
    retries: Mapping[tuple[str, str], int],
) -> None:
    """Add one flush's counts: {(provider, status, reason): n}, {(provider, reason): n};
    and drain the request latencies the senders tallied meanwhile."""
    for (provider, status, reason), count in deliveries.items():
        DELIVERIES.labels(provider, status, reason).inc(count)
    for (provider, reason), count in retries.items():
        RETRIES.labels(provider, reason).inc(count)
    publish_latency()


def publish_latency() -> None:
    for provider, (counts, total) in latency.drain().items():
        PROVIDER_LATENCY.labels(provider).observe_counts(counts, total)


def count_retired(provider: str, count: int) -> None:
    if count:
        TOKENS_RETIRED.labels(provider).inc(count)


def count_skipped(reason: str, count: int) -> None:
    if count:
        SKIPPED.labels(reason_label(reason)).inc(count)


def count_unknown(count: int) -> None:
    if count:
        UNKNOWN.inc(count)
