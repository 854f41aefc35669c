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
from collections import deque
from dataclasses import dataclass

import numpy as np

from gateway.conversation.echo_guard import EchoGuard, level_db
from gateway.conversation.events import BargedIn, Paused, Resumed, SpeechStarted, TurnEnded, TurnSignal, Utterance
from gateway.conversation.turns import TurnEvent, TurnPolicy
from models.base import VadStream
from rtp.jitter import FrameType

SILENT_DB = -50.0  # below this the line carries nothing worth judging
_QUIET_BELOW_SPEECH_DB = 30.0  # a frame this far below the caller's speech peak is no speech
_QUIET_ABOVE_NOISE_DB = 10.0  # ... unless it stands out of the line's noise by more than this
_PEAK_DECAY_DB = 0.05  # per 20 ms frame: the speech peak follows a caller who gets quieter
_CORRELATIONS_KEPT = 3000


@dataclass(frozen=True)
class Cues:
    """What one tick told the policy (logged at debug level when it fired an event)."""

    probability: float
    loud: bool
    quiet: bool
    level_db: float
    echo_correlation: float


class TurnTaker:
    def __init__(self, vad: VadStream, policy: TurnPolicy, preroll_frames: int, guard: EchoGuard | None = None):
        self.vad = vad
        self.policy = policy
        self.guard = guard or EchoGuard()
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, preroll_frames))
        self._utterance: list[np.ndarray] | None = None
        # Wideband (G.722) calls: the same frames at 16 kHz for the models (Utterance.wide).
        self._preroll_wide: deque[np.ndarray | None] = deque(maxlen=max(1, preroll_frames))
        self._wide: list[np.ndarray | None] = []
        self._numbers = itertools.count(1)
        self._number = 0
        self._speech_peak_db = level_db(0.0)
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
        level = level_db(raw_rms)
        guard = self.guard
        probability = self.vad.process(pcm) if frame_type is not FrameType.EMPTY else 0.0
        loud = False
        if bot_speaking:
            if level < SILENT_DB:
                probability = 0.0  # nothing on the line: a stale VAD window is no onset
            else:
                if guard.echo_like(pcm):
                    probability = 0.0  # our own voice coming back, whatever the VAD makes of it
                else:
                    loud = guard.loud(raw_rms)
                self.correlations.append(guard.last_correlation)
        elif not self.policy.in_speech:
            guard.track_noise(raw_rms)
        quiet = self._quiet(level)
        detected = self.policy.update(now, probability, bot_speaking=bot_speaking, loud=loud, quiet=quiet)
        self.last_cues = Cues(probability, loud, quiet, level, guard.last_correlation)
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
            if d.event in (TurnEvent.SPEECH_START, TurnEvent.BARGE_IN):
                self._utterance = [*self._preroll]
                self._wide = [*self._preroll_wide]
                self._preroll.clear()
                self._preroll_wide.clear()
                self._number = next(self._numbers)
            match d.event:
                case TurnEvent.SPEECH_START:
                    signals.append(SpeechStarted(d.at))
                case TurnEvent.BARGE_IN:
                    signals.append(BargedIn(d.at, now))
                case TurnEvent.RESUME:
                    signals.append(Resumed(d.at))
                case TurnEvent.PAUSE:
                    utterance = self._snapshot()
                    self.policy.on_pause(utterance)
                    signals.append(Paused(d.at, utterance))
                case TurnEvent.TURN_END:
                    signals.append(TurnEnded(d.at, now, self._snapshot(), d.finished))
                    self._utterance = None
        return signals

    def heard_bot(self, frame: np.ndarray | None) -> None:
        """The frame the bot sends this tick: the echo guard's reference."""
        self.guard.add_far(frame)

    def _snapshot(self) -> Utterance:
        frames = tuple(self._utterance or ())
        wide = tuple(self._wide) if any(w is not None for w in self._wide) else ()
        return Utterance(self._number, frames, wide)

    def _quiet(self, level: float) -> bool:
        """Whether this frame is down at the line's noise, far below the caller's speech (see
        TurnDetector.update: it lets the pause start when the voice stops, not when the VAD
        catches up). Only judged inside an utterance, against that utterance's own peak."""
        if not self.policy.in_speech:
            self._speech_peak_db = level_db(0.0)
            return False
        self._speech_peak_db = max(level, self._speech_peak_db - _PEAK_DECAY_DB)
        threshold = max(self._speech_peak_db - _QUIET_BELOW_SPEECH_DB,
                        self.guard.noise_floor_db + _QUIET_ABOVE_NOISE_DB)
        return level < threshold

    def echo_summary(self) -> dict[str, float] | None:
        """How the echo guard judged the line while the bot talked (logged once at the end)."""
        if not self.correlations:
            return None
        c = np.array(tuple(self.correlations))
        return {"frames": len(c), "echo_like": int((c >= self.guard.echo_correlation).sum()),
                "p10": round(float(np.percentile(c, 10)), 2), "p50": round(float(np.median(c)), 2)}


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0
