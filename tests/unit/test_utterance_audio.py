"""What the STT and the turn model hear of an utterance: its 16 kHz frames on a G.722 call."""

from __future__ import annotations

import numpy as np

from gateway.conversation.events import Utterance
from gateway.conversation.turn_taker import TurnTaker
from gateway.conversation.turns import TurnEvent
from gateway.conversation.utterance_audio import utterance_audio16k
from rtp.jitter import FrameType


def _frames(freq: float, count: int, rate: int) -> list[np.ndarray]:
    n = rate // 50
    t = np.arange(n * count) / rate
    pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [pcm[i * n:(i + 1) * n] for i in range(count)]


def _band_energy(audio: np.ndarray, lo: float, hi: float, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_narrowband_utterance_is_resampled_to_16k():
    utterance = Utterance(1, tuple(_frames(1000, 10, 8000)))
    audio = utterance_audio16k(utterance)
    assert audio.dtype == np.float32 and len(audio) == 10 * 320


def test_wideband_frames_are_used_as_received_and_keep_what_is_above_4k():
    narrow = _frames(1000, 10, 8000)
    wide = _frames(6000, 10, 16000)  # a 6 kHz tone only a wideband line carries
    audio = utterance_audio16k(Utterance(1, tuple(narrow), tuple(wide)))
    assert len(audio) == 10 * 320
    assert _band_energy(audio, 5000, 7000) > 100 * _band_energy(audio, 500, 1500)
    assert len(utterance_audio16k(Utterance(1, tuple(narrow), tuple(wide)), last_frames=4)) == 4 * 320


def test_frames_heard_only_at_8k_are_resampled_in_runs_between_wide_ones():
    narrow = _frames(1000, 10, 8000)
    wide: list[np.ndarray | None] = list(_frames(6000, 10, 16000))
    wide[3:6] = [None, None, None]  # e.g. echo-cancelled while the bot talked
    audio = utterance_audio16k(Utterance(1, tuple(narrow), tuple(wide)))
    assert len(audio) == 10 * 320
    middle = audio[3 * 320 + 40:6 * 320 - 40]
    assert _band_energy(middle, 500, 1500) > 100 * _band_energy(middle, 5000, 7000)
    assert Utterance(1, tuple(narrow), tuple(wide)).since(3).wide[0] is None


class _Vad:
    def __init__(self):
        self.p = 0.0

    def process(self, pcm):
        return self.p


class _Policy:
    """Speech starts at the first frame and the turn ends when told: only the collection is under test."""

    in_speech = False

    def __init__(self):
        self.events: list[TurnEvent] = []

    def update(self, now, probability, **_):
        from gateway.conversation.turns import Detected

        out, self.events = [Detected(e, now) for e in self.events], []
        return out

    def on_pause(self, utterance):
        pass


def test_turn_taker_keeps_the_16k_frames_beside_the_8k_ones():
    policy = _Policy()
    taker = TurnTaker(_Vad(), policy, preroll_frames=2)  # type: ignore[arg-type]
    narrow, wide = _frames(500, 6, 8000), _frames(500, 6, 16000)
    taker.feed(0.00, narrow[0], FrameType.NORMAL, False, wide=wide[0])
    policy.events = [TurnEvent.SPEECH_START]
    taker.feed(0.02, narrow[1], FrameType.NORMAL, False, wide=wide[1])
    taker.feed(0.04, narrow[2], FrameType.NORMAL, True, cleaned=narrow[2] // 2, wide=wide[2])  # bot talking
    policy.events = [TurnEvent.TURN_END]
    signals = taker.feed(0.06, narrow[3], FrameType.NORMAL, False, wide=wide[3])
    utterance = signals[-1].utterance
    assert utterance.length == 4 and len(utterance.wide) == 4
    assert utterance.wide[0] is wide[0] and utterance.wide[2] is None and utterance.wide[3] is wide[3]
    assert np.array_equal(utterance.frames[2], narrow[2] // 2)  # the echo-cancelled 8 kHz frame stands


def test_turn_taker_on_a_g711_call_gives_no_wide_frames():
    policy = _Policy()
    taker = TurnTaker(_Vad(), policy, preroll_frames=2)  # type: ignore[arg-type]
    policy.events = [TurnEvent.SPEECH_START]
    for i, frame in enumerate(_frames(500, 3, 8000)):
        taker.feed(i * 0.02, frame, FrameType.NORMAL, False)
    policy.events = [TurnEvent.TURN_END]
    signals = taker.feed(0.1, np.zeros(160, np.int16), FrameType.NORMAL, False)
    assert signals[-1].utterance.wide == ()


class _LatePolicy(_Policy):
    """Tells the onset `late_s` after it, as the VAD policy does after `min_speech_ms`."""

    def __init__(self, late_s: float):
        super().__init__()
        self.late_s = late_s

    def update(self, now, probability, **_):
        from gateway.conversation.turns import Detected

        out, self.events = [Detected(e, now - self.late_s if e is TurnEvent.SPEECH_START else now)
                            for e in self.events], []
        return out


def test_the_preroll_is_counted_back_from_the_onset_not_from_the_event():
    policy = _LatePolicy(late_s=0.06)
    taker = TurnTaker(_Vad(), policy, preroll_frames=5)  # type: ignore[arg-type]
    frames = [np.full(160, i, np.int16) for i in range(20)]
    for i, frame in enumerate(frames[:15]):
        taker.feed(i * 0.02, frame, FrameType.NORMAL, False)
    policy.events = [TurnEvent.SPEECH_START]  # told at frame 15, the onset was frame 12
    taker.feed(15 * 0.02, frames[15], FrameType.NORMAL, False)
    policy.events = [TurnEvent.TURN_END]
    utterance = taker.feed(16 * 0.02, frames[16], FrameType.NORMAL, False)[-1].utterance
    assert [int(f[0]) for f in utterance.frames] == list(range(7, 17))  # 5 frames before frame 12


def _tone(level: float) -> np.ndarray:
    return (level * np.sin(2 * np.pi * 400 * np.arange(160) / 8000)).astype(np.int16)


def _reach_back_utterance(reach_back_frames: int, line: list[np.ndarray], onset: int) -> Utterance:
    """`line` fed to a TurnTaker whose policy tells the onset at frame `onset` (60 ms after it) and
    ends the turn at the last frame; the utterance it hands on."""
    policy = _LatePolicy(late_s=0.06)
    taker = TurnTaker(_Vad(), policy, preroll_frames=5, reach_back_frames=reach_back_frames)  # type: ignore[arg-type]
    signals = []
    for i, frame in enumerate(line):
        policy.events = ([TurnEvent.SPEECH_START] if i == onset + 3 else
                         [TurnEvent.TURN_END] if i == len(line) - 1 else [])
        signals += taker.feed(i * 0.02, frame, FrameType.NORMAL, False)
    return signals[-1].utterance


def test_the_utterance_reaches_back_over_a_short_first_word_the_onset_missed():
    # 1 s of digital silence, an 8-frame word, 2 frames of silence, then the word the onset was found on
    word, gap = [_tone(3000)] * 8, [np.zeros(160, np.int16)] * 2
    line = [np.zeros(160, np.int16)] * 50 + word + gap + [_tone(6000)] * 20
    onset = 60
    reached = _reach_back_utterance(20, line, onset)
    assert reached.lead == onset - 50 + 3  # the first word and 3 frames of its soft start
    assert reached.length == len(line) - (50 - 3)
    plain = _reach_back_utterance(0, line, onset)
    assert plain.lead == 5 and plain.length == len(line) - onset + 5  # only the preroll: the word is lost


def test_the_reach_back_stops_at_a_pause_and_at_its_bound():
    # a sound 0.3 s before the onset is another thing (a cough, a word said to someone else): not kept
    line = [np.zeros(160, np.int16)] * 50 + [_tone(3000)] * 5 + [np.zeros(160, np.int16)] * 15 + [_tone(6000)] * 20
    assert _reach_back_utterance(20, line, 70).lead == 5
    # sound from well before the onset: no more than the bound
    long = [np.zeros(160, np.int16)] * 50 + [_tone(3000)] * 30 + [_tone(6000)] * 20
    assert _reach_back_utterance(8, long, 80).lead == 8 + 3
    assert _reach_back_utterance(8, long, 80).since(4).lead == 7
    # a line as loud the whole time is its background (babble), not the caller: the preroll only
    loud = [_tone(3000)] * 60 + [_tone(6000)] * 20
    assert _reach_back_utterance(8, loud, 60).lead == 5
