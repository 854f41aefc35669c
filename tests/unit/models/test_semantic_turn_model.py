"""The semantic turn policy with the real end-of-turn model and the real VAD, on piper speech
through the telephone band: a caller who stops to think mid-sentence keeps the turn; the question
that follows ends it sooner than silence alone would.

The clock is virtual and the verdict is computed at the pause and handed over on the next tick
(the real model thread's plumbing is tested in tests/unit/test_semantic_turn.py), so the test
checks the model's judgement and the policy's timing, not this machine's speed.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from gateway.conversation.end_of_turn import model_input
from gateway.conversation.events import Paused, Resumed, SpeechStarted, TurnEnded, Utterance
from gateway.conversation.semantic_turn import SemanticTurnPolicy, Verdict
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.turn_taker import TurnTaker
from models.piper import PiperTts
from models.registry import resolve_turn_model
from models.silero import SileroVad
from models.smart_turn import SmartTurn
from rtp.jitter import FrameType


class InlineVerdicts:
    """The real model, run at the pause, its answer delivered on the next poll."""

    def __init__(self, model: SmartTurn):
        self.model = model
        self.answers: list[Verdict] = []
        self.judged: list[float] = []

    def ask(self, pause: int, utterance: Utterance) -> None:
        probability = self.model.probability(model_input(utterance))
        self.judged.append(probability)
        self.answers.append(Verdict(pause, probability))

    def forget(self) -> None:
        self.answers.clear()

    def poll(self) -> Verdict | None:
        return self.answers.pop(0) if self.answers else None


def line_audio(tts: PiperTts, text: str) -> np.ndarray:
    pcm = np.concatenate([c.pcm for c in tts.synthesize(text)]).astype(np.float32) / 32768
    return (np.clip(soxr.resample(pcm, tts.sample_rate, 8000), -1, 1) * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 8000), dtype=np.int16)


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn(resolve_turn_model())


def test_a_thinking_pause_keeps_the_turn_and_the_question_ends_it(tts: PiperTts, vad: SileroVad,
                                                                 smart_turn: SmartTurn) -> None:
    first, second = line_audio(tts, "Hi, I was wondering"), line_audio(tts, "are you open on Saturday?")
    audio = np.concatenate([silence(0.5), first, silence(0.9), second, silence(2.0)])
    second_starts = (0.5 * 8000 + len(first)) / 8000 + 0.9
    settings = ConversationSettings(turn_model="smart_turn")
    verdicts = InlineVerdicts(smart_turn)
    taker = TurnTaker(vad.new_stream(8000), SemanticTurnPolicy(settings.turn, settings.semantic_turn, verdicts),
                      preroll_frames=10)
    events = []
    for i in range(len(audio) // 160):
        now = (i + 1) * 0.02
        events += [(now, e) for e in taker.feed(now, audio[i * 160:(i + 1) * 160], FrameType.NORMAL, False)]
    ends = [e for _, e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1, [(t, type(e).__name__) for t, e in events]
    end = ends[0]
    assert end.at > second_starts  # not in the thinking pause: after the question
    assert {SpeechStarted, Paused, Resumed} <= {type(e) for _, e in events}
    silence_before_end = end.decided_at - end.at
    assert silence_before_end < settings.end_of_turn_ms / 1000  # sooner than silence alone would
    # "Hi," (comma pause) is judged finished but too short to end early; "Hi, I was wondering" is not
    assert min(verdicts.judged) < 0.5 < verdicts.judged[-1], verdicts.judged
