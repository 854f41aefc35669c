"""The operator-facing HTTP side: Prometheus metrics, health probes and a small control API.

`/metrics`, `/healthz` and `/readyz` need no auth, because scrapers and orchestrator probes
rarely carry secrets and they reveal nothing an attacker can use to place calls.  Everything that
acts on calls (list, hang up, originate, campaigns) needs `Authorization: Bearer <http.token>`,
compared in constant time; with no token configured the control API is off, not open.

Standard library only (`ThreadingHTTPServer`): the API is low-volume and on-prem, so a web
framework would add dependencies without adding anything.  The token and the Authorization header
are never logged; each control request is logged once (method, path, status, client address).
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import structlog

from gateway.campaigns.book import CampaignBook
from gateway.campaigns.contacts import contacts_from_rows, parse_campaign_csv
from gateway.campaigns.dnc import DoNotCallError, DoNotCallList
from gateway.campaigns.outcomes import EndedCall
from gateway.campaigns.results import results_csv
from gateway.metrics import Metrics
from gateway.store import StoreError

if TYPE_CHECKING:
    from gateway.console import Console

log = structlog.get_logger("http")
T = TypeVar("T")

MAX_BODY = 1 << 20  # 1 MiB: a 10 000-row campaign CSV fits; anything bigger is a mistake or an attack
_DRAIN_LIMIT = 4 << 20  # an unread body up to this size is drained so the client still gets our answer
MAX_CONCURRENCY = 100
MAX_CALLS_PER_SECOND = 50.0
_SHUTDOWN_POLL_S = 0.1  # how soon stop() returns; the idle wake-ups this costs are negligible
_PROBE_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # scraped often: not logged per request


class GatewayControl(Protocol):
    """What the HTTP API (and campaigns) need from the running gateway."""

    def list_calls(self) -> list[dict[str, object]]:
        """One dict per active call: call_id, direction, agent, remote, started_at, state."""
        ...

    def hangup(self, call_id: str) -> bool:
        """Hang up a call; False if there is no such call."""
        ...

    def originate(self, to: str, agent: str | None, variables: Mapping[str, str], account: str | None) -> str:
        """Place a call and return its Call-ID; ValueError with a clear message for bad input."""
        ...

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        """True once that call has ended (waiting up to `timeout` seconds)."""
        ...

    def ended_call(self, call_id: str) -> EndedCall | None:
        """What the call left (outcome, code, duration, AMD verdict, record) once it has ended, else None."""
        ...

    def readiness(self) -> dict[str, object]:
        """{"ready": bool, "models_loaded": bool, "model_servers": {engine: "unreachable: URL"},
        "registrations": {aor: state}, "draining": bool}."""
        ...

    def drain(self) -> int:
        """Stop taking new calls and let the calls up finish; returns how many are up."""
        ...

    @property
    def draining(self) -> bool: ...


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # sent piece by piece after the headers (SSE, audio files)


def json_response(status: int, payload: object, **headers: str) -> Response:
    body = json.dumps(payload, default=str).encode()
    return Response(status, body, "application/json", dict(headers))


class HttpError(Exception):
    """Raised by a handler to answer with a JSON error; the message is shown to the client."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.response = json_response(status, {"error": message}, **dict(headers or {}))


class Body:
    """A request body read lazily, so routing and auth run before an untrusted body is read."""

    def __init__(self, headers: Message, read: Callable[[int], bytes]):
        self._headers = headers
        self._read = read
        self.length = 0
        self.consumed = False

    def declared_length(self) -> int:
        if self._headers.get("Transfer-Encoding"):
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported: send Content-Length")
        raw = self._headers.get("Content-Length", "0").strip() or "0"
        if not raw.isdigit():
            raise HttpError(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        return int(raw)

    def raw(self) -> bytes:
        """The body's bytes; 413 above MAX_BODY."""
        self.length = self.declared_length()
        if self.length > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body larger than {MAX_BODY} bytes")
        data = self._read(self.length) if self.length else b""
        self.consumed = True
        return data

    def json_object(self) -> dict[str, object]:
        """The body as a JSON object; 413 above MAX_BODY, 400 if it is not a JSON object."""
        self.length = self.declared_length()
        if self.length > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body larger than {MAX_BODY} bytes")
        raw = self._read(self.length) if self.length else b""
        self.consumed = True
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return data


Handler = Callable[[tuple[str, ...], Body], Response]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, Handler]
    control: bool  # needs the bearer token


class HttpApi:
    """Serves metrics, probes and the control API on `listen` (port 0: any free port)."""

    def __init__(self, listen: tuple[str, int], token: str | None, control: GatewayControl, metrics: Metrics,
                 campaigns: CampaignBook | None = None, console: Console | None = None):
        """`campaigns`: their defaults, do-not-call list and storage (none: no list, results in memory)."""
        if token is not None and not token.strip():
            raise ValueError("http.token must not be empty (leave it unset to disable the control API)")
        self.listen = listen
        self._token = token.encode() if token is not None else None
        self.control = control
        self.metrics = metrics
        self.console = console  # the web console, served at / and /console/ (gateway/console/)
        if console is not None:
            console.mount(self.dispatch, token)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._campaigns = campaigns or CampaignBook()
        self._routes = [
            Route(re.compile(r"/metrics"), {"GET": self._get_metrics}, control=False),
            Route(re.compile(r"/healthz"), {"GET": self._get_health}, control=False),
            Route(re.compile(r"/readyz"), {"GET": self._get_ready}, control=False),
            Route(re.compile(r"/calls"), {"GET": self._list_calls, "POST": self._originate}, control=True),
            Route(re.compile(r"/calls/([^/]+)"), {"DELETE": self._hangup}, control=True),
            Route(re.compile(r"/campaigns"), {"GET": self._list_campaigns, "POST": self._start_campaign}, control=True),
            Route(re.compile(r"/drain"), {"POST": self._drain}, control=True),
            Route(
                re.compile(r"/campaigns/([^/]+)"),
                {"GET": self._campaign_status, "DELETE": self._stop_campaign}, control=True,
            ),
            Route(re.compile(r"/campaigns/([^/]+)/(pause|resume)"), {"POST": self._pause_campaign}, control=True),
            Route(re.compile(r"/campaigns/([^/]+)/results"), {"GET": self._campaign_results}, control=True),
            Route(re.compile(r"/campaigns/([^/]+)/results\.csv"), {"GET": self._campaign_results_csv}, control=True),
            Route(re.compile(r"/do-not-call"), {"GET": self._list_dnc, "POST": self._add_dnc}, control=True),
            Route(re.compile(r"/do-not-call/([^/]+)"), {"DELETE": self._remove_dnc}, control=True),
        ]

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve on a daemon thread; a bind error (port in use) raises here, at startup."""
        self._server = _Server(self.listen, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_SHUTDOWN_POLL_S,), name="http-api", daemon=True
        )
        self._thread.start()
        log.info("http_listening", host=self.listen[0], port=self.port, control_api=self._token is not None)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpApi not started")
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and stop every campaign from starting more calls."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.console is not None:
            self.console.close()
        self._campaigns.close()
        self._server = self._thread = None

    # --- dispatch -------------------------------------------------------------------------------

    def dispatch(self, method: str, raw_path: str, headers: Message, body: Body) -> tuple[Response, bool]:
        """Answer one request; also returns whether it should be logged (everything but the probes)."""
        path = urlsplit(raw_path).path
        loggable = path not in _PROBE_PATHS
        if self.console is not None and self.console.serves(path):
            return self.console.dispatch(method, raw_path, headers, body), True
        try:
            route, params = self._match(path)
            handler = route.methods.get(method)
            if handler is None:
                allow = ", ".join(sorted(route.methods))
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}", {"Allow": allow})
            if route.control:
                self._authorize(headers)
            return handler(params, body), loggable
        except HttpError as exc:
            return exc.response, loggable
        except Exception:
            log.exception("http_handler_failed", method=method, path=path)
            return json_response(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}), True

    def _match(self, path: str) -> tuple[Route, tuple[str, ...]]:
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is not None:
                return route, tuple(unquote(g) for g in m.groups())
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    def _authorize(self, headers: Message) -> None:
        if self._token is None:
            raise HttpError(HTTPStatus.FORBIDDEN, "the control API is disabled: set http.token in the config")
        scheme, _, given = (headers.get("Authorization") or "").strip().partition(" ")
        # http.server decodes headers as latin-1: re-encoding gives back the bytes the client sent.
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1"), self._token)
        if not ok:
            raise HttpError(HTTPStatus.UNAUTHORIZED, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    # --- probes ---------------------------------------------------------------------------------

    def _get_metrics(self, params: tuple[str, ...], body: Body) -> Response:
        text, content_type = self.metrics.render()
        return Response(HTTPStatus.OK, text, content_type)

    def _get_health(self, params: tuple[str, ...], body: Body) -> Response:
        return json_response(HTTPStatus.OK, {"status": "ok"})

    def _get_ready(self, params: tuple[str, ...], body: Body) -> Response:
        try:
            state = self.control.readiness()
        except Exception:  # a probe must answer, not 500: "not ready" is the truth here
            log.exception("readiness_failed")
            state = {"ready": False, "error": "readiness check failed"}
        ready = state.get("ready") is True
        return json_response(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, state)

    # --- calls ----------------------------------------------------------------------------------

    def _list_calls(self, params: tuple[str, ...], body: Body) -> Response:
        return json_response(HTTPStatus.OK, {"calls": self.control.list_calls()})

    def _hangup(self, params: tuple[str, ...], body: Body) -> Response:
        (call_id,) = params
        if not self.control.hangup(call_id):
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such call: {call_id}")
        return json_response(HTTPStatus.OK, {"call_id": call_id, "status": "hanging_up"})

    def _originate(self, params: tuple[str, ...], body: Body) -> Response:
        if self.control.draining:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "the gateway is draining: it places no new calls")
        data = body.json_object()
        to = _required_str(data, "to")
        agent = _optional_str(data, "agent")
        account = _optional_str(data, "account")
        variables = _variables(data)
        try:
            call_id = self.control.originate(to, agent, variables, account)
        except ValueError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        return json_response(HTTPStatus.CREATED, {"call_id": call_id})

    def _drain(self, params: tuple[str, ...], body: Body) -> Response:
        active = self.control.drain()
        return json_response(HTTPStatus.ACCEPTED, {"draining": True, "active_calls": active})

    # --- campaigns ------------------------------------------------------------------------------

    def _start_campaign(self, params: tuple[str, ...], body: Body) -> Response:
        if self.control.draining:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "the gateway is draining: it starts no campaign")
        data = body.json_object()
        csv_text = _required_str(data, "csv")
        concurrency = _number(data, "concurrency", 1, int, 1, MAX_CONCURRENCY)
        rate = _number(data, "calls_per_second", 1.0, float, 0.0, MAX_CALLS_PER_SECOND)
        if rate <= 0:
            raise HttpError(HTTPStatus.BAD_REQUEST, "'calls_per_second' must be greater than 0")
        try:
            policy = self._campaigns.policy(data)
            contacts = contacts_from_rows(parse_campaign_csv(csv_text), policy.timezone)
        except ValueError as exc:  # PolicyError is one: it names the key
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        campaign_id = self._campaigns.start(contacts, _optional_str(data, "agent"), int(concurrency), float(rate),
                                            self.control, _optional_str(data, "account"), policy)
        log.info("campaign_started", campaign_id=campaign_id, rows=len(contacts), concurrency=concurrency, rate=rate,
                 policy=policy.describe())
        return json_response(HTTPStatus.ACCEPTED, {"campaign_id": campaign_id, "total": len(contacts),
                                                   "policy": policy.describe()})

    def _campaign_status(self, params: tuple[str, ...], body: Body) -> Response:
        (campaign_id,) = params
        return json_response(HTTPStatus.OK, {"campaign_id": campaign_id, **_known(self._campaigns.status, campaign_id)})

    def _list_campaigns(self, params: tuple[str, ...], body: Body) -> Response:
        try:
            return json_response(HTTPStatus.OK, {"campaigns": self._campaigns.listing()})
        except StoreError as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"campaigns: {exc}") from None

    def _stop_campaign(self, params: tuple[str, ...], body: Body) -> Response:
        """Cancel: no more calls (those up finish), kept as cancelled, never resumed."""
        (campaign_id,) = params
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no campaign running here: {campaign_id}")
        if not campaign.cancel():  # finished already: nothing to cancel, and nothing more to start either
            campaign.stop()
        log.info("campaign_stopped", campaign_id=campaign_id)
        return json_response(HTTPStatus.OK, {"campaign_id": campaign_id, **campaign.status()})

    def _pause_campaign(self, params: tuple[str, ...], body: Body) -> Response:
        campaign_id, action = params
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no campaign running here: {campaign_id}")
        if not (campaign.pause() if action == "pause" else campaign.resume()):
            raise HttpError(HTTPStatus.CONFLICT, f"campaign {campaign_id} is {campaign.state}: it cannot {action}")
        return json_response(HTTPStatus.OK, {"campaign_id": campaign_id, **campaign.status()})

    def _campaign_results(self, params: tuple[str, ...], body: Body) -> Response:
        (campaign_id,) = params
        results = _known(self._campaigns.results, campaign_id)
        return json_response(HTTPStatus.OK, {"campaign_id": campaign_id, "contacts": results})

    def _campaign_results_csv(self, params: tuple[str, ...], body: Body) -> Response:
        (campaign_id,) = params
        text = results_csv(_known(self._campaigns.results, campaign_id))
        return Response(HTTPStatus.OK, text.encode(), "text/csv; charset=utf-8",
                        {"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'})

    # --- do-not-call list ------------------------------------------------------------------------

    def _dnc(self) -> DoNotCallList:
        if self._campaigns.do_not_call is None:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "no do-not-call list on this gateway")
        return self._campaigns.do_not_call

    def _list_dnc(self, params: tuple[str, ...], body: Body) -> Response:
        dnc = self._dnc()
        try:
            entries = [{"number": e.number, "added_at": e.added_at, "note": e.note} for e in dnc.entries()]
            return json_response(HTTPStatus.OK, {"numbers": entries, "file_numbers": dnc.file_numbers()})
        except DoNotCallError as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None

    def _add_dnc(self, params: tuple[str, ...], body: Body) -> Response:
        dnc = self._dnc()
        data = body.json_object()
        numbers = data.get("numbers", [data.get("number")])
        if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) and n.strip() for n in numbers):
            raise HttpError(HTTPStatus.BAD_REQUEST, "'number' (a string) or 'numbers' (a list of strings) is required")
        note = _optional_str(data, "note")
        try:
            added = [dnc.add(n, note) for n in numbers]
        except ValueError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        except DoNotCallError as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
        log.info("do_not_call_added", count=len(added))  # numbers are personal data: not logged
        return json_response(HTTPStatus.CREATED, {"added": [e.number for e in added]})

    def _remove_dnc(self, params: tuple[str, ...], body: Body) -> Response:
        (number,) = params
        try:
            removed = self._dnc().remove(number)
        except DoNotCallError as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
        if not removed:
            raise HttpError(HTTPStatus.NOT_FOUND, f"not on the do-not-call list: {number}")
        log.info("do_not_call_removed")
        return json_response(HTTPStatus.OK, {"removed": number})


# --- request field validation -------------------------------------------------------------------


def _known(lookup: Callable[[str], T], campaign_id: str) -> T:
    """A campaign lookup: 404 for an unknown campaign, 503 when the store that kept it fails."""
    try:
        return lookup(campaign_id)
    except KeyError:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such campaign: {campaign_id}") from None
    except StoreError as exc:
        raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"campaign results: {exc}") from None


def _required_str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise HttpError(HTTPStatus.BAD_REQUEST, f"'{key}' is required and must be a non-empty string")
    return value.strip()


def _optional_str(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise HttpError(HTTPStatus.BAD_REQUEST, f"'{key}' must be a non-empty string when given")
    return value.strip()


def _variables(data: Mapping[str, object]) -> dict[str, str]:
    """Call variables as strings; numbers and booleans are accepted and stringified, nesting is not."""
    raw = data.get("variables")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'variables' must be an object of strings")
    variables: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            variables[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            variables[key] = str(value)
        else:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"variable '{key}' must be a string, number or boolean")
    return variables


def _number(data: Mapping[str, object], key: str, default: float, kind: type, low: float, high: float) -> float:
    value = data.get(key, default)
    valid_type = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not valid_type:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"'{key}' must be {'an integer' if kind is int else 'a number'}")
    if not low <= value <= high:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"'{key}' must be between {low:g} and {high:g}")
    return value


# --- the stdlib server --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never holds up shutdown

    def __init__(self, listen: tuple[str, int], api: HttpApi):
        self.address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.api = api
        super().__init__(listen, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "voicegate"
    sys_version = ""  # do not advertise the Python version
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stalled client cannot pin a thread forever

    def do_GET(self) -> None:  # http.server dispatches on these names
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Silence http.server's stderr lines: requests are logged once, structured, in `_handle`."""

    def _handle(self) -> None:
        body = Body(self.headers, self.rfile.read)
        response, loggable = self.server.api.dispatch(self.command, self.path, self.headers, body)
        if loggable:  # before the answer goes out, so the line exists once the client has it
            log.info(
                "http_request", method=self.command, path=urlsplit(self.path).path,
                status=int(response.status), client=self.client_address[0],
            )
        if not body.consumed:
            self._drain(body)
        self._write(response)

    def _drain(self, body: Body) -> None:
        """Read an unread body (e.g. after 401 or 413) so the client, still sending, gets the answer."""
        try:
            remaining = body.declared_length()
        except HttpError:
            remaining = _DRAIN_LIMIT + 1
        if remaining > _DRAIN_LIMIT:
            self.close_connection = True
            return
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
        elif "Content-Length" not in response.headers:
            self.close_connection = True  # a stream of unknown length ends when the connection does
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        if response.stream is not None:
            self._write_stream(response.stream)

    def _write_stream(self, stream: Iterator[bytes]) -> None:
        """Each piece as it comes; a browser that went away ends the stream (its generator is closed)."""
        try:
            if self.command != "HEAD":
                for piece in stream:
                    self.wfile.write(piece)
                    self.wfile.flush()
        except OSError:  # the client closed the connection (or stalled past `timeout`)
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
