"""The media-thread half of turn-taking: from the caller's 20 ms frames to typed turn events.

Fed once per tick (`feed`), it runs the VAD, asks the echo guard whether the line carries the
bot's own voice, tells the turn policy the tick's cues and collects the caller's utterance (echo-
cancelled while the bot talks). It
does no I/O and touches nothing of another thread: its input is the frame, the clock time and
whether the bot's audio is on the line; its output is a list of events for the controller. So a
test drives it alone on a virtual clock.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from gateway.conversation.echo_guard import EchoGuard
from gateway.conversation.events import (
    BargedIn,
    Held,
    Paused,
    Resumed,
    SpeechStarted,
    TurnEnded,
    TurnSignal,
    Unheld,
    Utterance,
)
from gateway.conversation.line_levels import LineLevels
from gateway.conversation.turns import TurnEvent, TurnPolicy
from models.base import VadStream
from rtp.jitter import FrameType

SILENT_DB = -50.0  # while the bot talks, below this the line carries nothing worth judging
# The caller is taken to have stopped when no frame has stood out of the background for this long,
# whatever the VAD says (babble under the caller keeps silero's probability up for good) and even if
# the line's level hovers between "quiet" and "speech" (see line_levels.py). Words come with a loud
# syllable several times a second, so a caller still talking is never cut by it.
_LEVEL_GUARD_S = 0.5
_CORRELATIONS_KEPT = 3000
# The onset is told `min_speech_ms` (or `barge_in_min_ms`) after it, later still under a VAD that
# lags: the frames kept before an event reach back this far, so `preroll_ms` counts from the onset.
_ONSET_TO_EVENT_FRAMES = 50
_FRAME_S = 0.02
# Reaching back over the caller's sound before the onset (see `_reach_back`; what counts as their
# sound is LineLevels.sounding_db):
_REACH_GAP_FRAMES = 5  # a stop between two words (espeak: 40 ms, people up to ~100 ms) does not end it
_REACH_MARGIN_FRAMES = 3  # kept before its first loud frame: the soft start of the word


@dataclass(frozen=True)
class Cues:
    """What one tick told the policy (logged at debug level when it fired an event)."""

    probability: float
    loud: bool
    quiet: bool
    level_db: float
    echo_correlation: float
    background_db: float


class TurnTaker:
    def __init__(self, vad: VadStream, policy: TurnPolicy, preroll_frames: int, guard: EchoGuard | None = None,
                 speech_threshold: float = 0.5, reach_back_frames: int = 0):
        self.vad = vad
        self.policy = policy
        self.policy_threshold = speech_threshold  # VAD probability of the frames the caller's level is learnt from
        self.guard = guard or EchoGuard()
        self.preroll_frames = max(1, preroll_frames)
        self.reach_back_frames = max(0, reach_back_frames)
        kept = max(self.preroll_frames, self.reach_back_frames + _REACH_MARGIN_FRAMES) + _ONSET_TO_EVENT_FRAMES
        self._preroll: deque[np.ndarray] = deque(maxlen=kept)
        self._utterance: list[np.ndarray] | None = None
        self._lead = 0  # frames of the utterance before its onset
        # Wideband (G.722) calls: the same frames at 16 kHz for the models (Utterance.wide).
        self._preroll_wide: deque[np.ndarray | None] = deque(maxlen=kept)
        self._wide: list[np.ndarray | None] = []
        self._frame_db: deque[float] = deque(maxlen=kept)  # each recent tick's level, newest last
        self._numbers = itertools.count(1)
        self._number = 0
        self.levels = LineLevels()
        self._caller_active = False  # the line stands out of its background: the caller may be talking
        self._loud_at = -1e9  # the last frame that stood out of the background
        self._held_at: float | None = None  # when the bot's audio was held for an onset over it
        self.correlations: deque[float] = deque(maxlen=_CORRELATIONS_KEPT)  # while the bot spoke
        self.last_cues: Cues | None = None

    def feed(self, now: float, pcm: np.ndarray, frame_type: FrameType, bot_speaking: bool,
             cleaned: np.ndarray | None = None, wide: np.ndarray | None = None) -> list[TurnSignal]:
        """One tick of the caller's audio; returns the turn events it completes (usually none).

        `cleaned` is the same frame with the bot's echo removed (rtp/echo.py). Turn-taking judges
        the line as received (the canceller suppresses the caller's onset on a path it has not
        learnt, see echo_guard.py); the utterance the STT hears takes the cleaned frame while the
        bot talks: over a barge-in's double talk that cut whisper's word errors from 0.33-1.11 to
        0.22-0.67 (docs/benchmarks.md). `wide` is the frame at 16 kHz on a G.722 call: kept beside
        the utterance for the STT and turn model (not when the cleaned 8 kHz frame is used)."""
        raw_rms = _rms(pcm)
        levels = self.levels
        # A tick with no packet (call set-up, loss the jitter buffer could not conceal) says nothing
        # about the line: counted as digital silence, the first ticks of a call made the background
        # -90 dBFS and a real background then "stood out" of it (the greeting held 0.3 s in).
        level = levels.update(raw_rms) if frame_type is not FrameType.EMPTY else levels.level_db
        self._frame_db.append(levels.frame_db if frame_type is not FrameType.EMPTY else -math.inf)
        guard = self.guard
        probability = self.vad.process(pcm) if frame_type is not FrameType.EMPTY else 0.0
        echo = False
        if bot_speaking:
            echo = level < SILENT_DB or guard.echo_like(pcm)  # nothing there, or our own voice coming back
            if level >= SILENT_DB:
                self.correlations.append(guard.last_correlation)
        active = not echo and self._judge_level(now)
        if not active:
            probability = 0.0  # the line's background (or our echo), whatever the VAD makes of it
        elif self.policy.in_speech and probability >= self.policy_threshold and levels.above_background():
            levels.learn_speech()
        loud = bot_speaking and active and levels.loud()
        quiet = not active
        detected = self.policy.update(now, probability, bot_speaking=bot_speaking, loud=loud, quiet=quiet)
        self.last_cues = Cues(probability, loud, quiet, level, guard.last_correlation, levels.background_db)
        heard = cleaned if bot_speaking and cleaned is not None else pcm
        heard_wide = wide if heard is pcm else None
        if self._utterance is not None:
            self._utterance.append(heard)
            self._wide.append(heard_wide)
        else:
            self._preroll.append(heard)
            self._preroll_wide.append(heard_wide)
        signals: list[TurnSignal] = []
        for d in detected:
            if d.event is TurnEvent.SPEECH_START:
                self._keep_from_preroll(now - d.at, reach_back=True)
            elif d.event is TurnEvent.BARGE_IN and self._held_at is None:
                self._keep_from_preroll(now - d.at)
            if d.event in (TurnEvent.SPEECH_START, TurnEvent.BARGE_IN):
                self._number = next(self._numbers)
            match d.event:
                case TurnEvent.SPEECH_START:
                    signals.append(SpeechStarted(d.at))
                case TurnEvent.BARGE_IN:  # the bot went silent when it was held, if it was
                    signals.append(BargedIn(d.at, self._held_at if self._held_at is not None else now))
                    self._held_at = None
                case TurnEvent.RESUME:
                    signals.append(Resumed(d.at))
                case TurnEvent.PAUSE:
                    utterance = self._snapshot()
                    self.policy.on_pause(utterance)
                    signals.append(Paused(d.at, utterance))
                case TurnEvent.TURN_END:
                    signals.append(TurnEnded(d.at, now, self._snapshot(), d.finished))
                    self._utterance = None
                case TurnEvent.HOLD:  # keep the caller's audio from here: a barge-in is confirmed
                    # ~0.7 s later, and its transcript needs the words' start, not the last preroll
                    signals.append(Held(d.at, now))
                    self._held_at = now
                    if self._utterance is None:
                        self._keep_from_preroll(now - d.at)
                case TurnEvent.UNHOLD:  # no interruption: what was kept goes back to being preroll
                    signals.append(Unheld(d.at))
                    self._held_at = None
                    if self._utterance is not None and not self.policy.in_speech:
                        self._preroll.extend(self._utterance)
                        self._preroll_wide.extend(self._wide)
                        self._utterance = None
        return signals

    def _keep_from_preroll(self, since_onset_s: float, reach_back: bool = False) -> None:
        """Start the utterance `preroll_frames` before the onset, told `since_onset_s` ago (both
        rates): the caller's first syllables. Counted from the event instead, the preroll held only
        ~100 ms before a clean espeak onset, and whisper tiny.en heard "What time does the kitchen
        close?" with its first 50 ms gone as "But I'm not making it in close.". With `reach_back`
        (the bot silent) it starts earlier still when the caller's sound does (`_reach_back`)."""
        after = max(0, round(since_onset_s / _FRAME_S)) + 1  # the onset's frame to this tick's
        lead = max(self.preroll_frames, self._reach_back(after) if reach_back else 0)
        self._utterance, self._wide = [*self._preroll][-(lead + after):], [*self._preroll_wide][-(lead + after):]
        self._lead = max(0, len(self._utterance) - after)
        self._preroll.clear()
        self._preroll_wide.clear()

    def _reach_back(self, after: int) -> int:
        """Frames before the onset (the last `after` frames are the onset's and later) over which
        the caller was already sounding: a short first word the onset missed ("What" of "What time
        does the kitchen close?", found on "time" ~240 ms late in a CI call: whisper heard "Time
        does the kitchen close."). The run of loud frames ending at the onset, stops between words
        bridged, plus a margin for its soft start; bounded by `reach_back_frames`, so a line whose
        background stands as loud as the caller (babble) adds at most that much of it. 0: no run."""
        levels = self.levels
        if not self.reach_back_frames or not levels.known:
            return 0
        mark, dbs = levels.sounding_db, self._frame_db
        first, quiet = 0, 0
        for back in range(1, min(self.reach_back_frames, len(dbs) - after) + 1):
            if dbs[-(after + back)] >= mark:
                first, quiet = back, 0
            else:
                quiet += 1
                if quiet > _REACH_GAP_FRAMES:
                    break
        return first + _REACH_MARGIN_FRAMES if first else 0

    def heard_bot(self, frame: np.ndarray | None) -> None:
        """The frame the bot sends this tick: the echo guard's reference."""
        self.guard.add_far(frame)

    def _snapshot(self) -> Utterance:
        frames = tuple(self._utterance or ())
        wide = tuple(self._wide) if any(w is not None for w in self._wide) else ()
        return Utterance(self._number, frames, wide, self._lead)

    def _judge_level(self, now: float) -> bool:
        """Whether the caller may be talking, by level alone, with hysteresis: it starts when a
        frame stands clearly out of the line's background and stops when the level falls back to
        it, or when nothing has stood out for `_LEVEL_GUARD_S` (the guard that keeps the bot from
        waiting forever on a line whose background the VAD calls speech)."""
        levels = self.levels
        if levels.above_background():
            self._loud_at = now
            self._caller_active = True
        elif levels.at_background() or now - self._loud_at >= _LEVEL_GUARD_S - 1e-9:
            self._caller_active = False
        return self._caller_active

    def echo_summary(self) -> dict[str, float] | None:
        """How the echo guard judged the line while the bot talked (logged once at the end)."""
        if not self.correlations:
            return None
        c = np.array(tuple(self.correlations))
        return {"frames": len(c), "echo_like": int((c >= self.guard.echo_correlation).sum()),
                "p10": round(float(np.percentile(c, 10)), 2), "p50": round(float(np.median(c)), 2)}


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0
