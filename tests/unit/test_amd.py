"""Answering-machine detection's timing logic on a virtual clock: the beep detector, the answer
policy (scripted speech probabilities), the media thread's gate on turn events, what the controller
does with each verdict, and the agent's `amd:` block in the YAML."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import structlog

from gateway.config import ConfigError, load_config
from gateway.conversation.answer_detection import (
    AnswerClassified,
    AnswerConfig,
    AnswerKind,
    MachineReady,
    ReadyWhy,
    ShapeAnswerPolicy,
    machine_words,
)
from gateway.conversation.beep import BeepDetector, tone_in_frame
from gateway.conversation.events import Paused, SpeechStarted, TurnEnded, Utterance
from gateway.conversation.outbound_start import AnswerListener, OpeningActions, OpeningState, OutboundOpening
from gateway.conversation.settings import AmdSettings

RATE, FRAME, TICK = 8000, 160, 0.02
SILENCE = np.zeros(FRAME, dtype=np.int16)


def sine(hz: float, dbfs: float = -15.0, start: int = 0) -> np.ndarray:
    n = np.arange(start, start + FRAME)
    return np.rint(10 ** (dbfs / 20) * np.sqrt(2) * 32767 * np.sin(2 * np.pi * hz * n / RATE)).astype(np.int16)


def noise_frame(seed: int, dbfs: float = -20.0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(FRAME)
    return np.rint(x * 10 ** (dbfs / 20) * 32767).astype(np.int16)


# -- beep ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hz", [400.0, 537.0, 1000.0, 1412.5, 2000.0])
def test_a_pure_tone_in_the_beep_range_is_found_at_its_frequency(hz):
    found = tone_in_frame(sine(hz))
    assert found is not None and abs(found - hz) <= 25


def test_noise_silence_and_tones_outside_the_range_are_no_beep():
    assert tone_in_frame(noise_frame(1)) is None
    assert tone_in_frame(SILENCE) is None
    assert tone_in_frame(sine(1000.0, dbfs=-60)) is None  # too quiet: the line
    assert tone_in_frame(sine(3000.0)) is None


def test_a_steady_tone_is_reported_once_when_it_ends_with_its_length():
    beeps = BeepDetector()
    tones = []
    for i in range(60):
        pcm = sine(1000.0, start=i * FRAME) if 10 <= i < 35 else SILENCE  # 0.5 s of tone
        tone = beeps.feed(i * TICK, pcm)
        if tone is not None:
            tones.append(tone)
    assert len(tones) == 1
    assert tones[0].frequency_hz == pytest.approx(1000, abs=25)
    assert tones[0].length_s == pytest.approx(0.5, abs=0.03)


def test_a_tone_shorter_than_120_ms_is_no_beep():
    beeps = BeepDetector()
    assert all(beeps.feed(i * TICK, sine(800.0, start=i * FRAME) if i < 4 else SILENCE) is None for i in range(20))


# -- the answer policy -----------------------------------------------------------------------------


def run(script: list[tuple[float, float, float | None]], seconds: float) -> list:
    """Feed `seconds` of frames: `script` lists (start_s, end_s, tone_hz or None for speech)."""
    policy = ShapeAnswerPolicy(AnswerConfig())
    signals = []
    for i in range(int(round(seconds / TICK))):
        now = i * TICK
        pcm, probability = SILENCE, 0.0
        for start, end, hz in script:
            if start <= now < end - 1e-9:
                if hz is None:
                    pcm, probability = noise_frame(i), 0.9
                else:
                    pcm = sine(hz, start=i * FRAME)
        signals += policy.feed(now, pcm, probability)
    return signals


def verdicts(signals) -> list[AnswerClassified]:
    return [s for s in signals if isinstance(s, AnswerClassified)]


def test_hello_then_silence_is_a_person_decided_after_the_silence():
    signals = run([(0.3, 0.8, None)], 4.0)
    [verdict] = verdicts(signals)
    assert verdict.kind is AnswerKind.HUMAN and verdict.reason == "short_answer"
    assert verdict.at == pytest.approx(0.78 + 0.7, abs=0.03)  # the last speech frame + after_words_silence_s
    assert verdict.first_words_at == pytest.approx(0.3, abs=0.01)


def test_a_long_greeting_with_pauses_is_a_machine_and_ready_at_the_beep():
    script = [(0.4, 1.6, None), (1.9, 3.2, None), (3.5, 5.0, None), (5.5, 6.0, 1200.0)]
    signals = run(script, 9.0)
    [verdict] = verdicts(signals)
    assert verdict.kind is AnswerKind.MACHINE and verdict.reason == "long_greeting"
    assert verdict.at < 3.0  # 1.9 s of speech, not the whole greeting
    [ready] = [s for s in signals if isinstance(s, MachineReady)]
    assert ready.why is ReadyWhy.BEEP and ready.beep is not None
    assert ready.beep.frequency_hz == pytest.approx(1200, abs=25)
    assert 6.0 <= ready.at <= 6.0 + 0.4  # just after the beep's end


def test_a_greeting_without_a_beep_is_ready_after_beep_wait_s_of_silence():
    signals = run([(0.2, 3.0, None), (3.3, 4.0, None)], 10.0)
    [ready] = [s for s in signals if isinstance(s, MachineReady)]
    assert ready.why is ReadyWhy.SILENCE
    assert ready.at == pytest.approx(3.98 + 3.0, abs=0.03)


def test_silence_after_the_answer_is_unknown_and_the_bot_speaks():
    [verdict] = verdicts(run([], 3.0))
    assert verdict.kind is AnswerKind.UNKNOWN and verdict.at == pytest.approx(1.5, abs=0.01)


def test_a_short_greeting_taken_for_a_person_is_revised_by_its_beep():
    signals = run([(0.2, 1.4, None), (2.4, 2.8, 900.0)], 5.0)  # "Anna, leave a message." then a beep
    first, second = verdicts(signals)
    assert first.kind is AnswerKind.HUMAN and second.kind is AnswerKind.MACHINE
    assert second.reason == "beep_after_answer"
    [ready] = [s for s in signals if isinstance(s, MachineReady)]
    assert ready.why is ReadyWhy.BEEP and ready.at >= 2.8


def test_carrier_tones_before_the_words_are_no_beep():
    script = [(0.2, 0.5, 914.0), (0.5, 0.8, 1371.0), (0.8, 1.2, 1777.0), (1.5, 5.0, None)]
    signals = run(script, 10.0)
    [verdict] = verdicts(signals)
    assert verdict.kind is AnswerKind.MACHINE and verdict.reason == "carrier_tones"
    [ready] = [s for s in signals if isinstance(s, MachineReady)]
    assert ready.why is ReadyWhy.SILENCE and ready.at > 5.0  # after the announcement, not at its tones


# -- the media thread's gate -----------------------------------------------------------------------


class ScriptedPolicy:
    def __init__(self):
        self.out: list = []
        self.done = False

    def feed(self, now, pcm, probability):
        out, self.out = self.out, []
        return out


def verdict(kind: AnswerKind, at: float = 1.0) -> AnswerClassified:
    return AnswerClassified(kind, at, "test", 0.0, 0.3, 0.8, 0.5)


def test_turn_events_wait_for_the_verdict_and_the_hello_is_not_a_turn():
    policy = ScriptedPolicy()
    listener = AnswerListener(policy, amd_enabled=True)
    hello = Utterance(1, ())
    assert not listener.passes(SpeechStarted(0.3))
    policy.out = [verdict(AnswerKind.HUMAN)]
    listener.feed(1.0, SILENCE, 0.0)
    assert not listener.passes(TurnEnded(0.8, 1.2, hello))  # the Hello's turn: answered by the greeting
    assert listener.passes(SpeechStarted(3.0))  # the person's next words are the conversation's
    assert listener.passes(Paused(3.5, Utterance(2, ())))


def test_a_machine_never_gets_its_words_answered():
    policy = ScriptedPolicy()
    listener = AnswerListener(policy, amd_enabled=True)
    policy.out = [verdict(AnswerKind.MACHINE)]
    listener.feed(1.0, SILENCE, 0.0)
    policy.out = [MachineReady(5.0, ReadyWhy.BEEP, None)]
    listener.feed(5.0, SILENCE, 0.0)
    assert not listener.passes(SpeechStarted(6.0))


# -- the controller's half -------------------------------------------------------------------------


class Actions:
    def __init__(self):
        self.done: list[tuple] = []

    def opening(self, settings: AmdSettings) -> OutboundOpening:
        def record(kind, **fields):
            self.done.append(("record", str(kind), fields.get("verdict")))

        actions = OpeningActions(greet=lambda: self.done.append(("greet",)),
                                 say_last=lambda text, why: self.done.append(("say_last", text, why)),
                                 hangup=lambda reason: self.done.append(("hangup", reason)),
                                 prepare=lambda text: self.done.append(("prepare", text)),
                                 cut=lambda: self.done.append(("cut",)))
        return OutboundOpening(settings, "Your appointment is at ten.", structlog.get_logger("test"), record, actions)


def test_a_person_is_greeted_and_the_silence_timers_start():
    actions = Actions()
    opening = actions.opening(AmdSettings(on_machine="leave_message", message="x"))
    assert opening.waiting
    opening.handle(verdict(AnswerKind.HUMAN))
    assert ("greet",) in actions.done and not opening.waiting
    assert ("record", "amd", "human") in actions.done


def test_a_machine_gets_the_message_at_the_beep_once():
    actions = Actions()
    opening = actions.opening(AmdSettings(on_machine="leave_message", message="x"))
    opening.handle(verdict(AnswerKind.MACHINE))
    assert actions.done[-1] == ("prepare", "Your appointment is at ten.") and opening.state is OpeningState.MACHINE
    ready = MachineReady(6.0, ReadyWhy.BEEP, None)
    opening.handle(ready)
    opening.handle(ready)
    assert actions.done.count(("say_last", "Your appointment is at ten.", "voicemail_message")) == 1
    assert ("greet",) not in actions.done


def test_hangup_on_a_machine_and_a_late_beep_cuts_the_greeting():
    actions = Actions()
    opening = actions.opening(AmdSettings(on_machine="hangup"))
    opening.handle(verdict(AnswerKind.HUMAN))
    opening.handle(verdict(AnswerKind.MACHINE, at=2.5))  # revised by a beep
    assert actions.done[-2:] == [("cut",), ("hangup", "answering_machine")]


def test_a_carrier_announcement_is_hung_up_on_even_with_leave_message():
    actions = Actions()
    opening = actions.opening(AmdSettings(on_machine="leave_message", message="x"))
    opening.handle(AnswerClassified(AnswerKind.MACHINE, 0.4, "carrier_tones", 0.0, None, None, 0.0))
    assert actions.done[-1] == ("hangup", "answering_machine")


def test_without_amd_a_machine_is_greeted_once_it_is_quiet():
    actions = Actions()
    opening = actions.opening(AmdSettings(enabled=False))
    opening.handle(verdict(AnswerKind.MACHINE))
    assert ("greet",) not in actions.done
    opening.handle(MachineReady(7.0, ReadyWhy.SILENCE, None))
    assert actions.done[-1] == ("greet",)


# -- config ----------------------------------------------------------------------------------------


def config_with(tmp_path, amd: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        sip: {listen: "127.0.0.1:5080"}
        agents:
          reminder:
            type: conversation
            instructions: "Remind people."
        """) + textwrap.indent(amd, "    "))
    return str(path)


def test_the_amd_block_is_read_with_its_defaults(tmp_path):
    config = load_config(config_with(tmp_path, 'amd: {on_machine: leave_message, message: "Hi {name}."}\n'))
    amd = config.agents["reminder"].conversation.amd
    assert amd == AmdSettings(on_machine="leave_message", message="Hi {name}.")
    assert amd.enabled and amd.beep_wait_s == 3.0


@pytest.mark.parametrize(("amd", "key", "expected"), [
    ("amd: {on_machine: voicemail}\n", "agents.reminder.amd.on_machine", "one of hangup, leave_message"),
    ("amd: {on_machine: leave_message}\n", "agents.reminder.amd.message", "the message to leave"),
    ("amd: {beep_wait_s: 100}\n", "agents.reminder.amd.beep_wait_s", "0.5"),
    ("amd: {beeps: 1}\n", "agents.reminder.amd.beeps", "no such key"),
    ("amd: {enabled: maybe}\n", "agents.reminder.amd.enabled", "true or false"),
])
def test_amd_errors_name_the_key(tmp_path, amd, key, expected):
    with pytest.raises(ConfigError) as error:
        load_config(config_with(tmp_path, amd))
    assert key in str(error.value) and expected in str(error.value)


# -- the first words' transcript -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "machine"), [
    ("This is Anna. Leave a message.", True),
    ("Hi, you’ve reached David.", True),
    ("The subscriber you have called is not available.", True),
    ("Hello?", False),
    ("Hello, who is this?", False),
    ("Anna speaking.", False),
    ("Yes, hello?", False),
])
def test_machine_words(text, machine):
    assert machine_words(text) is machine


def test_a_short_greeting_without_a_beep_is_revised_by_its_words_and_left_a_message_after_it():
    from concurrent.futures import Future

    heard: Future[str] = Future()
    policy = ShapeAnswerPolicy(AnswerConfig())
    listener = AnswerListener(policy, amd_enabled=True, transcribe=lambda frames: heard)
    signals = []
    for i in range(int(8.0 / TICK)):
        now = i * TICK
        speaking = 0.3 <= now < 1.5
        if now >= 2.6 and not heard.done():
            heard.set_result("Anna, leave a message.")  # the transcript arrives ~0.4 s after the verdict
        signals += listener.feed(now, noise_frame(i) if speaking else SILENCE, 0.9 if speaking else 0.0)
    first, second = verdicts(signals)
    assert first.kind is AnswerKind.HUMAN and second.kind is AnswerKind.MACHINE
    assert second.reason == "machine_words" and second.at == pytest.approx(2.6, abs=0.03)
    assert not listener.passes(SpeechStarted(3.0))
    [ready] = [s for s in signals if isinstance(s, MachineReady)]
    assert ready.why is ReadyWhy.SILENCE and ready.at == pytest.approx(1.48 + 3.0, abs=0.03)


def test_a_persons_words_confirm_the_verdict_and_the_listener_stops():
    from concurrent.futures import Future

    heard: Future[str] = Future()
    heard.set_result("Hello?")
    policy = ShapeAnswerPolicy(AnswerConfig())
    listener = AnswerListener(policy, amd_enabled=True, transcribe=lambda frames: heard)
    signals = []
    for i in range(int(6.0 / TICK)):
        speaking = 0.3 <= i * TICK < 0.8
        signals += listener.feed(i * TICK, noise_frame(i) if speaking else SILENCE, 0.9 if speaking else 0.0)
    assert [v.kind for v in verdicts(signals)] == [AnswerKind.HUMAN]
    assert policy.done
