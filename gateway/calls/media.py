"""The bridge between one call's RTP session and its agent (media clock thread).

`CallMedia` is the session's listener: it hands each received frame to the agent, takes the
frame to send, and copies both to the recorder. On a wideband (G.722) call the frames carry 16 kHz
audio beside the 8 kHz copy (`JitterFrame.wideband` from the caller, `OutboundFrame.wideband` from
the agent); the agent takes what it can use, the recorder keeps 8 kHz. `release_media` is what the media clock runs
once a torn-down call's session is no longer ticked: it holds the session, never the call.
"""

from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Callable

import numpy as np
import structlog

from gateway.agents import Agent
from gateway.calls.media_routes import MediaRoute
from gateway.records import CallRecorder
from gateway.sip.call import NegotiatedMedia
from rtp.codec import audio_codec_by_name
from rtp.jitter import JitterFrame
from rtp.opuscodec import OpusCodec
from rtp.outbound import OutboundFrame
from rtp.ports import PortAllocator
from rtp.session import RemoteMedia, RtpSession


class DtmfMethod(enum.StrEnum):
    """How a keypress reached us: in the media (RFC 4733) or in the signalling (SIP INFO)."""

    RFC4733 = "rfc4733"
    SIP_INFO = "sip_info"


class CallMedia:
    """Adapts the RTP session's listener interface to the agent (media clock thread).

    Keypresses reach the agent here whichever way they came: RFC 4733 events from the session on
    this thread, SIP INFO digits from the SIP thread through `signalled_dtmf`, a queue this thread
    empties on its next tick, so `Agent.on_dtmf` keeps its one thread and both kinds keep their order.
    """

    def __init__(self, agent: Agent, on_inactive: Callable[[float], None], recorder: CallRecorder | None = None,
                 answered: bool = True):
        self.agent = agent
        self._on_inactive = on_inactive
        self._recorder = recorder
        self._signalled: collections.deque[str] = collections.deque()  # SIP thread appends, media thread pops
        # An outbound call's early media (183) plays before the callee answers: the agent must not
        # hear a ringback tone as its callee nor talk over it, so until then it gets nothing and
        # we send silence. Set by the SIP thread, read by the media thread.
        self._answered = threading.Event()
        if answered:
            self._answered.set()
        # A warm transfer sets the agent aside (hold music, a bridge to another leg): the SIP thread
        # appends the new route (None: back to the agent), this thread takes it on its next tick.
        self._routes: collections.deque[MediaRoute | None] = collections.deque()
        self._route: MediaRoute | None = None

    def answer(self) -> None:
        """The call is answered (SIP thread): from the next tick the agent hears and speaks."""
        self._answered.set()

    def set_route(self, route: MediaRoute | None) -> None:
        """Send this call's audio through `route` from the next tick, or back to the agent (SIP thread)."""
        self._routes.append(route)

    def signalled_dtmf(self, digit: str) -> None:
        """A keypress that came as SIP INFO (SIP thread): the agent gets it on the next tick."""
        self._signalled.append(digit)

    def on_frame(self, frame: JitterFrame, echo_cancelled: np.ndarray | None) -> OutboundFrame | None:
        if not self._answered.is_set():
            self._signalled.clear()  # keys of the early dialog are no keypresses of the callee's either
            return None  # early media: heard by no one, answered with silence
        while self._signalled:
            self._deliver(self._signalled.popleft(), DtmfMethod.SIP_INFO)
        while self._routes:
            self._route = self._routes.popleft()
        if self._route is not None:
            out = self._route.exchange(frame)
        else:
            self.agent.on_audio(frame, echo_cancelled)
            out = self.agent.next_frame()
        if self._recorder is not None:  # queued for the recorder's writer thread: never blocks
            self._recorder.audio(frame.pcm, None if out is None else out.pcm)
        return out

    def on_dtmf(self, digit: str) -> None:
        if self._answered.is_set():  # a tone in early media is no keypress of the callee's
            self._deliver(digit, DtmfMethod.RFC4733)

    def _deliver(self, digit: str, method: DtmfMethod) -> None:
        if self._recorder is not None:
            self._recorder.event("dtmf", digit=digit, method=str(method))
        self.agent.on_dtmf(digit)

    def on_inactive(self, idle_s: float) -> None:
        self._on_inactive(idle_s)


def release_media(session: RtpSession, call_log: structlog.typing.FilteringBoundLogger, rtp_port: int,
                  ports: PortAllocator) -> None:
    session.close()
    call_log.info("rtp_released", port=rtp_port, ports_in_use=ports.in_use)


def echo_canceller_for(agent: Agent):
    if not agent.uses_echo_canceller:
        return None
    from rtp.echo import create_echo_canceller

    return create_echo_canceller(8000)


def remote_media(media: NegotiatedMedia, srtp_required: bool) -> RemoteMedia | str:
    """What our RTP session needs from what pjsua negotiated, or why the call cannot go on (the
    hang-up reason: codec_unsupported, srtp_required)."""
    try:
        codec = audio_codec_by_name(media.codec)
        if isinstance(codec, OpusCodec):  # a dynamic payload type, each way as negotiated
            codec = codec.with_payload_types(send=media.tx_pt, receive=media.rx_pt)
    except (KeyError, ValueError):
        return "codec_unsupported"
    if media.srtp is None and srtp_required:
        # pjsua refuses plain offers when SRTP is required; this guards the keys we read back.
        return "srtp_required"
    return RemoteMedia(
        rtp_address=media.remote_rtp, rtcp_address=media.remote_rtcp, codec=codec,
        send_event_pt=media.tx_event_pt, receive_event_pt=media.rx_event_pt,
        send=media.send, receive=media.receive, srtp=media.srtp,
    )
