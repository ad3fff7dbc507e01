"""Log in (an API key exchanged for a session), log out."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from faceatlas.service.console.base import (
    PREFIX,
    ConsoleRoute,
    PostingUserDep,
    SessionsDep,
    UserDep,
    redirect,
    render,
)
from faceatlas.service.console.sessions import COOKIE, LOGIN_COOKIE, REASONS, check_same_origin
from faceatlas.service.deps import SettingsDep, get_settings

router = APIRouter(route_class=ConsoleRoute)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, and Secure over HTTPS or where the settings say
    TLS ends at a proxy in front (``FACEATLAS_CONSOLE_SECURE_COOKIE``: the request is plain HTTP then)."""
    secure = request.url.scheme == "https" or get_settings(request).console_secure_cookie
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict", secure=secure)


def _login_page(request: Request, message: str | None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status_code, csrf=token, message=message)
    _cookie(response, request, LOGIN_COOKIE, token, 15 * 60)
    return response


@router.get("/", include_in_schema=False)
def home(user: UserDep) -> Response:
    """The first page the key may see: galleries, or Try it for a detect-only key."""
    return RedirectResponse(f"{PREFIX}/galleries" if user.principal.allows("read") else f"{PREFIX}/try",
                            status_code=303)


@router.get("/login", include_in_schema=False)
def login_form(request: Request, reason: str | None = None) -> Response:
    return _login_page(request, REASONS.get(reason or ""))


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    sessions: SessionsDep,
    settings: SettingsDep,
    key: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Exchange an API key for a session (the key itself is never stored in the browser); the
    session the browser held before ends (it stayed valid until it expired, another key's)."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    check_same_origin(request)
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _login_page(request, "the login form expired: please try again", 403)
    opened = await run_in_threadpool(sessions.open, key.strip())
    if opened is None:
        return _login_page(request, "this API key is not valid (unknown or revoked)", 401)
    if previous := request.cookies.get(COOKIE):
        await run_in_threadpool(sessions.close, previous)
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    _cookie(response, request, COOKIE, opened[0], settings.console_session_minutes * 60)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, user: PostingUserDep, sessions: SessionsDep) -> Response:
    await run_in_threadpool(sessions.close, request.cookies.get(COOKIE, ""))
    response = redirect(request, f"{PREFIX}/login?reason=logout")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
