"""RtpSession over real UDP sockets on 127.0.0.1, driven tick by tick with a scripted clock."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from rtp.dtmf import TelephoneEvent
from rtp.g711 import PCMA, PCMU
from rtp.jitter import FrameType
from rtp.outbound import OutboundFrame
from rtp.packet import RtpPacket
from rtp.ports import PortAllocator
from rtp.rtcp import Bye, SenderReport, parse_compound
from rtp.session import RemoteMedia, RtpSession


class Listener:
    def __init__(self, reply: np.ndarray | None = None):
        self.frames = []
        self.digits: list[str] = []
        self.inactive: list[float] = []
        self.reply = reply

    def on_frame(self, frame, echo_cancelled=None):
        self.frames.append(frame)
        return None if self.reply is None else OutboundFrame(self.reply)

    def on_dtmf(self, digit):
        self.digits.append(digit)

    def on_inactive(self, idle_s):
        self.inactive.append(idle_s)


class FarEnd:
    """The peer: a bound RTP/RTCP socket pair that sends and collects packets."""

    def __init__(self):
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", 0))
        for s in (self.rtp, self.rtcp):
            s.settimeout(0.2)
        self.seq = 1000
        self.ts = 5000

    @property
    def address(self):
        return self.rtp.getsockname()

    def send_audio(self, session, pcm, pt=0, ssrc=0xABCDEF, codec=PCMU):
        packet = RtpPacket(payload_type=pt, sequence=self.seq & 0xFFFF, timestamp=self.ts & 0xFFFFFFFF, ssrc=ssrc,
                           payload=codec.encode(pcm))
        self.seq += 1
        self.ts += 160
        self.rtp.sendto(packet.serialize(), ("127.0.0.1", session.local_port))

    def receive(self, sock=None, count=1):
        sock = sock or self.rtp
        return [sock.recv(2048) for _ in range(count)]

    def drain(self, sock=None):
        sock = sock or self.rtp
        out = []
        sock.settimeout(0.05)
        try:
            while True:
                out.append(sock.recv(2048))
        except TimeoutError:
            pass
        sock.settimeout(0.2)
        return out

    def close(self):
        self.rtp.close()
        self.rtcp.close()


@pytest.fixture
def far():
    f = FarEnd()
    yield f
    f.close()


@pytest.fixture
def allocator():
    return PortAllocator("127.0.0.1", 47000, 47099)


def remote_for(far, codec=PCMU, **kw):
    return RemoteMedia(rtp_address=far.address, rtcp_address=far.rtcp.getsockname(), codec=codec, **kw)


def make_session(allocator, listener, **kw):
    return RtpSession(allocator.allocate(), listener, **kw)


def test_one_packet_per_tick_with_silence_and_continuous_numbering(far, allocator):
    session = make_session(allocator, Listener())
    session.configure(remote_for(far))
    t = 100.0
    for i in range(5):
        session.tick(t + i * 0.02)
    packets = [RtpPacket.parse(d) for d in far.receive(count=5)]
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert all(p.payload_type == 0 and len(p.payload) == 160 for p in packets)
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in zip(packets, packets[1:], strict=False))
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in zip(packets, packets[1:], strict=False))
    assert len({p.ssrc for p in packets}) == 1
    assert PCMU.decode(packets[0].payload).max() == 0
    session.close()


def test_audio_in_is_played_out_and_listener_audio_is_sent(far, allocator):
    tone = (8000 * np.sin(np.arange(160) * 2 * np.pi / 20)).astype(np.int16)
    listener = Listener(reply=tone)
    session = make_session(allocator, listener)
    session.configure(remote_for(far, codec=PCMA))
    t = 0.0
    for i in range(20):
        far.send_audio(session, tone, pt=8, codec=PCMA)
        time.sleep(0.002)
        session.tick(t + i * 0.02)
    normal = [f for f in listener.frames if f.type is FrameType.NORMAL]
    assert len(normal) >= 15
    assert np.max(np.abs(normal[-1].pcm.astype(int) - PCMA.decode(PCMA.encode(tone)).astype(int))) < 300
    sent = [RtpPacket.parse(d) for d in far.drain()]
    assert len(sent) == 20 and sent[-1].payload_type == 8
    assert sent[-1].payload == PCMA.encode(tone)
    session.close()


def test_packets_from_other_sources_and_garbage_are_dropped(far, allocator):
    listener = Listener()
    session = make_session(allocator, listener)
    session.configure(remote_for(far))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    pcm = np.full(160, 1000, dtype=np.int16)
    packet = RtpPacket(payload_type=0, sequence=1, timestamp=1, ssrc=1, payload=PCMU.encode(pcm))
    stranger.sendto(packet.serialize(), ("127.0.0.1", session.local_port))
    for garbage in (b"", b"\x00", b"\x80\x00", b"\xff" * 11, b"\x90" + b"\x00" * 11, b"\xa0\x00" + b"\x00" * 10):
        far.rtp.sendto(garbage, ("127.0.0.1", session.local_port))
    time.sleep(0.01)
    for i in range(10):
        session.tick(i * 0.02)
    stats = session.snapshot()
    assert stats.foreign_dropped == 1
    assert stats.malformed >= 5
    assert stats.packets_received == 0
    assert all(f.type is FrameType.EMPTY for f in listener.frames)
    stranger.close()
    session.close()


def test_ssrc_change_is_followed(far, allocator):
    listener = Listener()
    session = make_session(allocator, listener)
    session.configure(remote_for(far))
    pcm = np.full(160, 2000, dtype=np.int16)
    for i in range(10):
        far.send_audio(session, pcm, ssrc=1)
        time.sleep(0.001)
        session.tick(i * 0.02)
    far.seq, far.ts = 40000, 900000  # a new source restarts its numbering
    for i in range(10, 30):
        far.send_audio(session, pcm, ssrc=2)
        time.sleep(0.001)
        session.tick(i * 0.02)
    assert session.snapshot().ssrc_changes == 1
    assert listener.frames[-1].type is FrameType.NORMAL
    session.close()


def test_dtmf_digit_reported_once_despite_redundant_end_packets(far, allocator):
    listener = Listener()
    session = make_session(allocator, listener)
    session.configure(remote_for(far))
    ts = 7777
    for i, (end, duration) in enumerate([(False, 160), (False, 320), (False, 480), (True, 640), (True, 640),
                                         (True, 640)]):
        payload = TelephoneEvent(event=5, end=end, volume=10, duration=duration).serialize()
        packet = RtpPacket(payload_type=101, sequence=100 + i, timestamp=ts, ssrc=9, payload=payload,
                           marker=i == 0)
        far.rtp.sendto(packet.serialize(), ("127.0.0.1", session.local_port))
    time.sleep(0.01)
    for i in range(3):
        session.tick(i * 0.02)
    assert listener.digits == ["5"]
    session.close()


def test_dtmf_send_uses_negotiated_event_payload_type(far, allocator):
    session = make_session(allocator, Listener())
    session.configure(remote_for(far, send_event_pt=96))
    session.send_dtmf("7")
    for i in range(15):
        session.tick(i * 0.02)
    packets = [RtpPacket.parse(d) for d in far.drain()]
    events = [p for p in packets if p.payload_type == 96]
    assert events, [p.payload_type for p in packets]
    decoded = [TelephoneEvent.parse(p.payload) for p in events]
    assert {e.event for e in decoded} == {7}
    assert events[0].marker and decoded[-1].end
    assert len({p.timestamp for p in events}) == 1
    assert session.snapshot().dtmf_sent == 1
    session.close()


def test_inactivity_reported_once_and_not_while_on_hold(far, allocator):
    listener = Listener()
    session = make_session(allocator, listener, inactivity_timeout_s=1.0)
    session.configure(remote_for(far))
    for i in range(100):
        session.tick(10.0 + i * 0.02)
    assert len(listener.inactive) == 1 and listener.inactive[0] > 1.0
    held = make_session(allocator, Listener(), inactivity_timeout_s=1.0)
    held.configure(remote_for(far, receive=False))
    for i in range(100):
        held.tick(10.0 + i * 0.02)
    assert held.listener.inactive == []
    session.close()
    held.close()


def test_no_rtp_sent_when_direction_forbids_it(far, allocator):
    session = make_session(allocator, Listener())
    session.configure(remote_for(far, send=False))
    for i in range(5):
        session.tick(i * 0.02)
    assert far.drain() == []
    session.close()


def test_rtcp_report_from_rtp_port_plus_one_and_bye_on_close(far, allocator):
    session = make_session(allocator, Listener())
    session.configure(remote_for(far))
    pcm = np.zeros(160, dtype=np.int16)
    for i in range(600):  # 12 s of ticks: at least one report interval
        if i % 10 == 0:
            far.send_audio(session, pcm)
        session.tick(i * 0.02)
    data, source = far.rtcp.recvfrom(2048)
    assert source[1] == session.local_port + 1
    packets = parse_compound(data)
    assert isinstance(packets[0], SenderReport) and packets[0].ssrc == session.ssrc
    port = session.local_port
    far.drain(far.rtcp)
    session.close()
    packets = parse_compound(far.rtcp.recv(2048))
    assert any(isinstance(p, Bye) for p in packets)
    assert session.ports.closed and allocator.in_use == 0
    # the port pair can be bound again: it was released
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.close()


def test_port_allocator_skips_busy_ports_and_reports_exhaustion():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 47200))
    alloc = PortAllocator("127.0.0.1", 47200, 47205)
    a = alloc.allocate()
    b = alloc.allocate()
    assert {a.rtp_port, b.rtp_port} == {47202, 47204}
    from rtp.ports import PortsExhausted

    with pytest.raises(PortsExhausted):
        alloc.allocate()
    a.close()
    assert alloc.allocate().rtp_port == 47202
    blocker.close()


def test_g722_call_decodes_16k_hands_both_rates_and_sends_g722(far, allocator):
    """Wideband: the listener gets 8 kHz frames with the 16 kHz originals beside them; its 8 kHz
    reply goes out as G.722 (PT 9, 160 bytes, timestamps +160 per 20 ms: RFC 3551)."""
    from rtp.g722codec import G722

    t16 = np.arange(320 * 30) / 16000
    speech = (6000 * np.sin(2 * np.pi * 5000 * t16) + 6000 * np.sin(2 * np.pi * 500 * t16)).astype(np.int16)
    reply = (8000 * np.sin(np.arange(160) * 2 * np.pi / 16)).astype(np.int16)  # 500 Hz at 8 kHz
    listener = Listener(reply=reply)
    session = make_session(allocator, listener)
    session.configure(remote_for(far, codec=G722))
    encoder = G722.encoder()
    for i in range(30):
        packet = RtpPacket(payload_type=9, sequence=far.seq & 0xFFFF, timestamp=far.ts & 0xFFFFFFFF, ssrc=0xABC,
                           payload=encoder.encode(speech[320 * i:320 * (i + 1)]))
        far.seq += 1
        far.ts += 160
        far.rtp.sendto(packet.serialize(), ("127.0.0.1", session.local_port))
        time.sleep(0.002)
        session.tick(i * 0.02)
    normal = [f for f in listener.frames if f.type is FrameType.NORMAL]
    assert len(normal) >= 20
    last = normal[-1]
    assert last.pcm.shape == (160,) and last.wideband is not None and last.wideband.shape == (320,)
    spectrum = np.abs(np.fft.rfft(last.wideband.astype(float)))
    assert spectrum[100] > 0.2 * spectrum.max()  # 5 kHz (bin 100 of 320 at 16 kHz) survives in the wideband copy
    assert np.abs(last.pcm).max() > 2000  # the 500 Hz part in the 8 kHz copy
    sent = [RtpPacket.parse(d) for d in far.drain()]
    assert len(sent) == 30 and {p.payload_type for p in sent} == {9} and {len(p.payload) for p in sent} == {160}
    assert {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(sent, sent[1:], strict=False)} == {160}
    decoder = G722.decoder()
    heard = np.concatenate([decoder.decode(p.payload) for p in sent])
    assert np.abs(heard[-3200:]).max() > 4000  # the bot's reply, raised to 16 kHz and encoded
    session.close()


def test_codec_change_from_g722_to_pcmu_mid_call(far, allocator):
    listener = Listener()
    session = make_session(allocator, listener)
    from rtp.g722codec import G722

    session.configure(remote_for(far, codec=G722))
    session.tick(0.0)
    session.configure(remote_for(far, codec=PCMU))
    for i in range(1, 4):
        session.tick(i * 0.02)
    sent = [RtpPacket.parse(d) for d in far.drain()]
    assert [p.payload_type for p in sent] == [9, 0, 0, 0]
    assert listener.frames[-1].wideband is None and listener.frames[-1].pcm.shape == (160,)
    session.close()


class Sender(Listener):
    """Hands the session the given outbound frames, one per tick, then silence."""

    def __init__(self, frames):
        super().__init__()
        self.outbound = list(frames)

    def on_frame(self, frame, echo_cancelled=None):
        self.frames.append(frame)
        return self.outbound.pop(0) if self.outbound else None


def bot_voice(seconds=0.4):
    """A 'TTS clause' at 22.05 kHz with energy at 1 kHz and 5 kHz, brought to both line rates once."""
    from gateway.conversation.bot_audio import BotAudio
    from rtp.resample import resample

    t = np.arange(int(22050 * seconds)) / 22050
    voice = (5000 * np.sin(2 * np.pi * 1000 * t) + 5000 * np.sin(2 * np.pi * 5000 * t)).astype(np.int16)
    return BotAudio(resample(voice, 22050, 8000), resample(voice, 22050, 16000))


def send_all(far, allocator, codec, frames, ticks):
    session = make_session(allocator, Sender(frames))
    session.configure(remote_for(far, codec=codec))
    for i in range(ticks):
        session.tick(i * 0.02)
    sent = [RtpPacket.parse(d) for d in far.drain()]
    session.close()
    assert len(sent) == ticks
    return sent


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_a_g711_call_sends_the_same_bytes_whether_or_not_the_frames_carry_wideband(far, allocator, codec):
    """The wideband copy is for G.722 only: µ-law and A-law encode the 8 kHz frames exactly as before."""
    from rtp.outbound import OutboundFrame

    audio = bot_voice()
    frames = audio.frames()
    sent = send_all(far, allocator, codec, frames, len(frames) + 2)
    narrow = [OutboundFrame(f.pcm) for f in frames]
    again = send_all(far, allocator, codec, narrow, len(frames) + 2)
    assert [p.payload for p in sent] == [p.payload for p in again]
    assert [p.payload for p in sent[: len(frames)]] == [codec.encode(f.pcm) for f in frames]


def test_a_g722_call_encodes_the_senders_own_16k_audio_in_the_same_tick(far, allocator):
    """What the listener has at 16 kHz goes to the encoder as it is: the wire carries its 4-7 kHz
    content, and frame i of the bot's audio is packet i (no resampler look-ahead in between); the
    8 kHz copy alone, raised by the bridge, has none of it and lags ~11 ms."""
    from rtp.g722codec import G722
    from rtp.outbound import OutboundFrame

    audio = bot_voice()
    frames = audio.frames()
    sent = send_all(far, allocator, G722, frames, len(frames) + 3)
    encoder = G722.encoder()
    assert [p.payload for p in sent[: len(frames)]] == [encoder.encode(f.wideband) for f in frames]

    def high_share(packets):
        decoder = G722.decoder()
        heard = np.concatenate([decoder.decode(p.payload) for p in packets]).astype(float)
        power = np.abs(np.fft.rfft(heard)) ** 2
        freqs = np.fft.rfftfreq(len(heard), 1 / 16000)
        return power[(freqs >= 4000) & (freqs < 7000)].sum() / power.sum()

    assert high_share(sent) > 0.3  # the 5 kHz half of the voice
    widened = send_all(far, allocator, G722, [OutboundFrame(f.pcm) for f in frames], len(frames) + 3)
    assert high_share(widened) < 0.01  # 8 kHz raised to 16 kHz: nothing above 4 kHz


def test_after_wideband_frames_the_bridge_starts_afresh(far, allocator):
    """Wideband frames reset the 8 -> 16 kHz bridge: the silence after the bot's audio is silence, not
    the bridge's delayed 8 kHz copy of the narrowband audio before it."""
    from rtp.g722codec import G722
    from rtp.outbound import OutboundFrame

    wide = bot_voice(0.1).frames()
    tone = OutboundFrame(np.full(160, 6000, dtype=np.int16))
    frames = [tone] * 3 + wide + [None] * 3
    session = make_session(allocator, Sender(frames))
    session.configure(remote_for(far, codec=G722))
    for i in range(len(frames)):
        session.tick(i * 0.02)
    assert session._wide is not None
    assert (session._wide.wideband_frames, session._wide.widened_frames) == (len(wide), 6)
    decoder = G722.decoder()
    heard = [decoder.decode(RtpPacket.parse(d).payload) for d in far.drain()]
    assert len(heard) == len(frames)
    # the codec's own tail (~3 ms) aside, silence; without the reset, 11 ms of the tone would come here
    assert np.abs(heard[-3][100:]).max() < 1000
    assert np.abs(np.concatenate(heard[-2:])).max() < 300
    session.close()
