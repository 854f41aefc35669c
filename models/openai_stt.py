"""Speech to text from an OpenAI-compatible ``/v1/audio/transcriptions`` server (faster-whisper-server,
speaches, vLLM, a llama.cpp whisper server, ...).

Why: on this project's 2-core boxes only tiny.en keeps up; a site with a GPU machine can run a
large Whisper there once and point every gateway at it (``models.stt.engine: openai``), as it
already can for the LLM.

The request is the common subset: ``multipart/form-data`` with the utterance as a 16 kHz mono
16-bit WAV ``file``, ``model``, ``language``, ``prompt`` (the agent's spelling hints, as with the
local engine) and ``response_format``.  ``verbose_json`` is asked for first because its segments
carry Whisper's ``avg_logprob`` and ``no_speech_prob``, which the gateway uses to tell a real
transcript from what Whisper invents on noise; a server that refuses it (HTTP 400/422) is asked
again with plain ``json`` and is remembered as such (the transcript then has no confidence: 0.0,
as the protocol's defaults).

No compute gate: the work is on another machine, and holding the process's gate while waiting
on the network would only delay the local LLM and TTS.

Faults, as for the LLM server: every failure (connection refused, read timeout from
``timeout_s``, HTTP error, malformed answer) raises :class:`models.base.SttError` with the server
and the reason; the reply pipeline turns that into the agent's apology for that turn only.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import SttError, Transcript, TranscriptSegment, stt_audio, too_short_to_transcribe
from models.openai_audio import Endpoint, ServerState, error_detail, multipart_body, wav_bytes

__all__ = ["OpenAiStt", "OpenAiSttConfig"]

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class OpenAiSttConfig:
    """Where the transcription server is, what to ask it for, and how long to wait."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "whisper-1"
    api_key: str | None = None
    language: str | None = "en"
    response_format: str = "verbose_json"  # falls back to "json" once if the server refuses it
    connect_timeout_s: float = 3.0
    timeout_s: float = 10.0  # longest silence while waiting for one transcript (it is on the reply's path)


class OpenAiStt:
    """:class:`models.base.Stt` over HTTP.  ``transcribe`` may be called from any thread (one connection each)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: OpenAiSttConfig | None = None) -> None:
        self.config = cfg = config or OpenAiSttConfig()
        self.endpoint = Endpoint.parse(cfg.base_url, "/audio/transcriptions", connect_timeout_s=cfg.connect_timeout_s,
                                       read_timeout_s=cfg.timeout_s, api_key=cfg.api_key)
        self._format = cfg.response_format
        self._lock = threading.Lock()  # guards _format (the fallback is learnt once, by whichever call hits it)
        self.state = ServerState("stt", cfg.base_url)

    def transcribe(self, audio16k: npt.NDArray[np.float32], prompt: str | None = None) -> Transcript:
        """Transcribe mono 16 kHz float32 audio on the server; :class:`SttError` when it cannot."""
        audio = stt_audio(audio16k)
        t0 = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        if too_short_to_transcribe(audio):
            return Transcript("", duration, time.perf_counter() - t0, no_speech_prob=1.0)
        try:
            transcript = self._transcribe(wav_bytes(audio, SAMPLE_RATE), prompt, duration, t0)
        except SttError as exc:
            self.state.failed(str(exc))
            raise
        self.state.answered()
        return transcript

    def _transcribe(self, wav: bytes, prompt: str | None, duration: float, t0: float) -> Transcript:
        with self._lock:
            fmt = self._format
        status, body = self._post(wav, prompt, fmt)
        if status in (400, 422) and fmt != "json":
            # A server without verbose_json (or with a stricter form schema) still transcribes plain json.
            status, body = self._post(wav, prompt, "json")
            if status < 400:
                with self._lock:
                    self._format = "json"
        if status >= 400:
            raise SttError(f"STT server {self.config.base_url} answered HTTP {status}: {error_detail(body)}")
        return _transcript(_parse(body, self.config.base_url), duration, time.perf_counter() - t0)

    def _post(self, wav: bytes, prompt: str | None, fmt: str) -> tuple[int, bytes]:
        cfg = self.config
        fields = {"model": cfg.model, "response_format": fmt, "temperature": "0"}
        if cfg.language:
            fields["language"] = cfg.language
        if prompt and prompt.strip():
            fields["prompt"] = prompt.strip()
        body, ctype = multipart_body(fields, "file", "utterance.wav", wav, "audio/wav")
        conn = self.endpoint.connect(SttError, "STT")
        try:
            headers = self.endpoint.headers(ctype, "application/json")
            conn.request("POST", self.endpoint.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except TimeoutError as e:
            raise SttError(f"STT server {cfg.base_url} sent no transcript within {cfg.timeout_s:g} s") from e
        except (OSError, http.client.HTTPException) as e:
            raise SttError(f"STT server {cfg.base_url} request failed: {e}") from e
        finally:
            conn.close()

    def warm_up(self) -> float:
        """One transcription of 1 s of low noise (loads the model on servers that load it lazily); seconds."""
        t0 = time.perf_counter()
        self.transcribe((np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32))
        return time.perf_counter() - t0


def _parse(body: bytes, base_url: str) -> Any:
    try:
        obj = json.loads(body)
    except ValueError as e:
        raise SttError(f"STT server {base_url} sent malformed JSON: {body[:200]!r}") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise SttError(f"STT server {base_url} sent no 'text': {body[:200]!r}")
    return obj


def _transcript(obj: dict[str, Any], duration: float, elapsed: float) -> Transcript:
    """The protocol's Transcript from a json or verbose_json answer (confidence from the segments if any)."""
    text = obj["text"].strip()
    raw_segments = [s for s in obj.get("segments") or () if isinstance(s, dict)]
    segments = tuple(
        TranscriptSegment(float(s.get("start", 0.0)), float(s.get("end", duration)), str(s.get("text", "")).strip())
        for s in raw_segments
    )
    no_speech = [float(s["no_speech_prob"]) for s in raw_segments if s.get("no_speech_prob") is not None]
    logprob = [float(s["avg_logprob"]) for s in raw_segments if s.get("avg_logprob") is not None]
    if not any(ch.isalnum() for ch in text):
        # On silence and noise Whisper emits "." or ". . . .": that is no transcript (as WhisperStt).
        text, segments = "", ()
    return Transcript(
        text=text,
        duration_s=duration,
        elapsed_s=elapsed,
        segments=segments,
        no_speech_prob=max(no_speech) if no_speech else (1.0 if not raw_segments and not text else 0.0),
        avg_logprob=float(np.mean(logprob)) if logprob else 0.0,
    )
