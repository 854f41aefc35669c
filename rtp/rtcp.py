"""RFC 3550 RTCP: SR, RR, SDES and BYE packets, compound parsing, reception statistics.

The parser is strict in the same spirit as :mod:`rtp.packet`: every malformed
compound packet raises one :class:`RtcpError` subclass, so the session can
count it and move on.  Packet types we do not use (APP, RTPFB, PSFB, XR, ...)
are skipped rather than rejected, because a peer is free to send them and
they must not cost us the SR that usually travels in the same datagram.

:class:`ReceptionStats` is the receiver side of RFC 3550 appendix A.1
(sequence validation), A.3 (loss accounting) and A.8 (interarrival jitter);
it produces the :class:`ReportBlock` we put in our own SR/RR.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BYE",
    "RR",
    "SDES",
    "SDES_CNAME",
    "SR",
    "Bye",
    "ReceiverReport",
    "ReceptionStats",
    "ReportBlock",
    "RtcpBadItem",
    "RtcpBadLength",
    "RtcpBadPadding",
    "RtcpBadType",
    "RtcpBadVersion",
    "RtcpCountMismatch",
    "RtcpError",
    "RtcpFieldOutOfRange",
    "RtcpPacket",
    "RtcpTruncated",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_compound",
    "ntp_middle32",
    "ntp_timestamp",
    "ntp_to_unix",
    "parse_compound",
    "round_trip_time_s",
]

SR = 200
RR = 201
SDES = 202
BYE = 203

SDES_END = 0
SDES_CNAME = 1
SDES_NAME = 2
SDES_EMAIL = 3
SDES_PHONE = 4
SDES_LOC = 5
SDES_TOOL = 6
SDES_NOTE = 7
SDES_PRIV = 8

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_U32 = 0xFFFFFFFF
_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packet count, octet count


class RtcpError(ValueError):
    """Base class of every error raised for malformed RTCP."""


class RtcpTruncated(RtcpError):
    """The data ends in the middle of a header or packet."""


class RtcpBadVersion(RtcpError):
    """The version field of a packet is not 2."""


class RtcpBadLength(RtcpError):
    """A length field disagrees with the data (beyond the buffer, or body not consumed)."""


class RtcpBadPadding(RtcpError):
    """The P bit is set but the padding count is 0 or larger than the packet."""


class RtcpBadType(RtcpError):
    """The packet type is outside the RTCP range 192..223 (not RTCP at all)."""


class RtcpCountMismatch(RtcpError):
    """The count field (RC/SC) does not match the number of items present."""


class RtcpBadItem(RtcpError):
    """A malformed SDES item or chunk, or a malformed BYE reason."""


class RtcpFieldOutOfRange(RtcpError):
    """A field does not fit its wire width (raised when serializing)."""


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise RtcpFieldOutOfRange(f"{name}={value} is not in {low}..{high}")


def _header(packet_type: int, count: int, body_len: int) -> bytes:
    """Common header for a body of ``body_len`` bytes (already a multiple of 4)."""
    _check_range("count", count, 0, 31)
    words = body_len // 4  # length field = total words minus one = body words (the header is one word)
    _check_range("length", words, 0, 0xFFFF)
    return _HEADER.pack(0x80 | count, packet_type, words)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1).

    ``cumulative_lost`` is signed 24-bit: duplicates can make it negative.
    ``lsr``/``dlsr`` are in NTP short format (1/65536 s) and let the sender
    compute the round-trip time.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def serialize(self) -> bytes:
        """Encode to 24 bytes, validating every field."""
        _check_range("ssrc", self.ssrc, 0, _U32)
        _check_range("fraction_lost", self.fraction_lost, 0, 255)
        _check_range("cumulative_lost", self.cumulative_lost, -(1 << 23), (1 << 23) - 1)
        _check_range("highest_seq", self.highest_seq, 0, _U32)
        _check_range("jitter", self.jitter, 0, _U32)
        _check_range("lsr", self.lsr, 0, _U32)
        _check_range("dlsr", self.dlsr, 0, _U32)
        lost = (self.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
        return _REPORT_BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        """Decode 24 bytes at ``offset`` (the caller has checked they exist)."""
        ssrc, fraction, lost_raw, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = int.from_bytes(lost_raw, "big")
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


def _serialize_blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise RtcpFieldOutOfRange(f"{len(reports)} report blocks, at most 31 fit the RC field")
    return b"".join(block.serialize() for block in reports)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (PT 200): sender info plus reception report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        """Encode one SR packet (no padding)."""
        _check_range("ssrc", self.ssrc, 0, _U32)
        _check_range("ntp_timestamp", self.ntp_timestamp, 0, (1 << 64) - 1)
        _check_range("rtp_timestamp", self.rtp_timestamp, 0, _U32)
        _check_range("packet_count", self.packet_count, 0, _U32)
        _check_range("octet_count", self.octet_count, 0, _U32)
        info = _SR_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count)
        body = info + _serialize_blocks(self.reports)
        return _header(SR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (PT 201): the reporter's SSRC plus reception report blocks."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        """Encode one RR packet (no padding)."""
        _check_range("ssrc", self.ssrc, 0, _U32)
        body = struct.pack("!I", self.ssrc) + _serialize_blocks(self.reports)
        return _header(RR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its ``(item type, value)`` items, in wire order.

    Values are kept as raw bytes so that a chunk round-trips exactly even when
    a peer sends text that is not valid UTF-8 (RFC 3550 asks for UTF-8 but we
    must not drop an SR because of somebody's TOOL string).
    """

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item decoded as UTF-8 (undecodable bytes replaced), if present."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", errors="replace")
        return None

    def serialize(self) -> bytes:
        """Encode the chunk including its END item and zero padding to 32 bits."""
        _check_range("ssrc", self.ssrc, 0, _U32)
        out = bytearray(struct.pack("!I", self.ssrc))
        for item_type, value in self.items:
            _check_range("SDES item type", item_type, 1, 255)
            _check_range("SDES item length", len(value), 0, 255)
            out += bytes((item_type, len(value))) + value
        out += b"\x00"  # END item
        out += bytes(-len(out) % 4)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (PT 202): a list of chunks, each usually carrying just a CNAME."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The SDES every compound packet we send must carry (RFC 3550 section 6.1)."""
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode("utf-8")),)),))

    def serialize(self) -> bytes:
        """Encode one SDES packet."""
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(SDES, len(self.chunks), len(body)) + body


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (PT 203): the sources leaving, with an optional reason."""

    ssrcs: tuple[int, ...] = ()
    reason: str = ""

    def serialize(self) -> bytes:
        """Encode one BYE packet; the reason is UTF-8, at most 255 bytes."""
        for ssrc in self.ssrcs:
            _check_range("ssrc", ssrc, 0, _U32)
        body = b"".join(struct.pack("!I", ssrc) for ssrc in self.ssrcs)
        if self.reason:
            text = self.reason.encode("utf-8")
            _check_range("BYE reason length", len(text), 0, 255)
            reason = bytes((len(text),)) + text
            body += reason + bytes(-len(reason) % 4)
        return _header(BYE, len(self.ssrcs), len(body)) + body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def _parse_blocks(body: bytes, offset: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    need = offset + count * _REPORT_BLOCK.size
    if need > len(body):
        raise RtcpCountMismatch(f"{what} claims {count} report blocks but has room for fewer")
    return tuple(ReportBlock.parse(body, offset + i * _REPORT_BLOCK.size) for i in range(count))


def _parse_sr(body: bytes, count: int) -> SenderReport:
    if len(body) < _SR_INFO.size:
        raise RtcpTruncated(f"SR body of {len(body)} bytes is shorter than the sender info")
    ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 0)
    # Bytes after the blocks are a profile-specific extension (RFC 3550 6.4.1): allowed, ignored.
    return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, _SR_INFO.size, count, "SR"))


def _parse_rr(body: bytes, count: int) -> ReceiverReport:
    if len(body) < 4:
        raise RtcpTruncated("RR body is shorter than the reporter SSRC")
    (ssrc,) = struct.unpack_from("!I", body, 0)
    return ReceiverReport(ssrc, _parse_blocks(body, 4, count, "RR"))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RtcpCountMismatch(f"SDES claims {count} chunks but ends after {len(chunks)}")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if offset >= len(body):
                raise RtcpBadItem("SDES chunk is not terminated by an END item")
            item_type = body[offset]
            if item_type == SDES_END:
                offset += 1
                pad_end = offset + (-offset % 4)
                if pad_end > len(body) or any(body[offset:pad_end]):
                    raise RtcpBadItem("SDES chunk is not padded with zero octets to 32 bits")
                offset = pad_end
                break
            if offset + 2 > len(body):
                raise RtcpBadItem("SDES item header is cut short")
            item_len = body[offset + 1]
            start = offset + 2
            if start + item_len > len(body):
                raise RtcpBadItem(f"SDES item of {item_len} bytes runs past the packet")
            items.append((item_type, bytes(body[start : start + item_len])))
            offset = start + item_len
        chunks.append(SdesChunk(ssrc, tuple(items)))
    if offset != len(body):
        raise RtcpCountMismatch(f"SDES has {len(body) - offset} bytes after its {count} chunks")
    return SourceDescription(tuple(chunks))


def _parse_bye(body: bytes, count: int) -> Bye:
    need = 4 * count
    if need > len(body):
        raise RtcpCountMismatch(f"BYE claims {count} sources but has room for fewer")
    ssrcs = struct.unpack_from(f"!{count}I", body, 0) if count else ()
    reason = ""
    if len(body) > need:
        reason_len = body[need]
        end = need + 1 + reason_len
        if end > len(body):
            raise RtcpBadItem(f"BYE reason of {reason_len} bytes runs past the packet")
        if len(body) - end >= 4:
            raise RtcpBadLength("BYE has data after its reason")
        # Lenient decode: a peer's odd reason text must not cost us the whole datagram.
        reason = bytes(body[need + 1 : end]).decode("utf-8", errors="replace")
    return Bye(tuple(ssrcs), reason)


_PARSERS: dict[int, Callable[[bytes, int], RtcpPacket]] = {
    SR: _parse_sr,
    RR: _parse_rr,
    SDES: _parse_sdes,
    BYE: _parse_bye,
}


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram into its SR/RR/SDES/BYE packets.

    Validation (RFC 3550 A.2, minus the "first packet is SR/RR" rule, so that
    RFC 5506 reduced-size RTCP is accepted): version 2 on every packet; every
    length within the buffer; packets tile the buffer exactly; padding only
    with a sane count; counts agree with the bodies.  Types in 192..223 that we
    do not model are skipped; types outside that range mean the data is not
    RTCP and raise :class:`RtcpBadType`.
    """
    packets: list[RtcpPacket] = []
    view = bytes(data)
    if not view:
        raise RtcpTruncated("empty RTCP datagram")
    offset = 0
    while offset < len(view):
        if offset + _HEADER.size > len(view):
            raise RtcpTruncated(f"{len(view) - offset} trailing bytes are too short for an RTCP header")
        first, packet_type, words = _HEADER.unpack_from(view, offset)
        if first >> 6 != 2:
            raise RtcpBadVersion(f"RTCP version {first >> 6} at offset {offset}, expected 2")
        if not 192 <= packet_type <= 223:
            raise RtcpBadType(f"packet type {packet_type} at offset {offset} is not an RTCP type")
        end = offset + 4 * (words + 1)
        if end > len(view):
            raise RtcpBadLength(
                f"packet at offset {offset} claims {4 * (words + 1)} bytes, only {len(view) - offset} remain"
            )
        body_end = end
        if first & 0x20:
            pad = view[end - 1]
            if pad == 0 or pad > end - offset - _HEADER.size:
                raise RtcpBadPadding(f"padding count {pad} is invalid for a {end - offset}-byte packet")
            body_end -= pad
        parser = _PARSERS.get(packet_type)
        if parser is not None:
            packets.append(parser(view[offset + _HEADER.size : body_end], first & 0x1F))
        offset = end
    return packets


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate serialized packets into one compound datagram.

    RFC 3550 wants an SR or RR first and an SDES CNAME in every compound
    packet; that policy belongs to the session, which knows what it has to
    say, so it is not enforced here.
    """
    return b"".join(packet.serialize() for packet in packets)


def ntp_timestamp(unix_time_s: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time in seconds."""
    seconds = math.floor(unix_time_s)
    fraction = round((unix_time_s - seconds) * (1 << 32))
    if fraction >= 1 << 32:
        seconds += 1
        fraction -= 1 << 32
    return (((seconds + NTP_UNIX_OFFSET) & _U32) << 32) | fraction


def ntp_to_unix(ntp: int) -> float:
    """Inverse of :func:`ntp_timestamp` (era 0 assumed)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & _U32) / (1 << 32)


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field / NTP short format."""
    return (ntp >> 16) & _U32


def round_trip_time_s(block: ReportBlock, arrival_unix_s: float) -> float | None:
    """RTT from a report block about our stream (RFC 3550 section 6.4.1), or None without an LSR."""
    if block.lsr == 0:
        return None
    now = ntp_middle32(ntp_timestamp(arrival_unix_s))
    rtt = (now - block.lsr - block.dlsr) & _U32
    if rtt & 0x80000000:  # negative: clock skew or a stale report
        return 0.0
    return rtt / 65536.0


RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class ReceptionStats:
    """Per-source reception statistics, RFC 3550 appendix A.1, A.3 and A.8.

    Sequence validation follows A.1 literally: a new source is on probation
    until ``min_sequential`` packets arrive in sequence, and the packet(s) seen
    during probation are not counted (so after packets 1, 2, 3 ``received`` is
    2).  A jump of more than ``MAX_DROPOUT`` is treated as a restart of the
    sender only if the next packet follows it in sequence.  Jitter uses the
    A.8 estimator, computed from timestamp and arrival *differences* so that a
    timestamp wrap does not disturb it.
    """

    def __init__(self, clock_rate: int, min_sequential: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1")
        self.clock_rate = clock_rate
        self._min_sequential = min_sequential
        self._initialized = False
        self._probation = min_sequential
        self._max_seq = 0
        self._cycles = 0
        self._base_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_timestamp = 0

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``: True if the packet counts as valid."""
        udelta = (seq - self._max_seq) % RTP_SEQ_MOD
        if self._probation:
            if seq == (self._max_seq + 1) % RTP_SEQ_MOD:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self._received += 1
                    return True
            else:
                self._probation = self._min_sequential - 1
                self._max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self._bad_seq:
                # Two sequential packets after a big jump: the sender restarted.
                self._init_seq(seq)
            else:
                self._bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: duplicate or reordered packet, counted as received.
        self._received += 1
        return True

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        """Account for one received packet (``arrival_s`` on any monotonic clock, seconds)."""
        if not 0 <= sequence < RTP_SEQ_MOD:
            raise ValueError(f"sequence {sequence} is not 16-bit")
        if not 0 <= timestamp <= _U32:
            raise ValueError(f"timestamp {timestamp} is not 32-bit")
        if not self._initialized:
            self._initialized = True
            self._init_seq(sequence)
            self._max_seq = (sequence - 1) % RTP_SEQ_MOD
            self._probation = self._min_sequential
        if not self._update_seq(sequence):
            return
        if self._last_arrival is not None:
            ts_delta = ((timestamp - self._last_timestamp + (1 << 31)) & _U32) - (1 << 31)
            d = abs((arrival_s - self._last_arrival) * self.clock_rate - ts_delta)
            self._jitter += (d - self._jitter) / 16.0
        self._last_arrival = arrival_s
        self._last_timestamp = timestamp

    @property
    def valid(self) -> bool:
        """True once the source has passed probation."""
        return self._initialized and self._probation == 0

    @property
    def extended_max_seq(self) -> int:
        """Highest sequence number received, extended with the wrap count (A.3)."""
        return self._cycles + self._max_seq if self.valid else 0

    @property
    def received(self) -> int:
        """Valid packets received (duplicates included, as in A.3)."""
        return self._received if self.valid else 0

    @property
    def expected(self) -> int:
        """Packets expected: extended highest sequence minus base plus one (A.3)."""
        return self.extended_max_seq - self._base_seq + 1 if self.valid else 0

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received; negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate (A.8), in timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter estimate in milliseconds."""
        return 1000.0 * self._jitter / self.clock_rate

    def report_block(self, ssrc: int, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """Build the report block about source ``ssrc`` and close the reporting interval (A.3)."""
        expected = self.expected
        received = self.received
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior = expected
        self._received_prior = received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-(1 << 23), min((1 << 23) - 1, expected - received))
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_seq=self.extended_max_seq & _U32,
            jitter=min(_U32, int(self._jitter)),
            lsr=lsr,
            dlsr=dlsr,
        )
