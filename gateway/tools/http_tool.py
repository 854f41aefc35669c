"""Run a user-defined HTTP tool (CRM lookup, ticket creation) for the conversation agent.

The caller is on the line while this runs, so every failure - bad status, refused
connection, slow server, undecodable body, missing secret - comes back as a
:class:`ToolResult` the model can talk about ("I can't reach the order system right now"),
never as an exception that would end the turn in silence.  The deadline is total (connect +
read), not per socket operation, and a ``cancel`` event (the caller hung up) returns at once.

Secrets (``${VAR}`` values, credential headers) are scrubbed from ``error`` and ``text``:
both end up in logs, and ``text`` is read by the model, which may read it aloud.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from gateway.tools.spec import HttpToolConfig, ToolError, validate_arguments

__all__ = ["MAX_TEXT_CHARS", "ToolResult", "run_http_tool"]

MAX_TEXT_CHARS = 1500  # what the model gets to read: more only costs prefill time on a 0.5B model
_MAX_BODY_BYTES = 256 * 1024  # read no further: the text is truncated anyway
_TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|cookie|passw|session|signature", re.IGNORECASE)
_MIN_SECRET_CHARS = 4  # shorter values would scrub ordinary words
_POLL_S = 0.05


@dataclass(frozen=True)
class ToolResult:
    """What the model is told: ``text`` is the response body (compacted, truncated) or the error."""

    ok: bool
    text: str
    status: int | None = None
    elapsed_ms: float = 0.0
    error: str | None = None


class _Failure(Exception):
    """An outcome of the request that is an error result, with the body if the server sent one."""

    def __init__(self, error: str, status: int | None = None, body: str = "") -> None:
        super().__init__(error)
        self.error, self.status, self.body = error, status, body


def run_http_tool(
    config: HttpToolConfig,
    arguments: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> ToolResult:
    """Call the API described by ``config`` with the model's (already validated) ``arguments``.

    ``env`` defaults to ``os.environ``; it is read now, not at config load, so a rotated token
    is picked up without a restart.
    """
    started = time.monotonic()
    env = os.environ if env is None else env
    secrets: list[str] = []

    def result(ok: bool, text: str, status: int | None = None, error: str | None = None) -> ToolResult:
        elapsed = round((time.monotonic() - started) * 1000, 1)
        if error is not None and not error.startswith(f"{config.name}:"):
            error = f"{config.name}: {error}"
        scrubbed_error = None if error is None else _scrub(error, secrets)
        return ToolResult(ok, _scrub(text, secrets), status, elapsed, scrubbed_error)

    try:
        args = validate_arguments(config.spec, dict(arguments))
        request = _build_request(config, args, env, secrets)
    except (ToolError, _Failure) as e:
        msg = e.error if isinstance(e, _Failure) else str(e)
        return result(False, msg, error=msg)

    outcome: list[tuple[int, str, str] | _Failure] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_perform(request, config.timeout_s, started))
        except _Failure as e:
            outcome.append(e)
        except Exception as e:  # noqa: BLE001 - whatever urllib raises must become a result
            outcome.append(_Failure(f"request failed: {type(e).__name__}: {e}"))
        finally:
            done.set()

    # A worker thread makes the deadline total and cancellable: urllib's timeout is per socket
    # operation, so a server dripping one byte per second would otherwise hold the caller forever.
    threading.Thread(target=work, name=f"http-tool-{config.name}", daemon=True).start()
    deadline = started + config.timeout_s
    while not done.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return result(False, "The request timed out.", error=f"timed out after {config.timeout_s:g} s")
        if cancel is not None and cancel.is_set():
            return result(False, "The request was cancelled.", error="cancelled")
        done.wait(min(remaining, _POLL_S) if cancel is not None else remaining)
    item = outcome[0]
    if isinstance(item, _Failure):
        return result(False, _truncate(item.body) if item.body else item.error, item.status, item.error)
    status, content_type, body = item
    return result(True, _compact(body, content_type), status)


def _build_request(
    config: HttpToolConfig, args: dict[str, Any], env: Mapping[str, str], secrets: list[str]
) -> urllib.request.Request:
    """Fill the URL and headers; collects every expanded secret into ``secrets`` for scrubbing."""

    def expand_env(name: str) -> str:
        if name not in env:
            raise _Failure(f"environment variable {name} is not set")
        value = env[name]
        if len(value) >= _MIN_SECRET_CHARS:
            secrets.append(value)
        return value

    used: set[str] = set()

    def fill(m: re.Match[str]) -> str:
        if m.group(1):
            return quote(expand_env(m.group(1)), safe="")
        used.add(m.group(2))
        return quote(_as_text(args[m.group(2)]), safe="")

    headers: dict[str, str] = {"Accept": "application/json, text/*;q=0.9", "User-Agent": "voicegate-tool/1"}
    for key, template in config.headers.items():
        value = _TOKEN.sub(lambda m: expand_env(m.group(1)) if m.group(1) else m.group(0), template)
        if _SENSITIVE_HEADER.search(key):
            secrets.append(value)
            secrets.extend(w for w in value.split() if len(w) >= _MIN_SECRET_CHARS and w.lower() not in _AUTH_SCHEMES)
        headers[key] = value
    url = _TOKEN.sub(fill, config.url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _Failure("only http:// and https:// URLs with a host are allowed")
    secrets.extend(p for p in (parts.password, parts.username) if p and len(p) >= _MIN_SECRET_CHARS)
    rest = {k: v for k, v in args.items() if k not in used}
    data = None
    if config.method in ("GET", "DELETE"):
        if rest:
            query = urlencode({k: _as_text(v) for k, v in rest.items()})
            url = f"{url}{'&' if parts.query else '?'}{query}"
    else:
        data = json.dumps(rest, ensure_ascii=False).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    return urllib.request.Request(url, data=data, headers=headers, method=config.method)


_AUTH_SCHEMES = {"bearer", "basic", "token", "digest"}


def _perform(request: urllib.request.Request, timeout_s: float, started: float) -> tuple[int, str, str]:
    """(status, content type, body text) of a 2xx response; raises :class:`_Failure` otherwise."""
    opener = urllib.request.build_opener(_SafeRedirects())
    try:
        response = opener.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        with e:
            body = _read_text(e, started + timeout_s, strict=False)
        raise _Failure(f"HTTP {e.code} {e.reason}", e.code, body) from None
    except urllib.error.URLError as e:
        raise _Failure(_describe_network_error(e.reason)) from None
    except TimeoutError:
        raise _Failure(f"timed out after {timeout_s:g} s") from None
    except OSError as e:
        raise _Failure(_describe_network_error(e)) from None
    with response:
        body = _read_text(response, started + timeout_s, strict=True)
        return response.status, response.headers.get("Content-Type", ""), body


def _read_text(response: Any, deadline: float, *, strict: bool) -> str:
    chunks, size = [], 0
    try:
        while size < _MAX_BODY_BYTES and time.monotonic() < deadline:
            chunk = response.read(min(65536, _MAX_BODY_BYTES - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (TimeoutError, OSError) as e:
        if strict:
            raise _Failure(f"reading the response failed: {_describe_network_error(e)}") from None
    raw = b"".join(chunks)
    charset = response.headers.get_content_charset() if response.headers else None
    try:
        return raw.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        if strict:
            raise _Failure(f"the response body is not valid {charset or 'UTF-8'} text") from None
        return ""


def _describe_network_error(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s), and drop the configured headers when the host changes
    (urllib would otherwise send the Authorization header to whatever host the server names)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        target = urlsplit(newurl)
        if target.scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a {target.scheme or 'relative'} URL", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(req.full_url).netloc != target.netloc:
            for key in list(new.headers):
                if key.lower() not in ("accept", "user-agent"):
                    del new.headers[key]
        return new


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compact(body: str, content_type: str) -> str:
    """JSON without whitespace (more content per prefill token), truncated for the model."""
    stripped = body.strip()
    if "json" in content_type.lower() or stripped[:1] in ("{", "["):
        with contextlib.suppress(ValueError):  # not JSON after all: pass it on as text
            stripped = json.dumps(json.loads(stripped), ensure_ascii=False, separators=(",", ":"))
    return _truncate(stripped)


def _truncate(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 15].rstrip() + " ...[truncated]"


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, "***")
    return text
