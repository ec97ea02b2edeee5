"""The delivery worker: claim due deliveries under a lease, send, record, schedule retries.

One loop claims; each claimed delivery is sent by its own task; finished attempts are recorded
in batches. Concurrency is capped overall and per endpoint, and claims ask only for endpoints
with free slots, so a slow or dead endpoint never holds up the others. Leases outlive the attempt
deadline, so deliveries of a process that dies are claimed again once their lease runs out.

Wake-ups: commits in this process (``store.on_deliveries``), PostgreSQL NOTIFY from other
processes, the earliest retry this worker scheduled, and a polling fallback. Which endpoints have
work due is asked of the database only on those wake-ups (and at least every ``POLL_SECONDS``);
a slot freed by a finished attempt is refilled from the endpoints already known to have work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bitbybit.delivery import metrics
from bitbybit.delivery.channel import Channel
from bitbybit.delivery.policy import SUSPENSION, SendResult, decide
from bitbybit.delivery.sender import Sender
from bitbybit.delivery.webhook_channel import WebhookChannel
from bitbybit.errors import BitbybitError, StorageUnavailable
from bitbybit.ids import random_base62
from bitbybit.models import WEBHOOK, AttemptResult, Job, Recorded
from bitbybit.runtime import Platform
from bitbybit.store import Tx

log = structlog.get_logger("bitbybit.delivery")

POLL_SECONDS = 1.0
LEASE_MARGIN_S = 30.0
FLUSH_SECONDS = 0.01
FLUSH_BATCH = 2000
"""Results one transaction records at most. A batch costs a few round trips whatever its size,
and each waits its turn on a busy event loop: when sending outpaces recording, the waiting
results make the next batch larger, up to this."""
STATS_SECONDS = 5.0
STATS_SHARE = 0.01
"""The queue gauges are read, and the kept counts folded (PostgreSQL), every ``STATS_SECONDS``,
or less often when that takes long (a queue of millions): it takes at most this share of the
time."""
RECORD_RETRY_SECONDS = 0.5
FINAL_FLUSH_SECONDS = 10.0
"""How long a stopping worker keeps trying to record its last results on a database that
fails; their leases cover whatever it could not write."""
FAST_PREFETCH = 4
"""An endpoint that answers quickly may have four times its allowance leased: the rest waits in
memory, already claimed, so sending never waits for a claim round trip."""
FAST_AHEAD = 512
"""...and at least this many (within half the worker's whole lease budget), whatever its
allowance: a small allowance must not mean small claims, each of which costs a transaction
(on PostgreSQL a claim of 32 costs twice as much a delivery as a claim of 128)."""
FAST_MS = 250.0
"""Answers faster than this (on average) make an endpoint fast."""
AHEAD_MS = 250
"""A delivery leased ahead is started within this long of its claim or given back: what is
sent is never much older than the endpoint's URL and secret, and a deleted or suspended
endpoint gets nothing claimed before the change later than this (in another process; in this
one, nothing at all)."""
START_CAP = 8
MIN_CAP = 2


async def _nothing() -> None:
    return None


class Worker:
    def __init__(
        self,
        platform: Platform,
        *,
        concurrency: int = 256,
        per_endpoint: int | None = None,
        channels: Sequence[Channel] = (),
        name: str | None = None,
    ) -> None:
        self.platform = platform
        self.store = platform.store
        self.clock = platform.clock
        self.concurrency = concurrency
        # One target may use at most half the worker, however well it answers.
        self.per_endpoint = per_endpoint or max(MIN_CAP, concurrency // 2)
        self.channels: dict[str, Channel] = {
            channel.kind: channel
            for channel in channels or [WebhookChannel(platform, Sender(platform.settings))]
        }
        """The channel of each kind of job."""
        self.next_start: dict[str, float] = {}
        """When (``time.monotonic()``) a paced channel's target may start its next attempt."""
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{random_base62(6)}"
        self.schedule = platform.settings.retry_schedule
        settings = platform.settings
        lease = settings.lease_seconds or settings.delivery_timeout + LEASE_MARGIN_S
        self.lease_ms = round(max(lease, settings.delivery_timeout + 1) * 1000)
        self.inflight: Counter[str] = Counter()
        """Attempts running, per endpoint."""
        self.claimed: Counter[str] = Counter()
        """Deliveries leased by this worker, running or queued, per endpoint."""
        self.queued: dict[str, deque[tuple[Job, int]]] = defaultdict(deque)
        """Leased ahead of time (with the time of the claim), started the moment the endpoint
        has a free slot, if that comes within ``AHEAD_MS``; given back otherwise."""
        self.releasing: set[asyncio.Task[None]] = set()
        self.latency: dict[str, float] = {}
        """Each endpoint's recent answer time in ms (moving average)."""
        self.start_cap = min(START_CAP, self.per_endpoint)
        self.caps: dict[str, int] = {}
        """Each endpoint's current in-flight allowance: it starts small, grows by one with every
        answer up to ``per_endpoint`` and halves whenever an attempt gets no answer, so an
        endpoint that hangs holds a few slots, never the worker's whole capacity. (Finding it by
        perturb and observe on the answers a second was tried: the same throughput to a fast
        sink, and a 300,000-delivery backlog on PostgreSQL drained 18 % slower.)"""
        self.ahead = min(FAST_AHEAD, concurrency * FAST_PREFETCH // 2)
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.results: list[AttemptResult] = []
        self.wake = asyncio.Event()
        self.due: list[str] = []
        """Endpoints known to have deliveries due (as of ``due_checked_at``)."""
        self.due_checked_at = 0
        self.new_work = True
        """Something may have become due that ``due`` does not know of: ask the database."""
        self.woken_while_claiming = False
        self.flushed = asyncio.Event()
        self.next_retry_at: int | None = None
        self.rng = random.Random()  # noqa: S311  # retry jitter, not cryptography

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then stop gracefully: give back what was leased and not
        started, let in-flight attempts finish (each within the delivery timeout), record every
        result, and return."""
        self.store.on_deliveries.append(self._on_new_work)
        self.store.on_endpoints_changed.append(self._on_endpoints_changed)
        unlisten = await self._listen()
        drained = asyncio.Event()
        """Set once every attempt has finished: the recorder then writes what is left and ends."""
        recorder = asyncio.create_task(self._record_loop(drained))
        stats = asyncio.create_task(self._stats_loop(stop))
        log.info("worker_started", worker=self.name, concurrency=self.concurrency)
        try:
            while not stop.is_set():
                claimed = await self._claim_once()
                if claimed:
                    continue  # there may be more
                await self._sleep(stop)
        finally:
            self.store.on_deliveries.remove(self._on_new_work)
            self.store.on_endpoints_changed.remove(self._on_endpoints_changed)
            await unlisten()
            await self._drain()
            drained.set()
            await recorder
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats
            for channel in self.channels.values():
                await channel.close()
            log.info("worker_stopped", worker=self.name, unrecorded=len(self.results))

    async def _listen(self) -> Callable[[], Awaitable[None]]:
        listen = getattr(self.store, "listen", None)
        if listen is None:  # SQLite: in-process wake-ups and polling
            return _nothing
        try:
            closer: Callable[[], Awaitable[None]] = await listen(self._on_new_work)
        except BitbybitError as error:
            log.warning("listen_failed", error=str(error), fallback="polling")
            return _nothing
        return closer

    def _on_new_work(self, endpoint_ids: frozenset[str] | None = None) -> None:
        if endpoint_ids is None:
            self.new_work = True
        else:  # claim for them straight away; they are asked about only if they yield nothing
            self.due.extend(e for e in sorted(endpoint_ids) if e not in self.due)
        self.woken_while_claiming = True
        self.wake.set()

    async def _sleep(self, stop: asyncio.Event) -> None:
        if self.woken_while_claiming and self._free() > 0:
            return  # new work arrived while claiming: claim again before sleeping
        timeout = POLL_SECONDS
        if self.next_retry_at is not None:
            timeout = max(0.0, min(timeout, (self.next_retry_at - self.clock()) / 1000))
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not self.wake.is_set():  # the poll
            self.new_work = True
        if self.next_retry_at is not None and self.next_retry_at <= self.clock():
            self.next_retry_at = None
            self.new_work = True

    def _cap(self, endpoint_id: str) -> int:
        return self.caps.get(endpoint_id, self.start_cap)

    def _lease_target(self, endpoint_id: str, cap: int) -> int:
        """How many of the endpoint's deliveries to hold leased, running or waiting."""
        if self.latency.get(endpoint_id, FAST_MS) < FAST_MS:
            return max(cap * FAST_PREFETCH, self.ahead)
        return cap

    def _free(self) -> int:
        return self.concurrency * FAST_PREFETCH - sum(self.claimed.values())

    def _check_due(self, now: int) -> bool:
        """Whether to ask the database which endpoints have work due."""
        retry_due = self.next_retry_at is not None and self.next_retry_at <= now
        return self.new_work or retry_due or now - self.due_checked_at >= POLL_SECONDS * 1000

    async def _claim_once(self) -> int:
        self.woken_while_claiming = False
        free = self._free()
        if free <= 0:
            return 0
        now = self.clock()
        try:
            if self._check_due(now):
                self.new_work = False  # before the read: a wake-up during it asks again
                async with self.store.read() as tx:
                    self.due = await tx.due_targets(now)
                self.due_checked_at = now
                if self.next_retry_at is not None and self.next_retry_at <= now:
                    self.next_retry_at = None
            slots: dict[str, int] = {}
            for endpoint_id in self.due:
                busy = self.claimed[endpoint_id]
                cap = self._cap(endpoint_id)
                target = self._lease_target(endpoint_id, cap)
                chunk = max(1, target // 4)
                room = min(target - busy, free)
                # A busy endpoint is topped up in chunks, not one slot at a time (fewer claims),
                # unless it has nothing, or what waits leased for its slots is running out.
                running_out = target > cap and busy - self.inflight[endpoint_id] < chunk
                if room >= chunk or (room > 0 and (busy == 0 or running_out)):
                    slots[endpoint_id] = room
                    free -= room
                if free <= 0:
                    break
            if not slots:
                return 0
            lease_until = now + self.lease_ms
            jobs = await self.store.claim_due(self.name, now, lease_until, slots)
        except BitbybitError as error:
            log.warning("claim_failed", worker=self.name, error=str(error))
            self.new_work = True
            await asyncio.sleep(POLL_SECONDS)
            return 0
        got = Counter(job.target for job in jobs)
        # An endpoint that gave fewer than asked has nothing more due (for now).
        self.due = [e for e in self.due if e not in slots or got[e] >= slots[e]]
        for job in jobs:
            self.claimed[job.target] += 1
            if self.inflight[job.target] < self._cap(job.target):
                self._start(job)
            else:
                self.queued[job.target].append((job, now))
        return len(jobs)

    def _start(self, job: Job) -> None:
        self.inflight[job.target] += 1
        task = asyncio.create_task(self._deliver(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _finished(self, endpoint_id: str, *, carry_on: bool) -> Job | None:
        """One attempt of ``endpoint_id`` ended: free its slot and start queued ones. With
        ``carry_on`` the first of them is not given a task: it is returned (counted in flight)
        for the task that ran this attempt to run next."""
        for counter in (self.inflight, self.claimed):
            counter[endpoint_id] -= 1
            if counter[endpoint_id] <= 0:
                del counter[endpoint_id]
        queue = self.queued.get(endpoint_id)
        cap = self._cap(endpoint_id)
        stale = self.clock() - AHEAD_MS
        given_back: list[Job] = []
        following: Job | None = None
        while queue and not self.stopping and self.inflight[endpoint_id] < cap:
            job, claimed_at = queue.popleft()
            if claimed_at < stale:  # claimed too long ago: the endpoint may have changed or gone
                given_back.append(job)
            elif carry_on and following is None:
                self.inflight[endpoint_id] += 1
                following = job
            else:
                self._start(job)
        if queue is not None and not queue:
            del self.queued[endpoint_id]
        self._give_back(given_back)
        return following

    def _on_endpoints_changed(self, endpoint_ids: frozenset[str]) -> None:
        """Endpoints were changed, suspended or deleted in this process: what was claimed for
        them and not started goes back (to be claimed afresh with their new URL and secret, or
        not at all)."""
        given_back: list[Job] = []
        for endpoint_id in endpoint_ids:
            given_back.extend(job for job, _ in self.queued.pop(endpoint_id, ()))
        self._give_back(given_back)

    def _give_back(self, jobs: list[Job]) -> None:
        """Release the leases of claimed jobs that will not be started."""
        if not jobs:
            return
        for job in jobs:
            self.claimed[job.target] -= 1
            if self.claimed[job.target] <= 0:
                del self.claimed[job.target]
        task = asyncio.create_task(self._release(jobs))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)

    async def _release(self, jobs: list[Job]) -> None:
        try:
            async with self.store.write(durable=False) as tx:
                await tx.release(self.name, jobs, self.clock())
        except BitbybitError as error:  # their leases run out instead
            log.warning("release_failed", worker=self.name, error=str(error))
            return
        self.new_work = True
        self.wake.set()

    # -- one delivery ----------------------------------------------------------------------------

    async def _deliver(self, job: Job) -> None:
        """Attempt ``job``, then, while there are, the jobs of its endpoint that wait for a slot:
        a run of attempts shares one task (a task for each cost about 4 µs, a few percent of a
        delivery's CPU)."""
        following: Job | None = job
        while following is not None:
            job = following
            try:
                await self._attempt(job)
            except BaseException:  # (a bug, or a cancellation): the next ones get tasks
                self._finished(job.target, carry_on=False)
                self.wake.set()
                raise
            following = self._finished(job.target, carry_on=True)
            self.wake.set()

    async def _attempt(self, job: Job) -> None:
        """Send ``job`` and keep its result (and what it says about the endpoint)."""
        try:
            channel = self.channels.get(job.kind)
            if channel is None:
                sent = SendResult(
                    started_at=self.clock(),
                    latency_ms=0,
                    error=f"no channel sends {job.kind!r} jobs in this process",
                    ours=True,
                )
            else:
                pace = channel.pace(job)
                if pace is not None:  # (no coroutine per delivery when unpaced)
                    await self._pace(pace, job.target)
                sent = await channel.send(job)
        except Exception as error:  # a bug must not strand the delivery: record it as failed
            log.exception("attempt_crashed", delivery_id=job.delivery_id, event_id=job.event_id)
            sent = SendResult(
                started_at=self.clock(), latency_ms=0, error=f"internal error: {error}", ours=True
            )
        previous = self.latency.get(job.target, sent.latency_ms)
        self.latency[job.target] = 0.8 * previous + 0.2 * sent.latency_ms
        cap = self._cap(job.target)
        if sent.unreachable:
            self.caps[job.target] = max(MIN_CAP, cap // 2)
        elif cap < self.per_endpoint:
            self.caps[job.target] = cap + 1
        result = decide(job, sent, self.schedule, self.clock(), self.rng)
        metrics.OUTCOMES[result.status].inc()
        metrics.ATTEMPT_SECONDS.observe(sent.latency_ms / 1000)
        if result.status == "pending" and (
            self.next_retry_at is None or result.next_attempt_at < self.next_retry_at
        ):
            self.next_retry_at = result.next_attempt_at
        if result.status != "succeeded":
            log.info(
                "attempt_failed",
                delivery_id=job.delivery_id,
                event_id=job.event_id,
                endpoint_id=job.target,
                attempt=result.number,
                status_code=result.status_code,
                error=result.error,
                outcome=result.status,
            )
        self.results.append(result)

    # -- recording -------------------------------------------------------------------------------

    async def _record_loop(self, drained: asyncio.Event) -> None:
        """Record results as they come, until every attempt has finished and its result is
        written; a database that stays unreachable through the stop gets ``FINAL_FLUSH_SECONDS``
        (the leases then cover what could not be written: those deliveries are sent again)."""
        give_up_at: float | None = None
        while not drained.is_set() or self.results:
            if drained.is_set():
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + FINAL_FLUSH_SECONDS
                elif now >= give_up_at:
                    log.error("results_unrecorded", worker=self.name, count=len(self.results))
                    return
            if self.results:
                await self.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), FLUSH_SECONDS)

    async def flush(self) -> None:
        """Record a batch of results. A database that fails keeps the batch for the next try; a
        batch the database refuses is recorded result by result, so one result that cannot be
        written never holds the others back (it is dropped, logged and counted)."""
        batch, self.results = self.results[:FLUSH_BATCH], self.results[FLUSH_BATCH:]
        try:
            recorded = await self._record(batch)
        except StorageUnavailable as error:
            log.warning("record_failed", worker=self.name, error=str(error), pending=len(batch))
            self.results = batch + self.results
            await asyncio.sleep(RECORD_RETRY_SECONDS)
            return
        except BitbybitError as error:
            log.warning("record_batch_refused", worker=self.name, error=str(error), size=len(batch))
            recorded = await self._record_one_by_one(batch)
        self._recorded(batch, recorded)

    async def _record(self, batch: list[AttemptResult]) -> Recorded:
        """Record ``batch`` and, in the same transaction, let each channel write what its
        results mean (a message's status and events). A channel that fails at that is logged
        and the batch recorded without it, so a bug there never has its jobs sent again and
        again. Webhook results alone are recorded without waiting for the disk (a record lost
        in a database crash only means a delivery is sent again); a message's are durable."""
        durable = any(result.kind != WEBHOOK for result in batch)
        try:
            async with self.store.write(durable=durable) as tx:
                recorded = await tx.record_attempts(self.name, batch, self.clock(), SUSPENSION)
                await self._channels_recorded(tx, batch, recorded)
                return recorded
        except BitbybitError:  # the database failed or refused: as for any batch
            raise
        except Exception as error:  # the channel's part failed: record the attempts alone
            log.exception("channel_record_failed", worker=self.name, error=str(error))
            async with self.store.write(durable=durable) as tx:
                return await tx.record_attempts(self.name, batch, self.clock(), SUSPENSION)

    async def _channels_recorded(
        self, tx: Tx, batch: list[AttemptResult], recorded: Recorded
    ) -> None:
        vanished = set(recorded.vanished)
        kinds = {result.kind for result in batch}
        for kind in kinds - {WEBHOOK}:
            channel = self.channels.get(kind)
            mine = [r for r in batch if r.kind == kind and r.delivery_id not in vanished]
            if channel is not None and mine:
                await channel.recorded(tx, mine)

    async def _record_one_by_one(self, batch: list[AttemptResult]) -> Recorded:
        suspended: list[str] = []
        vanished: list[str] = []
        for index, result in enumerate(batch):
            try:
                recorded = await self._record([result])
            except StorageUnavailable:  # the database went away: keep the rest for later
                self.results = batch[index:] + self.results
                break
            except BitbybitError as error:
                metrics.RESULTS_DROPPED.labels("refused").inc()
                log.error(
                    "result_dropped",
                    worker=self.name,
                    delivery_id=result.delivery_id,
                    target=result.target,
                    error=str(error),
                )
                continue
            suspended.extend(recorded.suspended)
            vanished.extend(recorded.vanished)
        return Recorded(suspended, vanished)

    def _recorded(self, batch: list[AttemptResult], recorded: Recorded) -> None:
        for endpoint_id in recorded.suspended:
            metrics.SUSPENSIONS.inc()
            log.warning("endpoint_suspended", endpoint_id=endpoint_id)
        for delivery_id in recorded.vanished:
            metrics.RESULTS_DROPPED.labels("vanished").inc()
            log.info("result_dropped", worker=self.name, delivery_id=delivery_id, reason="deleted")
        if any(result.status == "pending" for result in batch):
            self.wake.set()

    async def _drain(self) -> None:
        self.stopping = True
        unsent = [job for queue in self.queued.values() for job, _ in queue]
        self.queued.clear()
        if unsent:  # give back what was leased ahead and never started
            await self._release(unsent)
        if self.releasing:
            await asyncio.gather(*self.releasing, return_exceptions=True)
        if self.tasks:
            log.info("worker_draining", worker=self.name, inflight=len(self.tasks))
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _pace(self, pace: float, target: str) -> None:
        """Wait for ``target``'s turn: its channel starts at most ``pace`` attempts a second."""
        now = time.monotonic()
        start = max(now, self.next_start.get(target, now))
        self.next_start[target] = start + 1 / pace
        if start > now:
            await asyncio.sleep(start - now)

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await self.update_stats()
            await self.fold_counts()
            took = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(STATS_SECONDS, took / STATS_SHARE))

    async def fold_counts(self) -> None:
        """Fold the kept counts (PostgreSQL), so that a list's total sums a few rows a key."""
        try:
            await self.store.fold_counts()
        except BitbybitError as error:
            log.warning("counts_not_folded", worker=self.name, error=str(error))

    async def update_stats(self) -> None:
        """Set the queue gauges: the whole queue's, and each busiest target's (one read)."""
        now = self.clock()
        try:
            stats, targets = await self.store.queue_gauges(now, metrics.QUEUE_TARGETS_SHOWN)
        except BitbybitError:
            return
        metrics.QUEUE_PENDING.set(stats.pending)
        metrics.QUEUE_DUE.set(stats.due)
        oldest = stats.oldest_due_at
        metrics.OLDEST_DUE_SECONDS.set(0 if oldest is None else (now - oldest) / 1000)
        metrics.show_targets(targets, now)
