"""Tests for rtp.rtcp: RTCP packets, strict compound parsing, NTP helpers, ReceptionStats."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.rtcp import (
    SDES_CNAME,
    SDES_TOOL,
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpBadItem,
    RtcpBadLength,
    RtcpBadPadding,
    RtcpBadType,
    RtcpBadVersion,
    RtcpCountMismatch,
    RtcpError,
    RtcpFieldOutOfRange,
    RtcpTruncated,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle32,
    ntp_timestamp,
    ntp_to_unix,
    parse_compound,
    round_trip_time_s,
)

BLOCK = ReportBlock(
    ssrc=0x11223344,
    fraction_lost=64,
    cumulative_lost=-5,
    highest_seq=0x0001FFFF,
    jitter=123,
    lsr=0xAABBCCDD,
    dlsr=65536,
)
SR_PACKET = SenderReport(
    ssrc=0xCAFEBABE,
    ntp_timestamp=0x83AA7E80_80000000,
    rtp_timestamp=160000,
    packet_count=1000,
    octet_count=160000,
    reports=(BLOCK,),
)


def test_report_block_wire_format() -> None:
    data = BLOCK.serialize()
    assert len(data) == 24
    assert data[4] == 64
    assert data[5:8] == b"\xff\xff\xfb"  # -5 as signed 24-bit
    assert ReportBlock.parse(data) == BLOCK


@pytest.mark.parametrize("lost", [-(1 << 23), -1, 0, 1, (1 << 23) - 1])
def test_cumulative_lost_signed_24_bit(lost: int) -> None:
    block = ReportBlock(1, 0, lost, 0, 0)
    assert ReportBlock.parse(block.serialize()).cumulative_lost == lost


@pytest.mark.parametrize("lost", [-(1 << 23) - 1, 1 << 23])
def test_cumulative_lost_out_of_range(lost: int) -> None:
    with pytest.raises(RtcpFieldOutOfRange):
        ReportBlock(1, 0, lost, 0, 0).serialize()


def test_sender_report_wire_format() -> None:
    data = SR_PACKET.serialize()
    assert data[:4] == bytes([0x81, 200]) + struct.pack("!H", 12)  # 52 bytes = 13 words
    assert len(data) == 52
    assert parse_compound(data) == [SR_PACKET]


def test_receiver_report_round_trip() -> None:
    rr = ReceiverReport(ssrc=7, reports=(BLOCK, ReportBlock(9, 0, 0, 0, 0)))
    data = rr.serialize()
    assert data[0] == 0x82 and data[1] == 201 and len(data) == 8 + 48
    assert parse_compound(data) == [rr]
    empty = ReceiverReport(ssrc=7)
    assert empty.serialize() == bytes([0x80, 201, 0, 1]) + struct.pack("!I", 7)


def test_sdes_round_trip_and_padding() -> None:
    sdes = SourceDescription.with_cname(0x01020304, "gw@voicegate")
    data = sdes.serialize()
    assert len(data) % 4 == 0
    # chunk: ssrc(4) + type,len(2) + 12 + END(1) -> 19, padded to 20
    assert len(data) == 4 + 20
    parsed = parse_compound(data)
    assert parsed == [sdes]
    assert isinstance(parsed[0], SourceDescription)
    assert parsed[0].chunks[0].cname == "gw@voicegate"


def test_sdes_chunk_exactly_aligned_gets_a_full_null_word() -> None:
    chunk = SdesChunk(1, ((SDES_CNAME, b"ab"),))  # 4 + 2 + 2 = 8, END needs another word
    data = chunk.serialize()
    assert data == struct.pack("!I", 1) + b"\x01\x02ab" + b"\x00\x00\x00\x00"


def test_sdes_multiple_chunks_and_items() -> None:
    sdes = SourceDescription(
        (
            SdesChunk(1, ((SDES_CNAME, b"a"), (SDES_TOOL, b"voicegate 0.1"))),
            SdesChunk(2, ()),
            SdesChunk(3, ((SDES_CNAME, "ü".encode()),)),
        )
    )
    parsed = parse_compound(sdes.serialize())
    assert parsed == [sdes]
    assert sdes.chunks[1].cname is None and sdes.chunks[2].cname == "ü"


def test_bye_round_trip() -> None:
    for bye in (Bye((1, 2, 3)), Bye((5,), "shutting down"), Bye((), "x"), Bye()):
        data = bye.serialize()
        assert len(data) % 4 == 0
        assert parse_compound(data) == [bye]


def test_bye_reason_invalid_utf8_is_replaced_not_rejected() -> None:
    body = struct.pack("!I", 9) + b"\x02\xff\xfe\x00"
    data = bytes([0x81, 203]) + struct.pack("!H", len(body) // 4) + body
    (bye,) = parse_compound(data)
    assert isinstance(bye, Bye) and bye.ssrcs == (9,) and bye.reason == "\ufffd\ufffd"


def test_compound_round_trip_and_unknown_types_skipped() -> None:
    app = bytes([0x80, 204, 0, 2]) + b"\x00\x00\x00\x01" + b"NAME"  # APP
    fb = bytes([0x81, 205, 0, 2]) + bytes(8)  # RTPFB NACK
    xr = bytes([0x80, 207, 0, 1]) + bytes(4)
    sdes = SourceDescription.with_cname(1, "x")
    data = build_compound([SR_PACKET, sdes]) + app + fb + xr + Bye((1,)).serialize()
    assert parse_compound(data) == [SR_PACKET, sdes, Bye((1,))]


def test_sr_profile_extension_is_ignored() -> None:
    data = bytearray(SenderReport(1, 2, 3, 4, 5).serialize() + b"EXT!")
    data[3] += 1
    assert parse_compound(bytes(data)) == [SenderReport(1, 2, 3, 4, 5)]


def test_padding_on_last_packet() -> None:
    rr = ReceiverReport(ssrc=1)
    body = rr.serialize()[4:] + b"\x00\x00\x00\x04"
    data = bytes([0xA0, 201]) + struct.pack("!H", len(body) // 4) + body
    assert parse_compound(data) == [rr]


def _rr_header(first: int, words: int) -> bytes:
    return bytes([first, 201]) + struct.pack("!H", words)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", RtcpTruncated),
        (b"\x80\xc9\x00", RtcpTruncated),
        (_rr_header(0x80, 1) + bytes(4) + b"\x80\xc9", RtcpTruncated),  # trailing partial header
        (_rr_header(0x40, 1) + bytes(4), RtcpBadVersion),
        (_rr_header(0xC0, 1) + bytes(4), RtcpBadVersion),
        (_rr_header(0x80, 2) + bytes(4), RtcpBadLength),  # claims 12 bytes, has 8
        (_rr_header(0x81, 1) + bytes(4), RtcpCountMismatch),  # 1 block claimed, none present
        (bytes([0x81, 200, 0, 6]) + bytes(24), RtcpCountMismatch),  # SR, 1 block claimed
        (bytes([0x80, 200, 0, 1]) + bytes(4), RtcpTruncated),  # SR without sender info
        (bytes([0x80, 201, 0, 0]), RtcpTruncated),  # RR without SSRC
        (bytes([0x80, 0, 0, 0]), RtcpBadType),  # RTP-ish payload type
        (bytes([0x80, 250, 0, 0]), RtcpBadType),
        (_rr_header(0xA0, 1) + b"\x00\x00\x00\x00", RtcpBadPadding),  # count 0
        (_rr_header(0xA0, 1) + b"\x00\x00\x00\x09", RtcpBadPadding),  # count > body
        (bytes([0x81, 202, 0, 1]) + bytes(4), RtcpBadItem),  # SDES chunk without END
        (bytes([0x81, 202, 0, 2]) + bytes(4) + b"\x01\x09ab", RtcpBadItem),  # item past end
        (bytes([0x81, 202, 0, 2]) + bytes(4) + b"\x00\x00\x01\x00", RtcpBadItem),  # nonzero padding
        (bytes([0x82, 202, 0, 2]) + bytes(4) + b"\x00\x00\x00\x00", RtcpCountMismatch),  # 2 chunks
        (bytes([0x80, 202, 0, 1]) + bytes(4), RtcpCountMismatch),  # 0 chunks but a body
        (bytes([0x82, 203, 0, 1]) + bytes(4), RtcpCountMismatch),  # BYE 2 SSRCs, room for 1
        (bytes([0x81, 203, 0, 2]) + bytes(4) + b"\x09abc", RtcpBadItem),  # reason past end
        (bytes([0x81, 203, 0, 3]) + bytes(4) + b"\x01a\x00\x00" + bytes(4), RtcpBadLength),
    ],
)
def test_malformed_compound_raises_typed_errors(data: bytes, error: type[RtcpError]) -> None:
    with pytest.raises(error):
        parse_compound(data)


def test_error_after_valid_packet_still_raises() -> None:
    with pytest.raises(RtcpBadVersion):
        parse_compound(ReceiverReport(1).serialize() + _rr_header(0x40, 1) + bytes(4))


@pytest.mark.parametrize(
    "packet",
    [
        ReceiverReport(1 << 32),
        ReceiverReport(1, tuple(ReportBlock(i, 0, 0, 0, 0) for i in range(32))),
        SenderReport(1, 1 << 64, 0, 0, 0),
        SenderReport(1, 0, 1 << 32, 0, 0),
        Bye((1,), "x" * 256),
        Bye((-1,)),
        SourceDescription((SdesChunk(1, ((SDES_CNAME, b"x" * 256),)),)),
        SourceDescription((SdesChunk(1, ((0, b"x"),)),)),
        SourceDescription(tuple(SdesChunk(i) for i in range(32))),
    ],
)
def test_serialize_validates(packet: object) -> None:
    with pytest.raises(RtcpFieldOutOfRange):
        packet.serialize()  # type: ignore[attr-defined]


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_parse_compound_arbitrary_bytes_only_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_compound(data)


@settings(max_examples=500)
@given(st.lists(st.tuples(st.integers(0, 31), st.integers(192, 223), st.binary(max_size=40)), max_size=4))
def test_parse_compound_plausible_headers_only_rtcp_error(parts: list[tuple[int, int, bytes]]) -> None:
    data = b""
    for count, packet_type, body in parts:
        body = body + bytes(-len(body) % 4)
        data += bytes([0x80 | count, packet_type]) + struct.pack("!H", len(body) // 4) + body
    with contextlib.suppress(RtcpError):
        parse_compound(data)


u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(ReportBlock, u32, st.integers(0, 255), st.integers(-(1 << 23), (1 << 23) - 1), u32, u32, u32, u32)
rtcp_packets = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, (1 << 64) - 1), u32, u32, u32, st.lists(blocks, max_size=3).map(tuple)),
    st.builds(ReceiverReport, u32, st.lists(blocks, max_size=3).map(tuple)),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk, u32, st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=3).map(tuple)
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=4).map(tuple), st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255)),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_generated_compound_round_trip(packets: list[object]) -> None:
    data = build_compound(packets)  # type: ignore[arg-type]
    assert parse_compound(data) == packets


def test_ntp_timestamp() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(0.5) == (2_208_988_800 << 32) | 0x80000000
    t = 1_700_000_000.25
    ntp = ntp_timestamp(t)
    assert ntp >> 32 == 1_700_000_000 + 2_208_988_800
    assert ntp & 0xFFFFFFFF == 0x40000000
    assert abs(ntp_to_unix(ntp) - t) < 1e-6
    assert ntp_middle32(ntp) == ((ntp >> 16) & 0xFFFFFFFF)
    assert ntp_timestamp(1.9999999999999) >> 32 in (2_208_988_801, 2_208_988_802)  # carry handled


def test_round_trip_time() -> None:
    sent = 1_000_000.0
    lsr = ntp_middle32(ntp_timestamp(sent))
    block = ReportBlock(1, 0, 0, 0, 0, lsr=lsr, dlsr=int(0.25 * 65536))
    rtt = round_trip_time_s(block, sent + 0.4)
    assert rtt is not None and abs(rtt - 0.15) < 1e-3
    assert round_trip_time_s(ReportBlock(1, 0, 0, 0, 0), sent) is None


# ---------------------------------------------------------------- ReceptionStats


def feed(stats: ReceptionStats, seqs: list[int], start: float = 0.0, ts_step: int = 160) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq % 65536, (1000 + i * ts_step) % (1 << 32), start + i * 0.02)


def test_probation_then_counting() -> None:
    stats = ReceptionStats(8000)
    stats.update(100, 0, 0.0)
    assert not stats.valid and stats.received == 0 and stats.expected == 0
    stats.update(101, 160, 0.02)
    assert stats.valid and stats.received == 1 and stats.expected == 1
    feed(stats, list(range(102, 200)), 0.04)
    assert stats.received == 99 and stats.expected == 99 and stats.cumulative_lost == 0


def test_loss_and_fraction_per_interval() -> None:
    stats = ReceptionStats(8000)
    seqs = [s for s in range(0, 101) if s % 10 != 5]  # lose 10 of 100 after probation
    feed(stats, seqs)
    block = stats.report_block(ssrc=42, lsr=7, dlsr=8)
    assert block.ssrc == 42 and block.lsr == 7 and block.dlsr == 8
    assert stats.expected == 100 and stats.received == 90
    assert block.cumulative_lost == 10
    assert block.fraction_lost == (10 << 8) // 100
    assert block.highest_seq == 100
    # Next interval: no loss.
    feed(stats, list(range(101, 151)), 10.0)
    block = stats.report_block(ssrc=42)
    assert block.fraction_lost == 0 and block.cumulative_lost == 10


def test_duplicates_make_cumulative_lost_negative_and_fraction_zero() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [0, 1, 2, 3, 3, 3, 4])
    block = stats.report_block(1)
    assert block.cumulative_lost == -2 and block.fraction_lost == 0


def test_sequence_wrap_counts_cycles() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(65500, 65600)))
    assert stats.extended_max_seq == 65536 + 63
    assert stats.report_block(1).highest_seq == 65536 + 63
    assert stats.expected == 99 and stats.cumulative_lost == 0


def test_reordered_packets_counted_not_lost() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert stats.cumulative_lost == 0 and stats.expected == 8


def test_large_jump_is_restart_only_after_two_sequential() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(10)))
    stats.update(40000, 0, 1.0)  # stray packet: ignored
    assert stats.extended_max_seq == 9 and stats.received == 9
    stats.update(10, 0, 1.02)
    assert stats.extended_max_seq == 10
    stats.update(50000, 0, 2.0)
    stats.update(50001, 160, 2.02)  # sender restarted at 50000
    assert stats.extended_max_seq == 50001 and stats.received == 1


def test_jitter_zero_for_perfect_stream_and_tracks_jitter() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(200)))
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    stats2 = ReceptionStats(8000)
    for i in range(2000):
        arrival = i * 0.02 + (0.01 if i % 2 else 0.0)  # alternate 0/10 ms extra delay
        stats2.update(i % 65536, (i * 160) % (1 << 32), arrival)
    # |D| is always 10 ms = 80 timestamp units, so J converges to 80.
    assert stats2.jitter == pytest.approx(80.0, rel=1e-3)
    assert stats2.jitter_ms == pytest.approx(10.0, rel=1e-3)
    assert stats2.report_block(1).jitter == 79 or stats2.report_block(1).jitter == 80


def test_jitter_unaffected_by_timestamp_wrap() -> None:
    stats = ReceptionStats(8000)
    for i in range(100):
        stats.update(i, (0xFFFFF000 + i * 160) % (1 << 32), i * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_min_sequential_one_counts_first_packet() -> None:
    stats = ReceptionStats(8000, min_sequential=1)
    stats.update(5, 0, 0.0)
    assert stats.received == 1 and stats.expected == 1


def test_reception_stats_validates_input() -> None:
    with pytest.raises(ValueError):
        ReceptionStats(0)
    stats = ReceptionStats(8000)
    with pytest.raises(ValueError):
        stats.update(65536, 0, 0.0)
    with pytest.raises(ValueError):
        stats.update(0, 1 << 32, 0.0)


def test_report_block_before_any_packet() -> None:
    block = ReceptionStats(8000).report_block(3)
    assert block == ReportBlock(3, 0, 0, 0, 0, 0, 0)
    assert ReportBlock.parse(block.serialize()) == block
