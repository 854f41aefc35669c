"""Test audio: make caller speech/tones as WAV files and compare what went in and out.

Peers play 8 kHz mono 16-bit WAV files (baresip ``aufile``, the gateway's fakes) and
record what they receive. :func:`best_correlation` answers "is the received audio
the sent audio, and how late?" independent of gain and of the network/jitter delay:
a G.711 round trip of the same speech scores > 0.9, unrelated audio scores < 0.3.

Speech comes from espeak-ng + sox (Debian packages); tones/chirps/noise are pure numpy
so tests that only need "some signal" do not depend on those binaries.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.rig.proc import RigError, require_binary

FloatArray = npt.NDArray[np.float32]

DEFAULT_RATE = 8000


# --------------------------------------------------------------------------- I/O
def read_wav(path: str | Path) -> tuple[FloatArray, int]:
    """Read a PCM/float WAV file as float32 mono in [-1, 1] (channels averaged) and its rate.

    Parses the RIFF chunks itself instead of using :mod:`wave`, because recordings of a
    call still in progress (baresip's sndfile) have a data chunk size of 0 in the
    header until the file is closed: the data is then read to the end of the file.
    """
    path = Path(path)
    blob = path.read_bytes()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None  # (format tag, channels, rate, bits)
    data: bytes | None = None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], int.from_bytes(blob[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            tag = int.from_bytes(blob[body : body + 2], "little")
            channels = int.from_bytes(blob[body + 2 : body + 4], "little")
            rate = int.from_bytes(blob[body + 4 : body + 8], "little")
            bits = int.from_bytes(blob[body + 14 : body + 16], "little")
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in the GUID
                tag = int.from_bytes(blob[body + 24 : body + 26], "little")
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            end = body + size if 0 < size <= len(blob) - body else len(blob)
            data = blob[body:end]
            break
        pos = body + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError(f"{path}: fmt or data chunk missing")
    tag, channels, rate, bits = fmt
    width = bits // 8
    frame = width * max(1, channels)
    data = data[: len(data) - len(data) % frame]
    if tag == 1 and width == 2:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == 1 and width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and width == 4:
        samples = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif tag == 3 and width == 4:
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} with {bits} bits")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return samples, rate


def write_wav(path: str | Path, samples: npt.ArrayLike, rate: int = DEFAULT_RATE) -> Path:
    """Write float samples in [-1, 1] as 16-bit mono PCM (clipped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 32767 / 32768) * 32768.0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(pcm).astype("<i2").tobytes())
    return path


def wav_duration(path: str | Path) -> float:
    samples, rate = read_wav(path)
    return len(samples) / float(rate)


def pad_wav(
    src: str | Path,
    dst: str | Path,
    *,
    before_s: float = 0.0,
    after_s: float = 0.0,
    total_s: float | None = None,
) -> Path:
    """Copy ``src`` to ``dst`` with silence before/after it.

    baresip's ``aufile`` source hangs up the call when the file ends, so a caller's
    WAV must last as long as the call should: ``total_s`` pads the end up to that
    length (never truncates).
    """
    data, rate = read_wav(src)
    head = np.zeros(int(round(before_s * rate)), dtype=np.float32)
    out = np.concatenate([head, data, np.zeros(int(round(after_s * rate)), dtype=np.float32)])
    if total_s is not None and len(out) < int(total_s * rate):
        out = np.concatenate([out, np.zeros(int(total_s * rate) - len(out), dtype=np.float32)])
    return write_wav(dst, out, rate)


def make_silence_wav(path: str | Path, duration_s: float, rate: int = DEFAULT_RATE) -> Path:
    """A silent WAV (e.g. a baresip source that must not hang up for ``duration_s``)."""
    return write_wav(path, np.zeros(int(duration_s * rate), dtype=np.float32), rate)


# ---------------------------------------------------------------- synthesis
def make_speech_wav(
    text: str,
    path: str | Path,
    rate: int = DEFAULT_RATE,
    pad_before_s: float = 0.0,
    pad_after_s: float = 0.5,
    voice: str = "en-us",
    words_per_minute: int = 160,
    total_s: float | None = None,
) -> Path:
    """Synthesise ``text`` with espeak-ng, convert with sox to ``rate`` Hz mono 16-bit, pad.

    Deterministic for a given espeak-ng version, so tests can compare against it.
    """
    espeak = require_binary("espeak-ng")
    sox = require_binary("sox")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vgspeech-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        conv = Path(tmp) / "conv.wav"
        r = subprocess.run(
            [espeak, "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0 or not raw.exists():
            raise RigError(f"espeak-ng failed ({r.returncode}): {r.stderr.strip()}")
        r = subprocess.run(
            [sox, str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(conv)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise RigError(f"sox failed ({r.returncode}): {r.stderr.strip()}")
        return pad_wav(conv, path, before_s=pad_before_s, after_s=pad_after_s, total_s=total_s)


def tone(freq_hz: float, duration_s: float, rate: int = DEFAULT_RATE, amplitude: float = 0.3) -> FloatArray:
    """A sine tone with 10 ms fades (no clicks)."""
    t = np.arange(int(duration_s * rate), dtype=np.float64) / rate
    out = amplitude * np.sin(2 * np.pi * freq_hz * t)
    return _fade(out, rate).astype(np.float32)


def chirp(
    f0_hz: float, f1_hz: float, duration_s: float, rate: int = DEFAULT_RATE, amplitude: float = 0.3
) -> FloatArray:
    """A linear sweep: unambiguous under cross-correlation (unlike a steady tone)."""
    t = np.arange(int(duration_s * rate), dtype=np.float64) / rate
    phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t * t / (2 * duration_s))
    return _fade(amplitude * np.sin(phase), rate).astype(np.float32)


def noise(duration_s: float, rate: int = DEFAULT_RATE, amplitude: float = 0.2, seed: int = 0) -> FloatArray:
    """Band-limited-ish white noise (seeded, so reproducible)."""
    rng = np.random.default_rng(seed)
    out = np.clip(rng.normal(0.0, amplitude / 2, int(duration_s * rate)), -amplitude, amplitude)
    return _fade(out, rate).astype(np.float32)


def _fade(x: npt.NDArray[np.float64], rate: int, fade_s: float = 0.01) -> npt.NDArray[np.float64]:
    n = min(int(fade_s * rate), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def make_tone_wav(
    path: str | Path,
    freq_hz: float = 440.0,
    duration_s: float = 1.0,
    rate: int = DEFAULT_RATE,
    amplitude: float = 0.3,
    pad_before_s: float = 0.0,
    pad_after_s: float = 0.0,
) -> Path:
    """A WAV with one sine tone, padded with silence."""
    return _write_padded(path, tone(freq_hz, duration_s, rate, amplitude), rate, pad_before_s, pad_after_s)


def make_chirp_wav(
    path: str | Path,
    f0_hz: float = 300.0,
    f1_hz: float = 3000.0,
    duration_s: float = 1.0,
    rate: int = DEFAULT_RATE,
    amplitude: float = 0.3,
    pad_before_s: float = 0.0,
    pad_after_s: float = 0.0,
) -> Path:
    """A WAV with a frequency sweep (good for latency measurements), padded with silence."""
    return _write_padded(
        path, chirp(f0_hz, f1_hz, duration_s, rate, amplitude), rate, pad_before_s, pad_after_s
    )


def make_noise_wav(
    path: str | Path,
    duration_s: float = 1.0,
    rate: int = DEFAULT_RATE,
    amplitude: float = 0.2,
    seed: int = 0,
    pad_before_s: float = 0.0,
    pad_after_s: float = 0.0,
) -> Path:
    return _write_padded(path, noise(duration_s, rate, amplitude, seed), rate, pad_before_s, pad_after_s)


def _write_padded(path: str | Path, x: FloatArray, rate: int, before_s: float, after_s: float) -> Path:
    out = np.concatenate(
        [np.zeros(int(before_s * rate), np.float32), x, np.zeros(int(after_s * rate), np.float32)]
    )
    return write_wav(path, out, rate)


# ----------------------------------------------------------------- analysis
def rms(x: npt.ArrayLike) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def rms_dbfs(x: npt.ArrayLike) -> float:
    """RMS level in dBFS (full-scale sine is -3 dBFS); -inf-safe (floor -120)."""
    return float(20 * np.log10(max(rms(x), 1e-6)))


def active_segments(
    x: npt.ArrayLike,
    rate: int,
    threshold_dbfs: float = -40.0,
    frame_s: float = 0.02,
    min_gap_s: float = 0.2,
    min_len_s: float = 0.05,
) -> list[tuple[float, float]]:
    """(start_s, end_s) of the stretches whose 20 ms frame level is above ``threshold_dbfs``.

    Gaps shorter than ``min_gap_s`` are bridged (pauses between words), segments
    shorter than ``min_len_s`` dropped (clicks). Use it to check "the peer heard
    something at about t = 2 s" or to measure turn-taking latency.
    """
    a = np.asarray(x, dtype=np.float64)
    n = max(1, int(frame_s * rate))
    frames = len(a) // n
    if frames == 0:
        return []
    levels = 20 * np.log10(
        np.maximum(np.sqrt(np.mean(a[: frames * n].reshape(frames, n) ** 2, axis=1)), 1e-6)
    )
    active = levels > threshold_dbfs
    segs: list[list[float]] = []
    for i, on in enumerate(active):
        if not on:
            continue
        start, end = i * frame_s, (i + 1) * frame_s
        if segs and start - segs[-1][1] <= min_gap_s:
            segs[-1][1] = end
        else:
            segs.append([start, end])
    return [(s, e) for s, e in segs if e - s >= min_len_s]


def band_share(x: npt.ArrayLike, rate: int, low_hz: float, high_hz: float) -> float:
    """Fraction of the signal's energy in [low_hz, high_hz) (0 for silence). E.g. 4-7 kHz of a
    voice on a wideband line: a few percent for a voice made at 16 kHz or more, ~0 for one that
    passed through 8 kHz on its way (nothing survives above 4 kHz)."""
    a = np.asarray(x, dtype=np.float64)
    power = np.abs(np.fft.rfft(a)) ** 2
    total = float(power.sum())
    if total <= 0.0:
        return 0.0
    freqs = np.fft.rfftfreq(len(a), 1.0 / rate)
    return float(power[(freqs >= low_hz) & (freqs < high_hz)].sum() / total)


def active_audio(x: npt.ArrayLike, rate: int, threshold_dbfs: float = -40.0) -> FloatArray:
    """The active segments of ``x`` (see :func:`active_segments`) joined, without the silence between."""
    a = np.asarray(x, dtype=np.float64)
    parts = [a[int(s * rate):int(e * rate)] for s, e in active_segments(a, rate, threshold_dbfs)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def first_activity_s(x: npt.ArrayLike, rate: int, threshold_dbfs: float = -40.0) -> float | None:
    """Start time of the first active segment, or None if the signal is silent."""
    segs = active_segments(x, rate, threshold_dbfs)
    return segs[0][0] if segs else None


def best_correlation(
    sent: npt.ArrayLike,
    received: npt.ArrayLike,
    rate: int,
    max_lag_s: float = 2.0,
    min_overlap_s: float = 0.25,
) -> tuple[float, float]:
    """Align ``received`` to ``sent`` and return ``(normalized_correlation, lag_s)``.

    ``lag_s`` > 0 means ``received`` is late: ``received[t + lag] ~ sent[t]``. The lag
    is the peak of the FFT cross-correlation within ``+-max_lag_s``; the returned score
    is the Pearson-style normalized correlation of the two overlapping segments at
    that lag (1.0 identical up to gain, ~0 unrelated; sign kept, so an inverted signal
    scores ~-1). Silence contributes nothing, so padding does not dilute the score.
    """
    a = np.asarray(sent, dtype=np.float64).ravel()
    b = np.asarray(received, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return 0.0, 0.0
    a = a - a.mean()
    b = b - b.mean()
    n = a.size + b.size - 1
    nfft = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(b, nfft) * np.conj(np.fft.rfft(a, nfft)), nfft)
    # xc[k] = sum_t b[t + k] a[t]; negative lags wrap to the end of the array.
    max_lag = int(max_lag_s * rate)
    min_overlap = max(1, int(min_overlap_s * rate))
    lags = np.arange(-min(max_lag, a.size - 1), min(max_lag, b.size - 1) + 1)
    overlap = np.where(lags >= 0, np.minimum(a.size, b.size - lags), np.minimum(a.size + lags, b.size))
    values = np.abs(xc[lags % nfft])
    values[overlap < min_overlap] = -1.0
    if values.size == 0 or values.max() < 0:
        return 0.0, 0.0
    k = int(lags[int(np.argmax(values))])
    if k >= 0:
        seg_a, seg_b = a[: b.size - k], b[k : k + a.size]
    else:
        seg_a, seg_b = a[-k : -k + b.size], b[: a.size + k]
    m = min(seg_a.size, seg_b.size)
    seg_a, seg_b = seg_a[:m], seg_b[:m]
    denom = float(np.sqrt(np.dot(seg_a, seg_a) * np.dot(seg_b, seg_b)))
    score = float(np.dot(seg_a, seg_b) / denom) if denom > 0 else 0.0
    return score, k / float(rate)


def echo_correlation(
    sent: npt.ArrayLike,
    received: npt.ArrayLike,
    rate: int,
    max_lag_s: float = 1.5,
    window_s: float = 0.5,
    max_drift_s: float = 0.06,
) -> tuple[float, float]:
    """``(score, lag_s)`` of an echo whose delay may step while it plays.

    An adaptive jitter buffer grows or shrinks its delay by a packet or two between words (a loaded
    CI machine made one step by 10 ms, 3.5 s into a 9 s echo: every half second matched at 1.0, the
    whole file at one lag at 0.68). So the lag is found once for the whole file, then each voiced
    window of ``sent`` finds its own lag within ``max_drift_s`` of it; the score is the mean of the
    windows' correlations weighted by their energy. A distorted or missing echo still scores low.
    """
    a = np.asarray(sent, dtype=np.float64).ravel()
    b = np.asarray(received, dtype=np.float64).ravel()
    _, lag_s = best_correlation(a, b, rate, max_lag_s=max_lag_s)
    lag, drift, step = int(round(lag_s * rate)), int(max_drift_s * rate), int(window_s * rate)
    scores, weights = [], []
    for start in range(0, a.size - step + 1, step):
        piece = a[start : start + step]
        energy = float(np.dot(piece, piece))
        lo, hi = start + lag - drift, start + lag + step + drift
        if energy <= 1e-6 * step or lo < 0 or hi > b.size:
            continue
        score, _ = best_correlation(piece, b[lo:hi], rate, max_lag_s=2 * max_drift_s, min_overlap_s=window_s)
        scores.append(score)
        weights.append(energy)
    if not scores:
        return 0.0, lag_s
    return float(np.average(scores, weights=weights)), lag_s


def resample(x: npt.ArrayLike, rate_in: int, rate_out: int) -> FloatArray:
    """High-quality resampling via soxr (installed in the venv)."""
    import soxr

    return np.asarray(soxr.resample(np.asarray(x, dtype=np.float32), rate_in, rate_out), dtype=np.float32)
