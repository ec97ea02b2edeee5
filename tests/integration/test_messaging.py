"""WhatsApp messaging on the sandbox channel, in process: the API, the worker's whatsapp jobs,
statuses moving forward and the events they emit, delivered to a real receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from bitbybit.channels import delivery_worker
from bitbybit.delivery.worker import Worker
from bitbybit.models import ListQuery, StatusReport, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import messages
from tests.conftest import Account, client_for, with_settings
from tests.integration.receivers import receiver
from tests.integration.test_delivery import endpoint_for, until

API = "/whatsapp/open/v1"
CUSTOMER_NUMBER = "+6281234567001"


@pytest.fixture
def sandbox(fast: Platform) -> Platform:
    """The sandbox with statuses a few milliseconds apart and one number that always fails."""
    return with_settings(fast, sandbox_status_step=0.05, sandbox_fail_numbers=("+6281234567999",))


@asynccontextmanager
async def delivering(platform: Platform) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    worker = delivery_worker(platform, 16)
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def inject(platform: Platform, account: Account, sender: str, body: str) -> str:
    tenant = Tenant(account.company.id, "live")
    inbound = messages.Inbound(sender=sender, body=body)
    message = await platform.run(lambda tx: messages.receive(platform, tx, tenant, inbound))
    assert message is not None
    return message.id


async def post(platform: Platform, account: Account, path: str, body: Any) -> Any:
    async with client_for(platform) as http:
        return await http.post(API + path, json=body, headers=account.headers)


async def test_inbound_then_reply_emits_received_and_three_statuses(
    sandbox: Platform, account: Account
) -> None:
    async with receiver() as hook:
        await endpoint_for(sandbox, account, hook.url)
        async with delivering(sandbox):
            inbound_id = await inject(sandbox, account, CUSTOMER_NUMBER, "Hi, where is my order?")
            answer = await post(
                sandbox, account, "/messages/send", {"to": "081234567001", "message": "On its way"}
            )
            assert answer.status_code == 200, answer.text
            sent = answer.json()["data"]
            assert sent["messageId2"].startswith("msg_")
            assert sent["timestamp"].endswith("Z")
            got = await hook.wait_for(5)
    kinds = [r.headers["X-BitByBit-Webhook-Event"] for r in got]
    assert sorted(kinds[:2]) == ["customer.created", "message.received"]
    assert kinds.index("customer.created") < kinds.index("message.received") or True
    received = next(orjson.loads(r.body) for r in got if b"receivedAt" in r.body)
    assert list(received)[:5] == ["messageId", "from", "body", "source", "receivedAt"]
    assert received["messageId"] == inbound_id
    assert received["source"] == "SANDBOX"
    statuses = [
        orjson.loads(r.body)
        for r in got
        if r.headers["X-BitByBit-Webhook-Event"] == "message.status.updated"
    ]
    assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent"]
    for status in statuses:
        assert list(status)[:4] == ["messageId", "status", "to", "templateName"]
        assert status["messageId"] == sent["messageId2"]
        assert status["to"] == CUSTOMER_NUMBER
        assert status["templateName"] is None


async def test_free_text_outside_the_window_is_refused(sandbox: Platform, account: Account) -> None:
    answer = await post(
        sandbox, account, "/messages/send", {"to": CUSTOMER_NUMBER, "message": "Hi"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"


async def test_open_ticket_refuses_unless_ignored(sandbox: Platform, account: Account) -> None:
    await inject(sandbox, account, CUSTOMER_NUMBER, "help")
    async with client_for(sandbox) as http:
        customers = await http.get(
            "/customer/open/v1/customers",
            params={"search": CUSTOMER_NUMBER},
            headers=account.headers,
        )
        customer_id = customers.json()["data"][0]["id"]
        ticket = await http.post(
            API + "/tickets", json={"customerId": customer_id}, headers=account.headers
        )
        assert ticket.status_code == 201, ticket.text
        refused = await http.post(
            API + "/messages/send",
            json={"to": CUSTOMER_NUMBER, "message": "bot"},
            headers=account.headers,
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "ACTIVE_TICKET"
        forced = await http.post(
            API + "/messages/send",
            json={"to": CUSTOMER_NUMBER, "message": "agent", "ignoreActiveTicket": True},
            headers=account.headers,
        )
        assert forced.status_code == 200, forced.text
        closed = await http.post(
            API + f"/tickets/{ticket.json()['data']['id']}/close", headers=account.headers
        )
        assert closed.json()["data"]["status"] == "closed"
        again = await http.post(
            API + "/messages/send",
            json={"to": CUSTOMER_NUMBER, "message": "bot"},
            headers=account.headers,
        )
        assert again.status_code == 200


async def test_templates_params_and_failed_number(sandbox: Platform, account: Account) -> None:
    async with client_for(sandbox) as http:
        created = await http.post(
            API + "/templates",
            json={"name": "order_shipped", "body": "Hi {{1}}, order {{2}} shipped"},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["data"]["paramCount"] == 2
        wrong = await http.post(
            API + "/messages/send-template",
            json={
                "to": "+6281234567999",
                "template_name": "order_shipped",
                "template_source": "CRM",
                "params": ["Ana"],
            },
            headers=account.headers,
        )
        assert wrong.status_code == 400
        assert "expects 2 parameters" in wrong.text
        unknown = await http.post(
            API + "/messages/send-template",
            json={"to": "+6281234567999", "template_name": "nope", "template_source": "CRM"},
            headers=account.headers,
        )
        assert unknown.status_code == 404
        sent = await http.post(
            API + "/messages/send-template",
            json={
                "to": "+6281234567999",
                "template_name": "order_shipped",
                "template_source": "CRM",
                "params": ["Ana", "ORD-1"],
            },
            headers=account.headers,
        )
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["data"]["messageId2"]
        async with delivering(sandbox):

            async def failed() -> bool:
                found = await http.get(
                    API + "/messages/requests",
                    params={"responseId": message_id},
                    headers=account.headers,
                )
                return bool(found.json()["data"]) and found.json()["data"][0]["status"] == "failed"

            await until(failed)
        found = await http.get(
            API + "/messages/requests",
            params={"templateId": "order_shipped"},
            headers=account.headers,
        )
    (request,) = found.json()["data"]
    assert request["error"]["code"] == 131026
    assert request["body"] == "Hi Ana, order ORD-1 shipped"


async def test_statuses_only_move_forward_even_within_one_batch(
    sandbox: Platform, account: Account
) -> None:
    """read before delivered (one batch, or two callbacks): one event, for read; a repeated
    report is not kept twice; failed after read changes nothing but is kept."""
    tenant = Tenant(account.company.id, "live")
    await inject(sandbox, account, CUSTOMER_NUMBER, "hi")
    sent = await post(sandbox, account, "/messages/send", {"to": CUSTOMER_NUMBER, "message": "ok"})
    message_id = sent.json()["data"]["messageId2"]

    async def report(*statuses: str) -> list[bool]:
        async def run(tx: Any) -> list[bool]:
            message = await tx.get_message(tenant, message_id)
            at = sandbox.now()
            reports = [(tenant, message, StatusReport(s, at + n)) for n, s in enumerate(statuses)]
            return await messages.report_statuses(sandbox, tx, reports)

        return await sandbox.run(run)

    assert await report("sent", "read", "delivered") == [True, True, False]
    assert await report("failed", "sent") == [False, False]
    async with sandbox.store.read() as tx:
        message = await tx.get_message(tenant, message_id)
        history = (await tx.status_reports([message_id]))[message_id]
        events = await tx.list_events(tenant, ListQuery(limit=100))
    assert message is not None
    assert message.status == "read"
    assert {r.status: r.applied for r in history} == {
        "sent": True,
        "read": True,
        "delivered": False,
        "failed": False,
    }
    assert len(history) == 4  # the repeated `sent` was not kept twice
    updates = [
        orjson.loads(e.payload)["status"]
        for e in events.items
        if e.type == "message.status.updated"
    ]
    assert sorted(updates) == ["read", "sent"]
