"""The fake Graph API and the Meta-callback builders, on loopback, before tests lean on them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.fake_graph import (
    FakeGraph,
    batch,
    callback,
    contact,
    encode,
    fake_graph,
    media_message,
    post_callback,
    sign,
    status,
    template_status,
    text_message,
)
from tests.integration.receivers import Receiver, receiver

TOKEN = "EAAG-test-token"
PHONE = "106540352242922"
ALICE = "6281234567890"
BOB = "6289876543210"


def text(to: str, body: str = "hello") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": False},
    }


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with fake_graph({PHONE: TOKEN, "PN2": "other-token"}) as fake:
        yield fake


async def send(
    graph: FakeGraph,
    body: Any,
    *,
    token: str | None = TOKEN,
    phone: str = PHONE,
    version: str = "v21.0",
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{graph.url}/{version}/{phone}/messages", json=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_success_is_shaped_like_meta_and_recorded(graph: FakeGraph) -> None:
    status_code, answer = await send(graph, text(ALICE), version="v19.0")
    again = (await send(graph, text(ALICE)))[1]

    assert status_code == 200
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": ALICE, "wa_id": ALICE}]
    assert [list(m) for m in answer["messages"]] == [["id"]]
    assert answer["messages"][0]["id"].startswith("wamid.")
    assert again["messages"][0]["id"] != answer["messages"][0]["id"]

    sent = await graph.wait_for(2)
    first = sent[0]
    assert (first.version, first.phone_number_id, first.to, first.type) == (
        "v19.0",
        PHONE,
        ALICE,
        "text",
    )
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.body == text(ALICE)
    assert first.wamid == answer["messages"][0]["id"]
    assert first.answer == answer
    assert first.at <= (first.answered_at or 0)
    assert graph.requests == sent


@pytest.mark.parametrize("token", ["wrong", None, "other-token"])
async def test_tokens_are_checked_before_the_body(graph: FakeGraph, token: str | None) -> None:
    status_code, answer = await send(graph, {"not": "a send"}, token=token)

    if token == "other-token":  # a valid token without access to this number: Meta's 100/33
        assert status_code == 400
        assert answer["error"]["code"] == 100
        assert answer["error"]["error_subcode"] == 33
        assert f"Object with ID '{PHONE}' does not exist" in answer["error"]["message"]
    else:
        assert status_code == 401
        assert answer["error"]["code"] == 190
        assert answer["error"]["type"] == "OAuthException"
        assert answer["error"]["message"].startswith("Error validating access token")
    assert answer["error"]["fbtrace_id"].startswith("A")
    assert graph.sent == []
    assert graph.requests[0].status == status_code


async def test_unknown_phone_number_id_and_path(graph: FakeGraph) -> None:
    unknown = await send(graph, text(ALICE), phone="999")
    no_version = await send(graph, text(ALICE), version="latest")

    assert unknown[0] == 400
    assert unknown[1]["error"]["code"] == 100
    assert "Unsupported post request. Object with ID '999'" in unknown[1]["error"]["message"]
    assert no_version[0] == 400
    assert no_version[1]["error"]["code"] == 2500


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messaging_product": None}, "messaging_product"),
        ({"to": None}, "to"),
        ({"to": "+" + ALICE}, "to"),
        ({"type": "video"}, "type"),
        ({"text": {"preview_url": False}}, "text['body']"),
        ({"text": {"body": "x" * 4097}}, "text['body']"),
        ({"type": "image", "image": {"link": "ftp://example.test/a.png"}}, "image['link']"),
        ({"type": "template", "template": {"name": "otp"}}, "template['language']['code']"),
        (
            {
                "type": "template",
                "template": {
                    "name": "otp",
                    "language": {"code": "en"},
                    "components": [{"parameters": []}],
                },
            },
            "template['components'][0]['type']",
        ),
    ],
)
async def test_invalid_bodies_name_the_field(
    graph: FakeGraph, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**text(ALICE), **change}.items() if v is not None}

    status_code, answer = await send(graph, body)

    assert status_code == 400
    assert answer["error"]["code"] == 100
    assert field in answer["error"]["message"]
    assert answer["error"]["error_data"]["messaging_product"] == "whatsapp"


async def test_image_and_template_bodies_are_accepted(graph: FakeGraph) -> None:
    image = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": ALICE,
        "type": "image",
        "image": {"link": "https://cdn.example.test/a.png", "caption": "receipt"},
    }
    template = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": ALICE,
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "id"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}],
        },
    }

    assert (await send(graph, image))[0] == 200
    assert (await send(graph, template))[0] == 200
    assert [r.type for r in graph.sent] == ["image", "template"]


async def test_recipient_failure_counts_down_and_spares_others(graph: FakeGraph) -> None:
    graph.fail(ALICE, 131030, "Recipient phone number not in allowed list", times=2)
    graph.fail(BOB, 131026, "Message undeliverable")  # always

    alice = [await send(graph, text(ALICE)) for _ in range(3)]
    bob = [await send(graph, text(BOB)) for _ in range(3)]

    assert [s for s, _ in alice] == [400, 400, 200]
    error = alice[0][1]["error"]
    assert error["message"] == "(#131030) Recipient phone number not in allowed list"
    assert error["code"] == 131030
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert [s for s, _ in bob] == [400, 400, 400]
    assert [r.error_code for r in graph.requests] == [131030, 131030, None, *[131026] * 3]
    assert [r.to for r in graph.sent] == [ALICE]


async def test_throttle_then_recover(graph: FakeGraph) -> None:
    graph.throttle(2)
    graph.throttle(1, code=131056)

    answers = [await send(graph, text(ALICE)) for _ in range(4)]

    assert [s for s, _ in answers] == [400, 400, 400, 200]
    assert answers[0][1]["error"]["message"] == "(#130429) Rate limit hit"
    assert answers[0][1]["error"]["code"] == 130429
    assert answers[2][1]["error"]["code"] == 131056
    assert len(graph.sent) == 1


async def test_throttle_counts_only_valid_sends(graph: FakeGraph) -> None:
    graph.throttle(1)

    refused = await send(graph, text(ALICE), token="wrong")
    throttled = await send(graph, text(ALICE))

    assert refused[1]["error"]["code"] == 190
    assert throttled[1]["error"]["code"] == 130429


async def test_server_errors_json_and_plain(graph: FakeGraph) -> None:
    graph.server_error(1)
    graph.server_error(1, status=503, json_body=False)

    meta_json = await send(graph, text(ALICE))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{graph.url}/v21.0/{PHONE}/messages",
            json=text(ALICE),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as plain,
    ):
        plain_status, plain_body = plain.status, await plain.text()
    ok = await send(graph, text(ALICE))

    assert meta_json[0] == 500
    assert meta_json[1]["error"]["is_transient"] is True
    assert (plain_status, plain_body) == (503, "Internal Server Error")
    assert ok[0] == 200


async def test_hang_up_drops_the_connection_and_is_recorded(graph: FakeGraph) -> None:
    graph.hang_up(1)

    with pytest.raises(aiohttp.ClientError):
        await send(graph, text(ALICE))
    ok = await send(graph, text(ALICE))

    assert ok[0] == 200
    assert [(r.hung_up, r.status) for r in await graph.wait_for_requests(2)] == [
        (True, None),
        (False, 200),
    ]


async def test_delay_holds_the_answer(graph: FakeGraph) -> None:
    graph.delay_ms = 50

    assert (await send(graph, text(ALICE)))[0] == 200

    held = graph.requests[0]
    assert held.answered_at is not None
    assert held.answered_at - held.at >= 0.045  # a lower bound only: sleep never ends early


async def test_waiting_reports_what_arrived(graph: FakeGraph) -> None:
    graph.fail(ALICE, 131030)
    await send(graph, text(ALICE))

    with pytest.raises(AssertionError, match=r"0 succeeded of 1 requests:\n.*to=6281234567890.*"):
        await graph.wait_for(1, within=0.05)


# -- callbacks ---------------------------------------------------------------------------------


def test_callback_document_follows_meta() -> None:
    inbound = text_message("wamid.IN1", ALICE, "Halo", 1_700_000_000)
    photo = media_message("wamid.IN2", BOB, "image", "MEDIA1", "struk", timestamp_s=1_700_000_001)
    failed = status("wamid.OUT1", "failed", ALICE, 1_700_000_002, error=(131047, "Re-engagement"))
    sent = status("wamid.OUT2", "sent", ALICE, 1_700_000_003)

    document = callback(PHONE, messages=[inbound, photo], statuses=[failed, sent])

    assert document["object"] == "whatsapp_business_account"
    [entry] = document["entry"]
    assert entry["id"] == "WABA1"
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"]["phone_number_id"] == PHONE
    assert value["metadata"]["display_phone_number"].isdigit()
    assert [c["wa_id"] for c in value["contacts"]] == [ALICE, BOB]
    assert all(c["profile"]["name"] for c in value["contacts"])
    assert value["messages"][0] == {
        "from": ALICE,
        "id": "wamid.IN1",
        "timestamp": "1700000000",
        "text": {"body": "Halo"},
        "type": "text",
    }
    assert value["messages"][1]["image"]["id"] == "MEDIA1"
    assert value["messages"][1]["image"]["caption"] == "struk"
    assert value["messages"][1]["image"]["mime_type"] == "image/jpeg"
    assert value["statuses"][0]["errors"][0]["code"] == 131047
    assert value["statuses"][0]["errors"][0]["error_data"]["details"]
    assert "pricing" not in value["statuses"][0]
    assert value["statuses"][1]["recipient_id"] == ALICE
    assert value["statuses"][1]["pricing"]["category"] == "utility"
    assert value["statuses"][1]["conversation"]["expiration_timestamp"] == str(1_700_086_403)
    assert "conversation" not in status("wamid.OUT2", "read", ALICE, 1_700_000_004)


def test_explicit_contacts_batches_and_template_status() -> None:
    bare = callback(PHONE, messages=[text_message("w1", ALICE, "a", 1)], contacts=[contact(ALICE)])
    statuses_only = callback("PN2", statuses=[status("w2", "delivered", BOB, 2)], waba_id="WABA2")
    template = template_status("WABA2", "order_shipped", "REJECTED", "INVALID_FORMAT")

    merged = batch(bare, statuses_only, template)

    assert bare["entry"][0]["changes"][0]["value"]["contacts"] == [{"wa_id": ALICE}]
    assert "contacts" not in statuses_only["entry"][0]["changes"][0]["value"]
    assert [e["id"] for e in merged["entry"]] == ["WABA1", "WABA2", "WABA2"]
    change = merged["entry"][2]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "REJECTED"
    assert change["value"]["reason"] == "INVALID_FORMAT"
    assert "metadata" not in change["value"]
    approved = template_status("WABA2", "order_shipped", "APPROVED")
    assert approved["entry"][0]["changes"][0]["value"]["reason"] == "NONE"


def test_encode_escapes_like_meta_and_sign_is_hmac_sha256() -> None:
    document = callback(PHONE, messages=[text_message("w1", ALICE, "café a/b", 1)])

    raw = encode(document)

    assert b"caf\\u00e9 a\\/b" in raw
    assert json.loads(raw) == document
    assert raw != json.dumps(document).encode()  # re-serialising does not give the signed bytes
    expected = hmac.new(b"app-secret", raw, hashlib.sha256).hexdigest()
    assert sign(raw, "app-secret") == f"sha256={expected}"


async def test_post_callback_sends_signed_raw_bytes() -> None:
    async def accepted(request: web.Request, hook: Receiver) -> web.StreamResponse:
        return web.Response(status=200, text="EVENT_RECEIVED")

    document = callback(PHONE, messages=[text_message("w1", ALICE, "hi/there", 1)])
    async with receiver(accepted) as hook:
        answer = await post_callback(hook.url, document, "app-secret")
        await post_callback(hook.url, b"{not json", "app-secret", signature="sha256=00")
        await post_callback(hook.url, document, "app-secret", signed=False)

    assert answer == (200, "EVENT_RECEIVED")
    first, malformed, unsigned = hook.received
    assert first.body == encode(document)
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Hub-Signature-256"] == sign(first.body, "app-secret")
    assert first.headers["X-Hub-Signature"].startswith("sha1=")
    assert malformed.body == b"{not json"
    assert malformed.headers["X-Hub-Signature-256"] == "sha256=00"
    assert "X-Hub-Signature-256" not in unsigned.headers
