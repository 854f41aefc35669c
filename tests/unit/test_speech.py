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


class TwoTones:
    """A 'TTS' at 22.05 kHz: 1 kHz and 5 kHz, with Piper's silence around them."""

    sample_rate = 22050

    def __init__(self):
        t = np.arange(self.sample_rate // 2) / self.sample_rate
        voice = 5000 * np.sin(2 * np.pi * 1000 * t) + 5000 * np.sin(2 * np.pi * 5000 * t)
        quiet = np.zeros(self.sample_rate // 10)
        self.pcm = np.concatenate([quiet, voice, quiet]).astype(np.int16)
        self.texts: list[str] = []

    def synthesize(self, text, *, cancel=None):
        from models.base import AudioChunk

        self.texts.append(text)
        yield AudioChunk(self.pcm, self.sample_rate)


def high_share(pcm: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(pcm.astype(float))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(power[(freqs >= 4000) & (freqs < 7000)].sum() / power.sum())


def test_wideband_speech_is_resampled_once_from_the_tts_rate_and_the_line_copy_is_unchanged():
    from rtp.resample import resample

    tts = TwoTones()
    audio = synthesize_line_audio(tts, "x", wideband=True)
    assert np.array_equal(audio.pcm, resample(tts.pcm, 22050, 8000))  # what a G.711 call has always had
    assert np.array_equal(audio.wideband, resample(tts.pcm, 22050, 16000))  # not 22.05 -> 8 -> 16
    assert high_share(audio.wideband, 16000) > 0.4 and high_share(audio.pcm, 8000) < 0.01
    trimmed = trim_silence(audio, keep_lead_ms=5, keep_tail_ms=30)
    assert abs(len(trimmed.wideband) - 2 * len(trimmed)) <= 1  # cut at the same instants
    assert len(trimmed) < len(audio) - 1000  # Piper's 100 ms of silence either side went
    frames = trimmed.frames()
    assert len(frames) == -(-len(trimmed) // 160)
    assert all(f.pcm.shape == (160,) and f.wideband.shape == (320,) for f in frames)
    assert np.array_equal(np.concatenate([f.wideband for f in frames])[: len(trimmed.wideband)], trimmed.wideband)


def test_fixed_lines_have_both_rates_and_lines_said_on_the_fly_are_kept_only_among_the_last_few():
    from gateway.conversation.speech import RECENT_PHRASES, ConversationServices

    class Models:
        tts = TwoTones()

    services = ConversationServices(Models())  # type: ignore[arg-type]
    services.cache_phrase("Hello.")
    assert services.phrase("Hello.").wideband is not None
    for n in range(RECENT_PHRASES + 8):
        services.phrase(f"Welcome back, caller {n}!")
    assert services.phrase("Hello.") is services.phrase("Hello.")  # start-up lines stay
    assert len(services._recent) == RECENT_PHRASES
    said = len(Models.tts.texts)
    services.phrase(f"Welcome back, caller {RECENT_PHRASES + 7}!")  # recent: not synthesized again
    assert len(Models.tts.texts) == said
    narrow = ConversationServices(Models(), wideband=False)  # type: ignore[arg-type]
    narrow.cache_phrase("Hello.")
    assert narrow.phrase("Hello.").wideband is None


def test_the_speaker_adds_a_wideband_copy_only_while_the_line_is_wideband():
    import queue

    from gateway.conversation.generate import Clause
    from gateway.conversation.playout import Playout
    from gateway.conversation.reply import ReplyHandle, TurnTimings
    from gateway.conversation.speak import Speaker

    playout = Playout(clock=lambda: 0.0)
    speaker = Speaker(TwoTones(), lambda text: BotAudio(np.zeros(160, np.int16)), playout, lambda: 0.0)

    def spoken(turn: int) -> list:
        items: queue.Queue = queue.Queue()
        items.put(Clause("Hello there."))
        items.put(None)
        speaker.run(ReplyHandle(turn, TurnTimings(0.0, False)), items)
        playout.release(turn)
        frames = []
        while (frame := playout.next_frame()) is not None:
            frames.append(frame)
        return frames

    assert all(f.wideband is None for f in spoken(1))
    playout.line_wideband.set()
    frames = spoken(2)
    assert frames and all(f.wideband is not None for f in frames)
    assert high_share(np.concatenate([f.wideband for f in frames]), 16000) > 0.4
