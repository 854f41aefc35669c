"""The echo agent: sends the caller's own audio back, for line tests.

It returns each 20 ms frame on the tick it was played out of the jitter buffer, so what the
caller hears is their voice delayed by the network round trip plus our jitter buffer: an
operator can hear loss, jitter and level problems on a line without any model loaded.
Concealed frames are echoed too (they are what we would play), empty ones are not. On a G.722
call the caller's own 16 kHz audio goes back, not its 8 kHz copy.
"""

from __future__ import annotations

import numpy as np

from gateway.agents.base import CallContext
from rtp.jitter import FrameType, JitterFrame
from rtp.outbound import OutboundFrame


class EchoAgent:
    uses_echo_canceller = False  # cancelling our own echo here would erase the caller

    def __init__(self, context: CallContext):
        self.context = context
        self._pending: OutboundFrame | None = None
        self.digits: list[str] = []

    def on_start(self) -> None:
        self.context.log.info("agent_started", agent="echo")

    def on_audio(self, frame: JitterFrame, echo_cancelled: np.ndarray | None = None) -> None:
        self._pending = None if frame.type is FrameType.EMPTY else OutboundFrame(frame.pcm, frame.wideband)

    def next_frame(self) -> OutboundFrame | None:
        frame, self._pending = self._pending, None
        return frame

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        self.context.log.info("agent_dtmf", digit=digit)

    def on_stop(self) -> None:
        self.context.log.info("agent_stopped", agent="echo", digits="".join(self.digits))
