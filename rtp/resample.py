"""Sample-rate conversion between the call's codec rate and model rates, via libsoxr.

The phone side of the gateway runs at 8 kHz (G.711); speech-to-text wants 16 kHz and
text-to-speech engines produce 16/22.05/24 kHz.  All filtering is done by libsoxr
(`soxr` package); this module only manages streaming state, dtype conversion and clipping.

Why not simply wrap ``soxr.ResampleStream``?  Measured here (soxr 1.1.0 / libsoxr 0.1.3,
20 ms input chunks), ``ResampleStream`` processes in large internal blocks: it returns
nothing for the first 3-5 chunks, then bursts, and holds back 25-110 ms of audio depending
on rates and quality (8k->16k "HQ": 74 ms).  For a phone call that delay lands directly on
the caller's turn-taking latency, and the bursts break the 20 ms pacing downstream.
libsoxr's filter itself is short: its impulse response spans only +/-2.5 ms ("LQ") to
+/-10.5 ms ("HQ") at these rates.

So the default, ``low_latency=True``, runs soxr's one-shot resampler over a sliding window:
each call resamples ``history + buffered input``, where the history reaches at least one
filter half-length before the next output sample and starts on the rates' common grid
(a multiple of ``in_rate / gcd(in_rate, out_rate)`` input samples), and returns only the
output samples that have a full filter half-length of input after them.  Interior samples
of a soxr one-shot do not depend on where a grid-aligned window starts, so the stream
equals a one-shot of the whole signal (tests check this to +/-1 LSB) while the added delay
is only the look-ahead: a steady 20 ms chunk in gives a steady 20 ms chunk out, delayed by
:attr:`StreamResampler.delay_ms`.

Measured latency added by the low-latency mode (look-ahead = filter half-length, ms; from
``StreamResampler.delay_ms``) versus what ``soxr.ResampleStream`` holds back when fed 20 ms
chunks (at the end of a 0.8 s run; it oscillates with its block cycle)::

    quality   8k->16k   16k->8k   22.05k->8k   24k->8k   ResampleStream 8k->16k / 22.05k->8k
    LQ          2.8       2.7        2.8         2.5       36 / 25 ms
    MQ         10.0       9.9       10.4         9.8       42 / 82 ms
    HQ         11.6      11.2       11.3        11.2       74 / 58 ms
    VHQ        14.0      13.6       13.7        13.5       42 / 44 ms

Passband (one-shot, tone level change): "LQ" is -0.26 dB at 3.0 kHz and -7.9 dB at
3.4 kHz, so it is not usable for telephone audio (300-3400 Hz); "MQ", "HQ" and "VHQ" are
flat (< 0.05 dB) to 3.6 kHz and reject a 6 kHz tone at 16k->8k by > 120 dB.  "MQ" would
save only ~1.5 ms over "HQ", so "HQ" is the default.  Cost per 20 ms chunk (median, this
2-core host): ~45 us for 8k<->16k, ~100 us for 22.05k->8k, because soxr designs its
filter on every call -- still < 0.5 % of the 20 ms budget.  ``low_latency=False`` uses
``soxr.ResampleStream`` (~5 us per chunk) for offline or faster-than-real-time paths where
its bursty buffering does not matter.

Integer audio is converted with ``x / 32768`` and back with rounding and saturation to
[-32768, 32767]; clipped samples are counted in :attr:`StreamResampler.clipped_samples`.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, cast

import numpy as np
import soxr

__all__ = [
    "Quality",
    "StreamResampler",
    "resample",
    "resample_float",
    "float_to_int16",
    "int16_to_float",
]

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_QUALITIES: tuple[str, ...] = ("QQ", "LQ", "MQ", "HQ", "VHQ")

_INT16_SCALE = 32768.0
# Impulse-response taps below this fraction of the peak are treated as zero when sizing
# the sliding window.  1e-6 (-120 dB) keeps the truncation error far below 1 LSB of int16.
_IR_THRESHOLD = 1e-6


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    """Convert int16 PCM to float32 in [-1, 1)."""
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise TypeError(f"expected int16 audio, got {arr.dtype}")
    return arr.astype(np.float32) * np.float32(1.0 / _INT16_SCALE)


def float_to_int16(pcm: np.ndarray) -> tuple[np.ndarray, int]:
    """Convert float PCM in [-1, 1) to int16 with rounding and saturation.

    Returns the int16 array and the number of samples that had to be clipped (a resampler's
    overshoot on near-full-scale input is the usual cause; wrapping around would be a loud
    click, saturation is inaudible).
    """
    scaled = np.rint(np.asarray(pcm, dtype=np.float32) * np.float32(_INT16_SCALE))
    clipped = int(np.count_nonzero((scaled > 32767.0) | (scaled < -32768.0)))
    return np.clip(scaled, -32768.0, 32767.0).astype(np.int16), clipped


def _check_rate(rate: int, name: str) -> int:
    if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")
    return int(rate)


def _check_quality(quality: str) -> Quality:
    if quality not in _QUALITIES:
        raise ValueError(f"quality must be one of {_QUALITIES}, got {quality!r}")
    return cast(Quality, quality)


def _as_mono(pcm: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {arr.shape}")
    if arr.dtype != dtype:
        raise TypeError(f"expected {np.dtype(dtype).name} audio, got {arr.dtype}")
    return arr


@functools.lru_cache(maxsize=64)
def _context_samples(in_rate: int, out_rate: int, quality: Quality) -> int:
    """Filter half-length in input samples (the look-ahead the low-latency mode needs).

    Measured from soxr itself (impulse through a one-shot resample) rather than hard-coded,
    so a different libsoxr build cannot silently make the window too short.
    """
    period_in = in_rate // math.gcd(in_rate, out_rate)
    n = max(in_rate // 5, 64 * period_in)  # >= 200 ms or 64 grid periods, far beyond any IR
    centre = n // 2 - (n // 2) % period_in  # on the grid: lands exactly on an output sample
    impulse = np.zeros(n, dtype=np.float64)
    impulse[centre] = 1.0
    response = np.abs(soxr.resample(impulse, in_rate, out_rate, quality=quality))
    significant = np.flatnonzero(response > _IR_THRESHOLD * response.max())
    centre_out = centre * out_rate / in_rate
    half_out = max(centre_out - significant[0], significant[-1] - centre_out)
    return math.ceil(half_out * in_rate / out_rate) + 1


def resample_float(pcm: np.ndarray, in_rate: int, out_rate: int, quality: Quality = "HQ") -> np.ndarray:
    """One-shot resample of a whole float32 signal (no clipping; float keeps the headroom)."""
    in_rate = _check_rate(in_rate, "in_rate")
    out_rate = _check_rate(out_rate, "out_rate")
    quality = _check_quality(quality)
    arr = _as_mono(pcm, np.float32)
    if in_rate == out_rate:
        return arr.copy()
    return np.asarray(soxr.resample(arr, in_rate, out_rate, quality=quality), dtype=np.float32)


def resample(pcm: np.ndarray, in_rate: int, out_rate: int, quality: Quality = "HQ") -> np.ndarray:
    """One-shot resample of a whole int16 signal, rounded and saturated back to int16."""
    arr = _as_mono(pcm, np.int16)
    out, _ = float_to_int16(resample_float(int16_to_float(arr), in_rate, out_rate, quality))
    return out


class StreamResampler:
    """Stateful resampler for one continuous mono stream fed in arbitrary chunks.

    ``process()`` / ``process_float()`` return whatever output is final so far (with the
    default low-latency mode and 20 ms chunks: 20 ms per call after the first call, which
    returns 20 ms minus :attr:`delay_ms`).  ``flush()`` returns the tail at the end of the
    stream and resets the state so the object can be reused.  The int16 and float32 entry
    points share one float32 state and may be mixed.  Not thread-safe: one stream, one
    owner.  Windows start on multiples of ``in_rate / gcd(in_rate, out_rate)`` input
    samples, so rates should share a large common divisor (every rate that divides into
    20 ms frames does: the period is at most 20 ms, e.g. 441 samples for 22.05k<->8k).
    """

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        quality: Quality = "HQ",
        *,
        low_latency: bool = True,
    ) -> None:
        self.in_rate = _check_rate(in_rate, "in_rate")
        self.out_rate = _check_rate(out_rate, "out_rate")
        self.quality: Quality = _check_quality(quality)
        self.low_latency = low_latency
        self.clipped_samples = 0
        g = math.gcd(self.in_rate, self.out_rate)
        # Output sample k sits at input time k * in/out; every `_period_in` input samples
        # (= `_period_out` output samples) the two grids coincide.  soxr windows must start
        # on such a point for their output samples to land on the stream's output grid.
        self._period_in = self.in_rate // g
        self._period_out = self.out_rate // g
        self._passthrough = self.in_rate == self.out_rate
        self._context = 0
        if not self._passthrough and low_latency:
            self._context = _context_samples(self.in_rate, self.out_rate, self.quality)
        self._stream: soxr.ResampleStream | None = None
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # absolute input index of _buf[0]
        self._in_total = 0  # input samples received since the last reset
        self._done_out = 0  # output samples emitted since the last reset
        self.reset()

    @property
    def delay_ms(self) -> float:
        """Latency this resampler adds in low-latency mode (its look-ahead), in ms.

        For ``low_latency=False`` this is only the filter's share; soxr's block buffering
        comes on top (see the module docstring).
        """
        if self._passthrough:
            return 0.0
        context = self._context or _context_samples(self.in_rate, self.out_rate, self.quality)
        return 1000.0 * context / self.in_rate

    def reset(self) -> None:
        """Forget all buffered audio (e.g. at the start of a new, unrelated stream)."""
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self._in_total = 0
        self._done_out = 0
        self._stream = None
        if not self._passthrough and not self.low_latency:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=self.quality)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed an int16 chunk; return the int16 output that is ready."""
        return self._to_int16(self.process_float(int16_to_float(_as_mono(pcm, np.int16))))

    def flush(self) -> np.ndarray:
        """End of stream: return the remaining int16 output and reset."""
        return self._to_int16(self.flush_float())

    def process_float(self, pcm: np.ndarray) -> np.ndarray:
        """Feed a float32 chunk in [-1, 1); return the float32 output that is ready."""
        x = _as_mono(pcm, np.float32)
        if self._passthrough:
            return x.copy()
        if self._stream is not None:
            return np.asarray(self._stream.resample_chunk(x), dtype=np.float32)
        if x.size:
            self._buf = np.concatenate((self._buf, x))
            self._in_total += x.size
        # Output k needs input up to k * in/out + context.
        last_input = self._in_total - 1 - self._context
        n_ready = last_input * self.out_rate // self.in_rate + 1 if last_input >= 0 else 0
        if n_ready <= self._done_out:
            return np.zeros(0, dtype=np.float32)
        return self._emit(n_ready)

    def flush_float(self) -> np.ndarray:
        """End of stream: return the remaining float32 output and reset."""
        if self._passthrough:
            out = np.zeros(0, dtype=np.float32)
        elif self._stream is not None:
            out = np.asarray(
                self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True),
                dtype=np.float32,
            )
        elif self._in_total:
            out = self._emit(None)  # soxr's own end-of-signal handling, as in a one-shot
        else:
            out = np.zeros(0, dtype=np.float32)
        self.reset()
        return out

    def _window_start(self, first_out: int) -> int:
        """Grid-aligned input index at least `context` before output `first_out`.

        Never below 0: the very first window starts where the stream starts, so soxr's
        start-of-signal handling is the same as a one-shot of the whole signal.
        """
        # floor((first_out * in/out - context) / period_in) * period_in, in exact integers
        num = first_out * self.in_rate - self._context * self.out_rate
        start = num // (self.out_rate * self._period_in) * self._period_in
        return max(0, start)

    def _emit(self, n_ready: int | None) -> np.ndarray:
        """Resample [window start, all input so far) and return outputs done_out..n_ready."""
        seg_start = self._window_start(self._done_out)
        window = self._buf[seg_start - self._buf_start :]
        y = soxr.resample(window, self.in_rate, self.out_rate, quality=self.quality)
        base = seg_start // self._period_in * self._period_out  # output index of y[0]
        if n_ready is None:
            n_ready = base + len(y)
        out = np.asarray(y[self._done_out - base : n_ready - base], dtype=np.float32)
        self._done_out = n_ready
        keep_from = self._window_start(self._done_out)
        self._buf = self._buf[keep_from - self._buf_start :].copy()
        self._buf_start = keep_from
        return out

    def _to_int16(self, y: np.ndarray) -> np.ndarray:
        out, clipped = float_to_int16(y)
        self.clipped_samples += clipped
        return out
