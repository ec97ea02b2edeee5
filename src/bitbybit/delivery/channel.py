"""What the delivery worker asks of a channel: send one claimed job, say what happened.

The worker's machinery is shared by every kind of job: claims under a lease, per-target
concurrency that adapts to how the target answers, pacing, retries on the schedule, recording
results in batches, crash safety, graceful stops. A channel supplies only the sending: the
webhook channel signs and POSTs (``delivery.webhook_channel``); a messaging channel would call
the WhatsApp Cloud API (``channels/``). A job names its channel by ``Job.kind`` and its target (the
unit of concurrency caps and pacing: an endpoint, a sending phone number) by ``Job.target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bitbybit.delivery.policy import SendResult
from bitbybit.models import AttemptResult, Job
from bitbybit.store import Tx


class Channel(Protocol):
    kind: str
    """The kind of job this channel sends."""

    def pace(self, job: Job) -> float | None:
        """At most this many attempts a second start for ``job``'s target (``None``: no pacing
        beyond the target's concurrency allowance)."""
        ...

    async def send(self, job: Job) -> SendResult:
        """One attempt; never raises for trouble with the target (that is a failed result)."""
        ...

    async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
        """What the attempts of this channel's jobs mean beyond the jobs themselves (a
        message's status, the events it emits), written in the transaction that records them:
        both commit or neither does. ``results`` are this worker's, recorded just now."""
        ...

    async def close(self) -> None: ...
