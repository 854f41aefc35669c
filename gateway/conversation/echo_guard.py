"""Is what the caller's line carries right now the caller, or the bot's own echo?

The echo canceller's output is not enough to decide. Measured on these lines: WebRTC AEC3
suppresses the caller while the bot talks on a line where it has not learnt an echo path (3 of
100 frames of an interruption still looked like speech after it), lets residual echo through
before it converges and whenever the echo delay moves (the jitter buffer adds or drops a frame),
and silero's VAD calls that residue speech.

So the guard asks the question directly: does this frame look like something the bot said in
the last 400 ms? It takes the highest normalized cross-correlation between the received frame and
the bot's recent audio over every echo delay up to 400 ms. An echo is a delayed, filtered copy of
our own audio and scores high; the caller's voice, alone or on top of the echo, does not. While
the bot talks, frames that look like echo are not speech, whatever the VAD says; frames that do
not are judged on the line as received, undistorted by the canceller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FRAME = 160
_FLOOR_DB = -90.0


def level_db(rms: float) -> float:
    return 20 * math.log10(rms / 32768.0) if rms > 0 else _FLOOR_DB


@dataclass
class EchoGuard:
    history_ms: int = 400  # longest echo delay considered (line + network + jitter buffer)
    echo_correlation: float = 0.5  # at or above: the frame is (mostly) our own echo
    far_active_db: float = -50.0
    noise_floor_db: float = -60.0
    last_correlation: float = 0.0
    _far: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        self._far = np.zeros(self.history_ms * 8, dtype=np.float32)
        n = 1
        while n < len(self._far) + FRAME:
            n *= 2
        self._fft_size = n

    def add_far(self, frame: np.ndarray | None) -> None:
        """What we sent this tick (None: silence)."""
        self._far = np.roll(self._far, -FRAME)
        self._far[-FRAME:] = 0.0 if frame is None else frame.astype(np.float32)

    @property
    def far_active(self) -> bool:
        return level_db(float(np.sqrt(np.mean(self._far ** 2)))) > self.far_active_db

    def echo_like(self, near: np.ndarray) -> bool:
        """Whether `near` correlates with the bot's recent audio at some delay (see module doc)."""
        x = near.astype(np.float32)
        energy = float(np.dot(x, x))
        if energy <= 1e-3 or not self.far_active:
            self.last_correlation = 0.0
            return False
        n = self._fft_size
        far = self._far
        corr = np.fft.irfft(np.fft.rfft(far, n) * np.conj(np.fft.rfft(x, n)), n)[: len(far) - FRAME + 1]
        window = np.convolve(far * far, np.ones(FRAME, dtype=np.float32), mode="valid")
        ncc = np.abs(corr) / np.sqrt(np.maximum(window, 1e-3) * energy)
        self.last_correlation = float(ncc.max())
        return self.last_correlation >= self.echo_correlation

    def track_noise(self, rms: float) -> None:
        """Minimum statistics of the line's level: quick to fall, slow (2.5 dB/s) to rise."""
        level = level_db(rms)
        if level < self.noise_floor_db:
            self.noise_floor_db = level
        else:
            self.noise_floor_db += min(level - self.noise_floor_db, 0.05)

    def loud(self, rms: float) -> bool:
        """A level well above the line's noise (an onset the VAD has not confirmed yet)."""
        level = level_db(rms)
        return level > -45.0 and level > self.noise_floor_db + 15.0
