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

Code: the timing half (arrivals -> target and current delay) is :mod:`rtp.delay_manager`, the
store of packets on the sample timeline :mod:`rtp.packet_timeline`; this module decides, frame by
frame, what to play.

Frame types: ``EMPTY`` before the first packet is played and whenever the
output is plain silence because the concealer has faded out; ``CONCEALED`` when
any of the frame is synthetic; ``NORMAL`` when it is all received audio.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rtp.delay_manager import RESYNC_S, DelayManager
from rtp.packet import SequenceSpan, TimestampScale
from rtp.packet_timeline import PacketTimeline, StoredPacket
from rtp.plc import Concealer

__all__ = ["FrameType", "JitterBuffer", "JitterFrame", "JitterStats", "PlayoutDecoder", "PutResult"]

Pcm = npt.NDArray[np.int16]

_ADJUST_INTERVAL = 5  # frames between two drops/insertions (normal)
_FAST_ADJUST_INTERVAL = 2  # frames between two drops when far above target
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


def _energy(pcm: Pcm) -> float:
    samples = pcm.astype(np.float64)
    return float(np.dot(samples, samples) / max(1, len(samples)))


def _cross_fade(dropped: Pcm, pcm: Pcm, fade: int) -> Pcm:
    """`pcm` whose first `fade` samples ramp from the dropped frame's start into it: dropping a
    frame splices two pieces of a waveform, and a hard join clicks."""
    fade = min(len(pcm), fade)
    ramp = (np.arange(fade) + 1.0) / (fade + 1.0)
    head = dropped[:fade] * (1.0 - ramp) + pcm[:fade] * ramp
    out = pcm.copy()
    out[:fade] = np.rint(head).astype(np.int16)
    return out


def _mend(pcm: Pcm, have: npt.NDArray[np.bool_], concealer: Concealer | PlayoutDecoder) -> Pcm:
    """A frame partly received (`have` marks the samples that came): the received runs go through
    the concealer as good audio (it keeps its history and fades back in), the holes are concealed."""
    out = np.empty_like(pcm)
    i = 0
    while i < len(pcm):
        j = i
        while j < len(pcm) and have[j] == have[i]:
            j += 1
        out[i:j] = concealer.good_frame(pcm[i:j]) if have[i] else concealer.conceal(j - i)
        i = j
    return out


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
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError(f"need 0 <= min_delay_ms ({min_delay_ms}) <= max_delay_ms ({max_delay_ms})")
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.frame_samples = clock_rate * frame_ms // 1000
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.initial_delay_ms = min(max(initial_delay_ms, min_delay_ms), max_delay_ms)
        self._capacity = max(clock_rate, 3 * max_delay_ms * clock_rate // 1000)
        self._resync_samples = int(RESYNC_S * clock_rate)
        self._stats = JitterStats(target_delay_ms=float(self.initial_delay_ms))
        self._delay = DelayManager(clock_rate, frame_ms, min_delay_ms, max_delay_ms, self.initial_delay_ms)
        self._lost_before_reset = 0
        self.playout_decoder = playout_decoder
        self._concealer: Concealer | PlayoutDecoder = playout_decoder or Concealer(clock_rate)
        self._reset_state()

    # ----------------------------------------------------------------- state

    def _reset_state(self) -> None:
        self._timestamps = TimestampScale(self.clock_rate, self.timestamp_rate)
        self._sequences = SequenceSpan()
        decode = self.playout_decoder.decode if self.playout_decoder else None
        self._timeline = PacketTimeline(self.frame_samples, decode)
        self._play_ts: int | None = None
        self._started = False
        self._stall = 0
        self._concealer.reset()
        self._delay.restart()
        self._since_adjust = 0
        self._level = 0.0
        self._last_energy = 0.0
        self._fade_from: Pcm | None = None

    def reset(self) -> None:
        """Start over for a new source (SSRC change).

        Counters are kept (they describe the call) and so is the target delay
        (the network path is the same); everything tied to the old timeline
        is dropped and output is EMPTY until the new stream's first packet.
        """
        self._lost_before_reset += self._sequences.lost
        self._reset_state()
        self._stats.lost = self._lost_before_reset

    @property
    def stats(self) -> JitterStats:
        """Live statistics (a copy; cheap)."""
        stats = JitterStats(**asdict(self._stats))
        stats.target_delay_ms = round(self._delay.target_ms, 3)
        delay = self._delay.current_delay_ms()
        stats.current_delay_ms = round(delay, 3) if delay is not None else 0.0
        stats.jitter_ms = round(self._delay.rfc_jitter_ms, 3)
        stats.buffered_ms = round(1000.0 * self._buffered_samples() / self.clock_rate, 3)
        stats.lost = self._lost_before_reset + self._sequences.lost
        return stats

    @property
    def target_delay_ms(self) -> float:
        """Current target delay (ms)."""
        return self._delay.target_ms

    # ------------------------------------------------------------------ put

    def put(self, sequence: int, timestamp: int, pcm: Pcm, arrival_s: float, marker: bool = False) -> PutResult:
        """Insert a decoded packet received at ``arrival_s`` (seconds, any monotonic clock).

        ``marker`` is the RTP marker bit (start of a talk spurt).  The audio
        is copied.  Returns what happened to the packet.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1 or not len(pcm):
            raise ValueError("pcm must be a non-empty 1-D numpy int16 array")
        return self._insert(sequence, timestamp, StoredPacket(pcm, marker, len(pcm)), arrival_s)

    def put_encoded(self, sequence: int, timestamp: int, payload: bytes, arrival_s: float,
                    marker: bool = False) -> PutResult:
        """Insert an encoded packet, decoded by the ``playout_decoder`` when it is played.

        Raises ``ValueError`` (nothing stored) when the decoder says the payload cannot be
        decoded: the frame is then missing, and concealed like a lost one."""
        if self.playout_decoder is None:
            raise ValueError("put_encoded needs a buffer made with a playout_decoder")
        length = self.playout_decoder.samples(payload)
        return self._insert(sequence, timestamp, StoredPacket(None, marker, length, bytes(payload)), arrival_s)

    def _insert(self, sequence: int, timestamp: int, packet: StoredPacket, arrival_s: float) -> PutResult:
        if not 0 <= sequence <= 0xFFFF:
            raise ValueError(f"sequence {sequence} is not 16-bit")
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {timestamp} is not 32-bit")
        marker = packet.marker
        ts = self._timestamps.to_samples(timestamp)
        seq = self._sequences.unwrap(sequence)
        if self._timeline.known(ts):
            self._stats.duplicate += 1
            return PutResult.DUPLICATE
        newest_seq = self._sequences.high if self._sequences.high is not None else seq
        self._sequences.count(seq)
        self._delay.observe(ts, arrival_s, marker)
        length = packet.length
        result = PutResult.ACCEPTED
        if self._play_ts is None:
            self._anchor(ts)
        elif ts + length <= self._play_ts:
            if self._play_ts - ts > self._resync_samples and not self._timeline:
                self._resync(ts)
            else:
                result = PutResult.LATE
        elif ts - self._play_ts > self._capacity:
            if not self._timeline:
                self._resync(ts)
            elif seq != newest_seq + 1:
                # A flood of far-future audio; but the next packet in sequence is a timestamp
                # jump of the same stream, which get() re-anchors on once it gets there.
                result = PutResult.OVERFLOW
        if self._play_ts is not None:
            self._delay.measure(arrival_s, self._play_ts)
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
            if self._timeline.has(ts):
                self._stats.duplicate += 1
                return PutResult.DUPLICATE
        self._timeline.add(ts, packet)
        self._stats.received += 1
        return result

    def _target_aligned(self) -> int:
        """Target delay rounded up to whole frames, in samples."""
        frames = math.ceil(self._delay.target_ms / self.frame_ms - 1e-9)
        return max(1, frames) * self.frame_samples

    def _anchor(self, ts: int) -> None:
        self._play_ts = ts - self._target_aligned()
        self._stall = 0
        self._delay.new_play_position()

    def _resync(self, ts: int) -> None:
        self._timeline.clear()
        self._anchor(ts)
        self._stats.resyncs += 1

    # ------------------------------------------------------------------ get

    def get(self) -> JitterFrame:
        """Return the next frame (exactly ``frame_samples`` int16 samples); call once per frame."""
        self._delay.update_target()
        self._since_adjust += 1
        before = self._play_ts
        frame = self._next_frame()
        if before is not None and self._play_ts is not None:
            self._delay.played(self._play_ts - before)
        if frame.type is FrameType.NORMAL:
            self._stats.played += 1
        elif frame.type is FrameType.CONCEALED:
            self._stats.concealed += 1
        else:
            self._stats.empty += 1
        self._last_energy = _energy(frame.pcm)
        return frame

    def _buffered_samples(self) -> int:
        end = self._timeline.end()
        if self._play_ts is None or end is None:
            return 0
        return max(0, end - self._play_ts)

    def _advance(self, samples: int) -> None:
        """Move the play position forward and forget audio entirely behind it."""
        assert self._play_ts is not None
        self._play_ts += samples
        self._timeline.forget_behind(self._play_ts)

    def _is_quiet(self, energy: float) -> bool:
        return energy < _LOW_ENERGY_FLOOR or energy < _LOW_ENERGY_RATIO * self._level

    def _synthetic(self, lost: bool = True) -> JitterFrame:
        """A concealed frame (or EMPTY once the concealer has faded to silence). `lost`: it stands
        for a missing frame (which the next packet's FEC may carry), not a frame inserted to grow
        the delay in front of audio that is there."""
        self._fade_from = None  # a pending drop cross-fade is moot once we synthesize
        faded = self._concealer.faded_out
        if self.playout_decoder is not None and self._play_ts is not None:
            upcoming = self._timeline.payload_at(self._play_ts + self.frame_samples) if lost else None
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
            pcm, have = self._timeline.assemble(self._play_ts)
            if have.any():
                return self._play_received(pcm, have)
            upcoming = self._timeline.first()
            if not self._started:
                if upcoming is not None:
                    self._advance(n)
                return JitterFrame(FrameType.EMPTY, np.zeros(n, dtype=np.int16))
            if upcoming is None:  # underrun: wait for the late packet
                self._stall += n
                self._stats.underruns += 1
                return self._synthetic()
            gap = upcoming - self._play_ts
            if self._concealer.faded_out or self._timeline.marker_at(upcoming) or gap > self._resync_samples:
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
        timestamp = self._timestamps.to_timestamp(self._play_ts)
        if self._fade_from is not None:  # smooth the join after dropping audio
            pcm = _cross_fade(self._fade_from, pcm, self.clock_rate * _DROP_FADE_MS // 1000)
            self._fade_from = None
        if have.all():
            out = self._concealer.good_frame(pcm)
            frame_type = FrameType.NORMAL
            energy = _energy(out)
            self._level = energy if not self._started else 0.98 * self._level + 0.02 * energy
        else:
            out = _mend(pcm, have, self._concealer)
            frame_type = FrameType.CONCEALED
        self._started = True
        self._stall = 0
        self._advance(self.frame_samples)
        return JitterFrame(frame_type, out, timestamp)

    def _control(self) -> JitterFrame | None:
        """Drop or insert a frame to steer the current delay towards the target."""
        delay = self._delay.current_delay_ms()
        if delay is None or self._play_ts is None:
            return None
        frame_ms = self.frame_ms
        excess = delay - self._delay.target_ms
        if excess >= 0.75 * frame_ms:  # hysteresis: after a drop we are still above target - F/2
            pcm, have = self._timeline.assemble(self._play_ts)
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
        if (deficit >= frame_ms / 2 and self._since_adjust >= _ADJUST_INTERVAL and self._timeline.covered(self._play_ts)
                and (self._is_quiet(self._last_energy) or deficit >= 0.75 * frame_ms)):
            self._stats.drift_inserted += 1
            self._since_adjust = 0
            return self._synthetic(lost=False)
        return None
