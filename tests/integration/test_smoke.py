from __future__ import annotations

import httpx

from tests.conftest import CUSTOMERS, Account


async def test_create_and_read_customer(client: httpx.AsyncClient, account: Account) -> None:
    created = await client.post(
        CUSTOMERS,
        json={"email": "jo@example.com", "phoneNumber": "081234567890"},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["phoneNumber"] == "+6281234567890"
    fetched = await client.get(f"{CUSTOMERS}/{data['id']}", headers=account.headers)
    assert fetched.json()["data"] == data
