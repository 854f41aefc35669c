"""Shared conversation services: the process's models and the phrases spoken without the LLM.

Greetings, re-prompts and goodbyes are synthesized once at start-up and kept as 8 kHz audio, so
a call hears its greeting the moment it is answered instead of after a TTS run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.conversation.skills import AgentSkills
from gateway.store import Store
from models.base import CancelToken, Tts
from models.loader import ModelSet
from rtp.resample import resample

if TYPE_CHECKING:
    from gateway.conversation.end_of_turn import EndOfTurnModel

log = structlog.get_logger("conversation")

LINE_RATE = 8000
_SILENCE = 180  # |sample| below this (-45 dBFS) is the voice's lead-in or tail, not speech


def trim_silence(pcm: np.ndarray, keep_lead_ms: float, keep_tail_ms: float) -> np.ndarray:
    """Cut Piper's silence around a clause down to what a speaker would leave.

    Piper pads every chunk with 40-60 ms of silence before and 100-200 ms after. Before a
    reply's first words that lead-in is pure latency; between clauses cut mid-sentence (the
    first piece is two words long) the tail is an audible hiccup. Sentence ends keep a pause.
    """
    loud = np.nonzero(np.abs(pcm) > _SILENCE)[0]
    if len(loud) == 0:
        return pcm[:0]
    start = max(0, int(loud[0]) - int(keep_lead_ms * LINE_RATE / 1000))
    end = min(len(pcm), int(loud[-1]) + 1 + int(keep_tail_ms * LINE_RATE / 1000))
    return pcm[start:end]


def clause_pause_ms(clause: str) -> float:
    """The pause a speaker leaves after `clause`: none mid-sentence, short at a comma."""
    end = clause.rstrip()[-1:]
    if end in ".!?":
        return 250.0
    if end in ",;:":
        return 120.0
    return 30.0


def synthesize_line_audio(tts: Tts, text: str, cancel: CancelToken | None = None) -> np.ndarray:
    """TTS `text` and bring it to the line's 8 kHz (int16).

    The chunks are joined before they are resampled: a speech server streams ~200 ms pieces
    (models/openai_tts.py), and each piece resampled on its own starts and ends with the filter's
    edge (clicks up to -20 dBFS every 200 ms, measured on the joe voice); the clause is whole
    before it is queued either way."""
    chunks = list(tts.synthesize(text, cancel=cancel))
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    rates = {chunk.sample_rate for chunk in chunks}
    if len(rates) > 1:  # no engine does this; resample piece by piece rather than mix rates
        return np.concatenate([resample(chunk.pcm, chunk.sample_rate, LINE_RATE) for chunk in chunks])
    return resample(np.concatenate([chunk.pcm for chunk in chunks]), rates.pop(), LINE_RATE)


class ConversationServices:
    """What every conversation agent in the process shares."""

    def __init__(self, models: ModelSet, skills: Mapping[str, AgentSkills] | None = None,
                 store: Store | None = None, turn_model: EndOfTurnModel | None = None):
        self.models = models
        self.turn_model = turn_model  # loaded only when an agent's `turn_model` asks for it
        self.skills = dict(skills or {})
        self.store = store  # may be set later: a database that was away at start-up (gateway/app.py)
        self.closed = threading.Event()
        self._phrases: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def skills_for(self, agent_name: str) -> AgentSkills | None:
        """The agent's knowledge, tools and system prompt (None: a bare agent, as in unit tests)."""
        return self.skills.get(agent_name)

    def close(self) -> None:
        self.closed.set()
        for skills in self.skills.values():
            skills.close()
        if self.store is not None:
            self.store.close()
        if self.turn_model is not None:
            self.turn_model.close()
        self.models.close()

    def cache_phrase(self, text: str) -> float:
        """Synthesize and keep `text`; returns the seconds it took."""
        start = time.perf_counter()
        audio = synthesize_line_audio(self.models.tts, text)
        with self._lock:
            self._phrases[text] = audio
        return time.perf_counter() - start

    def phrase(self, text: str) -> np.ndarray:
        """Cached audio for `text` (synthesized now if it was not cached)."""
        with self._lock:
            audio = self._phrases.get(text)
        if audio is None:
            self.cache_phrase(text)
            with self._lock:
                audio = self._phrases[text]
        return audio
