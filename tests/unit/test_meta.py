"""``channels/meta.py``: Meta's callbacks, the callback signature and Graph's answers to a send.

The payloads are shaped like the ones the WhatsApp Cloud API posts (the examples in Meta's webhook
reference and the fixtures public client libraries test against). What the best-known
integrations get wrong is pinned here: every entry, change and item of a batch is read; one bad
item costs only itself; a missing profile is a ``None`` name, not an error; template statuses
are routed by the WABA id. The property tests feed arbitrary JSON-like values and headers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitbybit.channels.meta import (
    STATUSES,
    Callback,
    CallbackError,
    GraphAnswer,
    InboundMessage,
    StatusUpdate,
    TemplateStatus,
    classify,
    parse_callback,
    signature_matches,
)
from bitbybit.errors import ValidationFailed

WABA = "102290129340398"
NUMBER = "106540352242922"
OTHER_NUMBER = "106540352242999"
CUSTOMER = "6281234567890"
TS = "1697043223"
TS_MS = 1_697_043_223_000

Json = dict[str, Any]


def callback(*entries: object) -> Json:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def entry(*changes: object, waba: str = WABA) -> Json:
    return {"id": waba, "changes": list(changes)}


def change(
    number: str | None = NUMBER,
    *,
    messages: list[Any] | None = None,
    statuses: list[Any] | None = None,
    errors: list[Any] | None = None,
    contacts: list[Any] | None = None,
) -> Json:
    """A ``messages`` change of business number ``number`` (no metadata when ``None``)."""
    value: Json = {"messaging_product": "whatsapp"}
    if number is not None:
        value["metadata"] = {"display_phone_number": "15550783881", "phone_number_id": number}
    for key, items in (
        ("contacts", contacts),
        ("messages", messages),
        ("statuses", statuses),
        ("errors", errors),
    ):
        if items is not None:
            value[key] = items
    return {"value": value, "field": "messages"}


def contact(wa_id: str = CUSTOMER, name: str = "Ana Putri") -> Json:
    return {"profile": {"name": name}, "wa_id": wa_id}


def message(wamid: str, kind: str = "text", sender: str = CUSTOMER, **content: Any) -> Json:
    """A ``messages[]`` item; ``content`` is the type's object (``text={"body": …}``) and more."""
    return {"from": sender, "id": wamid, "timestamp": TS, "type": kind, **content}


def text(wamid: str, body: str, sender: str = CUSTOMER) -> Json:
    return message(wamid, sender=sender, text={"body": body})


def status(wamid: str, state: str = "delivered", **extra: Any) -> Json:
    return {"id": wamid, "status": state, "timestamp": TS, "recipient_id": CUSTOMER, **extra}


def template_change(name: str = "order_update", event: str = "APPROVED", **extra: Any) -> Json:
    value = {
        "event": event,
        "message_template_id": 12345678,
        "message_template_name": name,
        "message_template_language": "id",
        "reason": "NONE",
        **extra,
    }
    return {"field": "message_template_status_update", "value": value}


def inbound(wamid: str, body: str, **fields: Any) -> InboundMessage:
    """The message ``text(wamid, body)`` from ``CUSTOMER`` on ``NUMBER`` reads as."""
    values: dict[str, Any] = {
        "phone_number_id": NUMBER,
        "wa_message_id": wamid,
        "sender": "+" + CUSTOMER,
        "profile_name": "Ana Putri",
        "type": "text",
        "body": body,
        "media_id": None,
        "media_mime_type": None,
        "timestamp_ms": TS_MS,
        "context_message_id": None,
    }
    values.update(fields)
    return InboundMessage(**values)


def only_message(item: Json, contacts: list[Any] | None = None) -> InboundMessage:
    parsed = parse_callback(callback(entry(change(messages=[item], contacts=contacts))))
    assert parsed.problems == []
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def problems_of(item: Json, key: str = "messages") -> list[str]:
    found = change(messages=[item]) if key == "messages" else change(statuses=[item])
    parsed = parse_callback(callback(entry(found)))
    assert parsed.messages == []
    assert parsed.statuses == []
    return parsed.problems


# --- batches --------------------------------------------------------------------------------


def test_a_batch_is_read_whole_and_one_broken_item_costs_only_itself() -> None:
    """2 entries of 2 changes, messages and statuses mixed, a message without an id midway."""
    document = callback(
        entry(
            change(
                contacts=[contact(), contact("628111", "Budi")],
                messages=[text("wamid.A1", "halo"), text("wamid.A2", "pesan", sender="628111")],
                statuses=[status("wamid.OUT1", "sent"), status("wamid.OUT2", "read")],
            ),
            change(
                OTHER_NUMBER,
                contacts=[contact()],
                messages=[
                    text("wamid.B1", "satu"),
                    {"from": CUSTOMER, "timestamp": TS, "type": "text", "text": {"body": "x"}},
                    text("wamid.B3", "tiga"),
                ],
            ),
        ),
        entry(
            change(statuses=[status("wamid.OUT3", "delivered")]),
            change(OTHER_NUMBER, contacts=[contact()], messages=[text("wamid.D1", "empat")]),
            waba="102290129340777",
        ),
    )

    parsed = parse_callback(document)

    assert parsed.messages == [
        inbound("wamid.A1", "halo"),
        inbound("wamid.A2", "pesan", sender="+628111", profile_name="Budi"),
        inbound("wamid.B1", "satu", phone_number_id=OTHER_NUMBER),
        inbound("wamid.B3", "tiga", phone_number_id=OTHER_NUMBER),
        inbound("wamid.D1", "empat", phone_number_id=OTHER_NUMBER),
    ]
    assert [(s.phone_number_id, s.wa_message_id, s.status) for s in parsed.statuses] == [
        (NUMBER, "wamid.OUT1", "sent"),
        (NUMBER, "wamid.OUT2", "read"),
        (NUMBER, "wamid.OUT3", "delivered"),
    ]
    assert parsed.problems == ["entry[0].changes[1].value.messages[1]: no id"]
    assert parsed.phone_number_ids == {NUMBER, OTHER_NUMBER}
    assert parsed.waba_ids == set()


def test_wrong_json_types_at_each_level_skip_only_that_level() -> None:
    document = callback(
        "not an entry",
        {"id": WABA, "changes": {"not": "a list"}},
        entry(
            "not a change",
            {"field": "messages", "value": ["not an object"]},
            {
                "field": "messages",
                "value": {"metadata": {"phone_number_id": NUMBER}, "messages": 7},
            },
            change(messages=[None, 3, text("wamid.OK", "masih diterima")], statuses=[[]]),
        ),
    )

    parsed = parse_callback(document)

    assert parsed.messages == [inbound("wamid.OK", "masih diterima", profile_name=None)]
    assert parsed.problems == [
        "entry[0]: not an object but a string",
        "entry[1].changes: not a list but an object",
        "entry[2].changes[0]: not an object but a string",
        "entry[2].changes[1].value: not an object but a list",
        "entry[2].changes[2].value.messages: not a list but a number",
        "entry[2].changes[3].value.messages[0]: not an object but null",
        "entry[2].changes[3].value.messages[1]: not an object but a number",
        "entry[2].changes[3].value.statuses[0]: not an object but a list",
    ]


def test_items_without_a_phone_number_id_cannot_be_routed() -> None:
    parsed = parse_callback(
        callback(
            entry(
                change(None, messages=[text("wamid.A", "x")], statuses=[status("wamid.B")]),
                change(messages=[text("wamid.C", "routed")]),
            )
        )
    )

    assert [m.wa_message_id for m in parsed.messages] == ["wamid.C"]
    assert parsed.statuses == []
    assert parsed.problems == [
        "entry[0].changes[0].value.messages[0]: no metadata.phone_number_id to route by",
        "entry[0].changes[0].value.statuses[0]: no metadata.phone_number_id to route by",
    ]


def test_changes_of_fields_we_do_not_read_are_problems_not_failures() -> None:
    parsed = parse_callback(
        callback(
            entry(
                {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                {"value": {}},
                change(messages=[text("wamid.A", "x")]),
            )
        )
    )

    assert len(parsed.messages) == 1
    assert parsed.problems == [
        "entry[0].changes[0]: field 'account_update' is not one we read",
        "entry[0].changes[1]: field None is not one we read",
    ]


def test_an_empty_entry_list_is_an_empty_callback() -> None:
    assert parse_callback({"object": "whatsapp_business_account", "entry": []}) == Callback()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "entry: a callback must be a JSON object with an entry list"),
        ([], "entry: a callback must be a JSON object with an entry list"),
        ("entry", "entry: a callback must be a JSON object with an entry list"),
        (42, "entry: a callback must be a JSON object with an entry list"),
        ({}, "entry: is missing"),
        ({"object": "whatsapp_business_account"}, "entry: is missing"),
        ({"entry": {"id": WABA}}, "entry: must be a list, not an object"),
        ({"entry": "[]"}, "entry: must be a list, not a string"),
    ],
)
def test_a_top_level_without_an_entry_list_is_refused(document: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_callback(document)

    assert str(refused.value) == message
    assert [detail.field for detail in refused.value.details] == ["entry"]


# --- every message type ---------------------------------------------------------------------

IMAGE = {"mime_type": "image/jpeg", "sha256": "4654+8g=", "id": "1479537139650973"}


@pytest.mark.parametrize(
    ("item", "body", "media"),
    [
        (text("wamid.1", "Halo, pesanan saya?"), "Halo, pesanan saya?", None),
        (message("wamid.1", "image", image=IMAGE), "[image]", ("1479537139650973", "image/jpeg")),
        (
            message("wamid.1", "image", image={**IMAGE, "caption": "bukti transfer"}),
            "bukti transfer",
            ("1479537139650973", "image/jpeg"),
        ),
        (
            message("wamid.1", "video", video={"id": "765", "mime_type": "video/mp4"}),
            "[video]",
            ("765", "video/mp4"),
        ),
        (
            message(
                "wamid.1",
                "audio",
                audio={"id": "55", "mime_type": "audio/ogg; codecs=opus", "voice": True},
            ),
            "[audio]",
            ("55", "audio/ogg; codecs=opus"),
        ),
        (
            message(
                "wamid.1",
                "document",
                document={"id": "77", "mime_type": "application/pdf", "filename": "invoice.pdf"},
            ),
            "[document: invoice.pdf]",
            ("77", "application/pdf"),
        ),
        (
            message(
                "wamid.1",
                "document",
                document={"id": "77", "filename": "invoice.pdf", "caption": "tagihan Mei"},
            ),
            "tagihan Mei",
            ("77", None),
        ),
        (message("wamid.1", "document", document={"id": "77"}), "[document]", ("77", None)),
        (
            message(
                "wamid.1",
                "sticker",
                sticker={"id": "88", "mime_type": "image/webp", "animated": False},
            ),
            "[sticker]",
            ("88", "image/webp"),
        ),
        (
            message("wamid.1", "location", location={"latitude": -6.2, "longitude": 106.8}),
            "[location: -6.2, 106.8]",
            None,
        ),
        (
            message(
                "wamid.1",
                "location",
                location={
                    "latitude": 37.4611978,
                    "longitude": -122.2164385,
                    "name": "Facebook HQ",
                    "address": "1 Hacker Way, Menlo Park, CA 94025",
                },
            ),
            "[location: 37.4611978, -122.2164385 Facebook HQ]",
            None,
        ),
        (
            message(
                "wamid.1",
                "location",
                location={"latitude": 1, "longitude": 2, "address": "Jl. Sudirman 1"},
            ),
            "[location: 1, 2 Jl. Sudirman 1]",
            None,
        ),
        (message("wamid.1", "location", location={"latitude": "x"}), "[location]", None),
        (
            message(
                "wamid.1",
                "contacts",
                contacts=[
                    {
                        "name": {"first_name": "Chandler", "formatted_name": "Chandler Bing"},
                        "phones": [{"phone": "+1 555-555-5555", "type": "CELL"}],
                    },
                    {"name": {"formatted_name": "Monica"}},
                    {"phones": []},
                ],
            ),
            "[contacts: Chandler Bing, Monica]",
            None,
        ),
        (message("wamid.1", "contacts", contacts=[{}]), "[contacts]", None),
        (
            message(
                "wamid.1",
                "interactive",
                interactive={"type": "button_reply", "button_reply": {"id": "y", "title": "Ya"}},
            ),
            "Ya",
            None,
        ),
        (
            message(
                "wamid.1",
                "interactive",
                interactive={
                    "type": "list_reply",
                    "list_reply": {"id": "r2", "title": "Kirim besok", "description": "…"},
                },
            ),
            "Kirim besok",
            None,
        ),
        (
            message(
                "wamid.1",
                "interactive",
                interactive={
                    "type": "nfm_reply",
                    "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"},
                },
            ),
            "[interactive: nfm_reply]",
            None,
        ),
        # Meta has posted interactive messages without the object, with a value.errors beside.
        (message("wamid.1", "interactive"), "[interactive]", None),
        (
            message("wamid.1", "button", button={"payload": "STOP", "text": "Berhenti promo"}),
            "Berhenti promo",
            None,
        ),
        (message("wamid.1", "button", button={"payload": "STOP"}), "STOP", None),
        (
            message("wamid.1", "reaction", reaction={"message_id": "wamid.OUT", "emoji": "❤"}),
            "[reaction ❤ to wamid.OUT]",
            None,
        ),
        (
            message("wamid.1", "reaction", reaction={"message_id": "wamid.OUT", "emoji": ""}),
            "[reaction removed from wamid.OUT]",
            None,
        ),
        (
            message("wamid.1", "reaction", reaction={"message_id": "wamid.OUT"}),
            "[reaction removed from wamid.OUT]",
            None,
        ),
        (
            message(
                "wamid.1",
                "order",
                order={
                    "catalog_id": "354160437058781",
                    "text": "",
                    "product_items": [
                        {"product_retailer_id": "KOPI", "quantity": 3, "item_price": 30},
                        {"product_retailer_id": "ROTI", "quantity": 1, "item_price": 12},
                    ],
                },
            ),
            "[order: 2 items]",
            None,
        ),
        (
            message("wamid.1", "order", order={"text": "tolong cepat", "product_items": []}),
            "tolong cepat",
            None,
        ),
        (
            message(
                "wamid.1",
                "system",
                system={
                    "body": "User A changed from 972987654321 to 97211111111",
                    "wa_id": "97211111111",
                    "type": "user_changed_number",
                },
            ),
            "User A changed from 972987654321 to 97211111111",
            None,
        ),
        (
            message(
                "wamid.1",
                "unsupported",
                errors=[{"code": 131051, "title": "Message type unknown"}],
            ),
            "[unsupported]",
            None,
        ),
        (
            message("wamid.1", "unsupported", unsupported={"type": "poll"}),
            "[unsupported: poll]",
            None,
        ),
        (message("wamid.1", "request_welcome"), "[request_welcome]", None),
        (message("wamid.1", "text"), "[text]", None),
        (message("wamid.1", "text", text={"body": 5}), "[text]", None),
        (message("wamid.1", "text", text={"body": ""}), "[text]", None),
        (message("wamid.1", "button", button={"text": "", "payload": ""}), "[button]", None),
    ],
)
def test_every_message_type_has_a_readable_body(
    item: Json, body: str, media: tuple[str, str | None] | None
) -> None:
    parsed = only_message(item, contacts=[contact()])

    media_id, mime = media or (None, None)
    assert parsed == inbound(
        "wamid.1", body, type=item["type"], media_id=media_id, media_mime_type=mime
    )


def test_a_reply_names_the_message_it_replies_to() -> None:
    item = {**text("wamid.R", "iya"), "context": {"from": "15550783881", "id": "wamid.OURS"}}
    forwarded = {**text("wamid.F", "fwd"), "context": {"forwarded": True}}

    assert only_message(item).context_message_id == "wamid.OURS"
    assert only_message(forwarded).context_message_id is None


@pytest.mark.parametrize(
    "contacts",
    [
        None,
        [],
        [{"wa_id": CUSTOMER}],
        [{"wa_id": CUSTOMER, "profile": {}}],
        [{"wa_id": CUSTOMER, "profile": {"name": None}}],
        [{"wa_id": CUSTOMER, "profile": "Ana"}],
        [{"profile": {"name": "Ana Putri"}}],
        [contact("628999", "Someone else")],
        ["garbage", 3, None],
    ],
)
def test_a_missing_profile_is_a_none_name_never_a_lost_message(contacts: list[Any] | None) -> None:
    assert only_message(text("wamid.1", "x"), contacts=contacts).profile_name is None


def test_the_profile_is_the_senders_among_several_contacts() -> None:
    parsed = parse_callback(
        callback(
            entry(
                change(
                    contacts=[contact("628111", "Budi"), contact("+" + CUSTOMER, "Ana Putri")],
                    messages=[text("wamid.1", "x"), text("wamid.2", "y", sender="628111")],
                )
            )
        )
    )

    assert [m.profile_name for m in parsed.messages] == ["Ana Putri", "Budi"]


@pytest.mark.parametrize(
    ("sender", "expected"),
    [(CUSTOMER, "+" + CUSTOMER), ("+" + CUSTOMER, "+" + CUSTOMER), ("1", "+1")],
)
def test_the_sender_is_always_plus_digits(sender: str, expected: str) -> None:
    assert only_message(text("wamid.1", "x", sender=sender)).sender == expected


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": None}, "no id"),
        ({"id": ""}, "id is empty"),
        ({"id": 123}, "id must be a string, not a number"),
        ({"from": None}, "no from"),
        (
            {"from": "62 812-3456"},
            "from '62 812-3456' is not a phone number in international digits",
        ),
        ({"from": "abc"}, "from 'abc' is not a phone number in international digits"),
        ({"from": "+"}, "from '+' is not a phone number in international digits"),
        ({"from": "0812345"}, "from '0812345' is not a phone number in international digits"),
        ({"from": "1" * 16}, f"from '{'1' * 16}' is not a phone number in international digits"),
        ({"from": "٦٢٨١٢"}, "from '٦٢٨١٢' is not a phone number in international digits"),
        (
            {"from": 6281234567890},
            "from 6281234567890 is not a phone number in international digits",
        ),
        ({"timestamp": None}, "no timestamp"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not whole unix seconds"),
        ({"timestamp": "1697043223.5"}, "timestamp '1697043223.5' is not whole unix seconds"),
        ({"timestamp": 1697043223.0}, "timestamp 1697043223.0 is not whole unix seconds"),
        ({"timestamp": -1}, "timestamp -1 is not whole unix seconds"),
        ({"timestamp": True}, "timestamp True is not whole unix seconds"),
        ({"timestamp": "9" * 5000}, f"timestamp '{'9' * 36}... is not whole unix seconds"),
        ({"type": None}, "no type"),
        ({"type": ["text"]}, "type must be a string, not a list"),
    ],
)
def test_a_message_without_what_identifies_it_is_a_problem(changes: Json, problem: str) -> None:
    item = {**text("wamid.1", "x"), **changes}
    item = {key: value for key, value in item.items() if value is not None}

    assert problems_of(item) == [f"entry[0].changes[0].value.messages[0]: {problem}"]


def test_an_integer_timestamp_is_read_too() -> None:
    assert only_message({**text("wamid.1", "x"), "timestamp": 1697043223}).timestamp_ms == TS_MS


# --- statuses and errors --------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(STATUSES - {"failed"}))
def test_a_status_update(state: str) -> None:
    item = status(
        "wamid.OUT",
        state,
        conversation={"id": "7270432eae", "origin": {"type": "service"}},
        pricing={"billable": True, "pricing_model": "CBP", "category": "service"},
    )
    parsed = parse_callback(callback(entry(change(statuses=[item]))))

    assert parsed.statuses == [
        StatusUpdate(NUMBER, "wamid.OUT", state, "+" + CUSTOMER, TS_MS, None, None)
    ]


def test_a_failed_status_carries_metas_error() -> None:
    outside_window = {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
    items = [
        status("wamid.1", "failed", errors=[outside_window]),
        status("wamid.2", "failed", errors=[{"code": 130472, "message": "Part of an experiment"}]),
        status("wamid.3", "failed"),
        status("wamid.4", "failed", errors=["garbage"]),
        status("wamid.5", "failed", errors=[{"code": "x", "title": 5}]),
    ]

    parsed = parse_callback(callback(entry(change(statuses=items))))

    assert [(s.wa_message_id, s.error_code, s.error_title) for s in parsed.statuses] == [
        ("wamid.1", 131047, "Re-engagement message"),
        ("wamid.2", 130472, "Part of an experiment"),
        ("wamid.3", None, None),
        ("wamid.4", None, None),
        ("wamid.5", None, None),
    ]
    assert all(s.status == "failed" for s in parsed.statuses)
    assert parsed.problems == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"status": "deleted"}, "status 'deleted' is not one we track"),
        ({"status": "warning"}, "status 'warning' is not one we track"),
        ({"status": "DELIVERED"}, "status 'DELIVERED' is not one we track"),
        ({"status": None}, "status None is not one we track"),
        ({"status": ["read"]}, "status ['read'] is not one we track"),
        ({"id": None}, "no id"),
        ({"recipient_id": None}, "no recipient_id"),
        (
            {"recipient_id": "group-1"},
            "recipient_id 'group-1' is not a phone number in international digits",
        ),
        ({"timestamp": "soon"}, "timestamp 'soon' is not whole unix seconds"),
    ],
)
def test_a_status_we_cannot_use_is_a_problem(changes: Json, problem: str) -> None:
    item = {
        key: value for key, value in {**status("wamid.1"), **changes}.items() if value is not None
    }

    assert problems_of(item, "statuses") == [f"entry[0].changes[0].value.statuses[0]: {problem}"]


def test_callback_level_errors() -> None:
    rate_limit = {
        "code": 130429,
        "title": "Rate limit hit",
        "message": "Rate limit hit",
        "error_data": {"details": "Message failed to send because there were too many messages"},
    }
    parsed = parse_callback(
        callback(
            entry(
                change(errors=[rate_limit, {"code": 131000}, {"message": "Something"}, {}, "x"]),
                change(None, errors=[{"code": 1, "title": "Unknown"}]),
            )
        )
    )

    assert parsed.errors == [
        CallbackError(NUMBER, 130429, "Rate limit hit"),
        CallbackError(NUMBER, 131000, "error 131000"),
        CallbackError(NUMBER, None, "Something"),
        CallbackError(None, 1, "Unknown"),
    ]
    assert parsed.problems == [
        "entry[0].changes[0].value.errors[3]: an error with neither a code nor a title",
        "entry[0].changes[0].value.errors[4]: not an object but a string",
    ]
    assert parsed.phone_number_ids == {NUMBER}


# --- template statuses ----------------------------------------------------------------------


def test_template_statuses_are_routed_by_the_waba_id() -> None:
    parsed = parse_callback(
        callback(
            {"id": "0", "time": 1698268000, "changes": [template_change("welcome")]},
            entry(
                template_change("promo_mei", "REJECTED", reason="INCORRECT_CATEGORY"),
                template_change("promo_juni", "PAUSED", reason=None),
                change(messages=[text("wamid.1", "x")]),
                waba=WABA,
            ),
        )
    )

    assert parsed.template_statuses == [
        TemplateStatus("0", "welcome", "APPROVED", None),
        TemplateStatus(WABA, "promo_mei", "REJECTED", "INCORRECT_CATEGORY"),
        TemplateStatus(WABA, "promo_juni", "PAUSED", None),
    ]
    assert parsed.waba_ids == {"0", WABA}
    assert parsed.phone_number_ids == {NUMBER}
    assert parsed.problems == []


def test_a_template_status_without_a_waba_id_or_a_name_is_a_problem() -> None:
    parsed = parse_callback(
        callback(
            {"changes": [template_change()]},
            {"id": 102290129340398, "changes": [template_change()]},
            entry(template_change(message_template_name=None), template_change(event="")),
        )
    )

    assert parsed.template_statuses == []
    assert parsed.problems == [
        "entry[0].changes[0].value: no entry id (the WABA id) to route a template status by",
        "entry[1].changes[0].value: no entry id (the WABA id) to route a template status by",
        "entry[2].changes[0].value: no message_template_name",
        "entry[2].changes[1].value: event is empty",
    ]


# --- fuzzing --------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "+", "0", CUSTOMER, TS, "messages", "failed", "text", "image"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_arbitrary_json_is_read_or_refused_with_validation_failed(document: object) -> None:
    try:
        parsed = parse_callback(document)
    except ValidationFailed:
        assert not (isinstance(document, dict) and isinstance(document.get("entry"), list))
    else:
        assert isinstance(document, dict)
        assert isinstance(parsed, Callback)


@given(st.lists(JSON_VALUES, max_size=4))
def test_any_entry_list_is_read_without_raising(entries: list[Any]) -> None:
    parsed = parse_callback({"object": "whatsapp_business_account", "entry": entries})

    assert all(problem.startswith("entry[") for problem in parsed.problems)


def a_full_batch() -> Json:
    """Two entries with every kind of item Meta sends: the base the mutation fuzz starts from."""
    kinds: list[Json] = [
        text("wamid.1", "halo"),
        message("wamid.2", "image", image={**IMAGE, "caption": "bukti"}),
        message("wamid.3", "document", document={"id": "77", "filename": "a.pdf"}),
        message("wamid.4", "location", location={"latitude": -6.2, "longitude": 106.8}),
        message("wamid.5", "contacts", contacts=[{"name": {"formatted_name": "Budi"}}]),
        message(
            "wamid.6",
            "interactive",
            interactive={"type": "list_reply", "list_reply": {"id": "r", "title": "Besok"}},
        ),
        message("wamid.7", "button", button={"payload": "STOP", "text": "Berhenti"}),
        message("wamid.8", "reaction", reaction={"message_id": "wamid.OUT", "emoji": "❤"}),
        message("wamid.9", "order", order={"text": "", "product_items": [{"quantity": 1}]}),
        message("wamid.10", "system", system={"body": "changed number"}),
        {**text("wamid.11", "re"), "context": {"from": "15550783881", "id": "wamid.OUT"}},
    ]
    failed = status("wamid.OUT2", "failed", errors=[{"code": 131047, "title": "Re-engagement"}])
    return callback(
        entry(
            change(
                contacts=[contact()],
                messages=kinds,
                statuses=[status("wamid.OUT1", "sent"), failed],
                errors=[{"code": 130429, "title": "Rate limit hit"}],
            ),
            template_change(),
        ),
        entry(change(OTHER_NUMBER, messages=[text("wamid.12", "dua")]), waba="5467539754836534"),
    )


DELETE = object()
"""A mutation that removes the key (or list item) instead of replacing it."""


def paths(node: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON document, the root excepted."""
    children: list[tuple[str | int, object]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    found = []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


BATCH_PATHS = [path for path in paths(a_full_batch()) if len(path) > 1]
"""Every place below the ``entry`` list (replacing the list itself is refused, rightly)."""
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(BATCH_PATHS), st.just(DELETE) | JSON_VALUES), max_size=3
)


def mutated(mutations: list[tuple[tuple[str | int, ...], object]]) -> Json:
    document = a_full_batch()
    for path, replacement in mutations:
        node: Any = document
        for key in path[:-1]:
            try:
                node = node[key]  # an earlier mutation may have changed what is here
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            if isinstance(node, dict) and isinstance(last, str):
                if replacement is DELETE:
                    node.pop(last, None)
                else:
                    node[last] = replacement
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                if replacement is DELETE:
                    del node[last]
                else:
                    node[last] = replacement
    return document


def test_the_full_batch_reads_whole() -> None:
    parsed = parse_callback(a_full_batch())

    assert parsed.problems == []
    assert [m.wa_message_id for m in parsed.messages] == [f"wamid.{n}" for n in range(1, 13)]
    assert [s.status for s in parsed.statuses] == ["sent", "failed"]
    assert parsed.errors == [CallbackError(NUMBER, 130429, "Rate limit hit")]
    assert parsed.template_statuses == [TemplateStatus(WABA, "order_update", "APPROVED", None)]


@settings(max_examples=300)  # the places to hit are many
@given(MUTATIONS)
def test_garbage_anywhere_in_a_real_batch_never_raises(
    mutations: list[tuple[tuple[str | int, ...], object]],
) -> None:
    parsed = parse_callback(mutated(mutations))

    for one in parsed.messages:
        assert one.sender[0] == "+"
        assert one.sender[1:].isdigit()
        assert one.timestamp_ms % 1000 == 0
        assert one.body
    assert {state.status for state in parsed.statuses} <= STATUSES
    assert all(problem.startswith("entry[") for problem in parsed.problems)
    # One mutation in or under one message or status costs at most that item, never the others.
    if len(mutations) == 1:
        place = mutations[0][0]
        if len(place) >= 7 and place[5] in ("messages", "statuses"):
            assert len(parsed.messages) + len(parsed.statuses) >= 12 + 2 - 1


# --- signature ------------------------------------------------------------------------------

SECRET = "8c5f4a1e2b3d4c5e6f708192a3b4c5d6"
RAW = json.dumps(
    callback(entry(change(messages=[text("wamid.1", "héllo ❤")]))), ensure_ascii=False
).encode()


def sign(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_a_signature_over_the_raw_body_matches() -> None:
    assert signature_matches(RAW, sign(RAW), SECRET)
    assert signature_matches(RAW, sign(RAW).upper().replace("SHA256=", "sha256="), SECRET)
    assert signature_matches(RAW, f"  {sign(RAW)} ", SECRET)
    assert signature_matches(b"", sign(b""), SECRET)


def test_re_serialised_json_never_matches() -> None:
    reserialised = json.dumps(json.loads(RAW)).encode()  # ASCII escapes, other spacing

    assert reserialised != RAW
    assert not signature_matches(reserialised, sign(RAW), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        sign(RAW).removeprefix("sha256="),
        "sha1=" + hashlib.sha1(RAW).hexdigest(),  # noqa: S324 - a wrong algorithm on purpose
        "SHA256=" + sign(RAW).removeprefix("sha256="),
        sign(RAW)[:-1],
        sign(RAW) + "0",
        sign(RAW)[:-1] + "g",
        sign(RAW)[:-1] + "é",
        sign(RAW)[:-2] + "٠٠",
        sign(RAW, "another secret"),
        sign(RAW + b" "),
        "sha256=" + "0" * 64,
        sign(RAW) + ",sha256=" + "0" * 64,
    ],
)
def test_a_wrong_or_malformed_signature_does_not_match(header: str | None) -> None:
    assert not signature_matches(RAW, header, SECRET)


def test_an_empty_secret_matches_nothing() -> None:
    assert not signature_matches(RAW, sign(RAW, ""), "")


HEADERS = st.one_of(
    st.none(),
    st.text(),
    st.text().map(lambda tail: "sha256=" + tail),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=68).map("sha256=".__add__),
)


@given(HEADERS, st.binary(max_size=64), st.text(max_size=20))
def test_arbitrary_headers_never_raise_and_never_match(
    header: str | None, raw: bytes, secret: str
) -> None:
    assert signature_matches(raw, header, secret) is False


@given(st.binary(max_size=256), st.text(min_size=1, max_size=40))
def test_the_right_signature_always_matches(raw: bytes, secret: str) -> None:
    assert signature_matches(raw, sign(raw, secret), secret) is True


def test_a_secret_that_is_not_valid_unicode_matches_nothing() -> None:
    assert not signature_matches(RAW, sign(RAW), "\ud800")


# --- classifying Graph's answers ------------------------------------------------------------


def graph_error(code: int | str, message: str, **extra: Any) -> bytes:
    detail = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": "…"},
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        **extra,
    }
    return json.dumps({"error": detail}).encode()


SENT = json.dumps(
    {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+6281234567890", "wa_id": "6281234567890"}],
        "messages": [{"id": "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjQ", "message_status": "accepted"}],
    }
).encode()


def answer(
    title: str | None,
    retryable: bool,
    code: int | None = None,
    after: float | None = None,
    throttled: bool = False,
    pair: bool = False,
) -> GraphAnswer:
    return GraphAnswer(None, code, title, retryable, after, throttled, pair)


@pytest.mark.parametrize(
    ("status_code", "body", "expected"),
    [
        (
            200,
            SENT,
            GraphAnswer(
                "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjQ", None, None, False, None, False, False
            ),
        ),
        (
            201,
            SENT,
            GraphAnswer(
                "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjQ", None, None, False, None, False, False
            ),
        ),
        (200, b'{"messages": []}', answer("HTTP 200 without messages[0].id", True)),
        (200, b'{"messages": [{"id": ""}]}', answer("HTTP 200 without messages[0].id", True)),
        (200, b'{"messages": [{"id": 5}]}', answer("HTTP 200 without messages[0].id", True)),
        (200, b"[]", answer("HTTP 200 without messages[0].id", True)),
        (200, b"<html>ok</html>", answer("HTTP 200 with a body that is not JSON", True)),
        (200, b"", answer("HTTP 200 with a body that is not JSON", True)),
        (200, None, answer("HTTP 200 with a body that is not JSON", True)),
        (200, b"\xff\xfe\x00", answer("HTTP 200 with a body that is not JSON", True)),
        (200, b"[" * 100_000, answer("HTTP 200 with a body that is not JSON", True)),
        # throughput and pair limits
        (
            400,
            graph_error(130429, "(#130429) Rate limit hit"),
            answer("Rate limit hit", True, 130429, 1.0, throttled=True),
        ),
        (
            400,
            graph_error(
                131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"
            ),
            answer(
                "(Business Account, Consumer Account) pair rate limit hit",
                True,
                131056,
                6.0,
                pair=True,
            ),
        ),
        (
            400,
            graph_error(80007, "(#80007) Rate limit issues"),
            answer("Rate limit issues", True, 80007, 60.0, throttled=True),
        ),
        (
            429,
            graph_error(4, "(#4) Application request limit reached"),
            answer("Application request limit reached", True, 4, 60.0, throttled=True),
        ),
        (
            400,
            graph_error(131048, "(#131048) Spam rate limit hit"),
            answer("Spam rate limit hit", True, 131048, 60.0),
        ),
        (
            400,
            graph_error("130429", "(#130429) Rate limit hit"),
            answer("Rate limit hit", True, 130429, 1.0, throttled=True),
        ),
        # transient on Meta's side
        (
            500,
            graph_error(1, "An unknown error occurred"),
            answer("An unknown error occurred", True, 1),
        ),
        (
            503,
            graph_error(2, "Service temporarily unavailable"),
            answer("Service temporarily unavailable", True, 2),
        ),
        (
            500,
            graph_error(131000, "Something went wrong"),
            answer("Something went wrong", True, 131000),
        ),
        (
            503,
            graph_error(131016, "Service unavailable"),
            answer("Service unavailable", True, 131016),
        ),
        (
            400,
            graph_error(133004, "Server temporarily unavailable"),
            answer("Server temporarily unavailable", True, 133004),
        ),
        (
            400,
            graph_error(131057, "Account in maintenance mode"),
            answer("Account in maintenance mode", True, 131057),
        ),
        (502, b"<html>Bad Gateway</html>", answer("HTTP 502", True)),
        (504, None, answer("HTTP 504", True)),
        (429, b"", answer("HTTP 429", True)),
        (408, b"", answer("HTTP 408", True)),
        (
            500,
            graph_error(131026, "Message undeliverable"),
            answer("Message undeliverable", True, 131026),
        ),
        # auth and permission: the operator fixes them, the message waits
        (
            401,
            graph_error(190, "Error validating access token: Session has expired"),
            answer("Error validating access token: Session has expired", True, 190),
        ),
        (401, graph_error(0, "(#0) AuthException"), answer("AuthException", True, 0)),
        (
            403,
            graph_error(10, "(#10) Permission denied"),
            answer("Permission denied", True, 10),
        ),
        (
            403,
            graph_error(200, "(#200) Permissions error"),
            answer("Permissions error", True, 200),
        ),
        (
            403,
            graph_error(299, "(#299) API Permission"),
            answer("API Permission", True, 299),
        ),
        (500, graph_error(3, "(#3) Capability"), answer("Capability", True, 3)),
        (
            403,
            graph_error(131005, "(#131005) Access denied"),
            answer("Access denied", True, 131005),
        ),
        # permanent
        (
            400,
            graph_error(131030, "(#131030) Recipient phone number not in allowed list"),
            answer("Recipient phone number not in allowed list", False, 131030),
        ),
        (
            400,
            graph_error(
                131047,
                "(#131047) Re-engagement message",
                error_user_title="Outside the customer service window",
            ),
            answer("Outside the customer service window", False, 131047),
        ),
        (
            400,
            graph_error(131026, "Message undeliverable"),
            answer("Message undeliverable", False, 131026),
        ),
        (
            400,
            graph_error(131051, "Unsupported message type"),
            answer("Unsupported message type", False, 131051),
        ),
        (
            404,
            graph_error(132001, "Template name does not exist in the translation"),
            answer("Template name does not exist in the translation", False, 132001),
        ),
        (
            400,
            graph_error(132000, "Number of parameters does not match"),
            answer("Number of parameters does not match", False, 132000),
        ),
        (
            400,
            graph_error(132005, "Translated text too long"),
            answer("Translated text too long", False, 132005),
        ),
        (
            400,
            graph_error(132007, "Template format character policy violated"),
            answer("Template format character policy violated", False, 132007),
        ),
        (
            400,
            graph_error(132012, "Parameter format mismatch"),
            answer("Parameter format mismatch", False, 132012),
        ),
        (
            400,
            graph_error(100, "(#100) Invalid parameter"),
            answer("Invalid parameter", False, 100),
        ),
        (
            400,
            graph_error(131009, "(#131009) Parameter value is not valid"),
            answer("Parameter value is not valid", False, 131009),
        ),
        (
            400,
            graph_error(131021, "Recipient cannot be sender"),
            answer("Recipient cannot be sender", False, 131021),
        ),
        (
            400,
            graph_error(131049, "Meta chose not to deliver"),
            answer("Meta chose not to deliver", False, 131049),
        ),
        (400, graph_error("nope", "odd code"), answer("odd code", False)),
        (400, json.dumps({"error": {"code": 100}}).encode(), answer("HTTP 400", False, 100)),
        (
            400,
            json.dumps({"error": {"code": 100, "message": "x" * 500}}).encode(),
            answer("x" * 200, False, 100),
        ),
        (400, b"", answer("HTTP 400", False)),
        (404, b"<html>Not Found</html>", answer("HTTP 404", False)),
        (400, b'{"error": "bad"}', answer("HTTP 400", False)),
        (302, b"", answer("HTTP 302", True)),
    ],
)
def test_classify(status_code: int, body: bytes | None, expected: GraphAnswer) -> None:
    assert classify(status_code, body) == expected


def test_no_answer_is_retried_and_says_why() -> None:
    timed_out = classify(None, None, error="timeout after 10 s")

    assert timed_out == answer("timeout after 10 s", True)
    assert not timed_out.succeeded
    assert classify(None, None) == answer("no answer from the Graph API", True)


def test_succeeded_is_having_metas_message_id() -> None:
    assert classify(200, SENT).succeeded
    assert not classify(200, b"{}").succeeded
    assert not classify(400, graph_error(131030, "x")).succeeded


@given(st.none() | st.integers(100, 599), st.none() | st.binary(max_size=64))
def test_classify_never_raises(status_code: int | None, body: bytes | None) -> None:
    result = classify(status_code, body)

    assert result.succeeded or result.error_title
