"""End of turn from the words (`turn_model: smart_turn+text`, the default): the transcript judge's
rules, the policy on a virtual clock with scripted audio and word verdicts, and the plumbing that
brings a transcript's words to the media thread."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest

from gateway.conversation.end_of_turn import CallVerdicts
from gateway.conversation.events import Paused, Resumed, SpeechStarted, TurnEnded, Utterance
from gateway.conversation.semantic_turn import SemanticTurnPolicy, Words
from gateway.conversation.text_turn import TextVerdict, judge_text
from tests.unit.test_semantic_turn import ScriptedVerdicts, kinds, run, turn_end, utterance

INCOMPLETE, COMPLETE, UNSURE, ANSWER = (TextVerdict.INCOMPLETE, TextVerdict.COMPLETE, TextVerdict.UNSURE,
                                        TextVerdict.ANSWER)


@pytest.mark.parametrize(("transcript", "expected"), [
    ("Hi, I was wondering.", INCOMPLETE),  # a lead-in
    ("Uh, the thing is", INCOMPLETE),
    ("Um, let me see.", INCOMPLETE),
    ("So my daughter needs.", INCOMPLETE),  # a verb that wants its object
    ("I would like to book.", INCOMPLETE),
    ("Could you tell me?", INCOMPLETE),  # "?" does not close "tell me"
    ("Do you know if", INCOMPLETE),  # a subordinator
    ("I was going to ask about", INCOMPLETE),  # a preposition
    ("and the", INCOMPLETE),
    ("I need a cleaning and", INCOMPLETE),
    ("Hello, I have a question about", INCOMPLETE),
    ("Hi, I wonder...", INCOMPLETE),  # trailing dots
    ("What are your opening hours?", COMPLETE),
    ("what are you opening hours", COMPLETE),  # a question word, no "?": still a question
    ("Hi, is there parking near you.", COMPLETE),
    ("Can I come in?", COMPLETE),  # a particle ends a question
    ("Can I book?", COMPLETE),
    ("Yes.", ANSWER),  # one word: an answer
    ("No.", ANSWER),
    ("Yes, please.", ANSWER),  # two words, neither open nor a filler: an answer
    ("Thank you.", ANSWER),
    ("Two days.", ANSWER),  # "Tuesday." heard as two words
    ("And all.", UNSURE),  # starts like a continuation
    ("So, um.", INCOMPLETE),  # a filler: a start
    ("My husband.", ANSWER),  # the price: a two-word start is taken for an answer (400 ms of silence)
    ("I think so.", UNSURE),
    ("My tooth hurts since yesterday.", UNSURE),
    ("", UNSURE),
    ("...", INCOMPLETE),
    ("A.", ANSWER),  # one word: an answer ("Eight."), not a start
    ("Thirdly...", ANSWER),
    ("So...", INCOMPLETE),
    ("Um.", INCOMPLETE),  # ... unless it is a filler
    ("4 2 m in 1", UNSURE),  # digits are words
])
def test_the_words_say_whether_a_turn_is_finished(transcript, expected):
    assert judge_text(transcript) is expected


@dataclass
class WordsAndSound(ScriptedVerdicts):
    """ScriptedVerdicts plus the transcript's words per pause: (verdict, seconds after the pause).
    The words come whether or not the audio model is asked (they come from the controller's
    transcript of the whole utterance at the pause, not from the model)."""

    words: dict[int, tuple[TextVerdict, float]] = field(default_factory=dict)
    pauses: int = 0

    def hear(self, utterance: Utterance) -> None:
        self.pauses += 1
        if self.pauses in self.words:
            verdict, delay = self.words[self.pauses]
            self._due.append((self.now + delay, Words(utterance.number, utterance.length, verdict)))


def run_words(verdicts: WordsAndSound, speech: list[tuple[float, float]], until: float, **settings):
    """As test_semantic_turn.run, with the words of each pause delivered as in a call: the
    controller's transcript of the pause's utterance finishing some time after the pause."""
    settings.setdefault("turn_model", "smart_turn+text")
    on_pause = SemanticTurnPolicy.on_pause

    def hearing(policy: SemanticTurnPolicy, utterance: Utterance) -> None:
        on_pause(policy, utterance)
        verdicts.hear(utterance)

    SemanticTurnPolicy.on_pause = hearing  # type: ignore[method-assign]
    try:
        return run(verdicts, speech, until, **settings)
    finally:
        SemanticTurnPolicy.on_pause = on_pause  # type: ignore[method-assign]


def test_a_phrase_a_thinking_pause_and_the_rest_is_one_turn_that_ends_after_the_rest():
    # "Hi, I was wondering" (the audio model calls it finished: 0.9) ... 1.2 s ... "do you take new patients?"
    verdicts = WordsAndSound({1: (0.9, 0.08), 2: (0.3, 0.08)}, words={1: (INCOMPLETE, 0.14), 2: (COMPLETE, 0.14)})
    events, _ = run_words(verdicts, [(1.0, 2.0), (3.2, 4.4)], until=6.5)
    assert kinds(events) == [SpeechStarted, Paused, Resumed, Paused, TurnEnded]
    assert sum(isinstance(e, TurnEnded) for _, e in events) == 1
    end = turn_end(events)
    assert end.at == pytest.approx(4.38)  # after the rest, not in the pause
    # the question's words end it after turn_min_silence_ms (their verdict is due at 60 + 140 ms)
    assert end.decided_at == pytest.approx(4.38 + 0.06 + 0.14)


def test_incomplete_words_hold_the_turn_until_max_wait_whatever_the_sound():
    verdicts = WordsAndSound({1: (0.99, 0.05)}, words={1: (INCOMPLETE, 0.1)})
    events, _ = run_words(verdicts, [(1.0, 2.0)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(1.98 + 1.5)


def test_a_complete_question_ends_early_without_the_audio_model():
    verdicts = WordsAndSound({}, words={1: (COMPLETE, 0.1)})
    events, _ = run_words(verdicts, [(1.0, 2.2)], until=4.0)
    end = turn_end(events)
    assert end.decided_at == pytest.approx(2.18 + 0.2)  # turn_min_silence_ms, shorter than end_of_turn_ms
    assert end.decided_at - end.at < 0.4


def test_a_finished_sound_waits_for_the_words_before_ending_early():
    # the audio says finished at 60 + 50 ms; the words are due at 60 + 240 ms and say nothing plain
    verdicts = WordsAndSound({1: (0.95, 0.05)}, words={1: (UNSURE, 0.24)})
    events, _ = run_words(verdicts, [(1.0, 2.2)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.18 + 0.06 + 0.24)
    # words 600 ms late (a loaded machine): still waited for, and here they hold the turn open
    verdicts = WordsAndSound({1: (0.95, 0.05)}, words={1: (INCOMPLETE, 0.6)})
    events, _ = run_words(verdicts, [(1.0, 2.2)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.18 + 1.5)
    # words that never come (the reply could not start without its transcript either): max_wait_ms
    events, _ = run_words(WordsAndSound({1: (0.95, 0.05)}), [(1.0, 2.2)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.18 + 1.5)


def test_unsure_words_and_an_unfinished_sound_wait_but_a_one_word_answer_does_not():
    events, _ = run_words(WordsAndSound({1: (0.3, 0.05)}, words={1: (UNSURE, 0.1)}), [(1.0, 2.2)], until=4.0)
    assert turn_end(events).decided_at == pytest.approx(2.18 + 1.5)
    # "Yes.": silence alone decides, whatever the sound
    events, _ = run_words(WordsAndSound({1: (0.3, 0.05)}, words={1: (ANSWER, 0.1)}), [(1.0, 1.4)], until=3.0)
    assert turn_end(events).decided_at == pytest.approx(1.38 + 0.4)
    events, _ = run_words(WordsAndSound({1: (0.99, 0.05)}, words={1: (ANSWER, 0.1)}), [(1.0, 1.4)], until=3.0)
    assert turn_end(events).decided_at == pytest.approx(1.38 + 0.4)


def test_a_failing_judge_falls_back_to_silence():
    # the audio model fails and the words say neither: silence alone (end_of_turn_ms)
    verdicts = WordsAndSound({1: (None, 0.05)}, error="RuntimeError: onnx", words={1: (UNSURE, 0.1)})
    events, policy = run_words(verdicts, [(1.0, 2.0)], until=3.5)
    assert turn_end(events).decided_at == pytest.approx(1.98 + 0.4)
    assert policy.failed and policy.last_verdict is None


def test_the_words_still_count_after_the_audio_model_failed():
    verdicts = WordsAndSound({1: (None, 0.05), 2: (None, 0.05)}, error="RuntimeError: onnx",
                             words={1: (UNSURE, 0.1), 2: (INCOMPLETE, 0.1)})
    events, policy = run_words(verdicts, [(1.0, 2.0), (3.0, 3.5)], until=6.0)
    ends = [e for _, e in events if isinstance(e, TurnEnded)]
    assert policy.failed
    assert ends[0].decided_at == pytest.approx(1.98 + 0.4)
    # never asked again, but the transcript's words still hold the turn open
    assert ends[1].decided_at == pytest.approx(3.48 + 1.5)


def test_words_of_another_utterance_are_ignored():
    verdicts = WordsAndSound({}, words={1: (UNSURE, 0.1)})
    verdicts._due.append((0.0, Words(7, 10, COMPLETE)))  # not this utterance: ignored
    events, policy = run_words(verdicts, [(1.0, 2.0)], until=3.0)
    assert turn_end(events).decided_at == pytest.approx(1.98 + 0.4)  # the UNSURE words, no audio verdict
    assert policy.last_words is not None and policy.last_words.verdict is UNSURE


# -- the words' plumbing -------------------------------------------------------------------------


def wait_for_heard(verdicts: CallVerdicts, timeout: float = 2.0) -> Words:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = verdicts.poll()
        if isinstance(answer, Words):
            return answer
        time.sleep(0.005)
    raise AssertionError("no words")


def test_a_transcript_finishing_on_another_thread_brings_its_words_to_the_call():
    verdicts = CallVerdicts(None)  # `turn_model: text`: no audio model
    said = utterance(1.0, number=3)
    verdicts.ask(1, said)  # no model: nothing asked, nothing answered
    assert verdicts.poll() is None
    transcript: Future[str] = Future()
    verdicts.heard(said, transcript)
    assert verdicts.poll() is None  # not done yet
    transcript.set_result("Hi, I was wondering")
    heard = wait_for_heard(verdicts)
    assert (heard.utterance, heard.frames, heard.verdict) == (3, said.length, INCOMPLETE)
    assert heard.transcript == "Hi, I was wondering"


def test_a_failed_transcript_says_nothing():
    verdicts = CallVerdicts(None)
    transcript: Future[str] = Future()
    verdicts.heard(utterance(0.5), transcript)
    transcript.set_exception(RuntimeError("stt down"))
    assert wait_for_heard(verdicts).verdict is UNSURE


def test_the_transcriber_tells_the_call_of_every_transcript_it_hands_out():
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from gateway.conversation.transcribe import Transcriber
    from models.base import Transcript

    stt = SimpleNamespace(transcribe=lambda audio, prompt=None: Transcript("Could you tell me", 1.0, 0.1))
    told: list[tuple[int, int]] = []
    with ThreadPoolExecutor(1) as pool:
        transcriber = Transcriber(stt, pool)  # type: ignore[arg-type]
        verdicts = CallVerdicts(None)
        transcriber.listeners += [verdicts.heard, lambda u, f: told.append((u.number, u.length))]
        said = utterance(1.0, number=2)
        first = transcriber.transcribe(said)
        # a pause that adds only 60 ms reuses the transcript under way: the call still hears of it
        longer = Utterance(2, said.frames + said.frames[:3])
        assert transcriber.transcribe(longer) is first
        assert told == [(2, said.length), (2, longer.length)]
        heard = [wait_for_heard(verdicts), wait_for_heard(verdicts)]
    assert [h.frames for h in heard] == [said.length, longer.length]
    assert all(h.verdict is INCOMPLETE for h in heard)
