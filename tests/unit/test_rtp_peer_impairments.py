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
