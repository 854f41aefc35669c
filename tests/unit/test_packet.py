"""Tests for rtp.packet: strict RTP parsing/serialization and wrap-around arithmetic."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.packet import (
    BadExtension,
    BadPadding,
    BadVersion,
    FieldOutOfRange,
    RtpError,
    RtpExtension,
    RtpPacket,
    SequenceUnwrapper,
    TimestampUnwrapper,
    TruncatedPacket,
    is_rtcp,
    seq_diff,
    ts_diff,
)

# A PCMU packet as captured on the wire: V=2, no P/X/CC, M=1, PT=0, seq=0x1234, ts=0xDEADBEEF.
WIRE = bytes.fromhex("80801234deadbeef0badcafe") + b"\xff" * 4


def test_parse_known_packet() -> None:
    p = RtpPacket.parse(WIRE)
    assert p == RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x0BADCAFE,
        payload=b"\xff" * 4,
        marker=True,
    )
    assert p.serialize() == WIRE


def test_parse_accepts_bytearray_and_memoryview() -> None:
    assert RtpPacket.parse(bytearray(WIRE)) == RtpPacket.parse(memoryview(WIRE)) == RtpPacket.parse(WIRE)


def test_header_only_packet_has_empty_payload() -> None:
    assert RtpPacket.parse(WIRE[:12]).payload == b""


def test_csrc_extension_and_padding_round_trip() -> None:
    p = RtpPacket(
        payload_type=96,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1,
        payload=b"hello",
        marker=False,
        csrcs=(1, 2, 0xFFFFFFFF),
        extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=3,
    )
    data = p.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[-3:] == b"\x00\x00\x03"
    assert len(data) == 12 + 12 + 4 + 4 + 5 + 3
    assert RtpPacket.parse(data) == p


def test_empty_extension_body() -> None:
    p = RtpPacket(payload_type=8, sequence=1, timestamp=2, ssrc=3, extension=RtpExtension(7))
    assert RtpPacket.parse(p.serialize()) == p


def test_padding_bytes_other_than_count_are_ignored() -> None:
    data = bytearray(RtpPacket(0, 1, 2, 3, payload=b"ab", padding=4).serialize())
    data[-4:-1] = b"xyz"  # RFC 3550 gives the padding octets no meaning
    assert RtpPacket.parse(bytes(data)).payload == b"ab"


def test_padding_may_consume_whole_payload() -> None:
    p = RtpPacket.parse(RtpPacket(0, 1, 2, 3, padding=4).serialize())
    assert p.payload == b"" and p.padding == 4


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedPacket),
        (WIRE[:11], TruncatedPacket),
        (bytes([0x40]) + WIRE[1:], BadVersion),  # version 1
        (bytes([0x00]) + WIRE[1:], BadVersion),
        (bytes([0xC0]) + WIRE[1:], BadVersion),  # version 3
        (bytes([0x81]) + WIRE[1:12], TruncatedPacket),  # CC=1, no CSRC
        (bytes([0x8F]) + WIRE[1:] + bytes(50), TruncatedPacket),  # CC=15 needs 60 bytes
        (bytes([0x90]) + WIRE[1:12], BadExtension),  # X, no extension header
        (bytes([0x90]) + WIRE[1:12] + b"\x00\x00", BadExtension),  # half a header
        (bytes([0x90]) + WIRE[1:12] + b"\xbe\xde\x00\x02" + bytes(7), BadExtension),  # 8 bytes claimed
        (bytes([0xA0]) + WIRE[1:12], BadPadding),  # P, nothing to hold the count
        (bytes([0xA0]) + WIRE[1:] + b"\x00", BadPadding),  # count 0
        (bytes([0xA0]) + WIRE[1:12] + b"\x02", BadPadding),  # count 2 > 1-byte body
        (bytes([0xB0]) + WIRE[1:12] + b"\x00\x00\x00\x01\x00\x00\x00\x09", BadPadding),  # past ext
    ],
)
def test_malformed_packets_raise_typed_errors(data: bytes, error: type[RtpError]) -> None:
    with pytest.raises(error):
        RtpPacket.parse(data)


def test_errors_are_value_errors() -> None:
    for cls in (TruncatedPacket, BadVersion, BadPadding, BadExtension, FieldOutOfRange):
        assert issubclass(cls, RtpError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"sequence": 65536},
        {"sequence": -1},
        {"timestamp": 1 << 32},
        {"ssrc": 1 << 32},
        {"ssrc": -1},
        {"csrcs": tuple(range(16))},
        {"csrcs": (1 << 32,)},
        {"padding": 256},
        {"padding": -1},
        {"extension": RtpExtension(0x10000)},
        {"extension": RtpExtension(1, b"abc")},
    ],
)
def test_serialize_validates_ranges(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    base.update(fields)
    packet = RtpPacket(**base)  # type: ignore[arg-type]
    with pytest.raises(RtpError):
        packet.serialize()


def test_packet_is_frozen_and_hashable() -> None:
    p = RtpPacket.parse(WIRE)
    with pytest.raises(AttributeError):
        p.sequence = 1  # type: ignore[misc]
    assert hash(p) == hash(RtpPacket.parse(WIRE))


@pytest.mark.parametrize(
    ("second_byte", "expected"),
    [
        (200, True),
        (201, True),
        (192, True),
        (223, True),
        (72, True),
        (0, False),
        (0x80, False),
        (96, False),
        (0x80 | 96, False),
        (191, False),
        (224, False),
        (101, False),
    ],
)
def test_is_rtcp(second_byte: int, expected: bool) -> None:
    assert is_rtcp(bytes([0x80, second_byte]) + bytes(6)) is expected


def test_is_rtcp_short_data() -> None:
    assert not is_rtcp(b"") and not is_rtcp(b"\x80")


def test_seq_diff() -> None:
    assert seq_diff(5, 3) == 2
    assert seq_diff(3, 5) == -2
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768
    assert ts_diff(0, 0xFFFFFFFF) == 1
    assert ts_diff(0xFFFFFF00, 0x100) == -0x200


@given(st.integers(0, 65535), st.integers(-32768, 32767))
def test_seq_diff_inverts_addition(b: int, delta: int) -> None:
    assert seq_diff((b + delta) % 65536, b) == delta


def test_sequence_unwrapper_wraps_forward() -> None:
    u = SequenceUnwrapper()
    values = [u.unwrap(s % 65536) for s in range(65530, 65545)]
    assert values == list(range(65530, 65545))
    assert u.highest == 65544


def test_sequence_unwrapper_reorder_across_wrap() -> None:
    u = SequenceUnwrapper()
    assert [u.unwrap(s) for s in (65534, 0, 65535, 1, 65533)] == [65534, 65536, 65535, 65537, 65533]
    assert u.highest == 65537


def test_unwrapper_reorder_before_first_goes_negative() -> None:
    u = SequenceUnwrapper()
    assert u.unwrap(0) == 0
    assert u.unwrap(65535) == -1
    assert u.unwrap(1) == 1


def test_unwrapper_many_cycles_and_reset() -> None:
    u = SequenceUnwrapper()
    last = 0
    for i in range(0, 5 * 65536, 1000):
        last = u.unwrap(i % 65536)
        assert last == i
    u.reset()
    assert u.highest is None and u.unwrap(7) == 7


def test_timestamp_unwrapper() -> None:
    u = TimestampUnwrapper()
    start = 0xFFFFFF00
    out = [u.unwrap((start + 160 * k) & 0xFFFFFFFF) for k in range(4)]
    assert out == [start + 160 * k for k in range(4)]
    assert u.unwrap((start + 160) & 0xFFFFFFFF) == start + 160  # late packet from before the wrap


def test_unwrapper_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        SequenceUnwrapper().unwrap(65536)
    with pytest.raises(ValueError):
        TimestampUnwrapper().unwrap(-1)


@given(st.integers(0, 0xFFFFFFFF), st.lists(st.integers(-3000, 30000), max_size=50))
def test_timestamp_unwrapper_tracks_true_values(start: int, steps: list[int]) -> None:
    u = TimestampUnwrapper()
    true = start
    assert u.unwrap(true) == true
    highest = true
    for step in steps:
        true = max(true + step, highest - 3000)  # keep reordering within half the range
        assert u.unwrap(true % (1 << 32)) == true
        highest = max(highest, true)


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_parse_arbitrary_bytes_raises_only_rtp_error_or_round_trips(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    out = packet.serialize()
    assert len(out) == len(data)
    # Identical except for the padding octets before the count, which are not kept.
    cut = len(data) - packet.padding
    assert out[:cut] == data[:cut]
    assert out[-1:] == data[-1:] or not packet.padding
    assert RtpPacket.parse(out) == packet


@settings(max_examples=300)
@given(st.binary(min_size=12, max_size=80))
def test_parse_version2_bytes_raises_only_rtp_error(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]  # force version 2 to reach deeper checks
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_generated_packets_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


def test_header_layout_matches_struct() -> None:
    p = RtpPacket(payload_type=8, sequence=513, timestamp=1 << 31, ssrc=0x01020304, payload=b"x")
    assert p.serialize() == struct.pack("!BBHII", 0x80, 8, 513, 1 << 31, 0x01020304) + b"x"
