"""Adaptive jitter buffer: reorders received audio and plays it out one frame per media tick.

Model
-----
The buffer keeps received audio on a sample-accurate timeline of (unwrapped)
RTP timestamps and a play position ``play_ts``.  Every :meth:`JitterBuffer.get`
(called once per ``frame_ms`` by the media clock) returns the audio in
``[play_ts, play_ts + frame)`` and normally advances ``play_ts`` by one frame,
so packets of any size (10-60 ms) and any alignment map onto 20 ms frames.

Delay is measured the NetEq way, relative to the fastest packet: for each
packet ``rel = arrival - timestamp / rate``; the minimum of ``rel`` over the
last 2 s is the "no-jitter" arrival curve (a short window so that clock drift
does not bias it), and ``rel - min`` is that packet's jitter.  The *current
delay* is how long ago a no-jitter packet for ``play_ts`` would have arrived
(``now - min_rel - play_ts / rate``): a packet is late exactly when its jitter
exceeds it.  The *target delay* is the 95th percentile of jitter over the last
5 s (or a fresh peak seen twice in the last 10 packets, whichever is larger)
plus half a frame for the unknown phase of the media clock, clamped to
``[min_delay_ms, max_delay_ms]``.  It starts at ``initial_delay_ms``, is
replaced by the measurement after the first 50 packets, then rises immediately
and falls with an 8 s time constant, so a jitter burst is absorbed at once and
the delay is only given back once the network has been calm for a while.

Control, once per ``get``:

* current delay 3/4 of a frame above target: drop one frame, preferring a
  low-energy one (forced when two frames above), at most one per 100 ms
  (per 40 ms when four frames above).  A sender clock 0.5 % fast gains a
  frame every 4 s, so this keeps drift bounded.  Far above ``max_delay_ms``
  (after a network stall) buffered audio is skipped at once.
* current delay half a frame below target: insert one concealed frame
  (without consuming audio) where the signal is quiet (forced 3/4 of a frame
  below), at most one per 100 ms.
* frame missing and nothing buffered after it (underrun): conceal without
  advancing (a "stall"); the late packet then plays when it comes.  If a
  later packet shows up instead, the stalled time is credited against the
  gap, so a lost packet costs one concealed frame, not two.
* frame missing but later audio buffered: the packet is lost; conceal and
  advance.
* once the concealer has faded to silence (60 ms), or the next packet
  starts a talk spurt (marker), or lies more than 1 s ahead, the play position
  is re-anchored ``target`` before that packet instead of playing out the gap.

Codecs decoded at play-out (Opus): :meth:`JitterBuffer.put_encoded` stores the payload and
the buffer's ``playout_decoder`` decodes it when it is played, in play-out order, and conceals
missing frames itself (from the next packet's in-band FEC when it is buffered, else its own
PLC): both need the decoder's state to be exactly at the missing frame. Everything else (timing,
delay control, resync) is the same; a frame dropped to shrink the delay is decoded first when
its energy is looked at, and skipped without decoding when buffered audio is skipped at once.

Frame types: ``EMPTY`` before the first packet is played and whenever the
output is plain silence because the concealer has faded out; ``CONCEALED`` when
any of the frame is synthetic; ``NORMAL`` when it is all received audio.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rtp.packet import SequenceUnwrapper, TimestampUnwrapper
from rtp.plc import Concealer

__all__ = ["FrameType", "JitterBuffer", "JitterFrame", "JitterStats", "PlayoutDecoder", "PutResult"]

Pcm = npt.NDArray[np.int16]

_MIN_WINDOW_S = 2.0  # window of the "fastest packet" reference
_JITTER_WINDOW_S = 5.0  # window of the jitter percentile
_PEAK_PACKETS = 10  # a jitter value seen twice in this many packets counts at once
_PERCENTILE_EVERY = 10  # packets between two recomputations of the window percentile
_TARGET_FALL_TAU_MS = 8000.0
_DELAY_SAMPLES = 25  # current-delay estimate: mean of the last N measurements
_WARMUP_PACKETS = 50  # do not go below the initial delay before this many packets
_ADJUST_INTERVAL = 5  # frames between two drops/insertions (normal)
_FAST_ADJUST_INTERVAL = 2  # frames between two drops when far above target
_RESYNC_S = 1.0
_LOW_ENERGY_RATIO = 0.1  # a frame 10 dB below the running level counts as quiet
_LOW_ENERGY_FLOOR = 100.0**2  # ... as does anything below ~-50 dBFS
_DROP_FADE_MS = 5


class FrameType(enum.Enum):
    """What a frame returned by :meth:`JitterBuffer.get` contains."""

    NORMAL = "normal"
    CONCEALED = "concealed"
    EMPTY = "empty"


class PutResult(enum.Enum):
    """What :meth:`JitterBuffer.put` did with a packet."""

    ACCEPTED = "accepted"
    LATE = "late"
    DUPLICATE = "duplicate"
    OVERFLOW = "overflow"


@dataclass(slots=True)
class JitterFrame:
    """One frame of play-out audio.

    ``pcm`` is int16 and exactly one frame long (zeros for ``EMPTY``).
    ``timestamp`` is the 32-bit RTP timestamp of the first sample when the
    frame contains received audio (``None`` for wholly synthetic frames); it
    lets callers correlate output with the stream (and benchmarks measure delay).

    ``wideband`` is the same 20 ms at 16 kHz when the call's codec is wideband (G.722, Opus): the
    session then puts the 8 kHz version of it in ``pcm`` (what VAD, echo handling and
    turn-taking work on) and keeps the 16 kHz audio for the speech recognizer. ``None`` on a
    narrowband (G.711) call.
    """

    type: FrameType
    pcm: Pcm
    timestamp: int | None = None
    wideband: Pcm | None = None


@dataclass
class JitterStats:
    """Counters and gauges of one buffer (packet counts and frame counts as noted).

    Packets: ``received`` (accepted), ``lost`` (never arrived, from sequence
    numbers), ``late``, ``duplicate``, ``overflow``.  Frames: ``played``
    (NORMAL), ``concealed`` (CONCEALED), ``empty`` (EMPTY), ``drift_dropped``
    (frames dropped or skipped to shrink the delay), ``drift_inserted``
    (frames deliberately inserted to grow it), ``underruns`` (stalls because
    nothing was buffered), ``resyncs`` (timeline restarts after a timestamp
    jump).  Gauges: ``target_delay_ms`` (what the buffer aims for),
    ``current_delay_ms`` (how far play-out lags the fastest possible arrival of
    the audio being played; it keeps growing while nothing arrives, e.g. in
    silence suppression), ``buffered_ms`` (audio held ahead of the play
    position), ``jitter_ms`` (RFC 3550 interarrival jitter).
    """

    target_delay_ms: float = 0.0
    current_delay_ms: float = 0.0
    jitter_ms: float = 0.0
    buffered_ms: float = 0.0
    received: int = 0
    played: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    overflow: int = 0
    concealed: int = 0
    empty: int = 0
    drift_dropped: int = 0
    drift_inserted: int = 0
    underruns: int = 0
    resyncs: int = 0

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict, e.g. for structured logs or a metrics exporter."""
        return asdict(self)


class PlayoutDecoder(Protocol):
    """A codec the buffer decodes at play-out time and whose own concealment replaces ours (Opus:
    rtp/opuscodec.py). ``samples`` raises ``ValueError`` for a payload that cannot be decoded."""

    @property
    def faded_out(self) -> bool: ...

    def samples(self, payload: bytes) -> int: ...

    def decode(self, payload: bytes) -> Pcm: ...

    def conceal(self, n_samples: int, upcoming: bytes | None = None) -> Pcm: ...

    def good_frame(self, pcm: Pcm) -> Pcm: ...

    def reset(self) -> None: ...


@dataclass(slots=True)
class _Packet:
    pcm: Pcm | None  # None until a play-out decoder has decoded `payload`
    marker: bool
    length: int  # samples
    payload: bytes | None = None


def _energy(pcm: Pcm) -> float:
    samples = pcm.astype(np.float64)
    return float(np.dot(samples, samples) / max(1, len(samples)))


class JitterBuffer:
    """Adaptive jitter buffer for one RTP source; see the module docstring for the algorithm.

    Not thread-safe: call :meth:`put` and :meth:`get` from the same thread
    (the media clock thread).  Pass ``marker=packet.marker`` to :meth:`put`
    so talk spurts are re-synced immediately rather than after the concealer
    has faded out.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_ms: int = 20,
        min_delay_ms: int = 20,
        max_delay_ms: int = 300,
        initial_delay_ms: int = 40,
        timestamp_rate: int | None = None,
        playout_decoder: PlayoutDecoder | None = None,
    ) -> None:
        """``clock_rate`` is the audio's sample rate; ``timestamp_rate`` the RTP clock when it
        differs (G.722: 16 kHz audio, timestamps at 8000, RFC 3551; Opus: decoded at 16 kHz,
        timestamps at 48000, RFC 7587). The buffer works in samples throughout; RTP timestamps
        are scaled on the way in and out. ``playout_decoder``: see :meth:`put_encoded`."""
        timestamp_rate = timestamp_rate or clock_rate
        if clock_rate <= 0 or frame_ms <= 0 or (clock_rate * frame_ms) % 1000:
            raise ValueError(f"frame_ms={frame_ms} is not a whole number of samples at {clock_rate} Hz")
        if timestamp_rate <= 0 or (timestamp_rate * frame_ms) % 1000:
            raise ValueError(f"frame_ms={frame_ms} is not a whole number of RTP clock ticks at {timestamp_rate} Hz")
        self.timestamp_rate = timestamp_rate
        common = math.gcd(clock_rate, timestamp_rate)
        self._ts_num, self._ts_den = clock_rate // common, timestamp_rate // common
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError(f"need 0 <= min_delay_ms ({min_delay_ms}) <= max_delay_ms ({max_delay_ms})")
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.frame_samples = clock_rate * frame_ms // 1000
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.initial_delay_ms = min(max(initial_delay_ms, min_delay_ms), max_delay_ms)
        self._capacity = max(clock_rate, 3 * max_delay_ms * clock_rate // 1000)
        self._resync_samples = int(_RESYNC_S * clock_rate)
        self._stats = JitterStats(target_delay_ms=float(self.initial_delay_ms))
        self._target_ms = float(self.initial_delay_ms)
        self._lost_before_reset = 0
        self.playout_decoder = playout_decoder
        self._concealer: Concealer | PlayoutDecoder = playout_decoder or Concealer(clock_rate)
        self._reset_state()

    # ----------------------------------------------------------------- state

    def _reset_state(self) -> None:
        self._ts_unwrap = TimestampUnwrapper()
        self._ts_phase: int | None = None
        self._seq_unwrap = SequenceUnwrapper()
        self._packets: dict[int, _Packet] = {}
        self._keys: list[int] = []
        self._play_ts: int | None = None
        self._started = False
        self._stall = 0
        self._played_keys: deque[int] = deque(maxlen=256)
        self._played_set: set[int] = set()
        self._concealer.reset()
        self._seq_low: int | None = None
        self._seq_high: int | None = None
        self._seen_packets = 0
        self._packets_since_sync = 0
        self._measured = False
        self._clear_timing()
        self._jitter: deque[tuple[float, float]] = deque()  # (arrival, jitter ms)
        self._recent_jitter: deque[float] = deque(maxlen=_PEAK_PACKETS)
        self._candidate_ms = self._target_ms
        self._candidate_dirty = False
        self._percentile: float | None = None
        self._since_percentile = 0
        self._rfc_jitter_ms = 0.0
        self._last_transit: float | None = None
        self._since_adjust = 0
        self._level = 0.0
        self._last_energy = 0.0
        self._fade_from: Pcm | None = None

    def _clear_timing(self) -> None:
        self._min_rel: deque[tuple[float, float]] = deque()  # monotonic: (arrival, rel) increasing rel
        self._last_rel: float | None = None
        self._last_arrival: float | None = None
        self._delays: deque[float] = deque(maxlen=_DELAY_SAMPLES)
        self._delay_bias = 0.0

    def reset(self) -> None:
        """Start over for a new source (SSRC change).

        Counters are kept (they describe the call) and so is the target delay
        (the network path is the same); everything tied to the old timeline
        is dropped and output is EMPTY until the new stream's first packet.
        """
        lost = self._packet_loss()
        self._lost_before_reset += lost
        self._reset_state()
        self._stats.lost = self._lost_before_reset

    @property
    def stats(self) -> JitterStats:
        """Live statistics (a copy; cheap)."""
        stats = JitterStats(**asdict(self._stats))
        stats.target_delay_ms = round(self._target_ms, 3)
        delay = self._current_delay_ms()
        stats.current_delay_ms = round(delay, 3) if delay is not None else 0.0
        stats.jitter_ms = round(self._rfc_jitter_ms, 3)
        stats.buffered_ms = round(1000.0 * self._buffered_samples() / self.clock_rate, 3)
        stats.lost = self._lost_before_reset + self._packet_loss()
        return stats

    @property
    def target_delay_ms(self) -> float:
        """Current target delay (ms)."""
        return self._target_ms

    # ------------------------------------------------------------------ put

    def put(self, sequence: int, timestamp: int, pcm: Pcm, arrival_s: float, marker: bool = False) -> PutResult:
        """Insert a decoded packet received at ``arrival_s`` (seconds, any monotonic clock).

        ``marker`` is the RTP marker bit (start of a talk spurt).  The audio
        is copied.  Returns what happened to the packet.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1 or not len(pcm):
            raise ValueError("pcm must be a non-empty 1-D numpy int16 array")
        return self._insert(sequence, timestamp, _Packet(pcm, marker, len(pcm)), arrival_s)

    def put_encoded(self, sequence: int, timestamp: int, payload: bytes, arrival_s: float,
                    marker: bool = False) -> PutResult:
        """Insert an encoded packet, decoded by the ``playout_decoder`` when it is played.

        Raises ``ValueError`` (nothing stored) when the decoder says the payload cannot be
        decoded: the frame is then missing, and concealed like a lost one."""
        if self.playout_decoder is None:
            raise ValueError("put_encoded needs a buffer made with a playout_decoder")
        length = self.playout_decoder.samples(payload)
        return self._insert(sequence, timestamp, _Packet(None, marker, length, bytes(payload)), arrival_s)

    def _insert(self, sequence: int, timestamp: int, packet: _Packet, arrival_s: float) -> PutResult:
        if not 0 <= sequence <= 0xFFFF:
            raise ValueError(f"sequence {sequence} is not 16-bit")
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {timestamp} is not 32-bit")
        marker = packet.marker
        unwrapped = self._ts_unwrap.unwrap(timestamp)
        if self._ts_phase is None:  # Opus: a 48000 timestamp's remainder in 16 kHz samples, put back on output
            self._ts_phase = unwrapped * self._ts_num % self._ts_den
        ts = unwrapped * self._ts_num // self._ts_den
        seq = self._seq_unwrap.unwrap(sequence)
        if ts in self._packets or ts in self._played_set:
            self._stats.duplicate += 1
            return PutResult.DUPLICATE
        newest_seq = self._seq_high if self._seq_high is not None else seq
        self._note_sequence(seq)
        self._observe_timing(ts, arrival_s, marker)
        length = packet.length
        result = PutResult.ACCEPTED
        if self._play_ts is None:
            self._anchor(ts)
        elif ts + length <= self._play_ts:
            if self._play_ts - ts > self._resync_samples and not self._keys:
                self._resync(ts)
            else:
                result = PutResult.LATE
        elif ts - self._play_ts > self._capacity:
            if not self._keys:
                self._resync(ts)
            elif seq != newest_seq + 1:
                # A flood of far-future audio; but the next packet in sequence is a timestamp
                # jump of the same stream, which get() re-anchors on once it gets there.
                result = PutResult.OVERFLOW
        if self._play_ts is not None:
            no_jitter_arrival = self._min_rel[0][1] + self._play_ts / self.clock_rate
            self._delays.append(arrival_s - no_jitter_arrival - self._delay_bias)
        if result is PutResult.LATE:
            self._stats.late += 1
            return result
        if result is PutResult.OVERFLOW:
            self._stats.overflow += 1
            return result
        assert self._play_ts is not None
        if packet.pcm is not None:
            packet.pcm = np.array(packet.pcm, dtype=np.int16, copy=True)
        if ts < self._play_ts:  # straddles the play position: keep the part still to come
            if packet.pcm is None:  # an encoded packet cannot be cut: what is still to come is lost
                self._stats.late += 1
                return PutResult.LATE
            packet.pcm = packet.pcm[self._play_ts - ts :]
            packet.length = len(packet.pcm)
            ts = self._play_ts
            if ts in self._packets:
                self._stats.duplicate += 1
                return PutResult.DUPLICATE
        self._packets[ts] = packet
        bisect.insort(self._keys, ts)
        self._stats.received += 1
        return result

    def _note_sequence(self, seq: int) -> None:
        self._seen_packets += 1
        if self._seq_low is None or seq < self._seq_low:
            self._seq_low = seq
        if self._seq_high is None or seq > self._seq_high:
            self._seq_high = seq

    def _packet_loss(self) -> int:
        if self._seq_low is None or self._seq_high is None:
            return 0
        return max(0, self._seq_high - self._seq_low + 1 - self._seen_packets)

    def _observe_timing(self, ts: int, arrival_s: float, marker: bool) -> None:
        """Update the no-jitter reference, the jitter history and the RFC 3550 jitter."""
        rel = arrival_s - ts / self.clock_rate
        if self._last_rel is not None and self._last_arrival is not None:
            new_spurt = marker and arrival_s - self._last_arrival > 3 * self.frame_ms / 1000
            if abs(rel - self._last_rel) > _RESYNC_S or new_spurt:
                # Timestamp discontinuity, or a talk spurt after a pause across which
                # the sender's timestamps may not have tracked real time: new reference.
                self._clear_timing()
                self._last_transit = None
        self._last_rel = rel
        self._last_arrival = arrival_s
        if self._last_transit is not None:
            d_ms = 1000.0 * abs(rel - self._last_transit)
            self._rfc_jitter_ms += (d_ms - self._rfc_jitter_ms) / 16.0
        self._last_transit = rel
        window = self._min_rel
        while window and window[-1][1] >= rel:
            window.pop()
        window.append((arrival_s, rel))
        while window[0][0] < arrival_s - _MIN_WINDOW_S:
            window.popleft()
        jitter_ms = 1000.0 * (rel - window[0][1])
        self._jitter.append((arrival_s, jitter_ms))
        while self._jitter[0][0] < arrival_s - _JITTER_WINDOW_S:
            self._jitter.popleft()
        self._recent_jitter.append(jitter_ms)
        self._packets_since_sync += 1
        self._candidate_dirty = True

    def _target_aligned(self) -> int:
        """Target delay rounded up to whole frames, in samples."""
        frames = math.ceil(self._target_ms / self.frame_ms - 1e-9)
        return max(1, frames) * self.frame_samples

    def _anchor(self, ts: int) -> None:
        self._play_ts = ts - self._target_aligned()
        self._stall = 0
        self._delays.clear()  # measured against the old play position
        self._delay_bias = 0.0

    def _resync(self, ts: int) -> None:
        for key in self._keys:
            del self._packets[key]
        self._keys.clear()
        self._anchor(ts)
        self._stats.resyncs += 1

    # ------------------------------------------------------------------ get

    def get(self) -> JitterFrame:
        """Return the next frame (exactly ``frame_samples`` int16 samples); call once per frame."""
        self._update_target()
        self._since_adjust += 1
        before = self._play_ts
        frame = self._next_frame()
        if before is not None and self._play_ts is not None:
            advanced = self._play_ts - before
            self._delay_bias += (self.frame_samples - advanced) / self.clock_rate
        if frame.type is FrameType.NORMAL:
            self._stats.played += 1
        elif frame.type is FrameType.CONCEALED:
            self._stats.concealed += 1
        else:
            self._stats.empty += 1
        self._last_energy = _energy(frame.pcm)
        return frame

    def _update_target(self) -> None:
        if self._candidate_dirty and self._jitter:
            self._since_percentile += 1
            if self._percentile is None or self._since_percentile >= _PERCENTILE_EVERY:
                # Nearest-rank 95th percentile: the k-th largest, k = 5 % of the window (the
                # maximum while the window is short). It only drives the slow fall, so it is
                # refreshed every few packets; the peak term below keeps the rise immediate.
                values = [j for _, j in self._jitter]
                rank = max(1, math.ceil(0.05 * len(values)))
                self._percentile = heapq.nlargest(rank, values)[-1]
                self._since_percentile = 0
            level = self._percentile
            if len(self._recent_jitter) >= 2:
                level = max(level, sorted(self._recent_jitter)[-2])
            candidate = level + self.frame_ms / 2
            warming_up = self._packets_since_sync < _WARMUP_PACKETS
            if warming_up:
                candidate = max(candidate, self.initial_delay_ms)
            self._candidate_ms = min(max(candidate, self.min_delay_ms), self.max_delay_ms)
            self._candidate_dirty = False
            if not warming_up and not self._measured:
                # The initial delay was a guess: replace it by the first real estimate at once
                # (the slow fall is for giving back delay that measured jitter asked for).
                self._measured = True
                self._target_ms = self._candidate_ms
        if self._candidate_ms >= self._target_ms:
            self._target_ms = self._candidate_ms
        else:
            self._target_ms += (self._candidate_ms - self._target_ms) * self.frame_ms / _TARGET_FALL_TAU_MS

    def _current_delay_ms(self) -> float | None:
        if not self._delays:
            return None
        return 1000.0 * (sum(self._delays) / len(self._delays) + self._delay_bias)

    def _buffered_samples(self) -> int:
        if self._play_ts is None or not self._keys:
            return 0
        end = max(key + self._packets[key].length for key in self._keys)
        return max(0, end - self._play_ts)

    def _assemble(self, start: int) -> tuple[Pcm, npt.NDArray[np.bool_]]:
        """Received audio in ``[start, start + frame)`` and a mask of which samples exist."""
        n = self.frame_samples
        out = np.zeros(n, dtype=np.int16)
        have = np.zeros(n, dtype=np.bool_)
        end = start + n
        for key in self._keys:
            if key >= end:
                break
            pcm = self._audio(key)
            lo = max(key, start)
            hi = min(key + len(pcm), end)
            if hi <= lo:
                continue
            region = slice(lo - start, hi - start)
            fill = ~have[region]
            out[region][fill] = pcm[lo - key : hi - key][fill]
            have[region] = True
        return out, have

    def _advance(self, samples: int) -> None:
        """Move the play position forward and forget audio entirely behind it."""
        assert self._play_ts is not None
        self._play_ts += samples
        while self._keys:
            key = self._keys[0]
            if key + self._packets[key].length > self._play_ts:
                break
            self._keys.pop(0)
            del self._packets[key]
            if len(self._played_keys) == self._played_keys.maxlen:
                self._played_set.discard(self._played_keys[0])
            self._played_keys.append(key)
            self._played_set.add(key)

    def _audio(self, key: int) -> Pcm:
        """A stored packet's audio, decoded now (in play-out order) if it came encoded."""
        packet = self._packets[key]
        if packet.pcm is None:
            assert self.playout_decoder is not None and packet.payload is not None
            pcm = np.asarray(self.playout_decoder.decode(packet.payload), dtype=np.int16)
            if len(pcm) != packet.length:  # a corrupt packet concealed at another length
                fitted = np.zeros(packet.length, dtype=np.int16)
                fitted[: min(len(pcm), packet.length)] = pcm[: packet.length]
                pcm = fitted
            packet.pcm, packet.payload = pcm, None
        return packet.pcm

    def _covered(self, start: int) -> bool:
        """Whether stored packets hold every sample of the frame at `start` (nothing is decoded)."""
        end, reached = start + self.frame_samples, start
        for key in self._keys:
            if key >= end or key > reached:
                break
            reached = max(reached, key + self._packets[key].length)
        return reached >= end

    def _upcoming_payload(self, start: int) -> bytes | None:
        """The encoded packet that starts right after a missing frame at `start`: its in-band FEC
        (Opus) can rebuild that frame."""
        packet = self._packets.get(start + self.frame_samples)
        return None if packet is None else packet.payload

    def _is_quiet(self, energy: float) -> bool:
        return energy < _LOW_ENERGY_FLOOR or energy < _LOW_ENERGY_RATIO * self._level

    def _synthetic(self, lost: bool = True) -> JitterFrame:
        """A concealed frame (or EMPTY once the concealer has faded to silence). `lost`: it stands
        for a missing frame (which the next packet's FEC may carry), not a frame inserted to grow
        the delay in front of audio that is there."""
        self._fade_from = None  # a pending drop cross-fade is moot once we synthesize
        faded = self._concealer.faded_out
        if self.playout_decoder is not None and self._play_ts is not None:
            upcoming = self._upcoming_payload(self._play_ts) if lost else None
            pcm = self.playout_decoder.conceal(self.frame_samples, upcoming)
        else:
            pcm = self._concealer.conceal(self.frame_samples)
        return JitterFrame(FrameType.EMPTY if faded else FrameType.CONCEALED, pcm)

    def _next_frame(self) -> JitterFrame:
        n = self.frame_samples
        if self._play_ts is None:
            return JitterFrame(FrameType.EMPTY, np.zeros(n, dtype=np.int16))
        if self._started:
            inserted = self._control()
            if inserted is not None:
                return inserted
        for _ in range(2):
            pcm, have = self._assemble(self._play_ts)
            if have.any():
                return self._play_received(pcm, have)
            upcoming = self._keys[0] if self._keys else None
            if not self._started:
                if upcoming is not None:
                    self._advance(n)
                return JitterFrame(FrameType.EMPTY, np.zeros(n, dtype=np.int16))
            if upcoming is None:  # underrun: wait for the late packet
                self._stall += n
                self._stats.underruns += 1
                return self._synthetic()
            gap = upcoming - self._play_ts
            if self._concealer.faded_out or self._packets[upcoming].marker or gap > self._resync_samples:
                anchor = upcoming - self._target_aligned()
                if anchor > self._play_ts:
                    self._advance(anchor - self._play_ts)
                self._stall = 0
            elif self._stall:
                self._advance(min(self._stall, gap))  # the stall already covered part of the gap
                self._stall = 0
                continue
            break
        # Lost: conceal and move on.
        frame = self._synthetic()
        self._advance(n)
        return frame

    def _play_received(self, pcm: Pcm, have: npt.NDArray[np.bool_]) -> JitterFrame:
        assert self._play_ts is not None
        timestamp = ((self._play_ts * self._ts_den + (self._ts_phase or 0)) // self._ts_num) & 0xFFFFFFFF
        if self._fade_from is not None:
            # Smooth the join after dropping audio: fade from the dropped frame's start.
            fade = min(len(pcm), self.clock_rate * _DROP_FADE_MS // 1000)
            ramp = (np.arange(fade) + 1.0) / (fade + 1.0)
            head = self._fade_from[:fade] * (1.0 - ramp) + pcm[:fade] * ramp
            pcm = pcm.copy()
            pcm[:fade] = np.rint(head).astype(np.int16)
            self._fade_from = None
        if have.all():
            out = self._concealer.good_frame(pcm)
            frame_type = FrameType.NORMAL
            energy = _energy(out)
            self._level = energy if not self._started else 0.98 * self._level + 0.02 * energy
        else:
            out = np.empty_like(pcm)
            i = 0
            while i < len(pcm):
                j = i
                while j < len(pcm) and have[j] == have[i]:
                    j += 1
                if have[i]:
                    out[i:j] = self._concealer.good_frame(pcm[i:j])
                else:
                    out[i:j] = self._concealer.conceal(j - i)
                i = j
            frame_type = FrameType.CONCEALED
        self._started = True
        self._stall = 0
        self._advance(self.frame_samples)
        return JitterFrame(frame_type, out, timestamp)

    def _control(self) -> JitterFrame | None:
        """Drop or insert a frame to steer the current delay towards the target."""
        delay = self._current_delay_ms()
        if delay is None or self._play_ts is None:
            return None
        frame_ms = self.frame_ms
        excess = delay - self._target_ms
        if excess >= 0.75 * frame_ms:  # hysteresis: after a drop we are still above target - F/2
            pcm, have = self._assemble(self._play_ts)
            if not have.all():
                return None
            if delay > self.max_delay_ms + 2 * frame_ms:
                # Far too much buffered (e.g. after a network stall): skip it at once.
                frames = min(int(excess // frame_ms), self._buffered_samples() // self.frame_samples - 1)
                if frames > 0:
                    self._fade_from = pcm
                    self._advance(frames * self.frame_samples)
                    self._stats.drift_dropped += frames
                    self._since_adjust = 0
                return None
            interval = _FAST_ADJUST_INTERVAL if excess >= 4 * frame_ms else _ADJUST_INTERVAL
            if self._since_adjust < interval:
                return None
            if self._is_quiet(_energy(pcm)) or excess >= 2 * frame_ms:
                self._fade_from = pcm
                self._advance(self.frame_samples)
                self._stats.drift_dropped += 1
                self._since_adjust = 0
            return None
        deficit = -excess
        # Only with audio waiting: with nothing buffered the underrun path stalls anyway. (Checked
        # without decoding: a play-out decoder must conceal before it decodes that audio.)
        if (deficit >= frame_ms / 2 and self._since_adjust >= _ADJUST_INTERVAL and self._covered(self._play_ts)
                and (self._is_quiet(self._last_energy) or deficit >= 0.75 * frame_ms)):
            self._stats.drift_inserted += 1
            self._since_adjust = 0
            return self._synthetic(lost=False)
        return None
