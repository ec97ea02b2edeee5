"""What the delivery worker asks of a channel: send one claimed job, say what happened.

The worker's machinery is shared by every kind of job: claims under a lease, per-target
concurrency that adapts to how the target answers, pacing, retries on the schedule, recording
results in batches, crash safety, graceful stops. A channel supplies only the sending: the
webhook channel signs and POSTs (``delivery.webhook_channel``); a messaging channel would call
the WhatsApp Cloud API. A job names its channel by ``Job.kind`` and its target (the unit of
concurrency caps and pacing: an endpoint, a sending phone number) by ``Job.target``.
"""

from __future__ import annotations

from typing import Protocol

from bitbybit.delivery.policy import SendResult
from bitbybit.models import Job


class Channel(Protocol):
    kind: str
    """The kind of job this channel sends."""
    pace: float | None
    """At most this many attempts a second start per target (``None``: no pacing beyond the
    target's concurrency allowance)."""

    async def send(self, job: Job) -> SendResult:
        """One attempt; never raises for trouble with the target (that is a failed result)."""
        ...

    async def close(self) -> None: ...
