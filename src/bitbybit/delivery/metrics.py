"""Prometheus metrics of delivery, exposed at ``/metrics``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "bitbybit_delivery_attempts_total",
    "Delivery attempts by outcome: succeeded, retrying (failed, will retry), failed (gave up)",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "bitbybit_delivery_attempt_seconds",
    "Duration of one delivery attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_PENDING = Gauge("bitbybit_delivery_queue_pending", "Pending deliveries, due or not")
QUEUE_DUE = Gauge("bitbybit_delivery_queue_due", "Pending deliveries due now")
OLDEST_DUE_SECONDS = Gauge(
    "bitbybit_delivery_oldest_due_seconds", "Age of the oldest due delivery (0 when none)"
)
RESULTS_DROPPED = Counter(
    "bitbybit_delivery_results_dropped_total",
    "Attempt results not recorded: vanished (the delivery was deleted with its endpoint while it"
    " was attempted) or refused (the database refused the row)",
    ["reason"],
)
SUSPENSIONS = Counter("bitbybit_endpoint_suspensions_total", "Endpoints suspended")
OUTCOME_NAMES = {"succeeded": "succeeded", "pending": "retrying", "failed": "failed"}
OUTCOMES = {status: DELIVERIES.labels(name) for status, name in OUTCOME_NAMES.items()}
"""The attempts counter of each delivery status, looked up once (not at every attempt)."""

QUEUE_TARGETS_SHOWN = 100
"""The per-target queue gauges name at most this many targets (those with the most pending), so
a platform with thousands of endpoints keeps a bounded number of series."""
TARGET_PENDING = Gauge(
    "bitbybit_queue_pending",
    "Pending jobs per target (an endpoint id for webhooks), due or not; the targets with the"
    " most pending only",
    ["target"],
)
TARGET_OLDEST_SECONDS = Gauge(
    "bitbybit_queue_oldest_pending_seconds",
    "Age of the target's oldest pending job, since it was created",
    ["target"],
)
_shown: set[str] = set()
"""The targets the per-target gauges name now."""


def show_targets(stats: Sequence[tuple[str, int, int | None]], now: int) -> None:
    """Set the per-target gauges from ``(target, pending, oldest created at)`` (the store's
    ``queue_stats_by_target``) and remove the targets no longer in it: one that emptied (or fell
    out of the busiest) disappears rather than showing its last value for ever."""
    current: set[str] = set()
    for target, pending, oldest in stats:
        current.add(target)
        TARGET_PENDING.labels(target).set(pending)
        TARGET_OLDEST_SECONDS.labels(target).set(
            0 if oldest is None else max(0, now - oldest) / 1000
        )
    for target in _shown - current:
        for gauge in (TARGET_PENDING, TARGET_OLDEST_SECONDS):
            with contextlib.suppress(KeyError):  # removed already (another worker in a test)
                gauge.remove(target)
    _shown.clear()
    _shown.update(current)
