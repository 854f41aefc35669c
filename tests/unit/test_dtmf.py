"""Tests for rtp.dtmf: RFC 4733 payloads, exactly-once digit reception, tick-driven sending."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.dtmf import (
    DIGIT_TO_EVENT,
    EVENT_TO_DIGIT,
    DtmfError,
    DtmfReceiver,
    DtmfSender,
    OutgoingEvent,
    TelephoneEvent,
)
from rtp.packet import RtpPacket


def test_event_digit_map() -> None:
    assert [EVENT_TO_DIGIT[i] for i in range(16)] == list("0123456789*#ABCD")
    assert DIGIT_TO_EVENT["#"] == 11 and DIGIT_TO_EVENT["D"] == 15


def test_telephone_event_wire_format() -> None:
    ev = TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert ev.serialize() == bytes([5, 0x80 | 10, 0x03, 0x20])
    assert TelephoneEvent.parse(ev.serialize()) == ev
    assert ev.digit == "5"
    assert TelephoneEvent(16, False, 0, 0).digit is None  # flash


def test_reserved_bit_is_ignored() -> None:
    assert TelephoneEvent.parse(bytes([1, 0x40 | 7, 0, 160])) == TelephoneEvent(1, False, 7, 160)


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05", bytes(8)])
def test_parse_requires_exactly_four_bytes(data: bytes) -> None:
    with pytest.raises(DtmfError):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    "ev",
    [
        TelephoneEvent(256, False, 0, 0),
        TelephoneEvent(-1, False, 0, 0),
        TelephoneEvent(1, False, 64, 0),
        TelephoneEvent(1, False, 0, 65536),
        TelephoneEvent(1, False, -1, 0),
    ],
)
def test_serialize_validates(ev: TelephoneEvent) -> None:
    with pytest.raises(DtmfError):
        ev.serialize()


@given(st.binary(max_size=8))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    try:
        ev = TelephoneEvent.parse(data)
    except DtmfError:
        assert len(data) != 4
        return
    assert ev.serialize() == bytes([data[0], data[1] & 0xBF]) + data[2:]
    assert TelephoneEvent.parse(ev.serialize()) == ev


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 65535))
def test_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(ev.serialize()) == ev


# --------------------------------------------------------------------------- receiver


def pkt(
    event: int,
    ts: int,
    duration: int,
    end: bool = False,
    marker: bool = False,
    ssrc: int = 1,
    pt: int = 101,
    seq: int = 0,
) -> RtpPacket:
    payload = TelephoneEvent(event, end, 10, duration).serialize()
    return RtpPacket(payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker)


def event_packets(event: int, ts: int, ticks: int = 5) -> list[RtpPacket]:
    out = [pkt(event, ts, 160 * (i + 1), marker=i == 0) for i in range(ticks - 1)]
    out += [pkt(event, ts, 160 * ticks, end=True)] * 3
    return out


def feed_all(rx: DtmfReceiver, packets: list[RtpPacket]) -> list[str]:
    return [d for d in (rx.feed(p) for p in packets) if d is not None]


def test_one_digit_reported_once() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, event_packets(1, 1000)) == ["1"]


def test_report_on_first_packet() -> None:
    rx = DtmfReceiver()
    assert rx.feed(pkt(11, 5000, 160, marker=True)) == "#"


def test_retransmitted_start_and_redundant_ends() -> None:
    rx = DtmfReceiver()
    packets = [pkt(3, 10, 160, marker=True)] * 3 + event_packets(3, 10) + [pkt(3, 10, 800, end=True)] * 5
    assert feed_all(rx, packets) == ["3"]


def test_end_without_start() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, [pkt(9, 777, 800, end=True)] * 3) == ["9"]


def test_same_digit_twice_has_new_timestamp() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, event_packets(7, 1000) + event_packets(7, 2600)) == ["7", "7"]


def test_sequence_of_digits() -> None:
    rx = DtmfReceiver()
    packets: list[RtpPacket] = []
    for i, digit in enumerate("0123456789*#ABCD"):
        packets += event_packets(DIGIT_TO_EVENT[digit], 1000 + i * 1600)
    assert "".join(feed_all(rx, packets)) == "0123456789*#ABCD"


def test_long_press_without_end_reported_once() -> None:
    rx = DtmfReceiver()
    packets = [pkt(5, 100, 160 * (i + 1), marker=i == 0) for i in range(300)]  # 6 s, never ends
    assert feed_all(rx, packets) == ["5"]


def test_long_event_segments_not_reported_twice() -> None:
    rx = DtmfReceiver()
    first = [pkt(2, 0, min(0xFFFF, 160 * (i + 1))) for i in range(410)]  # reaches 0xFFFF
    second = [pkt(2, 0xFFFF, 160 * (i + 1)) for i in range(20)] + [pkt(2, 0xFFFF, 3200, end=True)] * 3
    assert feed_all(rx, first + second) == ["2"]
    assert feed_all(rx, event_packets(2, 0xFFFF + 10000)) == ["2"]


def test_straggler_of_previous_digit_after_next_started() -> None:
    rx = DtmfReceiver()
    a, b = event_packets(1, 1000), event_packets(2, 2600)
    packets = a[:-1] + b[:3] + [a[-1]] + b[3:] + [a[0]]
    assert feed_all(rx, packets) == ["1", "2"]


def test_random_reorder_and_loss_still_exactly_once() -> None:
    rng = random.Random(4)
    digits = "5551234#*"
    packets: list[RtpPacket] = []
    for i, digit in enumerate(digits):
        packets += event_packets(DIGIT_TO_EVENT[digit], (0xFFFFF000 + i * 1760) & 0xFFFFFFFF)
    # Drop some (never all of one event) and shuffle within a small window.
    kept = [p for i, p in enumerate(packets) if i % 8 != 3]
    for i in range(0, len(kept) - 3, 3):
        window = kept[i : i + 4]
        rng.shuffle(window)
        kept[i : i + 4] = window
    rx = DtmfReceiver()
    got = feed_all(rx, kept)
    assert sorted(got) == sorted(digits) and len(got) == len(digits)


def test_ssrc_distinguishes_events() -> None:
    rx = DtmfReceiver()
    assert rx.feed(pkt(1, 50, 160, ssrc=1)) == "1"
    assert rx.feed(pkt(1, 50, 160, ssrc=2)) == "1"


def test_payload_type_filter_and_malformed() -> None:
    rx = DtmfReceiver(payload_type=101)
    assert rx.feed(pkt(1, 50, 160, pt=100)) is None
    bad = RtpPacket(payload_type=101, sequence=0, timestamp=1, ssrc=1, payload=b"\x01\x02")
    assert rx.feed(bad) is None and rx.malformed == 1
    assert rx.feed(pkt(1, 50, 160)) == "1"


def test_non_digit_event_returns_none() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, event_packets(16, 100)) == []
    assert rx.feed(pkt(0, 2000, 160)) == "0"


def test_history_is_bounded_and_reset() -> None:
    rx = DtmfReceiver(history=4)
    for i in range(100):
        rx.feed(pkt(1, i * 2000, 160))
    assert rx.feed(pkt(1, 99 * 2000, 320)) is None
    rx.reset()
    assert rx.feed(pkt(1, 99 * 2000, 320)) == "1"


# --------------------------------------------------------------------------- sender


def run_sender(tx: DtmfSender, ticks: int, ts0: int = 1000) -> list[OutgoingEvent | None]:
    return [tx.next_packet((ts0 + 160 * i) & 0xFFFFFFFF) for i in range(ticks)]


def test_sender_single_digit_packets() -> None:
    tx = DtmfSender()
    tx.queue("5", duration_ms=100)
    assert tx.busy
    out = run_sender(tx, 10)
    sent = [p for p in out if p is not None]
    assert len(sent) == 5 + 2  # 5 ticks of tone, end packet sent 3 times
    assert out[7:] == [None, None, None]
    events = [TelephoneEvent.parse(p.payload) for p in sent]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [p.marker for p in sent] == [True] + [False] * 6
    assert {p.timestamp for p in sent} == {1000}
    assert {e.event for e in events} == {5} and {e.volume for e in events} == {10}
    assert not tx.busy


def test_sender_gap_between_digits() -> None:
    tx = DtmfSender()
    tx.queue("12", duration_ms=100, gap_ms=60)
    out = run_sender(tx, 20)
    # digit 1: ticks 0-4 tone, 5-6 end repeats, 7 silent (60 ms gap = 3 ticks), digit 2 from tick 8
    assert out[7] is None and out[8] is not None
    second = out[8]
    assert second is not None and second.marker and second.timestamp == 1000 + 8 * 160
    assert TelephoneEvent.parse(second.payload).event == 2
    assert sum(p is not None for p in out) == 14


def test_sender_gap_at_least_end_repeats() -> None:
    tx = DtmfSender()
    tx.queue("12", duration_ms=40, gap_ms=0)
    out = run_sender(tx, 10)
    assert [p is not None for p in out[:6]] == [True] * 6  # 2 tone, 2 end repeats, next digit
    assert out[4] is not None and out[4].marker


def test_sender_duration_rounds_up_to_frames() -> None:
    tx = DtmfSender()
    tx.queue("#", duration_ms=50)
    sent = [p for p in run_sender(tx, 10) if p is not None]
    assert TelephoneEvent.parse(sent[-1].payload).duration == 480


def test_sender_timestamp_wraps() -> None:
    tx = DtmfSender()
    tx.queue("0")
    sent = [p for p in run_sender(tx, 8, ts0=0xFFFFFFF0) if p is not None]
    assert {p.timestamp for p in sent} == {0xFFFFFFF0}


def test_sender_queue_while_busy_and_clear() -> None:
    tx = DtmfSender()
    tx.queue("1")
    tx.next_packet(0)
    tx.queue("2")
    tx.clear()
    sent = [p for p in (tx.next_packet(160 * i) for i in range(1, 20)) if p is not None]
    assert {TelephoneEvent.parse(p.payload).event for p in sent} == {1}
    assert TelephoneEvent.parse(sent[-1].payload).end
    assert not tx.busy


@pytest.mark.parametrize("digits", ["1x", "E", " ", "12-3", "١"])
def test_sender_rejects_invalid_digits_atomically(digits: str) -> None:
    tx = DtmfSender()
    with pytest.raises(ValueError):
        tx.queue(digits)
    assert not tx.busy


def test_sender_lowercase_letters() -> None:
    tx = DtmfSender()
    tx.queue("a")
    first = tx.next_packet(0)
    assert first is not None and TelephoneEvent.parse(first.payload).event == 12


@pytest.mark.parametrize("kwargs", [{"duration_ms": 0}, {"gap_ms": -1}, {"duration_ms": 9000}])
def test_sender_rejects_bad_timing(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DtmfSender().queue("1", **kwargs)


def test_sender_constructor_validation() -> None:
    with pytest.raises(ValueError):
        DtmfSender(payload_type=8)
    with pytest.raises(ValueError):
        DtmfSender(volume=64)


def test_sender_to_receiver_loopback_with_loss() -> None:
    tx = DtmfSender(payload_type=101)
    tx.queue("0123456789*#ABCD", duration_ms=80, gap_ms=40)
    rx = DtmfReceiver(payload_type=101)
    got: list[str] = []
    rng = random.Random(1)
    ts = 12345
    seq = 0
    while tx.busy:
        event = tx.next_packet(ts)
        if event is not None and rng.random() > 0.3:  # 30 % loss
            packet = RtpPacket(
                payload_type=tx.payload_type,
                sequence=seq,
                timestamp=event.timestamp,
                ssrc=5,
                payload=event.payload,
                marker=event.marker,
            )
            digit = rx.feed(RtpPacket.parse(packet.serialize()))
            if digit:
                got.append(digit)
        seq += 1
        ts += 160
    assert "".join(got) == "0123456789*#ABCD"
