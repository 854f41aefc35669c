"""Turn-taking and barge-in of the conversation agent on a fake clock with scripted models."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gateway.agents.base import CallContext, RecordKind
from gateway.conversation.agent import ConversationAgent
from gateway.conversation.events import BargeInHandled, PhraseSaid, ToolFinished, TurnLogged
from gateway.conversation.reply import ReplyHandle
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.speech import ConversationServices
from gateway.conversation.turn_log import interrupted
from rtp.jitter import FrameType, JitterFrame
from tests.unit.conversation_fakes import FakeClock, FakeModels, silence_frames, speech_frames


class Log:
    """Collects the agent's log events (structlog-like); tests assert on typed observations."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def bind(self, **_):
        return self

    def __getattr__(self, level):
        def emit(event, **fields):
            self.events.append((event, fields))
        return emit

    def find(self, event):
        return [f for e, f in self.events if e == event]


class Harness:
    def __init__(self, settings: ConversationSettings | None = None, skills=None, store=None,
                 remote_uri: str = "", transfer_ok: bool = True, turn_model=None, **model_kw):
        self.clock = FakeClock()
        self.models = FakeModels(self.clock, **model_kw)
        self.log = Log()
        self.hangups: list[tuple[float, str]] = []
        self.transfers: list[tuple[float, str]] = []
        self.dtmf_sent: list[str] = []
        self.records: list[RecordKind] = []

        def transfer(uri, done):
            self.transfers.append((self.clock(), uri))
            done(transfer_ok, "200 OK" if transfer_ok else "486 Busy Here")

        context = CallContext(call_id="test", direction="inbound", local_uri="", remote_uri=remote_uri,
                              agent_name="t", hangup=lambda reason: self.hangups.append((self.clock(), reason)),
                              send_dtmf=self.dtmf_sent.append, log=self.log, transfer=transfer,
                              record=lambda kind, **fields: self.records.append(kind))
        # silence alone unless a test asks for a turn model (the semantic policy: test_semantic_turn.py)
        self.settings = settings or ConversationSettings(greeting="Hello there.", instructions="Be brief.",
                                                         reprompt_after_s=60, hangup_after_s=120, turn_model="none")
        services = ConversationServices(self.models, {self.settings.agent_name: skills} if skills else None, store,
                                        turn_model)
        self.seen: list[object] = []  # the controller's typed observations
        self.agent = ConversationAgent(context, self.settings, services, clock=self.clock, observe=self.seen.append)
        self.out: list[tuple[float, bool]] = []  # (time, bot frame was audio)
        self.agent.on_start()

    def run(self, frames: list[np.ndarray], echo_db: float | None = None) -> None:
        """Play caller frames, one per 20 ms tick; optionally add the bot's own echo to them."""
        previous = np.zeros(160, dtype=np.int16)
        for pcm in frames:
            self.clock.advance(0.02)
            if echo_db is not None:
                pcm = np.clip(pcm + previous * 10 ** (echo_db / 20), -32767, 32767).astype(np.int16)
            cleaned = pcm if echo_db is None else np.zeros(160, dtype=np.int16)  # a perfect canceller
            self.agent.on_audio(JitterFrame(FrameType.NORMAL, pcm), cleaned)
            frame = self.agent.next_frame()
            self.out.append((self.clock(), frame is not None))
            previous = frame.pcm if frame is not None else np.zeros(160, dtype=np.int16)
            self.clock.settle(busy=self.agent.controller.busy)
            time.sleep(0.0015)  # real time for the agent's threads to act on what woke them

    def turns(self) -> list[ReplyHandle]:
        return [o.reply for o in self.seen if isinstance(o, TurnLogged)]

    def phrases(self) -> list[PhraseSaid]:
        return [o for o in self.seen if isinstance(o, PhraseSaid)]

    def barge_ins(self) -> list[BargeInHandled]:
        return [o for o in self.seen if isinstance(o, BargeInHandled)]

    def tool_outcomes(self) -> list[ToolFinished]:
        return [o for o in self.seen if isinstance(o, ToolFinished)]

    def speaking_at(self, t: float) -> bool:
        return any(abs(when - t) < 0.011 and audio for when, audio in self.out)

    def first_audio_after(self, t: float) -> float | None:
        return next((when for when, audio in self.out if audio and when > t), None)

    def last_audio_before(self, t: float) -> float | None:
        times = [when for when, audio in self.out if audio and when <= t]
        return times[-1] if times else None

    def close(self):
        self.agent.on_stop()
        assert self.agent.join(timeout=30), "the controller did not stop"
        self.models.close()


def test_greeting_plays_at_once(harness):
    h = harness()
    h.run(silence_frames(1.0))
    first = h.first_audio_after(0)
    # The app synthesizes the greeting at start-up; this harness does not, and the fake TTS takes
    # 0.05 s of fake time for it, plus a tick or two when the machine is loaded.
    assert first is not None and first - 1000.0 <= 0.2


def test_the_line_is_wideband_while_the_frames_say_so(harness):
    """A G.722 call's frames carry the caller's 16 kHz audio: the bot's speech then gets its 16 kHz
    copy too (speak.py); a re-INVITE to G.711 turns that off again."""
    h = harness()
    h.run(silence_frames(1.0))  # the greeting (the fake TTS runs on the fake clock)
    silence = np.zeros(160, dtype=np.int16)
    h.agent.on_audio(JitterFrame(FrameType.NORMAL, silence, wideband=np.zeros(320, dtype=np.int16)))
    assert h.agent.playout.line_wideband.is_set()
    h.agent.on_audio(JitterFrame(FrameType.NORMAL, silence))
    assert not h.agent.playout.line_wideband.is_set()


def test_reply_after_turn_end_with_stage_timings(harness):
    h = harness()
    h.run(silence_frames(2.0))  # greeting
    h.run(speech_frames(1, 1.5))
    speech_end = h.clock()
    h.run(silence_frames(3.0))
    first = h.first_audio_after(speech_end)
    assert first is not None
    # turn confirmed at end_of_turn (400 ms); the reply was prepared speculatively since the pause
    assert first - speech_end < 0.6
    turn = h.turns()[0]
    assert turn.caller_text == "what are your opening hours"
    assert " ".join(turn.spoken).startswith("You asked: what are your opening hours.")
    assert turn.timings.speculative is True
    stages = turn.timings.as_ms()
    for key in ("turn_decision_ms", "transcript_final_ms", "llm_first_token_ms", "first_tts_audio_ms",
                "first_rtp_ms"):
        assert stages[key] is not None, key
    assert stages["turn_decision_ms"] >= 380


@pytest.mark.parametrize(("judge", "decided_within", "failures"), [(lambda audio: 0.95, (0.18, 0.32), 0),
                                                                   (lambda audio: 1 / 0, (0.38, 0.5), 1)])
def test_the_turn_model_ends_a_finished_turn_sooner_and_a_failing_one_falls_back_to_silence(
        harness, judge, decided_within, failures):
    from gateway.conversation.end_of_turn import EndOfTurnModel

    model = EndOfTurnModel(judge)
    try:
        settings = ConversationSettings(greeting="Hello there.", instructions="Be brief.", reprompt_after_s=60,
                                        hangup_after_s=120, turn_model="smart_turn", turn_model_threshold=0.5)
        h = harness(settings=settings, turn_model=model)
        h.run(silence_frames(2.0))
        h.run(speech_frames(1, 1.5))
        h.run(silence_frames(3.0))
        turn = h.turns()[0]
        decided = turn.timings.as_ms()["turn_decision_ms"] / 1000
        assert decided_within[0] <= decided <= decided_within[1]
        assert len(h.log.find("turn_model_failed")) == failures
        assert h.log.find("turn")[0].get("end_of_turn_p") == (0.95 if not failures else None)
    finally:
        model.close()


def test_speculative_reply_is_dropped_when_the_caller_goes_on(harness):
    h = harness()
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.0))
    h.run(silence_frames(0.25))  # a pause: speculation starts, but no turn end yet
    h.run(speech_frames(2, 1.0))  # the caller goes on with another question
    resumed_end = h.clock()
    h.run(silence_frames(3.0))
    # nothing was spoken between the first pause and the real end of the turn
    pause_start = resumed_end - 1.25
    assert not any(audio for when, audio in h.out if pause_start < when <= resumed_end)
    turns = h.turns()
    assert len(turns) == 1
    assert turns[0].caller_text == "what are your opening hours where is the office"


def test_barge_in_silences_the_bot_within_100ms_and_keeps_only_what_was_heard(harness):
    h = harness(llm={"reply_words": 40})  # a long reply
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.0))
    h.run(silence_frames(1.5))
    assert h.speaking_at(h.clock())  # the bot is talking
    onset = h.clock() + 0.02
    h.run(speech_frames(2, 1.0))  # the caller talks over it
    last = h.last_audio_before(onset + 1.0)
    assert last is not None and last - onset <= 0.1, f"bot still talking {1000 * (last - onset):.0f} ms after onset"
    barge = h.barge_ins()[0]
    assert barge.onset_to_silence_ms <= 100
    h.run(silence_frames(3.0))
    # the next reply answers the new question, and the history holds only the heard part of the old one
    prompt = h.models.llm.prompts[-1]
    assert prompt[-1].content == "where is the office"
    said = [m.content for m in prompt if m.role == "assistant"]
    assert "Hello there." not in said  # fixed lines stay out of the history
    interrupted = said[-1]
    generated = "You asked: what are your opening hours. " + " ".join(f"word{i}" for i in range(40)) + "."
    assert interrupted and generated.startswith(interrupted.rstrip(".")[:20])
    assert len(interrupted.split()) < len(generated.split())  # cut short: only what went out
    assert h.first_audio_after(h.clock() - 3.0) is not None


def test_own_echo_does_not_trigger_barge_in(harness):
    h = harness(llm={"reply_words": 30})
    h.models.vad.threshold_rms = 50  # a VAD that does hear the echo
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.0))
    h.run(silence_frames(6.0), echo_db=-30)  # the bot's audio comes back 30 dB down
    assert not h.barge_ins()
    turn = h.turns()[0]
    assert not interrupted(turn)


def test_reprompt_then_goodbye_and_hangup_when_the_caller_is_silent(harness):
    settings = ConversationSettings(greeting="Hi.", instructions="x", reprompt_after_s=3, reprompt="Still there?",
                                    hangup_after_s=6, goodbye="Goodbye now.")
    h = harness(settings=settings)
    h.run(silence_frames(12.0))
    phrases = [(p.why, p.text) for p in h.phrases()]
    assert phrases == [("greeting", "Hi."), ("reprompt", "Still there?"), ("caller_silent", "Goodbye now.")]
    assert len(h.hangups) == 1
    when, reason = h.hangups[0]
    assert reason == "goodbye"
    # the hangup came after the goodbye had fully played
    assert h.last_audio_before(when) is not None and when >= h.last_audio_before(when)


def test_caller_goodbye_ends_the_call_after_the_goodbye_played(harness):
    h = harness()
    h.run(silence_frames(2.0))
    h.run(speech_frames(3, 1.0))  # "okay thanks bye"
    h.run(silence_frames(4.0))
    assert [p.why for p in h.phrases()][-1] == "caller_goodbye"
    assert len(h.hangups) == 1
    assert h.models.llm.prompts == []  # no LLM turn for a goodbye


def test_turn_detector_events_on_a_scripted_timeline():
    from gateway.conversation.turns import TurnDetector, TurnEvent

    d = TurnDetector(ConversationSettings(min_speech_ms=60, pause_ms=100, end_of_turn_ms=400).turn)
    t, events = 0.0, []
    script = [0.0] * 10 + [0.9] * 30 + [0.1] * 8 + [0.9] * 10 + [0.1] * 30
    for p in script:
        t += 0.02
        events += [(e.event, round(e.at, 2)) for e in d.update(t, p)]
    kinds = [e for e, _ in events]
    assert kinds == [TurnEvent.SPEECH_START, TurnEvent.PAUSE, TurnEvent.RESUME, TurnEvent.PAUSE, TurnEvent.TURN_END]
    assert events[0][1] == 0.22  # onset = first voiced frame
    assert events[-1][1] == events[-2][1]  # both refer to the last voiced frame


def test_barge_in_needs_more_than_echo():
    from gateway.conversation.turns import TurnDetector, TurnEvent

    d = TurnDetector(ConversationSettings(barge_in_min_ms=60, barge_in_threshold=0.6).turn)
    t = 0.0
    for _ in range(20):  # probable speech, but not enough to interrupt the bot
        t += 0.02
        assert d.update(t, 0.55, bot_speaking=True) == []
    events = []
    first_loud = t + 0.02
    for _ in range(5):  # a real interruption
        t += 0.02
        events += d.update(t, 0.95, bot_speaking=True)
    assert [e.event for e in events] == [TurnEvent.HOLD, TurnEvent.BARGE_IN]  # held at once, cut when confirmed
    assert events[0].at == events[1].at == pytest.approx(first_loud)


def test_echo_guard_tells_the_bots_echo_from_the_caller():
    from gateway.conversation.echo_guard import EchoGuard

    rng = np.random.default_rng(1)
    bot = (rng.standard_normal(160 * 40) * 3000).astype(np.int16)
    caller = (rng.standard_normal(160 * 40) * 3000).astype(np.int16)
    echo_only, double_talk = EchoGuard(), EchoGuard()
    delay = 7 * 160 + 37  # ~147 ms of echo delay, not frame aligned
    echo_flags, caller_flags = [], []
    for i in range(40):
        for guard in (echo_only, double_talk):
            guard.add_far(bot[i * 160:(i + 1) * 160])
        if i * 160 >= delay + 320:
            start = i * 160 - delay
            echo = (bot[start:start + 160] * 0.3).astype(np.int16)  # -10 dB echo
            mixed = np.clip(echo.astype(int) + caller[i * 160:(i + 1) * 160], -32767, 32767).astype(np.int16)
            echo_flags.append(echo_only.echo_like(echo))
            caller_flags.append(double_talk.echo_like(mixed))
    assert all(echo_flags[1:])  # the echo is recognised (from its second frame, when 40 ms are in)
    assert echo_only.echo_delay is not None  # and its delay learnt
    assert not any(caller_flags)  # the caller talking over it is not mistaken for echo
    quiet = EchoGuard()
    assert not quiet.echo_like(caller[:160])  # the bot said nothing: nothing can be its echo


def test_a_quiet_line_ends_speech_before_the_lagging_vad_does():
    """Silero's probability stays up ~100 ms after the voice stops: the level decides sooner."""
    from gateway.conversation.turns import TurnDetector, TurnEvent

    d = TurnDetector(ConversationSettings(min_speech_ms=60, pause_ms=60, end_of_turn_ms=400).turn)
    t, events = 0.0, []
    # 0.6 s of speech, then silence on the line while the VAD still says 0.8 for 100 ms
    script = [(0.9, False)] * 30 + [(0.8, True)] * 5 + [(0.1, True)] * 30
    for p, quiet in script:
        t += 0.02
        events += [(e.event, round(e.at, 2)) for e in d.update(t, p, quiet=quiet)]
    voice_end = 0.6
    assert [e for e, _ in events] == [TurnEvent.SPEECH_START, TurnEvent.PAUSE, TurnEvent.TURN_END]
    assert events[1][1] == pytest.approx(voice_end)  # not voice_end + 0.1: no RESUME from the stale VAD either


def test_the_greeting_is_not_part_of_the_llms_history(harness):
    h = harness()
    h.run(silence_frames(2.0))  # greeting
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(2.0))
    assert h.models.llm.prompts
    assert all(m.role != "assistant" for m in h.models.llm.prompts[-1])
