"""Echo canceller on synthetic telephone echo.

The scenario models a real call leg: our audio (the agent) goes out as G.711 µ-law, is
reflected by the far side through a dispersive echo path (FIR), delayed (60 / 200 ms) and
attenuated (-10 / -20 dB), mixed with the caller's own speech and line noise, and comes
back as G.711 again.  The caller is silent at first (echo only: convergence and ERLE),
then talks over the agent (double talk: the caller's speech must survive), then talks
while the agent is silent.

Speech comes from espeak-ng when it is installed (two different voices), otherwise from a
synthetic voiced signal (harmonics with formant envelope, moving pitch, syllable
envelope).  ``bench/bench_echo.py`` reuses these builders.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import dataclass

import numpy as np
import pytest

from rtp.echo import (
    EchoCanceller,
    EchoCancellerUnavailableError,
    PassThroughEchoCanceller,
    create_echo_canceller,
    erle_db,
    level_change_db,
)
from rtp.g711 import PCMU
from rtp.resample import resample

FAR_TEXT = (
    "Thank you for calling. I can help you with your account, your bill, or a new order. "
    "Please tell me in a few words what you are calling about today, and I will connect "
    "you to the right place as quickly as I can."
)
NEAR_TEXT = "Hello? Yes, I am calling because my last bill is wrong, it is far too high."

# Timeline (seconds) of the scenario.
T_TOTAL = 14.0
T_DT = (6.0, 9.0)  # caller talks over the agent
T_FAR_END = 11.0  # agent falls silent
T_NEAR_ONLY = (11.5, 13.5)  # caller talks alone


@dataclass(frozen=True)
class EchoScenario:
    """One synthetic call: what we sent, what we received, and its clean parts."""

    rate: int
    far: np.ndarray  # int16, the reference handed to the canceller (what we sent)
    mic: np.ndarray  # int16, what arrived back (echo + caller + noise, G.711)
    echo: np.ndarray  # float64, the echo component alone (before the return G.711)
    caller: np.ndarray  # int16, the caller's speech alone as it would arrive (G.711)
    delay_ms: int
    atten_db: float

    def span(self, start_s: float, stop_s: float) -> slice:
        return slice(int(start_s * self.rate), int(stop_s * self.rate))


def ulaw_roundtrip(pcm: np.ndarray) -> np.ndarray:
    """G.711 µ-law encode + decode, as on the wire."""
    return np.asarray(PCMU.decode(PCMU.encode(pcm)), dtype=np.int16)


@functools.lru_cache(maxsize=8)
def _espeak(text: str, voice: str, rate: int) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        wav = subprocess.run(
            [exe, "-v", voice, "-s", "165", "--stdout", text],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        with wave.open(io.BytesIO(wav)) as w:
            src_rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    except (OSError, subprocess.SubprocessError, wave.Error, EOFError):
        return None
    return resample(pcm, src_rate, rate).astype(np.float64)


def synthetic_speech(seconds: float, rate: int, seed: int, f0: float) -> np.ndarray:
    """Voiced, speech-like signal: harmonics of a moving pitch shaped by three formants,
    a little breath noise, and a syllable envelope with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t + seed) + 0.05 * np.sin(2 * np.pi * 3.1 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formants = np.array([550.0, 1500.0, 2600.0]) * (1.0 + 0.1 * rng.standard_normal(3))
    sig = np.zeros(n)
    for k in range(1, int(3600 / f0)):
        fk = k * pitch
        gain = sum(np.exp(-(((fk - fm) / 180.0) ** 2)) for fm in formants) / k**0.5
        sig += np.where(fk < 0.45 * rate, gain, 0.0) * np.sin(k * phase)
    sig += 0.05 * rng.standard_normal(n)
    env = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.12, 0.3) * rate)
        gap = int((rng.uniform(0.4, 0.8) if rng.random() < 0.15 else rng.uniform(0.03, 0.12)) * rate)
        stop = min(pos + syl, n)
        env[pos:stop] = np.sin(np.linspace(0, np.pi, stop - pos)) ** 0.7
        pos = stop + gap
    return sig * env


def speech(text: str, voice: str, seconds: float, rate: int, seed: int, f0: float) -> np.ndarray:
    """``seconds`` of speech at -16 dBFS-ish peak level; espeak-ng if available."""
    x = _espeak(text, voice, rate)
    if x is None or x.size == 0:
        x = synthetic_speech(seconds, rate, seed, f0)
    n = int(seconds * rate)
    x = np.tile(x, int(np.ceil(n / x.size)))[:n]
    return x / np.max(np.abs(x)) * 0.3 * 32767


def speech_source() -> str:
    return "espeak-ng" if _espeak("test", "en-us", 8000) is not None else "synthetic voiced"


def echo_path_fir(rate: int, seed: int = 7) -> np.ndarray:
    """Dispersive hybrid-like echo path: 8 ms of decaying random taps, unit energy."""
    rng = np.random.default_rng(seed)
    n = int(0.008 * rate)
    h = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0015 * rate))
    h[0] += 1.0
    return h / np.sqrt(np.sum(h * h))


def build_scenario(delay_ms: int, atten_db: float, rate: int = 8000, seed: int = 1) -> EchoScenario:
    n = int(T_TOTAL * rate)
    far = speech(FAR_TEXT, "en-us", T_FAR_END, rate, seed, 115.0)
    far = np.concatenate([far, np.zeros(n - far.size)])
    caller = np.zeros(n)
    dt = slice(int(T_DT[0] * rate), int(T_DT[1] * rate))
    no = slice(int(T_NEAR_ONLY[0] * rate), int(T_NEAR_ONLY[1] * rate))
    talk = speech(NEAR_TEXT, "en-gb+f3", 5.0, rate, seed + 1, 210.0)
    caller[dt] = talk[: dt.stop - dt.start]
    caller[no] = talk[-(no.stop - no.start) :]
    far_sent = ulaw_roundtrip(np.clip(far, -32768, 32767).astype(np.int16))
    echo = np.convolve(far_sent.astype(np.float64), echo_path_fir(rate))[:n]
    d = int(delay_ms * rate / 1000)
    echo = np.concatenate([np.zeros(d), echo[: n - d]]) * 10 ** (atten_db / 20)
    noise = np.random.default_rng(seed + 2).standard_normal(n) * 3.0  # ~ -80 dBFS line noise
    mic = ulaw_roundtrip(np.clip(np.rint(echo + caller + noise), -32768, 32767).astype(np.int16))
    caller_rx = ulaw_roundtrip(np.clip(np.rint(caller + noise), -32768, 32767).astype(np.int16))
    return EchoScenario(rate, far_sent, mic, echo, caller_rx, delay_ms, atten_db)


def run_canceller(aec: EchoCanceller, sc: EchoScenario, frame_ms: int = 20) -> tuple[np.ndarray, float]:
    """Feed the scenario frame by frame as the media clock would; return output and
    mean microseconds per frame."""
    step = sc.rate * frame_ms // 1000
    out = np.zeros_like(sc.mic)
    spent = 0.0
    for start in range(0, sc.mic.size - step + 1, step):
        near, far = sc.mic[start : start + step], sc.far[start : start + step]
        t0 = time.perf_counter()
        out[start : start + step] = aec.process(near, far)
        spent += time.perf_counter() - t0
    return out, spent / (sc.mic.size // step) * 1e6


# --------------------------------------------------------------------------------------

needs_engine = pytest.mark.skipif(
    importlib.util.find_spec("aec_audio_processing") is None,
    reason="aec-audio-processing (WebRTC AEC3) not installed",
)


@needs_engine
@pytest.mark.parametrize("delay_ms", [60, 200])
@pytest.mark.parametrize("atten_db", [-10.0, -20.0])
def test_cancels_telephone_echo_and_keeps_caller(delay_ms: int, atten_db: float) -> None:
    sc = build_scenario(delay_ms, atten_db)
    out, _ = run_canceller(create_echo_canceller(8000), sc)

    # Echo only, after convergence (caller silent, agent talking).
    conv = sc.span(2.0, T_DT[0])
    assert erle_db(sc.mic[conv], out[conv]) > 20.0
    # Still cancelling after the double talk (the filter must not have diverged).
    after = sc.span(T_DT[1] + 0.3, T_FAR_END)
    assert erle_db(sc.mic[after], out[after]) > 20.0
    # Double talk: the caller's speech survives within 3 dB.
    dt = sc.span(*T_DT)
    assert abs(level_change_db(sc.caller[dt], out[dt])) < 3.0
    # Caller alone (agent silent): untouched within 3 dB too.
    no = sc.span(*T_NEAR_ONLY)
    assert abs(level_change_db(sc.caller[no], out[no])) < 3.0


@needs_engine
def test_wideband_16k() -> None:
    sc = build_scenario(60, -10.0, rate=16000)
    out, _ = run_canceller(create_echo_canceller(16000), sc)
    conv = sc.span(2.0, T_DT[0])
    assert erle_db(sc.mic[conv], out[conv]) > 20.0
    dt = sc.span(*T_DT)
    assert abs(level_change_db(sc.caller[dt], out[dt])) < 3.0


@needs_engine
def test_output_contract_and_reset() -> None:
    aec = create_echo_canceller(8000)
    near = (np.arange(160) * 37 % 2000 - 1000).astype(np.int16)
    far = np.zeros(160, dtype=np.int16)
    out = aec.process(near, far)
    assert out.dtype == np.int16 and out.shape == (160,)
    assert aec.process(near[:80], far[:80]).shape == (80,)  # any multiple of 10 ms
    aec.reset()
    assert aec.process(near, far).shape == (160,)
    with pytest.raises(ValueError):
        aec.process(near, far[:80])
    with pytest.raises(ValueError):
        aec.process(near[:100], far[:100])
    with pytest.raises(TypeError):
        aec.process(near.astype(np.float32), far)


@needs_engine
def test_reset_forgets_the_echo_path() -> None:
    sc = build_scenario(60, -10.0)
    aec = create_echo_canceller(8000)
    run_canceller(aec, sc)
    aec.reset()
    # A fresh engine needs time to converge: the first 100 ms pass mostly unchanged.
    first = sc.span(0.0, 0.1)
    step = 160
    out = np.concatenate([aec.process(sc.mic[i : i + step], sc.far[i : i + step]) for i in range(0, first.stop, step)])
    assert erle_db(sc.mic[first], out) < 10.0


@needs_engine
def test_silent_reference_stays_cheap() -> None:
    """Regression for the denormal slowdown: after activity the reference goes silent;
    without dither a frame costs ~15x more (measured ~2 ms vs ~0.15 ms)."""
    aec = create_echo_canceller(8000)
    rng = np.random.default_rng(3)
    near_noise = (rng.standard_normal(160 * 400) * 1000).astype(np.int16)
    far_active = (rng.standard_normal(160 * 200) * 3000).astype(np.int16)

    def cost(far: np.ndarray, near: np.ndarray) -> float:
        times = []
        for i in range(0, far.size, 160):
            t0 = time.perf_counter()
            aec.process(near[i : i + 160], far[i : i + 160])
            times.append(time.perf_counter() - t0)
        return float(np.median(times[50:]))

    active = cost(far_active, near_noise[: far_active.size])
    silent = cost(np.zeros(160 * 200, dtype=np.int16), near_noise[far_active.size :])
    assert silent < 4 * active + 100e-6, (active, silent)


def test_disabled_is_pass_through() -> None:
    aec = create_echo_canceller(8000, enabled=False)
    assert isinstance(aec, PassThroughEchoCanceller)
    assert isinstance(aec, EchoCanceller)
    near = np.arange(-80, 80, dtype=np.int16)
    out = aec.process(near, np.full(160, 1000, dtype=np.int16))
    assert np.array_equal(out, near) and out is not near
    aec.reset()
    with pytest.raises(ValueError):
        create_echo_canceller(11025, enabled=False)


def test_missing_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aec_audio_processing", None)  # import -> ImportError
    with pytest.raises(EchoCancellerUnavailableError, match="aec-audio-processing"):
        create_echo_canceller(8000)
    assert isinstance(create_echo_canceller(8000, enabled=False), PassThroughEchoCanceller)


def test_metrics() -> None:
    x = np.full(800, 1000, dtype=np.int16)
    assert erle_db(x, x // 10) == pytest.approx(20.0, abs=0.01)
    assert level_change_db(x, x // 2) == pytest.approx(-6.02, abs=0.01)
    assert np.isfinite(erle_db(x, np.zeros_like(x)))
