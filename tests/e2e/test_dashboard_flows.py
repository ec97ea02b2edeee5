"""The dashboard in a real browser against a live ``bitbybit serve`` (issue 12's "Done when"):
sign in; create a key and an endpoint that points at a loopback receiver; Send Test and see the
attempt; see a real delivery and its attempt; retry it; rotate the secret; suspend, and
reactivate with recovery; answer an inbound WhatsApp message (sandbox channel)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Hooks, Live, screenshot, sign_in


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def event_types(hooks: Hooks) -> list[str]:
    return [headers.get("x-bitbybit-webhook-event", "") for headers, _ in list(hooks.received)]


def test_an_admin_manages_keys_webhooks_and_deliveries(
    page: Page, live: Live, hooks: Hooks
) -> None:
    # -- an API key, shown once --------------------------------------------------------------
    page.goto("/dashboard/keys")
    page.get_by_label("Name", exact=True).fill("Shop backend")
    page.get_by_label("All scopes").check()
    page.get_by_label("Allowed IPs").fill("127.0.0.1/32 this machine")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("bbb_live_")
    screenshot(page, "key-created")
    page.goto("/dashboard/keys")
    expect(page.get_by_text("this machine")).to_be_visible()
    assert key not in page.content()  # shown once: the list has its prefix only

    # -- an endpoint at a loopback receiver, its secret shown once ---------------------------
    page.goto("/dashboard/webhooks")
    page.get_by_label("URL").fill(hooks.url)
    page.get_by_label("Description").fill("Local receiver")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    page.get_by_role("link", name=re.compile("endpoint", re.I)).first.click()
    expect(page).to_have_url(re.compile(r"/dashboard/webhooks/we_\w+$"))
    endpoint_url = page.url

    # -- Send Test: the attempt shows inline -------------------------------------------------
    page.get_by_role("button", name="Send test").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("200")
    wait_for(lambda: len(hooks.received) >= 1, "the test event")
    screenshot(page, "webhook-detail")

    # -- a real delivery and its attempt -----------------------------------------------------
    created = httpx.post(
        f"{live.base_url}/customer/open/v1/customers",
        headers={"x-api-key": key},
        json={"email": "budi@example.com", "phoneNumber": "081234567001", "firstName": "Budi"},
    )
    assert created.status_code == 201, created.text
    wait_for(lambda: "customer.created" in event_types(hooks), "the customer.created delivery")
    page.goto("/dashboard/deliveries")
    expect(page.get_by_role("cell", name="customer.created").first).to_be_visible()
    screenshot(page, "deliveries-list")
    page.locator("a[href^='/dashboard/deliveries/dlv_']").first.click()
    expect(page).to_have_url(re.compile(r"/dashboard/deliveries/dlv_\w+$"))
    expect(page.locator("main")).to_contain_text(re.compile("webhook-signature", re.I))
    expect(page.locator("main")).to_contain_text("200")
    screenshot(page, "delivery-detail")

    # -- retry it: a second attempt is made and shown ----------------------------------------
    sent_before = event_types(hooks).count("customer.created")
    page.get_by_role("button", name="Retry delivery").click()
    expect(page.locator(".flash")).to_be_visible()
    wait_for(
        lambda: event_types(hooks).count("customer.created") > sent_before, "the retried delivery"
    )
    detail = page.url
    for _ in range(100):  # the worker records the attempt a moment after sending it
        page.goto(detail)
        if page.get_by_role("heading", name=re.compile(r"^Attempt 2:")).count():
            break
        time.sleep(0.1)
    expect(page.get_by_role("heading", name=re.compile(r"^Attempt 2:"))).to_be_visible()

    # -- rotate the secret -------------------------------------------------------------------
    page.goto(endpoint_url)
    page.get_by_role("button", name="Rotate secret").click()
    rotated = page.locator("#new-secret").inner_text().strip()
    assert rotated.startswith("whsec_")
    assert rotated != secret

    # -- suspend; an event meanwhile is held; reactivate with recovery delivers it -----------
    page.goto(endpoint_url)
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("main")).to_contain_text("suspended")
    held = httpx.post(
        f"{live.base_url}/customer/open/v1/customers",
        headers={"x-api-key": key},
        json={"email": "sari@example.com", "phoneNumber": "081234567002", "firstName": "Sari"},
    )
    assert held.status_code == 201
    time.sleep(0.5)
    assert b"sari@example.com" not in b"".join(body for _, body in hooks.received)
    page.goto(endpoint_url)
    page.get_by_role("button", name="Reactivate").click()
    expect(page.locator("main")).to_contain_text("active")
    wait_for(
        lambda: b"sari@example.com" in b"".join(body for _, body in hooks.received),
        "the held delivery after reactivation",
    )


def test_an_admin_answers_an_inbound_message(page: Page, live: Live) -> None:
    phone = "+6281234567003"
    live.cli("messages", "inject", "--company", live.company_id, "--from", phone, "--body", "Halo?")
    page.goto("/dashboard/messages")
    expect(page.get_by_text("Halo?").first).to_be_visible()
    screenshot(page, "messages")
    page.locator("a[href*='/dashboard/messages/c/']").first.click()
    expect(page.locator("main")).to_contain_text("Halo?")
    page.get_by_role("textbox", name="Reply").fill("Hi! Your order ships today.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("main")).to_contain_text("Hi! Your order ships today.")
    # The sandbox channel reports statuses in steps: the reply is sent, then delivered.
    for _ in range(50):
        page.reload()
        text = page.locator("main").inner_text()
        if "delivered" in text or "read" in text:
            break
        time.sleep(0.2)
    assert "delivered" in text or "read" in text
    screenshot(page, "conversation")


def test_a_viewer_sees_but_is_offered_no_change(viewer_page: Page) -> None:
    page = viewer_page
    for path in ("/dashboard/keys", "/dashboard/webhooks"):
        page.goto(path)
        expect(
            page.get_by_role("button", name=re.compile("Create key|Add endpoint"))
        ).to_have_count(0)


def test_signing_out_ends_the_session(page: Page, live: Live) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.goto("/dashboard/keys")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))


def test_the_basic_flows_work_without_javascript(browser: Browser, live: Live) -> None:
    context = browser.new_context(base_url=live.base_url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live, live.admin_email)
    page.goto("/dashboard/keys")
    page.get_by_label("Name", exact=True).fill("No-JS key")
    page.get_by_label("All scopes").check()
    page.get_by_role("button", name="Create key").click()
    assert page.locator("#new-key").inner_text().strip().startswith("bbb_live_")
    page.goto("/dashboard/deliveries?status=failed")
    expect(page.get_by_role("heading", name="Deliveries", exact=True)).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=succeeded"))
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    context.close()
