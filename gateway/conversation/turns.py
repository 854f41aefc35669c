"""Turn-taking from VAD: when the caller starts, pauses, resumes and ends a turn.

Fed once per 20 ms tick on the media clock (pure arithmetic, no I/O), so it is also what the
fake-clock tests drive. Two thresholds with hysteresis keep a word's weak consonants from
splitting it; `pause_ms` fires early (to start transcribing and thinking speculatively) and
`end_of_turn_ms` confirms the turn (to release the reply's audio).

Echo: while the bot is talking, the caller's line carries the bot's own echo. The probability
fed in then comes from a signal the echo guard trusts (see echo_guard.py), and a barge-in needs a
higher probability than a turn started into silence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class TurnEvent(enum.Enum):
    SPEECH_START = "speech_start"  # caller started talking (bot silent)
    BARGE_IN = "barge_in"  # caller started talking over the bot
    PAUSE = "pause"  # caller went quiet: speculate
    RESUME = "resume"  # caller went on after a pause
    TURN_END = "turn_end"  # quiet long enough: the turn is the bot's


@dataclass(frozen=True)
class TurnConfig:
    """The VAD policy's thresholds; built by `ConversationSettings.turn`, where the defaults live."""

    threshold: float
    off_threshold: float
    min_speech_ms: int
    pause_ms: int
    end_of_turn_ms: int
    barge_in_threshold: float
    barge_in_min_ms: int


@dataclass(frozen=True)
class Detected:
    event: TurnEvent
    at: float  # clock time the event refers to (speech onset, or the last voiced frame)


class TurnPolicy(Protocol):
    """Decides, tick by tick, when the caller starts, pauses, resumes and ends a turn.

    The turn taker owns one per call and feeds it the tick's cues; whatever else a policy
    looks at (a semantic end-of-turn model, say) stays behind this interface."""

    @property
    def in_speech(self) -> bool: ...

    def update(self, now: float, probability: float, bot_speaking: bool = False, loud: bool = False,
               quiet: bool = False) -> list[Detected]: ...


class TurnDetector:
    """The VAD policy: hysteresis on the speech probability, pause and end of turn on silence."""

    def __init__(self, config: TurnConfig):
        self.config = config
        self.in_speech = False
        self.paused = False
        self._onset: float | None = None
        self._last_voice: float | None = None

    def update(self, now: float, probability: float, bot_speaking: bool = False, loud: bool = False,
               quiet: bool = False) -> list[Detected]:
        """One tick: the VAD probability of the caller's latest audio; whether the bot is talking;
        `loud`: the caller's level jumped well above both the line's noise and the bot's echo. The
        VAD lags a word's start by a window or two, so while the bot talks a loud onset counts
        too: stopping ~50 ms earlier is what keeps barge-in within a human's reaction time.
        `quiet`: the frame's level fell to the line's noise, far below the caller's speech. The
        VAD also lags a word's *end* (silero's probability stays up for ~100 ms of silence), and
        every stage of the reply waits for that end: a quiet frame is unvoiced whatever the VAD
        says, so the pause (and the speculative reply) starts ~100 ms sooner."""
        c = self.config
        events: list[Detected] = []
        if not self.in_speech or self.paused:
            voiced = probability >= c.barge_in_threshold or loud if bot_speaking else probability >= c.threshold
            voiced = voiced and not quiet
            if voiced:
                if self._onset is None:
                    self._onset = now
                needed = (c.barge_in_min_ms if bot_speaking else c.min_speech_ms) / 1000
                if now - self._onset >= needed - 1e-9:
                    if not self.in_speech:
                        self.in_speech = True
                        events.append(Detected(TurnEvent.BARGE_IN if bot_speaking else TurnEvent.SPEECH_START,
                                               self._onset))
                    else:
                        events.append(Detected(TurnEvent.RESUME, self._onset))
                    self.paused = False
                    self._last_voice = now
                    self._onset = None
                return events
            self._onset = None
        if not self.in_speech:
            return events
        if probability >= c.off_threshold and not quiet:
            self._last_voice = now
            return events
        assert self._last_voice is not None
        quiet = now - self._last_voice
        if not self.paused and quiet >= c.pause_ms / 1000 - 1e-9:
            self.paused = True
            events.append(Detected(TurnEvent.PAUSE, self._last_voice))
        if quiet >= c.end_of_turn_ms / 1000 - 1e-9:
            self.in_speech = False
            self.paused = False
            events.append(Detected(TurnEvent.TURN_END, self._last_voice))
        return events
