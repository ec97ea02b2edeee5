"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from bitbybit.clock import system_clock
from bitbybit.runtime import Platform
from tests.conftest import with_settings

FAST = (0.01, 0.01, 0.01, 0.01)


@pytest.fixture
def fast(platform: Platform) -> Platform:
    """Real time, loopback targets allowed, retries in milliseconds."""
    return with_settings(
        platform,
        clock=system_clock,
        allow_private_targets=True,
        allow_http_targets=True,
        retry_schedule=FAST,
        delivery_timeout=2.0,
    )
