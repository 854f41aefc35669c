"""A wideband (G.722) session's two rates: the caller's 16 kHz down to 8 kHz, and what we send up to 16 kHz.

The RTP engine works at 8 kHz around the codec (echo canceller, the listener's frame), so on a
G.722 call the session hands its listener each received frame at 8 kHz with the decoded 16 kHz
original beside it (``JitterFrame.wideband``). Outbound, a listener that has its own 16 kHz audio
(``OutboundFrame.wideband``: the bot's voice resampled once from the TTS's rate) has it encoded as
it is, in the same tick: no resampler, no look-ahead. Only narrowband frames (silence, an echo of a
G.711 peer) go through the 8 -> 16 kHz bridge, whose ~11 ms look-ahead is filled with silence.

Switching between the two: when a wideband frame goes out the bridge is reset, so what it still
held of earlier 8 kHz audio is dropped rather than played after (or over) the wideband audio, and
the first narrowband frame after it starts on fresh filter state (silence in front), exactly like
the first frame of a call.
"""

from __future__ import annotations

from rtp.jitter import JitterFrame
from rtp.outbound import OutboundFrame, Pcm, fit_frame
from rtp.rate_bridge import FrameRateBridge

__all__ = ["WidebandLine"]

_LINE_RATE = 8000


class WidebandLine:
    """One wideband session's rate bridging (media clock thread only)."""

    def __init__(self, sample_rate: int, frame_ms: int = 20):
        if sample_rate != OutboundFrame.WIDEBAND_RATE:
            raise ValueError(f"a wideband line is {OutboundFrame.WIDEBAND_RATE} Hz, not {sample_rate}")
        self._narrow = FrameRateBridge(sample_rate, _LINE_RATE, frame_ms)
        self._widen = FrameRateBridge(_LINE_RATE, sample_rate, frame_ms)
        self.frame_samples = sample_rate * frame_ms // 1000
        self.wideband_frames = 0  # sent from the listener's own 16 kHz audio
        self.widened_frames = 0  # raised from 8 kHz (silence included)

    def received(self, frame: JitterFrame) -> JitterFrame:
        """The caller's decoded 16 kHz frame as the listener takes it: 8 kHz in ``pcm``, the original beside."""
        return JitterFrame(frame.type, self._narrow.convert(frame.pcm), frame.timestamp, wideband=frame.pcm)

    def to_send(self, pcm: Pcm, wideband: Pcm | None) -> Pcm:
        """The 16 kHz frame for the encoder: the listener's own wideband audio if it gave it, else `pcm`
        (8 kHz) raised."""
        if wideband is None:
            self.widened_frames += 1
            return self._widen.convert(pcm)
        self.wideband_frames += 1
        self._widen.reset()
        return fit_frame(wideband, self.frame_samples)
