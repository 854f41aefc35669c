"""Parts split out of the jitter buffer and the RTP session, on their own: the delay manager, the
packet timeline, the sequence/timestamp helpers of rtp/packet.py, the DTMF outbox (the buffer's and
the session's own behaviour: tests/unit/test_jitter.py, test_session.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rtp.delay_manager import DelayManager
from rtp.dtmf import DtmfOutbox, TelephoneEvent
from rtp.packet import SequenceSpan, TimestampScale
from rtp.packet_timeline import PacketTimeline, StoredPacket


def test_sequence_span_counts_losses_across_the_wrap() -> None:
    span = SequenceSpan()
    for seq in (65533, 65534, 0, 2):  # 65535 and 1 missing, across the wrap
        span.count(span.unwrap(seq))
    assert span.lost == 2
    assert span.high == 65536 + 2


def test_timestamp_scale_keeps_the_senders_remainder() -> None:
    scale = TimestampScale(16000, 48000)  # Opus decoded at 16 kHz
    first = 4_294_967_000  # near the wrap, not a multiple of 3
    samples = scale.to_samples(first)
    assert scale.to_timestamp(samples) == first
    later = scale.to_samples((first + 960) & 0xFFFFFFFF)  # one 20 ms frame on, wrapped
    assert later - samples == 320
    assert scale.to_timestamp(later) == (first + 960) & 0xFFFFFFFF


def test_delay_manager_rises_at_once_and_falls_slowly() -> None:
    dm = DelayManager(8000, 20, 20, 300, 40)
    t = 0.0
    for i in range(100):  # a calm network: the measured target replaces the initial guess
        dm.observe(i * 160, t + i * 0.02, marker=False)
        dm.update_target()
    calm = dm.target_ms
    assert calm < 40
    dm.observe(100 * 160, 100 * 0.02 + 0.15, marker=False)  # one packet 150 ms late
    dm.observe(101 * 160, 101 * 0.02 + 0.15, marker=False)  # seen twice: a peak that counts
    dm.update_target()
    assert dm.target_ms >= 150
    risen = dm.target_ms
    for i in range(102, 152):  # calm again for 1 s: the target falls, but slowly
        dm.observe(i * 160, i * 0.02, marker=False)
        dm.update_target()
    assert calm < dm.target_ms < risen


def test_delay_manager_current_delay_follows_the_play_position() -> None:
    dm = DelayManager(8000, 20, 20, 300, 40)
    dm.observe(1600, 1.0, marker=False)
    dm.measure(1.0, play_ts=1600 - 320)  # playing 40 ms behind the packet just in
    assert abs(dm.current_delay_ms() - 40.0) < 1e-6
    dm.played(0)  # a stall: the position did not move, so 20 ms more delay
    assert abs(dm.current_delay_ms() - 60.0) < 1e-6
    dm.new_play_position()
    assert dm.current_delay_ms() is None


def test_packet_timeline_assembles_frames_and_remembers_played_keys() -> None:
    timeline = PacketTimeline(160)
    timeline.add(160, StoredPacket(np.full(160, 7, dtype=np.int16), False, 160))
    timeline.add(0, StoredPacket(np.full(80, 5, dtype=np.int16), True, 80))  # half a frame
    pcm, have = timeline.assemble(0)
    assert have[:80].all() and not have[80:].any() and (pcm[:80] == 5).all()
    assert timeline.first() == 0 and timeline.marker_at(0) and timeline.end() == 320
    assert timeline.covered(160) and not timeline.covered(0)
    timeline.forget_behind(160)
    assert timeline.first() == 160 and timeline.known(0) and not timeline.has(0)


def test_packet_timeline_decodes_an_encoded_packet_once_at_its_length() -> None:
    calls = []

    def decode(payload: bytes) -> np.ndarray:
        calls.append(payload)
        return np.ones(100, dtype=np.int16)  # a decoder that concealed at another length

    timeline = PacketTimeline(160, decode)
    timeline.add(0, StoredPacket(None, False, 160, b"x"))
    assert timeline.payload_at(0) == b"x"
    pcm, have = timeline.assemble(0)
    timeline.assemble(0)
    assert calls == [b"x"] and have.all() and (pcm[:100] == 1).all() and (pcm[100:] == 0).all()
    assert timeline.payload_at(0) is None


def test_dtmf_outbox_plays_posted_digits_in_order_and_refuses_bad_ones() -> None:
    out = DtmfOutbox()
    out.post("1")
    out.post("x")
    out.post("2")
    digits, ts = [], 0
    for _ in range(60):
        try:
            packet = out.next_packet(101, 8000, ts)
        except ValueError as exc:
            assert "'x'" in str(exc)
            continue
        if packet is not None and packet.marker:
            digits.append(TelephoneEvent.parse(packet.payload).digit)
        ts += 160
    assert digits == ["1", "2"] and out.sent == 2
    out.post("3")
    assert out.next_packet(None, 8000, ts) is None  # no telephone-event negotiated: discarded
    assert out.next_packet(101, 8000, ts) is None
    out.post("y")
    with pytest.raises(ValueError):
        out.next_packet(101, 8000, ts)
