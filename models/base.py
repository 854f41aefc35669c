"""Interfaces between the gateway and the models: small Protocols plus plain dataclasses.

The gateway programs against these types only, so an engine can be swapped (local llama.cpp
versus an on-prem OpenAI-compatible server, say) without touching call handling, and tests
can check every engine against the same contract.

Threading contract (the reason these interfaces look the way they do):

* :class:`VadStream` runs on the 20 ms media-clock thread.  It must never block and must
  cost well under a millisecond, so it is fed raw 20 ms frames and buffers internally.
* :class:`Stt`, :class:`Llm` and :class:`Tts` are slow (tens to hundreds of milliseconds).
  They are called from a worker pool (see :class:`models.loader.ModelSet`), never from the
  media clock.  Their outputs are iterators so the gateway can start playing audio, or
  speaking the first clause, before the whole answer exists.
* Every long operation takes a :class:`CancelToken` (a ``threading.Event`` satisfies it):
  when the caller barges in, the gateway sets it and the engine stops at its next check
  point (between tokens, between sentences), releasing any lock it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "AudioChunk",
    "CancelToken",
    "ChatMessage",
    "ConstrainedLlm",
    "PrefillLlm",
    "Llm",
    "LlmError",
    "ModelError",
    "Role",
    "Stt",
    "SttError",
    "Transcript",
    "TranscriptSegment",
    "Tts",
    "TtsError",
    "Vad",
    "VadStream",
    "is_cancelled",
    "stt_audio",
    "too_short_to_transcribe",
]

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]


class ModelError(RuntimeError):
    """Base class for errors raised by model engines (not for bad arguments: those are ValueError)."""


class LlmError(ModelError):
    """The LLM engine failed (HTTP error, connection lost, malformed stream, model failure)."""


class SttError(ModelError):
    """The speech-to-text engine failed (a transcription server down, slow past its timeout, or erring)."""


class TtsError(ModelError):
    """The text-to-speech engine failed (a speech server down, slow past its timeout, or erring)."""


@runtime_checkable
class CancelToken(Protocol):
    """Anything with ``is_set()``; ``threading.Event`` is the usual implementation.

    A Protocol rather than ``threading.Event`` itself so callers may pass a token that
    combines several conditions (call hung up OR caller barged in) without an extra thread.
    """

    def is_set(self) -> bool: ...


def is_cancelled(cancel: CancelToken | None) -> bool:
    """True if ``cancel`` is given and set (engines call this at each check point)."""
    return cancel is not None and cancel.is_set()


# --------------------------------------------------------------------------- VAD


class VadStream(Protocol):
    """Per-call voice activity detector state (silero is recurrent: one state per audio stream)."""

    @property
    def sample_rate(self) -> int:
        """Rate of the int16 audio this stream expects (8000 or 16000)."""
        ...

    def process(self, pcm: Int16Array) -> float:
        """Feed any number of samples (typically one 20 ms frame); return the latest speech probability.

        The model works on fixed windows (256 samples at 8 kHz), so a call that does not
        complete a window returns the previous probability unchanged.
        """
        ...

    def reset(self) -> None:
        """Forget the recurrent state and buffered samples (e.g. after a long hold)."""
        ...


class Vad(Protocol):
    """Factory of :class:`VadStream`; one instance per process, shared by all calls."""

    def new_stream(self, sample_rate: int = 8000) -> VadStream: ...


# --------------------------------------------------------------------------- STT


STT_RATE = 16000  # what every Stt takes


def stt_audio(audio16k: Float32Array) -> Float32Array:
    """The audio an :class:`Stt` was given, as mono float32; ValueError for anything else."""
    audio = np.asarray(audio16k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
    return audio


def too_short_to_transcribe(audio: Float32Array) -> bool:
    """Under 100 ms: nothing Whisper can read, and it would invent text; every engine returns ""."""
    return len(audio) < STT_RATE // 10


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """A piece of the transcript with its position in the audio (seconds)."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """Result of one :meth:`Stt.transcribe` call.

    ``no_speech_prob`` and ``avg_logprob`` let the gateway drop what Whisper invents on
    noise or silence (it readily "hears" short phrases in nothing) without a second model.
    """

    text: str
    duration_s: float
    elapsed_s: float
    segments: tuple[TranscriptSegment, ...] = ()
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    # Each word's probability (mean of its tokens', as Whisper's word timestamps give it), one per
    # word of `text.split()`, in order; empty when the engine gives none. A mean log-probability
    # hides one invented word in a fluent sentence; that word's own probability shows it.
    word_probs: tuple[float, ...] = ()

    @property
    def realtime_factor(self) -> float:
        """elapsed / duration (lower is faster; 0 for empty audio)."""
        return self.elapsed_s / self.duration_s if self.duration_s > 0 else 0.0


class Stt(Protocol):
    """Speech to text on 16 kHz float32 audio in [-1, 1].

    Designed to be called again and again on a growing buffer while the caller speaks
    (partial transcripts), so each call is independent and costs roughly in proportion to
    the audio given, not a fixed 30 s window.
    """

    sample_rate: int

    def transcribe(self, audio16k: Float32Array, prompt: str | None = None) -> Transcript: ...


# --------------------------------------------------------------------------- LLM

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn.  Frozen so a conversation prefix can be shared between calls safely."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        """OpenAI / llama-cpp-python wire shape."""
        return {"role": self.role, "content": self.content}


class Llm(Protocol):
    """Streaming chat model.

    ``stream_chat`` yields text pieces (one token's text, or whatever the server sends) as
    soon as they exist.  It stops promptly when ``cancel`` is set: within one token for
    local engines, within one network read for HTTP ones.  Close the iterator (or exhaust
    it) when done; engines hold a lock or a connection while it is open.
    """

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: Sequence[str] = (),
        cancel: CancelToken | None = None,
        affinity: str | None = None,
    ) -> Iterator[str]: ...

    def warm_up(self, system_prompt: str) -> float:
        """Prepare for conversations that start with ``system_prompt``; return seconds spent.

        For a local engine this evaluates the system prompt once so later calls reuse its
        KV cache (first token ~0.13 s instead of ~2 s for the 0.5B model on 2 cores).
        """
        ...


@runtime_checkable
class PrefillLlm(Protocol):
    """An :class:`Llm` that can evaluate a conversation's known start before the turn is asked.

    While the caller speaks, the conversation up to their new message is already known; a local
    engine evaluates it then (into the call's KV cache), so the turn's first token waits only for
    the new message. A server engine has no cache of ours to fill and does not declare this."""

    def prefill(self, messages: Sequence[ChatMessage], *, affinity: str | None = None,
                cancel: CancelToken | None = None) -> int:
        """Evaluate what every next prompt after ``messages`` shares; return the tokens evaluated.
        Gives way (returns early) to a request that waits for the engine; never raises for that."""
        ...


@runtime_checkable
class ConstrainedLlm(Protocol):
    """An :class:`Llm` that can also generate under a GBNF grammar (llama.cpp's constrained sampling).

    A separate Protocol, not a parameter of ``stream_chat``: an OpenAI-compatible server may or may
    not honour a grammar, and an engine that would silently ignore one must not be asked, so the
    gateway only takes a constrained step where the engine declares it (``isinstance``).
    """

    def constrained_chat(
        self,
        messages: Sequence[ChatMessage],
        grammar: str,
        *,
        max_tokens: int = 64,
        cancel: CancelToken | None = None,
        affinity: str | None = None,
    ) -> str:
        """The whole reply (greedy, temperature 0) as the grammar allows it; "" if cancelled."""
        ...


# --------------------------------------------------------------------------- TTS


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of synthesized speech: mono int16 at ``sample_rate``."""

    pcm: Int16Array
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


class Tts(Protocol):
    """Text to speech, streamed sentence by sentence (or clause by clause: the caller decides by what it sends)."""

    @property
    def sample_rate(self) -> int: ...

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]: ...


@dataclass(slots=True)
class Timing:
    """A named duration, for warm-up and benchmark reports."""

    name: str
    seconds: float
    detail: str = ""
    extra: dict[str, float] = field(default_factory=dict)
