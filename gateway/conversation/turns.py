"""Turn-taking from VAD: when the caller starts, pauses, resumes and ends a turn.

Fed once per 20 ms tick on the media clock (pure arithmetic, no I/O), so it is also what the
fake-clock tests drive. Two thresholds with hysteresis keep a word's weak consonants from
splitting it; `pause_ms` fires early (to start transcribing and thinking speculatively) and
`end_of_turn_ms` confirms the turn (to release the reply's audio).

Echo: while the bot is talking, the caller's line carries the bot's own echo. The probability
fed in then comes from a signal the echo guard trusts (see echo_guard.py), and a barge-in needs a
higher probability than a turn started into silence.

Barge-in in two steps (LiveKit's "false interruption"): a cough, a backchannel ("uh-huh") or a
burst of background speech over the bot must not cost the caller the bot's sentence, yet a real
interruption must silence the bot within ~100 ms on the wire, long before anyone can tell the
two apart. So an onset over the bot (`barge_in_pause_ms` of speech, or a loud onset the VAD has
not confirmed yet) *holds* the bot's audio at once (HOLD: nothing is dropped, it just stops
going out); `barge_in_min_ms` of speech within it confirms the interruption (BARGE_IN: the reply
is cut), and if the caller falls silent first (`barge_in_gap_ms`) the bot goes on where it
stopped (UNHOLD). A backchannel is short, so it only ever holds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.conversation.events import Utterance


_TICK_S = 0.02  # the media clock's frame: one `update` per tick
# Of the frames that confirm a barge-in (speech or loud), at least this share must be speech to the
# VAD: a caller in heavy noise (pink at 10 dB SNR) gets the VAD's "speech" on only part of their
# words, while a cough or a door is loud and not speech at all.
_SPEECH_SHARE = 0.5
# ... and the cues must fill this share of the time since the onset (words have gaps; in noise the
# gaps between them are heard as the line's background, which is no cue)
_CUE_SHARE = 0.5


class TurnEvent(enum.Enum):
    SPEECH_START = "speech_start"  # caller started talking (bot silent)
    BARGE_IN = "barge_in"  # caller started talking over the bot
    PAUSE = "pause"  # caller went quiet: speculate
    RESUME = "resume"  # caller went on after a pause
    TURN_END = "turn_end"  # quiet long enough: the turn is the bot's
    HOLD = "hold"  # something started over the bot: pause its audio until we know what
    UNHOLD = "unhold"  # it was not an interruption (a cough, a backchannel): the bot goes on


@dataclass(frozen=True)
class TurnConfig:
    """The VAD policy's thresholds; built by `ConversationSettings.turn`, where the defaults live."""

    threshold: float
    off_threshold: float
    min_speech_ms: int
    pause_ms: int
    end_of_turn_ms: int
    barge_in_threshold: float
    barge_in_min_ms: int  # speech this long over the bot confirms an interruption (cuts the reply)
    barge_in_pause_ms: int = 20  # an onset this long over the bot holds its audio at once
    barge_in_gap_ms: int = 350  # unvoiced this long ends an onset over the bot (a held bot goes on)


@dataclass(frozen=True)
class Detected:
    event: TurnEvent
    at: float  # clock time the event refers to (speech onset, or the last voiced frame)
    finished: float | None = None  # TURN_END: the end-of-turn model's P(finished) it rested on, if any


class TurnPolicy(Protocol):
    """Decides, tick by tick, when the caller starts, pauses, resumes and ends a turn.

    The turn taker owns one per call and feeds it the tick's cues; whatever else a policy
    looks at (a semantic end-of-turn model, say) stays behind this interface."""

    @property
    def in_speech(self) -> bool: ...

    def update(self, now: float, probability: float, bot_speaking: bool = False, loud: bool = False,
               quiet: bool = False) -> list[Detected]: ...

    def on_pause(self, utterance: Utterance) -> None:
        """The caller's utterance so far, at the PAUSE this policy just fired (same tick). A policy
        that judges the sound or the words of the turn asks about them here; the VAD ignores it."""
        ...


class TurnDetector:
    """The VAD policy: hysteresis on the speech probability, pause and end of turn on silence."""

    def __init__(self, config: TurnConfig):
        self.config = config
        self.in_speech = False
        self.paused = False
        self._onset: float | None = None
        self._last_voice: float | None = None
        self.holding = False  # the bot's audio is held for an onset over it (HOLD fired, no UNHOLD yet)
        self._cue_at = 0.0  # over the bot: the last frame with an onset cue
        self._speech_frames = 0  # over the bot: speech frames since the onset
        self._cue_frames = 0  # over the bot: frames with an onset cue (speech or loud) since the onset

    @property
    def last_voice(self) -> float | None:
        """The clock time of the caller's last voiced frame in this turn (None before the first)."""
        return self._last_voice

    def on_pause(self, utterance: Utterance) -> None:
        pass  # silence alone decides here

    def end_turn(self) -> None:
        """Another judge (semantic_turn.py) gave the turn to the bot before this one's silence ran
        out: wait for the next onset as after a TURN_END."""
        self.in_speech = False
        self.paused = False
        self._onset = None
        self.holding = False

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
        if bot_speaking and not self.in_speech:
            return self._over_bot(now, probability, loud, quiet)
        if self.holding:  # the bot's audio ended (or was dropped) while held: judge as into silence
            self.holding = False
            events.append(Detected(TurnEvent.UNHOLD, now))
            self._onset = None
        if not self.in_speech or self.paused:
            voiced = probability >= c.threshold and not quiet
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

    def _over_bot(self, now: float, probability: float, loud: bool, quiet: bool) -> list[Detected]:
        """The caller's line while the bot talks and no turn is under way: hold, confirm or let go
        (see the module doc). Onset cues: speech (`barge_in_threshold`), or a loud onset the VAD
        has not caught up with (a word's start, a cough): either holds the bot; `barge_in_min_ms`
        since the onset confirms it, if cues filled most of that time and half of them were
        speech. Unvoiced gaps shorter than `barge_in_gap_ms` (between words) do not end the onset."""
        c = self.config
        speech = probability >= c.barge_in_threshold and not quiet
        cue = speech or (loud and not quiet)
        events: list[Detected] = []
        if not cue:
            if self._onset is not None and now - self._cue_at >= c.barge_in_gap_ms / 1000 - 1e-9:
                self._onset = None
                if self.holding:
                    self.holding = False
                    events.append(Detected(TurnEvent.UNHOLD, now))
            return events
        if self._onset is None:
            self._onset, self._speech_frames, self._cue_frames = now, 0, 0
        self._cue_at = now
        self._speech_frames += speech
        self._cue_frames += 1
        if not self.holding and now - self._onset >= c.barge_in_pause_ms / 1000 - 1e-9:
            self.holding = True
            events.append(Detected(TurnEvent.HOLD, self._onset))
        needed = c.barge_in_min_ms / 1000 - 1e-9
        span_frames = round((now - self._onset) / _TICK_S) + 1
        if speech and now - self._onset >= needed and self._cue_frames >= _CUE_SHARE * span_frames \
                and self._speech_frames >= _SPEECH_SHARE * self._cue_frames:
            self.in_speech, self.paused, self.holding = True, False, False
            events.append(Detected(TurnEvent.BARGE_IN, self._onset))
            self._last_voice, self._onset = now, None
        return events
