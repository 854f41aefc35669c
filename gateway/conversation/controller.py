"""The call's controller: one thread that owns the conversation's state and reacts to its events.

Everything the call decides happens here, in the order of `events.priority` (stop and barge-in
overtake ordinary work): starting, releasing and cancelling replies, the silence timers, the
history, the caller's memory, keypresses and tools' outcomes. Other threads only post events
(`post`) or act on a `ReplyHandle`; nothing here is read by them. `handle` and `timers` are
public so a test can drive the controller on a virtual clock without its thread.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping

from gateway.agents.base import CallContext, RecordKind
from gateway.conversation.actions import CallFacts, ToolExecutor, ToolOutcome
from gateway.conversation.answer_detection import AnswerClassified, MachineReady
from gateway.conversation.briefing import Briefer
from gateway.conversation.call_history import CallHistory
from gateway.conversation.caller_memory import CallerMemory, returning_caller_note
from gateway.conversation.events import (
    BargedIn,
    BargeInHandled,
    CallEvent,
    CallStarted,
    CallStopped,
    DtmfPressed,
    Held,
    Observation,
    Paused,
    PhraseSaid,
    ReplyFinished,
    Resumed,
    SpeechStarted,
    ToolFinished,
    TurnEnded,
    TurnLogged,
    Unheld,
    Utterance,
    priority,
)
from gateway.conversation.keypad import Keypad
from gateway.conversation.outbound_start import OpeningActions, OutboundOpening
from gateway.conversation.pipeline import ReplyPipeline
from gateway.conversation.playout import Playout
from gateway.conversation.prefill import Prefiller
from gateway.conversation.reply import FollowUp, ReplyHandle, ReplyState, TurnTimings
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.silence import SilenceAction, SilenceTimer
from gateway.conversation.skills import AgentSkills
from gateway.conversation.speech import LINE_RATE, ConversationServices
from gateway.conversation.tool_replies import follow_up_for, outcome_line
from gateway.conversation.transcribe import Transcriber
from gateway.conversation.turn_log import TurnLog
from gateway.store import normalize_caller_id
from gateway.tools import ToolCall

_IDLE_WAIT_S = 0.1  # the timers run at least this often


class Controller:
    def __init__(self, context: CallContext, settings: ConversationSettings, services: ConversationServices,
                 skills: AgentSkills, playout: Playout, pipeline: Callable[[Controller], ReplyPipeline],
                 clock: Callable[[], float], observe: Callable[[Observation], None] = lambda o: None):
        self.context = context
        self.settings = settings
        self.services = services
        self.skills = skills
        self.playout = playout
        self.clock = clock
        self.observe = observe
        self.log = context.log
        self.stopping = threading.Event()  # set by the SIP thread; tools and waits give up on it
        self._events: queue.PriorityQueue[tuple[int, int, CallEvent]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._turns = itertools.count(1)
        caller_id = normalize_caller_id(context.remote_uri)
        self.memory = CallerMemory(services.store if settings.remember_callers else None, caller_id, self.log)
        self.history = CallHistory(skills.system_prompt, settings.history_tokens)
        self.history.add_call_details(context.variables)
        self.call_facts = CallFacts(caller_id, transcript=self.history.transcript)
        # Whisper is conditioned on the agent's vocabulary (vocabulary.py: names, targets, terms).
        self.transcriber = Transcriber(services.models.stt, services.models.executor, skills.stt_prompt)
        self.pipeline = pipeline(self)
        llm = getattr(services.models, "llm", None)  # a test's model set may have none: warm targets go blind
        self.prefiller = Prefiller(llm, settings.history_tokens, context.call_id, self.log, self.stopping)
        briefer = None if llm is None else Briefer(llm, lambda text: services.phrase(text).pcm, self.call_facts,
                                                   self.log)
        self.tools = ToolExecutor(context, skills.tools, services.store, settings.agent_name, self.call_facts,
                                  self.post, self.stopping, briefer, settings.hold_music)
        self.turn_log = TurnLog(self.log, context.record, clock)
        self._reply: ReplyHandle | None = None
        self._caller_speaking = False  # as the turn events tell it (the turn taker's own flag is the media thread's)
        self._notes: list[FollowUp] = []  # tool results not yet handed to a reply
        self.keypad = Keypad(settings.dtmf, settings.dtmf_gap_s)
        self.silence = SilenceTimer(settings.reprompt_after_s, settings.hangup_after_s, clock())
        self._asked_repeat = False  # the last turn answered was asked again: the next is not
        self._ending: ReplyHandle | None = None  # the goodbye after which we hang up
        self._hangup_sent = False
        self._handed_over = False  # a transfer succeeded: the caller is someone else's now (no re-prompts)
        # outbound calls: the callee speaks first, a machine gets a message (outbound_start.py)
        actions = OpeningActions(self._greet, lambda text, why: self.say(text, why, True), context.hangup,
                                 services.phrase, self.playout.flush)
        self.opening = OutboundOpening(settings.amd, fill(settings.amd.message, context.variables), self.log,
                                       context.record, actions) if context.direction == "outbound" else None

    # -- any thread ----------------------------------------------------------------------------

    def post(self, event: CallEvent) -> None:
        self._events.put((priority(event), next(self._seq), event))

    def busy(self) -> bool:
        """Events posted and not yet handled: a driver of fake time waits for them to settle."""
        return self._events.unfinished_tasks > 0

    # -- controller thread ---------------------------------------------------------------------

    def run(self) -> None:
        while True:
            try:
                _, _, event = self._events.get(timeout=_IDLE_WAIT_S)
            except queue.Empty:
                self.timers()
                continue
            if isinstance(event, CallStopped):
                break
            try:
                self.handle(event)
            except Exception:
                self.log.exception("conversation_error", event=type(event).__name__)
            self.timers()
            self._events.task_done()
        self._stop()

    def _stop(self) -> None:
        """The call is over: a reply still under way is cancelled but its turn is still logged and
        recorded (the caller's question was asked, even if the answer never reached them), and so
        is every turn waiting for its first audio."""
        self._abandon_reply()
        for logged in self.turn_log.flush(lambda _turn: False):
            self.observe(TurnLogged(logged))
        self._record_last_tools()
        self.memory.remember(self.history.everything_said())

    def _record_last_tools(self) -> None:
        """Tool outcomes posted just before the stop overtook them (a transfer that succeeded hangs
        the call up at once): nothing is said any more, but the record keeps what they came to."""
        while True:
            try:
                _, _, event = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, ToolFinished):
                self.log.info("tool_outcome", tool=event.outcome.name, ok=event.outcome.ok,
                              text=event.outcome.text[:200], after_stop=True)
                self._record_tool(event.outcome)

    def handle(self, event: CallEvent) -> None:
        match event:
            case CallStarted():
                if self.opening is None:
                    self._greet()
                else:
                    self.opening.start(fill(self.settings.greeting, self.context.variables))
            case AnswerClassified() | MachineReady() if self.opening is not None:
                self.opening.handle(event)
            case BargedIn():
                self._on_barge_in(event)
            case Held() | Unheld():  # the media thread held (or resumed) the bot's audio already
                self.turn_log.hold(event)
            case SpeechStarted():
                self._new_utterance()
                self._prefill()
            case Paused(at=at, utterance=utterance):
                self._start_reply(utterance, at, speculative=True)
            case Resumed():
                self._cancel_reply(drop_audio=True)
            case TurnEnded():
                self._caller_speaking = False
                self._on_turn_end(event)
            case ReplyFinished(reply=reply):
                self._on_reply_finished(reply)
            case DtmfPressed(digit=digit):
                self._on_dtmf(digit)
            case ToolFinished(outcome=outcome):
                self._on_tool_outcome(outcome)
                self.observe(event)
            case CallStopped():
                pass

    def _new_utterance(self) -> None:
        self._caller_speaking = True
        self.transcriber.forget()
        self.silence.caller_spoke(self.clock())

    def _on_barge_in(self, event: BargedIn) -> None:
        self._cancel_reply()  # the media thread silenced it already; this stops its models
        delay_ms = round((event.silenced_at - event.at) * 1000, 1)
        heard = " | ".join(event.heard.values())
        self.log.info("barge_in", onset_to_silence_ms=delay_ms, heard=heard)
        self.context.record(RecordKind.BARGE_IN, at=self.turn_log.wall(event.at), onset_to_silence_ms=delay_ms)
        self._settle_history(event.heard)
        self._new_utterance()
        self._prefill()
        self.observe(BargeInHandled(delay_ms, heard))

    def _on_turn_end(self, event: TurnEnded) -> None:
        reply, utterance = self._reply, event.utterance
        heard = reply.caller_audio if reply is not None else None
        if reply is None or heard is None or heard.number != utterance.number or heard.length > utterance.length \
                or reply.state is ReplyState.CANCELLED:
            reply = self._start_reply(utterance, event.at, speculative=False)
        if reply is not None:
            reply.timings.turn_decision = event.decided_at
            reply.timings.end_of_turn_model = event.finished
            self._release(reply)

    def _start_reply(self, utterance: Utterance, speech_end: float, speculative: bool) -> ReplyHandle | None:
        if utterance.length == 0:
            return None
        self._cancel_reply(drop_audio=True)
        transcript = self.transcriber.transcribe(utterance)
        self._settle_history()
        notes, self._notes = tuple(self._notes), []
        reply = ReplyHandle(next(self._turns), TurnTimings(speech_end, speculative), caller_audio=utterance,
                            notes=notes, after_repeat_request=self._asked_repeat)
        self._reply = reply
        self.pipeline.start(reply, transcript, self.history.snapshot())
        return reply

    def _start_follow_up(self, follow_up: FollowUp) -> None:
        """A reply nobody asked for just now: a tool's result or keys pressed, spoken at once."""
        self._cancel_reply(drop_audio=True)
        self._settle_history()
        reply = ReplyHandle(next(self._turns), TurnTimings(self.clock(), False), follow_up=follow_up)
        self._reply = reply
        self.pipeline.start(reply, None, self.history.snapshot())
        self._release(reply)

    def _release(self, reply: ReplyHandle) -> None:
        """The turn is confirmed: the reply's audio may play, and the caller may hear it."""
        reply.release()
        self.history.released(reply)
        self.playout.release(reply.turn, reply)
        if reply.finished:
            self._settle_reply(reply)

    def _cancel_reply(self, drop_audio: bool = False) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        released = reply.released
        reply.cancel()
        if drop_audio and not released:
            self.playout.drop_turn(reply.turn)

    def _on_reply_finished(self, reply: ReplyHandle) -> None:
        if reply.notes and (not reply.told_notes or reply.timings.first_rtp is None
                            and reply.state is ReplyState.CANCELLED):
            self._notes[:0], reply.notes = reply.notes, ()  # not told (or not heard): the next reply tells them
        if reply.action is not None and reply.state is not ReplyState.CANCELLED:
            self.tools.start(reply.action, wait=lambda: reply.played_unless(self.stopping))
        self._settle_reply(reply)

    def _settle_reply(self, reply: ReplyHandle) -> None:
        if reply.state is ReplyState.CANCELLED or not reply.released or reply.settled:
            return  # a speculative reply is dealt with once released; a cancelled one is gone
        reply.settled = True
        if reply.caller_text:
            self._asked_repeat = reply.asked_repeat
        if reply.is_bye:
            self.log.info("caller_said_goodbye", transcript=reply.caller_text)
            self.say(self.settings.goodbye, "caller_goodbye", ends_call=True)
        elif reply.failed and not reply.spoken:
            self.say(self.settings.apology, "model_error")  # a model failed: the caller hears why, not silence
        self.turn_log.add(reply)

    def say(self, text: str, why: str, ends_call: bool = False) -> ReplyHandle | None:
        """Speak a fixed line now (greeting, re-prompt, goodbye, a tool's outcome) without the LLM."""
        if ends_call:
            self._cancel_reply(drop_audio=True)
        if not text:
            if ends_call:
                self._hangup_sent = True
                self.context.hangup(why)
            return None
        reply = ReplyHandle(next(self._turns), TurnTimings(self.clock(), False), fixed_line=True, settled=True)
        reply.spoken.append(text)
        audio = self.services.phrase(text)
        self.playout.push(reply.turn, audio, text)
        reply.finish(lambda: self.playout.has_audio(reply.turn))
        self._release(reply)
        if ends_call:
            self._ending = reply
        self.turn_log.phrase(why, text, len(audio) / LINE_RATE)
        self.observe(PhraseSaid(why, text))
        return reply

    # -- memory, keypad and tools ----------------------------------------------------------------

    def _greet(self) -> None:
        known = self.memory.recall()
        if known is not None and known.name and self.settings.returning_greeting:
            self.call_facts.caller_name = known.name
            self.history.add_system(returning_caller_note(known))
            self.log.info("caller_recognised", caller_id=self.memory.caller_id, calls=known.call_count)
            self.say(self.settings.returning_greeting.format(name=known.name), "greeting_returning")
        else:
            self.say(fill(self.settings.greeting, self.context.variables), "greeting")

    def _on_dtmf(self, digit: str) -> None:
        self.log.info("caller_dtmf", digit=digit)
        action = self.keypad.press(digit, self.clock())
        if action is None:
            return
        self._cancel_reply(drop_audio=True)
        self.playout.flush()
        if action.transfer:
            notice = self.say(self.settings.transfer_notice.format(target=action.transfer), "transfer")
            call = ToolCall("transfer", {"target": action.transfer})
            self.tools.start(call, wait=lambda: notice is None or notice.played_unless(self.stopping))
        elif action.hangup:
            self.say(self.settings.goodbye, "dtmf_hangup", ends_call=True)
        elif action.say:
            self.say(action.say, "dtmf")

    def _on_tool_outcome(self, outcome: ToolOutcome) -> None:
        self.log.info("tool_outcome", tool=outcome.name, ok=outcome.ok, text=outcome.text[:200])
        self._handed_over = self._handed_over or (outcome.name == "transfer" and outcome.ok)
        self._record_tool(outcome)
        line = outcome_line(outcome, self.settings, self.skills.tools.http)
        if line is not None:
            self.say(*line, ends_call=outcome.name == "hangup")
            return
        follow_up = follow_up_for(outcome, self.skills.tools.http)
        if follow_up is not None:
            self._notes.append(follow_up)  # told by the next reply, or on its own as soon as nothing else is

    def _record_tool(self, outcome: ToolOutcome) -> None:
        extra = {"result": outcome.text[:200]} if outcome.name == "transfer" else {}  # e.g. "bridged: ..."
        self.context.record(RecordKind.TOOL_CALL, tool=outcome.name, arguments=outcome.arguments,
                            start=outcome.started, end=time.time(), ok=outcome.ok, **extra)

    # -- timers ----------------------------------------------------------------------------------

    def timers(self) -> None:
        now = self.clock()
        for reply in self.turn_log.flush(self.playout.has_audio):
            self.observe(TurnLogged(reply))
        keys = self.keypad.due(now)
        if keys is not None:
            self._start_follow_up(keys)
        self._watchdog(now)
        reply = self._reply
        in_flight = reply is not None and not reply.finished
        if self._notes and not self._caller_speaking and not in_flight and self._ending is None:
            notes, self._notes = self._notes, []
            fallbacks = [n.fallback for n in notes if n.fallback]
            self._start_follow_up(FollowUp("\n".join(n.note for n in notes), " ".join(fallbacks) or None))
            return
        if self._hangup_sent or self._handed_over:
            return
        if self._ending is not None:
            if not self.playout.has_audio(self._ending.turn):
                self._hangup_sent = True
                self.context.hangup("goodbye")
            return
        if self.opening is not None and self.opening.waiting:  # who answered is not known yet: no re-prompt
            self.silence.busy(now)
            return
        if self._caller_speaking or in_flight or self.playout.is_playing() or self.tools.transferring.is_set():
            self.silence.busy(now)
            return
        action = self.silence.check(now)
        if action is SilenceAction.HANG_UP:
            self.say(self.settings.goodbye, "caller_silent", ends_call=True)
        elif action is SilenceAction.REPROMPT:
            self.say(self.settings.reprompt, "reprompt")

    def _watchdog(self, now: float) -> None:
        """A released reply with no audio after `model_timeout_s`: a model hangs (or a server is
        gone). Cancel it and apologize; the call goes on and the caller can ask again."""
        reply = self._reply
        waited = reply.waited(now) if reply is not None else 0.0
        if waited < self.settings.model_timeout_s:
            return
        self.log.error("reply_timeout", turn=reply.turn, waited_s=round(waited, 1))
        self.context.record(RecordKind.MODEL_ERROR, role="timeout")
        self._abandon_reply()
        self.say(self.settings.apology, "model_timeout")

    def _abandon_reply(self) -> None:
        """Cancel the reply under way without an answer (the call ended, a model hangs); a released
        one is still logged and recorded as a cancelled turn: the caller did ask."""
        reply = self._reply
        released = reply is not None and reply.released
        self._cancel_reply(drop_audio=True)
        if reply is not None and released and not reply.settled:
            reply.settled = True
            self.turn_log.add(reply)

    def _settle_history(self, interrupted: Mapping[int, str] | None = None) -> None:
        self.history.settle(self.playout.has_audio, self.playout.forget_turn, interrupted)

    def _prefill(self) -> None:
        """The caller started a turn: the conversation before it goes into the LLM's cache now
        (prefill.py), with the reply they have finished hearing, instead of after their turn."""
        self._settle_history()
        self.prefiller.start(self.history.snapshot())


def fill(template: str, variables: Mapping[str, str]) -> str:
    """`{name}` placeholders filled from the call's variables; unknown ones are left as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), template)
