"""The semantic turn policy's timing on a virtual clock: the turn taker fed tick by tick, the
end-of-turn verdicts scripted (what each pause is judged, and how long the judge takes, in
virtual time). Plus the model thread's plumbing with a stand-in judge function."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.conversation.end_of_turn import EndOfTurnModel, model_input
from gateway.conversation.events import Paused, Resumed, SpeechStarted, TurnEnded, Utterance
from gateway.conversation.semantic_turn import SemanticTurnPolicy, Verdict
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.turn_taker import TurnTaker
from rtp.jitter import FrameType
from tests.unit.conversation_fakes import FakeVadStream

TICK = 0.02


@dataclass
class ScriptedVerdicts:
    """A `VerdictSource` whose answers are scripted per pause: (P(finished), seconds to answer).

    A pause missing from the script is never answered. `late` answers are delivered even after
    `forget` (an answer already on its way when the caller went on)."""

    script: dict[int, tuple[float | None, float]]
    late: bool = False
    error: str | None = None
    now: float = 0.0
    asked: list[tuple[int, float, int]] = field(default_factory=list)  # pause, when, frames
    forgotten: int = 0
    _due: list[tuple[float, Verdict]] = field(default_factory=list)

    def ask(self, pause: int, utterance: Utterance) -> None:
        self.asked.append((pause, self.now, utterance.length))
        if pause in self.script:
            probability, delay = self.script[pause]
            self._due.append((self.now + delay, Verdict(pause, probability, self.error)))

    def forget(self) -> None:
        self.forgotten += 1
        if not self.late:
            self._due.clear()

    def poll(self) -> Verdict | None:
        for item in self._due:
            if item[0] <= self.now + 1e-9:
                self._due.remove(item)
                return item[1]
        return None


def run(verdicts: ScriptedVerdicts, speech: list[tuple[float, float]], until: float, failures: list[str] | None = None,
        **settings) -> tuple[list[tuple[float, object]], SemanticTurnPolicy]:
    s = ConversationSettings(**{"turn_model": "smart_turn", **settings})
    policy = SemanticTurnPolicy(s.turn, s.semantic_turn, verdicts, (failures if failures is not None else []).append)
    taker = TurnTaker(FakeVadStream(1000.0), policy, preroll_frames=10)
    rng = np.random.default_rng(0)
    events, t = [], 0.0
    while t < until - 1e-9:
        t = round(t + TICK, 6)
        verdicts.now = t
        speaking = any(a <= t < b for a, b in speech)
        pcm = (rng.standard_normal(160) * 3000).astype(np.int16) if speaking else np.zeros(160, np.int16)
        events += [(t, e) for e in taker.feed(t, pcm, FrameType.NORMAL, False)]
    return events, policy


def kinds(events: list[tuple[float, object]]) -> list[type]:
    return [type(e) for _, e in events]


def turn_end(events: list[tuple[float, object]]) -> TurnEnded:
    return next(e for _, e in events if isinstance(e, TurnEnded))


def test_a_complete_turn_ends_after_the_short_minimum_silence():
    verdicts = ScriptedVerdicts({1: (0.95, 0.08)})
    events, _ = run(verdicts, [(1.0, 2.5)], until=4.0)
    assert kinds(events) == [SpeechStarted, Paused, TurnEnded]
    end = turn_end(events)
    assert end.at == pytest.approx(2.48)
    assert end.decided_at == pytest.approx(2.48 + 0.2)  # turn_min_silence_ms, not end_of_turn_ms (400)
    assert end.finished == 0.95  # what the decision rested on (the `turn` log's end_of_turn_p)
    assert verdicts.asked[0][0] == 1 and verdicts.asked[0][1] == pytest.approx(2.48 + 0.06)  # asked at the pause
    assert verdicts.asked[0][2] > 0  # with the utterance so far


def test_a_verdict_after_the_minimum_silence_ends_the_turn_when_it_arrives():
    events, _ = run(ScriptedVerdicts({1: (0.95, 0.24)}), [(1.0, 2.5)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.48 + 0.06 + 0.24)


def test_an_incomplete_turn_waits_until_max_wait():
    events, _ = run(ScriptedVerdicts({1: (0.05, 0.08)}), [(1.0, 2.0)], until=4.0)
    assert kinds(events) == [SpeechStarted, Paused, TurnEnded]
    end = turn_end(events)
    assert end.at == pytest.approx(1.98)
    assert end.decided_at == pytest.approx(1.98 + 1.5)  # turn_max_wait_ms
    assert end.finished == 0.05


def test_max_wait_is_configurable():
    events, _ = run(ScriptedVerdicts({1: (0.05, 0.08)}), [(1.0, 2.0)], until=4.0, turn_max_wait_ms=900)
    assert turn_end(events).decided_at == pytest.approx(1.98 + 0.9)


def test_the_caller_going_on_in_an_incomplete_pause_is_one_turn_that_ends_after_the_question():
    # "Hi, I was wondering" ... 0.9 s ... "are you open on Saturday?"
    verdicts = ScriptedVerdicts({1: (0.05, 0.08), 2: (0.97, 0.08)})
    events, _ = run(verdicts, [(1.0, 2.0), (2.9, 3.6)], until=5.0)
    assert kinds(events) == [SpeechStarted, Paused, Resumed, Paused, TurnEnded]
    assert turn_end(events).decided_at == pytest.approx(3.58 + 0.2)
    assert verdicts.forgotten >= 1  # the first pause's question is withdrawn at the resume
    assert [pause for pause, _, _ in verdicts.asked] == [1, 2]
    assert verdicts.asked[1][2] > verdicts.asked[0][2]  # the second question hears more of the turn


def test_after_a_pause_only_the_model_held_open_the_model_hears_the_new_phrase():
    verdicts = ScriptedVerdicts({1: (0.05, 0.08), 2: (0.05, 0.08), 3: (0.97, 0.08)})
    run(verdicts, [(1.0, 2.0), (2.2, 2.6), (3.5, 4.1)], until=6.0)
    (_, _, first), (_, _, second), (_, _, third) = verdicts.asked
    assert second > first  # a 200 ms pause (< end_of_turn_ms): still the whole turn
    # after the 0.9 s pause: from that pause on (its silence, then the new phrase), not the whole turn
    assert third == round((4.08 + 0.06 - (2.58 + 0.06)) / TICK)


def test_a_short_turn_judged_finished_keeps_the_vad_timing():
    # "Hi," judged finished (smart-turn does): too short to trust, so it ends at end_of_turn_ms as today
    events, _ = run(ScriptedVerdicts({1: (0.95, 0.08)}), [(1.0, 1.4)], until=3.0)
    assert turn_end(events).decided_at == pytest.approx(1.38 + 0.4)


def test_a_short_turn_judged_unfinished_still_waits():
    # "The thing is" ... : short, but the model's "unfinished" holds the turn open
    events, _ = run(ScriptedVerdicts({1: (0.2, 0.08)}), [(1.0, 1.4)], until=3.5)
    assert turn_end(events).decided_at == pytest.approx(1.38 + 1.5)


def test_a_slow_verdict_falls_back_to_end_of_turn_ms():
    events, _ = run(ScriptedVerdicts({1: (0.05, 0.6)}), [(1.0, 2.5)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.48 + 0.4)  # as the VAD policy
    assert turn_end(events).finished is None


def test_no_verdict_at_all_falls_back_to_end_of_turn_ms():
    events, _ = run(ScriptedVerdicts({}), [(1.0, 2.5)], until=4.0, end_of_turn_ms=500)
    assert turn_end(events).decided_at == pytest.approx(2.48 + 0.5)


def test_a_verdict_for_an_older_pause_is_ignored():
    # pause 1's "finished" arrives during pause 2, which is never answered: it must not end pause 2 early
    verdicts = ScriptedVerdicts({1: (0.99, 0.65)}, late=True)  # due at 2.69, pause 2 is at 2.64
    events, policy = run(verdicts, [(1.0, 2.0), (2.2, 2.6)], until=4.0)
    assert kinds(events) == [SpeechStarted, Paused, Resumed, Paused, TurnEnded]
    assert turn_end(events).decided_at == pytest.approx(2.58 + 0.4)  # the VAD fallback, not 2.58 + 0.2
    assert policy.last_verdict is None


def test_a_failing_model_falls_back_to_silence_for_the_rest_of_the_call():
    failures: list[str] = []
    verdicts = ScriptedVerdicts({1: (None, 0.05), 2: (0.99, 0.05)}, error="RuntimeError: onnx")
    events, policy = run(verdicts, [(1.0, 2.0), (3.0, 3.5)], until=5.0, failures=failures)
    assert kinds(events) == [SpeechStarted, Paused, TurnEnded, SpeechStarted, Paused, TurnEnded]
    first, second = (e for _, e in events if isinstance(e, TurnEnded))
    assert first.decided_at == pytest.approx(1.98 + 0.4)
    assert second.decided_at == pytest.approx(3.48 + 0.4)
    assert failures == ["RuntimeError: onnx"]  # logged once
    assert policy.failed and [p for p, _, _ in verdicts.asked] == [1]  # never asked again


# -- the model thread ---------------------------------------------------------------------------


def utterance(seconds: float, number: int = 1) -> Utterance:
    rng = np.random.default_rng(number)
    frames = int(seconds * 50)
    return Utterance(number, tuple((rng.standard_normal(160) * 3000).astype(np.int16) for _ in range(frames)))


def wait_for(verdicts, timeout: float = 2.0) -> Verdict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdict = verdicts.poll()
        if verdict is not None:
            return verdict
        time.sleep(0.005)
    raise AssertionError("no verdict")


def test_model_input_is_the_last_8_s_at_16_khz_in_float():
    audio = model_input(utterance(10.0))
    assert audio.dtype == np.float32 and len(audio) == 8 * 16000
    assert 0.05 < float(np.abs(audio).max()) <= 1.0


def test_the_model_runs_on_its_own_thread_and_answers_through_the_calls_queue():
    threads: list[str] = []

    def judge(audio: np.ndarray) -> float:
        threads.append(threading.current_thread().name)
        return 0.75

    model = EndOfTurnModel(judge)
    try:
        verdicts = model.for_call()
        verdicts.ask(3, utterance(1.0))
        verdict = wait_for(verdicts)
        assert (verdict.pause, verdict.probability, verdict.error) == (3, 0.75, None)
        assert threads and threads[0].startswith("turn-model") and threads[0] != threading.current_thread().name
    finally:
        model.close()


def test_a_failing_judge_answers_with_its_error():
    def judge(audio: np.ndarray) -> float:
        raise RuntimeError("bad input")

    model = EndOfTurnModel(judge)
    try:
        verdicts = model.for_call()
        verdicts.ask(1, utterance(0.5))
        verdict = wait_for(verdicts)
        assert verdict.probability is None and verdict.error == "RuntimeError: bad input"
    finally:
        model.close()


def test_a_question_withdrawn_before_its_turn_is_skipped():
    release = threading.Event()
    judged: list[int] = []

    def judge(audio: np.ndarray) -> float:
        release.wait(2)
        judged.append(len(audio))
        return 0.5

    model = EndOfTurnModel(judge)
    try:
        busy, mine = model.for_call(), model.for_call()
        busy.ask(1, utterance(0.5))  # occupies the model thread
        mine.ask(1, utterance(1.0))
        mine.forget()  # the caller went on while it queued
        release.set()
        assert wait_for(busy).pause == 1
        time.sleep(0.05)
        assert mine.poll() is None and len(judged) == 1
    finally:
        model.close()
