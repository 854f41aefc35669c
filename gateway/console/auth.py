"""Who may use the console: passwords, sessions in a cookie, CSRF tokens.

Why sessions and not the bearer token on every request: a browser cannot add an Authorization
header to a link or a form, and a token kept in page JavaScript is one XSS away from leaking. So
a login exchanges a password (the control API's token, or a console password) for a random
session id in an HttpOnly, SameSite=Strict cookie (Secure when the browser reached us over TLS),
held only in this process's memory: a restart logs everyone out, which is fine for an operator
console. Every POST also carries the session's CSRF token (a hidden form field), compared in
constant time, so another site can never make a logged-in browser hang up a call.

Sessions are touched by HTTP worker threads only, behind one lock.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import Message
from http.cookies import CookieError, SimpleCookie

COOKIE = "voicegate_session"
MAX_SESSIONS = 256  # oldest dropped first: a login loop cannot grow memory without bound


class Role(enum.StrEnum):
    ADMIN = "admin"  # may hang up calls, forget callers, start campaigns
    VIEWER = "viewer"  # sees everything, changes nothing


@dataclass(frozen=True)
class Credentials:
    """The passwords that open the console; a None password opens nothing."""

    token: str | None  # http.token: admin
    password: str | None  # http.console_password: admin
    viewer_password: str | None  # http.console_viewer_password: read-only

    @property
    def any(self) -> bool:
        return any((self.token, self.password, self.viewer_password))

    def role_of(self, given: str) -> Role | None:
        """The role this password opens, or None. Every configured secret is compared (constant time)."""
        raw = given.encode("utf-8", "surrogatepass")
        role = None
        for secret, opens in ((self.viewer_password, Role.VIEWER), (self.password, Role.ADMIN),
                              (self.token, Role.ADMIN)):
            if secret and hmac.compare_digest(raw, secret.encode()):
                role = opens
        return role


@dataclass(frozen=True)
class Session:
    id: str
    role: Role
    csrf: str
    expires_at: float  # monotonic

    @property
    def can_act(self) -> bool:
        return self.role is Role.ADMIN

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.csrf.encode())


class Sessions:
    """The live sessions; idle ones expire after `ttl_s` (each request extends its session)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self, role: Role) -> Session:
        session = Session(secrets.token_urlsafe(32), role, secrets.token_urlsafe(24), self._clock() + self.ttl_s)
        with self._lock:
            self._purge()
            while len(self._by_id) >= MAX_SESSIONS:
                del self._by_id[next(iter(self._by_id))]
            self._by_id[session.id] = session
        return session

    def find(self, headers: Message) -> Session | None:
        """The request's session (from its cookie), extended; None if absent, unknown or expired."""
        session_id = cookie_value(headers, COOKIE)
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if session.expires_at <= now:
                del self._by_id[session_id]
                return None
            session = replace(session, expires_at=now + self.ttl_s)
            self._by_id[session_id] = session
            return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._by_id.pop(session.id, None)

    def _purge(self) -> None:
        now = self._clock()
        for session_id in [sid for sid, s in self._by_id.items() if s.expires_at <= now]:
            del self._by_id[session_id]


def cookie_value(headers: Message, name: str) -> str | None:
    cookie = SimpleCookie()
    for raw in headers.get_all("Cookie") or []:
        try:
            cookie.load(raw)
        except CookieError:
            continue
    morsel = cookie.get(name)
    return morsel.value if morsel is not None else None


def is_tls(headers: Message) -> bool:
    """Whether the browser reached us over TLS: through a TLS-terminating proxy that says so."""
    return (headers.get("X-Forwarded-Proto") or "").strip().lower() == "https"


def session_cookie(session: Session | None, ttl_s: float, secure: bool) -> str:
    """The Set-Cookie value that stores (or, with None, clears) the session."""
    value, max_age = (session.id, int(ttl_s)) if session is not None else ("", 0)
    parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def same_origin(headers: Message) -> bool:
    """A POST's Origin (when the browser sends one) must be this host: a second line behind CSRF tokens."""
    origin = headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    host = headers.get("Host") or ""
    return origin.split("://", 1)[-1] == host
