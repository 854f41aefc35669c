"""RFC 4733 telephone-event (DTMF over RTP): payload codec, receiver and sender.

An event is identified by its RTP timestamp (the instant the tone started);
the sender repeats it in every update packet with a growing duration and
sends the final ("end") packet three times.  Over a lossy, reordering network
the receiver therefore sees each event as a burst of redundant packets, and
its only job is to report each event exactly once.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from rtp.packet import RtpPacket

__all__ = [
    "DIGIT_TO_EVENT",
    "EVENT_TO_DIGIT",
    "DtmfError",
    "DtmfReceiver",
    "DtmfSender",
    "OutgoingEvent",
    "TelephoneEvent",
]

EVENT_TO_DIGIT: dict[int, str] = {
    **{n: str(n) for n in range(10)},
    10: "*",
    11: "#",
    12: "A",
    13: "B",
    14: "C",
    15: "D",
}
DIGIT_TO_EVENT: dict[str, int] = {digit: event for event, digit in EVENT_TO_DIGIT.items()}

_PAYLOAD = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF


class DtmfError(ValueError):
    """A malformed telephone-event payload or an out-of-range field."""


@dataclass(frozen=True)
class TelephoneEvent:
    """The 4-byte RFC 4733 payload: event code, E bit, volume (-dBm0, 0..63), duration (samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Decode exactly 4 bytes; the reserved R bit is ignored, as RFC 4733 requires."""
        if len(data) != _PAYLOAD.size:
            raise DtmfError(f"telephone-event payload must be 4 bytes, got {len(data)}")
        event, flags, duration = _PAYLOAD.unpack(bytes(data))
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        """Encode to 4 bytes (R bit zero); raise :class:`DtmfError` on out-of-range fields."""
        if not 0 <= self.event <= 255:
            raise DtmfError(f"event {self.event} is not in 0..255")
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume {self.volume} is not in 0..63")
        if not 0 <= self.duration <= _MAX_DURATION:
            raise DtmfError(f"duration {self.duration} is not in 0..65535")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0..15, ``None`` for other events (flash, fax tones, ...)."""
        return EVENT_TO_DIGIT.get(self.event)


@dataclass(frozen=True, slots=True)
class _SeenEvent:
    ssrc: int
    timestamp: int
    event: int


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each reported exactly once.

    Rule: a digit is reported on the *first* packet of its event that arrives,
    whatever kind it is (start, update, or an end packet whose start was lost),
    and never again for the same ``(SSRC, RTP timestamp, event code)``.  That
    makes a long press (an event that never ends) report immediately, and
    makes retransmitted starts, redundant end packets and late reordered
    packets harmless.  A recent history of events (not just the last one) is
    kept so that a straggler of the previous digit arriving after the next
    digit started is still recognised.

    RFC 4733 section 2.5.2.1 splits events longer than 0xFFFF samples into
    segments with a new timestamp; a segment that continues an unfinished
    event of the same code which had reached the maximum duration is not
    reported again.
    """

    def __init__(self, payload_type: int | None = None, history: int = 32) -> None:
        self.payload_type = payload_type
        self._seen: deque[_SeenEvent] = deque(maxlen=history)
        self._active: tuple[_SeenEvent, int, bool] | None = None  # event, max duration, ended
        self.malformed = 0

    def reset(self) -> None:
        """Forget all history (new call or SSRC)."""
        self._seen.clear()
        self._active = None

    def feed(self, packet: RtpPacket) -> str | None:
        """Process one telephone-event packet; return its digit the first time the event is seen.

        Packets of another payload type (when ``payload_type`` was given) and
        malformed payloads are ignored (malformed ones are counted in
        ``malformed``); non-digit events (e.g. flash, 16) are tracked but
        return ``None``.
        """
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            return None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except DtmfError:
            self.malformed += 1
            return None
        key = _SeenEvent(packet.ssrc, packet.timestamp, event.event)
        if key in self._seen:
            self._update_active(key, event)
            return None
        continuation = self._is_segment_continuation(key)
        self._seen.append(key)
        self._active = (key, event.duration, event.end)
        if continuation:
            return None
        return event.digit

    def _update_active(self, key: _SeenEvent, event: TelephoneEvent) -> None:
        if self._active is not None and self._active[0] == key:
            _, duration, ended = self._active
            self._active = (key, max(duration, event.duration), ended or event.end)

    def _is_segment_continuation(self, key: _SeenEvent) -> bool:
        if self._active is None:
            return False
        previous, duration, ended = self._active
        if ended or previous.ssrc != key.ssrc or previous.event != key.event:
            return False
        slack = 800  # 100 ms at 8 kHz: the last update before the split may have been lost
        delta = (key.timestamp - previous.timestamp) & 0xFFFFFFFF
        return duration >= _MAX_DURATION - slack and _MAX_DURATION - slack <= delta <= _MAX_DURATION + slack


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One telephone-event packet to send: the session adds sequence number and SSRC."""

    payload: bytes
    marker: bool
    timestamp: int


@dataclass(slots=True)
class _Digit:
    event: int
    duration_ticks: int
    gap_ticks: int


class DtmfSender:
    """Produces RFC 4733 packets for queued digits, one call per media tick.

    For each digit: the first packet has the marker bit; every packet carries
    the event's start timestamp; the duration grows by one frame per tick; the
    last packet has the E bit and is sent three times (on three consecutive
    ticks, RFC 4733 section 2.5.1.4).  Between digits ``next_packet`` returns
    ``None`` for the rest of the gap; because the two end retransmissions fall
    into the gap, the gap is at least two ticks long.  Durations are rounded
    up to whole frames.
    """

    END_REPEATS = 3

    def __init__(self, payload_type: int = 101, clock_rate: int = 8000, frame_ms: int = 20, volume: int = 10):
        if not 96 <= payload_type <= 127:
            raise ValueError(f"telephone-event uses a dynamic payload type (96..127), got {payload_type}")
        if clock_rate <= 0 or frame_ms <= 0:
            raise ValueError("clock_rate and frame_ms must be positive")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} is not in 0..63")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.volume = volume
        self.frame_samples = clock_rate * frame_ms // 1000
        self._queue: deque[_Digit] = deque()
        self._current: _Digit | None = None
        self._start_ts = 0
        self._tick = 0  # ticks since the current digit started
        self._gap_left = 0  # silent ticks still owed before the next digit

    @property
    def busy(self) -> bool:
        """True while a digit is queued (possibly waiting out an inter-digit gap) or still being sent."""
        return bool(self._queue) or self._current is not None

    def queue(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Queue ``digits`` (0-9, *, #, A-D, case-insensitive); all are validated before any is queued."""
        if duration_ms <= 0:
            raise ValueError(f"duration_ms must be positive, got {duration_ms}")
        if gap_ms < 0:
            raise ValueError(f"gap_ms must not be negative, got {gap_ms}")
        duration_ticks = -(-duration_ms // self.frame_ms)
        if duration_ticks * self.frame_samples > _MAX_DURATION:
            raise ValueError(f"duration_ms={duration_ms} exceeds what one event can carry")
        gap_ticks = max(self.END_REPEATS - 1, -(-gap_ms // self.frame_ms))
        events = []
        for char in digits:
            event = DIGIT_TO_EVENT.get(char.upper())
            if event is None:
                raise ValueError(f"invalid DTMF digit {char!r} in {digits!r} (allowed: 0-9 * # A-D)")
            events.append(_Digit(event, duration_ticks, gap_ticks))
        self._queue.extend(events)

    def clear(self) -> None:
        """Drop queued digits; a digit already playing still finishes (ends are never cut short)."""
        self._queue.clear()

    def next_packet(self, rtp_timestamp_now: int) -> OutgoingEvent | None:
        """Return the packet for this tick, or ``None`` when there is nothing to send.

        ``rtp_timestamp_now`` is the media timestamp of the current tick; it
        becomes the event timestamp when a digit starts.
        """
        if self._current is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return None
            if not self._queue:
                return None
            self._current = self._queue.popleft()
            self._start_ts = rtp_timestamp_now & 0xFFFFFFFF
            self._tick = 0
        digit = self._current
        self._tick += 1
        end = self._tick >= digit.duration_ticks
        ticks = min(self._tick, digit.duration_ticks)
        payload = TelephoneEvent(digit.event, end, self.volume, ticks * self.frame_samples).serialize()
        packet = OutgoingEvent(payload=payload, marker=self._tick == 1, timestamp=self._start_ts)
        if self._tick >= digit.duration_ticks + self.END_REPEATS - 1:
            self._current = None
            self._gap_left = digit.gap_ticks - (self.END_REPEATS - 1)
        return packet


class DtmfOutbox:
    """Digit strings other threads asked to send, played out one after another on the media clock.

    `post` may be called from any thread (a deque's append is atomic); everything else runs on the
    media clock. The sender is made lazily with the negotiated event payload type and the audio's
    RTP clock (RFC 4733 times events in it), and dropped between digits when the codec's clock
    changes. With no telephone-event negotiated, posted digits are discarded."""

    def __init__(self) -> None:
        self._posted: deque[str] = deque()
        self._sender: DtmfSender | None = None
        self.sent = 0  # digits started

    def post(self, digits: str) -> None:
        self._posted.append(digits)

    def clock_changed(self, clock_rate: int) -> None:
        if self._sender is not None and self._sender.clock_rate != clock_rate and not self._sender.busy:
            self._sender = None

    def next_packet(self, payload_type: int | None, clock_rate: int, rtp_timestamp_now: int) -> OutgoingEvent | None:
        """This tick's telephone-event packet, if a digit is playing. Raises ValueError (after
        dropping them) for digits the sender refuses."""
        if payload_type is None:
            self._posted.clear()
            return None
        if self._sender is None or not self._sender.busy:
            if not self._posted:
                return None
            if self._sender is None:
                self._sender = DtmfSender(payload_type=payload_type, clock_rate=clock_rate)
            digits = self._posted.popleft()
            self._sender.queue(digits)
            self.sent += len(digits)
        return self._sender.next_packet(rtp_timestamp_now)
