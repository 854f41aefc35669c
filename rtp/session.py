"""One call's media: sockets, RTP in and out, RTCP, jitter buffer, DTMF, inactivity.

Parts with their own state live beside it: the RTCP half (rtcp_peer.py), SRTP (srtp_line.py),
reading the sockets (datagrams.py), the jitter buffer (jitter.py), DTMF out (dtmf.DtmfOutbox).

An `RtpSession` is driven only by the media clock (`tick`), so all its media state is touched by
one thread and needs no locks. Other threads (SIP signalling, agents) talk to it through
`configure()` and `send_dtmf()`, which only publish a value the next tick picks up.

Every tick sends exactly one packet while sending is allowed (audio, silence or a DTMF event):
PBXs hang up on RTP timeouts, and a far-end jitter buffer copes best with a steady stream.

Wideband (G.722): the jitter buffer and loss concealment run on the decoded 16 kHz audio (320
samples a frame; RTP timestamps stay at 8000, RFC 3551), and the listener gets each frame at
8 kHz in ``pcm`` with the 16 kHz original in ``wideband``; what it returns is encoded from its own
16 kHz audio when it has some (``OutboundFrame.wideband``), else raised from 8 kHz (wideband.py).
RTCP, DTMF and the echo canceller (8 kHz, fed the frame's ``pcm``) do not change.

Opus is wideband the same way (decoded straight to 16 kHz), with an RTP clock of 48000 (RFC 7587:
timestamps +960 per 20 ms, RTCP jitter in those units) and dynamic payload types; its packets go
into the jitter buffer encoded and are decoded when played, so that Opus conceals its own losses
(rtp/opuscodec.py). A payload that is no Opus packet is counted and logged as malformed, and its
frame concealed like a lost one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from rtp.codec import AudioCodec, Decoder, Encoder, is_wideband
from rtp.datagrams import read_datagrams, stamp_arrivals
from rtp.dtmf import DtmfOutbox, DtmfReceiver
from rtp.jitter import JitterBuffer, JitterFrame, JitterStats, PlayoutDecoder
from rtp.opuscodec import OpusCodec
from rtp.outbound import OutboundFrame, fit_frame
from rtp.packet import RtpError, RtpPacket, is_rtcp
from rtp.ports import PortPair
from rtp.rtcp_peer import RtcpPeer
from rtp.srtp import SrtpKeys
from rtp.srtp_line import SrtpLine
from rtp.wideband import WidebandLine


class EchoCanceller(Protocol):
    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray: ...


class MediaListener(Protocol):
    """What a session reports to its owner. All methods run on the media clock thread and must not block."""

    def on_frame(self, frame: JitterFrame, echo_cancelled: np.ndarray | None) -> OutboundFrame | None:
        """Take the caller's 20 ms frame (as received, and with our echo removed when an echo
        canceller is configured); return the 20 ms to send (None sends silence)."""

    def on_dtmf(self, digit: str) -> None: ...

    def on_inactive(self, idle_s: float) -> None:
        """No RTP from the far end for longer than the inactivity timeout (reported once)."""


@dataclass(frozen=True)
class RemoteMedia:
    """What signalling negotiated for this session (from the SDP offer/answer)."""

    rtp_address: tuple[str, int]
    rtcp_address: tuple[str, int]
    codec: AudioCodec
    send_event_pt: int | None = 101
    receive_event_pt: int | None = 101
    send: bool = True  # the SDP direction allows us to send
    receive: bool = True  # the SDP direction says the far end sends to us
    srtp: SrtpKeys | None = None  # SDES keys when the call negotiated SRTP; None: plain RTP


@dataclass
class SessionStats:
    packets_sent: int = 0
    octets_sent: int = 0
    packets_received: int = 0
    malformed: int = 0
    foreign_dropped: int = 0
    unknown_payload: int = 0
    empty_payload: int = 0  # audio packets with a header and no samples (ignored)
    ssrc_changes: int = 0
    dtmf_received: int = 0
    dtmf_sent: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    rtcp_malformed: int = 0
    srtp_rejected: int = 0  # SRTP/SRTCP packets that failed authentication or replay checks (dropped)
    wideband_sent: int = 0  # wideband codec: packets encoded from the listener's own 16 kHz audio
    remote_fraction_lost: float = 0.0
    remote_cumulative_lost: int = 0
    remote_jitter_ms: float = 0.0
    reception: dict = field(default_factory=dict)
    jitter: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class RtpSession:
    def __init__(
        self,
        ports: PortPair,
        listener: MediaListener,
        *,
        inactivity_timeout_s: float = 30.0,
        jitter_min_delay_ms: int = 20,
        jitter_max_delay_ms: int = 300,
        echo_canceller: EchoCanceller | None = None,
        cname: str = "voicegate",
        log: structlog.typing.FilteringBoundLogger | None = None,
    ):
        self.ports = ports
        self.listener = listener
        self.inactivity_timeout_s = inactivity_timeout_s
        self.echo_canceller = echo_canceller
        self.cname = cname
        self.log = log or structlog.get_logger("rtp")
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._first_packet = True
        self._pending: RemoteMedia | None = None
        self.remote: RemoteMedia | None = None
        self._jitter_delays = (jitter_min_delay_ms, jitter_max_delay_ms)
        self._jitter = self._new_jitter(8000, 8000)
        self._encoder: Encoder | None = None
        self._decoder: Decoder | None = None  # None when the jitter buffer decodes (Opus)
        self._ts_step = 160  # RTP timestamp units per 20 ms frame (960 for Opus)
        self._wide: WidebandLine | None = None  # a wideband codec's rate bridging (8 kHz listener)
        self._dtmf_rx = DtmfReceiver()
        self._dtmf_out = DtmfOutbox()
        self._remote_ssrc: int | None = None
        self._last_rx: float | None = None
        self._inactive_reported = False
        self._silence: np.ndarray = np.zeros(160, dtype=np.int16)
        self._last_sent: np.ndarray = self._silence
        self._realtime_offset = time.time() - time.monotonic()
        self.stats = SessionStats()
        self._rtcp = RtcpPeer(self.ssrc, cname, self.stats, self._realtime_offset, self.log)
        self._srtp = SrtpLine(self.stats, self.log)
        self.closed = False
        for sock in (ports.rtp_socket, ports.rtcp_socket):
            stamp_arrivals(sock)  # kernel arrival times make jitter estimates exact

    # -- called from other threads -------------------------------------------------------------

    def configure(self, remote: RemoteMedia) -> None:
        """Apply a negotiated (or re-negotiated) remote; the same sockets and SSRC are kept."""
        self._pending = remote

    def send_dtmf(self, digits: str) -> None:
        self._dtmf_out.post(digits)

    @property
    def local_port(self) -> int:
        return self.ports.rtp_port

    # -- media clock thread ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.closed:
            return
        pending, self._pending = self._pending, None
        if pending is not None:
            self._apply(pending, now)
        remote = self.remote
        self._receive_rtp(now, remote)
        self._receive_rtcp(now)
        if remote is None:
            return
        frame = self._jitter.get()
        if self._wide is not None:
            frame = self._wide.received(frame)
        cleaned = None
        if self.echo_canceller is not None:
            cleaned = self.echo_canceller.process(frame.pcm, self._last_sent)
        outbound = self.listener.on_frame(frame, cleaned)
        if remote.send:
            self._send(remote, outbound)
        else:
            self._last_sent = self._silence
        self._timestamp = (self._timestamp + self._ts_step) & 0xFFFFFFFF
        self._check_inactivity(now, remote)
        if self._rtcp.due(now):
            self._send_rtcp(remote)

    def _apply(self, remote: RemoteMedia, now: float) -> None:
        previous = self.remote
        self.remote = remote
        self._srtp.apply(remote.srtp)
        if previous is None or previous.rtp_address != remote.rtp_address or previous.codec != remote.codec:
            self.log.info(
                "rtp_remote",
                remote=f"{remote.rtp_address[0]}:{remote.rtp_address[1]}",
                codec=remote.codec.name,
                send=remote.send,
                receive=remote.receive,
                local_port=self.ports.rtp_port,
            )
        if previous is None or previous.codec != remote.codec:
            self._use_codec(remote.codec, reset=previous is not None)
        self._last_rx = now  # a new negotiation (e.g. unhold) restarts the inactivity window
        self._inactive_reported = False

    def _new_jitter(self, sample_rate: int, timestamp_rate: int,
                    decoder: PlayoutDecoder | None = None) -> JitterBuffer:
        low, high = self._jitter_delays
        return JitterBuffer(clock_rate=sample_rate, frame_ms=20, min_delay_ms=low, max_delay_ms=high,
                            timestamp_rate=timestamp_rate, playout_decoder=decoder)

    def _use_codec(self, codec: AudioCodec, reset: bool) -> None:
        """New encoder/decoder state for `codec`; a changed sample rate or RTP clock, or a codec
        the jitter buffer decodes itself, gets a new jitter buffer (its timeline is in samples),
        a change between codecs of one rate resets it."""
        self._encoder = codec.encoder()
        if isinstance(codec, OpusCodec):
            self._decoder = None
            self._jitter = self._new_jitter(codec.sample_rate, codec.clock_rate,
                                            codec.decoder(on_corrupt=self._corrupt_payload))
        else:
            self._decoder = codec.decoder()
            if (codec.sample_rate != self._jitter.clock_rate or self._jitter.timestamp_rate != codec.clock_rate
                    or self._jitter.playout_decoder is not None):
                self._jitter = self._new_jitter(codec.sample_rate, codec.clock_rate)
            elif reset:
                self._jitter.reset()
        self._ts_step = codec.clock_rate * 20 // 1000
        if self._rtcp.reception.clock_rate != codec.clock_rate:  # RFC 3550 jitter is in RTP clock units
            self._rtcp.restart(codec.clock_rate)
        self._dtmf_out.clock_changed(codec.clock_rate)  # telephone-events are timed in the audio's RTP clock
        self._wide = WidebandLine(codec.sample_rate) if is_wideband(codec) else None

    def _corrupt_payload(self, reason: str) -> None:
        """A payload the play-out decoder could not decode (concealed instead), counted and
        logged like a malformed packet."""
        self._malformed(ValueError(reason), 0)

    def _receive_rtp(self, now: float, remote: RemoteMedia | None) -> None:
        for data, source, arrival in read_datagrams(self.ports.rtp_socket, now, self._realtime_offset, self.log):
            if remote is None:
                continue  # media before the SDP is settled: nothing to play it to
            if (source[0], source[1]) != remote.rtp_address:
                self.stats.foreign_dropped += 1
                if self.stats.foreign_dropped in (1, 100) or self.stats.foreign_dropped % 1000 == 0:
                    self.log.warning("rtp_foreign_source", source=f"{source[0]}:{source[1]}",
                                     dropped=self.stats.foreign_dropped)
                continue
            if is_rtcp(data):
                self._handle_rtcp(data, arrival)  # RFC 5761 rtcp-mux
                continue
            plain = self._srtp.unprotect(data)
            if plain is None:
                continue
            try:
                packet = RtpPacket.parse(plain)
            except RtpError as exc:
                self._malformed(exc, len(data))
                continue
            self._handle_rtp(packet, arrival, remote)

    def _malformed(self, exc: Exception, size: int) -> None:
        self.stats.malformed += 1
        if self.stats.malformed in (1, 10, 100) or self.stats.malformed % 1000 == 0:
            self.log.warning("rtp_malformed", error=str(exc), kind=type(exc).__name__, size=size,
                             total=self.stats.malformed)

    def _handle_rtp(self, packet: RtpPacket, arrival: float, remote: RemoteMedia) -> None:
        if packet.ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None:
                self.stats.ssrc_changes += 1
                self.log.info("rtp_ssrc_change", old=f"{self._remote_ssrc:08x}", new=f"{packet.ssrc:08x}")
                self._jitter.reset()  # a play-out decoder (Opus) starts afresh with it
                if self._decoder is not None:
                    self._decoder = remote.codec.decoder()  # G.722's ADPCM state belongs to the old stream
                self._rtcp.restart(remote.codec.clock_rate)
                self._dtmf_rx = DtmfReceiver()
            self._remote_ssrc = packet.ssrc
        self.stats.packets_received += 1
        self._last_rx = arrival
        self._inactive_reported = False
        self._rtcp.received(packet.sequence, packet.timestamp, arrival)
        if packet.payload_type == remote.codec.receive_payload_type:
            if not packet.payload:  # a valid RTP header with no audio: nothing to play, nothing to break
                self.stats.empty_payload += 1
                return
            if self._decoder is None:  # decoded at play-out (Opus)
                try:
                    self._jitter.put_encoded(packet.sequence, packet.timestamp, packet.payload, arrival,
                                             marker=packet.marker)
                except ValueError as exc:  # no Opus packet: its frame is concealed like a lost one
                    self._malformed(exc, len(packet.payload))
                return
            self._jitter.put(packet.sequence, packet.timestamp, self._decoder.decode(packet.payload), arrival,
                             marker=packet.marker)
        elif remote.receive_event_pt is not None and packet.payload_type == remote.receive_event_pt:
            try:
                digit = self._dtmf_rx.feed(packet)
            except ValueError as exc:  # RtpError and DtmfError alike: count, never raise
                self._malformed(exc, len(packet.payload))
                return
            if digit is not None:
                self.stats.dtmf_received += 1
                self.log.info("dtmf_received", digit=digit)
                self.listener.on_dtmf(digit)
        else:
            self.stats.unknown_payload += 1  # e.g. comfort noise (PT 13): played as silence

    def _send(self, remote: RemoteMedia, outbound: OutboundFrame | None) -> None:
        try:
            event = self._dtmf_out.next_packet(remote.send_event_pt, remote.codec.clock_rate, self._timestamp)
        except ValueError as exc:
            self.log.warning("dtmf_send_rejected", error=str(exc))
            event = None
        self.stats.dtmf_sent = self._dtmf_out.sent
        if event is not None:
            payload, marker, timestamp, payload_type = event.payload, event.marker, event.timestamp, \
                remote.send_event_pt
            self._last_sent = self._silence
        else:
            pcm = self._silence if outbound is None else fit_frame(outbound.pcm, 160)
            if self._wide is not None:
                wire = self._wide.to_send(pcm, None if outbound is None else outbound.wideband)
            else:
                wire = pcm
            assert self._encoder is not None  # set with the remote
            payload = self._encoder.encode(wire)
            marker, timestamp, payload_type = self._first_packet, self._timestamp, remote.codec.payload_type
            self._last_sent = pcm
        packet = RtpPacket(payload_type=payload_type, sequence=self._sequence, timestamp=timestamp,
                           ssrc=self.ssrc, payload=payload, marker=marker)
        wire = self._srtp.protect(packet.serialize())
        try:
            self.ports.rtp_socket.sendto(wire, remote.rtp_address)
        except OSError as exc:
            self.log.debug("rtp_send_error", error=str(exc))
        self._first_packet = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.stats.packets_sent += 1
        self.stats.octets_sent += len(payload)

    def _check_inactivity(self, now: float, remote: RemoteMedia) -> None:
        if not remote.receive or self._inactive_reported:
            return
        idle = now - (self._last_rx if self._last_rx is not None else now)
        if idle > self.inactivity_timeout_s:
            self._inactive_reported = True
            self.log.warning("rtp_inactive", idle_s=round(idle, 2), timeout_s=self.inactivity_timeout_s)
            self.listener.on_inactive(idle)

    # -- RTCP ----------------------------------------------------------------------------------

    def _receive_rtcp(self, now: float) -> None:
        remote = self.remote
        for data, source, arrival in read_datagrams(self.ports.rtcp_socket, now, self._realtime_offset, self.log):
            if remote is None or source[0] != remote.rtcp_address[0]:
                self.stats.foreign_dropped += 1
                continue
            self._handle_rtcp(data, arrival)

    def _handle_rtcp(self, data: bytes, arrival: float) -> None:
        plain = self._srtp.unprotect(data, rtcp=True)
        if plain is not None:
            self._rtcp.read(plain, arrival)

    def _send_rtcp(self, remote: RemoteMedia, bye: bool = False) -> None:
        wire = self._rtcp.compound(time.monotonic(), self._remote_ssrc, self._timestamp, bye)
        wire = self._srtp.protect(wire, rtcp=True)
        try:
            self.ports.rtcp_socket.sendto(wire, remote.rtcp_address)
            self.stats.rtcp_sent += 1
        except OSError as exc:
            self.log.debug("rtcp_send_error", error=str(exc))

    # -- teardown ------------------------------------------------------------------------------

    def snapshot(self) -> SessionStats:
        stats: JitterStats = self._jitter.stats
        self.stats.jitter = stats.as_dict()
        if self._wide is not None:
            self.stats.wideband_sent = self._wide.wideband_frames
        self.stats.reception = self._rtcp.snapshot()
        return self.stats

    def close(self) -> None:
        """Send RTCP BYE and release the ports. Call after removing the session from the clock."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.remote is not None and self.remote.send:
                self._send_rtcp(self.remote, bye=True)
        finally:
            self.ports.close()

