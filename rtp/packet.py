"""RFC 3550 RTP packets: strict parsing, serialization and sequence arithmetic.

Everything here is pure (no sockets, no clocks) so that the receive path can be
tested exhaustively.  The parser is deliberately strict: a media socket is an
untrusted input, and a malformed datagram must turn into one well-typed
exception (a subclass of :class:`RtpError`) that the session can count and drop,
never into an ``IndexError`` or ``struct.error`` escaping from the middle of the
media loop.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = [
    "RTP_VERSION",
    "BadExtension",
    "BadPadding",
    "BadVersion",
    "FieldOutOfRange",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "SequenceUnwrapper",
    "TimestampUnwrapper",
    "TruncatedPacket",
    "is_rtcp",
    "seq_diff",
    "ts_diff",
]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_EXT_HEADER = struct.Struct("!HH")  # profile-defined id, length in 32-bit words
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


class RtpError(ValueError):
    """Base class of every error raised for a malformed RTP packet or field."""


class TruncatedPacket(RtpError):
    """The datagram ends before the header (or its CSRC list) does."""


class BadVersion(RtpError):
    """The version field is not 2 (often: not RTP at all, e.g. STUN or DTLS)."""


class BadPadding(RtpError):
    """The P bit is set but the padding count is 0 or exceeds the packet body."""


class BadExtension(RtpError):
    """The header extension is cut short or not a whole number of 32-bit words."""


class FieldOutOfRange(RtpError):
    """A field does not fit its wire width (raised when serializing)."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """RFC 3550 section 5.3.1 header extension.

    ``profile`` is the 16-bit "defined by profile" value (0xBEDE for RFC 8285
    one-byte headers) and ``data`` the extension body, which must be a whole
    number of 32-bit words.  We keep the body opaque: the gateway does not use
    any extension, but must relay/round-trip them faithfully.
    """

    profile: int
    data: bytes = b""

    def validate(self) -> None:
        """Raise :class:`BadExtension`/:class:`FieldOutOfRange` if it cannot be encoded."""
        if not 0 <= self.profile <= _U16:
            raise FieldOutOfRange(f"extension profile {self.profile} does not fit 16 bits")
        if len(self.data) % 4:
            raise BadExtension(f"extension body is {len(self.data)} bytes, not a multiple of 4")
        if len(self.data) // 4 > _U16:
            raise BadExtension(f"extension body of {len(self.data)} bytes is too long")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 section 5.1).

    ``padding`` is the number of padding octets, *including* the final count
    octet, so 0 means "P bit clear".  Padding octets other than the count are
    written as zeros; their received values are not kept (RFC 3550 gives them
    no meaning).  Field ranges are checked by :meth:`serialize` (and therefore
    by anyone who builds a packet and sends it), not at construction, so that
    a half-built packet can still be inspected and ``dataclasses.replace``-d.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one datagram; raise a :class:`RtpError` subclass if it is malformed."""
        length = len(data)
        if length < _HEADER.size:
            raise TruncatedPacket(f"RTP packet of {length} bytes is shorter than the 12-byte header")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data, 0)
        version = first >> 6
        if version != RTP_VERSION:
            raise BadVersion(f"RTP version {version}, expected {RTP_VERSION}")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        offset = _HEADER.size + 4 * csrc_count
        if length < offset:
            raise TruncatedPacket(f"RTP packet of {length} bytes cannot hold {csrc_count} CSRCs")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, _HEADER.size) if csrc_count else ()

        extension: RtpExtension | None = None
        if has_extension:
            if length < offset + _EXT_HEADER.size:
                raise BadExtension("X bit set but the packet ends before the extension header")
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            offset += _EXT_HEADER.size
            end = offset + 4 * words
            if length < end:
                raise BadExtension(f"extension claims {4 * words} bytes but only {length - offset} remain")
            extension = RtpExtension(profile=profile, data=bytes(data[offset:end]))
            offset = end

        padding = 0
        if has_padding:
            padding = data[-1] if length > offset else 0
            if padding == 0:
                raise BadPadding("P bit set but the padding count is 0")
            if padding > length - offset:
                raise BadPadding(f"padding count {padding} exceeds the {length - offset}-byte body")
        payload = bytes(data[offset : length - padding])
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=payload,
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=padding,
        )

    def validate(self) -> None:
        """Raise a :class:`RtpError` subclass if any field does not fit its wire width."""
        if not 0 <= self.payload_type <= 0x7F:
            raise FieldOutOfRange(f"payload type {self.payload_type} is not in 0..127")
        if not 0 <= self.sequence <= _U16:
            raise FieldOutOfRange(f"sequence number {self.sequence} is not in 0..65535")
        if not 0 <= self.timestamp <= _U32:
            raise FieldOutOfRange(f"timestamp {self.timestamp} does not fit 32 bits")
        if not 0 <= self.ssrc <= _U32:
            raise FieldOutOfRange(f"SSRC {self.ssrc} does not fit 32 bits")
        if len(self.csrcs) > 15:
            raise FieldOutOfRange(f"{len(self.csrcs)} CSRCs, at most 15 fit the CC field")
        for csrc in self.csrcs:
            if not 0 <= csrc <= _U32:
                raise FieldOutOfRange(f"CSRC {csrc} does not fit 32 bits")
        if not 0 <= self.padding <= 0xFF:
            raise BadPadding(f"padding of {self.padding} octets is not in 0..255")
        if not isinstance(self.payload, bytes | bytearray | memoryview):
            raise FieldOutOfRange(f"payload must be bytes, not {type(self.payload).__name__}")
        if self.extension is not None:
            self.extension.validate()

    def serialize(self) -> bytes:
        """Encode to wire format, validating every field first."""
        self.validate()
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            parts.append(_EXT_HEADER.pack(self.extension.profile, len(self.extension.data) // 4))
            parts.append(bytes(self.extension.data))
        parts.append(bytes(self.payload))
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 section 4).

    RTCP packet types 192..223 land, once the marker bit is masked off, in the
    RTP payload-type range 64..95 that RFC 5761 forbids for RTP when muxing.
    """
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


def _signed_diff(a: int, b: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((a - b + half) & ((1 << bits) - 1)) - half


def seq_diff(a: int, b: int) -> int:
    """Signed 16-bit distance ``a - b`` in ``-32768..32767``: how far ``a`` is ahead of ``b``.

    ``seq_diff(0, 65535) == 1`` (wrapped forwards), ``seq_diff(65535, 0) == -1``.
    """
    return _signed_diff(a, b, 16)


def ts_diff(a: int, b: int) -> int:
    """Signed 32-bit distance ``a - b`` between two RTP timestamps."""
    return _signed_diff(a, b, 32)


class _Unwrapper:
    """Extends an N-bit wrapping counter into an unbounded integer.

    Each value is placed at the extended value nearest to the highest one seen
    so far, i.e. within half the counter range.  Forward jumps (the normal
    case, including wrap-around) advance the reference; values slightly behind
    it (reordered packets) are placed before it without moving it back, so a
    late packet from before a wrap is still mapped into the previous cycle.
    The first value is returned unchanged; a value reordered before the first
    one may therefore unwrap to a negative number, which keeps differences
    right and is harmless to callers that only compare or subtract.
    """

    _bits = 16

    def __init__(self) -> None:
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        """The highest extended value returned so far (``None`` before the first)."""
        return self._highest

    def reset(self) -> None:
        """Forget the reference (e.g. on an SSRC change)."""
        self._highest = None

    def unwrap(self, value: int) -> int:
        """Return the extended value of ``value``; raise ``ValueError`` if it is out of range."""
        if not 0 <= value < (1 << self._bits):
            raise ValueError(f"{value} is not a {self._bits}-bit value")
        if self._highest is None:
            self._highest = value
            return value
        extended = self._highest + _signed_diff(value, self._highest & ((1 << self._bits) - 1), self._bits)
        if extended > self._highest:
            self._highest = extended
        return extended


class SequenceUnwrapper(_Unwrapper):
    """Extended (unwrapped) RTP sequence numbers; see :class:`_Unwrapper`."""

    _bits = 16


class TimestampUnwrapper(_Unwrapper):
    """Extended (unwrapped) 32-bit RTP timestamps; see :class:`_Unwrapper`."""

    _bits = 32


class SequenceSpan:
    """Packets received against the span of sequence numbers seen (RFC 3550 A.3's "expected"):
    the packets lost so far on one stream, duplicates counted once as received."""

    def __init__(self) -> None:
        self._unwrap = SequenceUnwrapper()
        self.low: int | None = None
        self.high: int | None = None  # the newest (highest extended) sequence number seen
        self._received = 0

    def unwrap(self, sequence: int) -> int:
        """The extended sequence number of a packet (not yet counted: a duplicate never is)."""
        return self._unwrap.unwrap(sequence)

    def count(self, seq: int) -> None:
        """Count one received packet by its extended sequence number."""
        self._received += 1
        if self.low is None or seq < self.low:
            self.low = seq
        if self.high is None or seq > self.high:
            self.high = seq

    @property
    def lost(self) -> int:
        if self.low is None or self.high is None:
            return 0
        return max(0, self.high - self.low + 1 - self._received)


class TimestampScale:
    """RTP timestamps to audio samples and back, when the RTP clock is not the audio's rate (G.722:
    16 kHz audio on an 8000 clock, RFC 3551; Opus decoded at 16 kHz on a 48000 clock, RFC 7587).

    A stream's timestamps need not be multiples of the ratio (Opus's 48000 ticks per 16 kHz sample
    is 3): the first timestamp's remainder is kept and put back on the way out, so timestamps
    handed back are the sender's own."""

    def __init__(self, sample_rate: int, timestamp_rate: int) -> None:
        common = math.gcd(sample_rate, timestamp_rate)
        self._num, self._den = sample_rate // common, timestamp_rate // common
        self._unwrap = TimestampUnwrapper()
        self._phase: int | None = None

    def to_samples(self, timestamp: int) -> int:
        """A packet's 32-bit RTP timestamp, unwrapped, in samples."""
        unwrapped = self._unwrap.unwrap(timestamp)
        if self._phase is None:
            self._phase = unwrapped * self._num % self._den
        return unwrapped * self._num // self._den

    def to_timestamp(self, samples: int) -> int:
        """The 32-bit RTP timestamp of a position in samples."""
        return ((samples * self._den + (self._phase or 0)) // self._num) & 0xFFFFFFFF
