"""One bot reply, from the moment it is started to the moment the caller has heard it.

A reply has one state, changed only through its methods (each under the handle's lock, so the
controller, the reply's own thread, the media clock and a tool thread can all hold it):

    SPECULATIVE --release()--> RELEASED --first frame out--> PLAYING --all out--> PLAYED
         \\______________________\\_________________\\____cancel()____> CANCELLED

A speculative reply prepares its audio while the caller may still go on; `release()` lets it
play; `cancel()` drops it (the caller went on, barged in, or the call ended). "All out" needs
both that the reply has nothing more to say (`finish`) and that its last frame was played.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.conversation.events import Utterance
from gateway.tools import ToolCall


class ReplyState(enum.Enum):
    SPECULATIVE = "speculative"
    RELEASED = "released"
    PLAYING = "playing"
    PLAYED = "played"
    CANCELLED = "cancelled"


_FINAL = (ReplyState.PLAYED, ReplyState.CANCELLED)


@dataclass
class TurnTimings:
    """Clock times of one turn's stages; logged as milliseconds after the caller stopped."""

    speech_end: float
    speculative: bool
    turn_decision: float | None = None
    transcript_final: float | None = None
    llm_first_token: float | None = None
    first_clause: float | None = None
    first_tts_audio: float | None = None
    first_rtp: float | None = None
    end_of_turn_model: float | None = None  # not a time: the P(finished) behind turn_decision, if a model judged
    first_tts_s: float | None = None  # not a time: how long the first clause's synthesis took (speak.py)

    def as_ms(self) -> dict[str, float | None]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round((t - self.speech_end) * 1000, 1)

        return {
            "turn_decision_ms": rel(self.turn_decision),
            "transcript_final_ms": rel(self.transcript_final),
            "llm_first_token_ms": rel(self.llm_first_token),
            "first_clause_ms": rel(self.first_clause),
            "first_tts_audio_ms": rel(self.first_tts_audio),
            "first_rtp_ms": rel(self.first_rtp),
        }


@dataclass(frozen=True)
class FollowUp:
    """A reply nobody asked for just now: what the LLM is told (a tool's result, keys pressed),
    and the line said if the model gives nothing speakable."""

    note: str
    fallback: str | None = None


@dataclass(eq=False)
class ReplyHandle:
    turn: int
    timings: TurnTimings
    caller_audio: Utterance | None = None  # what the reply answers (None: a fixed line or a follow-up)
    follow_up: FollowUp | None = None
    notes: tuple[FollowUp, ...] = ()  # tool results handed to this reply; given back if it is cancelled unheard
    told_notes: bool = False  # the reply thread put `notes` into the LLM's message
    fixed_line: bool = False  # greeting, re-prompt, goodbye: kept out of the LLM's history
    after_repeat_request: bool = False  # the bot's last answer asked the caller to say it again: not twice
    # Written by the reply's own thread until `finish()`; read by the controller after it.
    caller_text: str = ""
    spoken: list[str] = field(default_factory=list)  # clauses queued to play, in order
    phrases: list[str] = field(default_factory=list)  # fixed lines among them ("one moment"): not for the history
    bot_audio_s: float = 0.0
    is_bye: bool = False
    asked_repeat: bool = False  # it asks the caller to say it again (the transcript was not trusted)
    failed: bool = False
    action: ToolCall | None = None  # run once released (and, for a transfer, played)
    retrieval_ms: float | None = None
    llm_stats: object | None = None
    heard: str | None = None  # set at a barge-in: the words that went out before the flush
    settled: bool = False  # controller: its end (goodbye, apology, turn log) has been dealt with

    def __post_init__(self) -> None:
        self._state = ReplyState.SPECULATIVE
        self._finished = False
        self._queued = False  # audio of it still waits in the playout queue
        self._changed = threading.Condition()
        self.cancelled = threading.Event()  # a CancelToken for the models: set with CANCELLED
        self.first_audio = threading.Event()  # its first clause is queued to play

    @property
    def state(self) -> ReplyState:
        return self._state

    @property
    def finished(self) -> bool:
        return self._finished

    def waited(self, now: float) -> float:
        """How long a released reply has gone without any audio since its turn was decided (0 when
        it spoke, finished or is not released): the controller's watchdog gives up on a hung model."""
        decided = self.timings.turn_decision
        if not self.released or decided is None or self.spoken or self.finished:
            return 0.0
        return now - decided

    @property
    def released(self) -> bool:
        return self._state in (ReplyState.RELEASED, ReplyState.PLAYING, ReplyState.PLAYED)

    @property
    def heard_text(self) -> str:
        """What the caller heard of it: all it said once played out, the flushed prefix if cut."""
        if self.heard is not None:
            return self.heard
        return " ".join(self.spoken)

    def release(self) -> None:
        with self._changed:
            if self._state is ReplyState.SPECULATIVE:
                self._set(ReplyState.RELEASED)
                self._maybe_played()

    def cancel(self) -> bool:
        """Drop it (a no-op once played); True if this call cancelled it."""
        with self._changed:
            if self._state in _FINAL:
                return False
            self.cancelled.set()
            self._set(ReplyState.CANCELLED)
            return True

    def finish(self, audio_queued: Callable[[], bool]) -> None:
        """The reply's thread is done: it will queue no more audio. `audio_queued()` (asked after
        that is settled, so a frame drained meanwhile is not missed) says if some still waits."""
        with self._changed:
            self._finished = True
            self._queued = audio_queued()
            self._maybe_played()
            self._changed.notify_all()

    def started_playing(self, at: float) -> None:
        """Media clock: its first frame went out."""
        with self._changed:
            if self.timings.first_rtp is None:
                self.timings.first_rtp = at
            if self._state is ReplyState.RELEASED:
                self._set(ReplyState.PLAYING)

    def drained(self) -> None:
        """Media clock: the last of its queued frames went out."""
        with self._changed:
            self._queued = False
            self._maybe_played()

    def wait_played(self, timeout: float | None = None) -> bool:
        """Block until it has played out (True) or was cancelled (False); False on timeout too."""
        with self._changed:
            self._changed.wait_for(lambda: self._state in _FINAL, timeout)
            return self._state is ReplyState.PLAYED

    def played_unless(self, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """`wait_played` for a tool thread (a transfer waits for its notice to be heard): False if
        the reply was cancelled (the caller barged in) or `stop` was set (the call ended)."""
        while not self.wait_played(poll_s):
            if self._state is ReplyState.CANCELLED or stop.is_set():
                return False
        return not stop.is_set()

    def _maybe_played(self) -> None:
        if self._finished and not self._queued and self._state in (ReplyState.RELEASED, ReplyState.PLAYING):
            self._set(ReplyState.PLAYED)

    def _set(self, state: ReplyState) -> None:
        self._state = state
        self._changed.notify_all()
