"""A fake WhatsApp Cloud (Graph) API on loopback, and builders of Meta's webhook callbacks.

Integration tests point real ``bitbybit`` processes at the fake with ``BITBYBIT_GRAPH_URL``; it
answers ``POST /{version}/{phone_number_id}/messages`` as Meta does (bearer token, body checks,
Meta's error objects), records every request, and fails on demand: per recipient, throttling, 5xx,
slow answers and dropped connections. Like ``receivers.py`` it runs in the test's event loop:
``async with fake_graph({"PN1": "token"}) as graph``.

The builders below are pure functions that return the documents Meta posts to
``/whatsapp/webhooks/meta`` (messages, statuses, template status updates), shaped after Meta's
webhook reference; ``encode`` serialises them the way Meta does (ASCII, ``\\/``) and ``sign``
gives ``X-Hub-Signature-256``: a server that verifies re-serialised JSON, not the raw bytes, fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

# -- Meta's error objects ----------------------------------------------------------------------

# Titles Meta puts in ``message`` as "(#code) title" (WhatsApp error codes reference).
TITLES: dict[int, str] = {
    4: "Application request limit reached",
    100: "Invalid parameter",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131026: "Message undeliverable",
    131030: "Recipient phone number not in allowed list",
    131031: "Account has been locked",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131051: "Unsupported message type",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template does not exist",
}

DETAILS: dict[int, str] = {
    130429: "Cloud API message throughput has been reached.",
    131056: (
        "Message failed to send because there were too many messages sent from this phone"
        " number to the same phone number in a short period of time."
    ),
    131047: (
        "Message failed to send because more than 24 hours have passed since the customer last"
        " replied to this number."
    ),
}

ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<phone_number_id>[^/]+)/messages/?$")
_DIGITS = re.compile(r"^\d{6,15}$")
_wamids = itertools.count(1)


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")[:21]


def meta_error(
    code: int,
    message: str,
    *,
    type_: str = "OAuthException",
    details: str | None = None,
    subcode: int | None = None,
    transient: bool | None = None,
) -> dict[str, Any]:
    """Graph's error document; WhatsApp errors carry ``error_data`` with the details."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient is not None:
        error["is_transient"] = transient
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


def whatsapp_error(
    code: int, title: str | None = None, details: str | None = None
) -> dict[str, Any]:
    """A WhatsApp error as the send API answers it: "(#code) title" with details."""
    title = title or TITLES.get(code, "Error")
    return meta_error(code, f"(#{code}) {title}", details=details or DETAILS.get(code, title))


# -- recorded requests -------------------------------------------------------------------------


@dataclass
class GraphRequest:
    """One request as it arrived, and what the fake did with it."""

    method: str
    path: str
    version: str | None
    phone_number_id: str | None
    headers: dict[str, str]
    raw: bytes
    body: Any  # the parsed JSON, or None when the body is not JSON
    at: float  # time.monotonic() on arrival
    status: int | None = None  # None while in flight, and when the fake hung up
    answer: Any = None  # the JSON (or text) answered
    answered_at: float | None = None
    hung_up: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def wamid(self) -> str | None:
        if not self.ok:
            return None
        wamid: str = self.answer["messages"][0]["id"]
        return wamid

    @property
    def to(self) -> str | None:
        return self.body.get("to") if isinstance(self.body, dict) else None

    @property
    def type(self) -> str | None:
        return self.body.get("type") if isinstance(self.body, dict) else None

    @property
    def error_code(self) -> int | None:
        if isinstance(self.answer, dict) and isinstance(self.answer.get("error"), dict):
            code: int = self.answer["error"]["code"]
            return code
        return None

    def summary(self) -> str:
        outcome = "hung up" if self.hung_up else str(self.status or "in flight")
        if self.error_code is not None:
            outcome += f" code {self.error_code}"
        elif self.ok:
            outcome += f" {self.wamid}"
        return f"{self.method} {self.path} to={self.to} type={self.type} -> {outcome}"


@dataclass
class _Budget:
    """How many more requests a fault applies to; None means every one."""

    remaining: int | None

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


@dataclass
class _RecipientFault:
    budget: _Budget
    code: int
    title: str
    http_status: int
    details: str | None


# -- the fake ----------------------------------------------------------------------------------


@dataclass
class FakeGraph:
    """Meta's ``/messages`` endpoint. Checks run in Meta's order: the path, the access token,
    the phone-number id, the body; then programmed throttling and recipient failures. The
    infrastructure faults (``delay_ms``, ``hang_up``, ``server_error``) come before all of them,
    as a load balancer's would. Every fault counts only the requests that reach it."""

    tokens: dict[str, str] = field(default_factory=dict)  # phone_number_id -> access token
    delay_ms: int = 0
    requests: list[GraphRequest] = field(default_factory=list)
    sent: list[GraphRequest] = field(default_factory=list)
    base_url: str = ""
    _recipients: dict[str, _RecipientFault] = field(default_factory=dict)
    _throttles: list[tuple[_Budget, int]] = field(default_factory=list)
    _server_errors: list[tuple[_Budget, int, bool]] = field(default_factory=list)
    _hang_ups: list[_Budget] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL, for ``BITBYBIT_GRAPH_URL``."""
        return self.base_url

    @property
    def env(self) -> dict[str, str]:
        return {"BITBYBIT_GRAPH_URL": self.base_url}

    # -- programming faults

    def fail(
        self,
        to: str,
        code: int,
        title: str | None = None,
        http_status: int = 400,
        times: int | None = None,
        *,
        details: str | None = None,
    ) -> None:
        """Answer sends to ``to`` with this WhatsApp error, ``times`` times (None: always)."""
        self._recipients[to] = _RecipientFault(
            _Budget(times), code, title or TITLES.get(code, "Error"), http_status, details
        )

    def heal(self, to: str) -> None:
        self._recipients.pop(to, None)

    def throttle(self, times: int, code: int = 130429) -> None:
        """The next ``times`` valid sends get HTTP 400 with Meta's error for ``code``."""
        self._throttles.append((_Budget(times), code))

    def server_error(self, times: int, *, status: int = 500, json_body: bool = True) -> None:
        """The next ``times`` requests get a 5xx: Meta's JSON (code 131000, transient) or text."""
        self._server_errors.append((_Budget(times), status, json_body))

    def hang_up(self, times: int) -> None:
        """The next ``times`` requests have their connection closed without an answer."""
        self._hang_ups.append(_Budget(times))

    def clear_faults(self) -> None:
        self._recipients.clear()
        self._throttles.clear()
        self._server_errors.clear()
        self._hang_ups.clear()
        self.delay_ms = 0

    # -- waiting

    async def wait_for(self, count: int, within: float = 60.0) -> list[GraphRequest]:
        """Until ``count`` sends succeeded; the AssertionError lists every request seen."""
        await self._wait(lambda: len(self.sent) >= count, f"{count} successful sends", within)
        return self.sent

    async def wait_for_requests(self, count: int, within: float = 60.0) -> list[GraphRequest]:
        """Until ``count`` requests were answered (or hung up on), whatever the answer."""

        def done() -> bool:
            return sum(r.status is not None or r.hung_up for r in self.requests) >= count

        await self._wait(done, f"{count} answered requests", within)
        return self.requests

    async def _wait(self, done: Callable[[], bool], what: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                seen = "\n".join(f"  {r.summary()}" for r in self.requests) or "  (none)"
                raise AssertionError(
                    f"waited {within:.0f} s for {what}; {len(self.sent)} succeeded of"
                    f" {len(self.requests)} requests:\n{seen}"
                )
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))

    # -- serving

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short grace on stop: handlers held by ``delay_ms`` are cancelled, not awaited.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # a started TCPSite has a server
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        matched = _PATH.match(request.path)
        record = GraphRequest(
            method=request.method,
            path=request.path,
            version=matched["version"] if matched else None,
            phone_number_id=matched["phone_number_id"] if matched else None,
            headers=dict(request.headers),
            raw=raw,
            body=body,
            at=time.monotonic(),
        )
        self.requests.append(record)
        self._changed.set()
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if _take(self._hang_ups):
            record.hung_up, record.answered_at = True, time.monotonic()
            self._changed.set()
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)  # never written: the connection is gone
        status, answer = self._answer(request, record)
        record.status, record.answer, record.answered_at = status, answer, time.monotonic()
        if status == 200:
            self.sent.append(record)
        self._changed.set()
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)

    def _answer(self, request: web.Request, record: GraphRequest) -> tuple[int, Any]:
        for budget, status, json_body in self._server_errors:
            if budget.take():
                if not json_body:
                    return status, "Internal Server Error"
                return status, meta_error(
                    131000,
                    "(#131000) Something went wrong",
                    details="Something went wrong",
                    transient=True,
                )
        if record.phone_number_id is None or request.method != "POST":
            return 400, meta_error(
                2500, f"Unknown path components: {request.path}", type_="OAuthException"
            )
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token or token not in self.tokens.values():
            return 401, meta_error(
                190,
                "Error validating access token: the session is invalid or has expired.",
                subcode=463,
            )
        if self.tokens.get(record.phone_number_id) != token:
            return 400, meta_error(
                100,
                f"Unsupported post request. Object with ID '{record.phone_number_id}' does not"
                " exist, cannot be loaded due to missing permissions, or does not support this"
                " operation. Please read the Graph API documentation at"
                " https://developers.facebook.com/docs/graph-api",
                type_="GraphMethodException",
                subcode=33,
            )
        problem = validate(record.body)
        if problem is not None:
            return 400, meta_error(100, f"(#100) {problem}", details=problem)
        for budget, code in self._throttles:
            if budget.take():
                return 400, whatsapp_error(code)
        to: str = record.body["to"]
        fault = self._recipients.get(to)
        if fault is not None and fault.budget.take():
            return fault.http_status, whatsapp_error(fault.code, fault.title, fault.details)
        wamid = f"wamid.HBgL{to}FQIAERgS{next(_wamids):08X}{secrets.token_hex(6).upper()}AA=="
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }


def _take(budgets: Iterable[_Budget]) -> bool:
    return any(budget.take() for budget in budgets)


def validate(body: Any) -> str | None:
    """What Meta would refuse in a send body, naming the field; None when it is acceptable.

    Stricter than Meta on two points, both contracts of our channel: ``to`` must be bare digits
    (Meta also takes "+" and spaces) and ``type`` must be given (Meta defaults it to text)."""
    if not isinstance(body, dict):
        return "Param body must be a JSON object"
    if "messaging_product" not in body:
        return "The parameter messaging_product is required."
    if body["messaging_product"] != "whatsapp":
        return "Param messaging_product must be 'whatsapp'"
    if body.get("recipient_type", "individual") != "individual":
        return "Param recipient_type must be 'individual'"
    if "to" not in body:
        return "The parameter to is required."
    if not isinstance(body["to"], str) or not _DIGITS.match(body["to"]):
        return "Param to must be a phone number of 6 to 15 digits without '+'"
    kind = body.get("type")
    if kind is None:
        return "The parameter type is required."
    if kind not in ("text", "image", "template"):
        return "Param type must be one of {text, image, template}"
    if not isinstance(body.get(kind), dict):
        return f"The parameter {kind} is required."
    content: dict[str, Any] = body[kind]
    if kind == "text":
        return _check_text(content)
    if kind == "image":
        return _check_image(content)
    return _check_template(content)


def _check_text(text: dict[str, Any]) -> str | None:
    if "body" not in text:
        return "The parameter text['body'] is required."
    if not isinstance(text["body"], str) or not text["body"].strip():
        return "Param text['body'] must be a non-empty string"
    if len(text["body"]) > 4096:
        return "Param text['body'] must be at most 4096 characters long"
    if not isinstance(text.get("preview_url", False), bool):
        return "Param text['preview_url'] must be a boolean"
    return None


def _check_image(image: dict[str, Any]) -> str | None:
    if "link" not in image and "id" not in image:
        return "The parameter image['link'] is required."
    link = image.get("link")
    if link is not None and (
        not isinstance(link, str) or not re.match(r"^https?://[^/\s]+", link, re.IGNORECASE)
    ):
        return "Param image['link'] must be a valid http or https URL"
    caption = image.get("caption")
    if caption is not None and (not isinstance(caption, str) or len(caption) > 1024):
        return "Param image['caption'] must be a string of at most 1024 characters"
    return None


def _check_template(template: dict[str, Any]) -> str | None:
    if not isinstance(template.get("name"), str) or not template["name"]:
        return "The parameter template['name'] is required."
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        return "The parameter template['language']['code'] is required."
    components = template.get("components", [])
    if not isinstance(components, list):
        return "Param template['components'] must be an array"
    for i, component in enumerate(components):
        if not isinstance(component, dict) or not isinstance(component.get("type"), str):
            return f"The parameter template['components'][{i}]['type'] is required."
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list) or not all(
            isinstance(p, dict) and isinstance(p.get("type"), str) for p in parameters
        ):
            return f"Param template['components'][{i}]['parameters'] must be typed objects"
    return None


@asynccontextmanager
async def fake_graph(tokens: Mapping[str, str] | None = None) -> AsyncIterator[FakeGraph]:
    """A fake Graph API on 127.0.0.1 with a free port; ``tokens`` maps phone-number id to token."""
    graph = FakeGraph(dict(tokens or {}))
    await graph.start()
    try:
        yield graph
    finally:
        await graph.stop()


# -- Meta's callbacks --------------------------------------------------------------------------


def contact(wa_id: str, name: str | None = None) -> dict[str, Any]:
    """A ``contacts[]`` item; ``name=None`` gives Meta's profile-less contact."""
    if name is None:
        return {"wa_id": wa_id}
    return {"profile": {"name": name}, "wa_id": wa_id}


def text_message(wamid: str, from_digits: str, body: str, timestamp_s: int) -> dict[str, Any]:
    return {
        "from": from_digits,
        "id": wamid,
        "timestamp": str(timestamp_s),
        "text": {"body": body},
        "type": "text",
    }


_MIME = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg; codecs=opus",
    "document": "application/pdf",
    "sticker": "image/webp",
}


def media_message(
    wamid: str,
    from_digits: str,
    kind: str,
    media_id: str,
    caption: str | None = None,
    *,
    timestamp_s: int = 1_700_000_000,
    mime_type: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """An inbound image, video, audio (voice note), document or sticker message."""
    if kind not in _MIME:
        raise ValueError(f"unknown media kind {kind!r}; one of {sorted(_MIME)}")
    media: dict[str, Any] = {
        "mime_type": mime_type or _MIME[kind],
        "sha256": hashlib.sha256(media_id.encode()).hexdigest(),
        "id": media_id,
    }
    if caption is not None and kind in ("image", "video", "document"):
        media["caption"] = caption
    if kind == "document":
        media["filename"] = filename or f"{media_id}.pdf"
    if kind == "audio":
        media["voice"] = True
    if kind == "sticker":
        media["animated"] = False
    return {
        "from": from_digits,
        "id": wamid,
        "timestamp": str(timestamp_s),
        "type": kind,
        kind: media,
    }


def location_message(
    wamid: str, from_digits: str, latitude: float, longitude: float, timestamp_s: int
) -> dict[str, Any]:
    return {
        "from": from_digits,
        "id": wamid,
        "timestamp": str(timestamp_s),
        "location": {"latitude": latitude, "longitude": longitude},
        "type": "location",
    }


def unsupported_message(wamid: str, from_digits: str, timestamp_s: int) -> dict[str, Any]:
    """What Meta sends for a message type the Cloud API does not support."""
    return {
        "from": from_digits,
        "id": wamid,
        "timestamp": str(timestamp_s),
        "errors": [error_item(131051, TITLES[131051], "Message type is currently not supported.")],
        "type": "unsupported",
    }


def error_item(code: int, title: str, details: str | None = None) -> dict[str, Any]:
    """An ``errors[]`` item of a webhook (in a failed status, a message, or the value)."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or DETAILS.get(code, title)},
        "href": ERROR_CODES_URL,
    }


def status(
    wamid: str,
    status: str,
    recipient_digits: str,
    timestamp_s: int,
    error: tuple[int, str] | None = None,
    *,
    category: str = "utility",
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """A ``statuses[]`` item: sent and delivered carry conversation and pricing (sent with the
    conversation's expiry), read carries neither, failed carries ``errors``."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp_s),
        "recipient_id": recipient_digits,
    }
    if error is not None:
        item["errors"] = [error_item(*error)]
    elif status in ("sent", "delivered"):
        conversation_id = conversation_id or hashlib.sha256(recipient_digits.encode()).hexdigest()
        conversation: dict[str, Any] = {"id": conversation_id[:32], "origin": {"type": category}}
        if status == "sent":
            conversation["expiration_timestamp"] = str(timestamp_s + 24 * 3600)
        item["conversation"] = conversation
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": category}
    return item


def callback(
    phone_number_id: str,
    *,
    messages: Sequence[dict[str, Any]] = (),
    statuses: Sequence[dict[str, Any]] = (),
    errors: Sequence[dict[str, Any]] = (),
    contacts: Sequence[dict[str, Any]] | None = None,
    waba_id: str = "WABA1",
    display_phone_number: str = "15550001111",
) -> dict[str, Any]:
    """A whole ``messages`` webhook document for one phone number. ``contacts=None`` gives each
    sender of ``messages`` a profile (as Meta does); pass ``[]`` to leave contacts out."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    if contacts is None:
        senders = dict.fromkeys(m["from"] for m in messages if "from" in m)
        contacts = [contact(wa_id, f"Customer {wa_id[-4:]}") for wa_id in senders]
    if contacts:
        value["contacts"] = list(contacts)
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    if errors:
        value["errors"] = list(errors)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


def batch(*callbacks: Mapping[str, Any]) -> dict[str, Any]:
    """One document carrying the entries of several callbacks, as Meta batches them."""
    return {
        "object": "whatsapp_business_account",
        "entry": [entry for document in callbacks for entry in document["entry"]],
    }


def template_status(
    waba_id: str,
    name: str,
    event: str,
    reason: str | None = None,
    *,
    language: str = "en_US",
    template_id: int | None = None,
    time_s: int = 1_700_000_000,
) -> dict[str, Any]:
    """A ``message_template_status_update`` document: no metadata, routed by the WABA id."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": time_s,
                "changes": [
                    {
                        "value": {
                            "event": event,
                            "message_template_id": template_id
                            or 10**15 + zlib.crc32(name.encode()),
                            "message_template_name": name,
                            "message_template_language": language,
                            "reason": reason or "NONE",
                        },
                        "field": "message_template_status_update",
                    }
                ],
            }
        ],
    }


def encode(document: Mapping[str, Any]) -> bytes:
    """The bytes Meta posts: compact, non-ASCII as ``\\uXXXX``, and "/" escaped as ``\\/``.
    ("/" occurs in JSON only inside strings, so the replacement is exact.)"""
    text = json.dumps(document, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def sign(raw: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256``: HMAC-SHA256 of the raw body with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


async def post_callback(
    url: str,
    document: Mapping[str, Any] | bytes,
    app_secret: str,
    *,
    signature: str | None = None,
    signed: bool = True,
) -> tuple[int, str]:
    """POST a callback as Meta does and return the status and body of the answer. ``document``
    may be raw bytes (malformed JSON); ``signature`` overrides the computed one; ``signed=False``
    leaves the signature headers out."""
    raw = document if isinstance(document, bytes) else encode(document)
    headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
    if signed:
        headers["X-Hub-Signature-256"] = signature or sign(raw, app_secret)
        sha1 = hmac.new(app_secret.encode(), raw, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature"] = f"sha1={sha1}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=raw, headers=headers) as response,
    ):
        return response.status, await response.text()
