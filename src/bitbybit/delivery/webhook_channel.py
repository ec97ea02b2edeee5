"""The webhook channel: sign a claimed delivery with its endpoint's secrets and POST it."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from bitbybit.delivery.policy import SendResult, signing_secrets
from bitbybit.delivery.sender import Sender
from bitbybit.errors import ConfigurationError
from bitbybit.models import WEBHOOK, AttemptResult, Job
from bitbybit.runtime import Platform
from bitbybit.store import Tx

log = structlog.get_logger("bitbybit.delivery")


class WebhookChannel:
    kind = WEBHOOK

    def pace(self, job: Job) -> float | None:
        return None  # an endpoint is limited by its concurrency allowance alone

    def __init__(self, platform: Platform, sender: Sender) -> None:
        self.platform = platform
        self.sender = sender
        self._secrets: dict[str, str] = {}
        """Decrypted signing secrets by their sealed form (decrypting costs ~50 µs)."""

    def _open(self, token: str) -> str:
        secret = self._secrets.get(token)
        if secret is None:
            secret = self._secrets[token] = self.platform.secrets.open(token)
        return secret

    async def send(self, job: Job) -> SendResult:
        now = self.platform.now()
        try:
            secrets = signing_secrets(
                self._open(job.secret),
                self._open(job.next_secret) if job.next_secret else None,
                job.next_secret_at,
                job.multi_signature,
                now,
            )
        except ConfigurationError as error:  # not the endpoint's fault: retried, not counted
            log.error("secret_undecryptable", delivery_id=job.delivery_id, error=str(error))
            return SendResult(started_at=now, latency_ms=0, error=str(error), ours=True)
        return await self.sender.send(job.url, job.event_id, job.event_type, job.payload, secrets)

    async def recorded(self, tx: Tx, results: Sequence[AttemptResult]) -> None:
        return None  # a delivery's record is all there is (the store writes it)

    async def close(self) -> None:
        await self.sender.close()
