"""A company's WhatsApp Business numbers on the Cloud API: connected by the operator, routed to
by Meta's callbacks (docs/messaging.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bitbybit.errors import NotFound, ValidationFailed
from bitbybit.models import WhatsAppNumber
from bitbybit.runtime import Platform
from bitbybit.store import Tx

SOURCES = ("whatsapp cloud api", "whatsapp coex")


def verify_token_hash(token: str) -> str:
    """Verify tokens are kept only as this hash: compared, never shown or sent."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Connection:
    company_id: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    waba_id: str | None = None
    source: str = "whatsapp cloud api"
    pace: float | None = None


async def connect(platform: Platform, tx: Tx, connection: Connection) -> WhatsAppNumber:
    """Connect a number to a company (replacing the company's number of that source), its
    token and app secret sealed like webhook secrets."""
    if connection.source not in SOURCES:
        raise ValidationFailed.field("source", f"must be one of {', '.join(SOURCES)}")
    for name in ("phone_number_id", "access_token", "app_secret", "verify_token"):
        if not getattr(connection, name).strip():
            raise ValidationFailed.field(name, "must not be empty")
    if not connection.phone_number_id.isdigit():
        raise ValidationFailed.field("phone_number_id", "is Meta's numeric id of the number")
    if connection.pace is not None and not 0 < connection.pace <= 1000:
        raise ValidationFailed.field("pace", "must be between 0 and 1000 messages a second")
    if await tx.get_company(connection.company_id) is None:
        raise NotFound(f"no company {connection.company_id}")
    now = platform.now()
    box = platform.secrets
    number = WhatsAppNumber(
        phone_number_id=connection.phone_number_id,
        company_id=connection.company_id,
        source=connection.source,
        waba_id=connection.waba_id,
        access_token=box.seal(connection.access_token),
        app_secret=box.seal(connection.app_secret),
        verify_token_hash=verify_token_hash(connection.verify_token),
        pace=connection.pace,
        created_at=now,
        updated_at=now,
    )
    await tx.put_whatsapp_number(number)
    return number
