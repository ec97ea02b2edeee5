"""No company sees or changes another's data through any dashboard page, form or htmx fragment;
a viewer changes nothing; a change without the session's CSRF token, or without a session, is
refused.

The routes are read from the application itself, so a page added later is tried too: every
``{parameter}`` of every dashboard URL is filled with the other company's id of that kind (a
route whose parameter has no known kind fails the test until it is given one below).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI

from bitbybit.api.app import create_app
from bitbybit.dashboard import pages
from bitbybit.runtime import Platform
from bitbybit.store.sql import SqlTx
from tests.conftest import Account
from tests.dashboard.support import Populated, client, populate, sign_in

PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
TABLES = (
    "api_keys",
    "webhook_endpoints",
    "deliveries",
    "delivery_queue",
    "events",
    "customers",
    "products",
    "orders",
    "messages",
    "templates",
    "tickets",
    "users",
    "dashboard_sessions",
)
"""What a change could touch; each company's rows are compared before and after."""


def _id_for(route: str, name: str, data: Populated) -> str:
    """The id of ``data`` that parameter ``name`` of ``route`` takes."""
    section = route.removeprefix("/dashboard/").split("/")[0]
    by_name = {
        "key_id": data.key_id,
        "endpoint_id": data.endpoint_id,
        "delivery_id": data.delivery_id,
        "event_id": data.event_id,
        "customer_id": data.customer_id,
        "order_id": data.order_id,
        "product_id": data.product_id,
        "message_id": data.message_id,
        "ticket_id": data.ticket_id,
        "phone": data.phone,
        "template_name": data.template_name,
        "name": data.template_name,
    }
    by_section = {
        "keys": data.key_id,
        "webhooks": data.endpoint_id,
        "deliveries": data.delivery_id,
        "events": data.event_id,
        "customers": data.customer_id,
        "orders": data.order_id,
        "products": data.product_id,
    }
    if name in by_name:
        return by_name[name]
    if name == "id" and section in by_section:
        return by_section[section]
    raise AssertionError(f"{route}: which kind of id is {{{name}}}? Name it in _id_for")


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    """The route's path with every parameter filled."""
    route: str


@dataclass(frozen=True)
class PageRoute:
    path: str
    methods: frozenset[str]


def dashboard_routes(app: FastAPI | None = None) -> list[PageRoute]:
    """The dashboard's pages with their full paths (from the sections ``install`` mounts)."""
    return [PageRoute(path, methods) for path, methods in pages() if path.startswith("/dashboard/")]


def targets(app: FastAPI | None, data: Populated) -> Iterator[Target]:
    for route in dashboard_routes(app):
        path = PARAMETER.sub(lambda m, at=route.path: _id_for(at, m.group(1), data), route.path)
        for method in sorted(route.methods - {"HEAD"}):
            yield Target(method, path, route.path)


async def snapshot(platform: Platform, company_id: str) -> dict[str, list[Any]]:
    """Every row of the company in the tables a change could touch (sessions without their
    last-use time, which reading a page may note)."""
    found: dict[str, list[Any]] = {}
    async with platform.store.read() as tx:
        db = cast(SqlTx, tx).db
        for table in TABLES:
            if table == "delivery_queue":
                rows = await db.fetch(
                    "SELECT q.* FROM delivery_queue q JOIN deliveries d ON d.id = q.delivery_id"
                    " WHERE d.company_id = $1 ORDER BY q.delivery_id",
                    company_id,
                )
            else:
                rows = await db.fetch(
                    f"SELECT * FROM {table} WHERE company_id = $1",  # noqa: S608  # constant names
                    company_id,
                )
            cleaned = [{k: v for k, v in dict(row).items() if k != "last_seen_at"} for row in rows]
            found[table] = sorted(cleaned, key=repr)
    return found


@pytest.fixture
async def two(
    platform: Platform, account: Account, other_account: Account
) -> tuple[Populated, Populated]:
    return await populate(platform, account, "acme"), await populate(
        platform, other_account, "globex"
    )


def _form_for(target: Target) -> dict[str, str]:
    """A plausible form for any change route, so that only the id decides the answer."""
    return {
        "name": "x",
        "url": "http://127.0.0.1:9/x",
        "body": "hello",
        "description": "x",
        "scopes": "all",
        "mode": "live",
        "confirm": "yes",
        "since": "",
    }


async def test_another_companys_ids_are_not_found_on_any_page_form_or_fragment(
    platform: Platform, account: Account, two: tuple[Populated, Populated]
) -> None:
    mine, theirs = two
    app = create_app(platform=platform)
    browser = await sign_in(platform, account.company.id)
    before = await snapshot(platform, theirs.company_id)
    tried = 0
    async with browser:
        for target in targets(app, theirs):
            if "{" not in target.route:
                continue  # no id to give: the lists are checked below
            for htmx in (False, True):
                headers = {"hx-request": "true"} if htmx else {}
                if target.method == "GET":
                    answer = await browser.get(target.path, headers=headers)
                else:
                    answer = await browser.post(target.path, _form_for(target), htmx=htmx)
                tried += 1
                assert answer.status_code == 404, (target, htmx, answer.status_code)
                for marker in theirs.markers():
                    if marker not in target.path:  # the page may echo the id it was asked
                        assert marker not in answer.text, (target, marker)
    assert tried >= 2 * len([r for r in dashboard_routes(app) if "{" in r.path])
    assert await snapshot(platform, theirs.company_id) == before
    assert mine.company_id != theirs.company_id


async def test_no_list_or_filter_shows_another_companys_data(
    platform: Platform, account: Account, two: tuple[Populated, Populated]
) -> None:
    mine, theirs = two
    app = create_app(platform=platform)
    browser = await sign_in(platform, account.company.id)
    lists = [
        r.path
        for r in dashboard_routes(app)
        if "{" not in r.path and "GET" in r.methods and r.path != "/dashboard/login"
    ]
    lists.append("/dashboard")
    filters = {
        # Their ids given as filter values: still nothing of theirs.
        "endpoint": theirs.endpoint_id,
        "endpoint_id": theirs.endpoint_id,
        "event": theirs.event_id,
        "event_id": theirs.event_id,
        "customer": theirs.customer_id,
        "customer_id": theirs.customer_id,
        "phone": theirs.phone,
        "q": theirs.customer_email,
    }
    async with browser:
        for path in lists:
            for query in ({}, filters):
                for htmx in (False, True):
                    headers = {"hx-request": "true"} if htmx else {}
                    answer = await browser.get(path, params=query, headers=headers)
                    assert answer.status_code in (200, 400, 404), (path, answer.status_code)
                    for marker in theirs.markers():
                        if marker not in query.values():  # a search box shows what was typed
                            assert marker not in answer.text, (path, query, marker)
        # Our own data does show, so the check above is not vacuous.
        shown = "".join([(await browser.get(path)).text for path in lists])
        assert mine.endpoint_url in shown
        assert mine.customer_email in shown


NOT_DATA = ("/dashboard/login", "/dashboard/logout", "/dashboard/mode")
"""Changes of the session, not of data: a viewer may sign in and out and switch modes."""
FORM_ACTION = re.compile(r'<form[^>]*\saction="([^"]+)"[^>]*method="post"|hx-post="([^"]+)"', re.I)


async def test_a_viewer_changes_nothing_and_is_offered_no_change(
    platform: Platform, account: Account, two: tuple[Populated, Populated]
) -> None:
    mine, _ = two
    app = create_app(platform=platform)
    viewer = await sign_in(platform, account.company.id, role="viewer")
    before = await snapshot(platform, mine.company_id)
    everything = list(targets(app, mine))
    changes = [
        t
        for t in everything
        if t.method == "POST"
        and t.route not in ("/dashboard/login", "/dashboard/logout", "/dashboard/mode")
    ]
    assert changes
    async with viewer:
        for target in changes:
            for htmx in (False, True):
                answer = await viewer.post(target.path, _form_for(target), htmx=htmx)
                assert answer.status_code == 403, (target, htmx, answer.status_code)
        for target in everything:
            if target.method != "GET" or target.route == "/dashboard/login":
                continue
            page = await viewer.get(target.path)
            assert page.status_code == 200, (target, page.status_code)
            offered = {a or b for a, b in FORM_ACTION.findall(page.text)}
            assert offered <= {"/dashboard/mode", "/dashboard/logout"}, (target, offered)
    assert await snapshot(platform, mine.company_id) == before


async def test_changes_without_the_csrf_token_or_a_session_are_refused(
    platform: Platform, account: Account, two: tuple[Populated, Populated]
) -> None:
    mine, _ = two
    app = create_app(platform=platform)
    admin = await sign_in(platform, account.company.id)
    before = await snapshot(platform, mine.company_id)
    changes = [
        t for t in targets(app, mine) if t.method == "POST" and t.route != "/dashboard/login"
    ]
    async with admin, client(platform, app=app) as stranger:
        for target in changes:
            for token in (None, "forged-token"):
                data = _form_for(target) | ({} if token is None else {"csrf_token": token})
                answer = await admin.post(target.path, data, csrf=False)
                assert answer.status_code == 403, (target, token, answer.status_code)
                by_htmx = await admin.http.post(
                    target.path,
                    data=_form_for(target),
                    headers={"hx-request": "true", "x-csrf-token": token or ""},
                )
                assert by_htmx.status_code == 403, (target, token, by_htmx.status_code)
            nobody = await stranger.post(target.path, data={**_form_for(target)})
            assert nobody.status_code == 401, (target, nobody.status_code)
    assert await snapshot(platform, mine.company_id) == before


def test_every_dashboard_route_with_an_id_is_tried() -> None:
    """The kinds of ids above cover every route the application has (none is skipped)."""
    app = create_app()
    fake = Populated(*(f"x{i}" for i in range(14)))
    routes = list(targets(app, fake))
    assert {t.route for t in routes} == {r.path for r in dashboard_routes(app)}
