"""The delivery worker against real receivers on loopback (no mocks of the network layer)."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from bitbybit.clock import system_clock
from bitbybit.delivery.worker import Worker
from bitbybit.models import Delivery, ListQuery, Tenant
from bitbybit.runtime import Platform
from bitbybit.schemas import EndpointCreate
from bitbybit.services import webhooks
from bitbybit.webhooks.signing import sign
from tests.conftest import CUSTOMERS, Account, client_for, with_settings
from tests.integration.receivers import Receiver, receiver


@asynccontextmanager
async def running(platform: Platform, **options: Any) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    worker = Worker(platform, **options)
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def endpoint_for(
    platform: Platform, account: Account, url: str, **fields: Any
) -> tuple[str, str]:
    tenant = Tenant(account.company.id, "live")
    endpoint, secret = await webhooks.create_endpoint(
        platform, tenant, EndpointCreate(url=url, **fields)
    )
    return endpoint.id, secret


async def deliveries(platform: Platform, account: Account, endpoint_id: str) -> list[Delivery]:
    tenant = Tenant(account.company.id, "live")
    async with platform.store.read() as tx:
        page = await tx.list_deliveries(tenant, endpoint_id=endpoint_id, limit=100)
    return list(page.items)


async def create_customer(platform: Platform, account: Account, **body: Any) -> dict[str, Any]:
    async with client_for(platform) as http:
        response = await http.post(
            CUSTOMERS, json={"email": "zoe@example.com", **body}, headers=account.headers
        )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_headers_and_signature_are_exact(fast: Platform, account: Account) -> None:
    async with receiver() as hook:
        _, secret = await endpoint_for(fast, account, hook.url)
        async with running(fast):
            customer = await create_customer(fast, account, firstName='Zoë 😀 / "q"')
            (got,) = await hook.wait_for(1)
    tenant = Tenant(account.company.id, "live")
    async with fast.store.read() as tx:
        (event,) = (await tx.list_events(tenant, ListQuery())).items
    assert got.body == event.payload
    assert customer["id"].encode() in got.body
    timestamp = int(got.headers["X-BitByBit-Webhook-Timestamp"])
    assert abs(timestamp - time.time()) < 30
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "BitByBit-Webhooks/1.0"
    assert got.headers["X-BitByBit-Webhook-Id"] == event.id
    assert got.headers["X-BitByBit-Webhook-Event"] == "customer.created"
    assert got.headers["X-BitByBit-Webhook-Signature"] == sign(got.body, secret, timestamp)
    assert got.headers["X-BitByBit-Webhook-Signature"].count("v1=") == 1


async def test_five_attempts_then_failed_same_id_and_body(fast: Platform, account: Account) -> None:
    async def broken(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    async with receiver(broken) as hook:
        endpoint_id, secret = await endpoint_for(fast, account, hook.url)
        async with running(fast):
            await create_customer(fast, account)

            async def failed() -> bool:
                found = await deliveries(fast, account, endpoint_id)
                return bool(found) and found[0].status == "failed"

            await until(failed)
        got = hook.received
    assert len(got) == 5
    assert len({r.headers["X-BitByBit-Webhook-Id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    for request in got:  # every retry is signed afresh over the same bytes
        stamp = int(request.headers["X-BitByBit-Webhook-Timestamp"])
        assert request.headers["X-BitByBit-Webhook-Signature"] == sign(request.body, secret, stamp)
    (delivery,) = await deliveries(fast, account, endpoint_id)
    assert delivery.attempts == 5
    assert delivery.last_status_code == 500
    _, attempts = await webhooks.get_delivery(fast, Tenant(account.company.id, "live"), delivery.id)
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5]
    assert all(a.response_body == b"boom" for a in attempts)


async def test_redirect_is_a_failure_and_not_followed(fast: Platform, account: Account) -> None:
    async def redirect(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"{hook.base_url}/elsewhere"})

    fast = with_settings(fast, retry_schedule=())
    async with receiver(redirect) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        async with running(fast):
            await create_customer(fast, account)

            async def done() -> bool:
                found = await deliveries(fast, account, endpoint_id)
                return bool(found) and found[0].status == "failed"

            await until(done)
        assert [r.path for r in hook.received] == ["/hook"]
    (delivery,) = await deliveries(fast, account, endpoint_id)
    assert delivery.last_status_code == 302
    assert "redirect" in (delivery.last_error or "")


async def test_gone_suspends_and_later_events_are_held(fast: Platform, account: Account) -> None:
    async def gone(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=410)

    async with receiver(gone) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        tenant = Tenant(account.company.id, "live")
        async with running(fast):
            await create_customer(fast, account)

            async def suspended() -> bool:
                endpoint = await webhooks.get_endpoint(fast, tenant, endpoint_id)
                return endpoint.status == "suspended"

            await until(suspended)
            await create_customer(fast, account, email="second@example.com")
            await asyncio.sleep(0.2)
        assert len(hook.received) == 1
    statuses = sorted(d.status for d in await deliveries(fast, account, endpoint_id))
    assert statuses == ["failed", "held"]


async def test_retry_after_is_honoured(fast: Platform, account: Account) -> None:
    async def busy_once(request: web.Request, hook: Receiver) -> web.StreamResponse:
        if len(hook.received) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=200)

    async with receiver(busy_once) as hook:
        await endpoint_for(fast, account, hook.url)
        async with running(fast):
            await create_customer(fast, account)
            first, second = await hook.wait_for(2)
    assert second.at - first.at >= 0.95


async def test_three_exhausted_events_suspend(fast: Platform, account: Account) -> None:
    async def broken(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=503)

    fast = with_settings(fast, retry_schedule=(0.01,))
    tenant = Tenant(account.company.id, "live")
    async with receiver(broken) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        async with running(fast):
            for index in range(3):
                await create_customer(fast, account, email=f"c{index}@example.com")

            async def suspended() -> bool:
                endpoint = await webhooks.get_endpoint(fast, tenant, endpoint_id)
                return endpoint.status == "suspended"

            await until(suspended)
        assert len(hook.received) == 6
    endpoint = await webhooks.get_endpoint(fast, tenant, endpoint_id)
    assert "3 events" in (endpoint.status_reason or "")


async def test_drip_receiver_is_cut_at_the_deadline(fast: Platform, account: Account) -> None:
    async def drip(request: web.Request, hook: Receiver) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(60):
            await response.write(b"x")
            await asyncio.sleep(1)
        return response

    fast = with_settings(fast, retry_schedule=(), delivery_timeout=1.5)
    async with receiver(drip) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        started = time.monotonic()
        async with running(fast):
            await create_customer(fast, account)

            async def done() -> bool:
                found = await deliveries(fast, account, endpoint_id)
                return bool(found) and found[0].status == "failed"

            await until(done)
        assert time.monotonic() - started < 10
    (delivery,) = await deliveries(fast, account, endpoint_id)
    assert "timed out" in (delivery.last_error or "")


async def test_huge_response_is_read_no_further_than_4_kb(fast: Platform, account: Account) -> None:
    chunk = b"y" * 65536

    async def huge(request: web.Request, hook: Receiver) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = 50 * 1024 * 1024
        await response.prepare(request)
        try:
            for _ in range(800):
                await response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass  # the sender hung up after 4 KB, as it should
        return response

    async with receiver(huge) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        tracemalloc.start()
        try:
            async with running(fast):
                await create_customer(fast, account)

                async def done() -> bool:
                    found = await deliveries(fast, account, endpoint_id)
                    return bool(found) and found[0].status == "succeeded"

                await until(done)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(hook.received) == 1
    assert peak < 10 * 1024 * 1024
    (delivery,) = await deliveries(fast, account, endpoint_id)
    _, (attempt,) = await webhooks.get_delivery(
        fast, Tenant(account.company.id, "live"), delivery.id
    )
    assert attempt.response_body == b"y" * 4096


async def test_api_exposes_history_retry_replay_and_test_send(
    fast: Platform, account: Account
) -> None:
    async def flaky(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=500 if len(hook.received) <= 2 else 200, text="seen")

    fast = with_settings(fast, retry_schedule=(0.01,))
    async with receiver(flaky) as hook, client_for(fast) as http:
        created = await http.post(
            "/customer/open/v1/webhooks",
            json={"url": hook.url, "events": ["customer.created"]},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["data"]
        assert endpoint["secret"].startswith("whsec_")
        async with running(fast):
            await create_customer(fast, account)

            async def failed() -> bool:
                found = await deliveries(fast, account, endpoint["id"])
                return bool(found) and found[0].status == "failed"

            await until(failed)
            listing = await http.get(
                f"/customer/open/v1/webhooks/{endpoint['id']}/deliveries?status=failed",
                headers=account.headers,
            )
            (failed_delivery,) = listing.json()["data"]
            retried = await http.post(
                f"/customer/open/v1/deliveries/{failed_delivery['id']}/retry",
                headers=account.headers,
            )
            assert retried.json()["data"]["status"] == "pending"
            await hook.wait_for(3)

            async def succeeded() -> bool:
                found = await deliveries(fast, account, endpoint["id"])
                return found[0].status == "succeeded"

            await until(succeeded)
            detail = await http.get(
                f"/customer/open/v1/deliveries/{failed_delivery['id']}", headers=account.headers
            )
            attempts = detail.json()["data"]["attempts"]
            assert [a["statusCode"] for a in attempts] == [500, 500, 200]
            assert attempts[-1]["responseBody"] == "seen"

            replay = await http.post(
                f"/customer/open/v1/events/{failed_delivery['eventId']}/replay",
                headers=account.headers,
            )
            assert replay.status_code == 200, replay.text
            await hook.wait_for(4)
            assert hook.received[3].body == hook.received[0].body
            assert (
                hook.received[3].headers["X-BitByBit-Webhook-Id"]
                == hook.received[0].headers["X-BitByBit-Webhook-Id"]
            )
        test_send = await http.post(
            f"/customer/open/v1/webhooks/{endpoint['id']}/test",
            json={"eventType": "order.created"},
            headers=account.headers,
        )
        result = test_send.json()["data"]
        assert result["succeeded"] is True
        assert result["eventId"].startswith("evt_test_")
        assert hook.received[-1].headers["X-BitByBit-Webhook-Event"] == "order.created"


async def test_rotation_signs_with_old_then_new_and_both_when_asked(
    fast: Platform, account: Account
) -> None:
    tenant = Tenant(account.company.id, "live")
    async with receiver() as hook:
        endpoint_id, old = await endpoint_for(fast, account, hook.url, multiSignature=True)
        _, new = await webhooks.rotate_secret(fast, tenant, endpoint_id, grace_hours=1)
        async with running(fast):
            await create_customer(fast, account)
            (during,) = await hook.wait_for(1)
        stamp = int(during.headers["X-BitByBit-Webhook-Timestamp"])
        assert during.headers["X-BitByBit-Webhook-Signature"] == sign(
            during.body, [new, old], stamp
        )
        _, newest = await webhooks.rotate_secret(fast, tenant, endpoint_id, grace_hours=0)
        async with running(fast):
            await create_customer(fast, account, email="after@example.com")
            _, after = await hook.wait_for(2)
        stamp = int(after.headers["X-BitByBit-Webhook-Timestamp"])
        assert after.headers["X-BitByBit-Webhook-Signature"] == sign(after.body, newest, stamp)


async def test_reactivation_recovers_held_deliveries(fast: Platform, account: Account) -> None:
    answers = iter([410])

    async def gone_then_ok(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=next(answers, 200))

    tenant = Tenant(account.company.id, "live")
    async with receiver(gone_then_ok) as hook:
        endpoint_id, _ = await endpoint_for(fast, account, hook.url)
        async with running(fast):
            await create_customer(fast, account)

            async def suspended() -> bool:
                return (
                    await webhooks.get_endpoint(fast, tenant, endpoint_id)
                ).status == "suspended"

            await until(suspended)
            await create_customer(fast, account, email="held@example.com")
            endpoint, recovered = await webhooks.reactivate(
                fast, tenant, endpoint_id, "2000-01-01T00:00:00.000Z"
            )
            assert endpoint.status == "active"
            assert recovered == 2
            await hook.wait_for(3)

            async def all_done() -> bool:
                found = await deliveries(fast, account, endpoint_id)
                return all(d.status == "succeeded" for d in found)

            await until(all_done)


async def test_dead_endpoint_does_not_delay_a_healthy_one(fast: Platform, account: Account) -> None:
    hang = asyncio.Event()

    async def never(request: web.Request, hook: Receiver) -> web.StreamResponse:
        await hang.wait()
        return web.Response(status=200)

    fast = with_settings(fast, delivery_timeout=30.0)
    async with receiver(never) as dead, receiver() as healthy:
        await endpoint_for(fast, account, dead.url)
        await endpoint_for(fast, account, healthy.url)
        async with running(fast, per_endpoint=4, concurrency=16):
            for index in range(20):
                await create_customer(fast, account, email=f"n{index}@example.com")
            await healthy.wait_for(20, within=10)
            assert len(dead.received) == 4  # its cap, not more
            hang.set()


async def test_refused_target_fails_without_a_connection(
    platform: Platform, account: Account
) -> None:
    strict = with_settings(platform, clock=system_clock, retry_schedule=())
    with pytest.raises(Exception, match="refused"):
        await endpoint_for(strict, account, "https://127.0.0.1/hook")


async def test_health_of_the_worker_is_in_metrics(fast: Platform, account: Account) -> None:
    async with receiver() as hook:
        await endpoint_for(fast, account, hook.url)
        async with running(fast):
            await create_customer(fast, account)
            await hook.wait_for(1)
    async with client_for(fast) as http:
        text = (await http.get("/metrics")).text
    assert 'bitbybit_delivery_attempts_total{outcome="succeeded"}' in text
    assert "bitbybit_delivery_attempt_seconds_bucket" in text
    assert "bitbybit_delivery_queue_pending" in text


async def test_webhook_endpoints_are_listed_in_pages(fast: Platform, account: Account) -> None:
    """``GET /webhooks`` takes ``page`` and ``limit`` like every list (oldest first)."""
    async with client_for(fast) as http:
        made = []
        for index in range(3):
            created = await http.post(
                "/customer/open/v1/webhooks",
                json={"url": f"http://127.0.0.1:9/hook{index}", "events": ["customer.created"]},
                headers=account.headers,
            )
            assert created.status_code == 201, created.text
            made.append(created.json()["data"]["id"])
        first = await http.get(
            "/customer/open/v1/webhooks", params={"limit": 2}, headers=account.headers
        )
        second = await http.get(
            "/customer/open/v1/webhooks", params={"limit": 2, "page": 2}, headers=account.headers
        )
        whole = await http.get("/customer/open/v1/webhooks", headers=account.headers)
        for bad in ({"limit": 0}, {"limit": 101}, {"page": 0}):
            refused = await http.get(
                "/customer/open/v1/webhooks", params=bad, headers=account.headers
            )
            assert refused.status_code == 400, (bad, refused.text)
    assert [e["id"] for e in first.json()["data"]] == made[:2]
    assert first.json()["meta"] == {"page": 1, "limit": 2, "total": 3, "hasNextPage": True}
    assert [e["id"] for e in second.json()["data"]] == made[2:]
    assert second.json()["meta"] == {"page": 2, "limit": 2, "total": 3, "hasNextPage": False}
    assert [e["id"] for e in whole.json()["data"]] == made
    assert whole.json()["meta"] == {"page": 1, "limit": 20, "total": 3, "hasNextPage": False}
