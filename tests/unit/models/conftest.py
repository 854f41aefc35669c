"""Session-scoped real models for tests/unit/models (no fakes): each model is loaded once per run.

Loading costs 0.1-1 s per model and the whole models suite must stay under ~60 s, so the
engines live for the session.  Audio comes from espeak-ng (+ sox to make 8 kHz telephone
audio), like the caller's side of a G.711 call; generated WAVs are cached per session.

A missing Debian binary skips with the apt command (fails under CI), like tests/conftest.py.
"""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from models.llama import LlamaConfig, LlamaCppLlm
from models.piper import PiperTts
from models.registry import resolve_test_llm
from models.silero import SileroVad
from models.whisper import WhisperStt
from tests.conftest import require_binaries

# A realistic voice-agent system prompt (~240 tokens): long enough that re-evaluating it is expensive.
SYSTEM_PROMPT = """You are Anna, the receptionist of Greenfield Dental Clinic, answering the phone.
Rules:
- Answer in one or two short sentences; this is a phone call.
- Never use lists, markdown, emojis or abbreviations; spell out numbers as a person would say them.
- If you do not know something, offer to take a message.
Facts:
- Address: 12 Oak Street, Springfield, next to the pharmacy.
- Opening hours: Monday to Friday 8 am to 6 pm, Saturday 9 am to 1 pm, closed on Sunday.
- Dentists: Dr. Maria Lopez (general dentistry), Dr. James Chen (orthodontics), Dr. Priya Patel (children).
- A check-up costs 60 dollars; a cleaning costs 80 dollars; we accept most insurance plans.
- Emergencies: call 555 0199 outside opening hours.
- Parking is free behind the building.
- New patients should arrive 15 minutes early to fill in a form.
- Appointments can be booked, moved or cancelled by phone; cancellations need 24 hours notice.
"""

Int16 = npt.NDArray[np.int16]


def read_wav(path: Path) -> tuple[Int16, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy(), w.getframerate()


@pytest.fixture(scope="session")
def espeak_8k(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Int16]:
    """``espeak_8k(text)`` -> int16 mono 8 kHz speech (espeak-ng -> sox), cached by text."""
    require_binaries("espeak-ng", "sox")
    d = tmp_path_factory.mktemp("espeak")
    cache: dict[str, Int16] = {}

    def make(text: str) -> Int16:
        if text not in cache:
            n = len(cache)
            raw, low = d / f"s{n}.wav", d / f"s{n}_8k.wav"
            subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
            subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(low)], check=True)
            pcm, rate = read_wav(low)
            assert rate == 8000
            cache[text] = pcm
        return cache[text]

    return make


def to_16k_float(pcm8k: Int16) -> npt.NDArray[np.float32]:
    """Telephone audio as Whisper wants it: 16 kHz float32 (soxr, like the gateway's resampler)."""
    return soxr.resample(pcm8k.astype(np.float32) / 32768.0, 8000, 16000).astype(np.float32)


@pytest.fixture(scope="session")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="session")
def stt() -> Iterator[WhisperStt]:
    s = WhisperStt()
    yield s
    s.close()


@pytest.fixture(scope="session")
def tts() -> PiperTts:
    return PiperTts()


@pytest.fixture(scope="session")
def smol() -> Iterator[LlamaCppLlm]:
    """SmolLM2-135M (98 MB, ~80 tokens/s): incoherent answers, but real tokens, template and KV cache."""
    llm = LlamaCppLlm(LlamaConfig(model_path=str(resolve_test_llm()), n_ctx=2048))
    yield llm
    llm.close()
