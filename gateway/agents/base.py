"""The interface between a call's media and whatever talks on it.

`on_audio` and `next_frame` run on the media clock thread, every 20 ms: they must return at
once (queue work elsewhere, never wait for a model). Audio is 8 kHz mono int16 in 20 ms frames
(on a G.722 call the frame also carries the caller's 16 kHz audio as `frame.wideband`, and what
the agent sends may carry its own 16 kHz audio as `OutboundFrame.wideband`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from gateway.agents.handover import WarmTransferRequest
from rtp.jitter import JitterFrame
from rtp.outbound import OutboundFrame


class RecordKind(enum.StrEnum):
    """The kinds of event an agent records about its call (`CallContext.record`). The values are
    what the call's record file and the `call_events` table hold, so they never change (a StrEnum:
    a `str` whose `str()` is its value)."""

    TURN = "turn"
    BARGE_IN = "barge_in"
    TOOL_CALL = "tool_call"
    MODEL_ERROR = "model_error"
    CALLER_SPEECH = "caller_speech"
    BOT_SPEECH = "bot_speech"
    AMD = "amd"  # who answered an outbound call (verdict, timing) and when a machine was ready


@dataclass
class CallContext:
    """What an agent may know about and do to its call, without touching SIP or RTP objects."""

    call_id: str
    direction: str  # "inbound" or "outbound"
    local_uri: str
    remote_uri: str
    agent_name: str
    hangup: Callable[[str], None]  # reason -> None; thread-safe
    send_dtmf: Callable[[str], None]  # digits -> None; thread-safe
    # (target URI, on_result(ok, detail)) -> None; thread-safe. Blind transfer with REFER: on
    # success the call is hung up for us; on failure it goes on and the agent is told why.
    transfer: Callable[[str, Callable[[bool, str], None]], None] = lambda uri, done: done(False, "not supported")
    # (request, on_result(ok, detail)) -> None; thread-safe. Warm transfer (gateway/calls/warm_transfer.py):
    # on success the caller is with the target (REFER with Replaces, or bridged by us).
    warm_transfer: Callable[[WarmTransferRequest, Callable[[bool, str], None]], None] = \
        lambda request, done: done(False, "not supported")
    # (8 kHz int16 loop, or None to end it) -> None; thread-safe: the caller hears the loop instead of
    # the agent (nor is the agent fed the caller's audio) until it is ended (a long tool's hold music).
    hold: Callable[[np.ndarray | None], None] = lambda loop: None
    log: structlog.typing.FilteringBoundLogger = field(default_factory=lambda: structlog.get_logger("agent"))
    # (RecordKind, fields) -> None: what happened on the call, for its record and the metrics (see
    # gateway/records.py for the fields). Must return at once; called from the agent's threads.
    record: Callable[..., None] = lambda kind, **fields: None
    variables: dict[str, str] = field(default_factory=dict)  # originate variables ({name} in greeting/instructions)


class Agent(Protocol):
    uses_echo_canceller: bool

    def on_start(self) -> None:
        """Media is flowing (called once, on the SIP thread)."""

    def on_audio(self, frame: JitterFrame, echo_cancelled: np.ndarray | None = None) -> None:
        """The caller's next 20 ms, as received and (if `uses_echo_canceller`) with the bot's
        echo removed (media clock thread, must not block)."""

    def next_frame(self) -> OutboundFrame | None:
        """The next 20 ms to send, or None for silence (media clock thread, must not block)."""

    def on_dtmf(self, digit: str) -> None:
        """A keypress from the caller (media clock thread, must not block)."""

    def on_stop(self) -> None:
        """The call is over; release everything (SIP thread)."""
