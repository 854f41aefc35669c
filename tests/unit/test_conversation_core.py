"""The conversation core's timing logic on a virtual clock, with no real sleeps and no threads:
the turn taker fed tick by tick, the reply handle's states, and the controller driven event by
event. Scripted timelines in the style of "the caller speaks from 1.0 s to 2.5 s"; assertions on
typed events, never on log lines."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.agents.base import CallContext, RecordKind
from gateway.conversation.actions import ToolOutcome
from gateway.conversation.controller import Controller
from gateway.conversation.events import (
    BargedIn,
    CallStarted,
    CallStopped,
    Paused,
    PhraseSaid,
    ReplyFinished,
    Resumed,
    SpeechStarted,
    ToolFinished,
    TurnEnded,
    TurnLogged,
    Utterance,
)
from gateway.conversation.playout import Playout
from gateway.conversation.reply import ReplyHandle, ReplyState, TurnTimings
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.conversation.turn_taker import TurnTaker
from gateway.conversation.turns import TurnDetector
from gateway.tools import load_tools
from models.base import Transcript
from rtp.jitter import FrameType
from tests.unit.conversation_fakes import FakeVadStream

TICK = 0.02


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- turn taker ---------------------------------------------------------------------------------


class CallerScript:
    """A caller's timeline: `add_user_speech(start, end)`; the bot talks from `add_bot_speech`."""

    def __init__(self) -> None:
        self.speech: list[tuple[float, float]] = []
        self.bot: list[tuple[float, float]] = []

    def add_user_speech(self, start: float, end: float) -> CallerScript:
        self.speech.append((start, end))
        return self

    def add_bot_speech(self, start: float, end: float) -> CallerScript:
        self.bot.append((start, end))
        return self

    def run(self, taker: TurnTaker, until: float, cleaned_level: float | None = None) -> list[tuple[float, object]]:
        events, t = [], 0.0
        rng = np.random.default_rng(0)
        while t < until - 1e-9:
            t = round(t + TICK, 6)
            speaking = any(s <= t < e for s, e in self.speech)
            pcm = (rng.standard_normal(160) * 3000).astype(np.int16) if speaking else np.zeros(160, np.int16)
            bot = any(s <= t < e for s, e in self.bot)
            cleaned = None if cleaned_level is None else np.full(160, cleaned_level, np.int16)
            events += [(t, e) for e in taker.feed(t, pcm, FrameType.NORMAL, bot, cleaned)]
        return events


def taker(**turn) -> TurnTaker:
    settings = ConversationSettings(**turn)
    return TurnTaker(FakeVadStream(1000.0), TurnDetector(settings.turn), preroll_frames=10)


def test_turn_taker_emits_start_pause_and_end_of_one_utterance():
    events = CallerScript().add_user_speech(1.0, 2.5).run(taker(), until=4.0)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, Paused, TurnEnded]
    start, pause, end = (e for _, e in events)
    assert start.at == pytest.approx(1.0)  # the first voiced frame
    assert pause.at == end.at == pytest.approx(2.48)  # both name the last voiced frame
    assert end.decided_at == pytest.approx(2.48 + 0.4)  # end_of_turn_ms later
    assert end.utterance.number == pause.utterance.number
    assert end.utterance.length > pause.utterance.length  # the trailing silence, not new speech


def test_turn_taker_pause_then_resume_is_one_utterance():
    events = CallerScript().add_user_speech(1.0, 2.0).add_user_speech(2.2, 3.0).run(taker(), until=4.0)
    assert [type(e) for _, e in events] == [SpeechStarted, Paused, Resumed, Paused, TurnEnded]
    assert len({e.utterance.number for _, e in events if isinstance(e, Paused | TurnEnded)}) == 1


def test_turn_taker_barge_in_over_the_bot_and_the_stt_hears_the_cleaned_line():
    script = CallerScript().add_bot_speech(0.0, 3.0).add_user_speech(1.0, 2.0)
    events = script.run(taker(), until=3.5, cleaned_level=7)
    assert isinstance(events[0][1], BargedIn)
    assert events[0][1].at == pytest.approx(1.0)
    end = next(e for _, e in events if isinstance(e, TurnEnded))
    spoken = np.concatenate(end.utterance.frames)
    assert (spoken == 7).mean() > 0.9  # while the bot talked, the echo-cancelled frames were kept


# -- reply handle -------------------------------------------------------------------------------


def handle(turn: int = 1) -> ReplyHandle:
    return ReplyHandle(turn, TurnTimings(0.0, speculative=True))


def test_reply_handle_goes_speculative_released_playing_played():
    clock = Clock()
    playout = Playout(clock=clock)
    reply = handle()
    reply.spoken.append("Hello there.")
    playout.push(1, np.ones(480, np.int16), "Hello there.")
    assert playout.next_frame() is None  # speculative: held
    reply.release()
    playout.release(1, reply)
    assert reply.state is ReplyState.RELEASED
    clock.now = 1.0
    assert playout.next_frame() is not None
    assert reply.state is ReplyState.PLAYING and reply.timings.first_rtp == 1.0
    reply.finish(lambda: playout.has_audio(1))
    assert not reply.wait_played(0)  # two frames still queued
    playout.next_frame()
    playout.next_frame()
    assert reply.state is ReplyState.PLAYED and reply.wait_played(0)
    assert reply.heard_text == "Hello there."
    assert not reply.cancel()  # played is final


def test_reply_handle_cancelled_is_never_played():
    reply = handle()
    assert reply.cancel() and reply.cancelled.is_set()
    reply.release()
    reply.finish(lambda: False)
    assert reply.state is ReplyState.CANCELLED and not reply.wait_played(0)


def test_a_barge_in_flush_cuts_the_rest_of_a_playing_reply():
    playout = Playout(clock=Clock())
    reply = handle()
    playout.push(1, np.ones(1600, np.int16), "one two three four five six seven eight nine ten")
    reply.release()
    playout.release(1, reply)
    for _ in range(3):
        playout.next_frame()
    heard = playout.flush()
    assert heard[1] == "one two three"
    playout.push(1, np.ones(160, np.int16), "more")  # the reply thread had not seen the cancel yet
    assert playout.next_frame() is None and not playout.has_audio(1)


# -- controller ---------------------------------------------------------------------------------


class SyncExecutor:
    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(*args))
        return future


@dataclass
class Stt:
    text: str = "what are your opening hours"

    def transcribe(self, audio, prompt=None):
        return Transcript(self.text, duration_s=len(audio) / 16000, elapsed_s=0.0)


@dataclass
class Models:
    stt: Stt = field(default_factory=Stt)
    executor: SyncExecutor = field(default_factory=SyncExecutor)


@dataclass
class Services:
    models: Models = field(default_factory=Models)
    store: object = None

    def phrase(self, text: str) -> np.ndarray:
        return np.ones(160 * 25, np.int16)  # half a second per fixed line


class Pipeline:
    """Records the replies the controller starts; a test plays their threads' part."""

    def __init__(self) -> None:
        self.started: list[tuple[ReplyHandle, Future | None]] = []

    def start(self, reply, transcript, history) -> None:
        self.started.append((reply, transcript))


class Call:
    def __init__(self, tools: list | None = None, **settings):
        self.clock = Clock(100.0)
        self.playout = Playout(clock=self.clock)
        self.pipeline = Pipeline()
        self.seen: list[object] = []
        self.records: list[RecordKind] = []
        self.hangups: list[str] = []
        context = CallContext(call_id="core", direction="inbound", local_uri="", remote_uri="", agent_name="t",
                              hangup=self.hangups.append, send_dtmf=lambda d: None,
                              record=lambda kind, **f: self.records.append(kind))
        skills = AgentSkills("t", "Be brief.", load_tools(tools or []))
        self.settings = ConversationSettings(greeting="Hi.", instructions="x", **settings)
        self.controller = Controller(context, self.settings, Services(), skills, self.playout,
                                     lambda c: self.pipeline, self.clock, self.seen.append)
        self.utterances = 0

    def do(self, *events) -> None:
        for event in events:
            self.controller.handle(event)
            self.controller.timers()

    def tick(self, seconds: float) -> None:
        """Play the bot's audio and run the timers for `seconds` of virtual time."""
        for _ in range(int(round(seconds / TICK))):
            self.clock.now += TICK
            self.playout.next_frame()
            self.controller.timers()

    def utterance(self, frames: int = 50) -> Utterance:
        self.utterances += 1
        return Utterance(self.utterances, tuple(np.zeros(160, np.int16) for _ in range(frames)))

    def finish(self, reply: ReplyHandle, *said: str) -> None:
        """What a reply thread does: queue its audio, finish, report."""
        for text in said:
            reply.spoken.append(text)
            self.playout.push(reply.turn, np.ones(160 * 10, np.int16), text)
        reply.finish(lambda: self.playout.has_audio(reply.turn))
        self.do(ReplyFinished(reply))

    def phrases(self) -> list[str]:
        return [o.why for o in self.seen if isinstance(o, PhraseSaid)]


def test_a_speculative_reply_is_released_at_the_end_of_the_turn_and_dropped_if_the_caller_goes_on():
    call = Call()
    call.do(CallStarted())
    u = call.utterance()
    call.do(SpeechStarted(100.0), Paused(101.0, u))
    first, _ = call.pipeline.started[-1]
    assert first.state is ReplyState.SPECULATIVE
    call.do(Resumed(101.1))
    assert first.state is ReplyState.CANCELLED
    u2 = Utterance(u.number, u.frames + u.frames)
    call.do(Paused(102.0, u2))
    second, transcript = call.pipeline.started[-1]
    call.do(TurnEnded(102.0, 102.4, u2))
    assert call.pipeline.started[-1][0] is second  # the speculation was kept, not redone
    assert second.state is ReplyState.RELEASED and second.timings.turn_decision == 102.4
    assert transcript.result().text == "what are your opening hours"


def test_reprompt_and_goodbye_on_a_silent_caller_on_virtual_time():
    call = Call(reprompt_after_s=3, hangup_after_s=6)
    call.do(CallStarted())
    call.tick(12.0)
    assert call.phrases() == ["greeting", "reprompt", "caller_silent"]
    assert call.hangups == ["goodbye"]


ORDER_TOOL = [{"http": {"name": "order_status", "description": "Look up an order", "method": "GET",
                        "url": "http://127.0.0.1:9/{order_id}",
                        "parameters": {"order_id": {"type": "string", "description": "order number"}}}}]


def test_a_tool_result_that_arrives_while_a_reply_is_in_flight_is_still_spoken():
    """Regression: a result used to be appended to notes that a reply thread read and then
    cleared, so one arriving in between was lost."""
    call = Call(tools=ORDER_TOOL)
    call.do(CallStarted())
    u = call.utterance()
    call.do(SpeechStarted(100.0), Paused(101.0, u), TurnEnded(101.0, 101.4, u))
    reply, _ = call.pipeline.started[-1]
    outcome = ToolOutcome("order_status", True, '{"status": "shipped"}', {"order_id": "42"})
    call.do(ToolFinished(outcome))  # the reply is still generating: its notes were handed out already
    assert len(call.pipeline.started) == 1
    call.finish(reply, "You asked about opening hours.")
    follow_up, _ = call.pipeline.started[-1]
    assert follow_up is not reply
    assert follow_up.follow_up is not None and "status shipped" in follow_up.follow_up.note
    assert follow_up.state is ReplyState.RELEASED


def test_notes_handed_to_a_reply_that_did_not_tell_them_are_given_back():
    call = Call(tools=ORDER_TOOL)
    call.do(CallStarted())
    u = call.utterance()
    call.do(SpeechStarted(100.0))  # the caller talks: the result waits for their turn
    call.do(ToolFinished(ToolOutcome("order_status", True, "shipped", {"order_id": "42"})))
    call.do(Paused(101.0, u))
    speculative, _ = call.pipeline.started[-1]
    assert len(speculative.notes) == 1
    call.do(Resumed(101.1))  # cancelled before it told them
    call.finish(speculative)
    call.do(Paused(102.0, u), TurnEnded(102.0, 102.4, u))
    reply, _ = call.pipeline.started[-1]
    assert len(reply.notes) == 1  # the next reply carries them


def test_a_barge_in_cancels_the_reply_and_keeps_only_what_was_heard():
    call = Call()
    call.do(CallStarted())
    u = call.utterance()
    call.do(SpeechStarted(100.0), Paused(101.0, u), TurnEnded(101.0, 101.4, u))
    reply, _ = call.pipeline.started[-1]
    call.finish(reply, "one two three four five six seven eight nine ten")
    heard = {reply.turn: "one two three"}
    call.do(BargedIn(102.0, 102.02, heard))
    assert reply.state in (ReplyState.CANCELLED, ReplyState.PLAYED) and reply.heard == "one two three"
    assert [m.role for m in call.controller.history.messages][-1:] + \
        [call.controller.history.messages[-1].content] == ["assistant", "one two three"]
    assert RecordKind.BARGE_IN in call.records


def test_a_hang_up_while_the_answer_is_still_generating_still_records_the_turn():
    """Regression (seen on a loaded machine): the reply was cancelled at hang-up and its turn,
    the caller's question included, was never logged or recorded."""
    call = Call()
    call.do(CallStarted())
    u = call.utterance()
    call.do(SpeechStarted(100.0), Paused(101.0, u), TurnEnded(101.0, 101.4, u))
    reply, _ = call.pipeline.started[-1]
    reply.caller_text = "what are your opening hours"
    call.controller.post(CallStopped())
    call.controller.run()
    assert reply.state is ReplyState.CANCELLED
    assert call.records.count(RecordKind.TURN) == 1
    assert any(isinstance(o, TurnLogged) and o.reply is reply for o in call.seen)
