"""smart-turn v3.2, the end-of-turn model, on real speech through the telephone band.

Speech from the piper voice (espeak-ng's flat, always-final intonation gives the model nothing
to hear: it calls every espeak phrase finished), cut to 8 kHz like a G.711 call and brought back
to 16 kHz, as the gateway will feed it.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from models.piper import PiperTts
from models.registry import resolve_turn_model
from models.smart_turn import WINDOW_SAMPLES, SmartTurn, fit_window, log_mel


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn(resolve_turn_model())


def _line_audio(tts: PiperTts, text: str) -> np.ndarray:
    pcm = np.concatenate([c.pcm for c in tts.synthesize(text)]).astype(np.float32) / 32768
    narrow = soxr.resample(pcm, tts.sample_rate, 8000)
    return soxr.resample(narrow, 8000, 16000).astype(np.float32)


def test_features_have_whispers_shape_and_range() -> None:
    features = log_mel(np.random.default_rng(1).normal(0, 0.1, 40_000).astype(np.float32))
    assert features.shape == (80, 800) and features.dtype == np.float32
    assert float(features.min()) > -1.5 and float(features.max()) <= 1.5


def test_the_window_keeps_the_end_and_pads_in_front() -> None:
    short = np.ones(100, dtype=np.float32)
    fitted = fit_window(short)
    assert len(fitted) == WINDOW_SAMPLES and fitted[-100:].all() and not fitted[:-100].any()
    long = np.arange(WINDOW_SAMPLES + 5, dtype=np.float32)
    assert fit_window(long)[0] == 5


@pytest.mark.parametrize("text", ["Are you open on Saturday?", "What time do you close today?",
                                  "My name is John Smith."])
def test_a_finished_sentence_is_a_finished_turn(smart_turn: SmartTurn, tts: PiperTts, text: str) -> None:
    assert smart_turn.probability(_line_audio(tts, text)) > 0.8


@pytest.mark.parametrize("text", ["Hi, I was wondering", "So um, I was thinking that maybe", "The thing is, uh"])
def test_a_phrase_that_trails_off_is_not(smart_turn: SmartTurn, tts: PiperTts, text: str) -> None:
    assert smart_turn.probability(_line_audio(tts, text)) < 0.2


def test_the_features_are_pipecats_to_the_last_bit() -> None:
    """Our input preparation against the reference that ships in the same pinned wheel as the model
    (Pipecat's vendored WhisperFeatureExtractor): audio shorter and longer than the 8 s window."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("pipecat")  # the package is installed without its dependencies:
    assert spec is not None and spec.origin is not None  # load the one numpy-only file by path
    path = Path(spec.origin).parent / "audio" / "turn" / "smart_turn" / "_whisper_features.py"
    if not path.exists():
        pytest.skip(f"this pipecat-ai has no {path.name}")
    reference_spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    assert reference_spec is not None and reference_spec.loader is not None
    reference = importlib.util.module_from_spec(reference_spec)
    reference_spec.loader.exec_module(reference)
    rng = np.random.default_rng(3)
    for seconds in (0.5, 3.0, 9.0):
        audio = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
        theirs = reference.compute_whisper_log_mel_features(fit_window(audio), do_normalize=True)
        assert np.array_equal(log_mel(audio), theirs)
