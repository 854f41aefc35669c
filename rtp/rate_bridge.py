"""Fixed-size 20 ms frames across a sample-rate change, for a wideband codec on an 8 kHz engine.

On a G.722 call the caller's 16 kHz audio is decoded, and what works at 8 kHz (VAD, echo
canceller and guard, turn-taking, the recorder) gets an 8 kHz copy of each frame, so nothing
there changes; the bot's 8 kHz frames are raised to 16 kHz for the encoder. A streaming
resampler (rtp/resample.py, low-latency soxr) keeps the filter state across frames, so there is
no click at every 20 ms join; it holds back its look-ahead (~11 ms) once, at the start, which
this bridge fills with silence so that every tick still yields exactly one frame.
"""

from __future__ import annotations

import numpy as np

from rtp.resample import StreamResampler

__all__ = ["FrameRateBridge"]


class FrameRateBridge:
    """One stream's 20 ms frames from ``in_rate`` to ``out_rate``, exactly one frame out per frame in."""

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int = 20):
        self._resampler = StreamResampler(in_rate, out_rate)
        self.frame_samples = out_rate * frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.int16)

    def convert(self, pcm: np.ndarray) -> np.ndarray:
        """The next ``frame_samples`` of output (silence-padded in front while the filter fills)."""
        out = self._resampler.process(pcm)
        pending = np.concatenate((self._pending, out)) if len(self._pending) else out
        n = self.frame_samples
        if len(pending) < n:
            pending = np.concatenate((np.zeros(n - len(pending), dtype=np.int16), pending))
        frame, self._pending = pending[:n], pending[n:]
        return frame

    def reset(self) -> None:
        self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.int16)
