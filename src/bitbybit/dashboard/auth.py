"""Signing in and out, and the mode (live or test data) a session shows."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from bitbybit.dashboard.web import (
    LOGIN_CSRF_COOKIE,
    PATH,
    SESSION_COOKIE,
    CsrfRefused,
    DashboardRoute,
    SignedCsrf,
    _headers,
    form_of,
    new_login_csrf,
    platform_of,
    render,
    safe_next,
    set_cookie,
)
from bitbybit.errors import AuthError, RateLimited
from bitbybit.services import users

router = APIRouter(route_class=DashboardRoute)


def _login_form(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = new_login_csrf()
    response = render(
        None,
        "login.html",
        status=status,
        headers=headers,
        request=request,
        login_csrf=token,
        next_path=next_path,
        email=email,
        error=error,
    )
    set_cookie(response, request, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/login")
async def login_page(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    session = await users.session_of(platform_of(request), request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return RedirectResponse(safe_next(next_path), status_code=303, headers=_headers())
    return _login_form(request, next_path=safe_next(next_path))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    sent, expected = form.get("csrf_token", ""), request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused
    next_path = safe_next(form.get("next"))
    email = form.get("email", "")
    client = request.client.host if request.client else None
    try:
        signed = await users.sign_in(
            platform_of(request),
            request.app.state.login_throttle,
            email,
            form.get("password", ""),
            client,
        )
    except RateLimited as error:
        return _login_form(
            request,
            next_path=next_path,
            email=email,
            error=str(error).capitalize() + ".",
            status=429,
            headers={"retry-after": str(error.retry_after)},
        )
    except AuthError:
        return _login_form(
            request,
            next_path=next_path,
            email=email,
            error="The email or the password is not right.",
            status=401,
        )
    response = RedirectResponse(next_path, status_code=303, headers=_headers())
    set_cookie(response, request, SESSION_COOKIE, signed.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(viewer: SignedCsrf) -> Response:
    await users.sign_out(viewer.platform, viewer.token)
    response = RedirectResponse(f"{PATH}/login", status_code=303, headers=_headers())
    response.delete_cookie(SESSION_COOKIE, path=PATH)
    return response


@router.post("/mode")
async def switch_mode(viewer: SignedCsrf) -> Response:
    """Show live or test data (the session remembers); back to the page it was asked from."""
    form = await form_of(viewer.request)
    await users.switch_mode(
        viewer.platform, viewer.token, "test" if form.get("mode") == "test" else "live"
    )
    return RedirectResponse(safe_next(form.get("next")), status_code=303, headers=_headers())
