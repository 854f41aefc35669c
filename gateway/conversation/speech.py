"""Shared conversation services: the process's models and the phrases spoken without the LLM.

Greetings, re-prompts and goodbyes are synthesized once at start-up and kept as 8 kHz audio (and
16 kHz when the gateway offers a wideband codec: a G.722 caller hears them wideband), so a call
hears its greeting the moment it is answered instead of after a TTS run. Lines that were not known
at start-up (a returning caller's greeting has their name in it) are kept in a small LRU instead,
so a long-running gateway does not keep every caller's name as audio.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.conversation.bot_audio import LINE_RATE, WIDE_RATE, BotAudio
from gateway.conversation.skills import AgentSkills
from gateway.store import Store
from models.base import CancelToken, Tts
from models.loader import ModelSet
from rtp.resample import resample

if TYPE_CHECKING:
    from gateway.conversation.end_of_turn import EndOfTurnModel

log = structlog.get_logger("conversation")

__all__ = ["LINE_RATE", "BotAudio", "ConversationServices", "clause_pause_ms", "synthesize_line_audio",
           "trim_silence"]

RECENT_PHRASES = 32  # lines said that were not cached at start-up, kept for the next call (LRU)
_SILENCE = 180  # |sample| below this (-45 dBFS) is the voice's lead-in or tail, not speech


def trim_silence(audio: BotAudio, keep_lead_ms: float, keep_tail_ms: float) -> BotAudio:
    """Cut Piper's silence around a clause down to what a speaker would leave.

    Piper pads every chunk with 40-60 ms of silence before and 100-200 ms after. Before a
    reply's first words that lead-in is pure latency; between clauses cut mid-sentence (the
    first piece is two words long) the tail is an audible hiccup. Sentence ends keep a pause.
    The cut is found on the 8 kHz copy and made at the same instants in the wideband one.
    """
    pcm = audio.pcm
    loud = np.nonzero(np.abs(pcm) > _SILENCE)[0]
    if len(loud) == 0:
        return audio.span(0, 0)
    start = max(0, int(loud[0]) - int(keep_lead_ms * LINE_RATE / 1000))
    end = min(len(pcm), int(loud[-1]) + 1 + int(keep_tail_ms * LINE_RATE / 1000))
    return audio.span(start, end)


def clause_pause_ms(clause: str) -> float:
    """The pause a speaker leaves after `clause`: none mid-sentence, short at a comma."""
    end = clause.rstrip()[-1:]
    if end in ".!?":
        return 250.0
    if end in ",;:":
        return 120.0
    return 30.0


def synthesize_line_audio(tts: Tts, text: str, cancel: CancelToken | None = None,
                          wideband: bool = False) -> BotAudio:
    """TTS `text` and bring it to the line's 8 kHz (int16), and with `wideband` to 16 kHz as well,
    each copy resampled once from the TTS's own rate (22.05 -> 16 kHz, never 22.05 -> 8 -> 16).

    The chunks are joined before they are resampled: a speech server streams ~200 ms pieces
    (models/openai_tts.py), and each piece resampled on its own starts and ends with the filter's
    edge (clicks up to -20 dBFS every 200 ms, measured on the joe voice); the clause is whole
    before it is queued either way."""
    chunks = list(tts.synthesize(text, cancel=cancel))
    if not chunks:
        return BotAudio(np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.int16) if wideband else None)
    rates = {chunk.sample_rate for chunk in chunks}

    def at(rate: int) -> np.ndarray:
        if len(rates) > 1:  # no engine does this; resample piece by piece rather than mix rates
            return np.concatenate([resample(chunk.pcm, chunk.sample_rate, rate) for chunk in chunks])
        return resample(np.concatenate([chunk.pcm for chunk in chunks]), next(iter(rates)), rate)

    return BotAudio(at(LINE_RATE), at(WIDE_RATE) if wideband else None)


class ConversationServices:
    """What every conversation agent in the process shares."""

    def __init__(self, models: ModelSet, skills: Mapping[str, AgentSkills] | None = None,
                 store: Store | None = None, turn_model: EndOfTurnModel | None = None,
                 wideband: bool = True):
        self.models = models
        self.turn_model = turn_model  # loaded only when an agent's `turn_model` asks for it
        self.skills = dict(skills or {})
        self.store = store  # may be set later: a database that was away at start-up (gateway/app.py)
        self.wideband = wideband  # a call may be wideband (G.722 offered): phrases get a 16 kHz copy
        self.closed = threading.Event()
        self._phrases: dict[str, BotAudio] = {}  # cached at start-up: the agents' fixed lines
        self._recent: collections.OrderedDict[str, BotAudio] = collections.OrderedDict()  # the rest, LRU
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
        """Synthesize and keep `text` for the process's life (start-up); returns the seconds it took."""
        start = time.perf_counter()
        audio = synthesize_line_audio(self.models.tts, text, wideband=self.wideband)
        with self._lock:
            self._phrases[text] = audio
        return time.perf_counter() - start

    def phrase(self, text: str) -> BotAudio:
        """Cached audio for `text`; a line not cached at start-up is synthesized now and kept among
        the `RECENT_PHRASES` last ones."""
        with self._lock:
            audio = self._phrases.get(text)
            if audio is None and (audio := self._recent.get(text)) is not None:
                self._recent.move_to_end(text)
        if audio is None:
            audio = synthesize_line_audio(self.models.tts, text, wideband=self.wideband)
            with self._lock:
                self._recent[text] = audio
                while len(self._recent) > RECENT_PHRASES:
                    self._recent.popitem(last=False)
        return audio
