"""Fixtures for the dashboard's in-process tests: a signed-in admin and viewer per company."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bitbybit.runtime import Platform
from tests.conftest import Account
from tests.dashboard.support import Browser, sign_in


@pytest.fixture
async def admin(platform: Platform, account: Account) -> AsyncIterator[Browser]:
    browser = await sign_in(platform, account.company.id)
    async with browser:
        yield browser


@pytest.fixture
async def viewer(platform: Platform, account: Account) -> AsyncIterator[Browser]:
    browser = await sign_in(platform, account.company.id, role="viewer")
    async with browser:
        yield browser


@pytest.fixture
async def stranger(platform: Platform, other_account: Account) -> AsyncIterator[Browser]:
    """An admin of another company."""
    browser = await sign_in(platform, other_account.company.id)
    async with browser:
        yield browser
