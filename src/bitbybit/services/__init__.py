"""Domain logic: one transaction per operation, events written in the same transaction."""

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
        """Encrypts webhook signing secrets at rest (see ``bitbybit.crypto``)."""
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
        return cls(open_store(settings.database_url), settings)

    async def open(self, *, migrate: bool = True) -> None:
        self.secrets  # noqa: B018  # refuse to start without a usable secret key
        await self.store.open()
        if migrate:
            await self.store.migrate()

    async def close(self) -> None:
        await self.store.close()
