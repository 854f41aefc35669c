"""Piper TTS (joe medium, 22.05 kHz): streaming per sentence, level, cancellation, and a TTS -> STT round trip."""

from __future__ import annotations

import threading

import numpy as np
import soxr

from models.piper import PiperTts
from models.whisper import WhisperStt


def rms_dbfs(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12))


def test_streams_one_chunk_per_sentence_at_22050(tts: PiperTts) -> None:
    text = "Thank you for calling. Our office is open from eight to six. How can I help you today?"
    chunks = list(tts.synthesize(text))
    assert tts.sample_rate == 22050
    assert len(chunks) == 3
    for c in chunks:
        assert c.sample_rate == 22050
        assert c.pcm.dtype == np.int16 and c.pcm.ndim == 1
        assert 0.5 < c.duration_s < 5.0
        assert -30 < rms_dbfs(c.pcm) < -10  # speech, not silence, not clipped
        assert np.mean(np.abs(c.pcm) >= 32767) < 0.001


def test_clause_by_clause_keeps_a_steady_level(tts: PiperTts) -> None:
    """Fixed gain (not per-sentence peak normalisation): clauses of one answer sound equally loud."""
    clauses = ["Sure,", "let me check that for you,", "one moment."]
    levels = [rms_dbfs(next(iter(tts.synthesize(c))).pcm) for c in clauses]
    assert max(levels) - min(levels) < 6, levels


def test_cancel_between_sentences(tts: PiperTts) -> None:
    cancel = threading.Event()
    got = []
    for chunk in tts.synthesize("One. Two. Three. Four.", cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


def test_empty_text_gives_nothing(tts: PiperTts) -> None:
    assert list(tts.synthesize("   ")) == []


def test_round_trip_through_whisper(tts: PiperTts, stt: WhisperStt) -> None:
    pcm = np.concatenate([c.pcm for c in tts.synthesize("Your appointment is on Friday at ten.")])
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, tts.sample_rate, 16000).astype(np.float32)
    text = stt.transcribe(audio).text.lower()
    assert "appointment" in text and "friday" in text, text
