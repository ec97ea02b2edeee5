"""Meta's callbacks to ``/whatsapp/webhooks/meta``: verified, routed, stored once, announced.

The order is what the known integrations get wrong (docs/messaging.md):

1. The body is parsed as the raw bytes Meta sent; the signature is checked over those bytes,
   never over JSON serialised again.
2. Every item of every entry and change is read (``channels.meta``); an item that cannot be read
   is logged and skipped, never the batch.
3. Items are routed to companies by ``metadata.phone_number_id`` (template statuses, which have
   no metadata, by the WABA id in ``entry[].id``). The signature must match the app secret of
   every company the callback routes to, or nothing is stored (401). A callback none of whose
   numbers is connected cannot be verified and stores nothing (404: Meta retries it for days,
   so connecting the number in time loses nothing). In a callback that routes, items of numbers
   not connected are logged and skipped.
4. Everything is written in one transaction and the answer is given after it commits: Meta's
   200 means stored. A repeated callback stores nothing twice (messages by WhatsApp id, statuses
   by message and status, each under a unique index: across processes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
import structlog

from bitbybit.channels.meta import Callback, parse_callback, signature_matches
from bitbybit.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    IntegrityViolation,
    NotFound,
    ValidationFailed,
)
from bitbybit.models import StatusReport, Tenant, WhatsAppNumber
from bitbybit.runtime import Platform
from bitbybit.services import messages
from bitbybit.services.numbers import verify_token_hash
from bitbybit.store import Tx

log = structlog.get_logger("bitbybit.channels")

ATTEMPTS = 3
"""Tries of the transaction when a concurrent callback created the same customer first."""


@dataclass(slots=True)
class Handled:
    """What one callback did."""

    received: int = 0
    """Messages stored (repeats not counted)."""
    statuses: int = 0
    """Status reports that moved a message forward."""
    skipped: list[str] = field(default_factory=list)


async def challenge(platform: Platform, mode: str | None, token: str | None) -> None:
    """Meta's subscription handshake: ``hub.mode=subscribe`` with a verify token some
    connected number has; else ``AccessDenied`` (403)."""
    if mode != "subscribe" or not token:
        raise AccessDenied("hub.mode must be subscribe, with hub.verify_token", code="FORBIDDEN")
    async with platform.store.read() as tx:
        number = await tx.find_whatsapp_number_by_verify_token(verify_token_hash(token))
    if number is None:
        raise AccessDenied("no connected WhatsApp number has this verify token", code="FORBIDDEN")


async def handle(
    platform: Platform, raw: bytes, signature: str | None, routes: Routes | None = None
) -> Handled:
    """Verify, route and store one callback; returns once it is committed."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed("the callback body is not JSON") from None
    callback = parse_callback(document)
    numbers = await (routes or Routes()).of(platform, callback)
    if not numbers and (callback.phone_number_ids or callback.waba_ids):
        ids = ", ".join(sorted(callback.phone_number_ids | callback.waba_ids))
        raise NotFound(f"no connected WhatsApp number has the id {ids}")
    for company_id, secret in _app_secrets(platform, numbers).items():
        if not signature_matches(raw, signature, secret):
            log.warning("meta_signature_mismatch", company_id=company_id)
            raise AuthError(
                "X-Hub-Signature-256 does not match the app secret", code="INVALID_SIGNATURE"
            )
    for attempt in range(ATTEMPTS):
        handled = Handled(skipped=list(callback.problems))

        async def store(tx: Tx, into: Handled = handled) -> None:
            await _store(platform, tx, callback, numbers, into)

        try:
            await platform.run(store)
            break
        except (Conflict, IntegrityViolation):  # a customer created concurrently: again
            if attempt == ATTEMPTS - 1:
                raise
    for problem in handled.skipped:
        log.warning("meta_callback_item_skipped", problem=problem)
    return handled


ROUTE_TTL_S = 2.0
"""How long a process answers Meta's callbacks from the numbers it read last (a connection
changed in the meantime is seen this much later: a callback signed with a new app secret is
answered 401 until then, and Meta sends it again)."""


_Ids = tuple[tuple[str, ...], tuple[str, ...]]
"""A callback's phone-number ids and WABA ids, sorted."""


class Routes:
    """The connected numbers callbacks named lately, kept ``ROUTE_TTL_S`` per set of ids: at
    Meta's rates this saves a transaction on nearly every callback. One per application."""

    def __init__(self) -> None:
        self._kept: dict[
            tuple[tuple[str, ...], tuple[str, ...]], tuple[float, list[WhatsAppNumber]]
        ] = {}

    async def of(self, platform: Platform, callback: Callback) -> list[WhatsAppNumber]:
        key = (tuple(sorted(callback.phone_number_ids)), tuple(sorted(callback.waba_ids)))
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < ROUTE_TTL_S:
            return kept[1]
        async with platform.store.read() as tx:
            numbers = await tx.route_whatsapp_numbers(list(key[0]), list(key[1]))
        if len(self._kept) > 1_000:
            self._kept.clear()
        if numbers:  # (an unknown number is asked again next time: it may be connected by then)
            self._kept[key] = (now, numbers)
        return numbers


def _app_secrets(platform: Platform, numbers: list[WhatsAppNumber]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for number in numbers:
        if number.company_id not in secrets:
            secrets[number.company_id] = _opened(platform, number.app_secret)
    return secrets


_OPENED: dict[str, str] = {}
"""App secrets decrypted, by their sealed form (decrypting costs some 50 µs a callback). A
sealed form is immutable: a new secret, or the same one resealed under a new key, is another
entry, so nothing here goes stale."""


def _opened(platform: Platform, sealed: str) -> str:
    secret = _OPENED.get(sealed)
    if secret is None:
        if len(_OPENED) > 10_000:
            _OPENED.clear()
        secret = _OPENED[sealed] = platform.secrets.open(sealed)
    return secret


async def _store(
    platform: Platform,
    tx: Tx,
    callback: Callback,
    numbers: list[WhatsAppNumber],
    handled: Handled,
) -> None:
    by_id = {number.phone_number_id: number for number in numbers}
    for index, inbound in enumerate(callback.messages):
        number = by_id.get(inbound.phone_number_id)
        if number is None:
            handled.skipped.append(f"message {index}: number {inbound.phone_number_id} unknown")
            continue
        stored = await messages.receive(
            platform,
            tx,
            Tenant(number.company_id, "live"),
            messages.Inbound(
                sender=inbound.sender,
                body=inbound.body,
                type=inbound.type,
                wa_id=inbound.wa_message_id,
                media_id=inbound.media_id,
                profile_name=inbound.profile_name,
                at=inbound.timestamp_ms,
                source=messages.SOURCE_CODES[number.source],
            ),
        )
        handled.received += stored is not None
    for index, status in enumerate(callback.statuses):
        number = by_id.get(status.phone_number_id)
        if number is None:
            handled.skipped.append(f"status {index}: number {status.phone_number_id} unknown")
            continue
        report = StatusReport(
            status.status, status.timestamp_ms, status.error_code, status.error_title, True
        )
        tenant = Tenant(number.company_id, "live")
        moved = await messages.report_wa_status(platform, tx, tenant, status.wa_message_id, report)
        handled.statuses += moved
    for error in callback.errors:
        log.warning(
            "meta_callback_error",
            phone_number_id=error.phone_number_id,
            code=error.code,
            title=error.title,
        )
    for template in callback.template_statuses:
        log.info(
            "meta_template_status",
            waba_id=template.waba_id,
            template=template.template_name,
            template_event=template.event,
            reason=template.reason,
        )
