"""End of turn from what the caller's turn sounds like, not only from how long they were quiet.

Silence alone cannot tell "Are you open on Saturday?" from "Hi, I was wondering ..." followed by
a breath: with `end_of_turn_ms` at 400 the bot answers the second one into the caller's pause,
and with a longer one every complete question waits for nothing. `SemanticTurnPolicy` keeps the
VAD policy (`TurnDetector`) for onsets, pauses, resumes and barge-in, and at each pause asks an
end-of-turn judge whether the turn sounds finished, and reads what the caller's words say
(text_turn.py, on the speculative transcript the controller starts at the same pause):

* finished (probability >= `threshold`): the turn ends once the silence has lasted `min_silence_ms`
  (shorter than `end_of_turn_ms`); a turn shorter than `SHORT_TURN_S` at `end_of_turn_ms` (see there);
* unfinished: it waits until `max_wait_ms` of silence, or until the caller goes on (RESUME);
* no verdict yet at `end_of_turn_ms`: it ends there, as the VAD policy would, so a slow model
  never costs more than silence alone; a failing model is not asked again in the call (the words
  still count, and without them silence alone decides).

The words come first when they are plain: a transcript that stops on "and", "the", "if", a
filler or a lead-in ("I was wondering") holds the turn open whatever the audio model says, and a
question ("...?") that ends on a word a sentence can end on is finished. Only when the words say
neither (whisper ends nearly every fragment with ".") does the audio verdict decide. The turn never
ends before its words are read (up to `max_wait_ms`): the reply needs that transcript anyway, so
the wait costs no latency, and on a loaded machine (transcripts 650 ms late) ending at
`end_of_turn_ms` on a "finished" sound cut into "So my daughter needs ...". A one-word transcript
("Yes.", "Tuesday.") ends at `end_of_turn_ms`, as silence alone would, whatever the sound.
Measured on the tune half of the listening corpus (docs/benchmarks.md), smart-turn hears these
narrowband synthetic voices badly even with Pipecat's exact input (the same features to the last
bit; more trailing silence or pre-speech audio only raises P(finished) for unfinished phrases too):
hence a threshold of 0.9 for the sound, and the words first ("Could you tell me" heard as
"Come you can't help me." scored 0.88 and was cut into at 0.8).

What the model hears: the turn so far, or, after a pause that only the model held open (longer than
`end_of_turn_ms`), the phrase since that pause. smart-turn judges one phrase well and a turn with
a long silence in it badly: on piper speech "are you open on Saturday?" is 0.96 finished, but
"Hi, I was wondering" + 0.9 s + "are you open on Saturday?" only 0.09-0.13 (0.98 on the last 1.6 s).

The speculative reply started at PAUSE keeps running while the policy waits (the controller only
drops it at RESUME), so a long wait costs the caller no extra model time once the turn ends.

Threads: the policy lives on the media clock thread and never waits. The judge's model (50-120 ms)
runs on another thread (end_of_turn.py); a `VerdictSource` carries the question there and the
`Verdict` back through a queue, polled here once per tick. Verdicts name the pause they answer,
and one for an older pause (the caller went on meanwhile) is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.conversation.events import Utterance
from gateway.conversation.text_turn import TextVerdict
from gateway.conversation.turns import Detected, TurnConfig, TurnDetector, TurnEvent

_EPS = 1e-9
# A turn shorter than this (onset to last voiced frame) never ends early. smart-turn calls a greeting
# or a filler that opens a longer turn finished: on piper speech "Hi," 0.93, "Good morning," 0.95,
# "Yes," 0.92, while "Hi, I was wondering" is 0.03. Piper's comma pause after "Hi," is ~340 ms:
# ended at 200 ms, the bot answered "Hi" into the caller's sentence, where silence alone (400 ms)
# does not. A short turn judged finished ends at end_of_turn_ms, as with the VAD policy; one
# judged unfinished ("The thing is", 0.44) still waits.
SHORT_TURN_S = 0.8
# A transcript covering all but this many frames of the pause's utterance speaks for it (the
# controller reuses one under way when a pause adds only trailing silence: transcribe.py).
_REUSED_FRAMES = 5


@dataclass(frozen=True)
class SemanticTurnConfig:
    """Built by `ConversationSettings.semantic_turn`, where the defaults and YAML keys live."""

    threshold: float  # P(finished) at or above which the turn is finished
    min_silence_ms: int  # a finished turn ends after this much silence
    max_wait_ms: int  # an unfinished one after this much (>= the VAD's end_of_turn_ms)
    reads_words: bool = False  # transcripts' words come too (`Words`): a finished sound waits for them


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one pause: P(the caller has finished), or why there is none."""

    pause: int  # the pause it was asked for (`VerdictSource.ask`)
    probability: float | None
    error: str | None = None
    seconds: float = 0.0  # how long the judge took


@dataclass(frozen=True)
class Words:
    """What the words of a transcript say: for the utterance `utterance` up to frame `frames`
    (one transcript may serve several pauses: the controller reuses one that covers all but the
    last 100 ms). Comes from the thread that finished the transcript."""

    utterance: int
    frames: int
    verdict: TextVerdict
    transcript: str = ""


class VerdictSource(Protocol):
    """The media thread's end of a judge: ask about a pause, collect answers, never wait."""

    def ask(self, pause: int, utterance: Utterance) -> None:
        """Judge `utterance` (the turn so far) for pause number `pause`; returns at once."""
        ...

    def forget(self) -> None:
        """No answer asked for so far is wanted any more (the caller went on): skip the work."""
        ...

    def poll(self) -> Verdict | Words | None:
        """The next answer (from the audio model, or from a transcript's words) that has arrived, or None."""
        ...


class SemanticTurnPolicy:
    """A `TurnPolicy`: the VAD policy, with the end of each turn moved by end-of-turn verdicts."""

    def __init__(self, config: TurnConfig, semantic: SemanticTurnConfig, verdicts: VerdictSource,
                 on_failure: Callable[[str], None] = lambda error: None):
        # The VAD policy underneath ends a turn only at max_wait_ms: every earlier end is decided here.
        self._vad = TurnDetector(replace(config, end_of_turn_ms=max(config.end_of_turn_ms, semantic.max_wait_ms)))
        self._end_of_turn_s = config.end_of_turn_ms / 1000
        self._min_silence_s = semantic.min_silence_ms / 1000
        self._threshold = semantic.threshold
        self._reads_words = semantic.reads_words
        self._verdicts = verdicts
        self._on_failure = on_failure
        self._onset = 0.0  # of the current turn
        self._pause_at = 0.0  # last voiced frame before the latest pause
        self._utterance = 0  # number of the utterance at the latest pause
        self._heard = 0  # frames of the utterance at the latest pause
        self._phrase = 0  # first frame of the utterance the model hears: after the last long pause
        self._pause = 0  # number of the latest pause
        self._waiting = False  # in a pause, deciding whether it ends the turn
        self._verdict: Verdict | None = None  # the audio model's answer for the pause we wait in
        self._words: Words | None = None  # what the transcript's words say about that pause
        self.failed = False  # the audio model failed once: it is not asked again in this call
        self.last_verdict: Verdict | None = None  # for logs and tests
        self.last_words: Words | None = None  # for logs and tests

    @property
    def in_speech(self) -> bool:
        return self._vad.in_speech

    def update(self, now: float, probability: float, bot_speaking: bool = False, loud: bool = False,
               quiet: bool = False) -> list[Detected]:
        detected = self._vad.update(now, probability, bot_speaking=bot_speaking, loud=loud, quiet=quiet)
        for d in detected:
            match d.event:
                case TurnEvent.PAUSE:
                    self._pause += 1
                    self._pause_at = d.at
                    self._waiting, self._verdict, self._words = True, None, None
                case TurnEvent.BARGE_IN | TurnEvent.SPEECH_START:
                    self._onset, self._phrase = d.at, 0
                    self._stop_waiting()
                case TurnEvent.RESUME:
                    if d.at - self._pause_at >= self._end_of_turn_s - _EPS:
                        self._phrase = self._heard  # a new phrase after a pause silence alone would have ended
                    self._stop_waiting()
                case TurnEvent.TURN_END:  # max_wait_ms of silence
                    detected[detected.index(d)] = replace(d, finished=self._probability())
                    self._stop_waiting()
        self._collect()
        last_voice = self._vad.last_voice
        if self._waiting and last_voice is not None and self._turn_over(now - last_voice, last_voice - self._onset):
            self._vad.end_turn()
            finished = self._probability()
            self._stop_waiting()
            detected.append(Detected(TurnEvent.TURN_END, last_voice, finished))
        return detected

    def on_pause(self, utterance: Utterance) -> None:
        self._utterance, self._heard = utterance.number, utterance.length
        if self._waiting and not self.failed:
            phrase = utterance.since(self._phrase) if self._phrase else utterance
            self._verdicts.ask(self._pause, phrase)

    def _turn_over(self, silence: float, spoken: float) -> bool:
        words = self._words.verdict if self._words is not None else None
        if words is TextVerdict.INCOMPLETE:
            return False  # the VAD policy underneath ends it at max_wait_ms
        if words is TextVerdict.COMPLETE:
            return silence >= self._min_silence_s - _EPS
        if words is TextVerdict.ANSWER:
            return silence >= self._end_of_turn_s - _EPS  # "Yes.": as the VAD policy
        if self._reads_words and words is None:
            # Not read yet. The reply cannot start before its transcript anyway, so waiting for the
            # words costs no latency, and ending without them cut into pauses on a loaded machine.
            return False  # the VAD policy underneath ends it at max_wait_ms if they never come
        verdict = self._verdict
        if verdict is None or verdict.probability is None:
            return silence >= self._end_of_turn_s - _EPS  # no verdict (yet): as the VAD policy
        if verdict.probability >= self._threshold:
            short = spoken < SHORT_TURN_S - _EPS
            return silence >= (self._end_of_turn_s if short else self._min_silence_s) - _EPS
        return False  # unfinished: the VAD policy underneath ends it at max_wait_ms

    def _probability(self) -> float | None:
        return None if self._verdict is None else self._verdict.probability

    def _collect(self) -> None:
        while (answer := self._verdicts.poll()) is not None:
            if isinstance(answer, Words):
                if self._waiting and answer.utterance == self._utterance \
                        and self._heard - _REUSED_FRAMES <= answer.frames <= self._heard:
                    self._words = self.last_words = answer
                continue
            if answer.error is not None:
                if not self.failed:
                    self.failed = True
                    self._on_failure(answer.error)
                continue
            if self._waiting and answer.pause == self._pause:
                self._verdict = self.last_verdict = answer

    def _stop_waiting(self) -> None:
        if self._waiting:
            self._verdicts.forget()
        self._waiting, self._verdict, self._words = False, None, None
