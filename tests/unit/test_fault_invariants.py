"""The fault-injection suite's checker (``tests/integration/invariants.py``) on made-up histories.

A checker that passes everything proves nothing: each broken promise below must be named under
its invariant, and a clean history (including what a SIGKILL excuses) must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.integration.invariants import (
    COMPLETE,
    DELETED,
    RUN,
    STUCK,
    WIRE,
    AttemptRow,
    DeliveryRow,
    EndpointRow,
    EventRow,
    Facts,
    Logged,
    QueueRow,
    Snapshot,
    Stop,
    check,
)

WORKER = "host:100:abcdef"
DELETED_AT = 1_700_000_010.25


def logged(endpoint: str | None, event: EventRow, timestamp: int = 1_700_000_000) -> Logged:
    return Logged(
        path=f"/r/{endpoint}",
        endpoint_id=endpoint,
        event_id=event.id,
        event_type=event.type,
        timestamp=timestamp,
        arrived_at=float(timestamp),
        body=event.payload,
        problem=None if endpoint else "bad signature",
    )


def history() -> tuple[Snapshot, list[Logged], Facts]:
    """``fast`` got every event; ``failing`` exhausted three and was suspended, holding the
    fourth; ``gone`` was deleted (its rows went with it)."""
    events = [
        EventRow(f"evt_{n}", "customer.created", f'{{"n":{n}}}'.encode(), 1_000 + n)
        for n in range(4)
    ]
    events.append(EventRow("evt_p", "product.created", b'{"p":1}', 2_000))
    endpoints = [
        EndpointRow("fast", "http://x/r/fast", (), "active", None),
        EndpointRow("failing", "http://x/r/failing", ("customer.created",), "suspended", "3"),
    ]
    deliveries: list[DeliveryRow] = []
    attempts: list[AttemptRow] = []
    log: list[Logged] = []
    for event in events:
        deliveries.append(DeliveryRow(f"d_fast_{event.id}", event.id, "fast", "succeeded", 1))
        attempts.append(AttemptRow(f"d_fast_{event.id}", 1, 200, None, WORKER))
        log.append(logged("fast", event))
    for event in events[:3]:
        deliveries.append(DeliveryRow(f"d_fail_{event.id}", event.id, "failing", "failed", 3))
        for number in (1, 2, 3):
            attempts.append(AttemptRow(f"d_fail_{event.id}", number, 500, "HTTP 500", WORKER))
            log.append(logged("failing", event))
    deliveries.append(DeliveryRow("d_held", events[3].id, "failing", "held", 0))
    log.append(logged("gone", events[0], timestamp=int(DELETED_AT) + 1))  # = ceil: not after
    snap = Snapshot(
        events={event.id: event for event in events},
        endpoints={endpoint.id: endpoint for endpoint in endpoints},
        deliveries={delivery.id: delivery for delivery in deliveries},
        attempts=attempts,
        queue={},
    )
    facts = Facts(
        schedule_len=2,
        suspend_after=3,
        confirmed_at={"fast": 0, "failing": 0},
        deleted_at={"gone": DELETED_AT},
        settled_at=10_000,
        labels={"fast": "fast", "failing": "failing", "gone": "gone"},
        worker_pids={100},
    )
    return snap, log, facts


def test_a_clean_history_passes() -> None:
    report = check(*history())
    assert not report.violations, report.render()
    assert report.summary


def test_a_sigkill_excuses_a_request_without_an_attempt() -> None:
    snap, log, facts = history()
    log.append(logged("fast", snap.events["evt_1"]))
    facts.stops.append(Stop(100, "SIGKILL", frozenset({"d_fast_evt_1"}), frozenset(), -9))
    assert not check(snap, log, facts).violations


Break = Callable[[Snapshot, list[Logged], Facts], None]


def _unlogged(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    log.remove(logged("fast", snap.events["evt_1"]))


def _duplicate_unexcused(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    log.append(logged("fast", snap.events["evt_1"]))
    facts.stops.append(Stop(101, "SIGTERM", frozenset({"d_fast_evt_1"}), frozenset(), 0))


def _pending_unqueued(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.deliveries["d_fast_evt_2"] = replace(snap.deliveries["d_fast_evt_2"], status="pending")


def _due_lease_ran_out(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    _pending_unqueued(snap, log, facts)
    snap.queue["d_fast_evt_2"] = QueueRow("d_fast_evt_2", 5_000, WORKER, 6_000)


def _short_failure(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.deliveries["d_fail_evt_0"] = replace(snap.deliveries["d_fail_evt_0"], attempts=2)


def _held_while_active(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.endpoints["failing"] = replace(snap.endpoints["failing"], status="active")


def _suspended_without_cause(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.deliveries["d_fail_evt_0"] = replace(snap.deliveries["d_fail_evt_0"], status="held")


def _never_queued(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    del snap.deliveries["d_fast_evt_p"]
    snap.attempts[:] = [a for a in snap.attempts if a.delivery_id != "d_fast_evt_p"]
    log.remove(logged("fast", snap.events["evt_p"]))


def _unsubscribed(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.deliveries["d_x"] = DeliveryRow("d_x", "evt_p", "failing", "held", 0)


def _sent_after_deletion(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    log.append(logged("gone", snap.events["evt_1"], timestamp=int(DELETED_AT) + 2))


def _sigterm_left_leases(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    facts.stops.append(Stop(101, "SIGTERM", frozenset({"a"}), frozenset({"a"}), 0))


def _sigterm_hung(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    facts.stops.append(Stop(101, "SIGTERM", frozenset(), frozenset(), None))


def _unknown_worker(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    snap.attempts[0] = replace(snap.attempts[0], worker="host:999:serve00")


def _bad_signature(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    log.append(logged(None, snap.events["evt_1"]))


def _other_body(snap: Snapshot, log: list[Logged], facts: Facts) -> None:
    log[0] = replace(log[0], body=b"{}")


@pytest.mark.parametrize(
    ("breaking", "invariant"),
    [
        (_unlogged, COMPLETE),
        (_unlogged, WIRE),
        (_duplicate_unexcused, WIRE),
        (_pending_unqueued, STUCK),
        (_pending_unqueued, COMPLETE),
        (_due_lease_ran_out, STUCK),
        (_short_failure, COMPLETE),
        (_held_while_active, COMPLETE),
        (_suspended_without_cause, COMPLETE),
        (_never_queued, COMPLETE),
        (_unsubscribed, COMPLETE),
        (_sent_after_deletion, DELETED),
        (_sigterm_left_leases, WIRE),
        (_sigterm_hung, RUN),
        (_unknown_worker, WIRE),
        (_bad_signature, WIRE),
        (_other_body, WIRE),
    ],
)
def test_a_broken_promise_is_named(breaking: Break, invariant: str) -> None:
    snap, log, facts = history()
    breaking(snap, log, facts)
    report = check(snap, log, facts)
    assert report.violations.get(invariant), report.render()
