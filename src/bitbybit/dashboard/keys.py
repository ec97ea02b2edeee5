"""``/dashboard/keys``: the company's API keys (of the mode shown), created, rotated, revoked,
and their IP allowlists with a label per entry.

A key's text is shown once, on the page that answers its creation (or its rotation); only its
prefix is shown after that. Every key is looked up through the viewer's company
(``access.company_key``), so another company's key id is not found.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from fastapi import APIRouter
from starlette.responses import Response

from bitbybit.dashboard import web
from bitbybit.dashboard.web import (
    PATH,
    DashboardRoute,
    Editor,
    Signed,
    Viewer,
    done,
    form_list,
    form_of,
    render,
)
from bitbybit.errors import ValidationFailed
from bitbybit.models import ApiKey, Mode
from bitbybit.services import access

router = APIRouter(route_class=DashboardRoute)

SCOPES: Final = sorted(access.SCOPES)
ALL_SCOPES: Final = "all"
LABELS: Final = {"name": "Name", "scopes": "Scopes", "ipAllowlist": "Allowed IPs", "mode": "Mode"}
"""The form's name for each field a service names in its errors."""


def problem(error: ValidationFailed) -> str:
    return web.problem(error, LABELS)


def allowlist_text(key: ApiKey) -> str:
    """The key's allowlist as the form writes it: ``CIDR label``, one entry a line."""
    return "\n".join(
        f"{entry} {key.ip_labels[entry]}" if key.ip_labels.get(entry) else entry
        for entry in key.ip_allowlist
    )


async def _list(
    viewer: Viewer,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    invalid: Collection[str] = (),
) -> Response:
    platform = viewer.platform
    mode = viewer.session.mode
    keys = await access.list_keys(platform, viewer.company_id, mode)
    now = platform.now()
    return render(
        viewer,
        "keys/list.html",
        status=status,
        title="API keys",
        keys=keys,
        states={key.id: access.key_state(key, now) for key in keys},
        scopes=SCOPES,
        all_scopes=len(access.SCOPES),
        form=form or {"name": "", "scopes": [], "allowlist": "", "mode": mode},
        error=error,
        invalid=set(invalid),
    )


@router.get("/keys")
async def keys_page(viewer: Signed) -> Response:
    return await _list(viewer)


@router.post("/keys")
async def create_key(viewer: Editor) -> Response:
    form = await form_of(viewer.request)
    scopes = await form_list(viewer.request, "scopes")
    name = form.get("name", "")
    allowlist = form.get("allowlist", "")
    mode_text = form.get("mode", viewer.session.mode)
    shown = {"name": name, "scopes": scopes, "allowlist": allowlist, "mode": mode_text}
    try:
        if mode_text not in ("live", "test"):
            raise ValidationFailed.field("mode", "choose live or test")
        mode: Mode = "test" if mode_text == "test" else "live"
        entries, labels = access.parse_labelled_allowlist(allowlist)
        key, raw = await access.create_api_key(
            viewer.platform,
            viewer.company_id,
            mode=mode,
            scopes=ALL_SCOPES if ALL_SCOPES in scopes else scopes,
            ip_allowlist=entries,
            ip_labels=labels,
            name=name,
        )
    except ValidationFailed as error:
        return await _list(
            viewer,
            status=400,
            error=problem(error),
            form=shown,
            invalid={detail.field for detail in error.details},
        )
    return _shown_once(viewer, "Key created", key, raw, None)


def _shown_once(viewer: Viewer, title: str, key: ApiKey, raw: str, old: ApiKey | None) -> Response:
    """The page that shows a new key's text, this once."""
    return render(
        viewer,
        "keys/created.html",
        title=title,
        key=key,
        raw=raw,
        old=old,
        all_scopes=len(access.SCOPES),
    )


async def _detail(
    viewer: Viewer,
    key: ApiKey,
    *,
    status: int = 200,
    error: str | None = None,
    allowlist: str | None = None,
) -> Response:
    return render(
        viewer,
        "keys/detail.html",
        status=status,
        title=key.name or key.prefix,
        key=key,
        state=access.key_state(key, viewer.platform.now()),
        all_scopes=len(access.SCOPES),
        allowlist=allowlist_text(key) if allowlist is None else allowlist,
        error=error,
    )


@router.get("/keys/{key_id}")
async def key_page(key_id: str, viewer: Signed) -> Response:
    key = await access.company_key(viewer.platform, viewer.company_id, key_id)
    return await _detail(viewer, key)


@router.post("/keys/{key_id}/allowlist")
async def save_allowlist(key_id: str, viewer: Editor) -> Response:
    key = await access.company_key(viewer.platform, viewer.company_id, key_id)
    text = (await form_of(viewer.request)).get("allowlist", "")
    try:
        entries, labels = access.parse_labelled_allowlist(text)
        changed = await access.set_allowlist(
            viewer.platform, viewer.company_id, key.id, entries, labels
        )
    except ValidationFailed as error:
        return await _detail(viewer, key, status=400, error=problem(error), allowlist=text)
    count = len(changed.ip_allowlist)
    message = (
        f"Saved: {count} allowed address{'' if count == 1 else 'es'} or range"
        f"{'' if count == 1 else 's'}."
        if count
        else "Saved: the key is allowed from any address."
    )
    return done(viewer, f"{PATH}/keys/{key.id}", message)


@router.post("/keys/{key_id}/rotate")
async def rotate_key(key_id: str, viewer: Editor) -> Response:
    platform = viewer.platform
    new, raw = await access.rotate_api_key(platform, key_id, company_id=viewer.company_id)
    old = await access.company_key(platform, viewer.company_id, key_id)
    return _shown_once(viewer, "Key rotated", new, raw, old)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, viewer: Editor) -> Response:
    key = await access.company_key(viewer.platform, viewer.company_id, key_id)
    await access.revoke_api_key(viewer.platform, key.id, company_id=viewer.company_id)
    shown = f"{key.name} ({key.prefix}…)" if key.name else f"{key.prefix}…"
    return done(viewer, f"{PATH}/keys", f"Revoked the key {shown}: it no longer works.")
