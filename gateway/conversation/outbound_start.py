"""How an outbound call starts: the callee speaks first, and a machine gets a message, not a chat.

Why: a bot that talks the instant the callee picks up collides with their "Hello?", and one that
greets a voicemail talks over its greeting and then answers the voicemail's own words. A good
caller waits for the callee's first words (or a moment of silence), answers them at once, and on
a voicemail waits for the beep, leaves one message and hangs up (issue 14).

Two halves, one per owning thread:

* `AnswerListener` (media clock): feeds the answer policy (answer_detection.py) every frame with
  the VAD probability the turn taker computed, and tells the agent whether the turn taker's
  events may reach the controller: not before the verdict, never on a machine we leave a message
  on (its greeting is no question to answer), and not for the utterance under way at the verdict
  (the "Hello?" is answered by the greeting, not by the LLM as well).
* `OutboundOpening` (controller): acts on the verdict: greet a person at once; on a machine hang
  up, or wait for `MachineReady` and leave the message once (then the call hangs up when it has
  played). It logs and records the verdict with its timing.

Inbound calls build neither: they greet at answer as before.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import structlog

from gateway.agents.base import RecordKind
from gateway.conversation.answer_detection import (
    CARRIER,
    AnswerClassified,
    AnswerKind,
    AnswerPolicy,
    AnswerSignal,
    MachineReady,
)
from gateway.conversation.events import BargedIn, Held, SpeechStarted, TurnSignal
from gateway.conversation.settings import AmdSettings

Transcribe = Callable[[tuple[np.ndarray, ...]], Future[str]]  # 8 kHz frames -> their text, on the models' pool
_MAX_FRAMES = 500  # 10 s: the opening's audio kept for the first words' transcript
_PREROLL_S = 0.2


class AnswerListener:
    """The media thread's half: the answer policy, the gate on turn events, and (with `transcribe`)
    the first words' transcript, asked at a HUMAN verdict and polled every frame, never waited for:
    a short recorded greeting without a beep ("This is Anna, leave a message") reads like a person's
    answer by its shape, and only its words tell."""

    def __init__(self, policy: AnswerPolicy, amd_enabled: bool, transcribe: Transcribe | None = None):
        self.policy = policy
        self.amd_enabled = amd_enabled
        self.transcribe = transcribe if amd_enabled else None
        self._verdict: AnswerKind | None = None
        self._ready = False
        self._stale = True  # the utterance under way at the verdict belongs to the opening
        self._frames: list[tuple[float, np.ndarray]] = []  # the opening's audio, until the verdict
        self._words: Future[str] | None = None

    def feed(self, now: float, pcm: np.ndarray, speech_probability: float) -> list[AnswerSignal]:
        if self.policy.done:
            return []
        if self._verdict is None and len(self._frames) < _MAX_FRAMES:
            self._frames.append((now, pcm))
        signals = self.policy.feed(now, pcm, speech_probability)
        words = self._words
        if words is not None and words.done():
            self._words = None
            try:
                text = words.result()
            except Exception:  # a failing STT costs the confirmation, never the call
                text = ""
            signals += self.policy.words_heard(now, text)
        for signal in signals:
            if isinstance(signal, AnswerClassified):
                self._verdict = signal.kind
                self._confirm(signal)
            else:
                self._ready = True
        return signals

    def _confirm(self, verdict: AnswerClassified) -> None:
        """At a person's verdict: ask for the transcript of their first words."""
        frames, self._frames = self._frames, []
        if self.transcribe is None or verdict.kind is not AnswerKind.HUMAN or verdict.first_words_at is None:
            return
        start = verdict.first_words_at - _PREROLL_S
        self._words = self.transcribe(tuple(pcm for at, pcm in frames if at >= start))
        self.policy.await_words()

    def passes(self, signal: TurnSignal) -> bool:
        """Whether this turn event goes to the controller."""
        if self._verdict is None:
            return False
        if self._verdict is AnswerKind.MACHINE and (self.amd_enabled or not self._ready):
            return False
        if isinstance(signal, SpeechStarted | BargedIn | Held):
            self._stale = False  # a new utterance: the conversation's
        return not self._stale


class OpeningState(enum.Enum):
    WAITING = "waiting"  # for the verdict
    MACHINE = "machine"  # a machine: waiting for its beep
    DONE = "done"  # greeted, message said, or hung up


@dataclass(frozen=True)
class OpeningActions:
    """What the opening may make the call do (the controller's own methods)."""

    greet: Callable[[], None]  # the greeting (or the returning caller's), now
    say_last: Callable[[str, str], object]  # (text, why): spoken once, then the call hangs up
    hangup: Callable[[str], None]  # (reason)
    prepare: Callable[[str], object]  # synthesize a line now, so it plays the moment it is needed
    cut: Callable[[], object]  # silence the bot at once (a greeting said to what turned out a machine)


class OutboundOpening:
    """The controller's half: what the verdict makes the call do. Controller thread only."""

    def __init__(self, settings: AmdSettings, message: str, log: structlog.typing.FilteringBoundLogger,
                 record: Callable[..., None], actions: OpeningActions):
        self.settings = settings
        self.message = message  # the voicemail message, its {variables} filled
        self.log = log
        self.record = record
        self.actions = actions
        self.state = OpeningState.WAITING

    @property
    def waiting(self) -> bool:
        """The conversation has not started: no re-prompt or silence hang-up yet."""
        return self.state is not OpeningState.DONE

    def start(self, greeting: str) -> None:
        """The call is up: synthesize the greeting now (its {variables} make it this call's own),
        so it goes out the moment the callee's first words end, not a TTS run later."""
        if greeting:
            self.actions.prepare(greeting)

    def handle(self, signal: AnswerSignal) -> None:
        match signal:
            case AnswerClassified():
                self._on_verdict(signal)
            case MachineReady():
                self._on_ready(signal)

    def _on_verdict(self, verdict: AnswerClassified) -> None:
        first_words_ms = None if verdict.first_words_at is None else \
            round((verdict.first_words_at - verdict.answered_at) * 1000, 1)
        after_words_ms = None if verdict.words_end_at is None else round((verdict.at - verdict.words_end_at) * 1000, 1)
        self.log.info("amd_verdict", verdict=verdict.kind.value, reason=verdict.reason,
                      after_answer_ms=verdict.after_answer_ms, first_words_ms=first_words_ms,
                      after_words_ms=after_words_ms, speech_s=verdict.speech_s, amd=self.settings.enabled)
        self.record(RecordKind.AMD, at=time.time(), verdict=verdict.kind.value, reason=verdict.reason,
                    after_answer_ms=verdict.after_answer_ms, first_words_ms=first_words_ms, speech_s=verdict.speech_s)
        actions = self.actions
        if verdict.kind is not AnswerKind.MACHINE:
            self.state = OpeningState.DONE
            actions.greet()
            return
        if self.state is OpeningState.DONE:  # a beep after a short "greeting" we took for a person
            if not self.settings.enabled:
                return  # the conversation has started: it goes on
            actions.cut()
        if self.settings.enabled and (self.settings.on_machine == "hangup" or verdict.reason == CARRIER):
            # a carrier's "not in service" takes no message
            self.state = OpeningState.DONE
            actions.hangup("answering_machine")
        else:
            self.state = OpeningState.MACHINE
            if self.settings.enabled:
                actions.prepare(self.message)  # while the greeting plays: the message goes out at the beep

    def _on_ready(self, ready: MachineReady) -> None:
        if self.state is not OpeningState.MACHINE:
            return
        self.state = OpeningState.DONE
        beep = ready.beep
        self.log.info("amd_machine_ready", why=ready.why.value, beep_hz=beep.frequency_hz if beep else None,
                      beep_ms=round(beep.length_s * 1000) if beep else None)
        self.record(RecordKind.AMD, at=time.time(), ready=ready.why.value,
                    beep_hz=beep.frequency_hz if beep else None)
        if self.settings.enabled:
            self.actions.say_last(self.message, "voicemail_message")
        else:
            self.actions.greet()  # no detection wanted: the machine is talked to like a person, once it is quiet


