"""What a running process holds: the store, the settings, the clock and the secret box.

``Platform`` is built once per process (``bitbybit serve``, ``bitbybit worker``, a CLI command, a
test) and handed to the services, the API and the delivery worker. It lives here, below both
``services/`` and ``delivery/``, so that each of them can take it without importing the other:
the layers run ``cli → api → services → delivery → runtime → store → models`` with no step back
(the import-linter contracts in ``pyproject.toml`` check it).

Nothing here is domain logic: opening and migrating the store, refusing to start with a secret
key that cannot read the stored signing secrets, and running one write transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bitbybit.clock import Clock
from bitbybit.config import Settings
from bitbybit.crypto import SecretBox, load_box
from bitbybit.errors import NotFound
from bitbybit.store import Store, Tx, open_store

T = TypeVar("T")

SECRET_CHECK_SAMPLE = 1000
"""Endpoints changed last, and created first, whose secrets the start-up key check decrypts."""


@dataclass(slots=True)
class Platform:
    """What every service needs: the store and the settings (and through them, the clock)."""

    store: Store
    settings: Settings
    _countries: dict[str, str] = field(default_factory=dict)
    _box: SecretBox | None = None

    @property
    def clock(self) -> Clock:
        return self.settings.clock

    def now(self) -> int:
        return self.settings.clock()

    @property
    def secrets(self) -> SecretBox:
        """Encrypts webhook signing secrets and WhatsApp credentials at rest (``crypto``)."""
        if self._box is None:
            self._box = load_box(self.settings)
        return self._box

    async def run(self, operation: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``operation`` in one write transaction: all of it commits, or none of it."""
        async with self.store.write() as tx:
            return await operation(tx)

    async def country_of(self, tx: Tx, company_id: str) -> str:
        """The company's country (for local phone numbers); companies never change country."""
        country = self._countries.get(company_id)
        if country is None:
            company = await tx.get_company(company_id)
            if company is None:
                raise NotFound(f"no company {company_id}")
            country = self._countries[company_id] = company.country
        return country

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        return cls(open_store(settings.database_url, timeout=settings.database_timeout), settings)

    async def open(self, *, migrate: bool = True) -> None:
        """Open the store; with ``migrate``, also ``migrate()`` (which checks the secret key).

        Without ``migrate`` the caller brings the schema up to date itself, and checks the key.
        """
        self.secrets  # noqa: B018  # refuse to start without a usable secret key
        await self.store.open()
        if migrate:
            await self.migrate()

    async def migrate(self) -> list[str]:
        """Apply the migrations the database lacks (their names), then ``check_secret_key()``."""
        applied = await self.store.migrate()
        await self.check_secret_key()
        return applied

    async def check_secret_key(self) -> None:
        """Refuse to start (``ConfigurationError``) when the secret key cannot decrypt the
        signing secrets the database holds: started anyway, every delivery attempt to their
        endpoints would fail, use up its retries and suspend the endpoint.

        The same goes for the WhatsApp numbers' access tokens and app secrets (the first
        ``SECRET_CHECK_SAMPLE`` numbers): sends and callbacks would fail without them.

        Fernet tokens do not say which key made them, so the check decrypts stored secrets: those
        of the ``SECRET_CHECK_SAMPLE`` endpoints changed last (a wrong key, a process missing the
        key the others now encrypt with) and of the ``SECRET_CHECK_SAMPLE`` created first (a key
        dropped before ``bitbybit secrets rotate`` moved everything off it). Up to twice that many
        endpoints means every secret; each takes some 15 µs. An empty database passes.

        It lives here rather than in ``services.secret_keys`` (which rotates the key) because
        every process runs it at start, the worker included, and it needs nothing but the store
        and the secret box.
        """
        async with self.store.read() as tx:
            sample = await tx.sample_sealed_secrets(SECRET_CHECK_SAMPLE)
            numbers = await tx.page_whatsapp_numbers("", SECRET_CHECK_SAMPLE)
        tokens = [token for sealed in sample for token in sealed.tokens]
        tokens += [token for n in numbers for token in (n.access_token, n.app_secret)]
        unreadable = sum(not self.secrets.opens(token) for token in tokens)
        if unreadable:
            raise self.secrets.mismatch(unreadable, len(tokens))

    async def close(self) -> None:
        await self.store.close()
