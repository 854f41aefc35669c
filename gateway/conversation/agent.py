"""The conversation agent: a caller talks, the bot answers like a person would.

Three kinds of threads, each with one job:

* the media clock (every 20 ms): VAD and turn detection on the caller's echo-cancelled audio,
  collecting the utterance, handing out the bot's next frame, and, on barge-in, silencing the
  bot *at once* (the queued audio is flushed right there, not after a round trip to a thread);
* the call's controller thread: reacts to turn events in priority order (barge-in and stop are
  never queued behind ordinary work), starts and cancels replies, runs the silence timers;
* reply threads: transcript -> streamed LLM -> clause-by-clause TTS -> the playout queue.

Replies start speculatively when the caller pauses: the utterance so far is transcribed at
every pause while the caller is still speaking, so when they stop the transcript is usually
already under way; the reply's audio is held until the turn is confirmed and dropped if the
caller goes on. While the bot talks, the echo guard keeps its own voice coming back on the line
from being taken for the caller (see echo_guard.py).
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from gateway.agents.base import CallContext
from gateway.config import DtmfAction
from gateway.conversation.actions import CallFacts, ToolExecutor, ToolOutcome
from gateway.conversation.caller_facts import call_reason, caller_name
from gateway.conversation.clauses import ClauseSplitter
from gateway.conversation.echo_guard import EchoGuard, level_db
from gateway.conversation.history import approx_tokens, fit_history
from gateway.conversation.planner import (
    is_goodbye,
    plan_turn,
    unasked_tool_call,
    ungrounded_arguments,
    without_invented_number,
)
from gateway.conversation.playout import Playout
from gateway.conversation.skills import AgentSkills
from gateway.conversation.speech import ConversationServices, clause_pause_ms, synthesize_line_audio, trim_silence
from gateway.conversation.turns import Detected, TurnConfig, TurnDetector, TurnEvent
from gateway.store import StoreError, normalize_caller_id
from gateway.tools import BUILTIN_TOOLS, ToolCall, ToolCallDetector, parse_tool_call
from models.base import ChatMessage, ModelError
from rtp.jitter import FrameType, JitterFrame
from rtp.resample import int16_to_float, resample

_STT_RATE = 16000
_SILENT_DB = -50.0  # below this the line carries nothing worth judging
_REUSE_FRAMES = 5  # a transcript covering all but the last 100 ms (trailing silence) is reused
_QUIET_BELOW_SPEECH_DB = 30.0  # a frame this far below the caller's speech peak is no speech
_QUIET_ABOVE_NOISE_DB = 10.0  # ... unless it stands out of the line's noise by more than this
_HISTORY_KEPT = 80  # messages stored per call before the oldest are summarized away
_CALLER_LINES_KEPT = 300
_FIRST_AUDIO_WAIT_S = 0.3  # longest the LLM pauses for the first clause's TTS
# Caller memory may live in a shared database that is slow or away: the greeting waits at most
# this long for the caller's record, and the end of a call at most this long for its write
# (which goes on in the background), so neither the caller nor the SIP thread's teardown waits on it.
_MEMORY_WAIT_S = 0.5
_MEMORY_IO = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memory")
_PEAK_DECAY_DB = 0.05  # per 20 ms frame: the speech peak follows a caller who gets quieter


@dataclass(frozen=True)
class ConversationSettings:
    greeting: str
    instructions: str
    turn: TurnConfig = field(default_factory=TurnConfig)
    reprompt_after_s: float = 8.0
    reprompt: str = "Are you still there?"
    hangup_after_s: float = 20.0
    goodbye: str = "Thank you for calling. Goodbye!"
    max_reply_tokens: int = 120
    temperature: float = 0.3
    preroll_ms: int = 200
    agent_name: str = ""
    returning_greeting: str = "Welcome back, {name}! How can I help you today?"
    unknown_answer: str = "I'm sorry, I don't have that information. I can take a message for you."
    acknowledgement: str = "One moment, please."
    history_tokens: int = 1200
    dtmf: Mapping[str, DtmfAction] = field(default_factory=dict)
    remember_callers: bool = True
    transfer_notice: str = "Transferring you to {target} now."
    transfer_failed: str = "I'm sorry, the transfer did not go through. Can I take a message instead?"
    tool_failed: str = "I'm sorry, I couldn't get that information right now."
    message_taken: str = "I have taken your message. Someone will get back to you soon."
    not_understood: str = "Sorry, I didn't quite get that. Could you say it again?"
    apology: str = "I'm sorry, I'm having a technical problem. Could you say that again?"
    model_timeout_s: float = 8.0  # a reply with no audio this long after the turn: the models are stuck
    dtmf_gap_s: float = 1.5  # keypresses not bound to an action are collected until this pause



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


@dataclass
class _Reply:
    turn: int
    audio: list[np.ndarray]
    end_index: int
    timings: TurnTimings
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    released: bool = False
    user_text: str = ""
    bot_text: list[str] = field(default_factory=list)
    is_bye: bool = False
    failed: bool = False
    logged: bool = False
    phrase: bool = False  # a fixed line (greeting, re-prompt, goodbye): kept out of the LLM's history
    prompt_note: str | None = None  # a follow-up (a tool's result): what the LLM is told instead of a caller turn
    action: ToolCall | None = None  # run once the reply is released (and, for a transfer, has played)
    released_event: threading.Event = field(default_factory=threading.Event)
    retrieval_ms: float | None = None
    acknowledged: bool = False  # "one moment" already queued for a tool call
    fallback: str | None = None
    best_fact: str | None = None  # said instead of a tool call the checks refused
    audio_s: float = 0.0  # seconds of audio queued for this reply
    phrases: list[str] = field(default_factory=list)  # fixed lines in it ("one moment"): not for the history
    first_audio: threading.Event = field(default_factory=threading.Event)  # the first clause is queued to play
    llm_stats: object | None = None  # the engine's stream statistics, if it keeps any (models.llama.StreamStats)


# Event priorities: lower first. Stop and barge-in are "system" events and overtake the rest.
_STOP, _BARGE_IN, _TURN, _OTHER = 0, 1, 2, 3


class ConversationAgent:
    uses_echo_canceller = False  # the echo guard judges the line as received (see echo_guard.py)

    def __init__(self, context: CallContext, settings: ConversationSettings, services: ConversationServices,
                 clock: Callable[[], float] = time.monotonic):
        self.context = context
        self.settings = settings
        self.services = services
        self.models = services.models
        self.clock = clock
        self.log = context.log
        self.playout = Playout(clock=clock)
        self.detector = TurnDetector(settings.turn)
        self._vad = self.models.vad.new_stream(8000)
        self._echo_guard = EchoGuard()
        self._correlations: deque[float] = deque(maxlen=3000)
        self._events: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._turns = itertools.count(1)
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, settings.preroll_ms // 20))
        self._utterance: list[np.ndarray] | None = None  # media thread: frames of the current utterance
        self._speech_peak_db = level_db(0.0)  # media thread: loudest recent frame of the utterance
        self.skills = services.skills_for(settings.agent_name) or AgentSkills(settings.agent_name,
                                                                              settings.instructions)
        self.store = services.store if settings.remember_callers else None
        self.caller_id = normalize_caller_id(context.remote_uri)
        self._caller_lines: list[str] = []  # everything the caller said (memory, messages)
        self._bot_lines: list[str] = []
        self.call_facts = CallFacts(self.caller_id, transcript=self._transcript)
        # Whisper is conditioned on the names of transfer targets ("billing" came back as "the
        # building" without it). Only those: with the greeting as its prompt, tiny.en repeated
        # whole utterances ("Where is your office? Where is your office?").
        targets = ", ".join(self.skills.tools.transfer_targets)
        self._stt_prompt = f"Departments: {targets}." if targets else None
        # controller state
        self._history: list[ChatMessage] = [ChatMessage("system", self.skills.system_prompt)]
        self._greeting = _fill(settings.greeting, context.variables)
        if context.variables:  # an originated call's details (a reminder's name and time): after the
            # fixed system prompt, so its KV cache still serves this call
            details = "; ".join(f"{k}: {v}" for k, v in context.variables.items())
            self._history.append(ChatMessage("system", f"Details for this call: {details}."))
        self._notes: list[str] = []  # tool results that arrived while the caller was talking
        self._digits: list[str] = []
        self._last_digit_at = 0.0
        self._transcripts: list[tuple[int, Future[str]]] = []  # (frames covered, transcript) of this utterance
        self._transcribed_audio: list[np.ndarray] | None = None
        self._reply: _Reply | None = None
        self._spoken: list[_Reply] = []  # released replies whose heard text is not yet in the history
        self._to_log: list[_Reply] = []
        self._idle_since = clock()
        self._reprompted = False
        self._ending: int | None = None  # the turn of the goodbye after which we hang up
        self._hangup_sent = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"call-{context.call_id[:12]}", daemon=True)
        self.tools = ToolExecutor(context, self.skills.tools, services.store, settings.agent_name, self.call_facts,
                                  lambda event: self._post(_OTHER, event), self._stopped)

    # -- media clock thread --------------------------------------------------------------------

    def on_start(self) -> None:
        self._thread.start()
        self._post(_OTHER, ("start",))

    def on_audio(self, frame: JitterFrame, echo_cancelled: np.ndarray | None = None) -> None:
        now = self.clock()
        pcm = frame.pcm
        raw_rms = _rms(pcm)
        level = level_db(raw_rms)
        guard = self._echo_guard
        bot_speaking = self.playout.speaking(now)
        probability = self._vad.process(pcm) if frame.type is not FrameType.EMPTY else 0.0
        loud = False
        if bot_speaking:
            if level < _SILENT_DB:
                probability = 0.0  # nothing on the line: a stale VAD window is no onset
            else:
                if guard.echo_like(pcm):
                    probability = 0.0  # our own voice coming back, whatever the VAD makes of it
                else:
                    loud = guard.loud(raw_rms)
                self._correlations.append(guard.last_correlation)
        elif not self.detector.in_speech:
            guard.track_noise(raw_rms)
        quiet = self._quiet(level)
        events = self.detector.update(now, probability, bot_speaking=bot_speaking, loud=loud, quiet=quiet)
        if events:
            self.log.debug("turn_levels", probability=round(probability, 2), loud=loud, bot_speaking=bot_speaking,
                           raw_db=round(level, 1), echo_correlation=round(guard.last_correlation, 2))
        if self._utterance is not None:
            self._utterance.append(pcm)
        else:
            self._preroll.append(pcm)
        for detected in events:
            self._on_turn_event(detected, now)

    def _quiet(self, level: float) -> bool:
        """Whether this frame is down at the line's noise, far below the caller's speech (see
        TurnDetector.update: it lets the pause start when the voice stops, not when the VAD
        catches up). Only judged inside an utterance, against that utterance's own peak."""
        if not self.detector.in_speech:
            self._speech_peak_db = level_db(0.0)
            return False
        self._speech_peak_db = max(level, self._speech_peak_db - _PEAK_DECAY_DB)
        threshold = max(self._speech_peak_db - _QUIET_BELOW_SPEECH_DB,
                        self._echo_guard.noise_floor_db + _QUIET_ABOVE_NOISE_DB)
        return level < threshold

    def _on_turn_event(self, detected: Detected, now: float) -> None:
        event = detected.event
        self.log.debug("turn_event", turn_event=event.value, at=round(detected.at, 3), now=round(now, 3))
        if event in (TurnEvent.SPEECH_START, TurnEvent.BARGE_IN):
            self._utterance = [*self._preroll]
            self._preroll.clear()
        audio, index = self._utterance, len(self._utterance or ())
        if event is TurnEvent.BARGE_IN:
            heard = self.playout.flush()  # silence from the very next tick
            reply = self._reply
            if reply is not None:
                reply.cancel.set()
            self._post(_BARGE_IN, ("barge_in", detected.at, now, heard))
            return
        if event is TurnEvent.TURN_END:
            self._utterance = None
        self._post(_TURN, (event.value, detected.at, now, audio, index))

    def next_frame(self) -> np.ndarray | None:
        frame = self.playout.next_frame()
        self._echo_guard.add_far(frame)
        return frame

    def on_dtmf(self, digit: str) -> None:
        self._post(_OTHER, ("dtmf", digit))

    def on_stop(self) -> None:
        if self._correlations:
            c = np.array(self._correlations)
            self.log.info("echo_guard", frames=len(c), echo_like=int((c >= self._echo_guard.echo_correlation).sum()),
                          p10=round(float(np.percentile(c, 10)), 2), p50=round(float(np.median(c)), 2))
        self._stopped.set()
        if self._reply is not None:
            self._reply.cancel.set()
        self._post(_STOP, ("stop",))
        self._thread.join(timeout=2.0)

    def _post(self, priority: int, event: tuple) -> None:
        self._events.put((priority, next(self._seq), event))

    # -- controller thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                _, _, event = self._events.get(timeout=0.1)
            except queue.Empty:
                self._timers()
                continue
            try:
                if not self._handle(event):
                    break
            except Exception:
                self.log.exception("conversation_error", event=event[0])
            self._timers()
        self._cancel_reply()
        self._remember_caller()

    def _handle(self, event: tuple) -> bool:
        kind = event[0]
        if kind == "stop":
            return False
        if kind == "start":
            self._greet()
        elif kind == "barge_in":
            _, onset, now, heard = event
            self._on_barge_in(onset, now, heard)
            self._new_utterance()
        elif kind == "speech_start":
            self._new_utterance()
        elif kind == "pause":
            _, at, _now, audio, index = event
            self._start_reply(audio, index, at, speculative=True)
        elif kind == "resume":
            self._cancel_reply(drop_audio=True)
        elif kind == "turn_end":
            _, at, now, audio, index = event
            self._on_turn_end(audio, index, at, now)
        elif kind == "reply_done":
            self._on_reply_done(event[1])
        elif kind == "dtmf":
            self._on_dtmf(event[1])
        elif kind == "tool_outcome":
            self._on_tool_outcome(event[1])
        return True

    def _new_utterance(self) -> None:
        self._transcripts = []
        self._transcribed_audio = None
        self._idle_since = self.clock()
        self._reprompted = False

    def _on_barge_in(self, onset: float, now: float, heard: dict[int, str]) -> None:
        self.log.info("barge_in", onset_to_silence_ms=round((now - onset) * 1000, 1),
                      heard=" | ".join(heard.values()))
        self.context.record("barge_in", at=self._wall(onset), onset_to_silence_ms=round((now - onset) * 1000, 1))
        self._finalize_history(heard)
        self._cancel_reply()

    def _on_turn_end(self, audio: list[np.ndarray], index: int, at: float, now: float) -> None:
        reply = self._reply
        if reply is None or reply.audio is not audio or reply.cancel.is_set() or reply.end_index > index:
            reply = self._start_reply(audio, index, at, speculative=False)
        if reply is not None:
            reply.timings.turn_decision = now
            self._release(reply)

    def _release(self, reply: _Reply) -> None:
        """The turn is confirmed: the reply's audio may play, and the caller may hear it."""
        reply.released = True
        reply.released_event.set()
        self._spoken.append(reply)

        def first_frame(t: float) -> None:
            reply.timings.first_rtp = t

        self.playout.release(reply.turn, on_first_frame=first_frame)
        if reply.done.is_set():
            self._on_reply_done(reply)

    def _on_reply_done(self, reply: _Reply) -> None:
        if reply.cancel.is_set() or not reply.released or reply.logged:
            return  # a speculative reply is dealt with once released; a cancelled one is gone
        reply.logged = True
        if reply.is_bye:
            self.log.info("caller_said_goodbye", transcript=reply.user_text)
            self._say(self.settings.goodbye, "caller_goodbye", ends_call=True)
        elif reply.failed and not reply.bot_text:
            self._say(self.settings.apology, "model_error")  # a model failed: the caller hears why, not silence
        self._to_log.append(reply)

    def _transcribe_upto(self, audio: list[np.ndarray], index: int) -> Future[str]:
        """Transcribe the utterance from its start up to `index` frames (started at every pause).

        Whole-utterance transcripts, not pieces cut at pauses: Whisper needs the context (pieces
        split at 60 ms pauses came back as "How much you're not" + "cleaning cart?"), and on this
        machine tiny.en takes ~85 ms for 1 s and ~125 ms for 3 s, so redoing the start is cheap. A
        pause that adds no new speech reuses the transcript already under way.
        """
        if self._transcribed_audio is not audio:
            self._transcribed_audio, self._transcripts = audio, []
        if self._transcripts and self._transcripts[-1][0] >= index - _REUSE_FRAMES:
            return self._transcripts[-1][1]
        future = self.models.executor.submit(self._transcribe, np.concatenate(audio[:index]))
        self._transcripts.append((index, future))
        return future

    def _transcribe(self, pcm8k: np.ndarray) -> str:
        audio16k = int16_to_float(resample(pcm8k, 8000, _STT_RATE))
        return self.models.stt.transcribe(audio16k, prompt=self._stt_prompt).text.strip()

    def _start_reply(self, audio: list[np.ndarray] | None, index: int, speech_end: float,
                     speculative: bool) -> _Reply | None:
        if audio is None or index == 0:
            return None
        self._cancel_reply(drop_audio=True)
        transcript = self._transcribe_upto(audio, index)
        self._finalize_history()
        reply = _Reply(next(self._turns), audio, index, TurnTimings(speech_end, speculative))
        self._reply = reply
        history = list(self._history)
        threading.Thread(target=self._reply_worker, args=(reply, transcript, history), daemon=True,
                         name=f"reply-{reply.turn}").start()
        return reply

    def _cancel_reply(self, drop_audio: bool = False) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        reply.cancel.set()
        if drop_audio and not reply.released:
            self.playout.drop_turn(reply.turn)

    def _say(self, text: str, why: str, ends_call: bool = False) -> _Reply | None:
        """Speak a fixed line now (greeting, re-prompt, goodbye, a tool's outcome) without the LLM."""
        if ends_call:
            self._cancel_reply(drop_audio=True)
        if not text:
            if ends_call:
                self._hangup_sent = True
                self.context.hangup(why)
            return None
        reply = _Reply(next(self._turns), [], 0, TurnTimings(self.clock(), False), logged=True, phrase=True)
        reply.bot_text = [text]
        reply.done.set()
        audio = self.services.phrase(text)
        self.playout.push(reply.turn, audio, text)
        self._release(reply)
        if ends_call:
            self._ending = reply.turn
        self._bot_lines.append(text)
        self.log.info("bot_phrase", why=why, text=text)
        start = time.time()
        self.context.record("bot_speech", start=start, end=start + len(audio) / 8000, text=text, interrupted=False)
        return reply

    # -- memory, keypad and tools (controller thread) ----------------------------------------------

    def _greet(self) -> None:
        known = None
        if self.store is not None and self.caller_id:
            lookup = _MEMORY_IO.submit(self.store.caller, self.caller_id)
            try:
                known = lookup.result(timeout=_MEMORY_WAIT_S)
            except StoreError as exc:  # a database that is down (restarting) costs the memory, not the call
                self.log.error("caller_memory_unavailable", error=str(exc))
            except FutureTimeout:  # nor does a slow one cost the caller a silent start
                self.log.warning("caller_memory_slow", waited_s=_MEMORY_WAIT_S, on="lookup")
        if known is not None and known.name and self.settings.returning_greeting:
            self.call_facts.caller_name = known.name
            about = f" Last time they called about: {known.last_reason}." if known.last_reason else ""
            requests = f" Open requests: {'; '.join(known.open_requests)}." if known.open_requests else ""
            self._history.append(ChatMessage("system", f"The caller is {known.name}, a returning caller.{about}"
                                                       f"{requests}"))
            self.log.info("caller_recognised", caller_id=self.caller_id, calls=known.call_count)
            self._say(self.settings.returning_greeting.format(name=known.name), "greeting_returning")
        else:
            self._say(self._greeting, "greeting")

    def _remember_caller(self) -> None:
        lines = self._caller_lines + [r.user_text for r in self._spoken if r.user_text]
        if self.store is None or not self.caller_id or not lines:
            return
        name = next((n for n in map(caller_name, lines) if n), None)
        reason = next((r for r in map(call_reason, lines) if r), None)
        write = _MEMORY_IO.submit(self.store.record_call, self.caller_id, name=name, reason=reason)
        try:
            write.result(timeout=_MEMORY_WAIT_S)
        except FutureTimeout:
            self.log.warning("caller_memory_slow", waited_s=_MEMORY_WAIT_S, on="write")
            return
        except Exception:
            self.log.exception("caller_memory_failed")
            return
        self.log.info("caller_remembered", caller_id=self.caller_id, name=name, reason=reason)

    def _transcript(self) -> str:
        return "\n".join(self._caller_lines)

    def _on_dtmf(self, digit: str) -> None:
        self.log.info("caller_dtmf", digit=digit)
        action = self.settings.dtmf.get(digit)
        if action is None:
            self._digits.append(digit)
            self._last_digit_at = self.clock()
            return
        self._cancel_reply(drop_audio=True)
        self.playout.flush()
        if action.transfer:
            self._transfer_now(action.transfer)
        elif action.hangup:
            self._say(self.settings.goodbye, "dtmf_hangup", ends_call=True)
        elif action.say:
            self._say(action.say, "dtmf")

    def _transfer_now(self, target: str) -> None:
        notice = self._say(self.settings.transfer_notice.format(target=target), "transfer")
        call = ToolCall("transfer", {"target": target})
        self.tools.start(call, wait=lambda: notice is None or self._played(notice))

    def _played(self, reply: _Reply) -> bool:
        """Wait (on a tool thread) until `reply` is released and its audio has gone out; False if
        it was cancelled (the caller barged in) or the call ended meanwhile."""
        while not reply.released_event.wait(0.05):
            if reply.cancel.is_set() or self._stopped.is_set():
                return False
        while self.playout.has_audio(reply.turn):
            if reply.cancel.is_set() or self._stopped.is_set():
                return False
            time.sleep(0.02)
        return not reply.cancel.is_set() and not self._stopped.is_set()

    def _on_tool_outcome(self, outcome: ToolOutcome) -> None:
        self.log.info("tool_outcome", tool=outcome.name, ok=outcome.ok, text=outcome.text[:200])
        self.context.record("tool_call", tool=outcome.name, arguments=outcome.arguments, start=outcome.started,
                            end=time.time(), ok=outcome.ok)
        if outcome.name == "hangup":
            self._say(self.settings.goodbye, "tool_hangup", ends_call=True)
        elif outcome.name == "transfer":
            if not outcome.ok:
                self._say(self.settings.transfer_failed, "transfer_failed")
        elif outcome.name == "take_message":
            if not outcome.ok:
                self._say(self.settings.tool_failed, "message_failed")
        elif outcome.name in self.skills.tools.http:
            if not outcome.ok:
                self._say(self.settings.tool_failed, "tool_failed")
                return
            result = speakable(outcome.text)
            note = (f"The {outcome.name.replace('_', ' ')} lookup found: {result}. "
                    "Tell the caller this in one short sentence of plain speech.")
            if self.detector.in_speech or (self._reply is not None and not self._reply.done.is_set()):
                self._notes.append(note)  # the caller's next turn carries it
            else:
                self._start_followup(note, fallback=f"Here is what I found: {result}.")

    def _start_followup(self, note: str, fallback: str | None = None) -> None:
        """A reply nobody asked for just now: a tool's result, spoken as soon as it arrives.
        `fallback` is said if the model gives nothing speakable (it sometimes answers a result
        with another tool call)."""
        self._cancel_reply(drop_audio=True)
        self._finalize_history()
        reply = _Reply(next(self._turns), [], 0, TurnTimings(self.clock(), False), prompt_note=note,
                       fallback=fallback)
        self._reply = reply
        done: Future[str] = Future()
        done.set_result("")
        threading.Thread(target=self._reply_worker, args=(reply, done, list(self._history)), daemon=True,
                         name=f"reply-{reply.turn}").start()
        self._release(reply)

    def _keypad_turn(self) -> None:
        digits, self._digits = " ".join(self._digits), []
        self._start_followup(f"The caller pressed these keys on the keypad: {digits}. Respond briefly.")

    def _finalize_history(self, interrupted: dict[int, str] | None = None) -> None:
        """Move replies the caller has finished hearing (or cut short) into the history.

        After a barge-in `interrupted` holds, per turn, the words that went out before the
        flush: the rest of the reply was never heard and must not be remembered as said.
        """
        keep: list[_Reply] = []
        for reply in self._spoken:
            if interrupted is None and (self.playout.has_audio(reply.turn) or not reply.done.is_set()):
                keep.append(reply)
                continue
            # Fixed lines stay out of the history: after a few "One moment, please." turns the 0.5B
            # model answered everything with it.
            said = interrupted.get(reply.turn, "") if interrupted is not None else " ".join(
                c for c in reply.bot_text if c not in reply.phrases)
            if reply.user_text:
                self._history.append(ChatMessage("user", reply.user_text))
                self._caller_lines.append(reply.user_text)
            if said and not reply.phrase:
                # Fixed lines stay out: the 0.5B model given its greeting as its own last turn
                # repeated it word for word as the answer to the caller's first question.
                self._history.append(ChatMessage("assistant", said))
            self.playout.forget_turn(reply.turn)
        self._spoken = keep
        self._bound_history()

    def _bound_history(self) -> None:
        """Keep a long call's stored history bounded, not just the prompt cut from it: measured over
        a simulated hour, `fit_history` re-read every dropped exchange each turn (5 ms per turn
        after an hour, on the way to the first token) and the lists grew without end."""
        if len(self._history) > _HISTORY_KEPT:
            self._history = fit_history(self._history, 2 * self.settings.history_tokens, approx_tokens)
        if len(self._caller_lines) > _CALLER_LINES_KEPT:  # the first lines carry name and reason
            self._caller_lines = self._caller_lines[:20] + self._caller_lines[-(_CALLER_LINES_KEPT - 40):]

    def _watchdog(self, now: float) -> None:
        """A released reply with no audio after `model_timeout_s`: a model hangs (or a server is
        gone). Cancel it and apologize; the call goes on and the caller can ask again."""
        reply = self._reply
        decided = reply.timings.turn_decision if reply is not None else None
        if reply is None or not reply.released or decided is None or reply.bot_text or reply.cancel.is_set():
            return
        if now - decided < self.settings.model_timeout_s or reply.done.is_set():
            return
        self.log.error("reply_timeout", turn=reply.turn, waited_s=round(now - decided, 1))
        self.context.record("model_error", role="timeout")
        self._cancel_reply(drop_audio=True)
        self._say(self.settings.apology, "model_timeout")

    def _timers(self) -> None:
        now = self.clock()
        self._log_turns()
        if self._digits and now - self._last_digit_at >= self.settings.dtmf_gap_s:
            self._keypad_turn()
        self._watchdog(now)
        if self._hangup_sent:
            return
        if self._ending is not None:
            if not self.playout.has_audio(self._ending):
                self._hangup_sent = True
                self.context.hangup("goodbye")
            return
        reply = self._reply
        busy = self.detector.in_speech or (reply is not None and not reply.done.is_set()) or self.playout.is_playing()
        if busy:
            self._idle_since = now
            return
        idle = now - self._idle_since
        if idle >= self.settings.hangup_after_s:
            self._say(self.settings.goodbye, "caller_silent", ends_call=True)
        elif idle >= self.settings.reprompt_after_s and not self._reprompted:
            self._reprompted = True
            self._say(self.settings.reprompt, "reprompt")

    def _log_turns(self) -> None:
        """Log each turn once its first audio went out (or it can no longer go out)."""
        pending: list[_Reply] = []
        for reply in self._to_log:
            if reply.timings.first_rtp is None and self.playout.has_audio(reply.turn) and not reply.cancel.is_set():
                pending.append(reply)
                continue
            self.log.info("turn", turn=reply.turn, speculative=reply.timings.speculative, caller=reply.user_text,
                          bot=" ".join(reply.bot_text), cancelled=reply.cancel.is_set(), failed=reply.failed,
                          retrieval_ms=None if reply.retrieval_ms is None else round(reply.retrieval_ms, 2),
                          **reply.timings.as_ms(), **_llm_fields(reply.llm_stats))
            self._record_turn(reply)
        self._to_log = pending

    def _wall(self, t: float) -> float:
        """A time on the agent's clock as Unix time (records are read by people and other tools)."""
        return time.time() - (self.clock() - t)

    def _record_turn(self, reply: _Reply) -> None:
        end = self._wall(reply.timings.speech_end)
        if reply.user_text:
            start = end - max(0.0, reply.end_index * 0.02 - self.settings.preroll_ms / 1000)
            self.context.record("caller_speech", start=start, end=end, text=reply.user_text)
        self.context.record("turn", turn=reply.turn, caller=reply.user_text, bot=" ".join(reply.bot_text),
                            speech_end=end, stages=reply.timings.as_ms(), cancelled=reply.cancel.is_set())
        if reply.timings.first_rtp is not None:
            start = self._wall(reply.timings.first_rtp)
            self.context.record("bot_speech", start=start, end=start + reply.audio_s, text=" ".join(reply.bot_text),
                                interrupted=reply.cancel.is_set())

    # -- reply thread --------------------------------------------------------------------------

    def _reply_worker(self, reply: _Reply, transcript: Future[str], history: list[ChatMessage]) -> None:
        try:
            self._reply_pipeline(reply, transcript, history)
        except ModelError as exc:
            reply.failed = True
            self.log.error("reply_failed", turn=reply.turn, error=str(exc))
            self.context.record("model_error", role=type(exc).__name__.removesuffix("Error").lower() or "model")
        except Exception:
            reply.failed = True
            self.log.exception("reply_failed", turn=reply.turn)
        finally:
            reply.done.set()
            self._post(_OTHER, ("reply_done", reply))

    def _reply_pipeline(self, reply: _Reply, transcript: Future[str], history: list[ChatMessage]) -> None:
        content = self._prepare_turn(reply, transcript)
        if content is None:
            return
        clauses: queue.Queue[str | _Phrase | None] = queue.Queue()
        speaker = threading.Thread(target=self._speaker, args=(reply, clauses), daemon=True,
                                   name=f"speaker-{reply.turn}")
        speaker.start()
        try:
            if isinstance(content, _Phrase):
                clauses.put(content)
            else:
                self._stream_reply(reply, history, content, clauses)
        finally:
            clauses.put(None)
            speaker.join()
        if reply.action is not None and not reply.cancel.is_set():
            action, wait = reply.action, (lambda: self._played(reply))
            self.tools.start(action, wait=wait)

    def _prepare_turn(self, reply: _Reply, transcript: Future[str]) -> str | _Phrase | None:
        """What the LLM is asked this turn (or a fixed line to say instead; None: say nothing).

        Plain transfer requests and questions the knowledge base cannot answer are handled here,
        without the model: faster, and a small model cannot get them wrong.
        """
        if reply.prompt_note is not None:
            self.log.info("follow_up", turn=reply.turn, note=reply.prompt_note[:200])
            return reply.prompt_note
        text = transcript.result()
        if reply.cancel.is_set():
            return None
        reply.user_text = text.strip()
        reply.timings.transcript_final = self.clock()
        if not _meaningful(reply.user_text):
            self.log.info("turn_ignored", turn=reply.turn, transcript=reply.user_text)
            reply.user_text = ""
            return None
        if is_goodbye(reply.user_text):
            reply.is_bye = True
            return None
        plan = plan_turn(self.skills, reply.user_text, transfer_notice=self.settings.transfer_notice,
                         unknown_answer=self.settings.unknown_answer)
        reply.retrieval_ms = plan.retrieval_ms
        if plan.say is not None:
            reply.action = plan.action
            return _Phrase(plan.say)
        assert plan.content is not None
        reply.best_fact = plan.best_fact
        content = plan.content
        if self._notes:
            content = "\n".join([*self._notes, content])
            self._notes = []
        return content

    def _llm_pieces(self, reply: _Reply, messages: list[ChatMessage]) -> Iterator[str]:
        """The model's reply, streamed; an empty one is asked again once, then a fixed line.
        (A shared llama.cpp server answered one of two concurrent requests with nothing, right
        after another client had dropped its stream.)"""
        for attempt in range(2):
            got = False
            for piece in self.models.llm.stream_chat(messages, max_tokens=self.settings.max_reply_tokens,
                                                     temperature=self.settings.temperature, cancel=reply.cancel,
                                                     affinity=self.context.call_id):
                got = True
                yield piece
            if got or reply.cancel.is_set():
                return
            self.log.warning("llm_empty_reply", turn=reply.turn, attempt=attempt + 1)
        yield self.settings.not_understood

    def _stream_reply(self, reply: _Reply, history: list[ChatMessage], content: str,
                      clauses: queue.Queue[str | _Phrase | None]) -> None:
        """LLM -> spoken clauses as they complete; a tool call at the end becomes `reply.action`."""
        messages = fit_history([*history, ChatMessage("user", content)], self.settings.history_tokens, approx_tokens)
        if reply.fallback is not None:
            self._checked_followup(reply, messages, clauses)
            return
        splitter = ClauseSplitter()
        detector = ToolCallDetector(self.skills.tools.specs) if self.skills.tools.specs else None
        for piece in self._llm_pieces(reply, messages):
            if reply.timings.llm_first_token is None:
                reply.timings.llm_first_token = self.clock()
                reply.llm_stats = getattr(self.models.llm, "thread_stats", None)
            if reply.cancel.is_set():
                return
            speech = detector.feed(piece) if detector is not None else piece
            if detector is not None and detector.holding and not reply.acknowledged and not reply.bot_text \
                    and clauses.empty() and not speech.strip():
                # The model opened with a tool call: say "one moment" now, not after the whole JSON
                # (~25 tokens, 0.7 s) has been generated and parsed.
                reply.acknowledged = True
                clauses.put(_Phrase(self.settings.acknowledgement))
            for clause in splitter.feed(speech):
                if reply.timings.first_clause is None:
                    reply.timings.first_clause = self.clock()
                    clauses.put(clause)
                    # Let the first clause's synthesis have both cores: the next tokens are not
                    # needed until its audio has played, and on 2 cores a TTS run beside the token
                    # loop took ~130 ms instead of ~50 (the engines' threads spin between steps).
                    reply.first_audio.wait(_FIRST_AUDIO_WAIT_S)
                    continue
                clauses.put(clause)
        if reply.cancel.is_set():
            return
        spoke = bool(reply.bot_text) or not clauses.empty()
        if detector is not None:
            parsed = detector.finish()
            for clause in splitter.feed(parsed.unspoken):
                clauses.put(clause)
            if parsed.error:
                self.log.warning("tool_call_rejected", turn=reply.turn, error=parsed.error)
                if not spoke and not parsed.speech.strip():
                    self._instead_of_call(reply, clauses)  # never silence after a bad call
            if parsed.call is not None:
                spoke = spoke or bool(parsed.speech.strip())
                self._accept_tool_call(reply, parsed.call, spoke, splitter, clauses)
                return
        for clause in splitter.flush():
            clauses.put(clause)

    def _checked_followup(self, reply: _Reply, messages: list[ChatMessage],
                          clauses: queue.Queue[str | _Phrase | None]) -> None:
        """Tell a tool's result. The whole answer is generated before any of it is spoken and kept
        only if it is plain speech that mentions the result (the 0.5B model sometimes said "one
        moment please" again and called the tool a second time); otherwise `reply.fallback` is
        said. The caller has waited for the tool anyway; one more second buys a right answer."""
        text = ""
        for piece in self.models.llm.stream_chat(messages, max_tokens=self.settings.max_reply_tokens,
                                                 temperature=self.settings.temperature, cancel=reply.cancel):
            if reply.timings.llm_first_token is None:
                reply.timings.llm_first_token = self.clock()
            text += piece
        if reply.cancel.is_set():
            return
        parsed = parse_tool_call(text, self.skills.tools.specs)
        facts = re.findall(r"[a-z0-9]{3,}", (reply.fallback or "").split(": ", 1)[-1].lower())
        words = set(re.findall(r"[a-z0-9]{3,}", parsed.speech.lower()))
        if parsed.call is None and parsed.error is None and parsed.speech.strip() and words & set(facts):
            splitter = ClauseSplitter()
            for clause in [*splitter.feed(parsed.speech), *splitter.flush()]:
                clauses.put(clause)
        else:
            self.log.info("follow_up_fallback", turn=reply.turn, model_said=text[:200])
            assert reply.fallback is not None
            clauses.put(reply.fallback)

    def _instead_of_call(self, reply: _Reply, clauses: queue.Queue[str | _Phrase | None]) -> None:
        """The model answered a question with a tool call we refused: give the best retrieved fact
        (the 0.5B model often "looks up an order" when asked for the opening hours), or ask again."""
        if reply.best_fact:
            clauses.put(reply.best_fact)
        else:
            clauses.put(_Phrase(self.settings.not_understood))

    def _accept_tool_call(self, reply: _Reply, call: ToolCall, spoke: bool, splitter: ClauseSplitter,
                          clauses: queue.Queue[str | _Phrase | None]) -> None:
        """Keep a valid call only if the caller's words support it: a small model sometimes
        "transfers" or "hangs up" on a question. Whatever happens, the caller hears something."""
        for clause in splitter.flush():
            clauses.put(clause)
        said = reply.user_text
        ungrounded = ungrounded_arguments(call, said, frozenset(BUILTIN_TOOLS))
        if ungrounded is not None:
            self.log.warning("tool_call_rejected", turn=reply.turn, tool=call.name,
                             error=f"argument {ungrounded!r} is not in what the caller said")
            if not spoke or reply.acknowledged:
                self._instead_of_call(reply, clauses)
            return
        if unasked_tool_call(call, said):
            self.log.warning("tool_call_rejected", turn=reply.turn, tool=call.name, error="the caller did not ask")
            if not spoke or reply.acknowledged:
                self._instead_of_call(reply, clauses)
            return
        call = without_invented_number(call, said)
        reply.action = call
        self.log.info("tool_call_accepted", turn=reply.turn, tool=call.name, arguments=call.arguments)
        if call.name == "transfer":
            clauses.put(_Phrase(self.settings.transfer_notice.format(target=call.arguments["target"])))
        elif call.name == "take_message":
            clauses.put(_Phrase(self.settings.message_taken))
        elif not spoke and not reply.acknowledged and call.name != "hangup":
            clauses.put(_Phrase(self.settings.acknowledgement))

    def _speaker(self, reply: _Reply, clauses: queue.Queue[str | _Phrase | None]) -> None:
        """TTS each clause as soon as it is complete, while the LLM goes on with the next one.
        (The models' compute gate lets a synthesis step go before the next LLM token: on 2 cores
        running both at once would slow each of them down.) Fixed lines come from the cache."""
        while True:
            item = clauses.get()
            if item is None or reply.cancel.is_set():
                return
            if isinstance(item, _Phrase):
                clause, audio = item.text, self.services.phrase(item.text)
                reply.phrases.append(clause)
            else:
                clause = item
                audio = synthesize_line_audio(self.models.tts, clause, cancel=reply.cancel)
                if reply.cancel.is_set():
                    return
                audio = trim_silence(audio, keep_lead_ms=5.0, keep_tail_ms=clause_pause_ms(clause))
            if reply.timings.first_tts_audio is None:
                reply.timings.first_tts_audio = self.clock()
            reply.bot_text.append(clause)
            reply.audio_s += len(audio) / 8000
            self.playout.push(reply.turn, audio, clause)
            reply.first_audio.set()


@dataclass(frozen=True)
class _Phrase:
    """A fixed line to speak from the phrase cache (no TTS run) within a reply."""

    text: str


def _llm_fields(stats: object | None) -> dict[str, float]:
    """Prompt size, KV-cache reuse and slot wait of the turn's LLM stream: why a first token was slow."""
    if stats is None:
        return {}
    return {"llm_prompt_tokens": getattr(stats, "prompt_tokens", 0),
            "llm_cached_tokens": getattr(stats, "cached_tokens", 0),
            "llm_wait_ms": round(getattr(stats, "wait_s", 0.0) * 1000, 1)}


def _fill(template: str, variables: Mapping[str, str]) -> str:
    """`{name}` placeholders filled from the call's variables; unknown ones are left as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), template)


def speakable(text: str, limit: int = 200) -> str:
    """A tool's result as words: JSON objects become "key value, key value" (never braces read out)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:limit]
    if isinstance(data, dict):
        parts = [f"{str(k).replace('_', ' ')} {v}" for k, v in data.items() if isinstance(v, str | int | float)]
        return ", ".join(parts)[:limit]
    if isinstance(data, list):
        return ", ".join(speakable(json.dumps(item), limit) for item in data[:3])[:limit]
    return str(data)[:limit]


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0


def _meaningful(text: str) -> bool:
    """Whisper 'hears' punctuation or a lone filler in noise: such turns get no reply."""
    words = re.findall(r"[A-Za-z0-9']+", text)
    return bool(words) and not (len(words) == 1 and words[0].lower() in {"uh", "um", "hmm", "mm", "you"})
