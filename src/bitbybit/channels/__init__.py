"""Messaging channels: the sandbox and the WhatsApp Cloud API (ADR 0009)."""

from __future__ import annotations

from bitbybit.channels.messaging import MessagingChannel, ReceiptChannel
from bitbybit.delivery.sender import Sender
from bitbybit.delivery.webhook_channel import WebhookChannel
from bitbybit.delivery.worker import Worker
from bitbybit.runtime import Platform


def delivery_worker(platform: Platform, concurrency: int, *, name: str | None = None) -> Worker:
    """A delivery worker with every channel: webhooks, WhatsApp sends and the sandbox's
    receipts. Every process that delivers is built here, so none lacks a kind of job (a worker
    without a job's channel fails it)."""
    return Worker(
        platform,
        concurrency=concurrency,
        channels=[
            WebhookChannel(platform, Sender(platform.settings)),
            MessagingChannel(platform),
            ReceiptChannel(platform),
        ],
        name=name,
    )
