"""End of turn from the sound of the caller's speech: Pipecat's smart-turn v3.2 (ONNX, BSD-2).

Silence alone cannot tell "are you open on Saturday?" from "I was wondering ..." followed by a
pause to think; intonation and the shape of the last words can. smart-turn is a Whisper-tiny
encoder with a classifier head trained on that question: given the last 8 s of a turn at 16 kHz
it returns the probability that the speaker has finished. It runs in 10-60 ms on one CPU thread.

Its input is what Whisper's feature extractor makes of the audio, computed here with numpy (no
transformers): the waveform normalised to zero mean and unit variance, a centred 25 ms Hann STFT
every 10 ms, 80 Slaney mel bands up to 8 kHz, log10, floored at 8 decades below the peak and
scaled to about [-1, 1]. Shorter audio is padded with silence in front, longer keeps its end.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.base import ModelError

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE
_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def _mel_filterbank() -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, each normalised to unit area (Slaney)."""
    bins = np.linspace(0.0, SAMPLE_RATE / 2, _N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_FILTERS = _mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)  # periodic Hann


def fit_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of float audio at 16 kHz, padded with silence in front when shorter."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - len(audio), dtype=np.float32), audio])


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper-style features of exactly 8 s of audio: float32 (80, 800)."""
    x = fit_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (frames, bins)
    mel = np.log10(np.maximum(_FILTERS @ power.T, 1e-10))[:, :-1]  # the last frame is not Whisper's
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """One ONNX session, shared by every call (onnxruntime's run is thread-safe on CPU)."""

    def __init__(self, path: Path, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise ModelError(f"cannot load the end-of-turn model {path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def probability(self, audio: np.ndarray) -> float:
        """P(the speaker has finished) for float audio at 16 kHz in [-1, 1], the turn so far."""
        features = log_mel(audio)[None, :, :]
        with self._lock:  # one inference at a time: on 2 cores two at once only slow each other
            output = self._session.run(None, {self._input: features})[0]
        return float(np.asarray(output).reshape(-1)[0])
