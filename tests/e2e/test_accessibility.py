"""Every dashboard page, as a browser renders it: no serious or critical axe-core violation, and
a screenshot of each main page for a person to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import Live, screenshot, serious_violations

MAIN_PAGES = [
    "/dashboard",
    "/dashboard/keys",
    "/dashboard/webhooks",
    "/dashboard/deliveries",
    "/dashboard/events",
    "/dashboard/messages",
    "/dashboard/customers",
    "/dashboard/orders",
    "/dashboard/products",
]


def test_the_sign_in_page_is_accessible(browser: Browser, live: Live) -> None:
    context = browser.new_context(base_url=live.base_url)
    page = context.new_page()
    page.goto("/dashboard/login")
    screenshot(page, "login")
    assert serious_violations(page) == []
    context.close()


@pytest.mark.parametrize("path", MAIN_PAGES)
def test_each_main_page_is_accessible(page: Page, path: str) -> None:
    answer = page.goto(path)
    assert answer is not None
    assert answer.status == 200, path
    name = path.removeprefix("/dashboard").strip("/") or "home"
    screenshot(page, name)
    assert serious_violations(page) == []
