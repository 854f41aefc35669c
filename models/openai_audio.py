"""What the OpenAI-compatible audio engines (``/v1/audio/transcriptions``, ``/v1/audio/speech``) share.

The STT and TTS engines talk to a server on another box (a GPU machine running a large
Whisper for every gateway, say), so they need the same things the LLM client has: one
connection per request (concurrent calls stay independent, a broken request never poisons a
shared connection), a connect timeout and a read timeout from the config (a slow server costs
the caller an apology, not a hung reply thread), and every failure turned into one
:class:`models.base.ModelError` subclass whose message names the server and what went wrong.
Only ``http.client``: no new dependency.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import urllib.parse
import uuid
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

__all__ = ["Endpoint", "ServerState", "error_detail", "multipart_body", "reachable", "wav_bytes"]

log = structlog.get_logger("models")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API path on a server given by its OpenAI-style base URL (``http://10.0.0.7:8000/v1``)."""

    base_url: str
    path: str
    connect_timeout_s: float
    read_timeout_s: float
    api_key: str | None = None

    @classmethod
    def parse(cls, base_url: str, suffix: str, *, connect_timeout_s: float, read_timeout_s: float,
              api_key: str | None = None) -> Endpoint:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port]/path, got {base_url!r}")
        return cls(base_url, url.path.rstrip("/") + suffix, connect_timeout_s, read_timeout_s, api_key)

    def connect(self, error: type[Exception], what: str) -> http.client.HTTPConnection:
        """An open connection whose socket reads time out after ``read_timeout_s``; ``error`` if refused."""
        url = urllib.parse.urlsplit(self.base_url)
        https = url.scheme == "https"
        cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = cls(url.hostname or "", url.port or (443 if https else 80), timeout=self.connect_timeout_s)
        try:
            conn.connect()
        except OSError as e:
            raise error(f"cannot connect to {what} server {self.base_url}: {e}") from e
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout_s)
        return conn

    def headers(self, content_type: str, accept: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": accept}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


class ServerState:
    """Says once that a server went down (error level) and once that it is back, whatever the number
    of requests that failed in between: a call transcribes at every pause of the caller, so a dead
    server fails several requests per turn, and the operator needs one clear line, not a flood.
    Shared by the threads that call the engine (under its lock)."""

    def __init__(self, role: str, base_url: str) -> None:
        self.role = role
        self.base_url = base_url
        self._down = False
        self._lock = threading.Lock()

    def failed(self, error: str) -> None:
        with self._lock:
            was_down, self._down = self._down, True
        if not was_down:
            log.error(f"{self.role}_server_down", url=self.base_url, error=error)

    def answered(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            log.info(f"{self.role}_server_back", url=self.base_url)


def wav_bytes(audio: npt.NDArray[np.float32], sample_rate: int) -> bytes:
    """Mono float32 in [-1, 1] as a 16-bit PCM WAV file (what every transcription server reads)."""
    pcm = np.clip(np.rint(np.asarray(audio, dtype=np.float32) * 32767.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def multipart_body(fields: dict[str, str], file_field: str, filename: str, content: bytes,
                   content_type: str) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its Content-Type (with the boundary)."""
    boundary = f"voicegate-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def error_detail(body: bytes) -> str:
    """The server's error message from OpenAI-style JSON (``{"error": ...}``, FastAPI's ``{"detail": ...}``),
    else the (truncated) body."""
    text = body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        obj = json.loads(text)
        for _ in range(3):  # {"detail": {"error": {"message": ...}}} is FastAPI wrapping OpenAI's shape
            if isinstance(obj, dict) and ("error" in obj or "detail" in obj):
                obj = obj.get("error", obj.get("detail"))
        if isinstance(obj, dict):
            return str(obj.get("message") or obj)
        return str(obj)
    return text[:500] or "(empty body)"


def reachable(base_url: str, timeout_s: float = 1.0) -> bool:
    """True if the server of ``base_url`` accepts a TCP connection now (the readiness probe's check:
    cheap, and says what an operator needs, "is the box up", without costing the server a request)."""
    url = urllib.parse.urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError:
        return False
    return True
