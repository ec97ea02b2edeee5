"""The ``whatsapp-cloud`` channel and Meta's callbacks, against the fake Graph API on loopback.

In process, on SQLite and PostgreSQL: sends go through the API and the delivery worker to the
fake (``tests/integration/fake_graph.py``), which checks them as Meta does and fails on demand;
Meta's callbacks are posted to ``/whatsapp/webhooks/meta`` as the raw bytes Meta sends, signed
with ``X-Hub-Signature-256``. Every mapping of issue 11 is asserted: the requests Graph receives,
Graph's permanent and transient errors, the number's pace and the pair interval, the handshake,
refused callbacks that store nothing, batches with a broken item, repeated and concurrent
callbacks, statuses out of order, concurrent or ahead of the send, template statuses routed by
the WABA id, inbound media and the service window. The last test does it with real processes:
``bitbybit serve`` on the channel.

Timing assertions are lower bounds only (a pace, an interval, a back-off); waits poll with
generous timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from bitbybit.api.app import create_app
from bitbybit.channels.meta import RETRY_AFTER_S
from bitbybit.clock import iso
from bitbybit.config import Settings
from bitbybit.models import ListQuery, Tenant, WhatsAppNumber
from bitbybit.runtime import Platform
from bitbybit.services import numbers
from bitbybit.webhooks import verify
from tests.conftest import (
    CUSTOMERS,
    DIALECTS,
    Account,
    FakeClock,
    make_account,
    with_settings,
)
from tests.integration.fake_graph import (
    TITLES,
    FakeGraph,
    batch,
    callback,
    contact,
    encode,
    fake_graph,
    location_message,
    media_message,
    sign,
    status,
    template_status,
    text_message,
)
from tests.integration.receivers import Received, Receiver, receiver
from tests.integration.servers import serve
from tests.integration.test_crash import shared_database
from tests.integration.test_delivery import endpoint_for
from tests.integration.test_messaging import delivering

API = "/whatsapp/open/v1"
META = "/whatsapp/webhooks/meta"
VERSION = "v21.0"
PHONE = "106540352242922"
"""The company's Cloud API number (Meta's phone-number id)."""
COEX_PHONE = "106540352242933"
"""Its coexistence number (the WhatsApp Business app's number on the Cloud API)."""
TOKEN = "EAAG-cloud-access-token"
COEX_TOKEN = "EAAG-coex-access-token"
APP_SECRET = "meta-app-secret-of-acme"
VERIFY_TOKEN = "verify-token-of-acme"
# Customers, as WhatsApp ids (the digits of their E.164 numbers; the company is in Indonesia).
ALICE = "6281234567001"
BOB = "6281234567002"
CAROL = "6281234567003"
DAVE = "6281234567004"
HEADER_IMAGE = "https://cdn.example.com/shipped.jpg"
PHOTO = "https://cdn.example.com/parcel.jpg"
WITHIN = 60.0
"""Seconds a test waits for something to happen (generous: the machine is shared)."""


def wamid() -> str:
    """A fresh WhatsApp message id, as Meta spells them."""
    return f"wamid.HBgN{secrets.token_hex(12).upper()}=="


def now_s() -> int:
    return int(time.time())


# -- fixtures and helpers -------------------------------------------------------------------------

_apps: dict[int, tuple[Platform, Any]] = {}
"""One app per platform for the test's requests (``client_for`` builds an app per call, and a
fresh FastAPI app builds its routes' state on its first request: most of a second each)."""


@pytest.fixture(autouse=True)
def _forget_apps() -> Iterator[None]:
    yield
    _apps.clear()


def client(platform: Platform) -> httpx.AsyncClient:
    """An API client on loopback (as ``client_for``), on this test's app for ``platform``."""
    made = _apps.get(id(platform))
    if made is None or made[0] is not platform:
        made = _apps[id(platform)] = (platform, create_app(platform=platform))
    transport = httpx.ASGITransport(
        app=made[1], raise_app_exceptions=False, client=("127.0.0.1", 50000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with fake_graph({PHONE: TOKEN, COEX_PHONE: COEX_TOKEN}) as fake:
        yield fake


@pytest.fixture
def cloud(fast: Platform, graph: FakeGraph) -> Platform:
    """The ``whatsapp-cloud`` channel on the fake; no pair interval unless a test sets one."""
    return with_settings(
        fast, channel="whatsapp-cloud", graph_url=graph.url, whatsapp_pair_interval=0.0
    )


async def connect(
    platform: Platform,
    account: Account,
    phone_number_id: str = PHONE,
    token: str = TOKEN,
    source: str = "whatsapp cloud api",
    verify_token: str = VERIFY_TOKEN,
) -> WhatsAppNumber:
    connection = numbers.Connection(
        account.company.id,
        phone_number_id,
        token,
        APP_SECRET,
        verify_token,
        waba_id="WABA1",
        source=source,
    )
    return await platform.run(lambda tx: numbers.connect(platform, tx, connection))


@pytest.fixture
async def number(cloud: Platform, account: Account) -> WhatsAppNumber:
    return await connect(cloud, account)


async def meta(
    platform: Platform,
    document: Mapping[str, Any] | bytes,
    *,
    secret: str = APP_SECRET,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST a callback as Meta does: ``encode``'s bytes, signed with ``secret`` unless
    ``headers`` are given (then exactly those)."""
    raw = document if isinstance(document, bytes) else encode(document)
    if headers is None:
        headers = {"X-Hub-Signature-256": sign(raw, secret)}
    async with client(platform) as http:
        return await http.post(
            META,
            content=raw,
            headers={"Content-Type": "application/json", **headers},
        )


async def inbound(platform: Platform, sender: str, body: str, at_s: int | None = None) -> str:
    """A customer's text message through a signed callback; its WhatsApp id."""
    message_id = wamid()
    document = callback(PHONE, messages=[text_message(message_id, sender, body, at_s or now_s())])
    answer = await meta(platform, document)
    assert answer.status_code == 200, answer.text
    return message_id


async def post(platform: Platform, account: Account, path: str, body: Any) -> httpx.Response:
    async with client(platform) as http:
        return await http.post(API + path, json=body, headers=account.headers)


async def get(platform: Platform, account: Account, path: str, **params: str) -> dict[str, Any]:
    async with client(platform) as http:
        answer = await http.get(API + path, params=params, headers=account.headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def create_template(platform: Platform, account: Account, **body: Any) -> None:
    created = await post(platform, account, "/templates", body)
    assert created.status_code == 201, created.text


def accepted(answer: httpx.Response) -> str:
    """The ``messageId2`` of a send the API accepted."""
    assert answer.status_code == 200, answer.text
    message_id: str = answer.json()["data"]["messageId2"]
    return message_id


async def send_template(platform: Platform, account: Account, to: str) -> str:
    """``order_update`` (see ``order_update``) to ``to``; the message id."""
    body = {
        "to": "+" + to,
        "template_name": "order_update",
        "template_source": "CRM",
        "params": ["ORD-1"],
    }
    return accepted(await post(platform, account, "/messages/send-template", body))


@pytest.fixture
async def order_update(cloud: Platform, account: Account) -> None:
    await create_template(cloud, account, name="order_update", body="Your order {{1}} shipped")


async def message(platform: Platform, account: Account, message_id: str) -> dict[str, Any]:
    """``GET /messages/{id}``: the message with its status history."""
    found: dict[str, Any] = (await get(platform, account, f"/messages/{message_id}"))["data"]
    return found


async def until_status(
    platform: Platform, account: Account, message_id: str, wanted: str
) -> dict[str, Any]:
    """Polls until the message is ``wanted``; the message then, as the API shows it. (The store
    is polled, not the API, whose rate limit a long wait would reach.)"""
    tenant = Tenant(account.company.id, "live")
    seen: list[str | None] = [None]

    async def reached() -> bool:
        async with platform.store.read() as tx:
            found = await tx.get_message(tenant, message_id)
        seen[0] = found.status if found is not None else None
        return seen[0] == wanted

    await until(reached, WITHIN, lambda: f"{message_id} to become {wanted} (it is {seen[0]})")
    return await message(platform, account, message_id)


async def until(
    check: Callable[[], Awaitable[bool]], within: float, what: Callable[[], str]
) -> None:
    """Polls ``check`` until it holds; after ``within`` seconds fails saying ``what()``."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within:.0f} s for {what()}")
        await asyncio.sleep(0.02)


async def events(platform: Platform, account: Account) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the company's live mode, oldest first, as (type, payload)."""
    async with platform.store.read() as tx:
        page = await tx.list_events(Tenant(account.company.id, "live"), ListQuery(limit=1000))
    return [(event.type, orjson.loads(event.payload)) for event in reversed(page.items)]


async def statuses_emitted(platform: Platform, account: Account, message_id: str) -> list[str]:
    """The statuses ``message.status.updated`` announced for one message, in order."""
    return [
        payload["status"]
        for kind, payload in await events(platform, account)
        if kind == "message.status.updated" and payload["messageId"] == message_id
    ]


def history(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A message's ``statuses`` by status (a status is kept once)."""
    by_status = {entry["status"]: entry for entry in found["statuses"]}
    assert len(by_status) == len(found["statuses"]), found["statuses"]
    return by_status


def kind_of(delivery: Received) -> str:
    return delivery.headers["X-BitByBit-Webhook-Event"]


async def distinct(hook: Receiver, count: int) -> list[Received]:
    """Until ``count`` different events arrived; each once (delivery is at least once: an
    attempt that timed out is sent again)."""
    seen: dict[str, Received] = {}

    async def arrived() -> bool:
        for delivery in hook.received:
            seen.setdefault(delivery.headers["X-BitByBit-Webhook-Id"], delivery)
        return len(seen) >= count

    await until(arrived, WITHIN, lambda: f"{count} events ({len(seen)} arrived)")
    return list(seen.values())


# -- outbound: what Graph receives -----------------------------------------------------------------


async def test_text_image_and_templates_reach_graph_as_meta_expects(
    cloud: Platform, graph: FakeGraph, account: Account, number: WhatsAppNumber
) -> None:
    await create_template(
        cloud,
        account,
        name="order_shipped",
        body="Hi {{1}}, order {{2}} shipped",
        headerMediaUrl=HEADER_IMAGE,
    )
    await create_template(
        cloud, account, name="login_code", source="AUTH", body="{{1}} is your verification code."
    )
    async with receiver() as hook:
        await endpoint_for(cloud, account, hook.url)
        async with delivering(cloud):
            await inbound(cloud, ALICE, "Hi, where is my parcel?")  # opens the service window
            ids = {
                "text": accepted(
                    await post(
                        cloud,
                        account,
                        "/messages/send",
                        {"to": "081234567001", "message": "On its way: https://t.example/1"},
                    )
                ),
                "image": accepted(
                    await post(
                        cloud,
                        account,
                        "/messages/send",
                        {"to": "+" + ALICE, "message": "Your parcel", "imageUrl": PHOTO},
                    )
                ),
                "order_shipped": accepted(
                    await post(
                        cloud,
                        account,
                        "/messages/send-template",
                        {
                            "to": "+" + ALICE,
                            "template_name": "order_shipped",
                            "template_source": "CRM",
                            "params": ["Ana", "ORD-1"],
                        },
                    )
                ),
                "login_code": accepted(
                    await post(
                        cloud,
                        account,
                        "/messages/send-template",
                        {
                            "to": "+" + ALICE,
                            "template_name": "login_code",
                            "template_source": "AUTH",
                            "params": ["482913"],
                        },
                    )
                ),
            }
            await graph.wait_for(4, WITHIN)
            found = {name: await until_status(cloud, account, ids[name], "sent") for name in ids}
            got = await distinct(hook, 6)  # customer, inbound, four sends

    envelope = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": ALICE}
    expected = {
        "text": {
            **envelope,
            "type": "text",
            "text": {"preview_url": False, "body": "On its way: https://t.example/1"},
        },
        "image": {**envelope, "type": "image", "image": {"link": PHOTO, "caption": "Your parcel"}},
        "order_shipped": {
            **envelope,
            "type": "template",
            "template": {
                "name": "order_shipped",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [{"type": "image", "image": {"link": HEADER_IMAGE}}],
                    },
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ana"},
                            {"type": "text", "text": "ORD-1"},
                        ],
                    },
                ],
            },
        },
        "login_code": {
            **envelope,
            "type": "template",
            "template": {
                "name": "login_code",
                "language": {"code": "en"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "482913"}]},
                    {  # the copy-code button of an authentication template carries the code
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": "482913"}],
                    },
                ],
            },
        },
    }
    assert len(graph.requests) == 4, [r.summary() for r in graph.requests]
    by_name = {
        (r.body["template"]["name"] if r.type == "template" else r.type): r for r in graph.requests
    }
    assert sorted(by_name) == sorted(expected)
    for name, request in by_name.items():
        assert request.method == "POST"
        assert request.path == f"/{VERSION}/{PHONE}/messages"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"].startswith("application/json")
        assert request.body == expected[name], name
        assert request.ok, request.summary()
        assert found[name]["whatsappMessageId"] == request.wamid
        assert found[name]["source"] == "WHATSAPP_META"
        assert found[name]["to"] == "+" + ALICE
        assert [(s["status"], s["applied"]) for s in found[name]["statuses"]] == [("sent", True)]
    assert sorted(kind_of(d) for d in got) == [
        "customer.created",
        "message.received",
        *["message.status.updated"] * 4,
    ]
    announced = {
        payload["messageId"]: payload
        for payload in (orjson.loads(d.body) for d in got if kind_of(d) == "message.status.updated")
    }
    assert set(announced) == set(ids.values())
    for name, message_id in ids.items():
        payload = announced[message_id]
        assert payload["status"] == "sent"
        assert payload["to"] == "+" + ALICE
        assert payload["templateName"] == (
            name if name in ("order_shipped", "login_code") else None
        )
        assert "error" not in payload


@pytest.mark.parametrize("code", [131026, 131047, 132000, 100])
async def test_a_permanent_graph_error_fails_the_message_after_one_request(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
    code: int,
) -> None:
    graph.fail(ALICE, code)
    title = TITLES[code]
    async with receiver() as hook:
        await endpoint_for(cloud, account, hook.url)
        async with delivering(cloud):
            message_id = await send_template(cloud, account, ALICE)
            failed = await until_status(cloud, account, message_id, "failed")
            (announced,) = await distinct(hook, 1)
    assert len(graph.requests) == 1, [r.summary() for r in graph.requests]
    assert graph.requests[0].error_code == code
    assert failed["error"]["code"] == code
    assert title in failed["error"]["message"]
    assert failed["whatsappMessageId"] is None
    (request,) = (await get(cloud, account, "/messages/requests", responseId=message_id))["data"]
    assert request["status"] == "failed"
    assert request["error"]["code"] == code
    assert title in request["error"]["message"]
    assert kind_of(announced) == "message.status.updated"
    payload = orjson.loads(announced.body)
    assert payload["messageId"] == message_id
    assert payload["status"] == "failed"
    assert payload["templateName"] == "order_update"
    assert payload["error"]["code"] == code
    assert title in payload["error"]["message"]


FAULTS: dict[str, tuple[Callable[[FakeGraph], None], int, int | None]] = {
    # name: (how to program the fake, requests that fail, Meta's code when it has a back-off)
    "throttled 130429": (lambda g: g.throttle(2), 2, 130429),
    "5xx with Meta's error": (lambda g: g.server_error(2), 2, None),
    "5xx without JSON": (lambda g: g.server_error(2, status=503, json_body=False), 2, None),
    "hung up": (lambda g: g.hang_up(2), 2, None),
    "pair limit 131056": (lambda g: g.fail(ALICE, 131056, times=1), 1, 131056),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_throttling_5xx_and_hang_ups_are_retried_until_sent(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
    fault: str,
) -> None:
    program, failing, code = FAULTS[fault]
    program(graph)
    async with delivering(cloud):
        message_id = await send_template(cloud, account, ALICE)
        sent = await until_status(cloud, account, message_id, "sent")
    requests = graph.requests
    assert len(requests) == failing + 1, [r.summary() for r in requests]
    assert not any(r.ok for r in requests[:failing])
    assert requests[-1].ok
    if fault == "hung up":
        assert all(r.hung_up for r in requests[:failing])
    if code is not None:  # Meta's back-off is honoured: the retry waits at least that long
        assert requests[0].error_code == code
        gap = requests[1].at - (requests[0].answered_at or requests[0].at)
        assert gap >= RETRY_AFTER_S[code] - 0.01, gap
    assert sent["whatsappMessageId"] == requests[-1].wamid
    assert sent["error"] is None
    assert [(s["status"], s["applied"]) for s in sent["statuses"]] == [("sent", True)]
    assert await statuses_emitted(cloud, account, message_id) == ["sent"]


async def test_the_pace_spreads_one_numbers_sends(
    cloud: Platform, graph: FakeGraph, account: Account, number: WhatsAppNumber, order_update: None
) -> None:
    """``BITBYBIT_WHATSAPP_PACE``: every send is queued before the worker starts, so the
    worker's pace alone decides when each reaches Graph."""
    pace, count = 20.0, 12
    paced = with_settings(cloud, whatsapp_pace=pace)
    recipients = [f"62812345671{index:02d}" for index in range(count)]
    for to in recipients:
        await send_template(paced, account, to)
    async with delivering(paced):
        await graph.wait_for(count, WITHIN)
    assert sorted(r.to for r in graph.sent) == sorted(recipients)
    arrivals = sorted(r.at for r in graph.sent)
    # The first request also reads the number and opens the connection, which only delays it;
    # from the second on, each starts one turn (1/pace) after the one before. Half a turn is
    # left for the time each takes to arrive, which varies by a few milliseconds (unpaced, all
    # would arrive within a few milliseconds).
    span = arrivals[-1] - arrivals[1]
    assert span >= (count - 2) / pace - 0.5 / pace, arrivals


async def test_the_pair_interval_spaces_one_recipient_and_holds_up_no_other(
    cloud: Platform, graph: FakeGraph, account: Account, number: WhatsAppNumber, order_update: None
) -> None:
    interval = 1.0
    spaced = with_settings(cloud, whatsapp_pair_interval=interval)
    first = await send_template(spaced, account, ALICE)
    second = await send_template(spaced, account, ALICE)
    other = await send_template(spaced, account, BOB)
    async with delivering(spaced):
        await graph.wait_for(3, WITHIN)
        for message_id in (first, second, other):
            await until_status(spaced, account, message_id, "sent")
    assert len(graph.requests) == 3, [r.summary() for r in graph.requests]  # no 131056, no retry
    to_alice = [r for r in graph.requests if r.to == ALICE]
    (to_bob,) = [r for r in graph.requests if r.to == BOB]
    assert len(to_alice) == 2
    # A few milliseconds are left for the first request's connection set-up (the turn is taken
    # before the request is made).
    assert to_alice[1].at - to_alice[0].at >= interval - 0.05
    assert to_bob.at < to_alice[1].at  # Bob was not made to wait for Alice's turn
    held = await message(spaced, account, second)
    assert [(s["status"], s["applied"]) for s in held["statuses"]] == [("sent", True)]


# -- inbound: the handshake and refused callbacks -------------------------------------------------


async def test_the_subscription_handshake(cloud: Platform, number: WhatsAppNumber) -> None:
    async with client(cloud) as http:
        ok = await http.get(
            META,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        assert ok.status_code == 200
        assert ok.text == "1158201444"
        assert ok.headers["content-type"].startswith("text/plain")
        for params in (
            {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
            {"hub.mode": "subscribe", "hub.challenge": "1"},
            {},
        ):
            refused = await http.get(META, params=params)
            assert refused.status_code == 403, params
            assert "1158201444" not in refused.text


def _refused(case: str) -> tuple[bytes, dict[str, str], int]:
    """A callback Meta would never send with this signature: its bytes, headers, status."""
    document = callback(
        PHONE, messages=[text_message(wamid(), ALICE, "Halo 👋 lihat https://t.example/1", now_s())]
    )
    raw = encode(document)
    if case == "another app's secret":
        return raw, {"X-Hub-Signature-256": sign(raw, "some-other-app-secret")}, 401
    if case == "no signature":
        return raw, {}, 401
    if case == "only the SHA-1 signature":
        sha1 = hmac.new(APP_SECRET.encode(), raw, hashlib.sha1).hexdigest()
        return raw, {"X-Hub-Signature": f"sha1={sha1}"}, 401
    if case == "malformed signature":
        return raw, {"X-Hub-Signature-256": "sha256=not-hex"}, 401
    if case == "signature of re-serialised JSON":
        again = json.dumps(document).encode()
        assert again != raw  # Meta escapes "/" and non-ASCII; a re-dump does not
        return raw, {"X-Hub-Signature-256": sign(again, APP_SECRET)}, 401
    if case == "signature of other bytes":
        return raw, {"X-Hub-Signature-256": sign(raw + b" ", APP_SECRET)}, 401
    if case == "malformed JSON":
        broken = raw[:-3]
        return broken, {"X-Hub-Signature-256": sign(broken, APP_SECRET)}, 400
    if case == "unknown phone-number id":
        (item,) = document["entry"][0]["changes"][0]["value"]["messages"]
        other = encode(callback("999000111222333", messages=[item]))
        return other, {"X-Hub-Signature-256": sign(other, APP_SECRET)}, 404
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "another app's secret",
        "no signature",
        "only the SHA-1 signature",
        "malformed signature",
        "signature of re-serialised JSON",
        "signature of other bytes",
        "malformed JSON",
        "unknown phone-number id",
    ],
)
async def test_a_refused_callback_stores_nothing(
    cloud: Platform, account: Account, number: WhatsAppNumber, case: str
) -> None:
    raw, headers, expected = _refused(case)
    answer = await meta(cloud, raw, headers=headers)
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert await events(cloud, account) == []
    conversation = await get(cloud, account, "/messages", phone="+" + ALICE)
    assert conversation["data"] == []
    async with client(cloud) as http:
        customers = await http.get(CUSTOMERS, headers=account.headers)
    assert customers.json()["data"] == []


# -- inbound: messages ----------------------------------------------------------------------------


async def test_a_signed_message_from_a_new_number_creates_the_customer_first(
    cloud: Platform, account: Account, number: WhatsAppNumber
) -> None:
    # "/" and non-ASCII: Meta's bytes carry "\/" and "\ud83d\udc4b"; the signature is over them.
    body = "Halo 👋, pesanan saya https://shop.example/o/1 belum sampai"
    sent_at = now_s() - 5
    message_id = wamid()
    document = callback(
        PHONE,
        messages=[text_message(message_id, ALICE, body, sent_at)],
        contacts=[contact(ALICE, "Ana Putri")],
    )
    assert b"\\/" in encode(document)
    answer = await meta(cloud, document)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 1, "statuses": 0}

    recorded = await events(cloud, account)
    assert [kind for kind, _ in recorded] == ["customer.created", "message.received"]
    (_, customer), (_, received) = recorded
    assert customer["phoneNumber"] == "+" + ALICE
    assert (customer["firstName"], customer["lastName"]) == ("Ana", "Putri")
    assert received["from"] == "+" + ALICE
    assert received["body"] == body
    assert received["source"] == "WHATSAPP_META"
    assert received["receivedAt"] == iso(sent_at * 1000)
    assert received["type"] == "text"
    assert received["mediaId"] is None
    assert received["customerId"] == customer["id"]
    stored = await message(cloud, account, received["messageId"])
    assert stored["whatsappMessageId"] == message_id
    assert stored["direction"] == "inbound"
    async with client(cloud) as http:
        found = await http.get(CUSTOMERS, params={"search": "+" + ALICE}, headers=account.headers)
    (listed,) = found.json()["data"]
    assert listed["source"] == "whatsapp"

    # The customer known, the next message emits message.received alone.
    await inbound(cloud, ALICE, "Halo lagi")
    assert [kind for kind, _ in await events(cloud, account)] == [
        "customer.created",
        "message.received",
        "message.received",
    ]


async def test_a_coexistence_numbers_messages_have_their_source(
    cloud: Platform, account: Account, number: WhatsAppNumber
) -> None:
    await connect(
        cloud, account, COEX_PHONE, COEX_TOKEN, "whatsapp coex", verify_token="coex-verify-token"
    )
    for phone_number_id, sender in ((COEX_PHONE, ALICE), (PHONE, BOB)):
        document = callback(
            phone_number_id, messages=[text_message(wamid(), sender, "hi", now_s())]
        )
        answer = await meta(cloud, document)
        assert answer.status_code == 200, answer.text
    sources = {
        payload["from"]: payload["source"]
        for kind, payload in await events(cloud, account)
        if kind == "message.received"
    }
    assert sources == {"+" + ALICE: "WHATSAPP_COEX", "+" + BOB: "WHATSAPP_META"}


async def test_a_batch_with_broken_items_stores_every_good_one(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
) -> None:
    async with delivering(cloud):
        to_alice = await send_template(cloud, account, ALICE)
        to_bob = await send_template(cloud, account, BOB)
        alice_wamid = (await until_status(cloud, account, to_alice, "sent"))["whatsappMessageId"]
        bob_wamid = (await until_status(cloud, account, to_bob, "sent"))["whatsappMessageId"]
    at = now_s()
    no_from = text_message(wamid(), ALICE, "lost?", at)
    del no_from["from"]
    first = callback(
        PHONE,
        messages=[
            text_message(wamid(), ALICE, "Thanks!", at),
            no_from,  # broken: nobody to store it for
            media_message(wamid(), BOB, "image", "MEDIA-1", "the dent", timestamp_s=at),
        ],
        statuses=[status(alice_wamid, "delivered", ALICE, at)],
    )
    second = callback(
        PHONE,
        messages=[
            text_message(wamid(), CAROL, "Is it in stock?", at),
            location_message(wamid(), DAVE, -6.2, 106.816666, at),
        ],
        statuses=[
            {"id": bob_wamid, "status": "deleted", "timestamp": str(at), "recipient_id": BOB},
            status(bob_wamid, "read", BOB, at),
        ],
        contacts=[contact(CAROL), contact(DAVE, "Dave")],  # Carol has no profile
    )
    # and an entry for a number this platform does not have: skipped, the rest stored
    stranger = callback("999000111222333", messages=[text_message(wamid(), ALICE, "?", at)])
    document = batch(first, second, stranger)
    assert len(document["entry"]) == 3
    answer = await meta(cloud, document)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 4, "statuses": 2}

    received = {
        payload["from"]: payload
        for kind, payload in await events(cloud, account)
        if kind == "message.received"
    }
    assert set(received) == {"+" + ALICE, "+" + BOB, "+" + CAROL, "+" + DAVE}
    assert received["+" + ALICE]["body"] == "Thanks!"
    assert (received["+" + BOB]["type"], received["+" + BOB]["mediaId"]) == ("image", "MEDIA-1")
    assert received["+" + CAROL]["body"] == "Is it in stock?"
    assert received["+" + DAVE]["type"] == "location"
    created = [p for kind, p in await events(cloud, account) if kind == "customer.created"]
    assert len(created) == 4
    for sender in (ALICE, BOB, CAROL, DAVE):
        conversation = await get(cloud, account, "/messages", phone="+" + sender)
        assert len([m for m in conversation["data"] if m["direction"] == "inbound"]) == 1
    assert (await message(cloud, account, to_alice))["status"] == "delivered"
    assert (await message(cloud, account, to_bob))["status"] == "read"
    assert await statuses_emitted(cloud, account, to_alice) == ["sent", "delivered"]
    assert await statuses_emitted(cloud, account, to_bob) == ["sent", "read"]


async def test_a_repeated_callback_stores_one_message_even_concurrently(
    cloud: Platform, account: Account, number: WhatsAppNumber
) -> None:
    again = callback(PHONE, messages=[text_message(wamid(), ALICE, "once", now_s())])
    first = await meta(cloud, again)
    second = await meta(cloud, again)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["received"] == 1
    assert second.json()["received"] == 0

    # Meta retrying while the first try is still being handled, from a number not yet known
    racing = callback(PHONE, messages=[text_message(wamid(), BOB, "race", now_s())])
    answers = await asyncio.gather(*(meta(cloud, racing) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert sum(a.json()["received"] for a in answers) == 1

    recorded = await events(cloud, account)
    received = [p["from"] for kind, p in recorded if kind == "message.received"]
    assert sorted(received) == ["+" + ALICE, "+" + BOB]
    created = [p["phoneNumber"] for kind, p in recorded if kind == "customer.created"]
    assert sorted(created) == ["+" + ALICE, "+" + BOB]
    for sender in (ALICE, BOB):
        conversation = await get(cloud, account, "/messages", phone="+" + sender)
        assert len(conversation["data"]) == 1


async def test_inbound_media_is_stored_with_type_media_id_and_a_readable_body(
    cloud: Platform, account: Account, number: WhatsAppNumber
) -> None:
    at = now_s()
    document = callback(
        PHONE,
        messages=[
            media_message(wamid(), ALICE, "image", "MEDIA-IMG", "the dent", timestamp_s=at),
            media_message(wamid(), ALICE, "audio", "MEDIA-AUDIO", timestamp_s=at + 1),
            location_message(wamid(), ALICE, -6.2, 106.816666, at + 2),
        ],
    )
    answer = await meta(cloud, document)
    assert answer.status_code == 200, answer.text
    assert answer.json()["received"] == 3
    received = {
        payload["type"]: payload
        for kind, payload in await events(cloud, account)
        if kind == "message.received"
    }
    expected = {
        "image": ("MEDIA-IMG", "the dent"),
        "audio": ("MEDIA-AUDIO", "[audio]"),
        "location": (None, "[location: -6.2, 106.816666]"),
    }
    assert {kind: (p["mediaId"], p["body"]) for kind, p in received.items()} == expected
    for kind, payload in received.items():
        stored = await message(cloud, account, payload["messageId"])
        assert (stored["type"], stored["mediaId"], stored["body"]) == (kind, *expected[kind])


async def test_template_status_callbacks_are_routed_by_the_waba_id(
    cloud: Platform, account: Account, number: WhatsAppNumber
) -> None:
    """They carry no ``metadata``: the WABA id in ``entry[].id`` routes (and verifies) them."""
    known = await meta(cloud, template_status("WABA1", "order_update", "APPROVED"))
    assert known.status_code == 200, known.text
    assert known.json() == {"received": 0, "statuses": 0}
    wrong = await meta(
        cloud, template_status("WABA1", "order_update", "REJECTED"), secret="another-app-secret"
    )
    assert wrong.status_code == 401
    unknown = await meta(cloud, template_status("WABA-NOT-OURS", "order_update", "APPROVED"))
    assert unknown.status_code == 404, unknown.text
    assert await events(cloud, account) == []


# -- inbound: statuses ----------------------------------------------------------------------------


async def test_statuses_out_of_order_only_move_forward(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
) -> None:
    async with delivering(cloud):
        to_alice = await send_template(cloud, account, ALICE)
        to_bob = await send_template(cloud, account, BOB)
        alice_wamid = (await until_status(cloud, account, to_alice, "sent"))["whatsappMessageId"]
        bob_wamid = (await until_status(cloud, account, to_bob, "sent"))["whatsappMessageId"]
    at = now_s()

    async def report(*items: dict[str, Any]) -> int:
        answer = await meta(cloud, callback(PHONE, statuses=list(items)))
        assert answer.status_code == 200, answer.text
        moved: int = answer.json()["statuses"]
        return moved

    # Alice: read before delivered, then a late sent, then read again
    assert await report(status(alice_wamid, "read", ALICE, at + 3)) == 1
    assert await report(status(alice_wamid, "delivered", ALICE, at + 2)) == 0
    assert await report(status(alice_wamid, "sent", ALICE, at + 1)) == 0
    assert await report(status(alice_wamid, "read", ALICE, at + 3)) == 0
    # Bob: delivered, then failed (a failure after delivery is kept, and moves nothing)
    assert await report(status(bob_wamid, "delivered", BOB, at + 2)) == 1
    failed = status(bob_wamid, "failed", BOB, at + 4, (131026, TITLES[131026]))
    assert await report(failed) == 0

    assert await statuses_emitted(cloud, account, to_alice) == ["sent", "read"]
    assert await statuses_emitted(cloud, account, to_bob) == ["sent", "delivered"]
    alice = await message(cloud, account, to_alice)
    assert alice["status"] == "read"
    assert {s: e["applied"] for s, e in history(alice).items()} == {
        "sent": True,
        "read": True,
        "delivered": False,
    }
    bob = await message(cloud, account, to_bob)
    assert bob["status"] == "delivered"
    assert bob["error"] is None
    bob_history = history(bob)
    assert {s: e["applied"] for s, e in bob_history.items()} == {
        "sent": True,
        "delivered": True,
        "failed": False,
    }
    assert bob_history["failed"]["error"] == {"code": 131026, "message": TITLES[131026]}
    assert bob_history["failed"]["timestamp"] == iso((at + 4) * 1000)


async def test_delivered_and_read_arriving_together_never_move_a_message_back(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
) -> None:
    """Meta posts ``delivered`` and ``read`` moments apart, and the callbacks are handled
    concurrently (several requests, several processes): whichever commits last, the message
    ends ``read`` and the statuses announced only ever move forward."""
    recipients = [f"62812345672{index:02d}" for index in range(30)]
    async with delivering(cloud):
        sent = {to: await send_template(cloud, account, to) for to in recipients}
        wamids = {
            to: (await until_status(cloud, account, message_id, "sent"))["whatsappMessageId"]
            for to, message_id in sent.items()
        }
    at = now_s()
    reports = [
        callback(PHONE, statuses=[status(wamids[to], kind, to, at + offset)])
        for to in recipients
        for offset, kind in ((1, "delivered"), (2, "read"))
    ]
    answers = await asyncio.gather(*(meta(cloud, document) for document in reports))
    assert [a.status_code for a in answers] == [200] * len(reports), [a.text for a in answers]
    rank = {"sent": 1, "delivered": 2, "read": 3}
    for to, message_id in sent.items():
        found = await message(cloud, account, message_id)
        announced = await statuses_emitted(cloud, account, message_id)
        assert found["status"] == "read", (to, found["statuses"], announced)
        assert announced[-1] == "read", announced
        assert [rank[s] for s in announced] == sorted({rank[s] for s in announced}), announced


async def test_a_status_through_another_companys_number_touches_nothing_here(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    other_account: Account,
    number: WhatsAppNumber,
    order_update: None,
) -> None:
    """Statuses are looked up within the company the callback's number routes to: another
    company's callback naming this company's WhatsApp id moves nothing."""
    other = numbers.Connection(
        other_account.company.id, COEX_PHONE, COEX_TOKEN, "globex-app-secret", "globex-verify"
    )
    await cloud.run(lambda tx: numbers.connect(cloud, tx, other))
    async with delivering(cloud):
        message_id = await send_template(cloud, account, ALICE)
        sent = await until_status(cloud, account, message_id, "sent")
    read = status(sent["whatsappMessageId"], "read", ALICE, now_s())
    answer = await meta(cloud, callback(COEX_PHONE, statuses=[read]), secret="globex-app-secret")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 0, "statuses": 0}
    assert (await message(cloud, account, message_id))["status"] == "sent"
    assert await statuses_emitted(cloud, account, message_id) == ["sent"]
    assert await events(cloud, other_account) == []


async def test_a_failed_status_callback_with_131047_fails_the_message(
    cloud: Platform,
    graph: FakeGraph,
    account: Account,
    number: WhatsAppNumber,
    order_update: None,
) -> None:
    async with receiver() as hook:
        await endpoint_for(cloud, account, hook.url)
        async with delivering(cloud):
            message_id = await send_template(cloud, account, ALICE)
            sent = await until_status(cloud, account, message_id, "sent")
            title = TITLES[131047]
            failure = status(sent["whatsappMessageId"], "failed", ALICE, now_s(), (131047, title))
            answer = await meta(cloud, callback(PHONE, statuses=[failure]))
            assert answer.status_code == 200, answer.text
            assert answer.json()["statuses"] == 1
            got = await distinct(hook, 2)
    failed = await message(cloud, account, message_id)
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": 131047, "message": title}
    (request,) = (await get(cloud, account, "/messages/requests", responseId=message_id))["data"]
    assert request["error"] == {"code": 131047, "message": title}
    payloads = [orjson.loads(d.body) for d in got]
    assert sorted(p["status"] for p in payloads) == ["failed", "sent"]
    (announced,) = [p for p in payloads if p["status"] == "failed"]
    assert announced["error"] == {"code": 131047, "message": title}
    assert announced["messageId"] == message_id


async def test_a_status_that_overtakes_the_send_is_applied_once_the_send_is_recorded(
    fast: Platform, account: Account
) -> None:
    """Meta's status callback can arrive before the worker has recorded Graph's answer. The
    fake holds its answer until that callback has been handled: the status is then for a
    WhatsApp id no message has yet, and must be applied when the send is recorded."""
    graph = FakeGraph({PHONE: TOKEN})
    callbacks: list[httpx.Response] = []

    async def answer_after_the_status(request: web.Request) -> web.StreamResponse:
        response = await FakeGraph._handle(graph, request)  # answered, not yet sent back
        delivered = status(graph.sent[-1].wamid or "", "delivered", ALICE, now_s())
        callbacks.append(await meta(cloud, callback(PHONE, statuses=[delivered])))
        return response

    graph._handle = answer_after_the_status  # type: ignore[method-assign]  # route before start
    await graph.start()
    try:
        cloud = with_settings(
            fast, channel="whatsapp-cloud", graph_url=graph.url, whatsapp_pair_interval=0.0
        )
        await connect(cloud, account)
        await create_template(cloud, account, name="order_update", body="Your order {{1}} shipped")
        async with delivering(cloud):
            message_id = await send_template(cloud, account, ALICE)
            found = await until_status(cloud, account, message_id, "delivered")
    finally:
        await graph.stop()
    (early,) = callbacks
    assert early.status_code == 200, early.text
    assert early.json() == {"received": 0, "statuses": 0}  # kept for later: no message had the id
    assert found["whatsappMessageId"] == graph.sent[0].wamid
    assert {s: e["applied"] for s, e in history(found).items()} == {
        "sent": True,
        "delivered": True,
    }
    assert await statuses_emitted(cloud, account, message_id) == ["sent", "delivered"]


async def test_statuses_racing_the_recording_of_their_sends_are_never_lost(
    fast: Platform, account: Account
) -> None:
    """Meta's ``delivered`` is posted the moment Graph answers each send, while the worker
    records the answer: whichever commits first, every message ends ``delivered``."""
    graph = FakeGraph({PHONE: TOKEN})
    tenant = Tenant(account.company.id, "live")
    racing: set[asyncio.Task[httpx.Response]] = set()

    async def report_at_once(request: web.Request) -> web.StreamResponse:
        response = await FakeGraph._handle(graph, request)
        answered = next(r for r in reversed(graph.requests) if r.status is not None)
        if answered.ok:
            delivered = status(answered.wamid or "", "delivered", answered.to or "", now_s())
            racing.add(asyncio.create_task(report(delivered)))
        return response

    async def report(delivered: dict[str, Any]) -> httpx.Response:
        # Meta's callbacks come a little before, during or after the worker's record of the
        # answer (it records every few milliseconds): spread them over that time.
        await asyncio.sleep(random.uniform(0, 0.03))
        return await meta(cloud, callback(PHONE, statuses=[delivered]))

    graph._handle = report_at_once  # type: ignore[method-assign]  # route before start
    await graph.start()
    try:
        cloud = with_settings(
            fast, channel="whatsapp-cloud", graph_url=graph.url, whatsapp_pair_interval=0.0
        )
        await connect(cloud, account)
        await create_template(cloud, account, name="order_update", body="Your order {{1}} shipped")
        recipients = [f"6281234573{index:03d}" for index in range(60)]
        sent = [await send_template(cloud, account, to) for to in recipients]
        async with delivering(cloud):
            await graph.wait_for(len(recipients), WITHIN)
            answers = await asyncio.gather(*racing)
            assert [a.status_code for a in answers] == [200] * len(recipients)
            stuck: list[str] = []

            async def all_delivered() -> bool:
                async with cloud.store.read() as tx:
                    found = await tx.list_messages(tenant, direction="out", limit=100)
                assert len(found.items) == len(sent)
                stuck[:] = [f"{m.id} {m.status}" for m in found.items if m.status != "delivered"]
                return not stuck

            await until(all_delivered, WITHIN, lambda: f"every message to be delivered: {stuck}")
    finally:
        await graph.stop()
    for message_id in sent:
        assert await statuses_emitted(cloud, account, message_id) == ["sent", "delivered"]


# -- the service window ---------------------------------------------------------------------------


async def test_free_text_only_within_24_hours_of_the_customers_message(
    cloud: Platform, account: Account, number: WhatsAppNumber, clock: FakeClock
) -> None:
    timed = with_settings(cloud, clock=clock)
    await create_template(timed, account, name="order_update", body="Your order {{1}} shipped")
    text = {"to": "+" + ALICE, "message": "Anything else?"}

    never = await post(timed, account, "/messages/send", text)
    assert never.status_code == 400
    assert never.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"

    await inbound(timed, ALICE, "Hi", at_s=clock.now // 1000)
    clock.advance(23 * 3600 * 1000)
    assert (await post(timed, account, "/messages/send", text)).status_code == 200

    clock.advance(3600 * 1000 + 1000)  # 24 h and a second after the customer wrote
    late = await post(timed, account, "/messages/send", text)
    assert late.status_code == 400
    assert late.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"
    # a template is allowed outside the window
    await send_template(timed, account, ALICE)
    # and the customer writing again opens it again
    await inbound(timed, ALICE, "One more thing", at_s=clock.now // 1000)
    assert (await post(timed, account, "/messages/send", text)).status_code == 200


# -- real processes -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_serve_on_the_cloud_channel_sends_and_takes_metas_callbacks(
    dialect: str, tmp_path: Path
) -> None:
    """``bitbybit serve`` with ``BITBYBIT_CHANNEL=whatsapp-cloud`` and the fake as Graph: a
    customer writes, the company answers through the API, Meta reports the answer delivered;
    the four events reach a receiver, signed."""
    async with (
        shared_database(dialect, tmp_path) as (url, store),
        fake_graph({PHONE: TOKEN}) as graph,
        receiver() as hook,
    ):
        env = {
            "BITBYBIT_SECRET_KEY": "whatsapp-cloud-test-secret-key",
            "BITBYBIT_CHANNEL": "whatsapp-cloud",
            "BITBYBIT_GRAPH_URL": graph.url,
            "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
            "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
            "BITBYBIT_RETRY_SCHEDULE": "0.05,0.05,0.05",
            "BITBYBIT_WHATSAPP_PAIR_INTERVAL": "0",
        }
        platform = Platform(store, Settings.from_env({**env, "BITBYBIT_DATABASE_URL": url}))
        account = await make_account(platform)
        tenant = Tenant(account.company.id, "live")
        await connect(platform, account)
        _, secret = await endpoint_for(platform, account, hook.url)

        # The server is started and stopped in a thread: the fake and the receiver it talks to
        # run in this event loop.
        server_context = serve(url, tmp_path / "serve.log", **env)
        server = await asyncio.to_thread(server_context.__enter__)
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                document = callback(
                    PHONE, messages=[text_message(wamid(), ALICE, "Where is it?", now_s())]
                )
                raw = encode(document)
                answer = await http.post(
                    META,
                    content=raw,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": sign(raw, APP_SECRET),
                    },
                )
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"received": 1, "statuses": 0}
                sent = await http.post(
                    API + "/messages/send",
                    json={"to": "081234567001", "message": "Out for delivery"},
                    headers=account.headers,
                )
                message_id = accepted(sent)
                (request,) = await graph.wait_for(1, WITHIN)
                assert request.path == f"/{VERSION}/{PHONE}/messages"
                assert request.headers["Authorization"] == f"Bearer {TOKEN}"
                assert request.body["text"]["body"] == "Out for delivery"
                assert request.to == ALICE
                delivered = encode(
                    callback(
                        PHONE, statuses=[status(request.wamid or "", "delivered", ALICE, now_s())]
                    )
                )

                async def reported() -> bool:
                    # until the server has recorded the send (a status that overtakes it is
                    # kept and applied later; here the callback is to move it at once)
                    async with store.read() as tx:
                        found = await tx.get_message(tenant, message_id)
                    return found is not None and found.status == "sent"

                await until(reported, WITHIN, lambda: f"{message_id} to be recorded as sent")
                answer = await http.post(
                    META,
                    content=delivered,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": sign(delivered, APP_SECRET),
                    },
                )
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"received": 0, "statuses": 1}
                got = await distinct(hook, 4)
        finally:
            await asyncio.to_thread(server_context.__exit__, None, None, None)

    verified = [verify(d.body, d.headers, secret) for d in got]
    assert sorted(event.type for event in verified) == [
        "customer.created",
        "message.received",
        "message.status.updated",
        "message.status.updated",
    ]
    payloads = [orjson.loads(d.body) for d in got]
    received = next(p for p in payloads if "receivedAt" in p)
    assert (received["from"], received["body"], received["source"]) == (
        "+" + ALICE,
        "Where is it?",
        "WHATSAPP_META",
    )
    updates = sorted(
        (p["status"], p["messageId"]) for p in payloads if p.get("status") in ("sent", "delivered")
    )
    assert updates == [("delivered", message_id), ("sent", message_id)]
