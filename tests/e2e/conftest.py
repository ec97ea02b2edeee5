"""A real browser against a live ``bitbybit serve``: Debian's chromium, driven by Playwright.

The browser is the distribution's (``/usr/bin/chromium``, installed by ``.ci/run``), never one
Playwright downloads. Locally the tests skip with a reason when it is missing; with ``CI=true``
they fail instead. Each main page is photographed into ``tests/e2e/screenshots/`` (not committed)
so that a person can look at what the tests saw.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import IN_CI
from tests.integration.servers import Server, cli, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
PASSWORD = "correct horse battery staple"


def _need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    if IN_CI:
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


@dataclass
class Hooks:
    """A loopback webhook receiver: answers 200 and keeps what it was sent."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            answer = b'{"ok":true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hooks(f"http://127.0.0.1:{server.server_address[1]}/hooks", seen)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Live:
    """A running ``bitbybit serve`` with one company and its admin and viewer users."""

    server: Server
    company_id: str
    admin_email: str
    viewer_email: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def cli(self, *args: str) -> str:
        return cli(*args, env=self.server.env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("e2e")
    env = {
        # Loopback webhook targets over plain HTTP, for these tests alone.
        "BITBYBIT_ALLOW_PRIVATE_TARGETS": "1",
        "BITBYBIT_ALLOW_HTTP_TARGETS": "1",
        "BITBYBIT_SECRET_KEY": "e2e-only-secret-key-0123456789abcdef",
        "BITBYBIT_RETRY_SCHEDULE": "1,1,1",
        "BITBYBIT_SANDBOX_STATUS_STEP": "0.2",
    }
    with serve(f"sqlite:///{folder}/e2e.db", folder / "serve.log", **env) as server:
        company = cli("companies", "create", "Acme Coffee", env=server.env).strip()
        admin, viewer = "ana@example.com", "vic@example.com"
        cli(
            "users",
            "create",
            "--company",
            company,
            "--email",
            admin,
            "--password",
            PASSWORD,
            env=server.env,
        )
        cli(
            "users", "create", "--company", company, "--email", viewer,
            "--password", PASSWORD, "--role", "viewer", env=server.env,
        )  # fmt: skip
        yield Live(server, company, admin, viewer)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API for one module at a time: while it runs, an event loop is running
    on this thread, and every asyncio test after it would fail (``asyncio.run() cannot be
    called from a running event loop``), so it must not outlive the browser tests."""
    _need_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield chromium
    finally:
        chromium.close()


def sign_in(page: Page, live: Live, email: str) -> None:
    page.goto(f"{live.base_url}/dashboard")
    expect(page).to_have_url(f"{live.base_url}/dashboard/login?next=/dashboard")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base_url}/dashboard")


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    """A fresh browser context (no cookies), signed in as the company's admin."""
    yield from _signed_in(browser, live, live.admin_email)


@pytest.fixture
def viewer_page(browser: Browser, live: Live) -> Iterator[Page]:
    """A fresh browser context signed in as the company's viewer."""
    yield from _signed_in(browser, live, live.viewer_email)


def _signed_in(browser: Browser, live: Live, email: str) -> Iterator[Page]:
    context = browser.new_context(base_url=live.base_url)
    context.set_default_timeout(15_000)
    errors: list[str] = []
    tab = context.new_page()
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(tab, live, email)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"the browser reported errors: {errors}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = json.dumps([node["target"] for node in violation["nodes"]][:5])
            found.append(
                f"{violation['id']} ({violation['impact']}): {violation['help']}: {targets}"[:2000]
            )
    return found


os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
