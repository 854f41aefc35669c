"""Text to speech from an OpenAI-compatible ``/v1/audio/speech`` server (speaches, Kokoro-FastAPI,
openedai-speech, a piper server, ...).

Why: a site may run its voices on one box for every gateway, as it may its LLM and Whisper.

The request is ``POST {base_url}/audio/speech`` with JSON ``{model, input, voice,
response_format, speed}``.  We ask for ``wav`` (the header says the rate, so any server's
voice works) or raw ``pcm`` (OpenAI's is 24 kHz 16-bit mono; ``sample_rate`` in the config
says what a given server sends).  Compressed formats are not asked for: decoding mp3/opus
would need another library and buys nothing on a LAN.

Streaming: the body is read as it arrives and handed on in pieces of ``chunk_ms``, so a
server that sends chunked audio (most do) lets the first piece reach the gateway before the
whole clause is synthesized.  (The gateway sends text clause by clause, so the first clause
already plays early whatever the server does.)  A WAV header whose sizes are 0 or 0xFFFFFFFF,
as streaming servers write it, is read to the end of the body.

Chunks carry the server's own rate; resampling to what the call plays (8 kHz on G.711,
16 kHz on G.722) is the gateway's, as for the local Piper voice.

Faults, as for the LLM server: connection refused, no byte for ``timeout_s``, HTTP errors and
malformed audio raise :class:`models.base.TtsError` naming the server.  Cancellation (barge-in)
shuts the socket from a small watcher thread so a blocked read returns at once, and closing
the connection tells the server to stop.
"""

from __future__ import annotations

import http.client
import json
import struct
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.base import AudioChunk, CancelToken, TtsError, is_cancelled
from models.openai_audio import Endpoint, ServerState, error_detail
from models.openai_compat import _Watcher

__all__ = ["OpenAiTts", "OpenAiTtsConfig"]

_STREAMING_SIZES = (0, 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class OpenAiTtsConfig:
    """Where the speech server is, which voice, and how long to wait."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "tts-1"
    voice: str = "alloy"
    api_key: str | None = None
    response_format: Literal["wav", "pcm"] = "wav"
    sample_rate: int = 24000  # of raw "pcm" answers (wav says its own)
    speed: float = 1.0
    chunk_ms: int = 200  # audio handed on per piece while the body streams in
    connect_timeout_s: float = 3.0
    timeout_s: float = 10.0  # longest silence while waiting for audio


class OpenAiTts:
    """:class:`models.base.Tts` over HTTP.  ``synthesize`` may be called from several threads (one connection each)."""

    def __init__(self, config: OpenAiTtsConfig | None = None) -> None:
        self.config = cfg = config or OpenAiTtsConfig()
        self.endpoint = Endpoint.parse(cfg.base_url, "/audio/speech", connect_timeout_s=cfg.connect_timeout_s,
                                       read_timeout_s=cfg.timeout_s, api_key=cfg.api_key)
        self._rate = cfg.sample_rate  # updated from the first WAV header (read-only for others)
        self.state = ServerState("tts", cfg.base_url)

    @property
    def sample_rate(self) -> int:
        """The server's rate, as its last WAV answer said (the configured one before the first answer)."""
        return self._rate

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Generator[AudioChunk, None, None]:
        """Yield the speech for ``text`` in pieces of ``chunk_ms`` as the server sends it; stop when cancelled."""
        if not text.strip() or is_cancelled(cancel):
            return
        try:
            yield from self._synthesize(text, cancel)
        except TtsError as exc:
            self.state.failed(str(exc))
            raise
        self.state.answered()

    def _synthesize(self, text: str, cancel: CancelToken | None) -> Generator[AudioChunk, None, None]:
        cfg = self.config
        body = json.dumps({"model": cfg.model, "input": text, "voice": cfg.voice,
                           "response_format": cfg.response_format, "speed": cfg.speed}).encode()
        conn = self.endpoint.connect(TtsError, "TTS")
        watcher = _Watcher(cancel, conn.sock) if cancel is not None and conn.sock is not None else None
        try:
            try:
                conn.request("POST", self.endpoint.path, body=body,
                             headers=self.endpoint.headers("application/json", "audio/wav, audio/pcm"))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                if is_cancelled(cancel):
                    return
                raise self._failure(e) from e
            if resp.status >= 400:
                raise TtsError(f"TTS server {cfg.base_url} answered HTTP {resp.status} {resp.reason}: "
                               f"{error_detail(resp.read(4096))}")
            yield from self._stream(resp, cancel)
        finally:
            if watcher is not None:
                watcher.stop()
            conn.close()

    def _stream(self, resp: http.client.HTTPResponse, cancel: CancelToken | None) -> Generator[AudioChunk, None, None]:
        reader = _Reader(resp, self, cancel)
        rate = self._read_wav_header(reader) if self.config.response_format == "wav" else self.config.sample_rate
        if rate is None:
            return  # cancelled during the header
        self._rate = rate
        piece = max(2, rate * self.config.chunk_ms // 1000 * 2)
        pending = b""
        while True:
            data = reader.read(piece - len(pending))
            if data is None:
                return
            pending += data
            if len(pending) >= piece or (not data and pending):
                usable = len(pending) - len(pending) % 2
                yield AudioChunk(pcm=np.frombuffer(pending[:usable], dtype="<i2").astype(np.int16), sample_rate=rate)
                pending = pending[usable:]
            if not data:
                return
            if is_cancelled(cancel):
                return

    def _read_wav_header(self, reader: _Reader) -> int | None:
        """Read RIFF chunks up to ``data``; return the rate (the reader is then at the first sample)."""
        riff = reader.exact(12)
        if riff is None:
            return None
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise TtsError(f"TTS server {self.config.base_url} sent no WAV audio (starts {riff[:12]!r})")
        rate = None
        while True:
            head = reader.exact(8)
            if head is None:
                return None
            kind, size = head[:4], struct.unpack("<I", head[4:])[0]
            if kind == b"data":
                if rate is None:
                    raise TtsError(f"TTS server {self.config.base_url} sent WAV data before its format")
                return rate
            if size in _STREAMING_SIZES or size > 1 << 20:
                raise TtsError(f"TTS server {self.config.base_url} sent a malformed WAV header ({kind!r} size {size})")
            content = reader.exact(size + (size & 1))
            if content is None:
                return None
            if kind == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", content[:16])
                if fmt not in (1, 0xFFFE) or channels != 1 or bits != 16:
                    raise TtsError(f"TTS server {self.config.base_url} sent WAV format {fmt}, {channels} channels, "
                                   f"{bits} bits; expected 16-bit PCM mono (response_format: pcm may help)")

    def _failure(self, e: BaseException) -> TtsError:
        if isinstance(e, TimeoutError):
            return TtsError(f"TTS server {self.config.base_url} sent no audio within {self.config.timeout_s:g} s")
        return TtsError(f"TTS server {self.config.base_url} request failed: {e}")

    def warm_up(self) -> float:
        """Synthesize one short sentence (learns the server's rate, loads its voice); seconds."""
        t0 = time.perf_counter()
        for _ in self.synthesize("Hello, how can I help you?"):
            pass
        return time.perf_counter() - t0


class _Reader:
    """Reads the response body; None when cancelled, TtsError when the stream breaks."""

    def __init__(self, resp: http.client.HTTPResponse, tts: OpenAiTts, cancel: CancelToken | None) -> None:
        self.resp = resp
        self.tts = tts
        self.cancel = cancel

    def read(self, n: int) -> bytes | None:
        """Up to ``n`` bytes as soon as some exist (b"" at the end of the body)."""
        try:
            data = self.resp.read1(n)
        except (OSError, http.client.HTTPException, ValueError) as e:
            if is_cancelled(self.cancel):
                return None
            raise self.tts._failure(e) from e
        if not data and is_cancelled(self.cancel):
            return None  # our watcher shut the socket
        return data

    def exact(self, n: int) -> bytes | None:
        out = b""
        while len(out) < n:
            data = self.read(n - len(out))
            if data is None:
                return None
            if not data:
                raise TtsError(f"TTS server {self.tts.config.base_url} ended the audio inside its WAV header")
            out += data
        return out
