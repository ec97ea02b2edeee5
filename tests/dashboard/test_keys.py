"""``/dashboard/keys``: listing, creating (the key shown once), rotating (with its grace shown),
revoking (the API then refuses the key), editing an allowlist with labels; viewers, missing CSRF
tokens and other companies' key ids refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re

import pytest

from bitbybit.dashboard.web import _when
from bitbybit.models import ApiKey
from bitbybit.runtime import Platform
from bitbybit.services import access
from tests.conftest import CUSTOMERS, Account, FakeClock
from tests.dashboard.support import Browser

NEW_KEY = re.compile(r'<code id="new-key"[^>]*>([^<]+)</code>')
DAY_MS = 24 * 60 * 60 * 1000


def new_key(text: str) -> str:
    found = NEW_KEY.search(text)
    assert found is not None, text
    return html.unescape(found.group(1))


async def keys_of(platform: Platform, company_id: str) -> dict[str, ApiKey]:
    async with platform.store.read() as tx:
        return {key.id: key for key in await tx.list_api_keys(company_id)}


def key_routes(key_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every POST of the section, with a valid form."""
    return [
        ("/dashboard/keys", {"name": "x", "scopes": "all", "allowlist": "", "mode": "live"}),
        (f"/dashboard/keys/{key_id}/rotate", {}),
        (f"/dashboard/keys/{key_id}/revoke", {}),
        (f"/dashboard/keys/{key_id}/allowlist", {"allowlist": "203.0.113.0/24 office"}),
    ]


async def test_the_list_shows_the_modes_keys_by_prefix_and_the_create_form(
    admin: Browser, account: Account
) -> None:
    page = await admin.get("/dashboard/keys")
    assert page.status_code == 200, page.text
    text = page.text
    assert f"{account.key.prefix}…" in text
    assert account.raw not in text
    assert account.test_raw not in text
    assert account.test_raw[:13] not in text  # the test key is not listed in live mode
    assert 'id="key-name"' in text
    assert 'id="key-allowlist"' in text
    assert 'id="scope-all"' in text
    assert ">All scopes</label>" in text
    for scope in access.SCOPES:
        assert f'value="{scope}"' in text
    assert 'id="key-mode-live" name="mode" value="live" checked' in text
    assert ">Create key</button>" in text
    assert f'action="/dashboard/keys/{account.key.id}/rotate"' in text
    assert f'action="/dashboard/keys/{account.key.id}/revoke"' in text


async def test_a_new_key_is_shown_once_with_its_labels(
    admin: Browser, account: Account, platform: Platform
) -> None:
    before = await keys_of(platform, account.company.id)
    answer = await admin.post(
        "/dashboard/keys",
        {
            "name": "Checkout",
            "scopes": ["customers:read", "orders:read"],
            "allowlist": "203.0.113.0/24 office\n\n198.51.100.7\n2001:db8::/48  home vpn\n",
            "mode": "live",
        },
    )
    assert answer.status_code == 200, answer.text
    raw = new_key(answer.text)
    assert raw.startswith("bbb_live_")
    assert '<button type="button" data-copy="new-key" hidden>Copy</button>' in answer.text
    assert "will not be shown again" in answer.text
    after = await keys_of(platform, account.company.id)
    (key,) = [key for key_id, key in after.items() if key_id not in before]
    assert key.name == "Checkout"
    assert key.mode == "live"
    assert key.scopes == {"customers:read", "orders:read"}
    assert key.ip_allowlist == ("203.0.113.0/24", "198.51.100.7/32", "2001:db8::/48")
    assert key.ip_labels == {"203.0.113.0/24": "office", "2001:db8::/48": "home vpn"}
    assert raw.startswith(key.prefix)

    listed = await admin.get("/dashboard/keys")
    assert raw not in listed.text  # never again: only its prefix
    assert f"{key.prefix}…" in listed.text
    assert "<code>203.0.113.0/24</code> office" in listed.text
    assert "<code>2001:db8::/48</code> home vpn" in listed.text
    assert "customers:read, orders:read" in listed.text

    # 127.0.0.1 is not on its allowlist: the API refuses it for that reason
    refused = await admin.http.get(CUSTOMERS, headers={"x-api-key": raw})
    assert refused.status_code == 403
    assert "IP_NOT_ALLOWED" in refused.text


async def test_all_scopes_and_the_other_mode(
    admin: Browser, account: Account, platform: Platform
) -> None:
    before = await keys_of(platform, account.company.id)
    answer = await admin.post(
        "/dashboard/keys",
        {"name": "", "scopes": ["all", "orders:read"], "allowlist": "", "mode": "test"},
    )
    assert answer.status_code == 200, answer.text
    raw = new_key(answer.text)
    assert raw.startswith("bbb_test_")
    assert "the list shows it when you show test data" in answer.text
    after = await keys_of(platform, account.company.id)
    (key,) = [key for key_id, key in after.items() if key_id not in before]
    assert key.mode == "test"
    assert key.scopes == access.SCOPES
    assert key.ip_allowlist == ()
    works = await admin.http.get(CUSTOMERS, headers={"x-api-key": raw})
    assert works.status_code == 200, works.text
    listed = await admin.get("/dashboard/keys")
    assert key.prefix not in listed.text  # the session shows live keys


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"name": "a", "scopes": "all", "allowlist": "203.0.113.300/24 office"},
            "Allowed IPs: &#39;203.0.113.300/24&#39; is not an IP address or CIDR",
        ),
        (
            {"name": "a", "scopes": "all", "allowlist": "10.0.0.0/8"},
            "Allowed IPs: 10.0.0.0/8 is wider than /9",
        ),
        ({"name": "a", "allowlist": ""}, "Scopes: at least one scope is required"),
        ({"name": "a", "scopes": "nope:read"}, "Scopes: unknown scope(s): nope:read"),
        ({"name": "a", "scopes": "all", "mode": "staging"}, "Mode: choose live or test"),
        ({"name": "x" * 201, "scopes": "all"}, "Name: at most 200 characters"),
        (
            {"name": "a", "scopes": "all", "allowlist": "203.0.113.0/24 " + "l" * 101},
            "Allowed IPs: labels are at most 100 characters",
        ),
    ],
)
async def test_bad_input_rerenders_the_form(
    admin: Browser, account: Account, platform: Platform, form: dict[str, str], message: str
) -> None:
    before = await keys_of(platform, account.company.id)
    answer = await admin.post("/dashboard/keys", form)
    assert answer.status_code == 400, answer.text
    assert message in answer.text
    assert 'role="alert" id="key-error"' in answer.text
    assert ">Create key</button>" in answer.text
    if form.get("allowlist"):
        assert html.escape(form["allowlist"], quote=False) in answer.text  # kept for fixing
    assert await keys_of(platform, account.company.id) == before


async def test_rotating_shows_the_new_key_once_and_the_old_keys_grace(
    admin: Browser, account: Account, platform: Platform, clock: FakeClock
) -> None:
    answer = await admin.post(f"/dashboard/keys/{account.key.id}/rotate")
    assert answer.status_code == 200, answer.text
    raw = new_key(answer.text)
    grace_end = _when(clock.now + DAY_MS)
    assert f"keeps working until <strong>{grace_end}</strong>" in answer.text
    assert "will not be shown again" in answer.text
    old = (await keys_of(platform, account.company.id))[account.key.id]
    assert old.expires_at == clock.now + DAY_MS

    listed = await admin.get("/dashboard/keys")
    assert raw not in listed.text
    assert "badge-expiring" in listed.text
    assert f"until {grace_end}" in listed.text
    # both work during the grace period; the old one stops after it
    for text in (raw, account.raw):
        works = await admin.http.get(CUSTOMERS, headers={"x-api-key": text})
        assert works.status_code == 200, works.text
    clock.advance(DAY_MS)
    refused = await admin.http.get(CUSTOMERS, headers={"x-api-key": account.raw})
    assert refused.status_code == 401
    assert access.key_state(old, clock.now) == "expired"


async def test_revoking_stops_the_key_at_once(
    admin: Browser, account: Account, platform: Platform
) -> None:
    works = await admin.http.get(CUSTOMERS, headers=account.headers)
    assert works.status_code == 200
    answer = await admin.post(f"/dashboard/keys/{account.key.id}/revoke")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/keys"
    page = await admin.get("/dashboard/keys")
    assert "Revoked the key" in page.text
    assert "badge-revoked" in page.text
    refused = await admin.http.get(CUSTOMERS, headers=account.headers)
    assert refused.status_code == 401
    assert (await keys_of(platform, account.company.id))[account.key.id].revoked_at is not None
    # a revoked key is not rotated, and its allowlist no longer changes
    rotate = await admin.post(f"/dashboard/keys/{account.key.id}/rotate")
    assert rotate.status_code == 404
    allowlist = await admin.post(
        f"/dashboard/keys/{account.key.id}/allowlist", {"allowlist": "203.0.113.0/24"}
    )
    assert allowlist.status_code == 409


async def test_the_key_page_edits_the_allowlist_with_labels(
    admin: Browser, account: Account, platform: Platform
) -> None:
    page = await admin.get(f"/dashboard/keys/{account.key.id}")
    assert page.status_code == 200, page.text
    assert f"<code>{account.key.prefix}…</code>" in page.text
    assert account.raw not in page.text
    assert f'action="/dashboard/keys/{account.key.id}/allowlist"' in page.text
    assert 'id="key-allowlist"' in page.text

    saved = await admin.post(
        f"/dashboard/keys/{account.key.id}/allowlist",
        {"allowlist": "127.0.0.1 this machine\n203.0.113.0/24 office\n198.51.100.0/24"},
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/dashboard/keys/{account.key.id}"
    key = (await keys_of(platform, account.company.id))[account.key.id]
    assert key.ip_allowlist == ("127.0.0.1/32", "203.0.113.0/24", "198.51.100.0/24")
    assert key.ip_labels == {"127.0.0.1/32": "this machine", "203.0.113.0/24": "office"}
    shown = await admin.get(f"/dashboard/keys/{account.key.id}")
    assert "Saved: 3 allowed addresses or ranges." in shown.text
    assert "127.0.0.1/32 this machine\n203.0.113.0/24 office\n198.51.100.0/24</textarea>" in (
        shown.text
    )
    works = await admin.http.get(CUSTOMERS, headers=account.headers)
    assert works.status_code == 200

    bad = await admin.post(
        f"/dashboard/keys/{account.key.id}/allowlist", {"allowlist": "office 203.0.113.0/24"}
    )
    assert bad.status_code == 400
    assert "Allowed IPs: &#39;office&#39; is not an IP address or CIDR" in bad.text
    assert "office 203.0.113.0/24</textarea>" in bad.text
    assert (await keys_of(platform, account.company.id))[account.key.id] == key

    cleared = await admin.post(f"/dashboard/keys/{account.key.id}/allowlist", {"allowlist": ""})
    assert cleared.status_code == 303
    key = (await keys_of(platform, account.company.id))[account.key.id]
    assert key.ip_allowlist == ()
    assert key.ip_labels == {}


async def test_a_viewer_sees_but_cannot_change(
    viewer: Browser, account: Account, platform: Platform
) -> None:
    page = await viewer.get("/dashboard/keys")
    assert page.status_code == 200
    assert f"{account.key.prefix}…" in page.text
    assert "Create key" not in page.text
    assert "/rotate" not in page.text
    detail = await viewer.get(f"/dashboard/keys/{account.key.id}")
    assert detail.status_code == 200
    assert "/allowlist" not in detail.text
    before = await keys_of(platform, account.company.id)
    for path, form in key_routes(account.key.id):
        answer = await viewer.post(path, form)
        assert answer.status_code == 403, (path, answer.text)
    assert await keys_of(platform, account.company.id) == before


async def test_changes_without_the_csrf_token_are_refused(
    admin: Browser, account: Account, platform: Platform
) -> None:
    before = await keys_of(platform, account.company.id)
    for path, form in key_routes(account.key.id):
        answer = await admin.post(path, form, csrf=False)
        assert answer.status_code == 403, (path, answer.text)
        wrong = await admin.post(path, {**form, "csrf_token": "forged"}, csrf=False)
        assert wrong.status_code == 403, path
    assert await keys_of(platform, account.company.id) == before


async def test_another_companys_key_is_not_found(
    admin: Browser, account: Account, other_account: Account, platform: Platform
) -> None:
    theirs = other_account.key
    before = await keys_of(platform, other_account.company.id)
    page = await admin.get(f"/dashboard/keys/{theirs.id}")
    assert page.status_code == 404
    assert theirs.prefix not in page.text
    assert theirs.prefix not in (await admin.get("/dashboard/keys")).text
    for path, form in key_routes(theirs.id)[1:]:
        answer = await admin.post(path, form)
        assert answer.status_code == 404, (path, answer.text)
        assert theirs.prefix not in answer.text
    # and with bad input too: not found comes first
    bad = await admin.post(f"/dashboard/keys/{theirs.id}/allowlist", {"allowlist": "nonsense"})
    assert bad.status_code == 404
    assert (await admin.get("/dashboard/keys/key_doesnotexist")).status_code == 404
    assert await keys_of(platform, other_account.company.id) == before
    works = await admin.http.get(CUSTOMERS, headers=other_account.headers)
    assert works.status_code == 200
