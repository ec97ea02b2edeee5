"""Signing in and out of the dashboard: passwords, throttling, sessions, cookies and CSRF."""

from __future__ import annotations

import re

import httpx
import pytest

from bitbybit.api.app import create_app
from bitbybit.errors import Conflict, NotFound, ValidationFailed
from bitbybit.runtime import Platform
from bitbybit.services import users
from bitbybit.store.sql.users import UsersSql
from tests.conftest import Account, FakeClock, with_settings
from tests.dashboard.support import CSRF, PASSWORD, Browser, client, sign_in


async def _login_form(http: object) -> str:
    form = await http.get("/dashboard/login")  # type: ignore[attr-defined]
    token = CSRF.search(form.text)
    assert token is not None
    return token.group(1)


async def test_signed_out_pages_redirect_to_the_sign_in_form(
    platform: Platform, account: Account
) -> None:
    async with client(platform) as http:
        for path in ("/dashboard", "/dashboard/keys", "/dashboard/webhooks/whk_x?a=1"):
            answer = await http.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/dashboard/login?next=/dashboard")
        assert answer.headers["location"].endswith("next=/dashboard/webhooks/whk_x%3Fa%3D1")
        fragment = await http.get("/dashboard/keys", headers={"hx-request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"].startswith("/dashboard/login")
        change = await http.post("/dashboard/logout", data={"csrf_token": "x"})
        assert change.status_code == 401
        assert "sign in again" in change.text.lower()


async def test_a_user_signs_in_and_lands_where_they_were_going(
    platform: Platform, account: Account
) -> None:
    await users.create_user(platform, account.company.id, "Ana@Example.com", PASSWORD)
    async with client(platform) as http:
        token = await _login_form(http)
        answer = await http.post(
            "/dashboard/login",
            data={
                "csrf_token": token,
                "email": "  ana@example.COM ",
                "password": PASSWORD,
                "next": "/dashboard/keys",
            },
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/keys"
        cookie = next(
            value
            for name, value in answer.headers.multi_items()
            if name == "set-cookie" and value.startswith("bbb_session=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/dashboard" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback: a developer's machine
        home = await http.get("/dashboard")
        assert home.status_code == 200
        assert account.company.name in home.text
        assert "ana@example.com (admin)" in home.text


@pytest.mark.parametrize(
    "target", ["https://evil.example/dashboard", "//evil.example/x", "/customer/open/v1", "/\\evil"]
)
async def test_sign_in_never_sends_the_browser_to_another_site(
    platform: Platform, account: Account, target: str
) -> None:
    await users.create_user(platform, account.company.id, "ana@example.com", PASSWORD)
    async with client(platform) as http:
        token = await _login_form(http)
        answer = await http.post(
            "/dashboard/login",
            data={
                "csrf_token": token,
                "email": "ana@example.com",
                "password": PASSWORD,
                "next": target,
            },
        )
        assert answer.headers["location"] == "/dashboard"


async def test_cookies_are_secure_unless_served_over_plain_http_on_loopback(
    platform: Platform, account: Account
) -> None:
    await users.create_user(platform, account.company.id, "ana@example.com", PASSWORD)
    async with client(platform) as http:
        http.base_url = httpx.URL("http://dash.example.com")  # a real host name
        form = await http.get("/dashboard/login")
        assert "Secure" in form.headers["set-cookie"]


async def test_a_wrong_password_or_unknown_email_is_refused_alike(
    platform: Platform, account: Account
) -> None:
    await users.create_user(platform, account.company.id, "ana@example.com", PASSWORD)
    async with client(platform) as http:
        for email, password in (("ana@example.com", "wrong password!"), ("bob@example.com", "x")):
            token = await _login_form(http)
            answer = await http.post(
                "/dashboard/login",
                data={"csrf_token": token, "email": email, "password": password},
            )
            assert answer.status_code == 401
            assert "The email or the password is not right." in answer.text
            assert "bbb_session=" not in answer.headers.get("set-cookie", "")
            assert (await http.get("/dashboard")).status_code == 303


async def test_sign_in_without_the_forms_token_is_refused(
    platform: Platform, account: Account
) -> None:
    await users.create_user(platform, account.company.id, "ana@example.com", PASSWORD)
    async with client(platform) as http:
        await _login_form(http)
        for token in ("", "forged"):
            answer = await http.post(
                "/dashboard/login",
                data={"csrf_token": token, "email": "ana@example.com", "password": PASSWORD},
            )
            assert answer.status_code == 403
            assert "bbb_session=" not in answer.headers.get("set-cookie", "")


async def test_failed_sign_ins_are_slowed_per_account_and_per_address(
    platform: Platform, account: Account
) -> None:
    platform = with_settings(platform, login_failure_limit=3)
    await users.create_user(platform, account.company.id, "ana@example.com", PASSWORD)
    await users.create_user(platform, account.company.id, "bob@example.com", PASSWORD)

    async def attempt(http: object, email: str, password: str) -> int:
        token = await _login_form(http)
        answer = await http.post(  # type: ignore[attr-defined]
            "/dashboard/login", data={"csrf_token": token, "email": email, "password": password}
        )
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            assert "try again in" in answer.text
        status: int = answer.status_code
        return status

    app = create_app(platform=platform)  # one process: one throttle
    async with (
        client(platform, "203.0.113.5", app) as one,
        client(platform, "198.51.100.7", app) as two,
    ):
        # The account: three failures from any addresses, then even the right password waits.
        assert [await attempt(one, "ana@example.com", "nope-nope-1") for _ in range(2)] == [
            401,
            401,
        ]
        assert await attempt(two, "ana@example.com", "nope-nope-2") == 401
        assert await attempt(two, "ana@example.com", PASSWORD) == 429
        # The address: another account from the first address is still allowed once more, then not.
        assert await attempt(one, "bob@example.com", "nope-nope-3") == 401
        assert await attempt(one, "bob@example.com", PASSWORD) == 429
    async with client(platform, "192.0.2.9", app) as three:
        assert await attempt(three, "bob@example.com", PASSWORD) == 303  # bob's account is fine


async def test_a_session_ends_after_idle_time_and_at_its_maximum_age(
    platform: Platform, account: Account, clock: FakeClock
) -> None:
    platform = with_settings(platform, session_idle=600.0, session_max_age=3600.0)
    browser = await sign_in(platform, account.company.id)
    async with browser:
        clock.advance(540_000)  # 9 minutes: still signed in, and the use is noted
        assert (await browser.get("/dashboard")).status_code == 200
        clock.advance(540_000)  # 9 more: 18 since sign-in, 9 since the last use
        assert (await browser.get("/dashboard")).status_code == 200
        clock.advance(601_000)  # idle for over 10 minutes
        assert (await browser.get("/dashboard")).status_code == 303
    browser = await sign_in(platform, account.company.id, email="old@example.com")
    async with browser:
        for _ in range(6):  # used every 9 minutes: never idle, but an hour is the most
            clock.advance(540_000)
            assert (await browser.get("/dashboard")).status_code == 200
        clock.advance(540_000)
        assert (await browser.get("/dashboard")).status_code == 303


async def test_signing_out_ends_the_session_in_the_database(
    platform: Platform, account: Account
) -> None:
    browser = await sign_in(platform, account.company.id)
    stolen = browser.http.cookies.get("bbb_session")
    assert stolen is not None
    async with browser:
        refused = await browser.post("/dashboard/logout", csrf=False)
        assert refused.status_code == 403  # no CSRF token: a cross-site sign-out is refused
        answer = await browser.post("/dashboard/logout")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/login"
    async with client(platform) as thief:  # the old cookie, replayed, signs nobody in
        thief.cookies.set("bbb_session", stolen, path="/dashboard")
        assert (await thief.get("/dashboard")).status_code == 303


async def test_the_session_token_is_kept_only_as_a_hash(
    platform: Platform, account: Account
) -> None:
    browser = await sign_in(platform, account.company.id)
    token = browser.http.cookies.get("bbb_session")
    assert token is not None
    async with platform.store.read() as tx:
        assert isinstance(tx, UsersSql)
        rows = await tx.db.fetch("SELECT token_hash FROM dashboard_sessions")
    assert [row["token_hash"] for row in rows] == [users.token_hash(token)]
    await browser.http.aclose()


async def test_a_new_password_signs_every_session_out(platform: Platform, account: Account) -> None:
    browser = await sign_in(platform, account.company.id, email="ana@example.com")
    async with browser:
        await users.set_password(platform, "ana@example.com", "another long password")
        assert (await browser.get("/dashboard")).status_code == 303


async def test_changes_need_the_sessions_csrf_token(admin: Browser) -> None:
    for token in (None, "forged", admin.csrf[:-1]):
        data = {"mode": "test"} if token is None else {"mode": "test", "csrf_token": token}
        answer = await admin.post("/dashboard/mode", data, csrf=False)
        assert answer.status_code == 403
        assert "security token" in answer.text
    home = await admin.get("/dashboard")
    assert "test</strong> data" not in home.text


async def test_the_mode_switch_shows_test_data_and_goes_back(
    admin: Browser, viewer: Browser
) -> None:
    for browser in (admin, viewer):  # a viewer may look at test data too: it changes nothing
        answer = await browser.post("/dashboard/mode", {"mode": "test", "next": "/dashboard/keys"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/keys"
        home = await browser.get("/dashboard")
        assert "You are looking at <strong>test</strong> data." in home.text
        by_htmx = await browser.post("/dashboard/mode", {"mode": "live"}, htmx=True)
        assert by_htmx.status_code == 303
        assert "test</strong> data" not in (await browser.get("/dashboard")).text


async def test_unknown_dashboard_paths_are_a_404_page(admin: Browser) -> None:
    answer = await admin.get("/dashboard/no-such-page")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in answer.text


async def test_pages_carry_the_security_headers(admin: Browser) -> None:
    for path in ("/dashboard", "/dashboard/login", "/dashboard/no-such-page"):
        answer = await admin.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text  # the CSP forbids inline scripts: there are none
        assert not re.search(r"\sstyle=", answer.text)


async def test_users_are_created_with_checked_input(platform: Platform, account: Account) -> None:
    with pytest.raises(ValidationFailed, match="at least 10"):
        await users.create_user(platform, account.company.id, "ana@example.com", "short")
    with pytest.raises(ValidationFailed, match="email address"):
        await users.create_user(platform, account.company.id, "not-an-email", PASSWORD)
    with pytest.raises(ValidationFailed, match="admin, viewer"):
        await users.create_user(platform, account.company.id, "a@example.com", PASSWORD, "owner")
    with pytest.raises(NotFound):
        await users.create_user(platform, "comp_missing", "a@example.com", PASSWORD)
    await users.create_user(platform, account.company.id, "a@example.com", PASSWORD)
    with pytest.raises(Conflict):
        await users.create_user(platform, account.company.id, "A@example.com", PASSWORD)
    async with platform.store.read() as tx:
        found = await tx.find_user("a@example.com")
    assert found is not None
    assert found[1].startswith("$argon2id$")
    assert PASSWORD not in found[1]
