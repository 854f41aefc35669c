"""Where a call's audio goes while its agent is set aside: hold music, or another call's leg.

A call's RTP session always talks to its `CallMedia`; normally that hands the audio to the agent.
During a warm transfer the caller is on hold (`HoldRoute`: music out, nothing in) and, if the
caller's phone cannot take the REFER with Replaces, the gateway relays audio between the caller's
leg and the target's (`BridgeRoute`, two of them sharing one `AudioLink`).

Every route runs on the media clock thread only: the SIP thread hands a route to `CallMedia` through
its queue (`CallMedia.set_route`), and the one clock thread ticks both legs of a bridge, so the
link between them needs no lock. Which leg is ticked first changes from tick to tick (sessions come
and go), so each direction keeps a short queue: a frame is never lost or doubled because the other
leg was ticked before or after, and the queue is cut to `_MAX_QUEUED` so a leg whose peer stopped
sending does not build up delay.
"""

from __future__ import annotations

import collections
import enum
from typing import Protocol

import numpy as np

from rtp.hold_player import HoldPlayer
from rtp.jitter import FrameType, JitterFrame
from rtp.outbound import OutboundFrame

_MAX_QUEUED = 3  # frames (60 ms) one direction of a bridge may hold


class MediaRoute(Protocol):
    def exchange(self, frame: JitterFrame) -> OutboundFrame | None:
        """Take this leg's received 20 ms, give what it sends (media clock thread)."""


class HoldRoute:
    """The caller on hold: the music loop out; what the caller says goes nowhere."""

    def __init__(self, player: HoldPlayer):
        self._player = player

    def exchange(self, frame: JitterFrame) -> OutboundFrame | None:
        return self._player.next_frame()


class Side(enum.Enum):
    CALLER = 0
    TARGET = 1


class AudioLink:
    """The two directions between two legs (media clock thread only)."""

    def __init__(self) -> None:
        self._towards: dict[Side, collections.deque[np.ndarray]] = {
            Side.CALLER: collections.deque(maxlen=_MAX_QUEUED), Side.TARGET: collections.deque(maxlen=_MAX_QUEUED)}
        self.relayed = {Side.CALLER: 0, Side.TARGET: 0}  # frames handed to each side (for the log)

    def send(self, to: Side, pcm: np.ndarray) -> None:
        self._towards[to].append(pcm)

    def receive(self, side: Side) -> np.ndarray | None:
        queue = self._towards[side]
        if not queue:
            return None
        self.relayed[side] += 1
        return queue.popleft()


class BridgeRoute:
    """One leg of a bridge: what it receives goes to the other leg, what the other received comes out."""

    def __init__(self, link: AudioLink, side: Side):
        self.link = link
        self.side = side
        self._other = Side.TARGET if side is Side.CALLER else Side.CALLER

    def exchange(self, frame: JitterFrame) -> OutboundFrame | None:
        if frame.type is not FrameType.EMPTY:  # nothing received: the other leg hears silence
            self.link.send(self._other, frame.pcm)
        pcm = self.link.receive(self.side)
        return None if pcm is None else OutboundFrame(pcm)
