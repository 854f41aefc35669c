"""Silero VAD on telephone audio: speech vs silence and noise, streaming invariants, cost per frame."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from models.silero import SileroVad

FRAME = 160  # 20 ms at 8 kHz, what the media clock hands over


def frame_probs(vad: SileroVad, pcm: npt.NDArray[np.int16], rate: int = 8000) -> npt.NDArray[np.float64]:
    stream = vad.new_stream(rate)
    frame = rate // 50
    return np.array([stream.process(pcm[i : i + frame]) for i in range(0, len(pcm) - frame + 1, frame)])


@pytest.fixture(scope="module")
def speech(espeak_8k: Callable[[str], npt.NDArray[np.int16]]) -> npt.NDArray[np.int16]:
    """1 s silence, a sentence, 1 s silence (8 kHz)."""
    s = espeak_8k("Hello, I would like to book an appointment for next Tuesday morning please.")
    z = np.zeros(8000, dtype=np.int16)
    return np.concatenate([z, s, z])


def test_detects_speech_in_espeak_sentence(vad: SileroVad, speech: npt.NDArray[np.int16]) -> None:
    p = frame_probs(vad, speech)
    lead = p[: 50 - 2]  # first second: silence
    tail = p[-45:]  # last 0.9 s: silence (after the model's hangover)
    middle = p[60:-60]
    assert lead.max() < 0.1
    assert np.mean(middle > 0.5) > 0.8, f"speech frames detected: {np.mean(middle > 0.5):.2f}"
    assert tail.max() < 0.2


@pytest.mark.parametrize("amplitude", [300, 3000])
def test_no_speech_in_white_noise(vad: SileroVad, amplitude: int) -> None:
    noise = (np.random.default_rng(amplitude).standard_normal(8000 * 3) * amplitude).astype(np.int16)
    assert frame_probs(vad, noise).max() < 0.3


def test_frame_size_does_not_change_result(vad: SileroVad, speech: npt.NDArray[np.int16]) -> None:
    """Buffering is exact: 20 ms frames, odd-sized pieces and one big array reach the same state."""
    a = vad.new_stream()
    for i in range(0, len(speech), FRAME):
        a.process(speech[i : i + FRAME])
    b = vad.new_stream()
    pos = 0
    for size in [1, 37, 255, 256, 257, 1000] * 1000:
        if pos >= len(speech):
            break
        b.process(speech[pos : pos + size])
        pos += size
    c = vad.new_stream()
    c.process(speech)
    assert a.windows == b.windows == c.windows == len(speech) // 256
    assert a.probability == pytest.approx(b.probability, abs=1e-6)
    assert a.probability == pytest.approx(c.probability, abs=1e-6)


def test_streams_are_independent_and_reset_restores_initial_state(
    vad: SileroVad, speech: npt.NDArray[np.int16]
) -> None:
    chunk = speech[8000:16000]
    s1, s2, ref = vad.new_stream(), vad.new_stream(), vad.new_stream()
    p1 = s1.process(chunk)
    s2.process(np.zeros(8000, dtype=np.int16))  # another call's audio in between must not leak into s1
    ref.process(chunk)
    assert s1.process(chunk) == pytest.approx(ref.process(chunk), abs=1e-6)
    s1.reset()
    assert s1.probability == 0.0 and s1.process(chunk) == pytest.approx(p1, abs=1e-6)


def test_16k_stream_detects_speech(vad: SileroVad, speech: npt.NDArray[np.int16]) -> None:
    up = np.clip(np.rint(soxr.resample(speech.astype(np.float32), 8000, 16000)), -32768, 32767).astype(np.int16)
    p = frame_probs(vad, up, rate=16000)
    assert p[:45].max() < 0.1
    assert p.max() > 0.9


def test_cost_per_20ms_frame_fits_the_media_clock(vad: SileroVad, speech: npt.NDArray[np.int16]) -> None:
    stream = vad.new_stream()
    costs = []
    for i in range(0, len(speech) - FRAME, FRAME):
        t = time.perf_counter()
        stream.process(speech[i : i + FRAME])
        costs.append(time.perf_counter() - t)
    # ~80 us median on the 2-core dev box; generous bound so a loaded CI box does not flake.
    assert float(np.median(costs)) < 0.001


def test_rejects_unsupported_rate_and_shape(vad: SileroVad) -> None:
    with pytest.raises(ValueError):
        vad.new_stream(22050)
    with pytest.raises(ValueError):
        vad.new_stream().process(np.zeros((2, 160), dtype=np.int16))
