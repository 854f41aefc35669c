"""How much delay the jitter buffer should hold, and how much it holds now, from arrival times alone.

Split out of :mod:`rtp.jitter` (NetEq keeps the same split: DelayManager beside the packet
buffer) because it is a separate question with its own state: the buffer decides *what* to play,
this decides *how late* to play it. It never sees audio, only (timestamp, arrival) pairs and the
play position, so its arithmetic can be read and tested on its own. The algorithm is described in
:mod:`rtp.jitter`'s docstring (relative delay against the fastest packet of the last 2 s, 95th
percentile of jitter over 5 s or a fresh peak seen twice, fast rise, 8 s fall).

Not thread-safe: owned by one :class:`rtp.jitter.JitterBuffer`, on the media clock thread.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

_MIN_WINDOW_S = 2.0  # window of the "fastest packet" reference
_JITTER_WINDOW_S = 5.0  # window of the jitter percentile
_PEAK_PACKETS = 10  # a jitter value seen twice in this many packets counts at once
_PERCENTILE_EVERY = 10  # packets between two recomputations of the window percentile
_TARGET_FALL_TAU_MS = 8000.0
_DELAY_SAMPLES = 25  # current-delay estimate: mean of the last N measurements
_WARMUP_PACKETS = 50  # do not go below the initial delay before this many packets
RESYNC_S = 1.0  # a jump of the relative delay this large is a new timing reference


class DelayManager:
    """Target delay (what the network's jitter asks for) and current delay (what is buffered)."""

    def __init__(self, clock_rate: int, frame_ms: int, min_delay_ms: int, max_delay_ms: int,
                 initial_delay_ms: int) -> None:
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.initial_delay_ms = initial_delay_ms
        self.target_ms = float(initial_delay_ms)
        self.restart()

    def restart(self) -> None:
        """A new stream (SSRC change): forget its timing; the target is kept (same network path)."""
        self._clear_timing()
        self._packets_since_sync = 0
        self._measured = False
        self._jitter: deque[tuple[float, float]] = deque()  # (arrival, jitter ms)
        self._recent_jitter: deque[float] = deque(maxlen=_PEAK_PACKETS)
        self._candidate_ms = self.target_ms
        self._candidate_dirty = False
        self._percentile: float | None = None
        self._since_percentile = 0
        self.rfc_jitter_ms = 0.0  # RFC 3550 interarrival jitter, for statistics
        self._last_transit: float | None = None

    def _clear_timing(self) -> None:
        self._min_rel: deque[tuple[float, float]] = deque()  # monotonic: (arrival, rel) increasing rel
        self._last_rel: float | None = None
        self._last_arrival: float | None = None
        self.new_play_position()

    def new_play_position(self) -> None:
        """The play position was re-anchored: delays measured against the old one no longer count."""
        self._delays: deque[float] = deque(maxlen=_DELAY_SAMPLES)
        self._delay_bias = 0.0

    # -------------------------------------------------------------- arrivals

    def observe(self, ts: int, arrival_s: float, marker: bool) -> None:
        """A packet with (unwrapped, in samples) timestamp `ts` arrived: update the no-jitter
        reference, the jitter history and the RFC 3550 jitter."""
        rel = arrival_s - ts / self.clock_rate
        if self._last_rel is not None and self._last_arrival is not None:
            new_spurt = marker and arrival_s - self._last_arrival > 3 * self.frame_ms / 1000
            if abs(rel - self._last_rel) > RESYNC_S or new_spurt:
                # Timestamp discontinuity, or a talk spurt after a pause across which
                # the sender's timestamps may not have tracked real time: new reference.
                self._clear_timing()
                self._last_transit = None
        self._last_rel = rel
        self._last_arrival = arrival_s
        if self._last_transit is not None:
            d_ms = 1000.0 * abs(rel - self._last_transit)
            self.rfc_jitter_ms += (d_ms - self.rfc_jitter_ms) / 16.0
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

    def measure(self, arrival_s: float, play_ts: int) -> None:
        """One current-delay sample at a packet's arrival: how long ago a no-jitter packet for
        the play position would have arrived (call after :meth:`observe`)."""
        no_jitter_arrival = self._min_rel[0][1] + play_ts / self.clock_rate
        self._delays.append(arrival_s - no_jitter_arrival - self._delay_bias)

    def played(self, advanced_samples: int) -> None:
        """One frame went out and the play position moved this much: a stall (0) or a drop (2
        frames) shifts the delay by the difference until the next arrivals measure it again."""
        self._delay_bias += (self.frame_ms * self.clock_rate // 1000 - advanced_samples) / self.clock_rate

    # ----------------------------------------------------------------- reads

    def current_delay_ms(self) -> float | None:
        if not self._delays:
            return None
        return 1000.0 * (sum(self._delays) / len(self._delays) + self._delay_bias)

    def update_target(self) -> None:
        """Once per frame: rise to what the jitter asks at once, fall towards it slowly."""
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
                self.target_ms = self._candidate_ms
        if self._candidate_ms >= self.target_ms:
            self.target_ms = self._candidate_ms
        else:
            self.target_ms += (self._candidate_ms - self.target_ms) * self.frame_ms / _TARGET_FALL_TAU_MS
