"""Web console sessions: an API key is exchanged once for a random session id (kept only in an
HttpOnly, SameSite=Strict cookie; the database holds its sha256), with a CSRF token per session.
Every request re-authenticates the session's key, so a revoked key is refused at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from faceatlas.db import utcnow
from faceatlas.errors import Forbidden, Unauthorized
from faceatlas.service.accounts import Accounts, Principal
from faceatlas.service.db import ConsoleSession

COOKIE = "faceatlas_console"
LOGIN_COOKIE = "faceatlas_console_login"  # the login form's double-submit CSRF token (no session yet)
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


# Why the login page is shown (``?reason=``): only these texts, never one taken from the URL.
REASONS = {
    "login": "please log in with an API key",
    "expired": "the session has expired: please log in again",
    "revoked": "the session's API key is revoked: log in with a valid key",
    "logout": "logged out",
}


class LoginRequired(Unauthorized):
    """No console session, an expired one, or one whose key was revoked: back to the login page."""

    def __init__(self, reason: str) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason


@dataclass(frozen=True)
class ConsoleUser:
    """The caller of a console request: its key's principal and its session's CSRF token."""

    principal: Principal
    csrf: str
    key_prefix: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    """Console sessions in the service database (table ``svc_console_sessions``)."""

    def __init__(self, engine: Engine, accounts: Accounts, minutes: int) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lifetime = timedelta(minutes=minutes)

    def open(self, token: str) -> tuple[str, str] | None:
        """A new session for the API key ``token``: (session id, CSRF token), or None when the key is refused."""
        principal = self.accounts.authenticate(token)
        if principal is None:
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with Session(self.engine) as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            session.add(ConsoleSession(id_hash=_digest(session_id), key_id=principal.key_id, csrf_token=csrf,
                                       created_at=now, expires_at=now + self.lifetime))
            session.commit()
        return session_id, csrf

    def user(self, session_id: str | None) -> ConsoleUser:
        """The session's user, its key checked again; :class:`LoginRequired` when there is none."""
        if not session_id:
            raise LoginRequired("login")
        with Session(self.engine) as session:
            row = session.get(ConsoleSession, _digest(session_id))
            if row is not None and row.expires_at <= utcnow():
                session.delete(row)
                session.commit()
                raise LoginRequired("expired")
            if row is None:
                raise LoginRequired("login")
            key_id, csrf = row.key_id, row.csrf_token
        key = self.accounts.principal_of_key(key_id)
        if key is None:
            self.close(session_id)
            raise LoginRequired("revoked")
        principal, prefix = key
        return ConsoleUser(principal, csrf, prefix)

    def close(self, session_id: str) -> None:
        with Session(self.engine) as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _digest(session_id)))
            session.commit()


def check_same_origin(request: Request) -> None:
    """A state-changing console request sent by a page of another origin is :class:`Forbidden`, as
    browsers tell it (``Sec-Fetch-Site``; absent: a client that is no browser, or an old one). The
    login form's token is a cookie echoed back: a site that may set cookies for the console's host
    (another port, a sibling subdomain) could choose both and log a user into its own tenant."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"a console form was sent from another site ({site[:20]}): open the console's own page "
                        "and send it from there")


async def check_csrf(request: Request, expected: str) -> None:
    """A state-changing console request comes from the console's own pages (:func:`check_same_origin`)
    and carries the token (form field or header), else 403."""
    check_same_origin(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
