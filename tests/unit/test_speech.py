"""Trimming Piper's silence around clauses (gateway/conversation/speech.py)."""

from __future__ import annotations

import numpy as np

from gateway.conversation.speech import BotAudio, clause_pause_ms, synthesize_line_audio, trim_silence


def voiced(ms: float) -> np.ndarray:
    t = np.arange(int(ms * 8)) / 8000
    return (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def test_lead_in_is_cut_and_the_tail_kept_as_asked():
    pcm = np.concatenate([np.zeros(400, np.int16), voiced(300), np.zeros(1600, np.int16)])  # 50 ms, 300, 200
    out = trim_silence(BotAudio(pcm), keep_lead_ms=5, keep_tail_ms=30)
    assert abs(len(out) - (40 + 2400 + 240)) <= 2
    assert np.abs(out.pcm[:40]).max() <= 180  # the 5 ms kept before the voice


def test_all_silence_gives_nothing_and_pauses_follow_punctuation():
    assert len(trim_silence(BotAudio(np.zeros(800, np.int16)), 5, 30)) == 0
    assert clause_pause_ms("Sure,") > clause_pause_ms("Sure") < clause_pause_ms("Yes.")
    assert clause_pause_ms("We open at") == 30.0


def test_a_streamed_clause_is_resampled_whole_not_piece_by_piece():
    """A speech server's 200 ms pieces, resampled one by one, click at every joint."""
    from models.base import AudioChunk
    from rtp.resample import resample

    rate = 22050
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)

    class Streamed:
        sample_rate = rate

        def synthesize(self, text, *, cancel=None):
            for i in range(0, len(tone), rate // 5):
                yield AudioChunk(tone[i:i + rate // 5], rate)

    line = synthesize_line_audio(Streamed(), "x")
    assert np.array_equal(line.pcm, resample(tone, rate, 8000)) and line.wideband is None
