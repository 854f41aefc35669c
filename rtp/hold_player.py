"""A loop of audio handed out 20 ms at a time: what a caller on hold hears (media clock thread).

Pure audio: the loop (hold music, a comfort tone) is made elsewhere at 8 kHz, before the call
needs it; each `next_frame` is one slice of it, wrapping from its end to its start.
"""

from __future__ import annotations

import numpy as np

from rtp.outbound import OutboundFrame

FRAME = OutboundFrame.PCM_RATE // 50  # 20 ms


class HoldPlayer:
    """The loop, 20 ms per call of `next_frame` (media clock thread only)."""

    def __init__(self, pcm: np.ndarray):
        if len(pcm) < FRAME:
            raise ValueError("a hold loop shorter than 20 ms")
        self._pcm = pcm
        self._at = 0

    def next_frame(self) -> OutboundFrame:
        end = self._at + FRAME
        if end <= len(self._pcm):
            frame = self._pcm[self._at:end]
            self._at = end % len(self._pcm)
        else:  # wrap around: the end of the file, then its start
            frame = np.concatenate([self._pcm[self._at:], self._pcm[:end - len(self._pcm)]])
            self._at = end - len(self._pcm)
        return OutboundFrame(np.ascontiguousarray(frame, dtype=np.int16))
