"""A pjsua2 call whose media is carried by our RTP engine.

The only media work done here is telling pjsua where our media lives (SDP rewrite, on every
SDP it creates) and reading back what it negotiated (`getStreamInfo`) after every offer/answer,
re-INVITEs included; everything else is forwarded to the call manager.

SRTP (SDES): each call has its own random master key, written into every SDP we send; the peer's
SDP is kept from whichever callback carried it (the offer we answer, the answer to our offer,
a re-INVITE), and once pjsua reports the media, both are read for the agreed suite and keys.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, replace
from typing import Protocol

import pjsua2 as pj
import structlog

from gateway.sip.info_dtmf import InfoDtmf, InfoDtmfRejected, read_info_dtmf
from gateway.sip.sdp import (
    MediaAddress,
    SdpError,
    audio_crypto_lines,
    parse_address,
    rewrite_local_sdp,
    sdes_keys,
)
from rtp.srtp import SrtpKeys

log = structlog.get_logger("sip")


@dataclass(frozen=True)
class NegotiatedMedia:
    """The audio stream pjsua negotiated, as our RTP engine needs it."""

    codec: str
    tx_pt: int
    rx_pt: int
    tx_event_pt: int | None
    rx_event_pt: int | None
    remote_rtp: tuple[str, int]
    remote_rtcp: tuple[str, int]
    send: bool
    receive: bool
    status: str  # active, local_hold, remote_hold
    srtp: SrtpKeys | None = None  # SDES keys when SRTP was agreed; None: plain RTP


class CallEvents(Protocol):
    def media_address(self, call: SipCall) -> MediaAddress | None: ...

    def on_call_state(self, call: SipCall, info: pj.CallInfo) -> None: ...

    def on_media(self, call: SipCall, media: NegotiatedMedia | None) -> None: ...

    def on_transfer_status(self, call: SipCall, code: int, reason: str, final: bool) -> None: ...

    def on_media_failed(self, call: SipCall, reason: str) -> None: ...

    def on_info_dtmf(self, call: SipCall, dtmf: InfoDtmf) -> None: ...


_MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
}


class SipCall(pj.Call):
    def __init__(self, account: pj.Account, events: CallEvents, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.events = events
        self.account = account
        self.call_id: str = ""  # the SIP Call-ID, filled on the first state callback
        self.log = log
        self.srtp_key = secrets.token_bytes(30)  # SDES master key||salt of what we send (if SRTP)
        self.local_sdp = ""  # the last SDP we sent
        self.remote_sdp = ""  # the last SDP the peer sent
        self._offer_pending = False  # our last SDP was an offer not yet answered

    def __del__(self) -> None:
        account = getattr(self, "account", None)  # absent if the constructor itself failed
        if account is not None:
            account.stack.released(f"call {self.call_id or '(no Call-ID yet)'}")

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        address = self.events.media_address(self)
        if address is None:
            return  # a call we are refusing (486/403/503): no media, and the answer carries no SDP
        remote = prm.remSdp.wholeSdp
        if remote:  # we are answering this offer
            self._rotate_key_if_peer_rekeyed(remote)
            self.remote_sdp = remote
        self._offer_pending = not remote
        try:
            self.local_sdp = rewrite_local_sdp(prm.sdp.wholeSdp, address, self.srtp_key)
            prm.sdp.wholeSdp = self.local_sdp
        except SdpError as exc:
            # Leaving pjsua's SDP would point the peer at pjmedia (which sends nothing): log it.
            self.log.error("sdp_rewrite_failed", error=str(exc))

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if not self.call_id:
            self.call_id = info.callIdString
            self.log = log.bind(call_id=self.call_id)
        self._remote_sdp_from(prm.e)  # the ACK of a late-offer INVITE carries the answer
        self.events.on_call_state(self, info)

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        """Keep the SDP of any message the peer sends us (the answer to our offer arrives here), and
        hand on a keypress sent as SIP INFO (see gateway.sip.info_dtmf)."""
        self._remote_sdp_from(prm.e)
        message = _received_message(prm.e)
        if not message.startswith("INFO "):
            return
        dtmf = read_info_dtmf(message)
        if isinstance(dtmf, InfoDtmfRejected):
            self.log.warning("dtmf_info_rejected", reason=dtmf.reason, cseq=dtmf.cseq,
                             content_type=dtmf.content_type, body=dtmf.body, response=200)
        elif dtmf is not None:
            self.events.on_info_dtmf(self, dtmf)

    def _remote_sdp_from(self, event: pj.SipEvent) -> None:
        body = _received_sdp(event)
        if body:
            self.remote_sdp = body
            self._offer_pending = False

    def _rotate_key_if_peer_rekeyed(self, offer: str) -> None:
        """A re-offer with new peer keys (often a new device behind the PBX) gets a new key from us too.

        The party that now receives our SRTP starts a fresh context at rollover counter 0: our
        old outbound session, past a sequence-number wrap, would be rejected by it. A new key
        makes both ends start afresh, and never reuses a keystream under another suite.
        """
        try:
            new = {(c.suite, c.key_params) for c in audio_crypto_lines(offer)}
            old = {(c.suite, c.key_params) for c in audio_crypto_lines(self.remote_sdp)} if self.remote_sdp else set()
        except SdpError:
            return  # judged (and refused) when the keys are read
        if old and new and new != old:
            self.srtp_key = secrets.token_bytes(30)
            self.log.info("srtp_local_rekey", reason="the peer offered new keys")

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        """Progress of a REFER we sent: its own response, then the transferee's NOTIFYs (sipfrag)."""
        final = bool(prm.finalNotify) or prm.statusCode >= 300
        self.events.on_transfer_status(self, int(prm.statusCode), str(prm.reason), final)
        prm.cont = not final

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()  # keep alive while reading info.media
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = _MEDIA_STATUS.get(media.status)
            if status is None:
                self.events.on_media(self, None)
                return
            try:
                stream = self.getStreamInfo(media.index)
            except pj.Error as exc:
                self.log.warning("sip_stream_info_failed", error=exc.info())
                self.events.on_media(self, None)
                return
            try:
                negotiated = NegotiatedMedia(
                    codec=stream.codecName.upper(),
                    tx_pt=stream.txPt,
                    rx_pt=stream.rxPt,
                    tx_event_pt=stream.audTxEventPt if stream.audTxEventPt > 0 else None,
                    rx_event_pt=stream.audRxEventPt if stream.audRxEventPt > 0 else None,
                    remote_rtp=parse_address(stream.remoteRtpAddress),
                    remote_rtcp=parse_address(stream.remoteRtcpAddress),
                    send=bool(stream.dir & pj.PJMEDIA_DIR_ENCODING),
                    receive=bool(stream.dir & pj.PJMEDIA_DIR_DECODING),
                    status=status,
                )
            except (SdpError, ValueError) as exc:
                self.log.error("sip_stream_info_unusable", error=str(exc))
                self.events.on_media(self, None)
                return
            if audio_crypto_lines(self.local_sdp):
                # pjsua reports the media of an answer before the callback that carries the
                # answer's SDP (onCallTsxState for a 200, onCallState for an ACK; a session
                # refresh re-uses our SDP without onCallSdpCreated): read the keys once it has run.
                self.account.stack.call_later(0.0, functools.partial(self._media_with_keys, negotiated))
            else:
                self._media_with_keys(negotiated)
            return

    def _media_with_keys(self, negotiated: NegotiatedMedia) -> None:
        if self._offer_pending and audio_crypto_lines(self.local_sdp):
            # we offered SRTP and never saw the answer's SDP: guessing keys, or plain RTP, would
            # be noise to the peer
            self.log.error("sip_srtp_answer_missing")
            self.events.on_media_failed(self, "srtp_unusable")
            return
        try:
            keys = sdes_keys(self.local_sdp, self.remote_sdp)
        except SdpError as exc:
            self.log.error("sip_srtp_unusable", error=str(exc))
            self.events.on_media_failed(self, "srtp_unusable")
            return
        self.events.on_media(self, replace(negotiated, srtp=keys))


def _received_message(event: pj.SipEvent) -> str:
    """The whole message an event received, or "" (the event received none)."""
    if event.type == pj.PJSIP_EVENT_RX_MSG:
        return event.body.rxMsg.rdata.wholeMsg
    if event.type == pj.PJSIP_EVENT_TSX_STATE and event.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
        return event.body.tsxState.src.rdata.wholeMsg
    return ""


def _received_sdp(event: pj.SipEvent) -> str:
    """The SDP body of the message an event received, or "" (no message, or no SDP)."""
    message = _received_message(event)
    head, sep, body = message.partition("\r\n\r\n")
    if not sep or not body.startswith("v="):
        return ""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-type", "c"):
            return body if value.strip().lower().startswith("application/sdp") else ""
    return ""
