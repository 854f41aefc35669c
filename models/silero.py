"""Silero VAD v6 through onnxruntime: cheap enough to run on the 20 ms media-clock thread.

Why onnxruntime and not the ``silero_vad`` package: importing ``silero_vad`` imports torch
(gigabytes, slow import); the ONNX file it ships runs with onnxruntime alone.

The model (``silero_vad.onnx`` from silero-vad 6.2.3) takes::

    input  float32 [batch, context + window]   audio in [-1, 1]
    state  float32 [2, batch, 128]              recurrent state, carried from call to call
    sr     int64   []                           8000 or 16000

and returns ``output`` [batch, 1] (speech probability) and ``stateN``.  The window is 256
samples at 8 kHz (32 ms) and 512 at 16 kHz, and the last 32 / 64 samples of the previous
window are prepended as context (what ``silero_vad.utils_vad.OnnxWrapper`` does).  A phone
frame is 160 samples, so :class:`SileroVadStream` buffers and runs the model for every
complete window: 5 model runs per 8 frames at 8 kHz, ~0.1-0.2 ms each with one thread.

One ``InferenceSession`` serves every call (``run`` is thread-safe and the session holds
no per-stream state); each call gets a :class:`SileroVadStream` with its own state.  The
session is limited to one intra-op and one inter-op thread: with 2 cores a thread pool
inside the VAD would fight STT/LLM for cores and add wake-up jitter to the media clock, for
no gain on a 288-sample input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.registry import resolve_vad

__all__ = ["SileroVad", "SileroVadStream"]

_WINDOW = {8000: 256, 16000: 512}
_CONTEXT = {8000: 32, 16000: 64}


class SileroVad:
    """Factory of per-call VAD streams over one shared ONNX session."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        path = Path(model_path) if model_path is not None else resolve_vad()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ORT's spinning worker threads would burn a core between 20 ms frames.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.model_path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise ValueError(f"{path} does not look like silero VAD v5/v6 (inputs {sorted(names)})")

    def new_stream(self, sample_rate: int = 8000) -> SileroVadStream:
        return SileroVadStream(self.session, sample_rate)


@dataclass(eq=False)
class SileroVadStream:
    """One call's VAD: buffers int16 frames into model windows and keeps the recurrent state.

    ``process`` returns the probability of the most recent complete window; ``windows``
    counts model runs (handy for tests and for converting to time).
    """

    session: ort.InferenceSession
    sample_rate: int = 8000
    probability: float = 0.0
    windows: int = 0
    _window: int = field(init=False)
    _context: int = field(init=False)
    _input: npt.NDArray[np.float32] = field(init=False, repr=False)
    _state: npt.NDArray[np.float32] = field(init=False, repr=False)
    _sr: npt.NDArray[np.int64] = field(init=False, repr=False)
    _pending: npt.NDArray[np.float32] = field(init=False, repr=False)
    _n_pending: int = field(init=False)

    def __post_init__(self) -> None:
        if self.sample_rate not in _WINDOW:
            raise ValueError(f"silero VAD supports 8000 or 16000 Hz, not {self.sample_rate}")
        self._window = _WINDOW[self.sample_rate]
        self._context = _CONTEXT[self.sample_rate]
        self._sr = np.array(self.sample_rate, dtype=np.int64)
        self._pending = np.zeros(self._window, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._input = np.zeros((1, self._context + self._window), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._n_pending = 0
        self.probability = 0.0

    def process(self, pcm: npt.NDArray[np.int16]) -> float:
        x = np.asarray(pcm)
        if x.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {x.shape}")
        pos = 0
        n = len(x)
        while pos < n:
            take = min(self._window - self._n_pending, n - pos)
            # int16 -> float32 in [-1, 1), written straight into the pending window (no temporaries per frame).
            np.multiply(
                x[pos : pos + take],
                1.0 / 32768.0,
                out=self._pending[self._n_pending : self._n_pending + take],
                casting="unsafe",
            )
            self._n_pending += take
            pos += take
            if self._n_pending == self._window:
                self._run()
                self._n_pending = 0
        return self.probability

    def _run(self) -> None:
        inp = self._input
        inp[0, self._context :] = self._pending
        out, state = self.session.run(None, {"input": inp, "state": self._state, "sr": self._sr})
        self._state = state
        # The context for the next window is the tail of this one.
        inp[0, : self._context] = inp[0, -self._context :]
        self.probability = float(out[0, 0])
        self.windows += 1
