"""The invariant checker of the fault-injection suite (``test_faults.py``; issue 9, SPEC §6).

After a run under faults it reads what the database holds (``events``, ``webhook_endpoints``,
``deliveries``, ``delivery_attempts``, ``delivery_queue``) and what the receivers logged, and
names every violation of the delivery promises:

1. **complete**: every event reached every endpoint that existed (subscribed, not disabled) for
   its whole life: its delivery succeeded and the receiver logged the event, or its attempts
   explain why not (failed after the whole retry schedule, or held because the endpoint was
   suspended, itself explained by exhausted events or a 410);
2. **nothing stuck**: no delivery is still pending and due once the workers had settled, and a
   delivery is pending exactly while it has a queue row;
3. **history matches the wire**: every recorded attempt with a status code is a request the
   receiver logged (counted per endpoint and event), and every logged request is a recorded
   attempt, except requests of a worker that was SIGKILLed while it held that delivery; every
   logged request is signed by its endpoint and carries the event's stored body; a SIGTERMed
   worker exits 0 and leaves no delivery leased;
4. **nothing after deletion**: no request signed for a deleted endpoint has a signing time
   (``X-BitByBit-Webhook-Timestamp``) later than its deletion (seconds, rounded up).

It knows the run only through the facts passed in (when each endpoint's creation and deletion
had committed, which workers were stopped with which signal and what each held), so a failure
reads as a list of broken promises, not as a stack trace of the harness.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bitbybit.store import Store

CREATED_MARGIN_MS = 100
"""An event must reach an endpoint if it was written this long after the endpoint's creation
had committed (an update's event may carry a time a millisecond or two ahead of its clock)."""

COMPLETE = "1 complete"
STUCK = "2 nothing stuck"
WIRE = "3 history matches the wire"
DELETED = "4 nothing after deletion"
RUN = "run"
"""The harness's own promises: the API answered only 2xx or 503, workers exited as told."""


# -- what the receivers logged and what the harness did ------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One request a receiver logged on arrival."""

    path: str
    endpoint_id: str | None
    """The endpoint whose secret verifies the signature (``None``: no secret for this path
    does; ``problem`` says why)."""
    event_id: str
    event_type: str
    timestamp: int
    """``X-BitByBit-Webhook-Timestamp``: when the attempt was signed, unix seconds."""
    arrived_at: float
    body: bytes
    problem: str | None = None


@dataclass(frozen=True)
class Stop:
    """A worker process the harness stopped."""

    pid: int
    signal: str
    """``SIGKILL`` or ``SIGTERM``: what the harness meant to send."""
    held: frozenset[str]
    """Deliveries leased to it when the signal went (for SIGKILL: when it had died)."""
    left: frozenset[str]
    """Deliveries still leased to it after it exited."""
    exit_code: int | None
    """``None``: it had not exited in time after SIGTERM and was SIGKILLed."""

    @property
    def killed(self) -> bool:
        return self.signal == "SIGKILL" or self.exit_code is None


@dataclass
class Facts:
    """What the harness knows that the database does not."""

    schedule_len: int
    suspend_after: int
    confirmed_at: dict[str, int]
    """Endpoint id → unix ms by which its creation had committed."""
    deleted_at: dict[str, float]
    """Endpoint id → unix seconds by which its deletion had committed."""
    settled_at: int
    """Unix ms at which the workers were found settled (or the wait for it ended)."""
    labels: dict[str, str]
    """Endpoint id → a name for messages (``fast``, ``slow`` …)."""
    stops: list[Stop] = field(default_factory=list)
    worker_pids: set[int] = field(default_factory=set)
    pg_restarts: int = 0
    api_statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    """Violations the harness saw while running (unexpected exits, API errors)."""


# -- what the database holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    id: str
    type: str
    payload: bytes
    created_at: int


@dataclass(frozen=True)
class EndpointRow:
    id: str
    url: str
    events: tuple[str, ...]
    status: str
    status_reason: str | None

    def subscribed(self, event_type: str) -> bool:
        return self.status != "disabled" and (not self.events or event_type in self.events)


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempts: int


@dataclass(frozen=True)
class AttemptRow:
    delivery_id: str
    number: int
    status_code: int | None
    error: str | None
    worker: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def pid(self) -> int | None:
        """Worker names are ``host:pid:random``."""
        parts = self.worker.rsplit(":", 2)
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


@dataclass(frozen=True)
class QueueRow:
    delivery_id: str
    due_at: int
    lease_owner: str | None
    lease_expires_at: int | None


@dataclass
class Snapshot:
    events: dict[str, EventRow]
    endpoints: dict[str, EndpointRow]
    deliveries: dict[str, DeliveryRow]
    attempts: list[AttemptRow]
    queue: dict[str, QueueRow]


async def snapshot(store: Store) -> Snapshot:
    """Every row the checker reads, in one read transaction."""
    async with store.read() as tx:
        db: Any = tx.db  # type: ignore[attr-defined]  # SqlTx: the driver's connection
        events = await db.fetch("SELECT id, type, payload, created_at FROM events")
        endpoints = await db.fetch(
            "SELECT id, url, events, status, status_reason FROM webhook_endpoints"
        )
        deliveries = await db.fetch(
            "SELECT id, event_id, endpoint_id, status, attempts FROM deliveries"
        )
        attempts = await db.fetch(
            "SELECT delivery_id, number, status_code, error, worker FROM delivery_attempts"
        )
        queue = await db.fetch(
            "SELECT delivery_id, due_at, lease_owner, lease_expires_at FROM delivery_queue"
        )
    return Snapshot(
        events={
            r["id"]: EventRow(r["id"], r["type"], bytes(r["payload"]), int(r["created_at"]))
            for r in events
        },
        endpoints={
            r["id"]: EndpointRow(
                r["id"], r["url"], tuple(json.loads(r["events"])), r["status"], r["status_reason"]
            )
            for r in endpoints
        },
        deliveries={
            r["id"]: DeliveryRow(
                r["id"], r["event_id"], r["endpoint_id"], r["status"], int(r["attempts"])
            )
            for r in deliveries
        },
        attempts=[
            AttemptRow(
                r["delivery_id"],
                int(r["number"]),
                None if r["status_code"] is None else int(r["status_code"]),
                r["error"],
                r["worker"],
            )
            for r in attempts
        ],
        queue={
            r["delivery_id"]: QueueRow(
                r["delivery_id"],
                int(r["due_at"]),
                r["lease_owner"],
                None if r["lease_expires_at"] is None else int(r["lease_expires_at"]),
            )
            for r in queue
        },
    )


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Report:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    summary: list[str] = field(default_factory=list)

    def add(self, invariant: str, message: str) -> None:
        self.violations[invariant].append(message)

    def render(self, examples: int = 8) -> str:
        lines = list(self.summary)
        for invariant in sorted(self.violations):
            found = self.violations[invariant]
            lines.append(f"VIOLATED {invariant}: {len(found)} case(s)")
            lines.extend(f"  - {message}" for message in found[:examples])
            if len(found) > examples:
                lines.append(f"  … and {len(found) - examples} more")
        return "\n".join(lines)


# -- the checks ----------------------------------------------------------------------------------


@dataclass
class _Index:
    """The snapshot and the logs, grouped the ways the checks ask for them."""

    snap: Snapshot
    logged: list[Logged]
    facts: Facts
    attempts: dict[str, list[AttemptRow]] = field(default_factory=lambda: defaultdict(list))
    pairs: dict[tuple[str, str], list[DeliveryRow]] = field(
        default_factory=lambda: defaultdict(list)
    )
    arrivals: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for attempt in self.snap.attempts:
            self.attempts[attempt.delivery_id].append(attempt)
        for delivery in self.snap.deliveries.values():
            self.pairs[(delivery.endpoint_id, delivery.event_id)].append(delivery)
        for entry in self.logged:
            if entry.endpoint_id is not None:
                self.arrivals[(entry.endpoint_id, entry.event_id)] += 1

    def name(self, endpoint_id: str) -> str:
        return f"{self.facts.labels.get(endpoint_id, '?')} {endpoint_id}"

    def where(self, delivery: DeliveryRow) -> str:
        event = self.snap.events.get(delivery.event_id)
        kind = event.type if event is not None else "?"
        return (
            f"delivery {delivery.id} of {delivery.event_id} ({kind})"
            f" to {self.name(delivery.endpoint_id)}"
        )


def check(snap: Snapshot, logged: list[Logged], facts: Facts) -> Report:
    """Every violation of the four invariants (and of the run's own promises), with a summary."""
    index = _Index(snap, logged, facts)
    report = Report()
    for problem in facts.problems:
        report.add(RUN, problem)
    _check_stops(index, report)
    suspended_ok = _explained_suspensions(index, report)
    _check_complete(index, report, suspended_ok)
    _check_stuck(index, report)
    _check_wire(index, report)
    _check_deleted(index, report)
    _summarise(index, report)
    return report


def _check_stops(index: _Index, report: Report) -> None:
    for stop in index.facts.stops:
        if stop.signal != "SIGTERM":
            continue
        if stop.exit_code is None:
            report.add(
                RUN,
                f"worker {stop.pid} had not exited in time after SIGTERM and was"
                f" SIGKILLed (it held {len(stop.held)} deliveries when told to stop)",
            )
        elif stop.exit_code != 0:
            report.add(RUN, f"worker {stop.pid} exited {stop.exit_code} after SIGTERM")
        if stop.left and stop.exit_code is not None:
            report.add(
                WIRE,
                f"worker {stop.pid} exited after SIGTERM leaving {len(stop.left)} deliveries"
                f" leased, their results unrecorded (it held {len(stop.held)} when told to"
                f" stop): {sorted(stop.left)[:3]}",
            )


def _explained_suspensions(index: _Index, report: Report) -> set[str]:
    """Suspended endpoints whose suspension the history explains: enough events that exhausted
    every retry, or a 410 Gone."""
    failed = Counter(d.endpoint_id for d in index.snap.deliveries.values() if d.status == "failed")
    gone = {
        index.snap.deliveries[a.delivery_id].endpoint_id
        for a in index.snap.attempts
        if a.status_code == 410 and a.delivery_id in index.snap.deliveries
    }
    explained: set[str] = set()
    for endpoint in index.snap.endpoints.values():
        if endpoint.status != "suspended":
            continue
        if failed[endpoint.id] >= index.facts.suspend_after or endpoint.id in gone:
            explained.add(endpoint.id)
        else:
            report.add(
                COMPLETE,
                f"{index.name(endpoint.id)} is suspended ({endpoint.status_reason}) with only"
                f" {failed[endpoint.id]} failed deliveries and no 410",
            )
    return explained


def _check_complete(index: _Index, report: Report, suspended_ok: set[str]) -> None:
    snap, facts = index.snap, index.facts
    # Fan-out: one delivery per event and subscribed endpoint, none for the others.
    for event in snap.events.values():
        for endpoint in snap.endpoints.values():
            found = index.pairs.get((endpoint.id, event.id), [])
            confirmed = facts.confirmed_at.get(endpoint.id)
            whole_life = confirmed is not None and event.created_at >= confirmed + CREATED_MARGIN_MS
            if len(found) > 1:
                report.add(COMPLETE, f"{len(found)} deliveries of {event.id} to {endpoint.id}")
            if found and not endpoint.subscribed(event.type):
                report.add(
                    COMPLETE, f"{event.id} ({event.type}) queued to unsubscribed {endpoint.id}"
                )
            if not found and whole_life and endpoint.subscribed(event.type):
                report.add(
                    COMPLETE,
                    f"{event.id} ({event.type}) was never queued to {index.name(endpoint.id)}",
                )
    # Outcome: every queued delivery reached its endpoint or its history explains why not.
    for delivery in snap.deliveries.values():
        attempts = index.attempts.get(delivery.id, [])
        arrived = index.arrivals[(delivery.endpoint_id, delivery.event_id)]
        if delivery.status == "succeeded":
            if not any(a.ok for a in attempts):
                report.add(COMPLETE, f"{index.where(delivery)} succeeded with no 2xx attempt")
            if arrived == 0:
                report.add(
                    COMPLETE, f"{index.where(delivery)} succeeded but never reached the receiver"
                )
        elif delivery.status == "failed":
            if not _failure_explained(delivery, attempts, facts.schedule_len):
                numbers = sorted((a.number, a.status_code) for a in attempts)
                report.add(
                    COMPLETE,
                    f"{index.where(delivery)} failed after {delivery.attempts} attempt(s)"
                    f" {numbers} (the schedule allows {facts.schedule_len + 1})",
                )
        elif delivery.status == "held":
            if delivery.endpoint_id not in suspended_ok:
                status = snap.endpoints[delivery.endpoint_id].status
                report.add(COMPLETE, f"{index.where(delivery)} is held; the endpoint is {status}")
        elif delivery.status == "pending":
            queued = snap.queue.get(delivery.id)
            future = queued is not None and queued.due_at > facts.settled_at
            if not future:
                report.add(COMPLETE, f"{index.where(delivery)} is still pending")
        else:
            report.add(COMPLETE, f"{index.where(delivery)} has status {delivery.status!r}")


def _failure_explained(delivery: DeliveryRow, attempts: list[AttemptRow], schedule: int) -> bool:
    """Failed after the whole schedule (its last attempt recorded and not 2xx), or on a 410."""
    if any(a.status_code == 410 for a in attempts):
        return True
    last = [a for a in attempts if a.number == delivery.attempts]
    return delivery.attempts >= schedule + 1 and any(not a.ok for a in last)


def _check_stuck(index: _Index, report: Report) -> None:
    snap, settled = index.snap, index.facts.settled_at
    for delivery in snap.deliveries.values():
        if delivery.status == "pending" and delivery.id not in snap.queue:
            report.add(STUCK, f"{index.where(delivery)} is pending with no queue row")
    for row in snap.queue.values():
        found = snap.deliveries.get(row.delivery_id)
        if found is None:
            report.add(STUCK, f"queue row of missing delivery {row.delivery_id}")
            continue
        if found.status != "pending":
            report.add(STUCK, f"{index.where(found)} is {found.status} but still queued")
        if row.due_at > settled:
            continue
        if row.lease_owner is None or (row.lease_expires_at or 0) < settled:
            state = "unleased" if row.lease_owner is None else f"lease of {row.lease_owner} ran out"
            report.add(STUCK, f"{index.where(found)} was due and {state} after settling")
        else:
            report.add(
                STUCK,
                f"{index.where(found)} was due and still leased to {row.lease_owner}"
                " after settling (its result never recorded)",
            )


def _check_wire(index: _Index, report: Report) -> None:
    snap, facts = index.snap, index.facts
    for entry in index.logged:
        if entry.endpoint_id is None:
            report.add(WIRE, f"{entry.path}: request for {entry.event_id}: {entry.problem}")
            continue
        event = snap.events.get(entry.event_id)
        if event is None:
            report.add(WIRE, f"{entry.path}: request for unknown event {entry.event_id}")
        elif entry.body != event.payload or entry.event_type != event.type:
            report.add(WIRE, f"{entry.path}: {entry.event_id} arrived with another body or type")
    for attempt in snap.attempts:
        if attempt.pid not in facts.worker_pids:
            report.add(WIRE, f"attempt of {attempt.delivery_id} by unknown {attempt.worker!r}")
    killed_held = Counter(d for stop in facts.stops if stop.killed for d in stop.held)
    termed_held = {d: stop.pid for stop in facts.stops if not stop.killed for d in stop.held}
    for delivery in snap.deliveries.values():
        attempts = index.attempts.get(delivery.id, [])
        answered = sum(1 for a in attempts if a.status_code is not None)
        unanswered = len(attempts) - answered
        arrived = index.arrivals[(delivery.endpoint_id, delivery.event_id)]
        if answered > arrived:
            report.add(
                WIRE,
                f"{index.where(delivery)}: {answered} attempt(s) with a status code recorded,"
                f" {arrived} request(s) logged",
            )
        surplus = arrived - answered - unanswered
        if surplus > killed_held[delivery.id]:
            hint = (
                f"; SIGTERMed worker {termed_held[delivery.id]} held it"
                if delivery.id in termed_held
                else ""
            )
            report.add(
                WIRE,
                f"{index.where(delivery)}: {arrived} request(s) logged, {len(attempts)}"
                f" attempt(s) recorded, {killed_held[delivery.id]} SIGKILLed holder(s){hint}",
            )
    for (endpoint_id, event_id), count in index.arrivals.items():
        if endpoint_id in facts.deleted_at:
            continue  # deleting an endpoint deletes its history (ON DELETE CASCADE)
        if (endpoint_id, event_id) not in index.pairs:
            report.add(
                WIRE, f"{count} request(s) of {event_id} to {index.name(endpoint_id)}: no delivery"
            )


def _check_deleted(index: _Index, report: Report) -> None:
    for endpoint_id, deleted_at in index.facts.deleted_at.items():
        limit = math.ceil(deleted_at)
        if endpoint_id in index.snap.endpoints:
            report.add(DELETED, f"{index.name(endpoint_id)} is still in webhook_endpoints")
        for entry in index.logged:
            if entry.endpoint_id == endpoint_id and entry.timestamp > limit:
                report.add(
                    DELETED,
                    f"{entry.event_id} signed at {entry.timestamp} for"
                    f" {index.name(endpoint_id)}, deleted at {deleted_at:.3f}",
                )


def _summarise(index: _Index, report: Report) -> None:
    snap, facts = index.snap, index.facts
    by_endpoint: dict[str, Counter[str]] = defaultdict(Counter)
    for delivery in snap.deliveries.values():
        by_endpoint[index.name(delivery.endpoint_id)][delivery.status] += 1
    logged_pairs = Counter(
        (entry.endpoint_id, entry.event_id) for entry in index.logged if entry.endpoint_id
    )
    duplicates = sum(count - 1 for count in logged_pairs.values())
    late = Counter(
        index.name(entry.endpoint_id)
        for entry in index.logged
        if entry.endpoint_id in facts.deleted_at
        and entry.arrived_at > facts.deleted_at[entry.endpoint_id]
    )
    kills = [stop.pid for stop in facts.stops if stop.signal == "SIGKILL"]
    terms = [stop.pid for stop in facts.stops if stop.signal == "SIGTERM"]
    report.summary = [
        f"events {len(snap.events)}, deliveries {len(snap.deliveries)}, attempts"
        f" {len(snap.attempts)}, requests logged {len(index.logged)}, duplicates {duplicates}",
        *(
            f"  {name}: {dict(sorted(counts.items()))}"
            for name, counts in sorted(by_endpoint.items())
        ),
        f"SIGKILLs {len(kills)} {kills}; SIGTERMs {len(terms)} {terms};"
        f" PostgreSQL restarts {facts.pg_restarts}",
        f"API answers {dict(sorted(facts.api_statuses.items()))}",
        f"requests to deleted endpoints arriving after their deletion: {dict(late)}",
    ]
