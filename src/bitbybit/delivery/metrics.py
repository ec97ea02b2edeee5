"""Prometheus metrics of delivery, exposed at ``/metrics``."""

from __future__ import annotations

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
