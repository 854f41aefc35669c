"""Tests for rtp.plc: pitch-based concealment quality, attenuation, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from rtp.plc import Concealer

FS = 8000
FRAME = 160


def voiced(f0: float = 150.0, seconds: float = 1.0, phase: float = 0.3) -> np.ndarray:
    """A harmonic 'vowel': fundamental plus decaying harmonics."""
    t = np.arange(int(FS * seconds)) / FS
    x = sum(
        a * np.sin(2 * np.pi * f0 * k * t + phase * k) for k, a in [(1, 6000), (2, 3500), (3, 2000), (4, 900), (5, 400)]
    )
    return np.asarray(x).astype(np.int16)


def rel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    e = estimate.astype(np.float64) - truth.astype(np.float64)
    return float(np.dot(e, e) / np.dot(truth.astype(np.float64), truth.astype(np.float64)))


def primed(signal: np.ndarray, frames: int) -> Concealer:
    c = Concealer(FS)
    for i in range(frames):
        c.feed(signal[i * FRAME : (i + 1) * FRAME])
    return c


@pytest.mark.parametrize("f0", [100.0, 137.0, 150.0, 220.0, 310.0])
def test_one_lost_frame_much_better_than_silence(f0: float) -> None:
    x = voiced(f0)
    c = primed(x, 10)
    concealed = c.conceal(FRAME)
    truth = x[10 * FRAME : 11 * FRAME]
    assert concealed.dtype == np.int16 and concealed.shape == (FRAME,)
    assert rel_error(concealed, truth) < 0.15  # silence would be 1.0
    assert not np.array_equal(concealed, x[9 * FRAME : 10 * FRAME])  # not a frame repeat
    if (f0 * FRAME / FS) % 1:  # a frame is not whole periods: repeating it would jump phase
        assert rel_error(x[9 * FRAME : 10 * FRAME], truth) > 4 * rel_error(concealed, truth)


def test_pitch_estimate() -> None:
    c = primed(voiced(200.0), 10)
    c.conceal(FRAME)
    assert c.pitch in (40, 80, 120)  # 5 ms period or a multiple within the search range


def test_attenuation_profile_and_fade_to_silence() -> None:
    x = voiced(150.0)
    c = primed(x, 10)
    frames = [c.conceal(80) for _ in range(9)]  # 10 ms blocks
    rms = [float(np.sqrt(np.mean(f.astype(np.float64) ** 2))) for f in frames]
    ref = float(np.sqrt(np.mean(x[: 4 * FRAME].astype(np.float64) ** 2)))
    assert rms[0] == pytest.approx(ref, rel=0.25)  # first 10 ms at full level
    assert all(rms[i + 1] < rms[i] for i in range(1, 5))  # then fading
    assert rms[5] < 0.15 * ref
    assert not c.faded_out or c.concealed_samples >= 480
    assert all(not np.any(f) for f in frames[6:])  # silent from 60 ms on
    assert c.faded_out and c.in_loss


def test_long_loss_is_not_periodic_repeat_of_one_period() -> None:
    x = voiced(150.0)
    c = primed(x, 10)
    out = np.concatenate([c.conceal(FRAME), c.conceal(FRAME)])
    p = c.pitch
    # After 10 ms the cycle is widened to several periods, so shifting by one period differs.
    seg = out[200 : 200 + 2 * p].astype(np.float64)
    assert np.any(np.abs(seg[:p] - seg[p:]) > 50)


def test_recovery_cross_fade_is_smooth() -> None:
    x = voiced(150.0)
    c = primed(x, 10)
    concealed = c.conceal(FRAME)
    good = x[11 * FRAME : 12 * FRAME]
    out = c.smooth_recovery(good)
    assert not c.in_loss
    assert out.dtype == np.int16 and out.shape == good.shape
    assert np.array_equal(out[80:], good[80:])  # fade is at most 10 ms
    # The join between concealment and the recovered frame has no big step.
    step = abs(int(out[0]) - int(concealed[-1]))
    max_natural_step = int(np.max(np.abs(np.diff(x.astype(np.int32)))))
    assert step <= 2 * max_natural_step


def test_recovery_after_fade_ramps_in_from_silence() -> None:
    x = voiced(150.0)
    c = primed(x, 10)
    for _ in range(5):
        c.conceal(FRAME)
    good = x[20 * FRAME : 21 * FRAME]
    out = c.smooth_recovery(good)
    assert abs(int(out[0])) < abs(int(good[0])) / 10 + 100
    assert np.array_equal(out[80:], good[80:])


def test_smooth_recovery_without_loss_is_identity() -> None:
    c = Concealer(FS)
    pcm = voiced()[:FRAME]
    assert c.smooth_recovery(pcm) is pcm


def test_good_frame_feeds_history() -> None:
    x = voiced(150.0)
    c = Concealer(FS)
    for i in range(10):
        out = c.good_frame(x[i * FRAME : (i + 1) * FRAME])
        assert np.array_equal(out, x[i * FRAME : (i + 1) * FRAME])
    assert rel_error(c.conceal(FRAME), x[10 * FRAME : 11 * FRAME]) < 0.15


def test_conceal_without_history_is_silent() -> None:
    c = Concealer(FS)
    assert not np.any(c.conceal(FRAME))


def test_conceal_in_odd_sized_pieces_matches_one_call() -> None:
    x = voiced(150.0)
    a, b = primed(x, 10), primed(x, 10)
    whole = a.conceal(400)
    parts = np.concatenate([b.conceal(n) for n in (7, 73, 1, 119, 200)])
    assert np.array_equal(whole, parts)


def test_repeated_short_losses_keep_quality() -> None:
    x = voiced(150.0, seconds=2.0)
    c = Concealer(FS)
    errors = []
    for i in range(80):
        frame = x[i * FRAME : (i + 1) * FRAME]
        if i % 5 == 4:
            errors.append(rel_error(c.conceal(FRAME), frame))
        else:
            c.good_frame(frame)
    assert max(errors[1:]) < 0.3


def test_other_clock_rate() -> None:
    fs = 16000
    t = np.arange(fs) / fs
    x = (8000 * np.sin(2 * np.pi * 180 * t)).astype(np.int16)
    c = Concealer(fs)
    for i in range(20):
        c.feed(x[i * 320 : (i + 1) * 320])
    assert rel_error(c.conceal(320), x[20 * 320 : 21 * 320]) < 0.15


def test_input_validation() -> None:
    c = Concealer()
    with pytest.raises(TypeError):
        c.feed(np.zeros(160))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.smooth_recovery(np.zeros((2, 80), dtype=np.int16))
    with pytest.raises(ValueError):
        c.conceal(-1)
    with pytest.raises(ValueError):
        Concealer(0)
    assert c.conceal(0).shape == (0,)


def test_reset_forgets_history() -> None:
    c = primed(voiced(), 10)
    c.reset()
    assert not np.any(c.conceal(FRAME))
