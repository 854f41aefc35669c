"""What `voicegate dial` says: typed lines spoken by a voice, or a WAV file, as 8 kHz int16.

Two voices: piper (the pinned voice package of models/registry.py, the default: Whisper hears
it best) and espeak-ng (the Debian package, flat but always the same; no model to load).
"""

from __future__ import annotations

import enum
import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from models.base import Tts
from rtp.resample import resample

RATE = 8000
PEAK = 0.5  # speech is scaled to this peak: clear of G.711 clipping, well above the voiced threshold


class VoiceError(RuntimeError):
    """The voice or the WAV file cannot be used (one clear message for the terminal)."""


class VoiceEngine(enum.StrEnum):
    PIPER = "piper"
    ESPEAK = "espeak"


class CallerVoice:
    def __init__(self, engine: VoiceEngine, tts: Tts | None = None):
        if engine is VoiceEngine.PIPER and tts is None:
            raise ValueError("the piper voice needs its Tts")
        if engine is VoiceEngine.ESPEAK and shutil.which("espeak-ng") is None:
            raise VoiceError("espeak-ng is not installed (apt-get install espeak-ng, or `make run` installs it)")
        self.engine = engine
        self.tts = tts

    def speak(self, text: str) -> np.ndarray:
        """`text` as 8 kHz int16 speech."""
        if self.tts is not None:
            pcm = np.concatenate([chunk.pcm for chunk in self.tts.synthesize(text)])
            return _level(resample(pcm, self.tts.sample_rate, RATE))
        done = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text], capture_output=True,
                              timeout=60)
        if done.returncode != 0:
            raise VoiceError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()}")
        return _level(_wav_pcm(io.BytesIO(done.stdout), "espeak-ng's output"))


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV file (any rate, mono or stereo: the first channel) as 8 kHz int16."""
    try:
        with path.open("rb") as f:
            return _wav_pcm(f, str(path))
    except OSError as exc:
        raise VoiceError(f"cannot read {path}: {exc.strerror}") from None


def write_wav(path: Path, pcm: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return path


def _wav_pcm(source: io.BufferedIOBase | io.BytesIO, name: str) -> np.ndarray:
    try:
        with wave.open(source, "rb") as w:
            if w.getsampwidth() != 2:
                raise VoiceError(f"{name}: expected 16-bit PCM samples, got {8 * w.getsampwidth()}-bit")
            channels, rate = w.getnchannels(), w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as exc:
        raise VoiceError(f"{name}: not a PCM WAV file ({exc})") from None
    mono = data.reshape(-1, channels)[:, 0] if channels > 1 else data
    return resample(mono, rate, RATE) if rate != RATE else mono.copy()


def _level(pcm: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(pcm.astype(np.float64)))) if len(pcm) else 0.0
    if peak < 1.0:
        return pcm.astype(np.int16)
    return np.clip(pcm.astype(np.float64) * (PEAK * 32767 / peak), -32767, 32767).astype(np.int16)
