"""The caller's line, measured per call: how loud its background is and how loud the caller is.

Why: fixed thresholds made the gateway deaf in noise. Silero calls office babble speech, so with
other voices always under the caller its probability never fell for the 400 ms that end a turn;
and the old noise floor was only learnt while nobody spoke, which on a call that opens with the
greeting meant never (the first frames of any background then looked like a loud onset and cut
the greeting 80-120 ms in). Turn-taking now asks two level questions of every frame as well as
the VAD's:

* is it *clearly above the background*? (speech may start, or interrupt the bot, only then);
* is it *back down at the background*? (whatever the VAD hears, the caller has stopped).

The background is a low percentile of the recent frame levels, tracked on every frame whoever
is talking: speech comes in syllables with dips between them, so over a few seconds its lowest
tenth is the line without the caller, where the minimum of a noisy level would sit well under a
babble's typical level. The caller's speech level is learnt from the frames of their turns, so
a quiet caller on a quiet line and a loud one over babble are each judged against themselves.
Thresholds sit between the two, as fractions of the gap, with a floor in dB.

Pure arithmetic on the media clock (a percentile over 250 floats per tick: ~15 µs).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

FRAME_S = 0.02
_FLOOR_DB = -90.0
_HISTORY_FRAMES = 250  # 5 s of frame levels for the background
_BACKGROUND_PERCENTILE = 10.0
_MIN_HISTORY_FRAMES = 10  # 200 ms: before that, nothing is known about the line
_SMOOTH_FRAMES = 3  # the level judged: power mean of the last 60 ms (one syllable's dip is no end)
_DEFAULT_SPEECH_DB = -20.0  # a caller's speech level before the first turn (telephone speech: -15..-25 dBFS)
_SPEECH_LEARN_UP = 0.05  # per voiced frame: a louder caller is learnt within a second of talking ...
_SPEECH_LEARN_DOWN = 0.01  # ... a quieter one more slowly: a turn started by a burst of babble must not
# drag the caller's level (and with it the onset threshold) down towards the babble
_ONSET_FRACTION = 0.7  # speech starts above background + this much of the gap to the caller's level ...
_ONSET_MIN_DB = 8.0  # ... and at least this far above the background
_QUIET_FRACTION = 0.3  # the caller stopped below background + this much of the gap ...
_QUIET_MIN_DB = 4.0  # ... (at least this far above it, so the background's own swings stay "quiet")
_SOUNDING_FRACTION = 0.5  # a frame before an onset is the caller's sound this far into the gap ...
_SOUNDING_MIN_DB = 6.0  # ... (and this far above the background): how far an utterance reaches back
_LOUD_ABOVE_ONSET_DB = 3.0  # an onset the VAD has not confirmed yet (see TurnDetector: holds the bot)


def level_db(rms: float) -> float:
    return 20 * math.log10(rms / 32768.0) if rms > 0 else _FLOOR_DB


class LineLevels:
    """Per-call background and caller speech levels; `update` once per tick with the frame's RMS."""

    def __init__(self) -> None:
        self._levels: deque[float] = deque(maxlen=_HISTORY_FRAMES)
        self._powers: deque[float] = deque(maxlen=_SMOOTH_FRAMES)
        self.background_db = _FLOOR_DB
        self.speech_db = _DEFAULT_SPEECH_DB
        self.level_db = _FLOOR_DB  # the smoothed level of the latest frames
        self.frame_db = _FLOOR_DB  # the latest frame's own level (onsets: no smoothing lag)

    @property
    def known(self) -> bool:
        """Enough of the line has been heard to tell the caller from its background."""
        return len(self._levels) >= _MIN_HISTORY_FRAMES

    def update(self, rms: float) -> float:
        """Take this tick's frame; returns its smoothed level (dBFS)."""
        self._powers.append(rms * rms)
        self.level_db = level_db(math.sqrt(sum(self._powers) / len(self._powers)))
        self.frame_db = level_db(rms)
        self._levels.append(self.frame_db)
        if len(self._levels) >= 3:
            self.background_db = float(np.percentile(np.fromiter(self._levels, float, len(self._levels)),
                                                     _BACKGROUND_PERCENTILE))
        return self.level_db

    def learn_speech(self) -> None:
        """This frame is the caller talking (the VAD says so and it stands out of the background)."""
        rate = _SPEECH_LEARN_UP if self.level_db > self.speech_db else _SPEECH_LEARN_DOWN
        self.speech_db += rate * (self.level_db - self.speech_db)

    @property
    def _gap(self) -> float:
        return max(0.0, self.speech_db - self.background_db)

    @property
    def onset_db(self) -> float:
        return self.background_db + max(_ONSET_MIN_DB, _ONSET_FRACTION * self._gap)

    @property
    def quiet_db(self) -> float:
        return self.background_db + max(_QUIET_MIN_DB, _QUIET_FRACTION * self._gap)

    @property
    def sounding_db(self) -> float:
        """A frame at or above this is the caller sounding, if softly: a word's start, or a short
        first word the onset missed (turn_taker.py reaches the utterance back over such frames)."""
        return self.background_db + max(_SOUNDING_MIN_DB, _SOUNDING_FRACTION * self._gap)

    def above_background(self) -> bool:
        """Loud enough to be the caller starting (or going on after a pause) rather than the line."""
        return self.known and self.level_db >= self.onset_db

    def at_background(self) -> bool:
        """Down at the line's background: whatever the VAD says, the caller is not speaking."""
        return self.known and self.level_db < self.quiet_db

    def loud(self) -> bool:
        """This very frame is well above where speech starts: an onset the VAD has not confirmed
        yet (judged unsmoothed: holding the bot ~40 ms sooner is what keeps it within 100 ms)."""
        return self.known and self.frame_db >= self.onset_db + _LOUD_ABOVE_ONSET_DB
