"""A signed-in dashboard client for in-process tests (httpx over ASGI, like the API's tests)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from bitbybit.api.app import create_app
from bitbybit.models import User
from bitbybit.runtime import Platform
from bitbybit.services import users
from tests.conftest import Account, client_for

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


@dataclass(frozen=True)
class Populated:
    """One of everything a dashboard page can show, in one company's live mode."""

    company_id: str
    key_id: str
    endpoint_id: str
    endpoint_url: str
    event_id: str
    delivery_id: str
    customer_id: str
    customer_email: str
    product_id: str
    order_id: str
    phone: str
    message_id: str
    template_name: str
    ticket_id: str

    def markers(self) -> list[str]:
        """Texts that only this company's pages may contain."""
        return [
            self.key_id,
            self.endpoint_id,
            self.endpoint_url,
            self.event_id,
            self.delivery_id,
            self.customer_id,
            self.customer_email,
            self.product_id,
            self.order_id,
            self.message_id,
            self.ticket_id,
        ]


async def populate(platform: Platform, account: Account, tag: str) -> Populated:
    """Give ``account``'s company an endpoint, a customer (so an event and a delivery), a
    product, an order, an inbound WhatsApp message, a template and a ticket."""
    from bitbybit.models import Tenant
    from bitbybit.schemas import EndpointCreate, TemplateCreate
    from bitbybit.services import messages, templates, tickets, webhooks

    tenant = Tenant(account.company.id, "live")
    allowing = Platform(
        platform.store,
        platform.settings.replace(allow_private_targets=True, allow_http_targets=True),
    )
    url = f"http://127.0.0.1:9/{tag}-hooks"
    endpoint, _ = await webhooks.create_endpoint(allowing, tenant, EndpointCreate(url=url))
    email = f"{tag}-buyer@example.com"
    phone_local = "0812" + str(zlib.crc32(tag.encode()) % 10**7).rjust(7, "0")
    async with client_for(platform) as http:
        h = account.headers
        customer = (
            await http.post(
                "/customer/open/v1/customers",
                json={"email": email, "phoneNumber": phone_local, "firstName": tag.title()},
                headers=h,
            )
        ).json()["data"]
        product = (
            await http.post(
                "/customer/open/v1/products",
                json={"name": f"{tag} tee", "variants": [{"title": "Default", "price": 75000}]},
                headers=h,
            )
        ).json()["data"]
        ordered = (
            await http.post(
                "/customer/open/v1/orders",
                json={
                    "customerId": customer["id"],
                    "shippingAddress": {
                        "firstName": tag.title(),
                        "lastName": "Buyer",
                        "phone": phone_local,
                        "address1": "Jl. Sudirman No. 1",
                        "city": "Jakarta",
                        "province": "DKI Jakarta",
                        "zip": "10110",
                    },
                    "lineItems": [
                        {"productVariantId": product["variants"][0]["id"], "quantity": 1}
                    ],
                },
                headers=h,
            )
        ).json()
        assert "data" in ordered, ordered
        order = ordered["data"]
    phone = customer["phoneNumber"]
    async with platform.store.write() as tx:
        message = await messages.receive(
            platform, tx, tenant, messages.Inbound(sender=phone, body=f"hello from {tag}")
        )
        assert message is not None
        template = await templates.create(
            platform, tx, tenant, TemplateCreate(name=f"{tag}_welcome", body="Hi {{1}}")
        )
        ticket = await tickets.open_for(platform, tx, tenant, customer["id"])
    page = await webhooks.list_deliveries(platform, tenant, endpoint.id, (), 1, 10)
    delivery = page.items[0]
    return Populated(
        company_id=account.company.id,
        key_id=account.key.id,
        endpoint_id=endpoint.id,
        endpoint_url=url,
        event_id=delivery.event_id,
        delivery_id=delivery.id,
        customer_id=customer["id"],
        customer_email=email,
        product_id=product["id"],
        order_id=order["id"],
        phone=phone,
        message_id=message.id,
        template_name=template.name,
        ticket_id=ticket.id,
    )
