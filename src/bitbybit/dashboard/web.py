"""What every dashboard page needs: who is signed in, CSRF, forms, rendering and errors as pages.

A page handler takes a ``Viewer`` (any signed-in user, for pages that only show) or an ``Editor``
(an admin, whose request carried the session's CSRF token: for everything that changes data) as
a FastAPI dependency, calls ``services``, and returns ``render(...)``. Domain errors raised by a
service become HTML pages here (``DashboardRoute``), never the API's JSON envelope.

Every query goes through the session's tenant (company and mode), so another company's id is
simply not found (404), never a 403 that would confirm it exists.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

import structlog
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bitbybit import __version__
from bitbybit.clock import iso
from bitbybit.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    DomainError,
    NotFound,
    RateLimited,
    StorageUnavailable,
    ValidationFailed,
)
from bitbybit.models import DashboardSession, Tenant
from bitbybit.runtime import Platform
from bitbybit.services import users

log = structlog.get_logger("bitbybit.dashboard")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE: Final = "bbb_session"
LOGIN_CSRF_COOKIE: Final = "bbb_login_csrf"
FLASH_COOKIE: Final = "bbb_flash"
PATH: Final = "/dashboard"
MAX_FORM_BYTES: Final = 64 * 1024
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"

SECURITY_HEADERS: Final = {
    # No inline script anywhere: htmx, uPlot and app.js are files of our own origin.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none';"
        " object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ms: int | None) -> str:
    """``2026-12-02 10:30:00 UTC`` for a millisecond timestamp."""
    if ms is None:
        return "—"
    text = iso(ms)
    return f"{text[:10]} {text[11:19]} UTC"


templates.filters["when"] = _when
templates.filters["iso"] = lambda ms: "" if ms is None else iso(ms)
templates.filters["tojson_attr"] = lambda value: json.dumps(value, separators=(",", ":"))
templates.globals["version"] = __version__


# -- who is asking -----------------------------------------------------------------------------


class SignInNeeded(Exception):
    """No live session: a page redirects to the sign-in form, a fragment says so."""


class CsrfRefused(Exception):
    """A change without the session's CSRF token (or, to sign in, the form's)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in user on one request: the platform, the session and its tenant."""

    request: Request
    platform: Platform
    session: DashboardSession
    token: str

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.session.user.company_id, self.session.mode)

    @property
    def company_id(self) -> str:
        return self.session.user.company_id

    @property
    def is_admin(self) -> bool:
        return self.session.user.role == "admin"

    @property
    def htmx(self) -> bool:
        """Asked by htmx for a fragment (``HX-Request``), not by a page load or a boost."""
        headers = self.request.headers
        return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true"


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def _viewer(request: Request) -> Viewer:
    platform = platform_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = await users.session_of(platform, token)
    if session is None or token is None:
        raise SignInNeeded
    structlog.contextvars.bind_contextvars(user_id=session.user.id)
    return Viewer(request, platform, session, token)


async def form_of(request: Request) -> dict[str, str]:
    """The submitted form (``application/x-www-form-urlencoded``), first value of each field,
    read once per request; at most 64 KB."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ValidationFailed("the form is larger than 64 KB")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form: dict[str, str] = {}
    if body and kind == "application/x-www-form-urlencoded":
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {name: values[0] for name, values in parsed.items()}
    request.state.form = form
    request.state.form_lists = {} if not body else parse_qs(body.decode("utf-8", "replace"))
    return form


async def form_list(request: Request, name: str) -> list[str]:
    """Every value of a repeated field (checkboxes)."""
    await form_of(request)
    lists: dict[str, list[str]] = request.state.form_lists
    return lists.get(name, [])


async def _csrf_checked(request: Request, viewer: Viewer) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = (await form_of(request)).get(CSRF_FIELD)
    if not users.csrf_ok(viewer.session, sent):
        raise CsrfRefused


async def _signed_in_csrf(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    """Any signed-in user whose request carries the session's CSRF token (switching the
    mode shown, signing out)."""
    await _csrf_checked(request, viewer)
    return viewer


async def _editor(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    await _csrf_checked(request, viewer)
    if not viewer.is_admin:
        raise AccessDenied("a viewer can look but not change anything: ask an admin")
    return viewer


Signed = Annotated[Viewer, Depends(_viewer)]
"""A page that only shows: any signed-in user."""
Editor = Annotated[Viewer, Depends(_editor)]
"""A request that changes data: an admin, with the session's CSRF token."""
SignedCsrf = Annotated[Viewer, Depends(_signed_in_csrf)]


# -- answers -----------------------------------------------------------------------------------


def secure_cookies(request: Request) -> bool:
    """Cookies are ``Secure`` unless the dashboard is served over plain HTTP on loopback (a
    developer's machine); behind a TLS proxy the browser sees HTTPS, so they are."""
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def set_cookie(response: Response, request: Request, name: str, value: str, **extra: Any) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path=PATH,
        **extra,
    )


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}


def render(
    viewer: Viewer | None,
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    """The template rendered with the page context: the viewer, its CSRF token, the flash
    message of the previous change (once) and the section the page belongs to."""
    request = values.pop("request", None) or (viewer.request if viewer else None)
    flash = request.cookies.get(FLASH_COOKIE) if request is not None else None
    flash = None if flash is None else unquote(flash)
    html = templates.get_template(template).render(
        viewer=viewer,
        csrf=viewer.session.csrf_token if viewer else "",
        flash=flash,
        path=request.url.path if request is not None else PATH,
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=_headers(headers))
    if flash is not None and request is not None:
        response.delete_cookie(FLASH_COOKIE, path=PATH)
    return response


def done(viewer: Viewer, location: str, message: str) -> Response:
    """After a change: redirect (303) to ``location`` with ``message`` shown there once. htmx
    follows the redirect itself, so a boosted form lands on the same page as a plain one."""
    response = RedirectResponse(location, status_code=303, headers=_headers())
    set_cookie(response, viewer.request, FLASH_COOKIE, quote(message)[:1000], max_age=60)
    return response


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of ours, never another site."""
    if not target:
        return PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PATH) or "\\" in target:
        return PATH
    return target


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


# -- errors as pages ---------------------------------------------------------------------------

ERROR_PAGES: Final[dict[type[Exception], tuple[int, str]]] = {
    NotFound: (404, "Not found"),
    AccessDenied: (403, "Not allowed"),
    CsrfRefused: (403, "The form has expired"),
    AuthError: (401, "Sign in needed"),
    RateLimited: (429, "Too many tries"),
    ValidationFailed: (400, "That did not work"),
    Conflict: (409, "That did not work"),
    DomainError: (400, "That did not work"),
    StorageUnavailable: (503, "The database is not answering"),
}


def error_page(request: Request, error: Exception, viewer: Viewer | None = None) -> Response:
    status, title = next(
        (answer for kind, answer in ERROR_PAGES.items() if isinstance(error, kind)),
        (500, "Something went wrong"),
    )
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["retry-after"] = str(error.retry_after)
    if isinstance(error, StorageUnavailable):
        headers["retry-after"] = "2"
    message = str(error) if isinstance(error, DomainError) else ""
    if isinstance(error, CsrfRefused):
        message = "Reload the page and try again (its security token was missing or stale)."
    if isinstance(error, StorageUnavailable):
        message = "Try again in a moment."
    details = error.details if isinstance(error, ValidationFailed) else []
    return render(
        viewer,
        "error.html",
        status=status,
        headers=headers,
        request=request,
        title=title,
        message=message,
        details=details,
    )


def _sign_in_first(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"{PATH}/login?next={quote(target)}"
    if request.headers.get("hx-request") == "true":  # htmx: load the sign-in page whole
        return Response(status_code=401, headers=_headers({"hx-redirect": location}))
    if request.method in ("GET", "HEAD"):
        return RedirectResponse(location, status_code=303, headers=_headers())
    return render(
        None,
        "error.html",
        status=401,
        request=request,
        title="Sign in needed",
        message="Your session has ended: sign in again.",
        details=[],
    )


class DashboardRoute(APIRoute):
    """Routes whose errors are pages: no session → the sign-in form; a domain error → a page
    with its status; every answer with the dashboard's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInNeeded:
                return _sign_in_first(request)
            except (DomainError, CsrfRefused, StorageUnavailable) as error:
                viewer = None
                token = request.cookies.get(SESSION_COOKIE)
                if not isinstance(error, StorageUnavailable):
                    session = await users.session_of(platform_of(request), token)
                    if session is not None and token is not None:
                        viewer = Viewer(request, platform_of(request), session, token)
                return error_page(request, error, viewer)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route


def problem(error: ValidationFailed, labels: Mapping[str, str]) -> str:
    """What went wrong, in the form's words: each field a service named, by its label."""
    if not error.details:
        return error.message
    return "; ".join(f"{labels.get(d.field, d.field)}: {d.message}" for d in error.details)


def page_number(text: str | None) -> int:
    """``?page=`` as a page number (1 when absent or not a positive number)."""
    try:
        number = int(text or "1")
    except ValueError:
        return 1
    return number if 1 <= number <= 1_000_000 else 1
