"""Echo cancellation for one call: remove the echo of what we sent from what we receive.

Why: a PBX/PSTN leg reflects part of our outgoing audio back (2-to-4-wire hybrids, handset
acoustics), typically 10-25 dB down and 20-300 ms late.  Without cancellation the agent's
own TTS reaches the VAD/STT as if the caller had spoken, which triggers false barge-in and
garbage transcripts.

Engine: WebRTC AEC3 through ``aec-audio-processing==1.0.1`` (BSD-3 wrapper around the BSD
webrtc-audio-processing library).  Chosen after measuring it side by side with
``livekit.rtc.AudioProcessingModule`` (Apache-2.0, same AEC3 core) on synthetic G.711
telephone echo (``bench/bench_echo.py``, 60/200 ms, -10/-20 dB, 8 kHz): ERLE 34-42 dB
(livekit 35-45), >= 20 dB from the first 100 ms without any delay hint, caller's level in
double talk -0.6..-1.6 dB (livekit -0.9..-1.9), ~145 us per 20 ms for both.  The quality
is equivalent; aec-audio-processing installs 3.7 MB versus 34 MB (livekit + protobuf),
but has no Linux binary wheel, so it is built once from its sdist (C++ compiler, ~3-4 min)
and the wheel cached.  Only the echo canceller is enabled: noise suppression and gain
control stay off so the caller's level and noise floor reach the VAD/STT untouched.

Two things are handled here:

* AEC3 works on 10 ms frames; the media clock's 20 ms frame is split and both halves are
  fed in order (reference first, then capture, as the engine expects).
* When the reference falls to digital silence after activity, the engine's float state
  decays (most likely into denormal floats) and one 20 ms frame costs ~2 ms instead of ~0.15 ms (x15; an
  agent's reference is silent most of the call).  Adding +/-1 LSB dither to the
  reference (-90 dBFS, far below anything audible or any echo) keeps it out of that
  regime (measured 2.3 ms -> 0.13 ms per frame).  The livekit build does not show this.

The SWIG wrapper holds the GIL while it computes (~75 us per 10 ms frame pair); that is
per call per tick on the media-clock thread, acceptable next to the 20 ms budget.

:func:`erle_db` and :func:`level_change_db` are the metrics the tests and the benchmark
use, and are cheap enough for per-call telemetry.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EchoCanceller",
    "EchoCancellerUnavailableError",
    "PassThroughEchoCanceller",
    "WebRtcEchoCanceller",
    "create_echo_canceller",
    "erle_db",
    "level_change_db",
    "SUPPORTED_RATES",
]

#: Rates the AEC accepts natively (8 kHz for G.711, 16 kHz for G.722/wideband).
SUPPORTED_RATES: tuple[int, ...] = (8000, 16000, 32000, 48000)

_ENGINE_PACKAGE = "aec-audio-processing==1.0.1"
_DITHER_LEN = 4099  # prime, so the dither pattern does not lock to 10 ms frame boundaries
# Deterministic {-1, 0, +1} sequence shared by all instances: reproducible runs, no RNG
# cost per frame.
_DITHER = np.random.default_rng(0x5EC0).integers(-1, 2, _DITHER_LEN).astype(np.int32)


class EchoCancellerUnavailableError(RuntimeError):
    """The echo-cancellation engine is not installed or cannot be loaded."""


@runtime_checkable
class EchoCanceller(Protocol):
    """Per-call echo canceller driven by the 20 ms media clock."""

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """Return ``near`` with the echo of ``far`` removed.

        ``near`` is the frame just received, ``far`` the frame sent at the same tick
        (silence -> zeros); both mono int16 of the same length (a multiple of 10 ms).
        The result has the same shape and dtype as ``near``.
        """
        ...

    def reset(self) -> None:
        """Forget the adapted echo path (e.g. after a re-INVITE moved the media)."""
        ...


def _check_frames(near: np.ndarray, far: np.ndarray, block: int) -> None:
    for name, arr in (("near", near), ("far", far)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.int16 or arr.ndim != 1:
            raise TypeError(f"{name} must be a 1-D int16 numpy array")
    if near.shape != far.shape:
        raise ValueError(f"near and far differ in length: {near.shape[0]} vs {far.shape[0]}")
    if near.shape[0] % block:
        raise ValueError(f"frame length {near.shape[0]} is not a multiple of 10 ms ({block})")


class PassThroughEchoCanceller:
    """Echo cancellation disabled: returns the near end unchanged (validated, copied)."""

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self._block = self.sample_rate // 100

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        _check_frames(near, far, self._block)
        return near.copy()

    def reset(self) -> None:
        return None


class WebRtcEchoCanceller:
    """WebRTC AEC3 (via ``aec_audio_processing``) for one call; see the module docstring."""

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self._block = self.sample_rate // 100
        self._factory = _load_engine()
        self._apm: Any = None
        self._dither_pos = 0
        self.reset()

    def reset(self) -> None:
        # A fresh engine (~0.2 ms) is the only reliable way to drop AEC3's adapted state.
        apm = self._factory(enable_aec=True, enable_ns=False, enable_agc=False, enable_vad=False)
        apm.set_stream_format(self.sample_rate, 1)
        apm.set_reverse_stream_format(self.sample_rate, 1)
        if apm.get_frame_size() != self._block:
            raise EchoCancellerUnavailableError(
                f"AEC engine frame size {apm.get_frame_size()} != 10 ms at {self.sample_rate} Hz"
            )
        self._apm = apm
        self._dither_pos = 0

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        block = self._block
        _check_frames(near, far, block)
        n = near.shape[0]
        ref = far.astype(np.int32)
        ref += self._dither(n)
        np.clip(ref, -32768, 32767, out=ref)
        ref16 = ref.astype(np.int16)
        near_c = np.ascontiguousarray(near)
        out = np.empty(n, dtype=np.int16)
        apm = self._apm
        for start in range(0, n, block):
            stop = start + block
            apm.process_reverse_stream(ref16[start:stop].tobytes())
            cleaned = apm.process_stream(near_c[start:stop].tobytes())
            out[start:stop] = np.frombuffer(cleaned, dtype=np.int16)
        return out

    def _dither(self, n: int) -> np.ndarray:
        pos = self._dither_pos
        idx = (pos + np.arange(n)) % _DITHER_LEN
        self._dither_pos = (pos + n) % _DITHER_LEN
        return _DITHER[idx]


def _check_rate(sample_rate: int) -> int:
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate!r}")
    return int(sample_rate)


def _load_engine() -> Any:
    """Import the AEC engine, turning any load failure into one clear error."""
    try:
        from aec_audio_processing import AudioProcessor
    except (ImportError, OSError) as exc:  # OSError: the bundled .so failed to load
        raise EchoCancellerUnavailableError(
            f"echo cancellation needs {_ENGINE_PACKAGE} (WebRTC AEC3), which could not be "
            f"loaded: {exc}. Install it (built from sdist: `pip install {_ENGINE_PACKAGE}`, "
            "needs a C++ compiler; see the Makefile) or create the canceller with "
            "enabled=False."
        ) from exc
    return AudioProcessor


def create_echo_canceller(sample_rate: int = 8000, enabled: bool = True) -> EchoCanceller:
    """Build the echo canceller for one call.

    ``enabled=False`` gives a pass-through.  With ``enabled=True`` a missing engine raises
    :class:`EchoCancellerUnavailableError` here, at call setup, rather than silently
    letting echo through for the whole call.
    """
    if not enabled:
        return PassThroughEchoCanceller(sample_rate)
    return WebRtcEchoCanceller(sample_rate)


def _power(x: np.ndarray) -> float:
    arr = np.asarray(x, dtype=np.float64)
    return float(np.mean(arr * arr)) if arr.size else 0.0


def erle_db(echo_only_in: np.ndarray, echo_only_out: np.ndarray, floor: float = 1e-3) -> float:
    """Echo return loss enhancement: 10*log10(P_in / P_out) over echo-only audio.

    Both arguments cover the same span in which the near end carried only echo (no caller
    speech).  ``floor`` (power, int16 units^2) keeps digital silence from giving infinity.
    """
    return 10.0 * float(np.log10(max(_power(echo_only_in), floor) / max(_power(echo_only_out), floor)))


def level_change_db(reference: np.ndarray, processed: np.ndarray, floor: float = 1e-3) -> float:
    """Level of ``processed`` relative to ``reference`` in dB (0 = preserved, < 0 = attenuated).

    Used for near-end preservation: reference = the caller's speech as it would arrive
    without echo, processed = the canceller's output over the same span (double talk).
    """
    return 10.0 * float(np.log10(max(_power(processed), floor) / max(_power(reference), floor)))
