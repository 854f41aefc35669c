"""Who answered an outbound call, a person or a machine, from the shape of the answer's audio.

Why from the shape: a person answers with a word or two ("Hello?", "Anna speaking") and then
waits for us; a voicemail greeting talks on for several seconds ("Hi, you've reached Anna, I
can't take your call right now, please leave a message after the tone") and ends with a beep;
a carrier's message opens with tones and talks on too. So, as Asterisk's AMD and every contact
centre dialler do, the policy measures the answer: silence before the first words, how long the
speech goes on (pauses under `after_words_silence_s` do not end it), and whether a steady tone
comes (`beep.py`). Short speech followed by silence is a person (HUMAN, decided the moment that
silence is long enough, so the bot answers their "Hello?" at once); long speech or a tone is a
machine (MACHINE); no words within `initial_silence_s` is UNKNOWN (the bot speaks first).

After a MACHINE verdict the policy goes on listening for the moment to leave a message: the
beep's end, or the greeting's end when no beep comes (`beep_wait_s` of silence), or
`max_wait_s` in all.

The policy is fed every 20 ms frame on the media clock (`AnswerPolicy.feed`), with the VAD's
speech probability the turn taker already computed for that frame (zero where the line does not
stand out of its background, so babble under a person's "Hello?" is not taken for a greeting);
it returns typed signals for the controller. No I/O, no clock of its own: a test drives it on a
virtual clock, `bench/bench_amd.py` over a generated corpus.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from gateway.conversation.beep import BeepDetector, Tone

FRAME_S = 0.02
CARRIER = "carrier_tones"  # the reason of a MACHINE verdict on tones before any words
# After a tone, this long without words or another tone before the message starts: a carrier's
# three information tones come back to back and are followed by words, a voicemail's beep by silence.
_BEEP_SETTLE_S = 0.3


class AnswerKind(enum.Enum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"  # nothing said in time (a silent answer): the bot speaks first


class ReadyWhy(enum.Enum):
    """Why a machine is taken to be recording now."""

    BEEP = "beep"
    SILENCE = "silence"  # no beep, but the greeting is over
    TIMEOUT = "timeout"  # still talking or beeping after max_wait_s


@dataclass(frozen=True)
class AnswerConfig:
    """The policy's thresholds; built by `AmdSettings.answer` (settings.py), where the defaults live."""

    speech_threshold: float = 0.5  # VAD probability of a speech frame
    initial_silence_s: float = 1.5  # no words this long after the answer: UNKNOWN, the bot speaks
    after_words_silence_s: float = 0.7  # silence after short speech that makes it a person's answer
    max_human_speech_s: float = 1.9  # speech this long (pauses excluded) is a greeting, not an answer
    beep_wait_s: float = 3.0  # after a machine's greeting, silence this long without a beep: speak
    max_wait_s: float = 30.0  # the longest a machine is listened to before the message is left anyway
    late_beep_s: float = 2.0  # a beep this soon after a HUMAN verdict makes it MACHINE after all


@dataclass(frozen=True)
class AnswerClassified:
    """The verdict on who answered, once per call."""

    kind: AnswerKind
    at: float  # when it was decided
    reason: str  # short_answer, long_greeting, tone, silence
    answered_at: float  # the first frame of the call
    first_words_at: float | None  # onset of the callee's first speech, if any
    words_end_at: float | None  # the last speech frame before the decision, if any
    speech_s: float  # speech heard before the decision

    @property
    def after_answer_ms(self) -> float:
        return round((self.at - self.answered_at) * 1000, 1)


@dataclass(frozen=True)
class MachineReady:
    """The machine is recording: the moment to leave the message."""

    at: float
    why: ReadyWhy
    beep: Tone | None  # the beep heard, if any


AnswerSignal = AnswerClassified | MachineReady


class AnswerPolicy(Protocol):
    """Who answered, from the answer's frames (swappable: a model, the transcript, a test's script)."""

    @property
    def done(self) -> bool:
        """Nothing more to say: a person (or silence) was decided, or the machine is ready."""

    def feed(self, now: float, pcm: np.ndarray, speech_probability: float) -> list[AnswerSignal]:
        """One 20 ms frame (8 kHz int16) and the VAD's probability for it."""

    def await_words(self) -> None:
        """A transcript of the first words is coming: stay undecided enough to be revised by it."""

    def words_heard(self, now: float, text: str) -> list[AnswerSignal]:
        """The first words' transcript; may revise the verdict."""


# What recorded greetings and carriers say and people answering a call do not (lower case, matched
# in the transcript with its punctuation removed). "leave my message": whisper tiny.en's hearing of
# an espeak "leave a message" on the tune split.
MACHINE_PHRASES = ("leave a message", "leave your message", "leave me a message", "leave my message",
                   "leave your name",
                   "after the tone", "after the beep", "at the tone", "not available", "unavailable",
                   "can't take your call", "cannot take your call", "can't come to the phone", "voicemail",
                   "voice mail", "mailbox", "you've reached", "you have reached", "record your message",
                   "not in service", "try again later", "get back to you", "return your call")


def machine_words(text: str) -> bool:
    """Whether a transcript reads like a recorded greeting or a carrier's announcement."""
    plain = " ".join("".join(c if c.isalnum() or c in "' " else " " for c in text.lower().replace("’", "'")).split())
    return any(phrase in plain for phrase in MACHINE_PHRASES)


class ShapeAnswerPolicy:
    """The model-free policy: silence, speech length, the beep (see the module's docstring)."""

    def __init__(self, config: AnswerConfig):
        self.config = config
        self.beeps = BeepDetector()
        self.verdict: AnswerClassified | None = None
        self.ready: MachineReady | None = None
        self._answered_at: float | None = None
        self._first_words_at: float | None = None
        self._last_speech_at: float | None = None
        self._speech_s = 0.0
        self._beep: Tone | None = None  # the last tone that ended, while nobody spoke after it
        self._late_beep_until: float | None = None  # after a HUMAN verdict: a beep until then revises it
        self._awaiting_words = False  # the first words' transcript may still revise a HUMAN verdict

    @property
    def done(self) -> bool:
        verdict = self.verdict
        if verdict is None:
            return False
        if verdict.kind is AnswerKind.MACHINE:
            return self.ready is not None
        return self._late_beep_until is None and not self._awaiting_words  # nothing can revise it any more

    def await_words(self) -> None:
        """The first words are being transcribed: keep listening until `words_heard`."""
        self._awaiting_words = True

    def words_heard(self, now: float, text: str) -> list[AnswerSignal]:
        """The transcript of the first words: a person's verdict turns MACHINE if they read like a
        recorded greeting ("... leave a message", "not available")."""
        self._awaiting_words = False
        verdict = self.verdict
        if verdict is None or verdict.kind is AnswerKind.MACHINE or not machine_words(text):
            return []
        self.verdict = replace(self._verdict(AnswerKind.MACHINE, now, "machine_words"),
                               first_words_at=verdict.first_words_at)
        self._late_beep_until = None
        return [self.verdict]

    def feed(self, now: float, pcm: np.ndarray, speech_probability: float) -> list[AnswerSignal]:
        if self.done:
            return []
        if self._answered_at is None:
            self._answered_at = now
        tone = self.beeps.feed(now, pcm)
        in_tone = self.beeps.in_tone or tone is not None
        if speech_probability >= self.config.speech_threshold and not in_tone:
            if self._first_words_at is None:
                self._first_words_at = now
            self._last_speech_at = now
            self._speech_s += FRAME_S
        if self.verdict is None:
            verdict = self._classify(now, tone)
            if verdict is None:
                return []
            self.verdict = verdict
            self._beep = tone
            if verdict.kind is not AnswerKind.MACHINE:
                self._late_beep_until = now + self.config.late_beep_s
            return [verdict]
        if self.verdict.kind is not AnswerKind.MACHINE:
            return self._late_beep(now) if self._late_beep_until is not None else []
        ready = self._machine_ready(now, tone)
        if ready is None:
            return []
        self.ready = ready
        return [ready]

    def _classify(self, now: float, tone: Tone | None) -> AnswerClassified | None:
        config = self.config
        assert self._answered_at is not None
        if tone is not None or self.beeps.in_tone:
            # tones before any words: a carrier's information tones (its announcement follows)
            return self._verdict(AnswerKind.MACHINE, now, "beep" if self._first_words_at is not None else CARRIER)
        if self._first_words_at is None:
            if now - self._answered_at >= config.initial_silence_s - 1e-9:
                return self._verdict(AnswerKind.UNKNOWN, now, "silence")
            return None
        if self._speech_s >= config.max_human_speech_s - 1e-9:
            return self._verdict(AnswerKind.MACHINE, now, "long_greeting")
        assert self._last_speech_at is not None
        if now - self._last_speech_at >= config.after_words_silence_s - 1e-9:
            return self._verdict(AnswerKind.HUMAN, now, "short_answer")
        return None

    def _late_beep(self, now: float) -> list[AnswerSignal]:
        """A short greeting ("Anna, leave a message") reads as a person's answer until its beep:
        a steady tone soon after a HUMAN verdict makes it a machine after all (the bot's opening
        line is cut by the controller, and the message waits for the beep's end)."""
        assert self.verdict is not None and self._late_beep_until is not None
        if self.beeps.in_tone and self.verdict.first_words_at is not None:
            self.verdict = replace(self._verdict(AnswerKind.MACHINE, now, "beep_after_answer"),
                                   first_words_at=self.verdict.first_words_at)
            self._late_beep_until = None
            return [self.verdict]
        if now >= self._late_beep_until - 1e-9:
            self._late_beep_until = None
        return []

    def _verdict(self, kind: AnswerKind, now: float, reason: str) -> AnswerClassified:
        assert self._answered_at is not None
        return AnswerClassified(kind, now, reason, self._answered_at, self._first_words_at, self._last_speech_at,
                                round(self._speech_s, 2))

    def _machine_ready(self, now: float, tone: Tone | None) -> MachineReady | None:
        """After a MACHINE verdict: the beep's end, the greeting's end without one, or the cap."""
        assert self.verdict is not None
        config = self.config
        if tone is not None:
            self._beep = tone
        beep = self._beep
        if beep is not None and (self._first_words_at is None or self._first_words_at > beep.started_at):
            beep = None  # tones before any words: a carrier's information tones, its announcement follows
        if beep is not None and self._last_speech_at is not None and self._last_speech_at > beep.ended_at:
            beep = self._beep = None  # words after the tone: a carrier's tones, or a tone inside the greeting
        if beep is not None and not self.beeps.in_tone and now - beep.ended_at >= _BEEP_SETTLE_S - 1e-9:
            return MachineReady(now, ReadyWhy.BEEP, beep)
        if now - self.verdict.at >= config.max_wait_s - 1e-9:
            return MachineReady(now, ReadyWhy.TIMEOUT, self.beeps.ongoing(now))
        if self.beeps.in_tone:
            return None
        quiet_since = self._last_speech_at if self._last_speech_at is not None else self.verdict.at
        if now - quiet_since >= config.beep_wait_s - 1e-9:
            return MachineReady(now, ReadyWhy.SILENCE, None)
        return None
