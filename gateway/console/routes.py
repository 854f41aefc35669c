"""The console's mount on the HTTP server: its routes, the login gate, and what each route answers.

Every route but the login page and the two static files needs a session; a page asked for
without one redirects to the login page, anything else (the event stream, audio, a POST) gets
401. Every POST needs the session's CSRF token and a same-origin `Origin` (when the browser
sends one); a POST that changes something also needs the admin role (403 for a viewer).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import structlog

from gateway.console import campaign_page, campaigns, pages_calls, pages_ops
from gateway.console.auth import Session, Sessions, is_tls, same_origin, session_cookie
from gateway.console.history import HistoryQuery, audio_of, search
from gateway.console.html import esc, page
from gateway.console.sources import ConsoleSources, Request, query_of, read_form
from gateway.console.stream import live_stream
from gateway.http_api import Body, HttpError, Response

log = structlog.get_logger("console")

FAILED_LOGIN_DELAY_S = 1.0  # each wrong password costs the guesser a second (on their own worker thread)
_AUDIO_CHUNK = 64 * 1024
_STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: then browsers send `Origin: null` on our own forms
    "X-Frame-Options": "DENY",
}

Handler = Callable[[Request, tuple[str, ...]], Response]


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    method: str
    handler: Handler
    public: bool = False  # reachable without a session
    acts: bool = False  # changes something: admin only
    page: bool = True  # an HTML page (a missing session redirects to the login page)


class Console:
    """Serves `/` and `/console/...` for `HttpApi` (see `serves`, `dispatch`, `mount`)."""

    def __init__(self, sources: ConsoleSources):
        self.sources = sources
        self.sessions = Sessions(sources.session_ttl_s)
        self.campaigns = campaigns.CampaignDesk()
        self._api: campaigns.ControlApi | None = None
        self._raw: campaigns.RawApi | None = None
        self._closed = threading.Event()
        r = re.compile
        self._routes = [
            _Route(r("/"), "GET", self._live),
            _Route(r("/console/?"), "GET", lambda req, p: _redirect("/")),
            _Route(r("/console/login"), "GET", self._login_page, public=True),
            _Route(r("/console/login"), "POST", self._login, public=True),
            _Route(r("/console/logout"), "POST", self._logout),
            _Route(r("/console/static/([a-z.]+)"), "GET", self._static, public=True, page=False),
            _Route(r("/console/events"), "GET", self._events, page=False),
            _Route(r("/console/calls/([^/]+)/hangup"), "POST", self._hangup, acts=True),
            _Route(r("/console/history"), "GET", self._history),
            _Route(r("/console/history/([^/]+)"), "GET", self._call),
            _Route(r("/console/audio/([^/]+)"), "GET", self._audio, page=False),
            _Route(r("/console/messages"), "GET", self._messages),
            _Route(r("/console/callers"), "GET", self._callers),
            _Route(r("/console/callers/([^/]+)/forget"), "POST", self._forget, acts=True),
            _Route(r("/console/campaigns"), "GET", self._campaigns),
            _Route(r("/console/campaigns"), "POST", self._start_campaign, acts=True),
            _Route(r("/console/campaigns/([^/]+)"), "GET", self._campaign),
            _Route(r("/console/campaigns/([^/]+)/events"), "GET", self._campaign_events, page=False),
            _Route(r(r"/console/campaigns/([^/]+)/results\.csv"), "GET", self._campaign_csv, page=False),
            _Route(r("/console/campaigns/([^/]+)/(stop|pause|resume)"), "POST", self._act_on_campaign, acts=True),
            _Route(r("/console/health"), "GET", self._health),
        ]

    # --- the mount ------------------------------------------------------------------------------

    def mount(self, dispatch: campaigns.Dispatch, token: str | None) -> None:
        """Called by `HttpApi`: its own dispatch, through which the console uses the campaign API."""
        self._raw = campaigns.control_raw(dispatch, token) if token is not None else None
        self._api = campaigns.control_api(self._raw) if self._raw is not None else None

    def serves(self, path: str) -> bool:
        return path == "/" or path == "/console" or path.startswith("/console/")

    def close(self) -> None:
        """End the live streams (their threads notice within a second)."""
        self._closed.set()

    def dispatch(self, method: str, raw_path: str, headers: Message, body: Body) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path
        session = None
        route = None
        try:
            route, params = self._match(method if method != "HEAD" else "GET", path)
            if not self.sources.credentials.any and not route.public:
                raise HttpError(HTTPStatus.FORBIDDEN, "the console is off: set http.token or http.console_password")
            session = self.sessions.find(headers)
            if session is None and not route.public:
                if route.page and method in ("GET", "HEAD"):
                    return _redirect("/console/login?next=" + quote(raw_path, safe=""))
                raise HttpError(HTTPStatus.UNAUTHORIZED, "log in first")
            form = read_form(headers, body) if method == "POST" else {}
            if method == "POST":
                self._check_post(route, session, headers, form)
            request = Request(method, path, query_of(parts.query), headers, session, form)
            response = route.handler(request, params)
        except HttpError as exc:
            response = self._error(exc, session, route)
        except Exception:
            log.exception("console_handler_failed", method=method, path=path)
            response = self._error(HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"), session, route)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _match(self, method: str, path: str) -> tuple[_Route, tuple[str, ...]]:
        allowed = []
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == method:
                return route, tuple(unquote(g) for g in m.groups())
            allowed.append(route.method)
        if allowed:
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}",
                            {"Allow": ", ".join(allowed)})
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def _check_post(self, route: _Route, session: Session | None, headers: Message, form: Mapping[str, str]) -> None:
        if not same_origin(headers):
            raise HttpError(HTTPStatus.FORBIDDEN, "cross-origin form refused")
        if session is None:
            return  # the login form: nothing to protect yet
        if not session.csrf_ok(form.get("csrf")):
            log.warning("console_csrf_refused", role=str(session.role))
            raise HttpError(HTTPStatus.FORBIDDEN, "the form is stale or forged (CSRF token mismatch): reload the page")
        if route.acts and not session.can_act:
            raise HttpError(HTTPStatus.FORBIDDEN, "read-only login: this needs the admin password or the API token")

    def _error(self, exc: HttpError, session: Session | None, route: _Route | None) -> Response:
        status = exc.response.status
        if route is not None and not route.page:
            return exc.response
        message = json.loads(exc.response.body).get("error", "error")
        body = f'<p class="error">{esc(message)}</p><p><a href="/">Back to the live calls</a></p>'
        return Response(status, page(f"{int(status)} {HTTPStatus(status).phrase}", body, session, page_id="error"),
                        "text/html; charset=utf-8", dict(exc.response.headers))

    # --- login ----------------------------------------------------------------------------------

    def _login_page(self, request: Request, params: tuple[str, ...], error: str = "") -> Response:
        target = _safe_next(request.query.get("next", "/"))
        body = (f'<form method="post" action="/console/login" class="login">'
                f'<input type="hidden" name="next" value="{esc(target)}">'
                f'<label>Password or API token <input type="password" name="password" id="password" '
                f'autocomplete="current-password" required autofocus></label>'
                f'<button type="submit" id="login">Log in</button></form>')
        status = HTTPStatus.UNAUTHORIZED if error else HTTPStatus.OK
        return _html(status, page("Log in", body, None, page_id="login", flash=error))

    def _login(self, request: Request, params: tuple[str, ...]) -> Response:
        form = request.form
        role = self.sources.credentials.role_of(form.get("password", ""))
        if role is None:
            log.warning("console_login_failed")
            time.sleep(FAILED_LOGIN_DELAY_S)
            retry = Request("GET", request.path, {"next": form.get("next", "/")}, request.headers, None)
            return self._login_page(retry, params, error="Wrong password.")
        session = self.sessions.create(role)
        log.info("console_login", role=str(role))
        response = _redirect(_safe_next(form.get("next", "/")))
        response.headers["Set-Cookie"] = session_cookie(session, self.sessions.ttl_s, is_tls(request.headers))
        return response

    def _logout(self, request: Request, params: tuple[str, ...]) -> Response:
        assert request.session is not None
        self.sessions.end(request.session)
        response = _redirect("/console/login")
        response.headers["Set-Cookie"] = session_cookie(None, 0, is_tls(request.headers))
        return response

    # --- live calls -----------------------------------------------------------------------------

    def _live(self, request: Request, params: tuple[str, ...]) -> Response:
        assert request.session is not None
        body = pages_calls.live_body(self.sources.control.list_calls(), self.sources.feed.backlog(), request.session)
        return _html(HTTPStatus.OK, page("Live calls", body, request.session, page_id="live"))

    def _events(self, request: Request, params: tuple[str, ...]) -> Response:
        stream = live_stream(self.sources.feed, self.sources.control.list_calls, self._closed)
        return Response(HTTPStatus.OK, b"", "text/event-stream; charset=utf-8", {"X-Accel-Buffering": "no"},
                        stream=stream)

    def _hangup(self, request: Request, params: tuple[str, ...]) -> Response:
        (call_id,) = params
        if not self.sources.control.hangup(call_id):
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such call (it may have ended): {call_id}")
        log.info("console_hangup", call_id=call_id)
        return _redirect("/")

    # --- history --------------------------------------------------------------------------------

    def _history(self, request: Request, params: tuple[str, ...]) -> Response:
        query = pages_calls.parse_query(request.query)
        body = pages_calls.history_body(self.sources.records, query)
        return _html(HTTPStatus.OK, page("Call history", body, request.session, page_id="history"))

    def _call(self, request: Request, params: tuple[str, ...]) -> Response:
        (call_id,) = params
        body = pages_calls.call_body(self.sources.records, self.sources.database, call_id)
        return _html(HTTPStatus.OK, page(f"Call {call_id}", body, request.session, page_id="call"))

    def _audio(self, request: Request, params: tuple[str, ...]) -> Response:
        (call_id,) = params
        wav = audio_of(self.sources.records, call_id)
        if wav is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no recording of call {call_id}")
        size = wav.stat().st_size
        return Response(HTTPStatus.OK, b"", "audio/wav", {"Content-Length": str(size)}, stream=_file_pieces(wav, size))

    # --- messages, callers, campaigns, health ----------------------------------------------------

    def _messages(self, request: Request, params: tuple[str, ...]) -> Response:
        body = pages_ops.messages_body(self.sources.store())
        return _html(HTTPStatus.OK, page("Messages taken", body, request.session, page_id="messages"))

    def _callers(self, request: Request, params: tuple[str, ...]) -> Response:
        assert request.session is not None
        recent = list(dict.fromkeys(c.remote for c in search(self.sources.records, HistoryQuery()) if c.remote))[:20]
        body = pages_ops.callers_body(self.sources.store(), request.query.get("caller", "").strip()[:200], recent,
                                      request.session)
        return _html(HTTPStatus.OK, page("Caller memory", body, request.session, page_id="callers"))

    def _forget(self, request: Request, params: tuple[str, ...]) -> Response:
        (caller_id,) = params
        store = self.sources.store()
        if store is None:
            raise HttpError(HTTPStatus.CONFLICT, "caller memory is off")
        deleted = store.forget(caller_id)
        log.info("console_forget", rows=deleted)  # not the caller ID: what was forgotten stays forgotten
        return _html(HTTPStatus.OK, page("Caller memory", f'<p id="forgotten">Forgot {esc(caller_id)}: {deleted} '
                                         f'records deleted.</p><p><a href="/console/callers">Back</a></p>',
                                         request.session, page_id="callers"))

    def _campaigns(self, request: Request, params: tuple[str, ...]) -> Response:
        assert request.session is not None
        body = campaign_page.campaigns_body(self._api, self.campaigns, self.sources.agents, request.session)
        return _html(HTTPStatus.OK, page("Campaigns", body, request.session, page_id="campaigns"))

    def _campaign(self, request: Request, params: tuple[str, ...]) -> Response:
        assert request.session is not None
        (campaign_id,) = params
        body = campaign_page.campaign_body(self._campaign_api(), campaign_id, request.session)
        return _html(HTTPStatus.OK, page(f"Campaign {campaign_id}", body, request.session, page_id="campaign"))

    def _campaign_events(self, request: Request, params: tuple[str, ...]) -> Response:
        stream = campaign_page.campaign_stream(self._campaign_api(), params[0], self._closed)
        return Response(HTTPStatus.OK, b"", "text/event-stream; charset=utf-8", {"X-Accel-Buffering": "no"},
                        stream=stream)

    def _campaign_csv(self, request: Request, params: tuple[str, ...]) -> Response:
        if self._raw is None:
            raise HttpError(HTTPStatus.CONFLICT, "campaigns need the control API: set http.token")
        return campaign_page.csv_download(self._raw, params[0])

    def _start_campaign(self, request: Request, params: tuple[str, ...]) -> Response:
        campaign_id = campaigns.start(self._campaign_api(), self.campaigns, request.form)
        return _redirect(f"/console/campaigns/{quote(campaign_id, safe='')}")

    def _act_on_campaign(self, request: Request, params: tuple[str, ...]) -> Response:
        campaign_id, action = params
        campaigns.act(self._campaign_api(), campaign_id, action)
        log.info("console_campaign", campaign_id=campaign_id, action=action)
        return _redirect(f"/console/campaigns/{quote(campaign_id, safe='')}")

    def _campaign_api(self) -> campaigns.ControlApi:
        if self._api is None:
            raise HttpError(HTTPStatus.CONFLICT, "campaigns need the control API: set http.token")
        return self._api

    def _health(self, request: Request, params: tuple[str, ...]) -> Response:
        body = pages_ops.health_body(self.sources, self.sources.feed.subscribers)
        return _html(HTTPStatus.OK, page("Health", body, request.session, page_id="health"))

    def _static(self, request: Request, params: tuple[str, ...]) -> Response:
        (name,) = params
        if name not in _STATIC:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such file: {name}")
        data = resources.files("gateway.console").joinpath("static", name).read_bytes()
        return Response(HTTPStatus.OK, data, _STATIC[name])


def _html(status: int, body: bytes) -> Response:
    return Response(status, body, "text/html; charset=utf-8")


def _redirect(location: str) -> Response:
    return Response(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": location})


def _safe_next(target: str) -> str:
    """Only a path on this server (never `//evil.example` or `https://...`): no open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _file_pieces(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        left = size  # the WAV may still grow (a call being recorded): send what Content-Length promised
        while left > 0:
            piece = file.read(min(_AUDIO_CHUNK, left))
            if not piece:
                break
            left -= len(piece)
            yield piece
