"""``/whatsapp/webhooks/meta``: Meta's subscription handshake and callbacks (SPEC §7).

Answered without an API key: the handshake proves the verify token, a callback its
``X-Hub-Signature-256`` (``channels.callbacks``). A callback is answered 200 only once what it
carried is committed; a wrong signature 401 with nothing stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from bitbybit.api.deps import PlatformDep
from bitbybit.api.routes import DESCRIPTIONS, errors
from bitbybit.api.schemas import ErrorEnvelope
from bitbybit.channels import callbacks

router = APIRouter(tags=["whatsapp webhooks"])
HANDSHAKE: dict[int | str, dict[str, Any]] = {
    200: {"description": "`hub.challenge`, as text", "content": {"text/plain": {}}},
    403: {"model": ErrorEnvelope, "description": "Not `subscribe`, or an unknown verify token"},
    **{code: errors()[code] for code in (400, 500, 503)},
}
CALLBACK: dict[int | str, dict[str, Any]] = {
    **errors(404, 413, 415),
    401: {"model": ErrorEnvelope, "description": "Missing or wrong `X-Hub-Signature-256`"},
    404: {"model": ErrorEnvelope, "description": "No connected number has the callback's ids"},
    400: {"model": ErrorEnvelope, "description": DESCRIPTIONS[400].split(";")[0] + "; not JSON"},
}


@router.get(
    "/whatsapp/webhooks/meta",
    response_class=Response,
    responses=HANDSHAKE,
    operation_id="verifyMetaSubscription",
)
async def subscribe(request: Request, platform: PlatformDep) -> Response:
    """Answer `hub.challenge` when `hub.verify_token` is a connected number's verify token."""
    query = request.query_params
    await callbacks.challenge(platform, query.get("hub.mode"), query.get("hub.verify_token"))
    return Response(query.get("hub.challenge", ""), media_type="text/plain")


@router.post(
    "/whatsapp/webhooks/meta",
    response_class=Response,
    responses=CALLBACK,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["entry"],
                        "properties": {"entry": {"type": "array"}},
                        "description": "Meta's callback, signed in `X-Hub-Signature-256`",
                    }
                }
            },
        }
    },
    operation_id="receiveMetaCallback",
)
async def callback(request: Request, platform: PlatformDep) -> Response:
    """Store the messages and statuses of one signed callback; 200 once committed."""
    raw = await request.body()
    signature = request.headers.get("x-hub-signature-256")
    routes: callbacks.Routes = request.app.state.meta_routes
    handled = await callbacks.handle(platform, raw, signature, routes)
    body = f'{{"received":{handled.received},"statuses":{handled.statuses}}}'
    return Response(body, media_type="application/json")
