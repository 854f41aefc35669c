"""The typed events a call's controller reacts to, and the order it takes them in.

Every event is a frozen dataclass posted to the controller's queue by the thread that saw it
happen (the media clock, a reply thread, a tool thread, the SIP thread), so no thread reaches
into state another one owns: what crosses between threads is one of these, or a `ReplyHandle`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gateway.conversation.answer_detection import AnswerSignal

if TYPE_CHECKING:
    from gateway.conversation.actions import ToolOutcome
    from gateway.conversation.reply import ReplyHandle


@dataclass(frozen=True)
class Utterance:
    """The caller's audio of one utterance up to a moment (8 kHz frames, preroll included).

    A snapshot, not a shared growing list: the media thread keeps appending to its own list and
    hands out a new `Utterance` at each pause, so transcription never reads a list being written.
    `number` tells utterances apart (a transcript of the same one may be reused).
    `wide` holds, on a wideband (G.722) call, the same frames at 16 kHz, one per frame of
    `frames`, None where only 8 kHz audio stands (echo-cancelled while the bot talked); empty on
    a G.711 call. utterance_audio.py makes the 16 kHz audio the models hear from both.
    `lead` counts the frames before the speech onset (the preroll, or more where the caller's
    sound reached back further: turn_taker.py), so the caller's speech start can be told.
    """

    number: int
    frames: tuple[np.ndarray, ...]
    wide: tuple[np.ndarray | None, ...] = ()
    lead: int = 0

    def since(self, start: int) -> Utterance:
        """The same utterance from frame `start` on (the phrase after a pause)."""
        return Utterance(self.number, self.frames[start:], self.wide[start:], max(0, self.lead - start))

    @property
    def length(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class CallStarted:
    pass


@dataclass(frozen=True)
class CallStopped:
    pass


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # onset of the caller's speech


@dataclass(frozen=True)
class BargedIn:
    at: float  # onset of the caller's speech over the bot
    silenced_at: float  # when the bot's audio was flushed (the same tick)
    heard: Mapping[int, str] = field(default_factory=dict)  # per turn, what went out before the flush


@dataclass(frozen=True)
class Held:
    """Something started over the bot: its audio was held (not dropped) on the media thread."""

    at: float  # onset of what was heard over the bot
    held_at: float  # when the bot's audio stopped going out (the same tick)


@dataclass(frozen=True)
class Unheld:
    """What held the bot was no interruption (a cough, a backchannel, a noise): the bot went on."""

    at: float  # when its audio went out again


@dataclass(frozen=True)
class Paused:
    at: float  # the last voiced frame
    utterance: Utterance


@dataclass(frozen=True)
class Resumed:
    at: float


@dataclass(frozen=True)
class TurnEnded:
    at: float  # the last voiced frame
    decided_at: float  # when the policy gave the turn to the bot
    utterance: Utterance
    finished: float | None = None  # the end-of-turn model's P(finished) the decision rested on, if any


@dataclass(frozen=True)
class DtmfPressed:
    digit: str


@dataclass(frozen=True)
class ReplyFinished:
    reply: ReplyHandle  # its thread has generated everything it will (or failed, or was cancelled)


@dataclass(frozen=True)
class ToolFinished:
    outcome: ToolOutcome


TurnSignal = SpeechStarted | BargedIn | Held | Unheld | Paused | Resumed | TurnEnded
# AnswerSignal: who answered an outbound call (answer_detection.py), from the media thread
CallEvent = CallStarted | CallStopped | TurnSignal | DtmfPressed | ReplyFinished | ToolFinished | AnswerSignal


class Priority(enum.IntEnum):
    """Lower first: stopping and barge-in are never queued behind ordinary work."""

    STOP = 0
    BARGE_IN = 1
    TURN = 2
    OTHER = 3


def priority(event: CallEvent) -> Priority:
    match event:
        case CallStopped():
            return Priority.STOP
        case BargedIn() | Held() | Unheld():
            return Priority.BARGE_IN
        case SpeechStarted() | Paused() | Resumed() | TurnEnded():
            return Priority.TURN
        case _:
            return Priority.OTHER


# -- what the controller did: for observers (tests, benchmarks), never read by the call itself --


@dataclass(frozen=True)
class PhraseSaid:
    why: str  # greeting, reprompt, caller_silent, caller_goodbye, model_error, transfer_failed, ...
    text: str


@dataclass(frozen=True)
class TurnLogged:
    reply: ReplyHandle  # its `turn` line was logged: caller and bot text, stage timings


@dataclass(frozen=True)
class BargeInHandled:
    onset_to_silence_ms: float
    heard: str  # what the caller had heard of the interrupted reply


Observation = PhraseSaid | TurnLogged | BargeInHandled | ToolFinished
