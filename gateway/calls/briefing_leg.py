"""The agent of a warm transfer's second leg: it tells the target who is coming, then stands aside.

It speaks once, when the target has answered and the briefing (a `Future`, made while the phone
rang) is ready, after a short pause so it does not talk over the target's "Hello?"; then it reports
`on_briefed` and sends silence until the desk connects the caller (REFER) or bridges the legs
(a `BridgeRoute` then replaces this agent on the media path). It hears nothing: the target
answering back is for the caller to hear once connected.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from rtp.jitter import JitterFrame
from rtp.outbound import OutboundFrame, fit_frame

_FRAME = OutboundFrame.PCM_RATE // 50
LEAD_IN_FRAMES = 25  # 500 ms of silence after the answer before the briefing


class BriefingAgent:
    uses_echo_canceller = False

    def __init__(self, briefing: Future[np.ndarray], on_answered: Callable[[], None],
                 on_briefed: Callable[[], None]):
        self._briefing = briefing
        self._on_answered = on_answered  # SIP thread (on_start runs there)
        self._on_briefed = on_briefed  # thread-safe: called from the media clock once
        self._frames: collections.deque[OutboundFrame] | None = None
        self._lead_in = LEAD_IN_FRAMES
        self._told = False

    def on_start(self) -> None:
        self._on_answered()

    def on_audio(self, frame: JitterFrame, echo_cancelled: np.ndarray | None = None) -> None:
        if self._lead_in > 0:
            self._lead_in -= 1

    def next_frame(self) -> OutboundFrame | None:
        if self._told or self._lead_in > 0:
            return None
        if self._frames is None:
            if not self._briefing.done():
                return None
            try:
                pcm = self._briefing.result()
            except Exception:  # the maker logged it; the target is connected without a briefing
                pcm = np.zeros(0, dtype=np.int16)
            self._frames = collections.deque(OutboundFrame(fit_frame(pcm[i:i + _FRAME], _FRAME))
                                             for i in range(0, len(pcm), _FRAME))
        if self._frames:
            return self._frames.popleft()
        self._told = True
        self._on_briefed()
        return None

    def on_dtmf(self, digit: str) -> None:
        pass

    def on_stop(self) -> None:
        pass  # the desk learns of the leg's end from the call manager's teardown
