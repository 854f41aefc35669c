"""LLM engine that streams from an on-prem OpenAI-compatible server (llama.cpp server, vLLM, Ollama, ...).

Uses only ``http.client`` (no new dependency) and speaks the common subset:
``POST {base_url}/chat/completions`` with ``"stream": true``, answered with Server-Sent
Events (``data: {json}`` lines, ``data: [DONE]`` at the end), text in
``choices[0].delta.content``.  ``base_url`` is the API root including ``/v1``, as in the
OpenAI clients (``http://10.0.0.5:8080/v1``).

Cancellation must stop promptly even while the server is silent (prompt evaluation can
take seconds), and a blocked ``recv`` does not look at a flag.  So each stream has a small
watcher thread that polls the cancel token every 20 ms and, when it is set, shuts the
socket down; the blocked read then returns and the iterator ends.  Closing the connection
is also how the server learns to stop generating (llama.cpp server and vLLM abort a
request whose client disconnected).

Every call opens its own connection: concurrent calls are independent, and a cancelled
stream can never leave half a response in a shared connection.  Errors (connection
refused, HTTP status >= 400, malformed stream, server-sent ``error`` objects) raise
:class:`models.base.LlmError` with the server's message; they never end the stream silently.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.base import CancelToken, ChatMessage, LlmError, is_cancelled

__all__ = ["OpenAiCompatibleLlm", "OpenAiConfig"]

_CANCEL_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class OpenAiConfig:
    """Where the server is and how long to wait for it."""

    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "default"
    api_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0  # max silence between two bytes of the stream (prompt evaluation included)
    extra_body: dict[str, Any] = field(default_factory=dict)  # e.g. {"cache_prompt": True} for llama.cpp server


class _Watcher:
    """Shuts a socket down when a cancel token becomes set (so a blocked read returns at once)."""

    def __init__(self, cancel: CancelToken, sock: socket.socket) -> None:
        self._cancel = cancel
        self._sock = sock
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="llm-http-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(_CANCEL_POLL_S):
            if self._cancel.is_set():
                self.fired = True
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class OpenAiCompatibleLlm:
    """:class:`models.base.Llm` over an OpenAI-compatible ``/chat/completions`` SSE stream."""

    def __init__(self, config: OpenAiConfig | None = None, **overrides: Any) -> None:
        cfg = config or OpenAiConfig()
        if overrides:
            cfg = OpenAiConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, **overrides})
        self.config = cfg
        url = urllib.parse.urlsplit(cfg.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port]/path, got {cfg.base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._path = url.path.rstrip("/") + "/chat/completions"

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.config.connect_timeout_s)
        try:
            conn.connect()
        except OSError as e:
            raise LlmError(f"cannot connect to LLM server {self.config.base_url}: {e}") from e
        assert conn.sock is not None
        conn.sock.settimeout(self.config.read_timeout_s)
        return conn

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: Sequence[str] = (),
        cancel: CancelToken | None = None,
        affinity: str | None = None,  # unused: the server keeps its own caches
    ) -> Generator[str, None, None]:
        """Yield ``delta.content`` pieces as the server sends them; end promptly when ``cancel`` is set."""
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": [m.as_dict() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            **cfg.extra_body,
        }
        if stop:
            body["stop"] = list(stop)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        if is_cancelled(cancel):
            return
        conn = self._connect()
        watcher = _Watcher(cancel, conn.sock) if cancel is not None and conn.sock is not None else None
        try:
            try:
                conn.request("POST", self._path, body=json.dumps(body).encode(), headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                if is_cancelled(cancel):
                    return
                raise LlmError(f"LLM server {cfg.base_url} request failed: {e}") from e
            if resp.status >= 400:
                detail = _error_detail(resp.read(4096))
                raise LlmError(f"LLM server {cfg.base_url} answered HTTP {resp.status} {resp.reason}: {detail}")
            ctype = resp.getheader("Content-Type", "")
            if "text/event-stream" not in ctype:
                # Some servers ignore "stream" and answer with one JSON object: accept it as a single piece.
                text = _message_text(_parse_json(resp.read(), cfg.base_url))
                if text:
                    yield text
                return
            yield from self._read_events(resp, cancel)
        finally:
            if watcher is not None:
                watcher.stop()
            conn.close()

    def _read_events(self, resp: http.client.HTTPResponse, cancel: CancelToken | None) -> Iterator[str]:
        data_lines: list[str] = []
        while True:
            if is_cancelled(cancel):
                return
            try:
                raw = resp.readline()
            except (OSError, http.client.HTTPException, ValueError) as e:
                if is_cancelled(cancel):
                    return
                raise LlmError(f"LLM stream from {self.config.base_url} broke: {e}") from e
            if not raw:  # EOF (or our watcher shut the socket)
                if is_cancelled(cancel):
                    return
                if data_lines:
                    raise LlmError(f"LLM stream from {self.config.base_url} ended inside an event")
                raise LlmError(f"LLM stream from {self.config.base_url} ended without [DONE]")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.startswith(":"):  # SSE comment / keep-alive
                continue
            if line:
                field_name, _, value = line.partition(":")
                if field_name == "data":
                    data_lines.append(value[1:] if value.startswith(" ") else value)
                continue
            # Blank line: dispatch the event.
            if not data_lines:
                continue
            data = "\n".join(data_lines)
            data_lines = []
            if data.strip() == "[DONE]":
                return
            event = _parse_json(data.encode(), self.config.base_url)
            if isinstance(event, dict) and event.get("error"):
                raise LlmError(f"LLM server {self.config.base_url} error in stream: {_error_detail(data.encode())}")
            choices = event.get("choices") if isinstance(event, dict) else None
            if not choices:
                continue
            piece = (choices[0].get("delta") or {}).get("content")
            if piece:
                yield piece
            if is_cancelled(cancel):
                return

    def warm_up(self, system_prompt: str) -> float:
        """Send the system prompt with a 1-token request so the server caches its prefix; return seconds.

        llama.cpp server reuses a slot's prompt prefix (``cache_prompt``, default on) and vLLM
        has prefix caching; a server without it just answers one token.
        """
        t0 = time.perf_counter()
        for _ in self.stream_chat(
            [ChatMessage("system", system_prompt), ChatMessage("user", "Hello")], max_tokens=1, temperature=0.0
        ):
            pass
        return time.perf_counter() - t0


def _parse_json(data: bytes, base_url: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise LlmError(f"LLM server {base_url} sent malformed JSON: {data[:200]!r}") from e


def _message_text(obj: Any) -> str:
    try:
        return str(obj["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return ""


def _error_detail(body: bytes) -> str:
    """The server's error message if the body is OpenAI-style JSON, else the (truncated) body."""
    text = body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        obj = json.loads(text)
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return text[:500] or "(empty body)"
