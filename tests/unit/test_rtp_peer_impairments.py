"""The scripted caller's network impairments (listening benchmark): seeded loss, per-packet delay, A-law."""

from __future__ import annotations

import socket
import struct
import time

import numpy as np

from rtp.g711 import PCMA
from tests.rig.ports import free_port_pair
from tests.rig.rtp_peer import RtpPeer

TICKS = 25


def _capture(peer: RtpPeer) -> list[tuple[int, int]]:
    """Run `peer` for TICKS ticks against a local socket; (payload type, sequence number) in arrival order."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    peer.start(sink.getsockname()[1])
    while peer.tick < TICKS:
        time.sleep(0.02)
    peer.stop()
    out = []
    try:
        while True:
            data = sink.recv(2048)
            out.append((data[1] & 0x7F, struct.unpack("!H", data[2:4])[0]))
    except TimeoutError:
        pass
    sink.close()
    return out


def test_loss_is_seeded() -> None:
    first = RtpPeer(free_port_pair(), loss=0.3, seed=7)
    got = _capture(first)
    again = RtpPeer(free_port_pair(), loss=0.3, seed=7)
    assert first.dropped > 0
    assert {s for _, s in got if s <= TICKS} == {s for _, s in _capture(again) if s <= TICKS}  # same drops
    assert len(got) + first.dropped >= TICKS


def test_jitter_reorders_and_alaw_is_labelled() -> None:
    peer = RtpPeer(free_port_pair(), codec=PCMA, jitter_s=0.06, seed=1)
    peer.play_at(0, np.full(160 * TICKS, 1000, dtype=np.int16))
    got = _capture(peer)
    seqs = [seq for _, seq in got]
    assert {pt for pt, _ in got} == {PCMA.payload_type}
    assert seqs != sorted(seqs)  # held back by up to three frames: some overtake others


def test_g722_peer_sends_wideband_and_records_the_bot_at_8k() -> None:
    """The scripted caller on G.722: PT 9, 160-byte payloads, timestamps +160 (RFC 3551), and the
    16 kHz version of its speech on the wire; what it receives is kept at 8 kHz for the scoring."""
    from rtp.g722codec import G722

    t = np.arange(16000) / 16000
    wide = (8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)  # only wideband carries 6 kHz
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    peer = RtpPeer(free_port_pair(), codec=G722)
    peer.play_at(0, np.zeros(8000, dtype=np.int16), wide=wide)
    peer.start(sink.getsockname()[1])
    packets = []
    while peer.tick < TICKS:
        time.sleep(0.02)
    decoder, bot = G722.decoder(), G722.encoder()
    for _ in range(10):  # the bot answers: the peer must decode it
        sink.sendto(struct.pack("!BBHII", 0x80, 9, 1, 0, 7) + bot.encode(np.full(320, 3000, np.int16)),
                    ("127.0.0.1", peer.port))
    time.sleep(0.1)
    peer.stop()
    try:
        while True:
            packets.append(sink.recv(2048))
    except TimeoutError:
        pass
    sink.close()
    assert packets and {p[1] & 0x7F for p in packets} == {9} and {len(p) - 12 for p in packets} == {160}
    stamps = [struct.unpack("!I", p[4:8])[0] for p in packets]
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {160}
    heard = np.concatenate([decoder.decode(p[12:]) for p in packets[2:12]])
    spectrum = np.abs(np.fft.rfft(heard.astype(float)))
    assert np.argmax(spectrum) * 16000 / len(heard) > 5000  # the 6 kHz tone made it
    assert peer.received and all(len(f) == 160 for f in peer.received.values())
