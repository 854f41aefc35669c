"""The SIP side of `voicegate dial`: one outbound call from a pjsua2 endpoint of its own.

The gateway's own pieces do the signalling (SipStack owns the endpoint on its thread, SipCall
points the SDP at our media and reports what was negotiated); this module only places the call,
hands the negotiated media to the `CallerLine`, and hangs up. Everything pjsua2 is touched on
the SIP thread, the `SipCall` is dropped there too (architecture.md, "pjsua2 lives on the SIP
thread").
"""

from __future__ import annotations

import socket
import threading

import pjsua2 as pj
import structlog

from gateway.dial.line import CallerLine, Peer
from gateway.sip.account import GatewayAccount
from gateway.sip.call import NegotiatedMedia, SipCall
from gateway.sip.sdp import MediaAddress
from gateway.sip.stack import SipStack, StackSettings
from rtp.codec import UnknownCodecError, audio_codec_by_name

log = structlog.get_logger("dial")

HANGUP_WAIT_S = 5.0


class DialError(RuntimeError):
    """The call could not be placed or was refused (the message says what SIP answered)."""


def free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class OutboundCall:
    """One call to `uri` whose media is `line` (implements gateway.sip.call.CallEvents)."""

    def __init__(self, host: str, line: CallerLine, codecs: tuple[str, ...]):
        self.line = line
        self.host = host
        self.stack = SipStack(StackSettings(listen_host=host, listen_port=free_udp_port(host), public_address=host,
                                            max_calls=1, codecs=codecs, user_agent="voicegate-dial"))
        self._account: GatewayAccount | None = None
        self._sip: SipCall | None = None
        self.call_id = ""
        self.answered = threading.Event()
        self.ended = threading.Event()
        self.end_status = ""
        self._started = False

    # -- main thread ---------------------------------------------------------------------------------

    def start(self, uri: str) -> None:
        """Start the endpoint and send the INVITE; DialError if either fails at once."""
        try:
            self.stack.start(on_started=self._create_account, on_shutdown=self._shutdown)
        except OSError as exc:
            raise DialError(str(exc)) from None
        self._started = True
        error = self.stack.submit(lambda: self._place(uri)).result(timeout=10)
        if error:
            raise DialError(f"cannot call {uri}: {error}")

    def hang_up(self) -> None:
        """Send BYE (or CANCEL) and wait for the call to end; the SipCall is released on the SIP thread."""
        if self._started and not self.ended.is_set():
            self.stack.submit(self._hang_up).result(timeout=10)
            self.ended.wait(HANGUP_WAIT_S)

    def close(self) -> None:
        if self._started:
            self.stack.stop()

    # -- SIP thread ----------------------------------------------------------------------------------

    def _create_account(self) -> None:
        self._account = GatewayAccount.local(self.stack, "dial", lambda account, invite: None)

    def _place(self, uri: str) -> str:
        """Send the INVITE; returns pjsua's reason when it refuses at once (a malformed URI), else ""."""
        assert self._account is not None
        sip = SipCall(self._account, self)
        try:
            sip.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            return str(exc.reason)  # `sip` is dropped here, on the SIP thread
        self._sip = sip
        self.call_id = sip.getInfo().callIdString
        return ""

    def _hang_up(self) -> None:
        if self._sip is not None and not self.ended.is_set():
            try:
                self._sip.hangup(pj.CallOpParam(True))
            except pj.Error as exc:
                log.warning("dial_hangup_failed", error=exc.info())

    def _shutdown(self) -> None:
        self._hang_up()
        self.stack.pump_until(self.ended.is_set, HANGUP_WAIT_S)
        self._sip = None
        self.stack.pump(0.05)
        if self._account is not None:
            self._account.shutdown()
            self._account = None

    # CallEvents, called by SipCall on the SIP thread

    def media_address(self, call: SipCall) -> MediaAddress | None:
        return MediaAddress(self.host, self.line.port)

    def on_call_state(self, call: SipCall, info: pj.CallInfo) -> None:
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.answered.set()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.end_status = f"{info.lastStatusCode} {info.lastReason}"
            self.ended.set()

    def on_media(self, call: SipCall, media: NegotiatedMedia | None) -> None:
        if media is None or not media.send:
            return
        try:
            codec = audio_codec_by_name(media.codec)
        except UnknownCodecError:
            log.error("dial_codec_unusable", codec=media.codec)
            return
        self.line.connect(Peer(media.remote_rtp, codec, media.tx_pt))

    def on_transfer_status(self, call: SipCall, code: int, reason: str, final: bool) -> None:
        """The dialer never transfers."""

    def on_media_failed(self, call: SipCall, reason: str) -> None:
        log.error("dial_media_failed", reason=reason)
        self._hang_up()
