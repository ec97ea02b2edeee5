"""Rotating the secret key: every stored secret (webhook signing secrets, WhatsApp access tokens
and app secrets) moved onto the first key.

The key rotation an operator runs (docs/operations.md, "Rotating the secret key"): put the new
key in front of ``BITBYBIT_SECRET_KEY``, restart every process, run ``bitbybit secrets rotate``,
drop the old key, restart again. The start-up check of the key is ``Platform.check_secret_key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitbybit.errors import ConfigurationError, NotFound
from bitbybit.models import SealedSecrets
from bitbybit.runtime import Platform
from bitbybit.services.webhooks import rotate_secret
from bitbybit.store import Tx

ROTATE_BATCH = 200
"""Endpoints re-encrypted per transaction: short transactions, so that requests and deliveries
running meanwhile wait for the write lock (SQLite) for a few milliseconds at most."""


@dataclass(slots=True)
class Rotation:
    """What ``rotate_secret_key`` did."""

    resealed: int = 0
    """Stored secrets encrypted afresh with the first key."""
    current: int = 0
    """Stored secrets the first key had encrypted already (left as they are)."""
    unreadable: list[str] = field(default_factory=list)
    """Endpoints with a stored secret that no key decrypts (left as they are)."""
    unreadable_numbers: list[str] = field(default_factory=list)
    """WhatsApp numbers (phone-number ids) whose access token or app secret no key decrypts:
    left as they are, to be connected again (``bitbybit whatsapp connect``)."""
    reset: dict[str, str] = field(default_factory=dict)
    """With ``reset_unreadable``: endpoint id → its new secret, in effect at once."""


async def rotate_secret_key(
    platform: Platform, *, reset_unreadable: bool = False, batch: int = ROTATE_BATCH
) -> Rotation:
    """Re-encrypt every stored signing secret with the first key, ``batch`` endpoints per
    transaction.

    Safe while servers and workers run, as long as each of them holds every key: a worker that
    cached a decrypted secret keeps signing with it, one that reads a re-encrypted secret decrypts
    it with the first key. A secret is replaced only if it is still the one read, so a secret
    rotated meanwhile (through the API) is left as the API wrote it, and running this again is
    harmless: a second run finds every secret under the first key.

    With ``reset_unreadable``, an endpoint with a secret no key decrypts (the key that encrypted
    it is lost) gets a new secret at once, as ``POST /webhooks/{id}/rotate-secret`` with
    ``graceHours: 0`` would give it; its receiver must be told the new secret.
    """
    done = Rotation()
    after = ""
    while True:
        unreadable: list[SealedSecrets] = []
        async with platform.store.write() as tx:
            page = await tx.page_sealed_secrets(after, batch)
            for sealed in page:
                if not await _reseal(platform, tx, sealed, done):
                    unreadable.append(sealed)
        for sealed in unreadable:
            if not reset_unreadable:
                done.unreadable.append(sealed.endpoint_id)
                continue
            try:
                _, secret = await rotate_secret(platform, sealed.tenant, sealed.endpoint_id, 0)
            except NotFound:
                continue  # deleted meanwhile
            done.reset[sealed.endpoint_id] = secret
        if len(page) < batch:
            break
        after = page[-1].endpoint_id
    await _reseal_numbers(platform, done, batch)
    return done


async def _reseal_numbers(platform: Platform, done: Rotation, batch: int) -> None:
    """The WhatsApp numbers' access tokens and app secrets, as the endpoints' secrets."""
    after = ""
    while True:
        async with platform.store.write() as tx:
            page = await tx.page_whatsapp_numbers(after, batch)
            for number in page:
                old = (number.access_token, number.app_secret)
                try:
                    fresh = [platform.secrets.reseal(token) for token in old]
                except ConfigurationError:
                    done.unreadable_numbers.append(number.phone_number_id)
                    continue
                done.current += sum(token is None for token in fresh)
                new = tuple(f if f is not None else o for f, o in zip(fresh, old, strict=True))
                if new != old and await tx.reseal_whatsapp_number(
                    number.phone_number_id, old, (new[0], new[1])
                ):
                    done.resealed += sum(token is not None for token in fresh)
        if len(page) < batch:
            return
        after = page[-1].phone_number_id


async def _reseal(platform: Platform, tx: Tx, sealed: SealedSecrets, done: Rotation) -> bool:
    """Move the endpoint's secrets onto the first key; False if one of them does not decrypt."""
    try:
        fresh = [(token, platform.secrets.reseal(token)) for token in sealed.tokens]
    except ConfigurationError:
        return False
    for old, new in fresh:
        if new is None:
            done.current += 1
        elif await tx.reseal_secret(sealed.endpoint_id, old, new):
            done.resealed += 1
    return True
