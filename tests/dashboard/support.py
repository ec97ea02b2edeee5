"""A signed-in dashboard client for in-process tests (httpx over ASGI, like the API's tests)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bitbybit.models import User
from bitbybit.runtime import Platform
from bitbybit.services import users
from tests.conftest import client_for

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    """An httpx client holding a dashboard session (cookies) and its CSRF token."""

    http: httpx.AsyncClient
    user: User
    csrf: str = ""
    _pages: list[str] = field(default_factory=list)

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
    http = client_for(platform, client_ip)
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
