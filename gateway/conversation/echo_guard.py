"""Is what the caller's line carries right now the caller, or the bot's own echo?

The echo canceller's output is not enough to decide. Measured on these lines: WebRTC AEC3
suppresses the caller while the bot talks on a line where it has not learnt an echo path (3 of
100 frames of an interruption still looked like speech after it), lets residual echo through
before it converges and whenever the echo delay moves (the jitter buffer adds or drops a frame),
and silero's VAD calls that residue speech.

So the guard asks the question directly: does this frame look like something the bot said in
the last 400 ms? It takes the normalized cross-correlation between the last 40 ms received and
the bot's recent audio over every echo delay up to 400 ms. An echo is a delayed, filtered copy of
our own audio and scores high at a delay that stays put; the caller's voice, alone or on top of
the echo, does not. While
the bot talks, frames that look like echo are not speech, whatever the VAD says; frames that do
not are judged on the line as received, undistorted by the canceller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.conversation.line_levels import level_db

FRAME = 160


@dataclass
class EchoGuard:
    history_ms: int = 400  # longest echo delay considered (line + network + jitter buffer)
    echo_correlation: float = 0.5  # at the line's known echo delay: the frame is (mostly) our own echo
    strong_correlation: float = 0.8  # at any delay: so alike it can only be our echo
    lag_tolerance: int = 8  # samples the echo delay may wander between frames
    far_active_db: float = -50.0
    last_correlation: float = 0.0
    echo_delay: int | None = None  # lag index of the line's echo, once seen twice at the same place
    _far: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _previous_near: np.ndarray = field(default_factory=lambda: np.zeros(FRAME, dtype=np.float32))
    _candidate: int | None = None

    def __post_init__(self) -> None:
        self._far = np.zeros(self.history_ms * 8 + FRAME, dtype=np.float32)
        n = 1
        while n < len(self._far) + 2 * FRAME:
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
        """Whether `near` is the bot's recent audio coming back (see module doc).

        The last 40 ms received are compared with the bot's audio at every delay. Voiced speech
        resembles other voiced speech at *some* delay by chance, so a moderate similarity only
        counts at the delay where this line's echo has been seen before (an echo's delay is
        stable from frame to frame; chance matches jump around); a very strong one counts
        anywhere, and two matches in a row at the same delay teach the guard that delay.
        """
        x = np.concatenate([self._previous_near, near.astype(np.float32)])
        self._previous_near = x[FRAME:]
        energy = float(np.dot(x, x))
        if energy <= 1e-3 or not self.far_active:
            self.last_correlation = 0.0
            return False
        n, far, width = self._fft_size, self._far, len(x)
        corr = np.fft.irfft(np.fft.rfft(far, n) * np.conj(np.fft.rfft(x, n)), n)[: len(far) - width + 1]
        window = np.convolve(far * far, np.ones(width, dtype=np.float32), mode="valid")
        ncc = np.abs(corr) / np.sqrt(np.maximum(window, 1e-3) * energy)
        best = int(ncc.argmax())
        self.last_correlation = float(ncc[best])
        if self.echo_delay is not None:
            lo, hi = max(0, self.echo_delay - self.lag_tolerance), self.echo_delay + self.lag_tolerance + 1
            local = lo + int(ncc[lo:hi].argmax())
            if ncc[local] >= self.echo_correlation:
                self.echo_delay = local
                return True
        if self.last_correlation >= self.echo_correlation:
            if self._candidate is not None and abs(best - self._candidate) <= self.lag_tolerance:
                self.echo_delay = best
            self._candidate = best
        else:
            self._candidate = None
        return self.last_correlation >= self.strong_correlation or self.echo_delay == best
