"""The WhatsApp Cloud API's wire formats, as pure functions: no I/O, no database, no HTTP client.

Three things live here, each checked by ``tests/unit/test_meta.py`` without a network:

``parse_callback``
    Reads the JSON of a POST Meta makes to our callback URL into inbound messages, status
    updates, callback-level errors and template status changes. Meta batches: every item of
    ``messages[]``, ``statuses[]`` and ``errors[]`` of every change of every entry is read,
    never only the first. One bad item (a missing field, a JSON type other than Meta's, a status
    we do not track) is skipped with one line in ``Callback.problems`` and never costs the rest
    of the batch; only a top level that is not an object with an ``entry`` list raises
    ``ValidationFailed``. Messages and statuses are routed by ``value.metadata.phone_number_id``;
    template status changes carry no metadata and are routed by ``entry[].id``, the WhatsApp
    Business Account (WABA) id. Changes of other fields (``account_update``, coexistence echoes
    …) are skipped with a problem line each.
``signature_matches``
    Checks ``X-Hub-Signature-256`` (``sha256=`` + hex HMAC-SHA256 of the raw body bytes, keyed
    with the app secret) in constant time. A malformed header is ``False``, never an exception.
``classify``
    Says what an answer to ``POST /{version}/{phone-number-id}/messages`` means for the send:
    done (Meta's message id), retry (and how long to wait at least), or give up.

What ``InboundMessage.body`` holds for each message type (the ``message.received`` body, SPEC §4):

============================  ================================================================
type                          body
============================  ================================================================
text                          ``text.body``
image, video, document        the caption when there is one, else ``[image]``, ``[video]``,
                              ``[document: invoice.pdf]`` (``[document]`` without a filename)
audio, sticker                ``[audio]``, ``[sticker]`` (they have no caption)
location                      ``[location: -6.2, 106.8 Name]`` (name, else address, if given)
contacts                      ``[contacts: Ana Putri, Budi]`` (formatted names)
interactive                   the ``button_reply`` or ``list_reply`` title; other kinds
                              (``nfm_reply`` …) ``[interactive: nfm_reply]``
button (template quick reply) ``button.text`` (else ``button.payload``)
reaction                      ``[reaction ❤ to wamid.X]``; an empty emoji removes a reaction:
                              ``[reaction removed from wamid.X]``
order                         ``order.text`` when not empty, else ``[order: 3 items]``
system                        ``system.body`` (e.g. "User A changed from … to …")
unsupported                   ``[unsupported]`` (``[unsupported: poll]`` when Meta names it)
anything else                 ``[<type>]``
============================  ================================================================

A message whose content object is missing or malformed, or whose text is empty, keeps its place
with the placeholder for its type, so a body is never empty: the message exists, the customer
sent it, and dropping it would be worse than a plain body. Only the fields without which it
cannot be stored or routed make it a problem: ``id``, ``from`` (digits, with or without a
``+``), ``timestamp`` (whole unix seconds, a string or an integer) and ``type``.

How ``classify`` reads Graph's answers (Meta's error-code reference; ``code`` is ``error.code``):

=========================================  ===========  ===============  =======================
answer                                     retryable    retry_after_s    flags
=========================================  ===========  ===============  =======================
2xx with ``messages[0].id``                (succeeded)  None
2xx without it, or not JSON                yes          None
no HTTP answer (timeout, connection)       yes          None
HTTP 5xx, 429, 408; other non-4xx status   yes          None
130429 throughput limit of the number      yes          1                throttled
80007 WABA rate limit                      yes          60               throttled
4 app API call limit                       yes          60               throttled
131056 pair rate limit (same recipient)    yes          6                pair_limited
131048 spam rate limit                     yes          60
1, 2 API unknown/service; 131000 something
went wrong; 131016 service unavailable;
133004 server temporarily unavailable;
131057 account in maintenance mode         yes          None
0, 3, 10, 190, 200-299, 131005 auth and
permission (token expired, revoked,
missing permission)                        yes          None
any other code on a 4xx (131026
undeliverable, 131047 outside the 24 h
window, 131051 unsupported type, 132xxx
template problems, 100, 131009, 131021,
131030 not in allowed list, …)             no           None
4xx without an error object                no           None             error_title "HTTP 4xx"
=========================================  ===========  ===============  =======================

Auth and permission errors are retried on purpose: they are the operator's to fix (a new access
token, a granted permission), nothing about the message is wrong, and a message accepted with a
2xx must not be lost while the operator fixes it; the queue's retry schedule still ends it if the
fix never comes (3, 200-299 and 131005 are Meta's permission codes beside 0, 10 and 190; 131057
is transient by Meta's description; 408 is a timeout). A 2xx that is not understood is retried:
Meta may not have taken the message, and a rare duplicate beats a silent loss.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeGuard, TypeVar

import orjson

from bitbybit.errors import ValidationFailed

__all__ = [
    "SIGNATURE_HEADER",
    "STATUSES",
    "Callback",
    "CallbackError",
    "GraphAnswer",
    "InboundMessage",
    "StatusUpdate",
    "TemplateStatus",
    "classify",
    "parse_callback",
    "signature_matches",
]

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
STATUSES: Final = frozenset({"sent", "delivered", "read", "failed"})
"""The statuses we track; Meta also sends ``deleted`` and ``warning``, which become problems."""

T = TypeVar("T")

MESSAGES_FIELD: Final = "messages"
TEMPLATE_FIELD: Final = "message_template_status_update"
MEDIA_TYPES: Final = ("image", "video", "document", "audio", "sticker")
MAX_TITLE: Final = 200
"""Characters kept of an error title: Meta's are one short line; a proxy's page is not."""
MAX_TIMESTAMP_DIGITS: Final = 12
"""Unix seconds up to the year 33658; also keeps ``int()`` far from its digit limit."""
MAX_PHONE_DIGITS: Final = 15
"""E.164 allows at most 15 digits."""


# --- parsing callbacks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message a customer sent to a business number (``value.messages[]``)."""

    phone_number_id: str
    """The business number it was sent to (``metadata.phone_number_id``): the routing key."""
    wa_message_id: str
    """``messages[].id`` (``wamid.…``): the dedup key, since Meta delivers at least once."""
    sender: str
    """E.164: ``+`` and the digits of ``messages[].from``."""
    profile_name: str | None
    """``contacts[].profile.name`` of the contact whose ``wa_id`` is the sender, if any."""
    type: str
    """Meta's type as given: ``text``, ``image``, …, ``unsupported``."""
    body: str
    """Readable text for every type (the table in the module docstring)."""
    media_id: str | None
    """The media id to download an image, audio, video, document or sticker with."""
    media_mime_type: str | None
    timestamp_ms: int
    context_message_id: str | None
    """``messages[].context.id``: the message this one replies to (or reacts from a button of)."""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A change of status of a message we sent (``value.statuses[]``)."""

    phone_number_id: str
    wa_message_id: str
    """``statuses[].id``: the ``wamid`` Graph gave when our message was accepted."""
    status: str
    """One of ``STATUSES``."""
    recipient: str
    """E.164: ``+`` and the digits of ``recipient_id``."""
    timestamp_ms: int
    error_code: int | None
    """``errors[0].code`` of a failed status (e.g. 131047, outside the 24-hour window)."""
    error_title: str | None
    """``errors[0].title`` (else ``message``) of a failed status."""


@dataclass(frozen=True, slots=True)
class CallbackError:
    """An error Meta reports for a number but not for one message (``value.errors[]``)."""

    phone_number_id: str | None
    code: int | None
    title: str


@dataclass(frozen=True, slots=True)
class TemplateStatus:
    """A template's review outcome or state change (field ``message_template_status_update``)."""

    waba_id: str
    """``entry[].id``: the only routing key these callbacks carry."""
    template_name: str
    event: str
    """``APPROVED``, ``REJECTED``, ``PAUSED``, ``DISABLED``, … as Meta spells it."""
    reason: str | None
    """Meta's reason; its ``"NONE"`` (no reason) is ``None`` here."""


@dataclass(slots=True)
class Callback:
    """Everything one callback POST carried, in document order, and what was skipped."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    errors: list[CallbackError] = field(default_factory=list)
    template_statuses: list[TemplateStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One readable line per item skipped, e.g. ``entry[0].changes[1].value.messages[2]: no id``."""

    @property
    def phone_number_ids(self) -> set[str]:
        """Every routing key used by the messages, statuses and errors."""
        ids = {one.phone_number_id for one in self.messages}
        ids.update(one.phone_number_id for one in self.statuses)
        ids.update(one.phone_number_id for one in self.errors if one.phone_number_id is not None)
        return ids

    @property
    def waba_ids(self) -> set[str]:
        """The WABA ids of the template status changes."""
        return {one.waba_id for one in self.template_statuses}


class _Skip(Exception):
    """Skip this item, because …: raised inside one item's parser; the loop records the reason
    as a problem and goes on. Never seen outside this module."""


def parse_callback(document: object) -> Callback:
    """Read a parsed callback document; see the module docstring for what is kept and skipped.

    Raises ``ValidationFailed`` only when ``document`` is not an object with an ``entry`` list.
    """
    if not isinstance(document, dict):
        raise ValidationFailed.field("entry", "a callback must be a JSON object with an entry list")
    entries = document.get("entry")
    if not isinstance(entries, list):
        what = "is missing" if entries is None else f"must be a list, not {_kind(entries)}"
        raise ValidationFailed.field("entry", what)
    out = Callback()
    for e, entry in enumerate(entries):
        where = f"entry[{e}]"
        if not isinstance(entry, dict):
            out.problems.append(f"{where}: not an object but {_kind(entry)}")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            out.problems.append(f"{where}.changes: not a list but {_kind(changes)}")
            continue
        for c, change in enumerate(changes):
            _read_change(out, entry.get("id"), change, f"{where}.changes[{c}]")
    return out


def _read_change(out: Callback, waba_id: object, change: object, where: str) -> None:
    if not isinstance(change, dict):
        out.problems.append(f"{where}: not an object but {_kind(change)}")
        return
    name = change.get("field")
    value = change.get("value")
    if name not in (MESSAGES_FIELD, TEMPLATE_FIELD):
        out.problems.append(f"{where}: field {name!r} is not one we read")
        return
    if not isinstance(value, dict):
        out.problems.append(f"{where}.value: not an object but {_kind(value)}")
        return
    if name == TEMPLATE_FIELD:
        _collect(
            out.problems,
            f"{where}.value",
            out.template_statuses,
            partial(_template, waba_id, value),
        )
        return
    metadata = value.get("metadata")
    number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    number = number if _text(number) else None
    where = f"{where}.value"
    names = _profile_names(value.get("contacts"))
    for path, item in _items(out.problems, value, "messages", where):
        _collect(out.problems, path, out.messages, partial(_message, number, item, names))
    for path, item in _items(out.problems, value, "statuses", where):
        _collect(out.problems, path, out.statuses, partial(_status, number, item))
    for path, item in _items(out.problems, value, "errors", where):
        _collect(out.problems, path, out.errors, partial(_callback_error, number, item))


def _items(
    problems: list[str], value: dict[str, Any], key: str, where: str
) -> Iterator[tuple[str, object]]:
    """Each item of ``value[key]`` with its path; none (and a problem) when it is not a list."""
    items = value.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        problems.append(f"{where}.{key}: not a list but {_kind(items)}")
        return
    for i, item in enumerate(items):
        yield f"{where}.{key}[{i}]", item


def _collect(problems: list[str], where: str, into: list[T], parse: Callable[[], T]) -> None:
    """Append what ``parse`` reads, or record why the item was skipped."""
    try:
        into.append(parse())
    except _Skip as skipped:
        problems.append(f"{where}: {skipped}")


def _message(number: str | None, item: object, names: dict[str, str]) -> InboundMessage:
    data = _object(item)
    routing = _route(number)
    wamid = _required_text(data, "id")
    digits = _phone(data.get("from"), "from")
    timestamp_ms = _timestamp(data.get("timestamp"))
    kind = _required_text(data, "type")
    raw = data.get(kind)
    content: dict[str, Any] = raw if isinstance(raw, dict) else {}
    media_id = media_mime_type = None
    if kind in MEDIA_TYPES:
        media_id = _optional_text(content.get("id"))
        media_mime_type = _optional_text(content.get("mime_type"))
    context = data.get("context")
    return InboundMessage(
        phone_number_id=routing,
        wa_message_id=wamid,
        sender="+" + digits,
        profile_name=names.get(digits),
        type=kind,
        body=_contacts_body(raw) if kind == "contacts" else _body(kind, content),
        media_id=media_id,
        media_mime_type=media_mime_type,
        timestamp_ms=timestamp_ms,
        context_message_id=_optional_text(context.get("id")) if isinstance(context, dict) else None,
    )


def _status(number: str | None, item: object) -> StatusUpdate:
    data = _object(item)
    routing = _route(number)
    wamid = _required_text(data, "id")
    status = data.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise _Skip(f"status {status!r} is not one we track")
    digits = _phone(data.get("recipient_id"), "recipient_id")
    timestamp_ms = _timestamp(data.get("timestamp"))
    code = title = None
    errors = data.get("errors")
    if status == "failed" and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = _code(errors[0].get("code"))
        title = _error_title(errors[0])
    return StatusUpdate(
        phone_number_id=routing,
        wa_message_id=wamid,
        status=status,
        recipient="+" + digits,
        timestamp_ms=timestamp_ms,
        error_code=code,
        error_title=title,
    )


def _callback_error(number: str | None, item: object) -> CallbackError:
    data = _object(item)
    code = _code(data.get("code"))
    title = _error_title(data)
    if title is None:
        if code is None:
            raise _Skip("an error with neither a code nor a title")
        title = f"error {code}"
    return CallbackError(phone_number_id=number, code=code, title=title)


def _template(waba_id: object, value: dict[str, Any]) -> TemplateStatus:
    if not isinstance(waba_id, str) or not waba_id:
        raise _Skip("no entry id (the WABA id) to route a template status by")
    reason = value.get("reason")
    return TemplateStatus(
        waba_id=waba_id,
        template_name=_required_text(value, "message_template_name"),
        event=_required_text(value, "event"),
        reason=reason if _text(reason) and reason.upper() != "NONE" else None,
    )


def _body(kind: str, content: dict[str, Any]) -> str:
    """The readable body of a message of ``kind`` (the table in the module docstring)."""
    if kind == "text":
        text = content.get("body")
        return text if _text(text) else "[text]"
    if kind in MEDIA_TYPES:
        caption = content.get("caption")
        if _text(caption):
            return caption
        filename = content.get("filename")
        if kind == "document" and _text(filename):
            return f"[document: {filename}]"
        return f"[{kind}]"
    if kind == "location":
        return _location(content)
    if kind == "interactive":
        sub = content.get("type")
        reply = content.get(sub) if isinstance(sub, str) else None
        if sub in ("button_reply", "list_reply") and isinstance(reply, dict):
            title = reply.get("title")
            if _text(title):
                return title
        return f"[interactive: {sub}]" if _text(sub) else "[interactive]"
    if kind == "button":
        for key in ("text", "payload"):
            text = content.get(key)
            if _text(text):
                return text
        return "[button]"
    if kind == "reaction":
        emoji = content.get("emoji")
        target = content.get("message_id")
        if not _text(emoji):
            return f"[reaction removed from {target}]" if _text(target) else "[reaction removed]"
        return f"[reaction {emoji} to {target}]" if _text(target) else f"[reaction {emoji}]"
    if kind == "order":
        text = content.get("text")
        if _text(text):
            return text
        items = content.get("product_items")
        if isinstance(items, list):
            return f"[order: {len(items)} item{'' if len(items) == 1 else 's'}]"
        return "[order]"
    if kind == "system":
        text = content.get("body")
        return text if _text(text) else "[system]"
    if kind == "unsupported":
        inner = content.get("type")
        return f"[unsupported: {inner}]" if _text(inner) else "[unsupported]"
    return f"[{kind}]"


def _location(content: dict[str, Any]) -> str:
    latitude, longitude = content.get("latitude"), content.get("longitude")
    if not (_number(latitude) and _number(longitude)):
        return "[location]"
    label = next((x for x in (content.get("name"), content.get("address")) if _text(x)), None)
    return f"[location: {latitude}, {longitude}{' ' + label if label else ''}]"


def _contacts_body(cards: object) -> str:
    names = []
    if isinstance(cards, list):
        for card in cards:
            name = card.get("name") if isinstance(card, dict) else None
            formatted = name.get("formatted_name") if isinstance(name, dict) else None
            if _text(formatted):
                names.append(formatted)
    return f"[contacts: {', '.join(names)}]" if names else "[contacts]"


def _profile_names(contacts: object) -> dict[str, str]:
    """``wa_id`` → profile name; a contact without a usable profile is simply not there."""
    names: dict[str, str] = {}
    if isinstance(contacts, list):
        for contact in contacts:
            if not isinstance(contact, dict):
                continue
            wa_id, profile = contact.get("wa_id"), contact.get("profile")
            name = profile.get("name") if isinstance(profile, dict) else None
            if isinstance(wa_id, str) and _text(name):
                names[wa_id.removeprefix("+")] = name
    return names


# --- small readers: each returns a clean value or raises _Skip with the reason ----------------


def _object(item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _Skip(f"not an object but {_kind(item)}")
    return item


def _route(number: str | None) -> str:
    if number is None:
        raise _Skip("no metadata.phone_number_id to route by")
    return number


def _required_text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise _Skip(f"no {key}")
    if not isinstance(value, str):
        raise _Skip(f"{key} must be a string, not {_kind(value)}")
    if not value:
        raise _Skip(f"{key} is empty")
    return value


def _phone(value: object, key: str) -> str:
    """The digits of a WhatsApp id (``972987654321`` or ``+972987654321``)."""
    if value is None:
        raise _Skip(f"no {key}")
    digits = value.removeprefix("+") if isinstance(value, str) else ""
    if not (
        digits.isascii()
        and digits.isdigit()
        and len(digits) <= MAX_PHONE_DIGITS
        and digits[0] != "0"
    ):
        raise _Skip(f"{key} {_short(value)} is not a phone number in international digits")
    return digits


def _timestamp(value: object) -> int:
    """Milliseconds from Meta's unix seconds (a digit string; an integer is accepted too)."""
    if value is None:
        raise _Skip("no timestamp")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seconds = value
    elif (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= MAX_TIMESTAMP_DIGITS
    ):
        seconds = int(value)
    else:
        raise _Skip(f"timestamp {_short(value)} is not whole unix seconds")
    return seconds * 1000


def _code(value: object) -> int | None:
    """An error code: Meta sends integers; a digit string is read too; anything else is None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return None


def _error_title(error: dict[str, Any]) -> str | None:
    for key in ("title", "message"):
        value = error.get(key)
        if _text(value) and value.strip():
            return value.strip()[:MAX_TITLE]
    return None


def _optional_text(value: object) -> str | None:
    return value if _text(value) else None


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """The JSON name of a value's type, for problem lines."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- signature ---------------------------------------------------------------------------------

_PREFIX: Final = "sha256="
_HEX: Final = frozenset("0123456789abcdef")


def signature_matches(raw: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` (``X-Hub-Signature-256``) signs ``raw`` with ``app_secret``.

    ``raw`` must be the body bytes exactly as received: re-serialised JSON never matches. Any
    malformed header, and an empty secret, is ``False``; nothing here raises.
    """
    if not isinstance(header, str) or not isinstance(app_secret, str) or not app_secret:
        return False
    header = header.strip()
    if not header.startswith(_PREFIX):
        return False
    given = header[len(_PREFIX) :].lower()
    if len(given) != 64 or not _HEX.issuperset(given):
        return False
    try:
        key = app_secret.encode("utf-8")
        expected = hmac.new(key, raw, hashlib.sha256).hexdigest()
    except (UnicodeEncodeError, TypeError):
        return False
    return hmac.compare_digest(expected, given)


# --- Graph answers -----------------------------------------------------------------------------

THROTTLED: Final = frozenset({4, 80007, 130429})
PAIR_LIMITED: Final = 131056
RETRY_AFTER_S: Final = {130429: 1.0, 131056: 6.0, 80007: 60.0, 4: 60.0, 131048: 60.0}
TRANSIENT: Final = frozenset({1, 2, 131000, 131016, 131057, 133004, 131048})
AUTH: Final = frozenset({0, 3, 10, 190, 131005, *range(200, 300)})
RETRYABLE_CODES: Final = THROTTLED | TRANSIENT | AUTH | {PAIR_LIMITED}
RETRYABLE_STATUSES: Final = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class GraphAnswer:
    """What one answer to a send means (the table in the module docstring)."""

    wa_message_id: str | None
    """``messages[0].id`` of a 2xx answer: the ``wamid`` status callbacks will name."""
    error_code: int | None
    error_title: str | None
    retryable: bool
    retry_after_s: float | None
    """A minimum wait before the retry, when the error implies one."""
    throttled: bool
    """The sending number's throughput limit was hit: the number should slow down."""
    pair_limited: bool
    """This recipient gets no more messages for a while (131056)."""

    @property
    def succeeded(self) -> bool:
        return self.wa_message_id is not None


def classify(
    status_code: int | None, body: bytes | None, *, error: str | None = None
) -> GraphAnswer:
    """Classify an answer; ``status_code=None`` means no HTTP answer, and ``error`` says why."""
    if status_code is None:
        return _retry(error or "no answer from the Graph API")
    document = _json(body)
    if 200 <= status_code < 300:
        wamid = _first_message_id(document)
        if wamid is not None:
            return GraphAnswer(wamid, None, None, False, None, False, False)
        if document is None:
            return _retry(f"HTTP {status_code} with a body that is not JSON")
        return _retry(f"HTTP {status_code} without messages[0].id")
    detail = document.get("error") if isinstance(document, dict) else None
    if not isinstance(detail, dict):
        retryable = not 400 <= status_code < 500 or status_code in RETRYABLE_STATUSES
        title = f"HTTP {status_code}"
        return GraphAnswer(None, None, title, retryable, None, False, False)
    code = _code(detail.get("code"))
    title = _graph_title(detail) or f"HTTP {status_code}"
    retryable = (
        code in RETRYABLE_CODES or not 400 <= status_code < 500 or status_code in RETRYABLE_STATUSES
    )
    return GraphAnswer(
        wa_message_id=None,
        error_code=code,
        error_title=title,
        retryable=retryable,
        retry_after_s=RETRY_AFTER_S.get(code) if code is not None else None,
        throttled=code in THROTTLED,
        pair_limited=code == PAIR_LIMITED,
    )


def _retry(title: str) -> GraphAnswer:
    """An answer that is not Meta's error: retried, with ``title`` saying what went wrong."""
    return GraphAnswer(None, None, title[:MAX_TITLE], True, None, False, False)


def _json(body: bytes | None) -> object:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # (also invalid UTF-8, and nesting past orjson's limit)
        return None


def _first_message_id(document: object) -> str | None:
    messages = document.get("messages") if isinstance(document, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    wamid = first.get("id") if isinstance(first, dict) else None
    return wamid if _text(wamid) else None


def _graph_title(detail: dict[str, Any]) -> str | None:
    """The error's title, without the ``(#131030)`` Meta puts before its message: the code is
    kept beside it (``error_code``), and callbacks' titles have no such prefix."""
    for key in ("error_user_title", "message"):
        value = detail.get(key)
        if isinstance(value, str) and value.strip():
            title = _CODE_PREFIX.sub("", value.strip(), count=1) or value.strip()
            return title[:MAX_TITLE]
    return None


_CODE_PREFIX: Final = re.compile(r"^\(#\d+\)\s*")
