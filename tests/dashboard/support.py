"""A signed-in dashboard client for in-process tests (httpx over ASGI, like the API's tests)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from bitbybit.api.app import create_app
from bitbybit.models import User
from bitbybit.runtime import Platform
from bitbybit.services import users

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def client(
    platform: Platform, client_ip: str = "127.0.0.1", app: FastAPI | None = None
) -> httpx.AsyncClient:
    """An in-process client as a browser on the operator's machine sees the dashboard: plain
    HTTP on loopback, where its cookies are not ``Secure`` (elsewhere httpx would not send
    them back over HTTP). Clients given the same ``app`` share its process state (the
    sign-in throttle)."""
    transport = httpx.ASGITransport(
        app=app or create_app(platform=platform),
        raise_app_exceptions=False,
        client=(client_ip, 50000),
    )
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


@dataclass
class Browser:
    """An httpx client holding a dashboard session (cookies) and its CSRF token."""

    http: httpx.AsyncClient
    user: User
    csrf: str = ""
    _pages: list[str] = field(default_factory=list)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(
        self,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        csrf: bool = True,
        htmx: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST a form; with the session's CSRF token unless ``csrf=False``; as htmx does
        (token in the ``X-CSRF-Token`` header, ``HX-Request: true``) with ``htmx=True``."""
        form = dict(data or {})
        headers = dict(kwargs.pop("headers", {}) or {})
        if htmx:
            headers["hx-request"] = "true"
            if csrf:
                headers["x-csrf-token"] = self.csrf
        elif csrf:
            form.setdefault("csrf_token", self.csrf)
        return await self.http.post(path, data=form, headers=headers, **kwargs)


async def sign_in(
    platform: Platform,
    company_id: str,
    *,
    role: str = "admin",
    email: str | None = None,
    client_ip: str = "127.0.0.1",
) -> Browser:
    """A new user of ``company_id`` with ``role``, signed in through the sign-in form."""
    email = email or f"{role}-{company_id.lower()}@example.com"
    user = await users.create_user(platform, company_id, email, PASSWORD, role)
    http = client(platform, client_ip)
    form = await http.get("/dashboard/login")
    assert form.status_code == 200, form.text
    token = CSRF.search(form.text)
    assert token is not None
    answer = await http.post(
        "/dashboard/login",
        data={"csrf_token": token.group(1), "email": email, "password": PASSWORD},
    )
    assert answer.status_code == 303, answer.text
    home = await http.get("/dashboard")
    assert home.status_code == 200, home.text
    csrf = CSRF.search(home.text)
    assert csrf is not None
    return Browser(http, user, csrf.group(1))
