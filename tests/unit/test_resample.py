"""soxr-based resampling: quality, streaming equivalence, latency and clipping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.resample import (
    StreamResampler,
    float_to_int16,
    int16_to_float,
    resample,
    resample_float,
)


def tone(freq: float, rate: int, seconds: float, amp: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def noise(rate: int, seconds: float, seed: int = 0, level: float = 6000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(int(rate * seconds)) * level, -32768, 32767).astype(np.int16)


def stream(rs: StreamResampler, x: np.ndarray, chunk: int) -> tuple[np.ndarray, list[int]]:
    outs = [rs.process(x[i : i + chunk]) for i in range(0, x.size, chunk)]
    lens = [o.size for o in outs]
    outs.append(rs.flush())
    return np.concatenate(outs), lens


def test_round_trip_8k_16k_8k_1khz_tone() -> None:
    x = tone(1000.0, 8000, 1.0)
    y = resample(resample(x, 8000, 16000), 16000, 8000)
    assert y.shape == x.shape and y.dtype == np.int16
    mid = slice(400, -400)  # away from the signal's edges
    err = rms(y[mid].astype(np.int32) - x[mid])
    assert 20 * np.log10(max(err, 1e-9) / rms(x[mid])) < -60.0


def test_upsampled_tone_has_right_frequency_and_level() -> None:
    y = resample(tone(1000.0, 8000, 1.0), 8000, 16000)
    assert y.size == 16000
    spec = np.abs(np.fft.rfft(y[4000:12000] * np.hanning(8000)))
    assert np.argmax(spec) * 16000 / 8000 == pytest.approx(1000.0, abs=2.0)
    assert rms(y[1000:-1000]) == pytest.approx(10000 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"),
    [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000), (8000, 24000), (44100, 8000)],
)
def test_streaming_20ms_chunks_equals_one_shot(in_rate: int, out_rate: int) -> None:
    x = noise(in_rate, 1.0)
    ref = resample(x, in_rate, out_rate)
    rs = StreamResampler(in_rate, out_rate)
    y, lens = stream(rs, x, in_rate // 50)
    assert y.size == ref.size
    assert np.max(np.abs(y.astype(np.int32) - ref)) <= 1
    # Steady pacing: after the first call, every 20 ms in gives exactly 20 ms out.
    assert set(lens[1:]) == {out_rate // 50}
    # The first call is short by the look-ahead (to within one input sample's worth).
    expected = out_rate // 50 - rs.delay_ms * out_rate / 1000
    assert lens[0] == pytest.approx(expected, abs=max(1.0, out_rate / in_rate))


def test_low_latency_delay_is_small() -> None:
    """The reason for the sliding window: ~11 ms instead of soxr's 40-75 ms buffering."""
    for in_rate, out_rate in [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000)]:
        assert 5.0 < StreamResampler(in_rate, out_rate).delay_ms < 15.0
        assert StreamResampler(in_rate, out_rate, "LQ").delay_ms < 4.0


def test_tone_is_not_delayed_beyond_reported_latency() -> None:
    """Output is time-aligned with input: an impulse comes out where it went in."""
    x = np.zeros(1600, dtype=np.int16)
    x[400] = 20000
    y, _ = stream(StreamResampler(8000, 16000), x, 160)
    assert int(np.argmax(np.abs(y))) == 800


@settings(max_examples=25, deadline=None)
@given(
    chunks=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=30),
    rates=st.sampled_from([(8000, 16000), (16000, 8000), (22050, 8000), (8000, 22050)]),
)
def test_any_chunking_equals_one_shot(chunks: list[int], rates: tuple[int, int]) -> None:
    in_rate, out_rate = rates
    x = noise(in_rate, sum(chunks) / in_rate + 1e-9, seed=len(chunks))
    x = x[: sum(chunks)]
    rs = StreamResampler(in_rate, out_rate)
    outs, pos = [], 0
    for n in chunks:
        outs.append(rs.process(x[pos : pos + n]))
        pos += n
    outs.append(rs.flush())
    y = np.concatenate(outs)
    ref = resample(x, in_rate, out_rate)
    assert y.size == ref.size
    if y.size:
        assert np.max(np.abs(y.astype(np.int32) - ref)) <= 1


def test_tts_22050_to_8000() -> None:
    x = tone(440.0, 22050, 1.0)
    y = resample(x, 22050, 8000)
    assert y.size == 8000
    spec = np.abs(np.fft.rfft(y[2000:6000] * np.hanning(4000)))
    assert np.argmax(spec) * 8000 / 4000 == pytest.approx(440.0, abs=2.0)
    assert rms(y[500:-500]) == pytest.approx(rms(x), rel=0.01)
    yf = resample_float(int16_to_float(x), 22050, 8000)
    assert yf.dtype == np.float32 and np.max(np.abs(yf * 32768 - y)) <= 1.0


def test_aliasing_of_6khz_tone_at_16k_to_8k_is_suppressed() -> None:
    x = tone(6000.0, 16000, 1.0, amp=20000.0)
    y = resample(x, 16000, 8000)
    y_stream, _ = stream(StreamResampler(16000, 8000), x, 320)
    for out in (y, y_stream):
        # Without a filter 6 kHz folds to 2 kHz at full level; HQ must leave < -90 dB.
        assert 20 * np.log10(max(rms(out[400:-400]), 1e-9) / rms(x)) < -90.0


def test_telephone_band_is_flat_in_default_quality() -> None:
    for f in (300.0, 1000.0, 3000.0, 3400.0):
        y = resample(tone(f, 8000, 1.0), 8000, 16000)
        assert 20 * np.log10(rms(y[2000:-2000]) / (10000 / np.sqrt(2))) == pytest.approx(0.0, abs=0.1)


def test_clipping_saturates_instead_of_wrapping() -> None:
    # A full-scale square wave overshoots (Gibbs) after band-limiting.
    x = np.tile(np.r_[np.full(20, 32767), np.full(20, -32768)].astype(np.int16), 200)
    rs = StreamResampler(8000, 16000)
    y, _ = stream(rs, x, 160)
    assert rs.clipped_samples > 0
    assert y.max() == 32767 and y.min() == -32768
    # No wrap-around: where the input is high, the output is never very negative.
    assert np.all(np.abs(np.diff(y.astype(np.int32))) < 40000)
    clipped, n = float_to_int16(np.array([1.5, -1.5, 0.5], dtype=np.float32))
    assert clipped.tolist() == [32767, -32768, 16384] and n == 2


def test_float_stream_matches_int_stream() -> None:
    x = noise(8000, 0.5)
    y_int, _ = stream(StreamResampler(8000, 16000), x, 160)
    rs = StreamResampler(8000, 16000)
    xf = int16_to_float(x)
    outs = [rs.process_float(xf[i : i + 160]) for i in range(0, xf.size, 160)]
    outs.append(rs.flush_float())
    y_float = np.concatenate(outs)
    assert y_float.dtype == np.float32
    assert np.max(np.abs(y_float * 32768 - y_int)) <= 1.0


def test_soxr_stream_mode_matches_one_shot() -> None:
    x = noise(16000, 1.0)
    y, _ = stream(StreamResampler(16000, 8000, low_latency=False), x, 320)
    ref = resample(x, 16000, 8000)
    assert y.size == ref.size and np.max(np.abs(y.astype(np.int32) - ref)) <= 1


def test_flush_resets_for_reuse_and_same_rate_is_pass_through() -> None:
    rs = StreamResampler(8000, 16000)
    x = noise(8000, 0.2)
    first, _ = stream(rs, x, 160)
    second, _ = stream(rs, x, 160)
    assert np.array_equal(first, second)
    assert rs.flush().size == 0
    same = StreamResampler(8000, 8000)
    assert np.array_equal(same.process(x), x) and same.delay_ms == 0.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        StreamResampler(0, 8000)
    with pytest.raises(ValueError):
        StreamResampler(8000, 16000, "XQ")  # type: ignore[arg-type]
    rs = StreamResampler(8000, 16000)
    with pytest.raises(TypeError):
        rs.process(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError):
        rs.process(np.zeros((160, 2), dtype=np.int16))
    with pytest.raises(TypeError):
        resample_float(np.zeros(10, dtype=np.int16), 8000, 16000)
