"""Packet loss concealment by pitch-period waveform substitution (after G.711 Appendix I).

Why not repeat the last frame: a 20 ms frame is not a whole number of pitch
periods, so repeating it puts a phase jump at every join and sounds like a
buzz.  Voiced speech is locally periodic, so instead we estimate the pitch
period from the recent history and keep cycling through the last period(s),
which continues the waveform with the right phase.  To avoid an artificial,
perfectly periodic tone on longer losses we widen the cycle to two and then
three periods (after 10 and 20 ms), cross-fading at each change, and fade the
output out (no attenuation for the first 10 ms, then 20 % per 10 ms, silence
from 60 ms on), because beyond that any guess is worse than silence.

Unlike Appendix I we do not delay the output by 3.75 ms to overlap-add the
start of the erasure: the jitter buffer hands frames straight to the line, and
the pitch search already picks the lag at which the signal best continues
itself, so the first join is at a point of maximum similarity.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Concealer"]

Pcm = npt.NDArray[np.int16]
_Float = npt.NDArray[np.float64]


def _check_pcm(pcm: Pcm) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        what = f"{pcm.dtype} array of shape {pcm.shape}" if isinstance(pcm, np.ndarray) else type(pcm).__name__
        raise TypeError(f"expected 1-D numpy int16 PCM, got {what}")


def _to_pcm(samples: _Float) -> Pcm:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


class Concealer:
    """Synthesizes replacement audio for lost frames from the audio played before them.

    Usage per frame: for a good frame call :meth:`smooth_recovery` (which
    cross-fades it in if the previous frame was concealed) and then
    :meth:`feed` with the result, or just :meth:`good_frame` which does both;
    for a lost frame call :meth:`conceal`.
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self._min_lag = max(2, self._ms(2.5))
        self._max_lag = max(self._min_lag + 1, self._ms(15))
        self._corr_len = self._ms(20)
        self._hist_len = max(3 * self._max_lag + self._max_lag // 4, self._corr_len + self._max_lag)
        self._widen_at = (self._ms(10), self._ms(20))  # erasure lengths at which we use 2, then 3 periods
        self._atten_start = self._ms(10)
        self._fade_end = self._ms(60)
        self.reset()

    def _ms(self, ms: float) -> int:
        return round(ms * self.clock_rate / 1000)

    def reset(self) -> None:
        """Forget all history (new stream)."""
        self._history: _Float = np.zeros(self._hist_len)
        self._erased = 0
        self._source: _Float = self._history
        self._cycle: _Float | None = None
        self._pos = 0
        self._periods = 1
        self._pitch = self._max_lag
        self._pending: _Float = np.zeros(0)

    @property
    def in_loss(self) -> bool:
        """True after :meth:`conceal` until the next good frame."""
        return self._erased > 0

    @property
    def concealed_samples(self) -> int:
        """Samples synthesized in the current run of losses."""
        return self._erased

    @property
    def faded_out(self) -> bool:
        """True once the current loss is long enough that concealment outputs silence."""
        return self._erased >= self._fade_end

    @property
    def pitch(self) -> int:
        """Pitch period (samples) used for the current or last concealment."""
        return self._pitch

    def feed(self, pcm: Pcm) -> None:
        """Record good audio that is being played; ends a loss run."""
        _check_pcm(pcm)
        self._append_history(pcm.astype(np.float64))
        self._end_loss()

    def good_frame(self, pcm: Pcm) -> Pcm:
        """:meth:`smooth_recovery` then :meth:`feed`; returns the audio to play."""
        out = self.smooth_recovery(pcm)
        self.feed(out)
        return out

    def smooth_recovery(self, pcm: Pcm) -> Pcm:
        """Cross-fade from the concealment into the first good frame after a loss.

        Returns ``pcm`` itself when there was no loss.  The fade is 4 ms per
        10 ms of loss (at most 10 ms): after a long loss the real signal may
        be far from our synthetic one, and a longer fade hides the mismatch.
        Ends the loss run but does not record the audio; call :meth:`feed`.
        """
        _check_pcm(pcm)
        if self._erased == 0:
            return pcm
        tens = -(-self._erased // self._ms(10))
        length = min(len(pcm), self._ms(min(10, 4 * tens)))
        synthetic = self._synthesize(length)
        ramp = (np.arange(length) + 1.0) / (length + 1.0)
        out = pcm.astype(np.float64)
        out[:length] = synthetic * (1.0 - ramp) + out[:length] * ramp
        self._end_loss()
        return _to_pcm(out)

    def conceal(self, n_samples: int) -> Pcm:
        """Return ``n_samples`` of synthetic audio continuing what was played."""
        if n_samples < 0:
            raise ValueError(f"n_samples must not be negative, got {n_samples}")
        out = _to_pcm(self._synthesize(n_samples))
        self._append_history(out.astype(np.float64))
        return out

    def _end_loss(self) -> None:
        self._erased = 0
        self._cycle = None
        self._pending = np.zeros(0)

    def _append_history(self, samples: _Float) -> None:
        if len(samples) >= self._hist_len:
            self._history = samples[-self._hist_len :].copy()
        else:
            self._history = np.concatenate((self._history[len(samples) :], samples))

    def _start_loss(self) -> None:
        # Snapshot: cycles are cut from the audio before the loss, not from our own output.
        self._source = self._history.copy()
        self._pitch = self._estimate_pitch(self._source)
        self._periods = 1
        self._cycle = self._make_cycle(1)
        self._pos = 0
        self._pending = np.zeros(0)

    def _estimate_pitch(self, history: _Float) -> int:
        """Lag in [2.5, 15] ms maximising the normalised correlation of the last 20 ms with its past."""
        target = history[-self._corr_len :]
        if not np.any(target):
            return self._max_lag
        lags = np.arange(self._min_lag, self._max_lag + 1)
        windows = sliding_window_view(history, self._corr_len)
        candidates = windows[len(history) - self._corr_len - lags]
        dots = candidates @ target
        energy = np.einsum("ij,ij->i", candidates, candidates)
        score = dots / np.sqrt(energy + 1e-9)
        return int(lags[int(np.argmax(score))])

    def _overlap(self) -> int:
        return max(1, self._pitch // 4)

    def _make_cycle(self, periods: int) -> _Float:
        """The last ``periods`` pitch periods, with the tail blended into what precedes the head.

        When the cycle wraps, ``cycle[-1]`` is followed by ``cycle[0]``; the
        samples that naturally precede ``cycle[0]`` are the ones just before it
        in the history, so the tail is cross-faded towards them.
        """
        length = periods * self._pitch
        overlap = self._overlap()
        src = self._source
        cycle = src[-length:].copy()
        ramp = (np.arange(overlap) + 1.0) / (overlap + 1.0)
        cycle[-overlap:] = src[-overlap:] * (1.0 - ramp) + src[-length - overlap : -length] * ramp
        return cycle

    def _take(self, count: int) -> _Float:
        assert self._cycle is not None
        idx = (self._pos + np.arange(count)) % len(self._cycle)
        self._pos = (self._pos + count) % len(self._cycle)
        return self._cycle[idx]

    def _widen(self, periods: int) -> None:
        """Switch to a cycle of more periods, cross-fading over a quarter period."""
        overlap = self._overlap()
        phase = self._pos % self._pitch
        old = self._take(overlap)
        self._cycle = self._make_cycle(periods)
        self._pos = phase  # same phase, in the oldest period of the wider cycle
        new = self._take(overlap)
        ramp = (np.arange(overlap) + 1.0) / (overlap + 1.0)
        self._pending = old * (1.0 - ramp) + new * ramp
        self._periods = periods

    def _gain(self, start: int, count: int) -> _Float:
        t = np.arange(start, start + count, dtype=np.float64)
        gain = 1.0 - (t - self._atten_start) / (self._fade_end - self._atten_start)
        return np.clip(gain, 0.0, 1.0)

    def _synthesize(self, count: int) -> _Float:
        out = np.zeros(count)
        if count == 0:
            return out
        if self._erased >= self._fade_end:
            self._erased += count
            return out
        if self._erased == 0 or self._cycle is None:
            self._start_loss()
        done = 0
        while done < count:
            t = self._erased + done
            if t >= self._fade_end:
                break
            wanted = 1 + sum(t >= b for b in self._widen_at)
            if wanted > self._periods and not len(self._pending):
                self._widen(wanted)
            if len(self._pending):
                n = min(len(self._pending), count - done)
                out[done : done + n] = self._pending[:n]
                self._pending = self._pending[n:]
            else:
                limit = next((b for b in self._widen_at if b > t), self._fade_end)
                n = min(count - done, limit - t)
                out[done : done + n] = self._take(n)
            done += n
        out *= self._gain(self._erased, count)
        self._erased += count
        return out
