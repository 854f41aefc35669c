"""A voicemail's beep: a steady pure tone of 400-2000 Hz, heard frame by frame with Goertzel.

Why Goertzel and not an FFT: we only ask "is nearly all of this frame's energy in one narrow band
of the beep range?", which is one dot product per candidate frequency (a Goertzel bank over
12.5 Hz steps is two 129 x 160 matrices: ~30 µs per 20 ms frame on the media clock). Speech never holds
that share in a single bin for long (its harmonics spread the energy and its pitch glides), and
a line's noise holds it in none, so a run of tone frames at one stable frequency is the beep.

Bins are 12.5 Hz apart and a 20 ms frame's main lobe is 50 Hz wide on each side, so a tone between
two bins still shows ~95 % of its energy in the nearer one: no window needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RATE = 8000
FRAME_SAMPLES = 160
LOW_HZ = 400.0
HIGH_HZ = 2000.0
STEP_HZ = 12.5
# Share of the frame's energy in its best bin for a tone frame: a beep on the line scores 0.95-1.0
# (between two bins, µ-law, a little noise); a low voice's strongest harmonic held 0.61-0.77 for
# 140 ms on the AMD set ("Hi, David here." in espeak's en-us+m7 was taken for a beep at 0.6).
_PURITY = 0.85
_MIN_DBFS = -45.0  # quieter frames are the line, not a beep
_SAME_TONE_HZ = 20.0  # the best bin may wander this much between frames of one tone (µ-law, noise)
_MIN_FRAMES = 6  # 120 ms of steady tone: beeps are 0.2 s and longer, vowels glide before then
_FREQUENCIES = np.arange(LOW_HZ, HIGH_HZ + STEP_HZ / 2, STEP_HZ)
_n = np.arange(FRAME_SAMPLES)
_COS = np.cos(2 * np.pi * np.outer(_FREQUENCIES, _n) / RATE)
_SIN = np.sin(2 * np.pi * np.outer(_FREQUENCIES, _n) / RATE)


@dataclass(frozen=True)
class Tone:
    """A tone that has ended (or is still going on, `ended` False): the beep candidate."""

    started_at: float
    ended_at: float
    frequency_hz: float
    ended: bool

    @property
    def length_s(self) -> float:
        return self.ended_at - self.started_at


def tone_in_frame(pcm: np.ndarray) -> float | None:
    """The frequency of the pure tone filling this 20 ms frame, or None (speech, noise, silence)."""
    x = np.asarray(pcm[:FRAME_SAMPLES], dtype=np.float64)
    if len(x) < FRAME_SAMPLES:
        return None
    energy = float(np.dot(x, x))
    if energy <= 0 or 10 * math.log10(energy / FRAME_SAMPLES / 32768.0**2) < _MIN_DBFS:
        return None
    power = (_COS @ x) ** 2 + (_SIN @ x) ** 2  # |X(f)|^2 at each candidate frequency
    best = int(np.argmax(power))
    purity = 2 * float(power[best]) / (FRAME_SAMPLES * energy)  # 1.0 for a pure tone on the bin
    return float(_FREQUENCIES[best]) if purity >= _PURITY else None


class BeepDetector:
    """Fed every 20 ms frame (8 kHz int16) of one call; tells when a steady tone runs and when it ends.

    Owned by the thread that feeds it (the media clock); pure arithmetic, no I/O.
    """

    def __init__(self, min_frames: int = _MIN_FRAMES):
        self.min_frames = min_frames
        self._run = 0
        self._run_hz = 0.0
        self._run_start = 0.0
        self._last_tone_at = 0.0

    @property
    def in_tone(self) -> bool:
        """A steady tone has been going on for at least `min_frames` up to this frame."""
        return self._run >= self.min_frames

    def feed(self, now: float, pcm: np.ndarray) -> Tone | None:
        """This frame's part in a tone: the tone when it has just ended after a long enough run,
        else None. `in_tone` tells a caller that a tone is going on right now."""
        hz = tone_in_frame(pcm)
        if hz is not None and self._run and abs(hz - self._run_hz) <= _SAME_TONE_HZ:
            self._run += 1
            self._run_hz += (hz - self._run_hz) / self._run
            self._last_tone_at = now
            return None
        ended = self._finish()
        if hz is not None:
            self._run, self._run_hz, self._run_start, self._last_tone_at = 1, hz, now, now
        return ended

    def ongoing(self, now: float) -> Tone | None:
        """The tone going on now, if it is long enough to be a beep (for a beep that never ends)."""
        if not self.in_tone:
            return None
        return Tone(self._run_start, now, round(self._run_hz), ended=False)

    def _finish(self) -> Tone | None:
        tone = None
        if self._run >= self.min_frames:
            tone = Tone(self._run_start, self._last_tone_at + FRAME_SAMPLES / RATE, round(self._run_hz), ended=True)
        self._run = 0
        return tone
