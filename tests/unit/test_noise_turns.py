"""Turn-taking on a noisy line, on a virtual clock (issue 12: noise that never deafens, barge-in
that tells a caller from noise). Scripted timelines: what is on the caller's line when, what the
VAD makes of it (scripted: babble is "speech" to silero), whether the bot is talking; assertions
on the typed events the turn taker returns and on what the playout lets out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.conversation.events import BargedIn, Held, Paused, SpeechStarted, TurnEnded, Unheld
from gateway.conversation.line_levels import LineLevels
from gateway.conversation.playout import Playout
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.turn_taker import TurnTaker
from gateway.conversation.turns import TurnDetector
from rtp.jitter import FrameType

TICK = 0.02
NOISE_RMS = 300.0  # ~ -41 dBFS: a background
CALLER_RMS = 3000.0  # ~ -21 dBFS: the caller, 20 dB above it


@dataclass
class ScriptedVad:
    """The VAD's probability is whatever the script says for the frame (`probability`)."""

    probability: float = 0.0
    sample_rate: int = 8000

    def process(self, pcm: np.ndarray) -> float:
        return self.probability

    def reset(self) -> None:
        pass


@dataclass
class Line:
    """A caller's line: a background for the whole call, sounds on top of it, the bot's speech."""

    noise_rms: float = NOISE_RMS
    noise_p: float = 0.0  # what the VAD says of the background alone (babble: ~0.9)
    sounds: list[tuple[float, float, float, float]] = field(default_factory=list)  # start, end, rms, vad p
    bot: list[tuple[float, float]] = field(default_factory=list)

    def add(self, start: float, end: float, rms: float = CALLER_RMS, p: float = 0.95) -> Line:
        self.sounds.append((start, end, rms, p))
        return self

    def bot_says(self, start: float, end: float) -> Line:
        self.bot.append((start, end))
        return self

    def run(self, until: float, settings: ConversationSettings | None = None) -> list[tuple[float, object]]:
        settings = settings or ConversationSettings()
        vad = ScriptedVad()
        taker = TurnTaker(vad, TurnDetector(settings.turn), 10)
        rng = np.random.default_rng(0)
        events, t = [], 0.0
        while t < until - 1e-9:
            t = round(t + TICK, 6)
            pcm = rng.standard_normal(160) * self.noise_rms
            vad.probability = self.noise_p
            for start, end, rms, p in self.sounds:
                if start <= t < end:
                    pcm = pcm + rng.standard_normal(160) * rms
                    vad.probability = p
            frame = np.clip(pcm, -32767, 32767).astype(np.int16)
            bot = any(s <= t < e for s, e in self.bot)
            events += [(t, e) for e in taker.feed(t, frame, FrameType.NORMAL, bot)]
        return events


def kinds(events: list[tuple[float, object]]) -> list[type]:
    return [type(e) for _, e in events]


def test_a_question_over_continuous_babble_ends_its_turn():
    """Babble the VAD calls speech from start to end of the call: the question still ends (the
    caller's level fell back to the background), and nothing else is taken for a turn."""
    line = Line(noise_p=0.9).add(3.0, 4.5)
    events = line.run(7.0)
    assert kinds(events) == [SpeechStarted, Paused, TurnEnded]
    started, (decided, ended) = events[0][1], events[-1]
    assert started.at == pytest.approx(3.0, abs=0.05)
    assert ended.at == pytest.approx(4.5, abs=0.1)  # the last frame that stood out of the babble
    assert decided - 4.5 < 1.0  # answered well within dead air's 1.5 s


def test_the_line_levels_follow_the_background_and_the_caller():
    levels = LineLevels()
    rng = np.random.default_rng(1)
    for i in range(300):
        rms = CALLER_RMS if 100 <= i < 180 else NOISE_RMS
        levels.update(float(np.sqrt(np.mean((rng.standard_normal(160) * rms) ** 2))))
        if 100 <= i < 180:
            levels.learn_speech()
    assert levels.background_db == pytest.approx(-40.8, abs=1.5)
    assert levels.speech_db > -24
    assert levels.at_background()
    assert levels.quiet_db < levels.onset_db < levels.speech_db


def test_noise_from_the_first_frame_does_not_cut_the_greeting():
    """The greeting starts as the call does, before anything is known of the line: a background
    there (which the VAD calls speech) neither holds nor interrupts it."""
    events = Line(noise_rms=600, noise_p=0.9).bot_says(0.0, 4.0).run(5.0)
    assert events == []


def test_a_cough_over_the_bot_only_holds_it_and_the_bot_goes_on():
    """A cough: loud, short, and no speech to the VAD. The bot is held at once and goes on."""
    events = Line().bot_says(0.0, 5.0).add(2.0, 2.4, rms=4500, p=0.1).run(5.0)
    assert kinds(events) == [Held, Unheld]
    held, unheld = events[0][1], events[1][1]
    assert held.held_at - 2.0 <= 0.06
    assert unheld.at - 2.4 < 0.5  # the bot goes on soon after


def test_a_backchannel_over_the_bot_does_not_cancel_it():
    """"uh-huh" (speech, 0.45 s) while the bot talks: held, then let go; never a barge-in, never a turn."""
    events = Line(noise_p=0.9).bot_says(0.0, 5.0).add(2.0, 2.45).run(5.5)
    assert kinds(events) == [Held, Unheld]


def test_a_real_interruption_silences_the_bot_at_once_and_cuts_it_when_confirmed():
    settings = ConversationSettings()
    events = Line(noise_p=0.9).bot_says(0.0, 6.0).add(2.0, 4.0).run(5.0, settings)
    assert kinds(events)[:2] == [Held, BargedIn]
    held, barged = events[0][1], events[1][1]
    assert held.held_at - 2.0 <= 0.05  # the bot stops within a frame or two of the onset
    assert barged.silenced_at == held.held_at
    assert events[1][0] - 2.0 == pytest.approx(settings.barge_in_min_ms / 1000, abs=0.05)


def test_a_held_bot_resumes_where_it_stopped_and_a_cut_one_counts_only_what_went_out():
    playout = Playout(clock=lambda: 0.0)
    audio = np.arange(160 * 10, dtype=np.int16)
    playout.push(1, audio, "one two three four five six seven eight nine ten")
    playout.release(1)
    first = [playout.next_frame() for _ in range(3)]
    playout.hold()
    assert playout.next_frame() is None and playout.is_playing()  # silent, yet still mid-sentence
    playout.resume()
    assert np.array_equal(playout.next_frame().pcm, audio[480:640])  # the very next frame: nothing lost
    assert all(f is not None for f in first)
    playout.hold()
    assert playout.flush() == {1: "one two three four"}  # 4 of 10 frames went out
    assert playout.next_frame() is None and not playout.held


def test_the_turn_ends_even_when_the_line_stays_between_quiet_and_speech():
    """The guard: after the question the line carries something louder than its usual background
    (the babble swelled, someone nearby talks) that the VAD calls speech, never loud enough to be
    the caller starting again. No frame has stood out for a while: the turn is over."""
    line = Line(noise_p=0.9).add(3.0, 4.5).add(4.5, 12.0, rms=900, p=0.9)  # ~10 dB over the background
    events = line.run(12.0)
    ends = [(t, e) for t, e in events if isinstance(e, TurnEnded)]
    assert ends, kinds(events)
    decided, ended = ends[0]
    assert 4.5 <= ended.at <= 5.05  # the caller counts as talking until the guard gives up on them
    assert decided - 4.5 < 1.2  # the level guard (0.5 s) plus end_of_turn_ms


def test_ticks_without_packets_are_not_taken_for_the_lines_background():
    """The first ticks of a call carry no packet yet: they must not teach the turn taker a silent
    line, or the real background that follows "stands out" of it and holds the greeting."""
    settings = ConversationSettings()
    vad = ScriptedVad(probability=0.9)  # babble
    taker = TurnTaker(vad, TurnDetector(settings.turn), 10)
    rng = np.random.default_rng(0)
    events, t = [], 0.0
    for i in range(150):
        t = round(t + TICK, 6)
        empty = i < 25
        frame = np.zeros(160, np.int16) if empty else np.clip(rng.standard_normal(160) * 600, -32767, 32767).astype(
            np.int16)
        events += taker.feed(t, frame, FrameType.EMPTY if empty else FrameType.NORMAL, bot_speaking=True)
    assert events == []


def test_a_confirmed_barge_in_keeps_the_callers_words_from_their_onset():
    """The barge-in is confirmed ~0.7 s after the caller's onset: the utterance the STT hears must
    still start at the onset (the preroll alone holds only the last 200 ms)."""
    settings = ConversationSettings()
    vad = ScriptedVad()
    taker = TurnTaker(vad, TurnDetector(settings.turn), 10)
    rng = np.random.default_rng(0)
    events, t, onset_tick = [], 0.0, 100
    for i in range(220):
        t = round(t + TICK, 6)
        talking = onset_tick <= i < onset_tick + 75
        vad.probability = 0.95 if talking else 0.0
        level = CALLER_RMS if talking else NOISE_RMS
        frame = np.clip(rng.standard_normal(160) * level, -32767, 32767).astype(np.int16)
        if talking:
            frame[0] = 10000 + i  # a mark: which tick this frame was
        events += taker.feed(t, frame, FrameType.NORMAL, bot_speaking=i < 200)
    assert [type(e) for e in events][:2] == [Held, BargedIn]
    ended = next(e for e in events if isinstance(e, TurnEnded))
    marks = [int(f[0]) - 10000 for f in ended.utterance.frames if f[0] >= 10000]
    assert marks[0] == onset_tick  # from the caller's first word on
    assert len(ended.utterance.frames) >= 75


def test_a_hold_that_comes_to_nothing_leaves_no_utterance_behind():
    events = Line(noise_p=0.9).bot_says(0.0, 6.0).add(2.0, 2.3).add(4.0, 5.5).run(6.0)
    assert kinds(events)[:4] == [Held, Unheld, Held, BargedIn]
